//! The node autoscaler's loop, shared by `weir controllers` (Cluster API) and `weir up`
//! (simulated nodes): every `--scan-interval`, one [`controller::sync`] on the current
//! state, while this replica leads; its figures on `/metrics`, its last plan on
//! `/debug/nodes`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use k8s_openapi::jiff::Timestamp;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_runtime::{cluster::listed, leader::Leadership};
use weir_store::{ClusterState, Kind, StateWriter};

use super::{
    Plan, Settings,
    controller::{self, Memory, NodeApi},
    k8s::KubeNodeApi,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// The node autoscaler's metrics, and its last plan for `/debug/nodes`.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    plan_seconds: Histogram,
    target_size: Family<PoolLabels, Gauge>,
    nodes: Family<PoolLabels, Gauge>,
    pending: Gauge,
    unschedulable: Gauge,
    unneeded: Gauge,
    scale_ups: Counter,
    removed: Counter,
    errors: Counter,
    /// The last plan.
    pub last_plan: Arc<Mutex<Option<Plan>>>,
}

impl NodeMetrics {
    /// Registers `weir_node_autoscaler_*` and `weir_node_pool_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = NodeMetrics {
            plan_seconds: Histogram::new([0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            target_size: Family::default(),
            nodes: Family::default(),
            pending: Gauge::default(),
            unschedulable: Gauge::default(),
            unneeded: Gauge::default(),
            scale_ups: Counter::default(),
            removed: Counter::default(),
            errors: Counter::default(),
            last_plan: Arc::default(),
        };
        registry.register(
            "weir_node_autoscaler_plan_seconds",
            "Time to plan one pass of the node autoscaler",
            m.plan_seconds.clone(),
        );
        registry.register(
            "weir_node_pool_target_size",
            "Nodes each NodePool should have",
            m.target_size.clone(),
        );
        registry.register(
            "weir_node_pool_nodes",
            "Nodes of each NodePool that exist",
            m.nodes.clone(),
        );
        registry.register(
            "weir_node_autoscaler_pending_pods",
            "Pending pods in the last pass",
            m.pending.clone(),
        );
        registry.register(
            "weir_node_autoscaler_unschedulable_pods",
            "Pending pods no scale-up helps, in the last pass",
            m.unschedulable.clone(),
        );
        registry.register(
            "weir_node_autoscaler_unneeded_nodes",
            "Nodes found unneeded in the last pass",
            m.unneeded.clone(),
        );
        registry.register(
            "weir_node_autoscaler_scale_ups",
            "NodePools grown",
            m.scale_ups.clone(),
        );
        registry.register(
            "weir_node_autoscaler_removed_nodes",
            "Nodes removed",
            m.removed.clone(),
        );
        registry.register(
            "weir_node_autoscaler_errors",
            "Provider or API calls that failed",
            m.errors.clone(),
        );
        m
    }

    fn observe(&self, outcome: &controller::Outcome, state: &ClusterState) {
        self.plan_seconds.observe(outcome.planning.as_secs_f64());
        let plan = &outcome.plan;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.pending.set(count(plan.scale_up.pending_pods));
        self.unschedulable
            .set(count(plan.scale_up.unschedulable.len()));
        self.unneeded.set(count(plan.scale_down.unneeded.len()));
        self.scale_ups.inc_by(outcome.scaled_up as u64);
        self.removed.inc_by(outcome.removed as u64);
        self.errors.inc_by(outcome.errors as u64);
        let targets = plan.target_sizes();
        for (key, pool) in state.node_pools.iter() {
            let labels = PoolLabels {
                pool: key.name.clone(),
            };
            let current = state
                .nodes
                .iter()
                .filter(|(_, n)| {
                    n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(weir_crds::node_pool::NODE_POOL_LABEL))
                        == Some(&key.name)
                })
                .count();
            self.nodes.get_or_create(&labels).set(count(current));
            let target = targets.get(&key.name).copied().unwrap_or_else(|| {
                pool.status
                    .as_ref()
                    .and_then(|s| s.target_size)
                    .map_or(count(current), i64::from)
            });
            self.target_size.get_or_create(&labels).set(target);
        }
        if let Ok(mut last) = self.last_plan.lock() {
            *last = Some(plan.clone());
        }
    }
}

/// Runs a pass every `settings.scan_interval` while `leading`, on the state `view` gives.
pub async fn run<A, V>(
    api: A,
    view: V,
    settings: Settings,
    metrics: NodeMetrics,
    leading: Leadership,
    shutdown: CancellationToken,
) where
    A: NodeApi,
    V: Fn(Timestamp) -> ClusterState,
{
    let mut memory = Memory::default();
    let mut last_unschedulable = 0;
    let mut ticker = tokio::time::interval(settings.scan_interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(scan_interval = ?settings.scan_interval, expander = %settings.expander, "node autoscaler running");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !leading.is_leading() {
            memory = Memory::default();
            continue;
        }
        let now = Timestamp::now();
        let state = view(now);
        if state.node_pools.is_empty() {
            // Nothing to scale: no plan, no "unschedulable" noise about pools that do not
            // exist.
            continue;
        }
        // Abandoned at the end of the term: evictions and resizes in flight stop there.
        let sync = controller::sync(&api, &state, &settings, &mut memory, now);
        let Some(outcome) = leading.while_leading(sync).await else {
            memory = Memory::default();
            continue;
        };
        metrics.observe(&outcome, &state);
        let plan = &outcome.plan;
        let unschedulable = plan.scale_up.unschedulable.len();
        // Log what changed: actions, errors, or a different number of stuck pods.
        if outcome.scaled_up + outcome.removed + outcome.errors > 0
            || unschedulable != last_unschedulable
        {
            info!(
                pending = plan.scale_up.pending_pods,
                unschedulable,
                scaled_up = outcome.scaled_up,
                unneeded = plan.scale_down.unneeded.len(),
                removed = outcome.removed,
                errors = outcome.errors,
                took = ?outcome.planning,
                "node autoscaler pass"
            );
        }
        last_unschedulable = unschedulable;
    }
}

/// The node autoscaler: once Nodes, Pods, NodePools, PodDisruptionBudgets and DaemonSets
/// are listed (planning on a partial picture could remove busy nodes), a pass every
/// `--scan-interval` while leading.
pub async fn run_in_cluster(
    api: KubeNodeApi,
    settings: Settings,
    metrics: NodeMetrics,
    mut synced: watch::Receiver<std::collections::BTreeSet<Kind>>,
    leading: Leadership,
    writer: Arc<StateWriter>,
    shutdown: CancellationToken,
) {
    let needed = [
        Kind::Node,
        Kind::Pod,
        Kind::NodePool,
        Kind::PodDisruptionBudget,
        Kind::DaemonSet,
    ];
    if !listed(&mut synced, &needed, &shutdown).await {
        return;
    }
    let view = move |_| writer.current();
    run(api, view, settings, metrics, leading, shutdown).await;
}

/// The node autoscaler's admin route: `/debug/nodes`, its last plan.
pub fn debug_routes(last_plan: Arc<Mutex<Option<Plan>>>) -> Router {
    Router::new().route(
        "/debug/nodes",
        get(move || {
            let plan = last_plan.lock().ok().and_then(|p| p.clone());
            async move {
                match plan {
                    Some(plan) => Json(plan).into_response(),
                    None => (
                        StatusCode::NOT_FOUND,
                        "no node autoscaler plan yet (it runs in weir up and weir controllers)\n",
                    )
                        .into_response(),
                }
            }
        }),
    )
}
