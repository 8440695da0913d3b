//! The pod autoscaler's reconciler: for each ScalingPolicy, read the target's scale, decide
//! ([`recommend`]), set the scale, write status and events, and remember what HPA
//! remembers between syncs (recent recommendations, scale events, consecutive failures).
//!
//! The Kubernetes calls go through [`ScaleApi`], so the reconciler runs against the real API
//! (`weir`'s `pod_autoscaler` module) or a fake in tests. What to do for one policy is pure
//! ([`plan`]); [`reconcile`] applies it.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, Time},
    jiff::{SignedDuration, Timestamp},
};
use weir_crds::{
    Quantity,
    conditions::{NewCondition, merge_conditions},
    scaling_policy::{
        Forecast, ForecastStatus, MetricForecastStatus, MetricStatus, ScaleTargetRef,
        ScalingPolicy, ScalingPolicySpec, ScalingPolicyStatus,
    },
};

use super::{
    ControllerSettings, History, Input, MetricReading, Pod, Recommendation, effective_metrics,
    recommend,
};

/// The annotation that pauses a policy.
pub const PAUSE_ANNOTATION: &str = "weir.io/paused";

/// A target's scale subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.selector`: the pods' label selector, as a string.
    pub selector: Option<String>,
}

/// An event to record on the ScalingPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// CamelCase reason (HPA's: SuccessfulRescale, FailedRescale, FailedGetScale, ...).
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

/// The Kubernetes calls the reconciler makes.
pub trait ScaleApi {
    /// Reads the target's scale subresource.
    fn get_scale(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> impl Future<Output = Result<Scale, String>> + Send;
    /// Sets the target's `spec.replicas` through the scale subresource.
    fn set_replicas(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Writes the policy's status (server-side apply).
    fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Records an event on the policy.
    fn event(
        &self,
        policy: &ScalingPolicy,
        event: &Event,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the reconciler remembers of one policy between syncs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// Recommendations, scale events, failures.
    pub history: History,
    /// When the target was last scaled.
    pub last_scale_time: Option<Timestamp>,
    /// Per metric, its demand history and model (kept only for policies with `forecast`).
    pub forecasts: Vec<super::forecast::Forecaster>,
    /// When the policy was last synced.
    pub last_synced: Option<Timestamp>,
}

/// What to do for one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Set the target to this many replicas.
    pub scale_to: Option<i32>,
    /// The decision (None when the scale could not be read).
    pub decision: Option<Recommendation>,
    /// The status to write if the rescale (if any) succeeds.
    pub status: ScalingPolicyStatus,
    /// Events to record.
    pub events: Vec<Event>,
    /// The memory after this sync (before a rescale is recorded).
    pub memory: Memory,
}

/// Everything [`plan`] looks at for one policy.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    /// The policy.
    pub policy: &'a ScalingPolicy,
    /// Its target's scale, or why it could not be read.
    pub scale: &'a Result<Scale, String>,
    /// The target's pods.
    pub pods: &'a [Pod],
    /// One reading per metric.
    pub readings: &'a [MetricReading],
    /// What was remembered.
    pub memory: &'a Memory,
    /// Controller settings.
    pub settings: &'a ControllerSettings,
    /// Now.
    pub now: Timestamp,
}

/// Decides what to do for one policy. Pure.
pub fn plan(input: &PolicyInput<'_>) -> Plan {
    let policy = input.policy;
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let now = Time(input.now);
    let scale = match input.scale {
        Ok(scale) => scale,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            let status = ScalingPolicyStatus {
                observed_generation: generation,
                conditions: merge_conditions(
                    [NewCondition {
                        type_: "AbleToScale",
                        status: "False",
                        reason: "FailedGetScale",
                        message: &message,
                    }],
                    &previous.conditions,
                    generation,
                    &now,
                ),
                ..previous.clone()
            };
            return Plan {
                scale_to: None,
                decision: None,
                status,
                events: vec![Event {
                    type_: "Warning",
                    reason: "FailedGetScale",
                    message,
                }],
                memory: input.memory.clone(),
            };
        }
    };
    let Decided {
        decision,
        memory,
        scale_to,
    } = decide(input, scale);
    let mut events = Vec::new();
    if let Some(error) = &decision.error {
        events.push(Event {
            type_: "Warning",
            reason: "FailedComputeMetricsReplicas",
            message: error.clone(),
        });
    }
    if let Some(replicas) = scale_to {
        events.push(Event {
            type_: "Normal",
            reason: "SuccessfulRescale",
            message: format!(
                "New size: {replicas}; reason: {}",
                rescale_reason(&decision)
            ),
        });
    }
    let conditions: Vec<NewCondition<'_>> = decision
        .conditions
        .iter()
        .map(|c| NewCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: &c.message,
        })
        .collect();
    let status = ScalingPolicyStatus {
        observed_generation: generation,
        last_scale_time: if scale_to.is_some() {
            Some(now.clone())
        } else {
            previous.last_scale_time.clone()
        },
        current_replicas: scale.status_replicas,
        desired_replicas: decision.desired_replicas,
        current_metrics: metric_statuses(&policy.spec, &decision),
        conditions: merge_conditions(conditions, &previous.conditions, generation, &now),
        forecast: forecast_status(&policy.spec, &decision),
    };
    Plan {
        scale_to,
        decision: Some(decision),
        status,
        events,
        memory,
    }
}

