//! The scheduler's predicates the planner simulates: resources and pod slots, nodeSelector,
//! required node affinity, taints and tolerations, host ports, and required pod
//! anti-affinity on the hostname topology (both directions). Reasons read like the
//! scheduler's own messages.

use std::{collections::BTreeMap, fmt, sync::Arc};

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Toleration};

use super::snapshot::{HostPort, NodeInfo, PodInfo, PoolInfo, Resources, TaintInfo};

/// Why a pod does not fit a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Unfit {
    /// The node is cordoned.
    Unschedulable,
    /// The node is not Ready.
    NotReady,
    /// `spec.nodeSelector` does not match the node's labels.
    NodeSelector,
    /// No required node affinity term matches.
    NodeAffinity,
    /// A NoSchedule or NoExecute taint the pod does not tolerate.
    Taint(TaintInfo),
    /// Not enough of a resource (`cpu`, `memory`, `pods`, `nvidia.com/gpu`, ...).
    Insufficient(String),
    /// A host port already taken.
    HostPort(HostPort),
    /// A required anti-affinity term (the pod's, or a pod's on the node) forbids it; names
    /// the other pod.
    AntiAffinity(String),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Unschedulable => f.write_str("node(s) were unschedulable"),
            Unfit::NotReady => f.write_str("node(s) were not ready"),
            Unfit::NodeSelector => f.write_str("node(s) didn't match Pod's node selector"),
            Unfit::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity"),
            Unfit::Taint(t) if t.value.is_empty() => {
                write!(
                    f,
                    "node(s) had untolerated taint {{{}: }}:{}",
                    t.key, t.effect
                )
            }
            Unfit::Taint(t) => write!(
                f,
                "node(s) had untolerated taint {{{}: {}}}:{}",
                t.key, t.value, t.effect
            ),
            Unfit::Insufficient(r) if r == "pods" => f.write_str("Too many pods"),
            Unfit::Insufficient(r) => write!(f, "Insufficient {r}"),
            Unfit::HostPort(p) => write!(
                f,
                "node(s) didn't have free ports for the requested pod ports ({}/{})",
                p.port, p.protocol
            ),
            Unfit::AntiAffinity(other) => write!(
                f,
                "node(s) didn't match pod anti-affinity rules (with {other})"
            ),
        }
    }
}

/// What is fixed about a node (real or template): name, labels, taints.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The node's name; `None` for a node that does not exist yet.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<TaintInfo>,
}

/// A node in a simulation: its shape, its free room, and what runs on it.
#[derive(Clone, Debug)]
pub struct Bin {
    /// The fixed part.
    pub shape: Arc<Shape>,
    /// Room left.
    pub free: Resources,
    /// Host ports taken.
    pub ports: Vec<HostPort>,
    /// Indexes in the snapshot's pods of the pods on it.
    pub pods: Vec<usize>,
    /// How many of those pods carry anti-affinity terms (when none do and the incoming
    /// pod has none, the pods need not be looked at).
    pub with_anti_affinity: usize,
}

impl Bin {
    /// An existing node with its pods.
    pub fn of_node(node: &NodeInfo, pods: &[PodInfo]) -> Bin {
        let mut free = node.allocatable.clone();
        free.sub(&node.requested);
        Bin {
            shape: Arc::new(Shape {
                name: Some(node.name.clone()),
                labels: node.labels.clone(),
                taints: node.taints.clone(),
            }),
            free,
            ports: node
                .pods
                .iter()
                .flat_map(|p| pods[*p].host_ports.iter().cloned())
                .collect(),
            pods: node.pods.clone(),
            with_anti_affinity: node
                .pods
                .iter()
                .filter(|p| !pods[**p].anti_affinity.is_empty())
                .count(),
        }
    }

    /// Whether `pod` fits, given what is on the bin (its shape already checked).
    pub fn dynamic_fit(&self, pod: &PodInfo, pods: &[PodInfo]) -> Result<(), Unfit> {
        if let Some(resource) = self.free.lacks(&pod.requests) {
            return Err(Unfit::Insufficient(resource));
        }
        if let Some(port) = pod
            .host_ports
            .iter()
            .find(|p| self.ports.iter().any(|q| q.conflicts(p)))
        {
            return Err(Unfit::HostPort(port.clone()));
        }
        if pod.anti_affinity.is_empty() && self.with_anti_affinity == 0 {
            return Ok(());
        }
        for other in &self.pods {
            let other = &pods[*other];
            if pod.anti_affinity.iter().any(|t| t.selects(other))
                || other.anti_affinity.iter().any(|t| t.selects(pod))
            {
                return Err(Unfit::AntiAffinity(other.key()));
            }
        }
        Ok(())
    }

    /// Every predicate.
    pub fn fit(&self, pod: &PodInfo, pods: &[PodInfo]) -> Result<(), Unfit> {
        static_fit(pod, &self.shape)?;
        self.dynamic_fit(pod, pods)
    }

    /// Puts pod `index` on the bin.
    pub fn place(&mut self, index: usize, pod: &PodInfo) {
        self.free.sub(&pod.requests);
        self.ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(index);
        if !pod.anti_affinity.is_empty() {
            self.with_anti_affinity += 1;
        }
    }

    /// Takes pod `index` off the bin.
    pub fn unplace(&mut self, index: usize, pod: &PodInfo) {
        self.free.add(&pod.requests);
        for p in &pod.host_ports {
            if let Some(i) = self.ports.iter().position(|q| q == p) {
                self.ports.swap_remove(i);
            }
        }
        if let Some(i) = self.pods.iter().rposition(|p| *p == index) {
            self.pods.swap_remove(i);
            if !pod.anti_affinity.is_empty() {
                self.with_anti_affinity -= 1;
            }
        }
    }
}

/// An empty node of `pool`, with the pool's DaemonSet pods' requests and ports taken.
pub fn template_bin(pool: &PoolInfo) -> Bin {
    let mut free = pool.allocatable.clone();
    free.sub(&pool.daemonset_requests);
    Bin {
        shape: Arc::new(Shape {
            name: None,
            labels: pool.labels.clone(),
            taints: pool.taints.clone(),
        }),
        free,
        ports: pool
            .daemonset_pods
            .iter()
            .flat_map(|p| p.host_ports.iter().cloned())
            .collect(),
        pods: Vec::new(),
        with_anti_affinity: 0,
    }
}

/// The predicates that depend only on the node's shape: nodeSelector, required node
/// affinity, taints.
pub fn static_fit(pod: &PodInfo, shape: &Shape) -> Result<(), Unfit> {
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| shape.labels.get(k) == Some(v))
    {
        return Err(Unfit::NodeSelector);
    }
    if let Some(terms) = &pod.node_affinity
        && !terms.iter().any(|t| term_matches(t, shape))
    {
        return Err(Unfit::NodeAffinity);
    }
    if let Some(taint) = shape.taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !pod.tolerations.iter().any(|tol| tolerates(tol, t))
    }) {
        return Err(Unfit::Taint(taint.clone()));
    }
    Ok(())
}

/// Whether a toleration tolerates a taint, as `v1.Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &TaintInfo) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or_default() == taint.value,
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, shape: &Shape) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // An empty term selects no node.
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, shape.labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, shape.name.as_ref()))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let v = value.and_then(|v| v.parse::<i64>().ok());
            let bound = values.first().and_then(|b| b.parse::<i64>().ok());
            match (v, bound) {
                (Some(v), Some(b)) if op == "Gt" => v > b,
                (Some(v), Some(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}
