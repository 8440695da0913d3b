//! The pod autoscaler's decision core: a ScalingPolicy, the target's scale, its pods, the
//! metric readings and the history of past decisions → the replica count to set, why, and
//! the status conditions. Pure: no clients, no clock (`now` is an input).
//!
//! It follows kubernetes `pkg/controller/podautoscaler` (horizontal.go,
//! replica_calculator.go) rule for rule, so a policy converted from a
//! HorizontalPodAutoscaler decides as the HPA would ([`calculator`] per metric,
//! [`behavior`] for stabilization, rates and bounds). Weir adds scale to zero
//! (`minReplicas: 0` with Object, External or Prometheus metrics), `fallback` after
//! consecutive metric failures, and a pause switch.

pub mod behavior;
pub mod calculator;
pub mod controller;
pub mod forecast;
pub mod forecast_decision;
pub mod history;
pub mod queries;
pub mod seasonal;
pub mod source;
pub mod state;
pub mod sync;

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use weir_crds::{
    Quantity,
    scaling_policy::{
        FallbackAction, MetricSourceType, MetricSpec, MetricTarget, MetricTargetType,
        ResourceMetricSource, ScalingPolicySpec,
    },
};

use calculator::{PodSample, Tolerances};
pub use forecast_decision::{ForecastReport, forecast_lead, forecast_tuning, observed_at};
use forecast_decision::{forecast_decision, forecast_scale_up_unlimited};

/// A pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
pub enum PodPhase {
    /// Not yet running all containers.
    Pending,
    /// Running.
    Running,
    /// Ended successfully.
    Succeeded,
    /// Ended in failure.
    Failed,
    /// Unknown.
    Unknown,
}

/// A container's requests, in milli-units by resource name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    /// The container's name.
    pub name: String,
    /// Requests by resource (`cpu`, `memory`, ...), in milli-units.
    pub requests: BTreeMap<String, i64>,
}

/// What the decision needs to know of one of the target's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// Its phase.
    pub phase: PodPhase,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Its Ready condition; `None` when it has none.
    pub ready: Option<bool>,
    /// When it started.
    pub start_time: Option<Timestamp>,
    /// The Ready condition's last transition.
    pub ready_since: Option<Timestamp>,
    /// Its containers (and restartable init containers).
    pub containers: Vec<Container>,
}

impl Pod {
    /// Running with its Ready condition true (upstream's `getReadyPodsCount` counts these).
    pub fn is_ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready == Some(true)
    }
}

/// One pod's reading of a per-pod metric.
#[derive(Clone, Debug, PartialEq)]
pub struct PodReading {
    /// The pod's value, in milli-units.
    pub milli: i64,
    /// Per container, for ContainerResource metrics.
    pub containers: BTreeMap<String, i64>,
    /// When it was taken.
    pub timestamp: Timestamp,
    /// The window it was averaged over.
    pub window: SignedDuration,
}

/// What a metric source returned for one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricReading {
    /// Per-pod values (Resource, ContainerResource, Pods).
    Pods(BTreeMap<String, PodReading>),
    /// One value (Object, External, Prometheus), in milli-units.
    Value(i64),
    /// The source failed.
    Failed(String),
}

/// Past decisions the core needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Past recommendations (before stabilization), with when they were made.
    pub recommendations: Vec<(Timestamp, i32)>,
    /// Past scale events: when, and the change (positive up, negative down).
    pub scale_events: Vec<(Timestamp, i32)>,
    /// Syncs in a row, before this one, whose metrics all failed.
    pub consecutive_failures: u32,
}

/// The controller-wide settings, with kube-controller-manager's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: SignedDuration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: SignedDuration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).
    pub downscale_stabilization: SignedDuration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            cpu_initialization_period: SignedDuration::from_mins(5),
            initial_readiness_delay: SignedDuration::from_secs(30),
            downscale_stabilization: SignedDuration::from_mins(5),
            tolerance: 0.1,
        }
    }
}