/// A decision and what to remember of it, without the status and events [`plan`] adds:
/// what `weir simulate` replays sync after sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    /// The decision.
    pub decision: Recommendation,
    /// The memory after this sync (before a rescale is recorded).
    pub memory: Memory,
    /// Set the target to this many replicas.
    pub scale_to: Option<i32>,
}

/// Decides for one policy whose scale was read. Pure.
pub fn decide(input: &PolicyInput<'_>, scale: &Scale) -> Decided {
    let policy = input.policy;
    let paused = policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSE_ANNOTATION))
        .is_some_and(|v| v == "true");
    let decision = recommend(&Input {
        spec: &policy.spec,
        current_replicas: scale.spec_replicas,
        status_replicas: scale.status_replicas,
        now: input.now,
        pods: input.pods,
        readings: input.readings,
        history: &input.memory.history,
        settings: input.settings,
        paused,
        forecasts: &input.memory.forecasts,
    });
    let mut memory = input.memory.clone();
    if let Some(record) = decision.record {
        memory.history.recommendations.push((input.now, record));
    }
    memory.history.consecutive_failures = if decision.metrics_failed {
        input.memory.history.consecutive_failures.saturating_add(1)
    } else {
        0
    };
    forget_old(&mut memory.history, &policy.spec, input.settings, input.now);
    remember_demand(&mut memory, input, &decision);

    let scale_to =
        (decision.desired_replicas != scale.spec_replicas).then_some(decision.desired_replicas);
    Decided {
        decision,
        memory,
        scale_to,
    }
}

/// HPA's rescale reason: the metric that drove the change, above or below target.
fn rescale_reason(decision: &Recommendation) -> String {
    if decision.fallback_active {
        return "fallback: metrics failed".into();
    }
    let up = decision.desired_replicas > decision.current_replicas;
    if decision.current_replicas > 0 && decision.proposed_replicas.is_none() {
        return if up {
            "Current number of replicas below Spec.MinReplicas".into()
        } else {
            "Current number of replicas above Spec.MaxReplicas".into()
        };
    }
    let driver = decision
        .metrics
        .iter()
        .filter(|m| m.proposed_replicas.is_some())
        .max_by_key(|m| m.proposed_replicas);
    match driver {
        Some(m) if up => format!("{} above target", m.metric),
        _ => "All metrics below target".into(),
    }
}

/// `status.forecast` from the decision's forecast report.
fn forecast_status(spec: &ScalingPolicySpec, decision: &Recommendation) -> Option<ForecastStatus> {
    let report = decision.forecast.as_ref()?;
    let replicas = |x: f64| Quantity::from_milli((x * 1000.0).round() as i128);
    Some(ForecastStatus {
        enabled: report.enabled,
        lead_seconds: report.lead_seconds,
        desired_replicas: report.desired_replicas,
        plain_desired_replicas: report.plain_desired_replicas,
        metrics: effective_metrics(spec)
            .iter()
            .zip(&report.metrics)
            .filter_map(|(metric, f)| {
                let f = f.as_ref()?;
                Some(MetricForecastStatus {
                    name: metric_short_name(metric),
                    demand: replicas(f.demand),
                    peak: replicas(f.peak),
                    headroom: replicas(f.headroom),
                    season_seconds: f.season_seconds,
                })
            })
            .collect(),
    })
}

fn metric_statuses(spec: &ScalingPolicySpec, decision: &Recommendation) -> Vec<MetricStatus> {
    effective_metrics(spec)
        .iter()
        .zip(&decision.metrics)
        .filter(|(_, outcome)| outcome.error.is_none())
        .map(|(metric, outcome)| MetricStatus {
            type_: metric.type_,
            name: metric_short_name(metric),
            value: outcome.current.value.clone(),
            average_value: outcome.current.average_value.clone(),
            average_utilization: outcome.current.average_utilization,
        })
        .collect()
}

