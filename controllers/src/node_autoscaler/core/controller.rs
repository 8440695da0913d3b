//! One pass of the node autoscaler against an API: plan on the stores, then act through a
//! [`NodeApi`] (Cluster API in a cluster, simulated nodes in local mode) and record every
//! decision in NodePool status, Events and the nodes' `weir.io/unneeded-since`.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use weir_crds::{
    NodePool,
    conditions::{NewCondition, merge_conditions},
    node_pool::NodePoolStatus,
};
use weir_store::ClusterState;

pub use crate::pod_autoscaler::controller::Event;

use super::{Objects, Plan, Settings, Snapshot, next_backoff, plan};

/// The calls the node autoscaler makes.
pub trait NodeApi {
    /// Sets the number of nodes the pool should have (grows it; after a provisioning
    /// timeout, gives up the nodes that never came).
    fn set_size(
        &self,
        pool: &NodePool,
        target: i64,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Removes `node` from the pool: cordon, evict `evict` (respecting PDBs), delete, and
    /// leave the pool at `target` nodes.
    fn remove_node(
        &self,
        pool: &NodePool,
        node: &str,
        evict: &[String],
        target: i64,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Writes a pool's status.
    fn write_status(
        &self,
        pool: &str,
        status: &NodePoolStatus,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Sets (`Some`) or clears (`None`) the node's `weir.io/unneeded-since`.
    fn mark_unneeded(
        &self,
        node: &str,
        since: Option<Timestamp>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Records an Event on a pool.
    fn event(
        &self,
        pool: &NodePool,
        event: &Event,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the controller remembers between passes: each pool's last provisioning failure
/// and the backoff it got (the status keeps only `backoffUntil`).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    failures: HashMap<String, (Timestamp, Duration)>,
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The plan it acted on.
    pub plan: Plan,
    /// Pools grown.
    pub scaled_up: usize,
    /// Nodes removed.
    pub removed: usize,
    /// Calls that failed.
    pub errors: usize,
    /// Wall time of planning.
    pub planning: Duration,
}

/// The snapshot of the stores.
pub fn snapshot(state: &ClusterState) -> Snapshot {
    Snapshot::build(&Objects {
        nodes: state.nodes.iter().map(|(_, n)| n.as_ref()).collect(),
        pods: state.pods.iter().map(|(_, p)| p.as_ref()).collect(),
        pdbs: state
            .pod_disruption_budgets
            .iter()
            .map(|(_, p)| p.as_ref())
            .collect(),
        daemonsets: state.daemon_sets.iter().map(|(_, d)| d.as_ref()).collect(),
        pools: state.node_pools.iter().map(|(_, p)| p.as_ref()).collect(),
    })
}

fn list(pods: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = pods
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if pods.len() > SHOWN {
        text.push_str(&format!(" and {} more", pods.len() - SHOWN));
    }
    text
}

/// Runs one pass at `now`.
pub async fn sync<A: NodeApi>(
    api: &A,
    state: &ClusterState,
    settings: &Settings,
    memory: &mut Memory,
    now: Timestamp,
) -> Outcome {
    let started = Instant::now();
    let snapshot = snapshot(state);
    let plan = plan(&snapshot, settings, now);
    let planning = started.elapsed();
    let pools: BTreeMap<String, &NodePool> = state
        .node_pools
        .iter()
        .map(|(k, p)| (k.name.clone(), p.as_ref()))
        .collect();
    let mut statuses: BTreeMap<String, NodePoolStatus> = pools
        .iter()
        .map(|(name, p)| (name.clone(), p.status.clone().unwrap_or_default()))
        .collect();
    let mut events: Vec<(String, Event)> = Vec::new();
    let mut outcome = Outcome {
        plan: Plan::default(),
        scaled_up: 0,
        removed: 0,
        errors: 0,
        planning,
    };
    let now_time = Time(now);
    let backoff = |pool: &str, memory: &mut Memory, status: &mut NodePoolStatus| {
        let wait = next_backoff(memory.failures.get(pool).copied(), settings, now);
        memory.failures.insert(pool.to_string(), (now, wait));
        let until = now + SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
        status.backoff_until = Some(Time(until));
        wait
    };

    // Nodes asked for that never came: give them up and back off.
    for timed_out in &plan.provisioning_timed_out {
        let (Some(pool), Some(status), Some(current)) = (
            pools.get(&timed_out.pool),
            statuses.get_mut(&timed_out.pool),
            snapshot
                .pools
                .iter()
                .find(|p| p.name == timed_out.pool)
                .map(|p| p.current),
        ) else {
            continue;
        };
        if let Err(e) = api.set_size(pool, current).await {
            outcome.errors += 1;
            tracing::warn!(pool = %timed_out.pool, error = %e, "cannot give up nodes that did not come");
        }
        status.target_size = Some(i32::try_from(current).unwrap_or(i32::MAX));
        let wait = backoff(&timed_out.pool, memory, status);
        events.push((
            timed_out.pool.clone(),
            Event {
                type_: "Warning",
                reason: "ScaleUpTimedOut",
                message: format!(
                    "{} node(s) asked for at {} did not register within --max-node-provision-time; backing off for {}",
                    timed_out.missing,
                    timed_out.since,
                    super::settings::format_duration(wait)
                ),
            },
        ));
    }

    for up in &plan.scale_up.scale_ups {
        let (Some(pool), Some(status)) = (pools.get(&up.pool), statuses.get_mut(&up.pool)) else {
            continue;
        };
        if up.delta == 0 {
            continue;
        }
        match api.set_size(pool, up.target_size).await {
            Ok(()) => {
                outcome.scaled_up += 1;
                status.target_size = Some(i32::try_from(up.target_size).unwrap_or(i32::MAX));
                status.last_scale_up_time = Some(now_time.clone());
                events.push((
                    up.pool.clone(),
                    Event {
                        type_: "Normal",
                        reason: "ScaledUpGroup",
                        message: format!(
                            "Scale-up: {} to {} nodes (+{}) for {} pending pod(s){}; {}",
                            up.pool,
                            up.target_size,
                            up.delta,
                            up.pods.len(),
                            if up.pods.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", list(&up.pods))
                            },
                            up.reason
                        ),
                    },
                ));
            }
            Err(e) => {
                outcome.errors += 1;
                let wait = backoff(&up.pool, memory, status);
                events.push((
                    up.pool.clone(),
                    Event {
                        type_: "Warning",
                        reason: "FailedToScaleUpGroup",
                        message: format!(
                            "Scale-up of {} to {} failed: {e}; backing off for {}",
                            up.pool,
                            up.target_size,
                            super::settings::format_duration(wait)
                        ),
                    },
                ));
            }
        }
    }

    // Keep `weir.io/unneeded-since` in step with the plan.
    let unneeded: BTreeMap<&str, &str> = plan
        .scale_down
        .unneeded
        .iter()
        .map(|u| (u.node.as_str(), u.since.as_str()))
        .collect();
    for node in &snapshot.nodes {
        let want = unneeded.get(node.name.as_str());
        let result = match (node.unneeded_since, want) {
            (None, Some(since)) => match since.parse::<Timestamp>() {
                Ok(since) => api.mark_unneeded(&node.name, Some(since)).await,
                Err(_) => Ok(()),
            },
            (Some(_), None) => api.mark_unneeded(&node.name, None).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            outcome.errors += 1;
            tracing::warn!(node = %node.name, error = %e, "cannot record unneeded-since");
        }
    }

    for removal in &plan.scale_down.remove {
        let (Some(pool), Some(status)) =
            (pools.get(&removal.pool), statuses.get_mut(&removal.pool))
        else {
            continue;
        };
        match api
            .remove_node(pool, &removal.node, &removal.evict, removal.target_size)
            .await
        {
            Ok(()) => {
                outcome.removed += 1;
                status.target_size = Some(i32::try_from(removal.target_size).unwrap_or(i32::MAX));
                status.last_scale_down_time = Some(now_time.clone());
                events.push((
                    removal.pool.clone(),
                    Event {
                        type_: "Normal",
                        reason: "ScaleDown",
                        message: if removal.empty {
                            format!(
                                "Scale-down: removing empty node {}; {} to {} nodes",
                                removal.node, removal.pool, removal.target_size
                            )
                        } else {
                            format!(
                                "Scale-down: removing node {}, evicting {} pod(s): {}; {} to {} nodes",
                                removal.node,
                                removal.evict.len(),
                                list(&removal.evict),
                                removal.pool,
                                removal.target_size
                            )
                        },
                    },
                ));
            }
            Err(e) => {
                outcome.errors += 1;
                events.push((
                    removal.pool.clone(),
                    Event {
                        type_: "Warning",
                        reason: "ScaleDownFailed",
                        message: format!("Removing node {} failed: {e}", removal.node),
                    },
                ));
            }
        }
    }

    // Status: sizes and conditions, written when they change.
    let pending_by_pool = unschedulable_counts(&plan);
    for info in &snapshot.pools {
        let (Some(pool), Some(status)) = (pools.get(&info.name), statuses.get_mut(&info.name))
        else {
            continue;
        };
        status.observed_generation = pool.metadata.generation;
        status.current_size = i32::try_from(info.current).unwrap_or(i32::MAX);
        status.ready_nodes = i32::try_from(
            snapshot
                .nodes
                .iter()
                .filter(|n| n.ready && n.pool.is_some_and(|p| snapshot.pools[p].name == info.name))
                .count(),
        )
        .unwrap_or(i32::MAX);
        let target = status.target_size.unwrap_or(status.current_size);
        if status.target_size.is_none() {
            status.target_size = Some(target);
        }
        let in_backoff = status.backoff_until.as_ref().is_some_and(|t| t.0 > now);
        let ready_message = format!("{} of {} node(s) ready", status.ready_nodes, target);
        let grown = plan
            .scale_up
            .scale_ups
            .iter()
            .find(|u| u.pool == info.name && u.delta > 0);
        let grown_message =
            grown.map(|u| format!("+{} node(s) for {} pending pod(s)", u.delta, u.pods.len()));
        let waiting = pending_by_pool.get(&info.name).copied().unwrap_or(0);
        let scaled_message = match (&grown_message, waiting) {
            (Some(m), _) => m.clone(),
            (None, 0) => "no pending pods need this pool".to_string(),
            (None, n) => format!(
                "{n} pending pod(s) cannot be helped by this pool (see `weir recommend nodes`)"
            ),
        };
        let backoff_message = status
            .backoff_until
            .as_ref()
            .map(|t| format!("no scale-up until {}", t.0))
            .unwrap_or_default();
        let before = status.conditions.clone();
        status.conditions = merge_conditions(
            [
                NewCondition {
                    type_: "Ready",
                    status: if i64::from(status.ready_nodes) >= i64::from(target) {
                        "True"
                    } else {
                        "False"
                    },
                    reason: if i64::from(status.ready_nodes) >= i64::from(target) {
                        "NodesReady"
                    } else {
                        "NodesProvisioning"
                    },
                    message: &ready_message,
                },
                NewCondition {
                    type_: "ScaledUp",
                    status: if grown.is_some() { "True" } else { "False" },
                    reason: if grown.is_some() {
                        "ScaledUp"
                    } else if waiting > 0 {
                        "PodsUnhelped"
                    } else {
                        "NoScaleUpNeeded"
                    },
                    message: &scaled_message,
                },
                NewCondition {
                    type_: "Backoff",
                    status: if in_backoff { "True" } else { "False" },
                    reason: if in_backoff {
                        "ProvisioningFailed"
                    } else {
                        "NoBackoff"
                    },
                    message: if in_backoff { &backoff_message } else { "" },
                },
            ],
            &before,
            pool.metadata.generation,
            &now_time,
        );
        if pool.status.as_ref() != Some(status)
            && let Err(e) = api.write_status(&info.name, status).await
        {
            outcome.errors += 1;
            tracing::warn!(pool = %info.name, error = %e, "cannot write NodePool status");
        }
    }
    for (pool, event) in &events {
        if let Some(pool) = pools.get(pool)
            && let Err(e) = api.event(pool, event).await
        {
            tracing::warn!(error = %e, reason = event.reason, "cannot record event");
        }
    }
    outcome.plan = plan;
    outcome
}

/// Pending pods that stay unschedulable, counted per pool they could run on if it grew.
fn unschedulable_counts(plan: &Plan) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for u in &plan.scale_up.unschedulable {
        for pool in u.pools.keys() {
            *counts.entry(pool.clone()).or_default() += 1;
        }
    }
    counts
}
