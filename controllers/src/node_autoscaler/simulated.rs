//! Simulated nodes for local mode (`weir up`): the `simulated` NodePool provider and a
//! simulated scheduler.
//!
//! A simulated pool starts at its `minSize`, all Ready. A scale-up creates nodes that
//! register (become Node objects, Ready) after the pool's `provisionDelay`; a removal
//! deletes the node, and its pods go back to pending. Pods (the directory's and the
//! simulated Deployments' replicas) are bound to nodes by first fit under the scheduler's
//! predicates, keep their node while it exists, and stay Pending where nothing fits, so
//! the node autoscaler sees the same picture it would in a cluster.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use crate::node_autoscaler::{
    controller::{Event, NodeApi},
    scale_up::schedule,
    snapshot::{HOSTNAME_LABEL, UNNEEDED_SINCE_ANNOTATION},
};
use k8s_openapi::{
    api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodStatus, Taint},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use tracing::{info, warn};
use weir_crds::{
    NodePool,
    node_pool::{NODE_POOL_LABEL, NodePoolStatus},
};
use weir_store::{ClusterState, Object, ObjectKey};

#[derive(Debug)]
struct SimNode {
    pool: String,
    ready_at: Timestamp,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: BTreeMap<String, SimNode>,
    next: BTreeMap<String, u64>,
    bindings: HashMap<ObjectKey, String>,
    statuses: BTreeMap<String, NodePoolStatus>,
    unneeded: BTreeMap<String, Timestamp>,
    seeded: HashSet<String>,
}

impl Inner {
    fn add(&mut self, pool: &str, ready_at: Timestamp) -> String {
        let n = self.next.entry(pool.to_string()).or_insert(0);
        *n += 1;
        let name = format!("{pool}-{n}");
        self.nodes.insert(
            name.clone(),
            SimNode {
                pool: pool.to_string(),
                ready_at,
            },
        );
        name
    }

    fn in_pool<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = (&'a String, &'a SimNode)> {
        self.nodes.iter().filter(move |(_, n)| n.pool == pool)
    }
}

/// The simulated provider and scheduler.
#[derive(Debug, Clone, Default)]
pub struct SimulatedNodes {
    inner: Arc<Mutex<Inner>>,
}

fn simulated(pool: &NodePool) -> bool {
    pool.spec.provider.simulated.is_some()
}

fn provision_delay(pool: &NodePool) -> SignedDuration {
    pool.spec
        .provider
        .simulated
        .as_ref()
        .and_then(|s| SignedDuration::try_from(s.provision_delay.get()).ok())
        .unwrap_or(SignedDuration::ZERO)
}