/// Everything one decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The policy.
    pub spec: &'a ScalingPolicySpec,
    /// The target's `spec.replicas` (its scale subresource).
    pub current_replicas: i32,
    /// The target's `status.replicas`.
    pub status_replicas: i32,
    /// The time of the decision.
    pub now: Timestamp,
    /// The target's pods.
    pub pods: &'a [Pod],
    /// One reading per metric, in spec order (for the default CPU metric, one).
    pub readings: &'a [MetricReading],
    /// Past decisions.
    pub history: &'a History,
    /// Controller-wide settings.
    pub settings: &'a ControllerSettings,
    /// The policy is paused (`weir.io/paused: "true"`): replicas are left alone.
    pub paused: bool,
    /// Per metric (spec order), its demand history and model, for `forecast`.
    pub forecasts: &'a [forecast::Forecaster],
}

/// A condition as the decision reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConditionOut {
    /// AbleToScale, ScalingActive or ScalingLimited.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// HPA's reason.
    pub reason: &'static str,
    /// HPA's message.
    pub message: String,
}

impl ConditionOut {
    /// A condition.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ConditionOut {
            type_,
            status: if status { "True" } else { "False" },
            reason,
            message: message.into(),
        }
    }
}

/// The current value of a metric, as HPA's `MetricValueStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentValue {
    /// For Value targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    /// Per pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// Percent of requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
}

/// One metric's part in the decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricOutcome {
    /// HPA's name for the metric (e.g. `cpu resource utilization (percentage of request)`).
    pub metric: String,
    /// The source type.
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    /// The current value.
    pub current: CurrentValue,
    /// Current over target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The replica count this metric proposes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    /// Replicas this metric needs at its target, unrounded and without tolerance: what the
    /// forecast learns and projects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand: Option<f64>,
    /// Why it could not propose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    failure_reason: &'static str,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The replica count to set.
    pub desired_replicas: i32,
    /// The target's replica count now.
    pub current_replicas: i32,
    /// The largest valid proposal over the metrics, before stabilization and limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_replicas: Option<i32>,
    /// Per metric, in spec order.
    pub metrics: Vec<MetricOutcome>,
    /// What limited the result (ScalingLimited's reason when it is True).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<&'static str>,
    /// AbleToScale, ScalingActive, ScalingLimited.
    pub conditions: Vec<ConditionOut>,
    /// The recommendation to add to the history (`None`: nothing to record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<i32>,
    /// Every metric failed this sync (counts toward `fallback`).
    pub metrics_failed: bool,
    /// The fallback decided.
    pub fallback_active: bool,
    /// The error a controller reports (HPA's "invalid metrics ..."), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `forecast` in the policy: what scaling on the forecast gives, beside the plain
    /// decision (which `desiredReplicas` is unless the forecast is enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastReport>,
}

/// The metrics a policy scales on: its own, or HPA's default of CPU at 80 %.
pub fn effective_metrics(spec: &ScalingPolicySpec) -> Vec<MetricSpec> {
    if !spec.metrics.is_empty() {
        return spec.metrics.clone();
    }
    vec![MetricSpec {
        type_: MetricSourceType::Resource,
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: MetricTargetType::Utilization,
                value: None,
                average_value: None,
                average_utilization: Some(80),
            },
        }),
        container_resource: None,
        pods: None,
        object: None,
        external: None,
        prometheus: None,
    }]
}

/// The tolerances for `spec`: per direction from `behavior`, else the controller's.
pub fn tolerances(spec: &ScalingPolicySpec, settings: &ControllerSettings) -> Tolerances {
    let from = |rules: Option<&weir_crds::scaling_policy::ScalingRules>| {
        rules
            .and_then(|r| r.tolerance.as_ref())
            .and_then(|q| q.to_f64().ok())
            .unwrap_or(settings.tolerance)
    };
    let behavior = spec.behavior.as_ref();
    Tolerances {
        down: from(behavior.and_then(|b| b.scale_down.as_ref())),
        up: from(behavior.and_then(|b| b.scale_up.as_ref())),
    }
}

