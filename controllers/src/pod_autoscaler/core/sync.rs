//! One sync of every ScalingPolicy: one batched metrics fetch shared by all policies, then
//! per policy (a bounded number at a time) read the scale, select the pods, plan and apply.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::{
    api::core::v1::Pod as KubePod,
    jiff::{SignedDuration, Timestamp},
};
use weir_crds::Quantity;
use weir_store::{ClusterState, ObjectKey, selector_matches};

use super::{
    Container, ControllerSettings, MetricReading, Pod, PodPhase,
    controller::{Memory, PolicyInput, ScaleApi, apply, forecasts_fit, parse_selector, plan},
    effective_metrics,
    forecast::Forecaster,
    forecast_tuning, observed_at,
    source::{HistoryRange, MetricSource, NoHistory},
};
use tracing::{info, warn};
use weir_crds::scaling_policy::{Forecast, MetricSpec, ScaleTargetRef};

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
    /// Metrics whose forecast started from the source's history (see [`seed_forecasts`]).
    pub histories_read: usize,
    /// Metrics whose forecast started without history (the source keeps none, or the
    /// query failed): it learns from syncs.
    pub histories_unavailable: usize,
    /// Wall time.
    pub duration: Duration,
}

/// Syncs every policy in `state` that is due. `memory` is what the reconciler remembers per
/// policy; entries of deleted policies are dropped.
pub async fn sync_all<A: ScaleApi + Sync, S: MetricSource>(
    api: &A,
    state: &ClusterState,
    source: &S,
    memory: &mut HashMap<ObjectKey, Memory>,
    settings: &ControllerSettings,
    now: Timestamp,
) -> SyncStats {
    sync_due(api, state, source, memory, settings, now, None).await
}

/// Whether a policy last synced at `last` is due at `now`: its own `syncPeriodSeconds`, else
/// `default_period`, have passed (with half a second of slack for the loop's ticks).
pub fn is_due(
    spec: &weir_crds::scaling_policy::ScalingPolicySpec,
    last: Option<Timestamp>,
    default_period: SignedDuration,
    now: Timestamp,
) -> bool {
    let period = spec
        .sync_period_seconds
        .map_or(default_period, |s| SignedDuration::from_secs(i64::from(s)));
    last.is_none_or(|last| now.duration_since(last) + SignedDuration::from_millis(500) >= period)
}

/// Like [`sync_all`], but with `default_period`, only the policies that are due
/// ([`is_due`]); the others keep what they remember.
#[allow(clippy::too_many_arguments)]
pub async fn sync_due<A: ScaleApi + Sync, S: MetricSource>(
    api: &A,
    state: &ClusterState,
    source: &S,
    memory: &mut HashMap<ObjectKey, Memory>,
    settings: &ControllerSettings,
    now: Timestamp,
    default_period: Option<SignedDuration>,
) -> SyncStats {
    let started = Instant::now();
    let queries_before = source.requests_issued();
    let mut next: HashMap<ObjectKey, Memory> = HashMap::with_capacity(state.scaling_policies.len());
    let policies: Vec<(&ObjectKey, &ScalingPolicyArc)> = state
        .scaling_policies
        .iter()
        .filter(|(key, policy)| {
            let Some(period) = default_period else {
                return true;
            };
            let remembered = memory.get(*key);
            if is_due(
                &policy.spec,
                remembered.and_then(|m| m.last_synced),
                period,
                now,
            ) {
                return true;
            }
            // Not due: keep what it remembers.
            next.insert((*key).clone(), remembered.cloned().unwrap_or_default());
            false
        })
        .collect();
    if policies.is_empty() {
        *memory = next;
        return SyncStats::default();
    }
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
    for Outcome {
        key,
        memory: remembered,
        rescaled,
        error,
        histories,
    } in outcomes
    {
        stats.rescaled += usize::from(rescaled);
        stats.errors += usize::from(error);
        stats.histories_read += histories.0;
        stats.histories_unavailable += histories.1;
        next.insert(
            key,
            Memory {
                last_synced: Some(now),
                ..remembered
            },
        );
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
    /// Forecast histories (read, unavailable) at this sync.
    histories: (usize, usize),
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
    let mut memory = remembered.get(key).cloned().unwrap_or_default();
    let mut histories = (0, 0);
    if let Some(forecast) = &policy.spec.forecast
        && !forecasts_fit(&memory, forecast, metrics.len())
    {
        let seeded = seed_forecasts(
            source,
            Seeding {
                policy: key,
                forecast,
                target: &policy.spec.target_ref,
                metrics: &metrics,
                pods: &pods,
                readings: &readings,
                now,
            },
        )
        .await;
        histories = (seeded.read, seeded.unavailable);
        memory.forecasts = seeded.forecasts;
    }
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
        histories,
    }
}

