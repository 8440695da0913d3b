//! One sync of every ScalingPolicy: one batched metrics fetch shared by all policies, then
//! per policy (a bounded number at a time) read the scale, select the pods, plan and apply.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::{api::core::v1::Pod as KubePod, jiff::Timestamp};
use weir_crds::Quantity;
use weir_store::{ClusterState, ObjectKey};

use super::{
    Container, ControllerSettings, Pod, PodPhase,
    controller::{Memory, PolicyInput, ScaleApi, apply, parse_selector, plan},
    effective_metrics,
    source::MetricSource,
};

/// How many policies are reconciled at once.
pub const CONCURRENCY: usize = 64;

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Policies reconciled.
    pub policies: usize,
    /// Targets rescaled.
    pub rescaled: usize,
    /// Policies whose scale could not be read or set.
    pub errors: usize,
    /// Requests to the metric source (PromQL queries, API calls).
    pub queries: u64,
    /// Wall time.
    pub duration: Duration,
}

/// Syncs every policy in `state`. `memory` is what the reconciler remembers per policy; entries
/// of deleted policies are dropped.
pub async fn sync_all<A: ScaleApi + Sync, S: MetricSource>(
    api: &A,
    state: &ClusterState,
    source: &S,
    memory: &mut HashMap<ObjectKey, Memory>,
    settings: &ControllerSettings,
    now: Timestamp,
) -> SyncStats {
    let started = Instant::now();
    let queries_before = source.requests_issued();
    let policies: Vec<(&ObjectKey, &ScalingPolicyArc)> = state.scaling_policies.iter().collect();
    let wanted: Vec<(&str, &weir_crds::scaling_policy::ScalingPolicySpec)> = policies
        .iter()
        .map(|(key, p)| (key.namespace.as_deref().unwrap_or("default"), &p.spec))
        .collect();
    let results = source.fetch(&wanted, now).await;
    let results = &results;
    let remembered: &HashMap<ObjectKey, Memory> = memory;
    // Futures built up front (not in a stream's closure) keep their lifetimes concrete,
    // so the whole sync is `Send` for a spawned task.
    let reconciles: Vec<_> = policies
        .into_iter()
        .map(|(key, policy)| {
            reconcile_one(
                api, state, source, results, remembered, settings, now, key, policy,
            )
        })
        .collect();
    let outcomes: Vec<Outcome> = stream::iter(reconciles)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut stats = SyncStats {
        policies: outcomes.len(),
        ..SyncStats::default()
    };
    let mut next = HashMap::with_capacity(outcomes.len());
    for Outcome {
        key,
        memory: remembered,
        rescaled,
        error,
    } in outcomes
    {
        stats.rescaled += usize::from(rescaled);
        stats.errors += usize::from(error);
        next.insert(key, remembered);
    }
    *memory = next;
    stats.queries = source.requests_issued() - queries_before;
    stats.duration = started.elapsed();
    stats
}

type ScalingPolicyArc = std::sync::Arc<weir_crds::ScalingPolicy>;

struct Outcome {
    key: ObjectKey,
    memory: Memory,
    rescaled: bool,
    error: bool,
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_one<A: ScaleApi + Sync, S: MetricSource>(
    api: &A,
    state: &ClusterState,
    source: &S,
    results: &S::Batch,
    remembered: &HashMap<ObjectKey, Memory>,
    settings: &ControllerSettings,
    now: Timestamp,
    key: &ObjectKey,
    policy: &ScalingPolicyArc,
) -> Outcome {
    let namespace = key.namespace.as_deref().unwrap_or("default");
    let scale = api.get_scale(namespace, &policy.spec.target_ref).await;
    let pods: Vec<Pod> = match &scale {
        Ok(scale) => target_pods(state, namespace, scale.selector.as_deref()),
        Err(_) => Vec::new(),
    };
    let metrics = effective_metrics(&policy.spec);
    let readings = source.readings(results, namespace, &metrics, &pods);
    let memory = remembered.get(key).cloned().unwrap_or_default();
    let planned = plan(&PolicyInput {
        policy,
        scale: &scale,
        pods: &pods,
        readings: &readings,
        memory: &memory,
        settings,
        now,
    });
    let previous = scale.as_ref().ok().map(|s| s.spec_replicas);
    let rescaling = planned.scale_to.is_some();
    let done = apply(api, policy, planned, previous, now).await;
    Outcome {
        key: key.clone(),
        memory: done.plan.memory,
        rescaled: rescaling && done.rescale_error.is_none(),
        error: scale.is_err() || done.rescale_error.is_some(),
    }
}

/// The pods of a target: those in `namespace` matching its scale's selector.
pub fn target_pods(state: &ClusterState, namespace: &str, selector: Option<&str>) -> Vec<Pod> {
    let Some(selector) = selector.and_then(|s| parse_selector(s).ok()) else {
        return Vec::new();
    };
    let empty = BTreeMap::new();
    state
        .pods
        .in_namespace(namespace)
        .filter(|pod| selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)))
        .map(|pod| core_pod(pod))
        .collect()
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Timestamp {
    t.0
}

/// What the decision needs of a Kubernetes Pod.
pub fn core_pod(pod: &KubePod) -> Pod {
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let spec = pod.spec.as_ref();
    let restartable_init = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let containers = spec
        .map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .chain(restartable_init)
        .map(|c| Container {
            name: c.name.clone(),
            requests: c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|requests| {
                    requests
                        .iter()
                        .filter_map(|(name, q)| {
                            let milli = q.0.parse::<Quantity>().ok()?.to_milli().ok()?;
                            Some((name.clone(), i64::try_from(milli).ok()?))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Pod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready: ready_condition.map(|c| c.status == "True"),
        start_time: status.and_then(|s| s.start_time.as_ref()).map(time),
        ready_since: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map(time),
        containers,
    }
}
