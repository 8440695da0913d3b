//! The forecast's part in a decision ([`super::recommend`] calls it when the policy has
//! `spec.forecast`): the lead time, each metric's prediction from its [`Forecaster`],
//! and the proposal that replaces the plain one once a model is fitted. Pure.
//!
//! [`Forecaster`]: super::forecast::Forecaster

use serde::Serialize;
use weir_crds::scaling_policy::{Forecast, ScalingPolicySpec};

use super::{
    ControllerSettings, Input, MetricReading, Pod, Recommendation, behavior, forecast, tolerances,
};

/// The forecast's view of the decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastReport {
    /// Whether the decision follows the forecast.
    pub enabled: bool,
    /// How far ahead it provisions: the larger of `forecast.horizonSeconds` and the
    /// newest ready pod's startup plus the metric window.
    pub lead_seconds: i64,
    /// Per metric (spec order); `null` without enough history.
    pub metrics: Vec<Option<forecast::MetricForecast>>,
    /// The plain proposal, raised to each metric's forecast peak plus headroom; when
    /// that is below the current count, at least its hold (see [`forecast`]).
    pub proposed_replicas: i32,
    /// What the decision would be on that proposal (after stabilization and limits).
    pub desired_replicas: i32,
    /// The plain decision, for comparison.
    pub plain_desired_replicas: i32,
}

/// How far ahead the forecast provisions, in seconds: the larger of
/// `forecast.horizonSeconds` and what a pod asked for now takes to count, i.e. the newest
/// ready pod's startup (start to Ready) plus the metric's window.
pub fn forecast_lead(settings: &Forecast, pods: &[Pod], readings: &[MetricReading]) -> i64 {
    let startup = pods
        .iter()
        .filter(|p| p.is_ready())
        .filter_map(|p| Some((p.start_time?, p.ready_since?)))
        .max_by_key(|(start, _)| *start)
        .map_or(0, |(start, ready)| {
            ready.duration_since(start).as_secs().max(0)
        });
    i64::from(settings.horizon_seconds).max(startup + metric_window(readings))
}

/// How the forecast is scored for a policy: at its lead ([`forecast_lead`]), with its
/// `headroomPercentile` and `releasePercentile` (the headroom's when unset).
pub fn forecast_tuning(
    settings: &Forecast,
    pods: &[Pod],
    readings: &[MetricReading],
) -> forecast::Tuning {
    forecast::Tuning {
        lead: forecast_lead(settings, pods, readings),
        quantile: f64::from(settings.headroom_percentile) / 100.0,
        release_quantile: f64::from(
            settings
                .release_percentile
                .unwrap_or(settings.headroom_percentile),
        ) / 100.0,
        window: metric_window(readings),
    }
}

/// When a reading describes, in seconds: a value averaged over a window describes the
/// window's middle, so it belongs to `now - window / 2`.
pub fn observed_at(now: i64, reading: &MetricReading) -> i64 {
    let half_window = match reading {
        MetricReading::Pods(pods) => pods.values().next().map_or(0, |p| p.window.as_secs() / 2),
        _ => 0,
    };
    now - half_window
}

