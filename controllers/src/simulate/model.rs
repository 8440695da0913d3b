//! The replay: a demand trace through the pod autoscaler's real decision core
//! ([`controller::decide`], what `plan` decides with: the `recommend` path with its
//! history, behavior and forecast; only status and events are left out),
//! against a model of pods that take `startup` to become ready. Pure and deterministic.
//!
//! Every sync at time `t` the autoscaler sees the load averaged over `[t - window, t)`
//! (only the past), as the policy's first metric: Pods/AverageValue spread over the ready
//! pods (pods still starting have no sample, as a new pod has none, so HPA's rules for
//! missing pods apply), Object or External Value/AverageValue the total. A pod asked for
//! is ready `startup` later; removed pods leave at once (starting ones first, as a
//! ReplicaSet removes unready pods first). Between syncs nothing changes but the load.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_crds::scaling_policy::{MetricSourceType, ScalingPolicy, ScalingPolicySpec};

use super::trace::Trace;
use crate::pod_autoscaler::{
    Container, ControllerSettings, MetricReading, Pod, PodPhase, PodReading,
    controller::{self, Memory, PolicyInput, Scale},
};

/// The model's knobs (the same for every policy compared).
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Requests per second one ready pod serves.
    pub capacity_per_pod: f64,
    /// From asked for to ready.
    pub startup_seconds: u64,
    /// Between decisions.
    pub sync_seconds: u64,
    /// What the metric averages over.
    pub metric_window_seconds: u64,
    /// Replicas at the start (default: the policy's minimum, at least 1).
    pub initial_replicas: Option<i32>,
}

/// One sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Seconds from the start.
    pub time: u64,
    /// Load offered now (requests per second).
    pub load: f64,
    /// What the metric showed (the window's average).
    pub observed: f64,
    /// Replicas the autoscaler set.
    pub desired: i32,
    /// Ready pods.
    pub ready: i32,
    /// Ready plus starting pods.
    pub running: i32,
    /// Ready × capacity per pod.
    pub capacity: f64,
    /// The forecast's proposal, when the policy forecasts.
    pub forecast_replicas: Option<i32>,
}

/// What the replay measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Minutes when the load exceeded ready × capacity.
    pub under_provisioned_minutes: f64,
    /// Replica-hours of ready and starting pods.
    pub replica_hours: f64,
    /// Rescales.
    pub scale_events: u32,
    /// Median of load / capacity over the syncs with ready pods.
    pub utilization_p50: f64,
    /// 99th percentile of the same.
    pub utilization_p99: f64,
    /// Decisions made.
    pub decisions: usize,
}

/// One policy's replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// Per sync.
    pub rows: Vec<Row>,
    /// The totals.
    pub summary: Summary,
}

/// Why a policy cannot be replayed.
pub fn check(spec: &ScalingPolicySpec) -> Result<(), String> {
    let first = spec
        .metrics
        .first()
        .ok_or("spec.metrics: the policy has no metric to replay the trace as")?;
    match first.type_ {
        MetricSourceType::Pods | MetricSourceType::Object | MetricSourceType::External => Ok(()),
        other => Err(format!(
            "spec.metrics[0].type: {other:?} is not modelled; the trace is replayed as a Pods, \
             Object or External metric"
        )),
    }
}

struct Cluster {
    /// Per pod: when it is (or was) ready.
    ready_at: Vec<u64>,
    pods: Vec<Pod>,
    next_name: usize,
    /// Pods were added, removed or became ready since the reading was last rebuilt.
    changed: bool,
}

impl Cluster {
    fn add(&mut self, now: u64, ready_at: u64) {
        self.ready_at.push(ready_at);
        self.pods.push(Pod {
            name: format!("pod-{}", self.next_name),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(ready_at <= now),
            start_time: Some(at(now)),
            ready_since: (ready_at <= now).then(|| at(ready_at)),
            containers: vec![Container::default()],
        });
        self.next_name += 1;
        self.changed = true;
    }

    /// Removes `n` pods, the latest to become ready first.
    fn remove(&mut self, n: usize) {
        for _ in 0..n.min(self.pods.len()) {
            let latest = (0..self.ready_at.len())
                .max_by_key(|&i| (self.ready_at[i], i))
                .unwrap_or(0);
            self.ready_at.swap_remove(latest);
            self.pods.swap_remove(latest);
            self.changed = true;
        }
    }