/// Decides.
pub fn recommend(input: &Input<'_>) -> Recommendation {
    let spec = input.spec;
    let current = input.current_replicas;
    let (min, max) = (spec.min_replicas, spec.max_replicas);
    let metrics = effective_metrics(spec);
    let tolerances = tolerances(spec, input.settings);
    let outcomes: Vec<MetricOutcome> = metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| match input.readings.get(i) {
            Some(reading) => metric_outcome(metric, reading, input, tolerances),
            None => metric_outcome(
                metric,
                &MetricReading::Failed("no reading for this metric".into()),
                input,
                tolerances,
            ),
        })
        .collect();
    let mut decision = Recommendation {
        desired_replicas: current,
        current_replicas: current,
        proposed_replicas: None,
        metrics: outcomes,
        limited_by: None,
        conditions: vec![ConditionOut::new(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )],
        record: None,
        metrics_failed: false,
        fallback_active: false,
        error: None,
        forecast: None,
    };
    let valid: Vec<&MetricOutcome> = decision
        .metrics
        .iter()
        .filter(|m| m.proposed_replicas.is_some())
        .collect();
    let failed: Vec<&MetricOutcome> = decision
        .metrics
        .iter()
        .filter(|m| m.error.is_some())
        .collect();
    decision.metrics_failed = valid.is_empty();

    if input.paused {
        decision.conditions.push(ConditionOut::new(
            "ScalingActive",
            false,
            "ScalingPaused",
            "the weir.io/paused annotation is set; replicas are left as they are",
        ));
        return decision;
    }
    if current == 0 && min != 0 {
        decision.desired_replicas = 0;
        decision.conditions.push(ConditionOut::new(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
        return decision;
    }
    if current > max || current < min {
        let (replicas, reason, message) = if current > max {
            (
                max,
                "TooManyReplicas",
                "Current number of replicas above Spec.MaxReplicas",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "Current number of replicas below Spec.MinReplicas",
            )
        };
        decision.desired_replicas = replicas;
        decision.limited_by = Some(reason);
        decision
            .conditions
            .push(ConditionOut::new("ScalingLimited", true, reason, message));
        return decision;
    }

    // computeReplicasForMetrics: the largest valid proposal; with a failed metric, only if
    // it does not scale down.
    let best = valid
        .iter()
        .filter_map(|m| m.proposed_replicas.map(|r| (r, m.metric.clone())))
        .fold(None::<(i32, String)>, |acc, (r, name)| match acc {
            Some((best, _)) if r <= best => acc,
            _ => Some((r, name)),
        });
    let first_failure = failed.first().map(|m| {
        (
            m.failure_reason,
            format!(
                "the HPA was unable to compute the replica count: {}",
                m.error.as_deref().unwrap_or_default()
            ),
        )
    });
    if !failed.is_empty() {
        decision.error = Some(format!(
            "invalid metrics ({} invalid out of {}), first error is: {}",
            failed.len(),
            decision.metrics.len(),
            failed[0].error.as_deref().unwrap_or_default()
        ));
    }
    let proposal = match (&best, &first_failure) {
        (Some((replicas, _)), Some(_)) if *replicas < current => None,
        (Some(best), _) => Some(best.clone()),
        (None, _) => None,
    };
    let Some((proposal, metric_name)) = proposal else {
        let (reason, message) = first_failure.unwrap_or((
            "FailedGetResourceMetric",
            "the HPA was unable to compute the replica count".into(),
        ));
        decision
            .conditions
            .push(ConditionOut::new("ScalingActive", false, reason, message));
        apply_fallback(&mut decision, input);
        return decision;
    };
    decision.conditions.push(ConditionOut::new(
        "ScalingActive",
        true,
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {metric_name}"),
    ));
    decision.proposed_replicas = Some(proposal);
    decision.record = Some(proposal);
    // `rise_limited`: false only for the forecast's proposal when the policy states no
    // `scaleUp` (see [`forecast_decision`]).
    let normalize = |proposal: i32, history: &History, rise_limited: bool| match &spec.behavior {
        Some(behavior_spec) => {
            let (up, down) =
                behavior::effective_rules(behavior_spec, input.settings.downscale_stabilization);
            let up = rise_limited.then_some(&up);
            behavior::with_behaviors(up, &down, current, proposal, min, max, history, input.now)
        }
        None => behavior::legacy(
            current,
            proposal,
            min,
            max,
            input.settings.downscale_stabilization,
            history,
            input.now,
            rise_limited,
        ),
    };
    let mut normalized = normalize(proposal, input.history, true);
    if let Some(settings) = &spec.forecast {
        let (report, forecast_proposal) = forecast_decision(settings, &decision, proposal, input);
        // Forecast-aware scale-down: the forecast's hold (its peak over the stabilization
        // window) has replaced the look back, which shrinks to the lead time.
        let recent = History {
            recommendations: input
                .history
                .recommendations
                .iter()
                .filter(|(time, _)| {
                    *time >= input.now - SignedDuration::from_secs(report.lead_seconds)
                })
                .copied()
                .collect(),
            ..input.history.clone()
        };
        let modelled = report.metrics.iter().any(Option::is_some);
        let history = if modelled { &recent } else { input.history };
        // A rise the forecast sized is applied at once unless the policy states its own
        // `scaleUp` rules.
        let rise_limited = !(modelled && forecast_scale_up_unlimited(spec));
        let forecast_normalized = normalize(forecast_proposal, history, rise_limited);
        decision.forecast = Some(ForecastReport {
            desired_replicas: forecast_normalized.replicas,
            plain_desired_replicas: normalized.replicas,
            ..report
        });
        if settings.enabled {
            decision.proposed_replicas = Some(forecast_proposal);
            decision.record = Some(forecast_proposal);
            normalized = forecast_normalized;
        }
    }
    decision.desired_replicas = normalized.replicas;
    decision.conditions[0] = normalized.able_to_scale;
    if normalized.scaling_limited.status == "True" {
        decision.limited_by = Some(normalized.scaling_limited.reason);
    }
    decision.conditions.push(normalized.scaling_limited);
    decision
}

/// When every metric failed for `fallback.failureThreshold` syncs in a row (this one
/// included), hold or go to the fallback count, within the bounds.
fn apply_fallback(decision: &mut Recommendation, input: &Input<'_>) {
    let Some(fallback) = &input.spec.fallback else {
        return;
    };
    let failures = input.history.consecutive_failures.saturating_add(1);
    if !decision.metrics_failed || failures < u32::try_from(fallback.failure_threshold).unwrap_or(1)
    {
        return;
    }
    decision.fallback_active = true;
    let (replicas, message) = match fallback.action {
        FallbackAction::Hold => (
            input.current_replicas,
            format!(
                "metrics failed {failures} syncs in a row; holding {} replicas",
                input.current_replicas
            ),
        ),
        FallbackAction::Replicas => {
            let target = fallback
                .replicas
                .unwrap_or(input.current_replicas)
                .clamp(input.spec.min_replicas, input.spec.max_replicas);
            (
                target,
                format!(
                    "metrics failed {failures} syncs in a row; scaling to the fallback of {target} replicas"
                ),
            )
        }
    };
    decision.desired_replicas = replicas;
    decision.conditions.push(ConditionOut::new(
        "ScalingLimited",
        true,
        "FallbackActive",
        message,
    ));
    decision.limited_by = Some("FallbackActive");
}

pub(super) fn milli(q: Option<&Quantity>, field: &str) -> Result<i64, String> {
    let q = q.ok_or_else(|| format!("target.{field} is required"))?;
    let m = q
        .to_milli_i64()
        .map_err(|e| format!("target.{field}: {e}"))?;
    if m <= 0 {
        return Err(format!("target.{field} must be positive"));
    }
    Ok(m)
}

fn pod_samples<'a>(
    reading: &'a MetricReading,
    container: Option<&str>,
) -> Result<calculator::Samples<'a>, String> {
    match reading {
        MetricReading::Pods(pods) => pods
            .iter()
            .map(|(name, r)| {
                let milli = match container {
                    None => r.milli,
                    Some(c) => *r.containers.get(c).ok_or_else(|| {
                        format!("container {c} not present in metrics for pod {name}")
                    })?,
                };
                Ok((
                    name.as_str(),
                    PodSample {
                        milli,
                        timestamp: r.timestamp,
                        window: r.window,
                    },
                ))
            })
            .collect(),
        MetricReading::Value(_) => {
            Err("the reading is one value but this metric needs one per pod".into())
        }
        MetricReading::Failed(e) => Err(e.clone()),
    }
}

