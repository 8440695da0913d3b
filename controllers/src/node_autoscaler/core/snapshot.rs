//! The planner's picture of the cluster, built from the objects `kubectl get -o yaml` gives
//! (Nodes, Pods, PodDisruptionBudgets, DaemonSets, NodePools): requests summed once, the
//! scheduling constraints pulled out of each pod, and pods grouped by node.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    str::FromStr,
};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Node, NodeSelectorTerm, Pod, PodSpec, Toleration},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
    jiff::Timestamp,
};
use weir_crds::{NodePool, Quantity, node_pool::NODE_POOL_LABEL};

/// The hostname label; the only topology the planner evaluates pod anti-affinity on.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Node annotation the controller keeps: when the node became unneeded (RFC 3339).
pub const UNNEEDED_SINCE_ANNOTATION: &str = "weir.io/unneeded-since";
/// cluster-autoscaler's annotation that keeps a node.
pub const CA_SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// Weir's equivalent.
pub const WEIR_SCALE_DOWN_DISABLED: &str = "weir.io/scale-down-disabled";
/// Pod annotation: may (or may not) be evicted whatever else holds.
pub const CA_SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Weir's equivalent.
pub const WEIR_SAFE_TO_EVICT: &str = "weir.io/safe-to-evict";
/// Pod annotation: local volumes that may be lost on eviction (comma-separated names).
pub const CA_SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
/// The taint a node carries while cluster-autoscaler (or Weir) deletes it.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const DEFAULT_MAX_PODS: i64 = 110;

/// Requests or free room: cpu in milli-cores, memory and ephemeral storage in bytes, pod
/// slots, and extended resources (GPUs, ...) in milli-units.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Milli-cores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pod slots.
    pub pods: i64,
    /// Extended resources by name, in milli-units; sorted by name.
    pub extended: Vec<(String, i64)>,
}

impl Resources {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Resources) {
        self.add_times(other, 1);
    }

    /// Takes `other` from these (they may go negative: an overcommitted node).
    pub fn sub(&mut self, other: &Resources) {
        self.add_times(other, -1);
    }

    fn add_times(&mut self, other: &Resources, sign: i64) {
        self.cpu += sign * other.cpu;
        self.memory += sign * other.memory;
        self.ephemeral_storage += sign * other.ephemeral_storage;
        self.pods += sign * other.pods;
        for (name, v) in &other.extended {
            match self
                .extended
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
            {
                Ok(i) => self.extended[i].1 += sign * v,
                Err(i) => self.extended.insert(i, (name.clone(), sign * v)),
            }
        }
    }

    /// The extended resource `name`, 0 when absent.
    pub fn extended(&self, name: &str) -> i64 {
        self.extended
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.extended[i].1)
    }

    /// The first resource `request` needs more of than these hold, by its Kubernetes name.
    pub fn lacks(&self, request: &Resources) -> Option<String> {
        if request.pods > 0 && request.pods > self.pods {
            return Some("pods".into());
        }
        if request.cpu > 0 && request.cpu > self.cpu {
            return Some("cpu".into());
        }
        if request.memory > 0 && request.memory > self.memory {
            return Some("memory".into());
        }
        if request.ephemeral_storage > 0 && request.ephemeral_storage > self.ephemeral_storage {
            return Some("ephemeral-storage".into());
        }
        request
            .extended
            .iter()
            .find(|(name, v)| *v > 0 && *v > self.extended(name))
            .map(|(name, _)| name.clone())
    }

    /// Resources from a map of quantities (`cpu: 500m`, `memory: 1Gi`, ...).
    pub fn from_quantities<'a>(
        quantities: impl IntoIterator<Item = (&'a String, &'a str)>,
    ) -> Result<Resources, String> {
        let mut r = Resources::default();
        for (name, text) in quantities {
            let milli = Quantity::from_str(text)
                .and_then(|q| q.to_milli())
                .map_err(|e| format!("{name}: {e}"))?;
            let milli = i64::try_from(milli).map_err(|_| format!("{name}: {text} is too large"))?;
            let whole = milli.div_euclid(1000) + i64::from(milli.rem_euclid(1000) != 0);
            match name.as_str() {
                "cpu" => r.cpu += milli,
                "memory" => r.memory += whole,
                "ephemeral-storage" => r.ephemeral_storage += whole,
                "pods" => r.pods += whole,
                _ if name.starts_with("hugepages-") || name.contains('/') => {
                    r.add(&Resources {
                        extended: vec![(name.clone(), milli)],
                        ..Resources::default()
                    });
                }
                // storage, attachable volumes and the like do not limit scheduling here.
                _ => {}
            }
        }
        Ok(r)
    }
}