    /// Sets `readings[0]` to `milli` for every ready pod (and only those), at `now`.
    /// Call after [`Cluster::refresh`] at `now`.
    fn report(
        &mut self,
        readings: &mut [MetricReading],
        milli: i64,
        now: u64,
        window: SignedDuration,
    ) {
        let Some(MetricReading::Pods(map)) = readings.first_mut() else {
            return;
        };
        if std::mem::take(&mut self.changed) {
            map.clear();
            for (pod, _) in self
                .pods
                .iter()
                .zip(&self.ready_at)
                .filter(|(_, r)| **r <= now)
            {
                map.insert(
                    pod.name.clone(),
                    PodReading {
                        milli,
                        containers: Default::default(),
                        timestamp: at(now),
                        window,
                    },
                );
            }
            return;
        }
        let timestamp = at(now);
        for reading in map.values_mut() {
            reading.milli = milli;
            reading.timestamp = timestamp;
        }
    }

    fn refresh(&mut self, now: u64) -> i32 {
        let mut ready = 0;
        for (pod, ready_at) in self.pods.iter_mut().zip(&self.ready_at) {
            let is_ready = *ready_at <= now;
            if is_ready && pod.ready != Some(true) {
                pod.ready = Some(true);
                pod.ready_since = Some(at(*ready_at));
                self.changed = true;
            }
            ready += i32::from(is_ready);
        }
        ready
    }
}

fn at(seconds: u64) -> Timestamp {
    // A fixed epoch keeps replays reproducible and timestamps in range.
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + seconds as i64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What one decision of a replay looked at, and what it decided: enough to ask
/// `weir recommend replicas` the same question.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    /// The policy decided with (its target in the replay's units, see [`fine_grained`]).
    pub policy: &'a ScalingPolicy,
    /// When.
    pub now: Timestamp,
    /// The target's `spec.replicas` before the decision.
    pub current_replicas: i32,
    /// Pods that exist (ready and starting).
    pub status_replicas: i32,
    /// The pods.
    pub pods: &'a [Pod],
    /// The metric reading.
    pub readings: &'a [MetricReading],
    /// What the controller remembered before the decision.
    pub history: &'a crate::pod_autoscaler::History,
    /// What it decided.
    pub desired: i32,
}

/// Replays `trace` through `policy`. `on_progress` gets the fraction done now and then.
pub fn replay(
    policy: &ScalingPolicy,
    trace: &Trace,
    options: &ModelOptions,
    on_progress: impl FnMut(f64),
) -> Result<Replay, String> {
    replay_observed(policy, trace, options, on_progress, |_| {})
}