fn single_value(reading: &MetricReading) -> Result<i64, String> {
    match reading {
        MetricReading::Value(v) => Ok(*v),
        MetricReading::Pods(_) => {
            Err("the reading is per pod but this metric needs one value".into())
        }
        MetricReading::Failed(e) => Err(e.clone()),
    }
}

fn metric_outcome(
    metric: &MetricSpec,
    reading: &MetricReading,
    input: &Input<'_>,
    tolerances: Tolerances,
) -> MetricOutcome {
    let mut outcome = MetricOutcome {
        metric: metric_name(metric),
        type_: metric.type_,
        current: CurrentValue::default(),
        ratio: None,
        proposed_replicas: None,
        demand: None,
        error: None,
        failure_reason: failure_reason(metric.type_),
    };
    if let Err(e) = evaluate(metric, reading, input, tolerances, &mut outcome) {
        outcome.error = Some(e);
    }
    outcome
}

fn evaluate(
    metric: &MetricSpec,
    reading: &MetricReading,
    input: &Input<'_>,
    tolerances: Tolerances,
    outcome: &mut MetricOutcome,
) -> Result<(), String> {
    let current = input.current_replicas;
    let settings = input.settings;
    let missing = || format!("a {:?} metric needs its source field", metric.type_);
    // Resource and ContainerResource share everything but the container.
    let resource = match metric.type_ {
        MetricSourceType::Resource => {
            let r = metric.resource.as_ref().ok_or_else(missing)?;
            Some((r.name.as_str(), None, &r.target))
        }
        MetricSourceType::ContainerResource => {
            let r = metric.container_resource.as_ref().ok_or_else(missing)?;
            Some((r.name.as_str(), Some(r.container.as_str()), &r.target))
        }
        _ => None,
    };
    if let Some((name, container, target)) = resource {
        let samples = pod_samples(reading, container)
            .map_err(|e| format!("failed to get {name} utilization: {e}"))?;
        match target.type_ {
            MetricTargetType::Utilization => {
                let target_utilization = target
                    .average_utilization
                    .filter(|u| *u > 0)
                    .ok_or("target.averageUtilization must be positive")?;
                let result = calculator::resource_replicas(
                    current,
                    target_utilization,
                    name,
                    container,
                    input.pods,
                    samples,
                    tolerances,
                    settings,
                    input.now,
                )
                .map_err(|e| format!("failed to get {name} utilization: {e}"))?;
                outcome.current.average_utilization = Some(result.utilization);
                outcome.current.average_value =
                    Some(Quantity::from_milli(i128::from(result.raw_milli)));
                outcome.ratio = Some(result.ratio);
                outcome.demand = Some(result.demand);
                outcome.proposed_replicas = Some(result.replicas);
            }
            _ => {
                let target_milli = milli(target.average_value.as_ref(), "averageValue")?;
                let result = calculator::plain_replicas(
                    current,
                    target_milli,
                    name == "cpu",
                    input.pods,
                    samples,
                    tolerances,
                    settings,
                    input.now,
                )
                .map_err(|e| format!("failed to get {name} usage: {e}"))?;
                outcome.current.average_value =
                    Some(Quantity::from_milli(i128::from(result.usage_milli)));
                outcome.ratio = Some(result.ratio);
                outcome.demand = Some(result.demand);
                outcome.proposed_replicas = Some(result.replicas);
            }
        }
        return Ok(());
    }
    match metric.type_ {
        MetricSourceType::Pods => {
            let source = metric.pods.as_ref().ok_or_else(missing)?;
            let target_milli = milli(source.target.average_value.as_ref(), "averageValue")?;
            let samples = pod_samples(reading, None)
                .map_err(|e| format!("unable to get metric {}: {e}", source.metric.name))?;
            let result = calculator::plain_replicas(
                current,
                target_milli,
                false,
                input.pods,
                samples,
                tolerances,
                settings,
                input.now,
            )?;
            outcome.current.average_value =
                Some(Quantity::from_milli(i128::from(result.usage_milli)));
            outcome.ratio = Some(result.ratio);
            outcome.demand = Some(result.demand);
            outcome.proposed_replicas = Some(result.replicas);
        }
        MetricSourceType::Object | MetricSourceType::External | MetricSourceType::Prometheus => {
            let target = match metric.type_ {
                MetricSourceType::Object => &metric.object.as_ref().ok_or_else(missing)?.target,
                MetricSourceType::External => &metric.external.as_ref().ok_or_else(missing)?.target,
                _ => &metric.prometheus.as_ref().ok_or_else(missing)?.target,
            };
            let usage =
                single_value(reading).map_err(|e| format!("unable to get metric value: {e}"))?;
            match target.type_ {
                MetricTargetType::Value => {
                    let target_milli = milli(target.value.as_ref(), "value")?;
                    let ratio = usage as f64 / target_milli as f64;
                    outcome.current.value = Some(Quantity::from_milli(i128::from(usage)));
                    outcome.ratio = Some(ratio);
                    outcome.proposed_replicas = Some(calculator::value_replicas(
                        current, ratio, tolerances, input.pods,
                    )?);
                    // As upstream sizes a Value target: the ratio × ready pods (the
                    // ratio alone from zero).
                    let ready = input.pods.iter().filter(|p| p.is_ready()).count();
                    outcome.demand = Some(ratio * ready.max(usize::from(current == 0)) as f64);
                }
                MetricTargetType::AverageValue => {
                    let target_milli = milli(target.average_value.as_ref(), "averageValue")?;
                    let (replicas, ratio, per_pod) = calculator::per_pod_value_replicas(
                        input.status_replicas,
                        usage,
                        target_milli,
                        tolerances,
                    );
                    outcome.current.average_value = Some(Quantity::from_milli(i128::from(per_pod)));
                    outcome.ratio = Some(ratio);
                    outcome.demand = Some(usage as f64 / target_milli as f64);
                    outcome.proposed_replicas = Some(replicas);
                }
                MetricTargetType::Utilization => {
                    return Err("a Utilization target needs a Resource metric".into());
                }
            }
        }
        MetricSourceType::Resource | MetricSourceType::ContainerResource => {}
    }
    Ok(())
}