/// What [`seed_forecasts`] looks at.
struct Seeding<'a> {
    policy: &'a ObjectKey,
    forecast: &'a Forecast,
    target: &'a ScaleTargetRef,
    metrics: &'a [MetricSpec],
    pods: &'a [Pod],
    readings: &'a [MetricReading],
    now: Timestamp,
}

/// Forecasters started from history, and how many metrics had it.
struct Seeded {
    /// One per metric, in [`effective_metrics`] order.
    forecasts: Vec<Forecaster>,
    /// Metrics whose history was read.
    read: usize,
    /// Metrics without it.
    unavailable: usize,
}

/// Starts a policy's forecasters from the metric source's history over
/// `forecast.historySeconds` (a Prometheus range query per metric,
/// [`super::history`]), so a new policy, a restarted controller or a new leader forecasts
/// from its first sync instead of after days of syncs. The points are placed where live
/// readings go ([`observed_at`]), and stop before this sync's own reading. A metric
/// whose history cannot be read starts empty and learns from syncs; that is logged.
async fn seed_forecasts<S: MetricSource>(source: &S, seeding: Seeding<'_>) -> Seeded {
    let Seeding {
        policy,
        forecast,
        target,
        metrics,
        pods,
        readings,
        now,
    } = seeding;
    let mut seeded = Seeded {
        forecasts: Vec::with_capacity(metrics.len()),
        read: 0,
        unavailable: 0,
    };
    let tuning = forecast_tuning(forecast, pods, readings);
    let namespace = policy.namespace.as_deref().unwrap_or("default");
    for (metric, reading) in metrics.iter().zip(readings) {
        let mut forecaster = Forecaster::new(i64::from(forecast.history_seconds));
        let live = observed_at(now.as_second(), reading);
        let shift = now.as_second() - live;
        let range = HistoryRange {
            start: now - SignedDuration::from_secs(forecaster.history_seconds()),
            end: now,
            step_seconds: forecaster.step(),
        };
        match source
            .demand_history(namespace, target, metric, pods, range)
            .await
        {
            Ok(points) => {
                let points: Vec<(i64, f64)> = points
                    .into_iter()
                    .map(|(time, demand)| (time - shift, demand))
                    .filter(|(time, _)| *time < live)
                    .collect();
                forecaster.seed(&points, tuning);
                info!(policy = %policy, metric = %super::metric_name(metric), points = points.len(), buckets = forecaster.buckets(), "forecast history read");
                seeded.read += 1;
            }
            Err(NoHistory::Unsupported(reason)) => {
                info!(policy = %policy, metric = %super::metric_name(metric), %reason, "no forecast history; the forecast learns from syncs");
                seeded.unavailable += 1;
            }
            Err(NoHistory::Failed(reason)) => {
                warn!(policy = %policy, metric = %super::metric_name(metric), %reason, "forecast history not read; the forecast learns from syncs");
                seeded.unavailable += 1;
            }
        }
        seeded.forecasts.push(forecaster);
    }
    seeded
}

/// The pods of a target: those in `namespace` matching its scale's selector.
pub fn target_pods(state: &ClusterState, namespace: &str, selector: Option<&str>) -> Vec<Pod> {
    let Some(selector) = selector.and_then(|s| parse_selector(s).ok()) else {
        return Vec::new();
    };
    state
        .pods
        .in_namespace(namespace)
        .filter(|pod| selector_matches(&selector, pod.metadata.labels.as_ref()))
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
                            let milli = q.0.parse::<Quantity>().ok()?.to_milli_i64().ok()?;
                            Some((name.clone(), milli))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sync: &str) -> weir_crds::scaling_policy::ScalingPolicySpec {
        serde_yaml::from_str(&format!(
            "targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\nmaxReplicas: 3\n{sync}"
        ))
        .expect("spec")
    }

    #[test]
    fn a_policy_is_due_after_its_own_period_or_the_default() {
        let at = |s: &str| -> Timestamp { s.parse().expect("time") };
        let fifteen = SignedDuration::from_secs(15);
        let now = at("2026-11-22T10:00:30Z");
        assert!(is_due(&spec(""), None, fifteen, now), "never synced");
        assert!(is_due(
            &spec(""),
            Some(at("2026-11-22T10:00:15Z")),
            fifteen,
            now
        ));
        assert!(!is_due(
            &spec(""),
            Some(at("2026-11-22T10:00:20Z")),
            fifteen,
            now
        ));
        let minute = spec("syncPeriodSeconds: 60");
        assert!(!is_due(
            &minute,
            Some(at("2026-11-22T10:00:00Z")),
            fifteen,
            now
        ));
        assert!(is_due(
            &minute,
            Some(at("2026-11-22T09:59:30Z")),
            fifteen,
            now
        ));
        // Half a second of slack for the loop's one-second ticks.
        assert!(is_due(
            &spec(""),
            Some(at("2026-11-22T10:00:15.4Z")),
            fifteen,
            now
        ));
    }
}