/// Allocatable resources from a node's (or template's) quantities; `pods` defaults to the
/// kubelet's 110.
fn allocatable<'a>(
    quantities: impl IntoIterator<Item = (&'a String, &'a str)>,
) -> Result<Resources, String> {
    let mut has_pods = false;
    let mut r = Resources::from_quantities(quantities.into_iter().inspect(|(k, _)| {
        has_pods |= k.as_str() == "pods";
    }))?;
    if !has_pods {
        r.pods = DEFAULT_MAX_PODS;
    }
    Ok(r)
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaintInfo {
    /// Key.
    pub key: String,
    /// Value ("" when none).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A host port a pod binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `0.0.0.0` when unset.
    pub ip: String,
    /// `TCP` when unset.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two bindings collide.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A required pod anti-affinity term on the hostname topology.
#[derive(Clone, Debug, PartialEq)]
pub struct AntiAffinityTerm {
    /// Pods it keeps away; `None` (no selector) keeps none away.
    pub selector: Option<LabelSelector>,
    /// Namespaces those pods are in; `None` means every namespace.
    pub namespaces: Option<Vec<String>>,
}

impl AntiAffinityTerm {
    /// Whether the term selects `pod`.
    pub fn selects(&self, pod: &PodInfo) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(&pod.namespace))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| weir_store::selector_matches(s, Some(&pod.labels)))
    }
}

/// What the planner knows of one pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it is bound to; `None` for a pending pod.
    pub node: Option<String>,
    /// What it requests, with its pod slot.
    pub requests: Resources,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity terms (ORed); `None` when there are none.
    pub node_affinity: Option<Vec<NodeSelectorTerm>>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// Required anti-affinity terms on the hostname topology.
    pub anti_affinity: Vec<AntiAffinityTerm>,
    /// Owned by a DaemonSet.
    pub daemonset: bool,
    /// A static pod's mirror.
    pub mirror: bool,
    /// Kind of the controlling owner, if any.
    pub controller: Option<String>,
    /// The safe-to-evict annotation, when set to `true` or `false`.
    pub safe_to_evict: Option<bool>,
    /// emptyDir (not in memory) and hostPath volumes not declared safe to lose.
    pub local_volumes: Vec<String>,
    /// Creation time.
    pub created: Option<Timestamp>,
    /// Pods with the same class schedule identically.
    pub class: u64,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads a pod; `None` for terminal pods (they hold nothing). Errors name the field.
    pub fn from_pod(pod: &Pod) -> Result<Option<PodInfo>, String> {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return Ok(None);
        }
        let meta = &pod.metadata;
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let node = spec.node_name.clone().filter(|n| !n.is_empty());
        if node.is_none() && meta.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let no_annotations = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&no_annotations);
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let mut info = PodInfo::from_spec(
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
            spec,
            meta.labels.clone().unwrap_or_default(),
        )?;
        info.node = node;
        info.daemonset = owner.is_some_and(|o| o.kind == "DaemonSet");
        info.mirror = annotations.contains_key(MIRROR_ANNOTATION);
        info.controller = owner.map(|o| o.kind.clone());
        info.safe_to_evict = [CA_SAFE_TO_EVICT, WEIR_SAFE_TO_EVICT].iter().find_map(|a| {
            match annotations.get(*a).map(String::as_str) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            }
        });
        let allowed: Vec<&str> = annotations
            .get(CA_SAFE_TO_EVICT_LOCAL_VOLUMES)
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default();
        info.local_volumes = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| {
                let empty_dir_on_disk = v
                    .empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref() != Some("Memory"));
                (empty_dir_on_disk || v.host_path.is_some()) && !allowed.contains(&v.name.as_str())
            })
            .map(|v| v.name.clone())
            .collect();
        info.created = meta.creation_timestamp.as_ref().map(|t| t.0);
        Ok(Some(info))
    }

    /// The scheduling-relevant parts of a pod spec (also used for DaemonSet templates).
    pub fn from_spec(
        namespace: &str,
        name: &str,
        spec: &PodSpec,
        labels: BTreeMap<String, String>,
    ) -> Result<PodInfo, String> {
        let requests = pod_requests(spec)?;
        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| r.node_selector_terms.clone());
        let anti_affinity = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.topology_key == HOSTNAME_LABEL)
            .map(|t| AntiAffinityTerm {
                selector: t.label_selector.clone(),
                namespaces: match (&t.namespaces, &t.namespace_selector) {
                    (Some(ns), _) if !ns.is_empty() => Some(ns.clone()),
                    // An empty namespaceSelector selects every namespace.
                    (_, Some(sel))
                        if sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                            && sel.match_expressions.as_ref().is_none_or(Vec::is_empty) =>
                    {
                        None
                    }
                    _ => Some(vec![namespace.to_string()]),
                },
            })
            .collect();
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.filter(|hp| *hp > 0).map(|port| HostPort {
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect();
        let mut info = PodInfo {
            namespace: namespace.to_string(),
            name: name.to_string(),
            node: None,
            requests,
            labels,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            node_affinity,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports,
            anti_affinity,
            daemonset: false,
            mirror: false,
            controller: None,
            safe_to_evict: None,
            local_volumes: Vec::new(),
            created: None,
            class: 0,
        };
        info.class = info.equivalence_class();
        Ok(info)
    }

    fn equivalence_class(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.namespace.hash(&mut h);
        self.requests.hash(&mut h);
        self.labels.hash(&mut h);
        self.node_selector.hash(&mut h);
        self.host_ports.hash(&mut h);
        // The remaining constraints have no Hash; their JSON stands in.
        serde_json::to_string(&self.node_affinity)
            .unwrap_or_default()
            .hash(&mut h);
        serde_json::to_string(&self.tolerations)
            .unwrap_or_default()
            .hash(&mut h);
        for t in &self.anti_affinity {
            serde_json::to_string(&t.selector)
                .unwrap_or_default()
                .hash(&mut h);
            t.namespaces.hash(&mut h);
        }
        h.finish()
    }
}