/// HPA's name for a metric, as in its ValidMetricFound message.
pub fn metric_name(metric: &MetricSpec) -> String {
    let utilization = |t: &MetricTarget| t.type_ == MetricTargetType::Utilization;
    match metric.type_ {
        MetricSourceType::Resource => match &metric.resource {
            Some(r) if utilization(&r.target) => {
                format!("{} resource utilization (percentage of request)", r.name)
            }
            Some(r) => format!("{} resource", r.name),
            None => "resource".into(),
        },
        MetricSourceType::ContainerResource => match &metric.container_resource {
            Some(r) if utilization(&r.target) => {
                format!(
                    "{} container resource utilization (percentage of request)",
                    r.name
                )
            }
            Some(r) => format!("{} container resource", r.name),
            None => "container resource".into(),
        },
        MetricSourceType::Pods => format!(
            "pods metric {}",
            metric
                .pods
                .as_ref()
                .map(|p| p.metric.name.as_str())
                .unwrap_or_default()
        ),
        MetricSourceType::Object => match &metric.object {
            Some(o) => format!("{} metric {}", o.described_object.kind, o.metric.name),
            None => "object metric".into(),
        },
        MetricSourceType::External => format!(
            "external metric {}",
            metric
                .external
                .as_ref()
                .map(|e| e.metric.name.as_str())
                .unwrap_or_default()
        ),
        MetricSourceType::Prometheus => format!(
            "prometheus query {}",
            metric
                .prometheus
                .as_ref()
                .map(|p| p.query.as_str())
                .unwrap_or_default()
        ),
    }
}

fn failure_reason(type_: MetricSourceType) -> &'static str {
    match type_ {
        MetricSourceType::Resource => "FailedGetResourceMetric",
        MetricSourceType::ContainerResource => "FailedGetContainerResourceMetric",
        MetricSourceType::Pods => "FailedGetPodsMetric",
        MetricSourceType::Object => "FailedGetObjectMetric",
        MetricSourceType::External => "FailedGetExternalMetric",
        MetricSourceType::Prometheus => "FailedGetPrometheusMetric",
    }
}