fn node_object(name: &str, pool: &NodePool, unneeded: Option<&Timestamp>) -> Node {
    let template = &pool.spec.template;
    let pool_name = pool.metadata.name.clone().unwrap_or_default();
    let mut labels = template.labels.clone();
    labels.insert(NODE_POOL_LABEL.into(), pool_name);
    labels.insert(HOSTNAME_LABEL.into(), name.to_string());
    let mut allocatable: BTreeMap<String, Quantity> = template
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.as_str().to_string())))
        .collect();
    allocatable
        .entry("pods".into())
        .or_insert_with(|| Quantity("110".into()));
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            annotations: unneeded
                .map(|t| BTreeMap::from([(UNNEEDED_SINCE_ANNOTATION.to_string(), t.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!template.taints.is_empty()).then(|| {
                template
                    .taints
                    .iter()
                    .map(|t| Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: format!("{:?}", t.effect),
                        time_added: None,
                    })
                    .collect()
            }),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            allocatable: Some(allocatable.clone()),
            capacity: Some(allocatable),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

impl SimulatedNodes {
    /// `state` as the simulated cluster has it at `now`: the simulated pools' registered
    /// nodes, the pools' status as the autoscaler wrote it, and every pod bound to a node
    /// or Pending.
    pub fn view(&self, state: &ClusterState, now: Timestamp) -> ClusterState {
        let mut state = state.clone();
        let Ok(mut inner) = self.inner.lock() else {
            return state;
        };
        let pools: BTreeMap<String, Arc<NodePool>> = state
            .node_pools
            .iter()
            .filter(|(_, p)| simulated(p))
            .map(|(k, p)| (k.name.clone(), p.clone()))
            .collect();
        // A pool seen for the first time starts at its minimum, Ready.
        for (name, pool) in &pools {
            if inner.seeded.insert(name.clone()) {
                for _ in 0..pool.spec.min_size.max(0) {
                    let node = inner.add(name, now);
                    info!(pool = %name, node = %node, "simulated node ready (pool minimum)");
                }
            }
        }
        inner.nodes.retain(|_, n| pools.contains_key(&n.pool));
        inner.seeded.retain(|p| pools.contains_key(p));
        for (name, node) in &inner.nodes {
            if node.ready_at <= now {
                let pool = &pools[&node.pool];
                state.apply(Object::Node(Arc::new(node_object(
                    name,
                    pool,
                    inner.unneeded.get(name),
                ))));
            }
        }
        for (name, status) in &inner.statuses {
            if let Some(pool) = pools.get(name) {
                let mut pool = pool.as_ref().clone();
                pool.status = Some(status.clone());
                state.apply(Object::NodePool(Arc::new(pool)));
            }
        }
        // Bind: pods keep a node that still exists; the others are scheduled.
        let nodes: HashSet<String> = state.nodes.iter().map(|(k, _)| k.name.clone()).collect();
        let pods: Vec<(ObjectKey, Arc<Pod>)> = state
            .pods
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        let present: HashSet<&ObjectKey> = pods.iter().map(|(k, _)| k).collect();
        inner
            .bindings
            .retain(|k, node| present.contains(k) && nodes.contains(node));
        for (key, pod) in &pods {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if bound.is_some() {
                continue;
            }
            let mut pod = pod.as_ref().clone();
            let spec = pod.spec.get_or_insert_with(Default::default);
            spec.node_name = inner.bindings.get(key).cloned();
            if spec.node_name.is_none() {
                pod.status = Some(PodStatus {
                    phase: Some("Pending".into()),
                    ..PodStatus::default()
                });
            }
            state.apply(Object::Pod(Arc::new(pod)));
        }
        let snapshot = crate::node_autoscaler::controller::snapshot(&state);
        for (p, node) in schedule(&snapshot) {
            let Some(node) = node else { continue };
            let info = &snapshot.pods[p];
            let key = ObjectKey::namespaced(&info.namespace, &info.name);
            let node = snapshot.nodes[node].name.clone();
            if let Some(pod) = state.pods.get(&key) {
                let mut pod = pod.as_ref().clone();
                if let Some(spec) = pod.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
                pod.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    ..PodStatus::default()
                });
                state.apply(Object::Pod(Arc::new(pod)));
            }
            inner.bindings.insert(key, node);
        }
        state
    }

    /// Simulated nodes by pool: (registered, still provisioning).
    pub fn counts(&self, now: Timestamp) -> BTreeMap<String, (usize, usize)> {
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        if let Ok(inner) = self.inner.lock() {
            for node in inner.nodes.values() {
                let entry = counts.entry(node.pool.clone()).or_default();
                if node.ready_at <= now {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        counts
    }
}

fn pool_name(pool: &NodePool) -> String {
    pool.metadata.name.clone().unwrap_or_default()
}

impl NodeApi for SimulatedNodes {
    async fn set_size(&self, pool: &NodePool, target: i64) -> Result<(), String> {
        let name = pool_name(pool);
        if !simulated(pool) {
            return Err(format!(
                "NodePool {name}: local mode simulates only pools with provider.simulated"
            ));
        }
        let now = Timestamp::now();
        let mut inner = self.inner.lock().map_err(|_| "poisoned")?;
        let have = i64::try_from(inner.in_pool(&name).count()).unwrap_or(i64::MAX);
        if target > have {
            let ready_at = now + provision_delay(pool);
            for _ in have..target {
                let node = inner.add(&name, ready_at);
                info!(pool = %name, node = %node, ready_at = %ready_at, "simulated node provisioning");
            }
        } else if target < have {
            // Give up nodes that never registered, newest first.
            let mut waiting: Vec<String> = inner
                .in_pool(&name)
                .filter(|(_, n)| n.ready_at > now)
                .map(|(k, _)| k.clone())
                .collect();
            waiting.reverse();
            for node in waiting
                .into_iter()
                .take(usize::try_from(have - target).unwrap_or(0))
            {
                inner.nodes.remove(&node);
            }
        }
        Ok(())
    }

    async fn remove_node(
        &self,
        pool: &NodePool,
        node: &str,
        evict: &[String],
        target: i64,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock().map_err(|_| "poisoned")?;
        if inner.nodes.remove(node).is_none() {
            return Err(format!("node {node} is not a simulated node"));
        }
        inner.bindings.retain(|_, n| n != node);
        inner.unneeded.remove(node);
        info!(pool = %pool_name(pool), node, evicted = evict.len(), target, "simulated node removed");
        Ok(())
    }

    async fn write_status(&self, pool: &str, status: &NodePoolStatus) -> Result<(), String> {
        let mut inner = self.inner.lock().map_err(|_| "poisoned")?;
        inner.statuses.insert(pool.to_string(), status.clone());
        Ok(())
    }

    async fn mark_unneeded(&self, node: &str, since: Option<Timestamp>) -> Result<(), String> {
        let mut inner = self.inner.lock().map_err(|_| "poisoned")?;
        match since {
            Some(t) => inner.unneeded.insert(node.to_string(), t),
            None => inner.unneeded.remove(node),
        };
        Ok(())
    }

    async fn event(&self, pool: &NodePool, event: &Event) -> Result<(), String> {
        let name = pool_name(pool);
        if event.type_ == "Warning" {
            warn!(pool = %name, reason = event.reason, "{}", event.message);
        } else {
            info!(pool = %name, reason = event.reason, "{}", event.message);
        }
        Ok(())
    }
}