/// [`replay`], showing `on_decision` every decision with its inputs.
pub fn replay_observed(
    policy: &ScalingPolicy,
    trace: &Trace,
    options: &ModelOptions,
    mut on_progress: impl FnMut(f64),
    mut on_decision: impl FnMut(&Decision<'_>),
) -> Result<Replay, String> {
    check(&policy.spec)?;
    let (fine, unit) = fine_grained(policy);
    let policy = &fine;
    let per_pod = policy.spec.metrics[0].type_ == MetricSourceType::Pods;
    let settings = ControllerSettings::default();
    let sync = options.sync_seconds.max(1);
    let mut cluster = Cluster {
        ready_at: Vec::new(),
        pods: Vec::new(),
        next_name: 0,
        changed: true,
    };
    let initial = options
        .initial_replicas
        .unwrap_or(policy.spec.min_replicas)
        .max(1);
    for _ in 0..initial {
        cluster.add(0, 0);
    }
    let mut desired = initial;
    let mut memory = Memory::default();
    // One reading, updated in place every sync (a month of syncs builds no maps).
    let mut readings = vec![if per_pod {
        MetricReading::Pods(Default::default())
    } else {
        MetricReading::Value(0)
    }];
    let window = SignedDuration::from_secs(options.metric_window_seconds as i64);
    let mut rows = Vec::with_capacity((trace.end / sync) as usize + 1);
    let (mut under, mut pod_seconds, mut events) = (0.0, 0.0, 0u32);
    let mut utilization = Vec::with_capacity(rows.capacity());
    let total = trace.end.max(1) as f64;
    let mut t = 0;
    while t < trace.end {
        let ready = cluster.refresh(t);
        let observed = trace.average_before(t, options.metric_window_seconds);
        if per_pod {
            let share = if ready > 0 {
                observed / f64::from(ready)
            } else {
                0.0
            };
            cluster.report(&mut readings, (share * unit) as i64, t, window);
        } else {
            readings[0] = MetricReading::Value((observed * unit) as i64);
        }
        let scale = Scale {
            spec_replicas: desired,
            status_replicas: cluster.pods.len() as i32,
            selector: None,
        };
        let read = Ok(scale.clone());
        let decided = controller::decide(
            &PolicyInput {
                policy,
                scale: &read,
                pods: &cluster.pods,
                readings: &readings,
                memory: &memory,
                settings: &settings,
                now: at(t),
            },
            &scale,
        );
        on_decision(&Decision {
            policy,
            now: at(t),
            current_replicas: desired,
            status_replicas: scale.status_replicas,
            pods: &cluster.pods,
            readings: &readings,
            history: &memory.history,
            desired: decided.decision.desired_replicas,
        });
        memory = decided.memory;
        let forecast_replicas = decided
            .decision
            .forecast
            .as_ref()
            .map(|f| f.proposed_replicas);
        if let Some(to) = decided.scale_to {
            controller::record_rescale(&mut memory, desired, to, at(t));
            events += 1;
            let running = cluster.pods.len() as i32;
            if to > running {
                for _ in running..to {
                    cluster.add(t, t + options.startup_seconds);
                }
            } else {
                cluster.remove((running - to) as usize);
            }
            desired = to;
        }
        let ready = cluster.refresh(t);
        let load = trace.rate_at(t);
        let capacity = f64::from(ready) * options.capacity_per_pod;
        let step = sync.min(trace.end - t) as f64;
        if load > capacity {
            under += step / 60.0;
        }
        pod_seconds += cluster.pods.len() as f64 * step;
        if capacity > 0.0 {
            utilization.push(load / capacity);
        }
        rows.push(Row {
            time: t,
            load,
            observed,
            desired,
            ready,
            running: cluster.pods.len() as i32,
            capacity,
            forecast_replicas,
        });
        if rows.len() % 4096 == 0 {
            on_progress(t as f64 / total);
        }
        t += sync;
    }
    on_progress(1.0);
    utilization.sort_by(f64::total_cmp);
    let summary = Summary {
        under_provisioned_minutes: under,
        replica_hours: pod_seconds / 3600.0,
        scale_events: events,
        utilization_p50: percentile(&utilization, 0.5),
        utilization_p99: percentile(&utilization, 0.99),
        decisions: rows.len(),
    };
    Ok(Replay { rows, summary })
}

/// The policy with its first metric's target in units fine enough that a per-pod share of
/// the load keeps its precision in milli-units (a target of 3.5m requests per second per
/// pod would otherwise see shares of 0.6m read as 0), and the milli-units per request per
/// second the readings are then given in. Ratios, and so decisions, are unchanged.
pub fn fine_grained(policy: &ScalingPolicy) -> (ScalingPolicy, f64) {
    let mut fine = policy.clone();
    let Some(metric) = fine.spec.metrics.first_mut() else {
        return (fine, 1000.0);
    };
    let target = match metric.type_ {
        MetricSourceType::Pods => metric.pods.as_mut().map(|m| &mut m.target),
        MetricSourceType::Object => metric.object.as_mut().map(|m| &mut m.target),
        MetricSourceType::External => metric.external.as_mut().map(|m| &mut m.target),
        _ => None,
    };
    let Some(target) = target else {
        return (fine, 1000.0);
    };
    // In nano-units, the finest a quantity is written in: milli-units would round a
    // target of 1470u up to 2m.
    let smallest = [&target.value, &target.average_value]
        .into_iter()
        .flatten()
        .filter_map(|q| q.to_scaled(9).ok())
        .filter(|n| *n > 0)
        .min()
        .unwrap_or(1_000_000_000_000);
    let mut factor: i128 = 1;
    while smallest * factor < 1_000_000_000_000 && factor < 1_000_000_000 {
        factor *= 10;
    }
    for q in [&mut target.value, &mut target.average_value]
        .into_iter()
        .flatten()
    {
        if let Ok(nano) = q.to_scaled(9) {
            let milli = nano * factor;
            *q = weir_crds::Quantity::from_milli((milli + 999_999).div_euclid(1_000_000));
        }
    }
    (fine, 1000.0 * factor as f64)
}

/// The same policy as HPA would run it: forecast off, HPA's default behavior.
pub fn as_hpa(policy: &ScalingPolicy) -> ScalingPolicy {
    let mut hpa = policy.clone();
    hpa.spec.forecast = None;
    hpa.spec.behavior = None;
    hpa.spec.fallback = None;
    hpa
}