/// A pod's effective requests as the scheduler computes them: the larger of the sum over
/// containers and the largest init container, plus the pod overhead, plus one pod slot. A
/// container's limit stands in for a missing request, as the API server defaults it.
pub fn pod_requests(spec: &PodSpec) -> Result<Resources, String> {
    fn container_requests(
        c: &k8s_openapi::api::core::v1::Container,
        field: &str,
    ) -> Result<Resources, String> {
        let res = c.resources.as_ref();
        let mut all: BTreeMap<&String, &str> = BTreeMap::new();
        for (k, v) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            all.insert(k, v.0.as_str());
        }
        for (k, v) in res.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            all.insert(k, v.0.as_str());
        }
        Resources::from_quantities(all).map_err(|e| format!("{field}.resources.requests.{e}"))
    }
    let mut sum = Resources::default();
    for (i, c) in spec.containers.iter().enumerate() {
        sum.add(&container_requests(c, &format!("containers[{i}]"))?);
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let init = container_requests(c, &format!("initContainers[{i}]"))?;
        sum.cpu = sum.cpu.max(init.cpu);
        sum.memory = sum.memory.max(init.memory);
        sum.ephemeral_storage = sum.ephemeral_storage.max(init.ephemeral_storage);
        for (name, v) in init.extended {
            let have = sum.extended(&name);
            if v > have {
                sum.add(&Resources {
                    extended: vec![(name, v - have)],
                    ..Resources::default()
                });
            }
        }
    }
    if let Some(overhead) = &spec.overhead {
        let overhead = Resources::from_quantities(overhead.iter().map(|(k, v)| (k, v.0.as_str())))
            .map_err(|e| format!("overhead.{e}"))?;
        sum.add(&overhead);
    }
    sum.pods = 1;
    Ok(sum)
}

/// What the planner knows of one node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Index of its pool in [`Snapshot::pools`], from the `weir.io/node-pool` label.
    pub pool: Option<usize>,
    /// Allocatable resources (capacity when not reported).
    pub allocatable: Resources,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<TaintInfo>,
    /// The Ready condition is True.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Annotated to be kept.
    pub scale_down_disabled: bool,
    /// Being deleted (deletion timestamp or the to-be-deleted taint).
    pub deleting: bool,
    /// The controller's `weir.io/unneeded-since`.
    pub unneeded_since: Option<Timestamp>,
    /// Indexes in [`Snapshot::pods`] of the pods bound to it.
    pub pods: Vec<usize>,
    /// Sum of those pods' requests.
    pub requested: Resources,
}

