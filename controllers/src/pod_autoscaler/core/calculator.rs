//! Replica counts per metric, as kubernetes `pkg/controller/podautoscaler/replica_calculator.go`
//! computes them. Values are integer milli-units and the integer divisions are upstream's,
//! so ratios (and so decisions) come out exactly as HPA's.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{ControllerSettings, Pod, PodPhase};

/// One pod's sample of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    /// The value, in milli-units.
    pub milli: i64,
    /// When it was taken.
    pub timestamp: Timestamp,
    /// The window it was averaged over.
    pub window: SignedDuration,
}

/// Samples by pod name. Names are borrowed from the reading: a decision copies no names
/// (the simulator makes hundreds of thousands of decisions).
pub type Samples<'a> = BTreeMap<&'a str, PodSample>;

/// The ratio band within which no scaling happens: `[1 - down, 1 + up]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Below 1.
    pub down: f64,
    /// Above 1.
    pub up: f64,
}

impl Tolerances {
    /// Whether `ratio` is close enough to 1 to do nothing.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

pub(crate) const NO_PODS: &str = "no pods returned by selector while calculating replica count";
const NO_READY_METRICS: &str = "did not receive metrics for targeted pods (pods might be unready)";

/// Pods sorted as upstream's `groupPods` sorts them.
#[derive(Debug, Default)]
struct PodGroups<'a> {
    ready: usize,
    unready: BTreeSet<&'a str>,
    missing: BTreeSet<&'a str>,
    ignored: BTreeSet<&'a str>,
}

/// Deleted, Failed and Succeeded pods are ignored; Pending pods are unready; pods without a
/// sample are missing. For CPU, a pod is also unready while it starts: within the CPU
/// initialization period if it is not Ready or its sample predates a full window since it
/// became Ready; after it, if it is not Ready and never was (its readiness flipped within
/// the initial readiness delay of its start).
fn group_pods<'a>(
    pods: &'a [Pod],
    metrics: &Samples<'_>,
    cpu: bool,
    settings: &ControllerSettings,
    now: Timestamp,
) -> PodGroups<'a> {
    let mut groups = PodGroups::default();
    for pod in pods {
        if pod.deleting || matches!(pod.phase, PodPhase::Failed | PodPhase::Succeeded) {
            groups.ignored.insert(pod.name.as_str());
            continue;
        }
        if pod.phase == PodPhase::Pending {
            groups.unready.insert(pod.name.as_str());
            continue;
        }
        let Some(sample) = metrics.get(pod.name.as_str()) else {
            groups.missing.insert(pod.name.as_str());
            continue;
        };
        if cpu {
            let unready = match (pod.ready, pod.ready_since, pod.start_time) {
                (Some(ready), Some(since), Some(start)) => {
                    if start + settings.cpu_initialization_period > now {
                        !ready || sample.timestamp < since + sample.window
                    } else {
                        !ready && start + settings.initial_readiness_delay > since
                    }
                }
                // No Ready condition, or no start time.
                _ => true,
            };
            if unready {
                groups.unready.insert(pod.name.as_str());
                continue;
            }
        }
        groups.ready += 1;
    }
    groups
}

/// Groups the pods and keeps the samples of the ready ones (upstream's preamble of both
/// calculations); an error when there are no pods or no ready samples.
fn usable_samples<'a>(
    pods: &'a [Pod],
    mut metrics: Samples<'a>,
    cpu: bool,
    settings: &ControllerSettings,
    now: Timestamp,
) -> Result<(PodGroups<'a>, Samples<'a>), String> {
    if pods.is_empty() {
        return Err(NO_PODS.into());
    }
    let groups = group_pods(pods, &metrics, cpu, settings, now);
    metrics.retain(|pod, _| !groups.ignored.contains(pod) && !groups.unready.contains(pod));
    if metrics.is_empty() {
        return Err(NO_READY_METRICS.into());
    }
    Ok((groups, metrics))
}

/// Requests of `resource` per pod (all containers, or the named one), in milli-units.
pub(crate) fn pod_requests<'a>(
    pods: &'a [Pod],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<&'a str, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let mut sum = 0i64;
        for c in &pod.containers {
            if container.is_none_or(|name| name == c.name) {
                let request = c.requests.get(resource).ok_or_else(|| {
                    format!(
                        "missing request for {resource} in container {} of Pod {}",
                        c.name, pod.name
                    )
                })?;
                sum += request;
            }
        }
        requests.insert(pod.name.as_str(), sum);
    }
    Ok(requests)
}