fn metric_short_name(metric: &weir_crds::scaling_policy::MetricSpec) -> String {
    metric
        .resource
        .as_ref()
        .map(|r| r.name.clone())
        .or_else(|| {
            metric
                .container_resource
                .as_ref()
                .map(|r| format!("{}/{}", r.container, r.name))
        })
        .or_else(|| metric.pods.as_ref().map(|p| p.metric.name.clone()))
        .or_else(|| metric.object.as_ref().map(|o| o.metric.name.clone()))
        .or_else(|| metric.external.as_ref().map(|e| e.metric.name.clone()))
        .or_else(|| metric.prometheus.as_ref().map(|p| p.query.clone()))
        .unwrap_or_default()
}

/// Drops recommendations older than the longest stabilization window and scale events
/// older than the longest policy period (they can no longer matter).
fn forget_old(
    history: &mut History,
    spec: &ScalingPolicySpec,
    settings: &ControllerSettings,
    now: Timestamp,
) {
    let (window, period) = match &spec.behavior {
        Some(behavior) => {
            let (up, down) =
                super::behavior::effective_rules(behavior, settings.downscale_stabilization);
            let window = up
                .stabilization_window_seconds
                .unwrap_or(0)
                .max(down.stabilization_window_seconds.unwrap_or(0));
            let period = up
                .policies
                .iter()
                .chain(&down.policies)
                .map(|p| p.period_seconds)
                .max()
                .unwrap_or(0);
            (
                SignedDuration::from_secs(i64::from(window)),
                SignedDuration::from_secs(i64::from(period)),
            )
        }
        None => (settings.downscale_stabilization, SignedDuration::ZERO),
    };
    history
        .recommendations
        .retain(|(time, _)| *time >= now - window);
    history
        .scale_events
        .retain(|(time, _)| *time > now - period);
}

/// Whether `memory`'s forecasters fit `forecast` for `metrics` metrics. When they do
/// not (a new policy, a restart, a changed `forecast`), they start afresh: from the
/// metric source's history at the sync ([`super::sync`]), else empty.
pub fn forecasts_fit(memory: &Memory, forecast: &Forecast, metrics: usize) -> bool {
    let history = i64::from(forecast.history_seconds);
    memory.forecasts.len() == metrics
        && memory
            .forecasts
            .first()
            .is_none_or(|f| f.history_seconds() == history / f.step() * f.step())
}

/// Feeds each metric's demand to its forecaster (policies with `forecast` only), at the
/// time the reading describes ([`super::observed_at`]).
fn remember_demand(memory: &mut Memory, input: &PolicyInput<'_>, decision: &Recommendation) {
    let Some(forecast) = &input.policy.spec.forecast else {
        memory.forecasts.clear();
        return;
    };
    if !forecasts_fit(memory, forecast, decision.metrics.len()) {
        let history = i64::from(forecast.history_seconds);
        memory.forecasts = vec![super::forecast::Forecaster::new(history); decision.metrics.len()];
    }
    let tuning = super::forecast_tuning(forecast, input.pods, input.readings);
    let now = input.now.as_second();
    for ((forecaster, metric), reading) in memory
        .forecasts
        .iter_mut()
        .zip(&decision.metrics)
        .zip(input.readings)
    {
        if let Some(demand) = metric.demand {
            forecaster.observe(super::observed_at(now, reading), demand, tuning);
        }
    }
}

/// Records a successful rescale in `memory` (scale events count toward rate limits).
pub fn record_rescale(memory: &mut Memory, from: i32, to: i32, now: Timestamp) {
    if from != to {
        memory.history.scale_events.push((now, to - from));
        memory.last_scale_time = Some(now);
    }
}

/// The outcome of reconciling one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconciled {
    /// The plan.
    pub plan: Plan,
    /// The rescale failed with this error.
    pub rescale_error: Option<String>,
}