/// The longest window the per-pod readings were averaged over, in seconds.
fn metric_window(readings: &[MetricReading]) -> i64 {
    readings
        .iter()
        .filter_map(|r| match r {
            MetricReading::Pods(pods) => pods.values().next().map(|p| p.window.as_secs()),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Whether a rise the forecast sized goes without a rate limit: when the policy states no
/// `behavior.scaleUp`. HPA's default (4 pods or 100 % per 15 s) paces a controller that
/// follows a lagging average; the forecast sizes a rise from the newest measured rate
/// (and its model), so pacing it only delays pods it has measured a need for: a step from 5
/// to 23 pods' worth is asked for as 10, 20, 23 over three syncs, the last pods ready
/// 30 s later. On the AWS load-balancer trace 71.75 of the forecast's 1,197.5
/// under-provisioned minutes fell after its first pods were ready, and applying its rises
/// at once saved 70.5 (docs/simulate.md). maxReplicas bounds it still; a policy
/// that wants its rises paced states `scaleUp`, which is honored.
pub(super) fn forecast_scale_up_unlimited(spec: &ScalingPolicySpec) -> bool {
    spec.behavior
        .as_ref()
        .is_none_or(|behavior| behavior.scale_up.is_none())
}

/// The scale-down stabilization window the forecast's hold looks ahead over.
fn downscale_window(spec: &ScalingPolicySpec, settings: &ControllerSettings) -> i64 {
    match &spec.behavior {
        Some(b) => i64::from(
            behavior::effective_rules(b, settings.downscale_stabilization)
                .1
                .stabilization_window_seconds
                .unwrap_or(0),
        ),
        None => settings.downscale_stabilization.as_secs(),
    }
}

/// The forecast's report (without the normalized counts) and its proposal. With a fitted
/// model for some metric, the forecast replaces the plain proposal: per metric, the need
/// is the larger of the forecast's peak over the lead time and the newest measured rate
/// (carried along its rise over the lead time when the demand is ramping up), plus the
/// headroom; the proposal is the largest need over `1 + tolerance` (the band HPA allows
/// above target before it acts), or, on a ramp that takes the need beyond that band, the
/// whole need (HPA sizes a rise at target, and a ramp outgrows the band's slack while pods
/// start). It goes below the current count only to the metrics' hold (the forecast's peak
/// over the stabilization window plus the release headroom, never below the demand
/// measured now plus the headroom), and only when that is below the current count by more
/// than the tolerance. Without a model, the plain proposal stands.
pub(super) fn forecast_decision(
    settings: &Forecast,
    decision: &Recommendation,
    proposal: i32,
    input: &Input<'_>,
) -> (ForecastReport, i32) {
    let lead = forecast_lead(settings, input.pods, input.readings);
    let horizon = forecast::Horizon {
        now: input.now.as_second(),
        lead,
        hold: downscale_window(input.spec, input.settings),
        window: metric_window(input.readings),
    };
    let metrics: Vec<Option<forecast::MetricForecast>> = decision
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let demand = m.demand.filter(|_| m.proposed_replicas.is_some())?;
            input.forecasts.get(i)?.predict(demand, &horizon)
        })
        .collect();
    let current = input.current_replicas;
    let tolerances = tolerances(input.spec, input.settings);
    let band = 1.0 + tolerances.up;
    let fitted = metrics.iter().flatten();
    let need = fitted
        .clone()
        .map(|f| f.peak.max(f.current + f.rise * lead as f64) + f.headroom)
        .fold(None, |acc: Option<f64>, n| {
            Some(acc.map_or(n, |a| a.max(n)))
        });
    let ramp = fitted.clone().any(|f| f.rise > 0.0);
    let hold = fitted
        .map(|f| f.hold.max(f.demand + f.headroom))
        .fold(0.0, f64::max);
    let proposed = match need {
        None => proposal,
        Some(need) => {
            // On a ramp the whole need, as HPA sizes on a rise beyond its band; otherwise
            // the band's slack is left to the headroom.
            let up = if ramp && need > f64::from(current) * band {
                need.ceil() as i32
            } else {
                (need / band).ceil() as i32
            };
            let floor = ((hold / band).ceil() as i32).min(current);
            let proposed = up.max(floor);
            if proposed < current && hold / band > f64::from(current) * (1.0 - tolerances.down) {
                current
            } else {
                proposed
            }
        }
    };
    let report = ForecastReport {
        enabled: settings.enabled,
        lead_seconds: lead,
        metrics,
        proposed_replicas: proposed,
        desired_replicas: proposed,
        plain_desired_replicas: proposed,
    };
    (report, proposed)
}