impl NodeInfo {
    /// Reads a node. Errors name the field.
    pub fn from_node(node: &Node, pools: &HashMap<String, usize>) -> Result<NodeInfo, String> {
        let meta = &node.metadata;
        let no_status = k8s_openapi::api::core::v1::NodeStatus::default();
        let status = node.status.as_ref().unwrap_or(&no_status);
        let quantities = status.allocatable.as_ref().or(status.capacity.as_ref());
        let allocatable = allocatable(
            quantities
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, v.0.as_str())),
        )
        .map_err(|e| format!("status.allocatable.{e}"))?;
        let labels = meta.labels.clone().unwrap_or_default();
        let no_annotations = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&no_annotations);
        let taints: Vec<TaintInfo> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| TaintInfo {
                key: t.key,
                value: t.value.unwrap_or_default(),
                effect: t.effect,
            })
            .collect();
        let unneeded_since = annotations
            .get(UNNEEDED_SINCE_ANNOTATION)
            .map(|v| {
                v.parse::<Timestamp>().map_err(|e| {
                    format!("metadata.annotations[{UNNEEDED_SINCE_ANNOTATION}]: {v:?}: {e}")
                })
            })
            .transpose()?;
        Ok(NodeInfo {
            name: meta.name.clone().unwrap_or_default(),
            pool: labels
                .get(NODE_POOL_LABEL)
                .and_then(|p| pools.get(p).copied()),
            allocatable,
            ready: status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            scale_down_disabled: [CA_SCALE_DOWN_DISABLED, WEIR_SCALE_DOWN_DISABLED]
                .iter()
                .any(|a| annotations.get(*a).map(String::as_str) == Some("true")),
            deleting: meta.deletion_timestamp.is_some()
                || taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT),
            labels,
            taints,
            unneeded_since,
            pods: Vec::new(),
            requested: Resources::default(),
        })
    }
}

/// What the planner knows of one NodePool.
#[derive(Clone, Debug)]
pub struct PoolInfo {
    /// Name.
    pub name: String,
    /// Never fewer nodes.
    pub min_size: i64,
    /// Never more nodes.
    pub max_size: i64,
    /// Nodes of the pool that exist.
    pub current: i64,
    /// Nodes wanted: `status.targetSize`, or `current` when unset.
    pub target: i64,
    /// `pricePerHour`.
    pub price: Option<f64>,
    /// `priority`.
    pub priority: i32,
    /// One template node's allocatable.
    pub allocatable: Resources,
    /// Template labels, with `weir.io/node-pool`.
    pub labels: BTreeMap<String, String>,
    /// Template taints.
    pub taints: Vec<TaintInfo>,
    /// DaemonSet pods that would run on a new node.
    pub daemonset_pods: Vec<PodInfo>,
    /// Their requests together.
    pub daemonset_requests: Resources,
    /// `status.lastScaleUpTime`.
    pub last_scale_up: Option<Timestamp>,
    /// `status.backoffUntil`.
    pub backoff_until: Option<Timestamp>,
}

/// A PodDisruptionBudget: which pods, and how many may go now.
#[derive(Clone, Debug)]
pub struct PdbInfo {
    /// Namespace.
    pub namespace: String,
    /// `spec.selector`; `None` (null) covers no pods.
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
}

impl PdbInfo {
    /// Whether the budget covers `pod`.
    pub fn covers(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| weir_store::selector_matches(s, Some(&pod.labels)))
    }
}

/// The whole picture.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Nodes, by name.
    pub nodes: Vec<NodeInfo>,
    /// Pods: bound and pending.
    pub pods: Vec<PodInfo>,
    /// NodePools, by name.
    pub pools: Vec<PoolInfo>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<PdbInfo>,
    /// Objects left out, each with the field that was wrong.
    pub warnings: Vec<String>,
}

/// The objects a snapshot is built from.
#[derive(Clone, Debug, Default)]
pub struct Objects<'a> {
    /// Nodes.
    pub nodes: Vec<&'a Node>,
    /// Pods.
    pub pods: Vec<&'a Pod>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<&'a PodDisruptionBudget>,
    /// DaemonSets.
    pub daemonsets: Vec<&'a DaemonSet>,
    /// NodePools.
    pub pools: Vec<&'a NodePool>,
}