/// Applies `plan` for `policy` through `api`: scale, then status and events. A failed
/// rescale is reported (AbleToScale False, FailedUpdateScale; a Warning event) and not
/// remembered as a scale event.
pub async fn apply<A: ScaleApi>(
    api: &A,
    policy: &ScalingPolicy,
    mut plan: Plan,
    previous_replicas: Option<i32>,
    now: Timestamp,
) -> Reconciled {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    let mut rescale_error = None;
    if let Some(replicas) = plan.scale_to {
        match api
            .set_replicas(namespace, &policy.spec.target_ref, replicas)
            .await
        {
            Ok(()) => record_rescale(
                &mut plan.memory,
                previous_replicas.unwrap_or(replicas),
                replicas,
                now,
            ),
            Err(e) => {
                let message =
                    format!("the HPA controller was unable to update the target scale: {e}");
                plan.events.retain(|ev| ev.reason != "SuccessfulRescale");
                plan.events.push(Event {
                    type_: "Warning",
                    reason: "FailedRescale",
                    message: format!("New size: {replicas}; error: {e}"),
                });
                // AbleToScale turns False; its transition time compares with the status
                // the policy had, like every other condition.
                let before = policy
                    .status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default();
                let failed = merge_conditions(
                    [NewCondition {
                        type_: "AbleToScale",
                        status: "False",
                        reason: "FailedUpdateScale",
                        message: &message,
                    }],
                    before,
                    policy.metadata.generation,
                    &Time(now),
                );
                for condition in &mut plan.status.conditions {
                    if condition.type_ == "AbleToScale" {
                        condition.clone_from(&failed[0]);
                    }
                }
                plan.status.desired_replicas =
                    previous_replicas.unwrap_or(plan.status.desired_replicas);
                plan.status.last_scale_time = policy
                    .status
                    .as_ref()
                    .and_then(|s| s.last_scale_time.clone());
                rescale_error = Some(e);
            }
        }
    }
    for event in &plan.events {
        // Events are best effort.
        let _ = api.event(policy, event).await;
    }
    if let Err(e) = api.write_status(namespace, name, &plan.status).await {
        tracing::warn!(policy = %format!("{namespace}/{name}"), error = %e, "could not write ScalingPolicy status");
    }
    Reconciled {
        plan,
        rescale_error,
    }
}

/// Parses a label selector string (`a=b,c!=d,e in (f,g),h notin (i),j,!k`, as a scale's
/// `status.selector` carries it) into a [`LabelSelector`], to match with
/// [`weir_store::selector_matches`].
pub fn parse_selector(selector: &str) -> Result<LabelSelector, String> {
    let mut parsed = LabelSelector::default();
    let mut rest = selector.trim();
    while !rest.is_empty() {
        // Split at the next comma outside parentheses.
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let term = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or("").trim();
        if !term.is_empty() {
            add_term(&mut parsed, term)
                .ok_or_else(|| format!("cannot parse selector term {term:?}"))?;
        }
    }
    Ok(parsed)
}

fn add_term(selector: &mut LabelSelector, term: &str) -> Option<()> {
    let set = |s: &str| -> Option<Vec<String>> {
        let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(
            inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
        )
    };
    let (key, operator, values) = if let Some((key, values)) = term.split_once(" notin ") {
        (key, "NotIn", set(values)?)
    } else if let Some((key, values)) = term.split_once(" in ") {
        (key, "In", set(values)?)
    } else if let Some((key, value)) = term.split_once("!=") {
        (key, "NotIn", vec![value.trim().to_string()])
    } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        selector
            .match_labels
            .get_or_insert_default()
            .insert(key.trim().into(), value.trim().into());
        return Some(());
    } else if let Some(key) = term.strip_prefix('!') {
        (key, "DoesNotExist", Vec::new())
    } else {
        (term, "Exists", Vec::new())
    };
    selector
        .match_expressions
        .get_or_insert_default()
        .push(LabelSelectorRequirement {
            key: key.trim().into(),
            operator: operator.into(),
            values: Some(values),
        });
    Some(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn selectors_parse_equality_and_set_terms() {
        let s = parse_selector("app=web, tier in (front,edge),env!=dev,canary,!legacy")
            .expect("selector");
        let matches = |pairs: &[(&str, &str)]| {
            let labels: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            weir_store::selector_matches(&s, Some(&labels))
        };
        assert!(matches(&[
            ("app", "web"),
            ("tier", "edge"),
            ("canary", "1")
        ]));
        assert!(!matches(&[
            ("app", "web"),
            ("tier", "back"),
            ("canary", "1")
        ]));
        assert!(!matches(&[
            ("app", "web"),
            ("tier", "edge"),
            ("canary", "1"),
            ("legacy", "y")
        ]));
        assert!(!matches(&[("app", "web"), ("tier", "edge")]));
        assert!(!matches(&[
            ("app", "web"),
            ("tier", "edge"),
            ("canary", "1"),
            ("env", "dev")
        ]));
        assert_eq!(parse_selector("").expect("empty"), LabelSelector::default());
    }
}