/// (ratio, utilization percent, average raw value) over the pods with both a sample and a
/// request, as upstream's `GetResourceUtilizationRatio`.
fn utilization_ratio(
    metrics: &Samples<'_>,
    requests: &BTreeMap<&str, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut total, mut requested, mut entries) = (0i64, 0i64, 0i64);
    for (pod, sample) in metrics {
        if let Some(request) = requests.get(pod) {
            // Saturating: values are capped at i64 (as upstream's), so sums may reach it.
            total = total.saturating_add(sample.milli);
            requested = requested.saturating_add(*request);
            entries += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(total.saturating_mul(100) / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        total / entries,
    ))
}

/// (ratio, average) as upstream's `GetMetricUsageRatio`.
fn usage_ratio(metrics: &Samples<'_>, target_milli: i64) -> (f64, i64) {
    let total = metrics
        .values()
        .fold(0i64, |sum, s| sum.saturating_add(s.milli));
    let count = i64::try_from(metrics.len()).unwrap_or(i64::MAX).max(1);
    let usage = total / count;
    (usage as f64 / target_milli as f64, usage)
}

fn ceil_replicas(value: f64) -> i32 {
    // Saturating: a huge ratio clamps at i32::MAX and the bounds take over.
    value.ceil() as i32
}

/// A Resource or ContainerResource metric with a Utilization target.
#[derive(Clone, Debug, PartialEq)]
pub struct UtilizationResult {
    /// Proposed replicas.
    pub replicas: i32,
    /// Percent of requests.
    pub utilization: i32,
    /// Average value per pod, in milli-units.
    pub raw_milli: i64,
    /// The ratio to the target.
    pub ratio: f64,
    /// Replicas needed at the target, unrounded (ratio × pods with samples).
    pub demand: f64,
}

/// Upstream's `GetResourceReplicas`: utilization of requests, with the rebalancing of
/// missing and unready pods.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas<'a>(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    pods: &'a [Pod],
    metrics: Samples<'a>,
    tolerances: Tolerances,
    settings: &ControllerSettings,
    now: Timestamp,
) -> Result<UtilizationResult, String> {
    let (groups, metrics) = usable_samples(pods, metrics, resource == "cpu", settings, now)?;
    let requests = pod_requests(pods, container, resource)?;
    let (ratio, utilization, raw_milli) =
        utilization_ratio(&metrics, &requests, target_utilization)?;
    let demand = ratio * metrics.len() as f64;
    let result = |replicas| UtilizationResult {
        replicas,
        utilization,
        raw_milli,
        ratio,
        demand,
    };
    // Missing pods: max(100 %, target) of their request on the way down, 0 on the way up.
    let fallback = i64::from(target_utilization.max(100));
    let missing = |pod: &str| -> Option<i64> {
        let request = requests.get(pod).copied().unwrap_or(0);
        (ratio < 1.0)
            .then_some(request * fallback / 100)
            .or((ratio > 1.0).then_some(0))
    };
    let replicas = rebalance(
        current,
        ratio,
        &groups,
        metrics,
        missing,
        tolerances,
        |metrics| utilization_ratio(metrics, &requests, target_utilization).map(|(r, _, _)| r),
        now,
    )?;
    Ok(result(replicas))
}

/// Upstream's shared tail of both calculations. Without missing pods, and without unready
/// ones while scaling up, the ratio × ready pods decides (or nothing, within tolerance).
/// Otherwise missing pods are assumed at `missing(pod)` (none: left out), unready pods at 0
/// while scaling up, and the ratio is recomputed; the change is dropped if the new ratio
/// lands within tolerance, flips direction, or the count would move against it.
#[allow(clippy::too_many_arguments)]
fn rebalance<'a>(
    current: i32,
    ratio: f64,
    groups: &PodGroups<'a>,
    mut metrics: Samples<'a>,
    missing: impl Fn(&str) -> Option<i64>,
    tolerances: Tolerances,
    recompute: impl Fn(&Samples<'a>) -> Result<f64, String>,
    now: Timestamp,
) -> Result<i32, String> {
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok(current);
        }
        return Ok(ceil_replicas(ratio * groups.ready as f64));
    }
    for pod in &groups.missing {
        if let Some(value) = missing(pod) {
            metrics.insert(*pod, assumed(value, now));
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(*pod, assumed(0, now));
        }
    }
    let new_ratio = recompute(&metrics)?;
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(current);
    }
    let replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(current);
    }
    Ok(replicas)
}