impl Snapshot {
    /// Builds the snapshot. Objects that cannot be read are left out with a warning naming
    /// the object and the field; the rest is planned on.
    pub fn build(objects: &Objects<'_>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut pools: Vec<&NodePool> = objects.pools.clone();
        pools.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut pool_index = HashMap::new();
        let mut declared_targets = Vec::new();
        let daemonsets: Vec<PodInfo> = objects
            .daemonsets
            .iter()
            .filter_map(|ds| {
                let meta = &ds.metadata;
                let template = &ds.spec.template;
                let spec = template.spec.as_ref()?;
                let labels = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                let ns = meta.namespace.as_deref().unwrap_or("default");
                let name = meta.name.as_deref().unwrap_or_default();
                match PodInfo::from_spec(ns, name, spec, labels) {
                    Ok(mut p) => {
                        p.daemonset = true;
                        Some(p)
                    }
                    Err(e) => {
                        snapshot
                            .warnings
                            .push(format!("DaemonSet {ns}/{name}: spec.template.spec.{e}"));
                        None
                    }
                }
            })
            .collect();
        for pool in pools {
            let name = pool.metadata.name.clone().unwrap_or_default();
            let spec = &pool.spec;
            let allocatable =
                match allocatable(spec.template.capacity.iter().map(|(k, v)| (k, v.as_str()))) {
                    Ok(r) => r,
                    Err(e) => {
                        snapshot
                            .warnings
                            .push(format!("NodePool {name}: spec.template.capacity.{e}"));
                        continue;
                    }
                };
            let mut labels = spec.template.labels.clone();
            labels.insert(NODE_POOL_LABEL.into(), name.clone());
            let taints: Vec<TaintInfo> = spec
                .template
                .taints
                .iter()
                .map(|t| TaintInfo {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: format!("{:?}", t.effect),
                })
                .collect();
            let status = pool.status.clone().unwrap_or_default();
            let mut info = PoolInfo {
                name: name.clone(),
                min_size: i64::from(spec.min_size),
                max_size: i64::from(spec.max_size),
                current: 0,
                // Resolved once the pool's nodes are counted.
                target: 0,
                price: spec.price_per_hour,
                priority: spec.priority,
                allocatable,
                labels,
                taints,
                daemonset_pods: Vec::new(),
                daemonset_requests: Resources::default(),
                last_scale_up: status.last_scale_up_time.map(|t| t.0),
                backoff_until: status.backoff_until.map(|t| t.0),
            };
            let shape = crate::node_autoscaler::predicates::Shape {
                name: None,
                labels: info.labels.clone(),
                taints: info.taints.clone(),
            };
            for ds in &daemonsets {
                if crate::node_autoscaler::predicates::static_fit(ds, &shape).is_ok() {
                    info.daemonset_requests.add(&ds.requests);
                    info.daemonset_pods.push(ds.clone());
                }
            }
            pool_index.insert(name, snapshot.pools.len());
            declared_targets.push(status.target_size.map(i64::from));
            snapshot.pools.push(info);
        }
        let mut nodes: Vec<&Node> = objects.nodes.clone();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut node_index = HashMap::new();
        for node in nodes {
            match NodeInfo::from_node(node, &pool_index) {
                Ok(info) => {
                    if let Some(p) = info.pool {
                        snapshot.pools[p].current += 1;
                    }
                    node_index.insert(info.name.clone(), snapshot.nodes.len());
                    snapshot.nodes.push(info);
                }
                Err(e) => snapshot.warnings.push(format!(
                    "Node {}: {e}",
                    node.metadata.name.as_deref().unwrap_or_default()
                )),
            }
        }
        for (pool, declared) in snapshot.pools.iter_mut().zip(declared_targets) {
            pool.target = declared.unwrap_or(pool.current);
        }
        let mut pods: Vec<&Pod> = objects.pods.clone();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        for pod in pods {
            match PodInfo::from_pod(pod) {
                Ok(Some(info)) => {
                    let index = snapshot.pods.len();
                    if let Some(node) = info.node.as_ref().and_then(|n| node_index.get(n)) {
                        let node = &mut snapshot.nodes[*node];
                        node.requested.add(&info.requests);
                        node.pods.push(index);
                    }
                    snapshot.pods.push(info);
                }
                Ok(None) => {}
                Err(e) => snapshot.warnings.push(format!(
                    "Pod {}/{}: spec.{e}",
                    pod.metadata.namespace.as_deref().unwrap_or("default"),
                    pod.metadata.name.as_deref().unwrap_or_default()
                )),
            }
        }
        for pdb in &objects.pdbs {
            let meta = &pdb.metadata;
            snapshot.pdbs.push(PdbInfo {
                namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
                selector: pdb.spec.as_ref().and_then(|s| s.selector.clone()),
                disruptions_allowed: pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disruptions_allowed)
                    .unwrap_or(0),
            });
        }
        snapshot
    }

    /// Indexes of the pending pods: not bound to a node (or bound to one that does not
    /// exist), DaemonSet pods aside.
    pub fn pending(&self) -> Vec<usize> {
        let names: std::collections::HashSet<&str> =
            self.nodes.iter().map(|n| n.name.as_str()).collect();
        self.pods
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.daemonset && p.node.as_deref().is_none_or(|n| !names.contains(n)))
            .map(|(i, _)| i)
            .collect()
    }
}