fn assumed(milli: i64, now: Timestamp) -> PodSample {
    PodSample {
        milli,
        timestamp: now,
        window: SignedDuration::ZERO,
    }
}

/// A per-pod metric averaged over pods (Pods metrics, and Resource with AverageValue).
#[derive(Clone, Debug, PartialEq)]
pub struct AverageResult {
    /// Proposed replicas.
    pub replicas: i32,
    /// Average value per pod, in milli-units.
    pub usage_milli: i64,
    /// The ratio to the target.
    pub ratio: f64,
    /// Replicas needed at the target, unrounded (ratio × pods with samples).
    pub demand: f64,
}

/// Upstream's `calcPlainMetricReplicas`.
#[allow(clippy::too_many_arguments)]
pub fn plain_replicas<'a>(
    current: i32,
    target_milli: i64,
    cpu: bool,
    pods: &'a [Pod],
    metrics: Samples<'a>,
    tolerances: Tolerances,
    settings: &ControllerSettings,
    now: Timestamp,
) -> Result<AverageResult, String> {
    let (groups, metrics) = usable_samples(pods, metrics, cpu, settings, now)?;
    let (ratio, usage_milli) = usage_ratio(&metrics, target_milli);
    let demand = ratio * metrics.len() as f64;
    let result = |replicas| AverageResult {
        replicas,
        usage_milli,
        ratio,
        demand,
    };
    // Missing pods: at the target on the way down, 0 on the way up, and left out when
    // the ready pods are exactly at the target (current upstream: neither branch applies).
    let missing = |_: &str| {
        (ratio < 1.0)
            .then_some(target_milli)
            .or((ratio > 1.0).then_some(0))
    };
    let replicas = rebalance(
        current,
        ratio,
        &groups,
        metrics,
        missing,
        tolerances,
        |metrics| Ok(usage_ratio(metrics, target_milli).0),
        now,
    )?;
    Ok(result(replicas))
}

/// Upstream's `getReadyPodsCount`: Running pods whose Ready condition is true.
fn ready_pods(pods: &[Pod]) -> Result<usize, String> {
    if pods.is_empty() {
        return Err(NO_PODS.into());
    }
    Ok(pods.iter().filter(|p| p.is_ready()).count())
}

/// Upstream's `getUsageRatioReplicaCount`, for Value targets (Object, External,
/// Prometheus): from zero replicas, `ceil(ratio)`; otherwise ratio × ready pods.
pub fn value_replicas(
    current: i32,
    ratio: f64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<i32, String> {
    if current == 0 {
        return Ok(ceil_replicas(ratio));
    }
    if tolerances.is_within(ratio) {
        return Ok(current);
    }
    let ready = ready_pods(pods).map_err(|e| format!("unable to calculate ready pods: {e}"))?;
    Ok(ceil_replicas(ratio * ready as f64))
}

/// Upstream's `Get{Object,External}PerPodMetricReplicas`, for AverageValue targets of a
/// single value: the ratio is to target × the scale's status replicas; the proposal is
/// `ceil(value / target)`. Returns (replicas, ratio, per-pod usage in milli-units).
pub fn per_pod_value_replicas(
    status_replicas: i32,
    usage_milli: i64,
    target_milli: i64,
    tolerances: Tolerances,
) -> (i32, f64, i64) {
    let ratio = usage_milli as f64 / (target_milli as f64 * f64::from(status_replicas));
    let replicas = if tolerances.is_within(ratio) {
        status_replicas
    } else {
        ceil_replicas(usage_milli as f64 / target_milli as f64)
    };
    let per_pod = if status_replicas > 0 {
        (usage_milli as f64 / f64::from(status_replicas)).ceil() as i64
    } else {
        usage_milli
    };
    (replicas, ratio, per_pod)
}
