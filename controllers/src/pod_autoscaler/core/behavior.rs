//! From the metrics' proposal to the replica count to set, as kubernetes
//! `pkg/controller/podautoscaler/horizontal.go` does it: stabilization over past
//! recommendations, rate limits from past scale events, and the bounds. With `behavior`
//! the v2 path (`normalizeDesiredReplicasWithBehaviors`), without it the legacy path
//! (`normalizeDesiredReplicas`).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_crds::scaling_policy::{
    ScalingBehavior, ScalingRatePolicy, ScalingRateType, ScalingRules, SelectPolicy,
};

use super::{ConditionOut, History};

/// HPA's default scale-up rules: no stabilization; 4 pods or 100 % per 15 s, the larger.
pub fn default_scale_up() -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some(SelectPolicy::Max),
        policies: vec![
            ScalingRatePolicy {
                type_: ScalingRateType::Pods,
                value: 4,
                period_seconds: 15,
            },
            ScalingRatePolicy {
                type_: ScalingRateType::Percent,
                value: 100,
                period_seconds: 15,
            },
        ],
        tolerance: None,
    }
}

/// HPA's default scale-down rules: the controller's stabilization window; 100 % per 15 s.
pub fn default_scale_down(stabilization: SignedDuration) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: Some(
            i32::try_from(stabilization.as_secs()).unwrap_or(i32::MAX),
        ),
        select_policy: Some(SelectPolicy::Max),
        policies: vec![ScalingRatePolicy {
            type_: ScalingRateType::Percent,
            value: 100,
            period_seconds: 15,
        }],
        tolerance: None,
    }
}

/// Fills the fields a user left out with the defaults, as the API server's defaulting
/// does for HPA (`copyHPAScalingRules`).
fn with_defaults(given: Option<&ScalingRules>, defaults: ScalingRules) -> ScalingRules {
    let Some(given) = given else {
        return defaults;
    };
    ScalingRules {
        stabilization_window_seconds: given
            .stabilization_window_seconds
            .or(defaults.stabilization_window_seconds),
        select_policy: given.select_policy.or(defaults.select_policy),
        policies: if given.policies.is_empty() {
            defaults.policies
        } else {
            given.policies.clone()
        },
        tolerance: given.tolerance.clone(),
    }
}

/// Both directions' rules with defaults applied.
pub fn effective_rules(
    behavior: &ScalingBehavior,
    downscale_stabilization: SignedDuration,
) -> (ScalingRules, ScalingRules) {
    (
        with_defaults(behavior.scale_up.as_ref(), default_scale_up()),
        with_defaults(
            behavior.scale_down.as_ref(),
            default_scale_down(downscale_stabilization),
        ),
    )
}

/// The outcome of normalization.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// The replica count to set.
    pub replicas: i32,
    /// The AbleToScale condition.
    pub able_to_scale: ConditionOut,
    /// The ScalingLimited condition.
    pub scaling_limited: ConditionOut,
}

impl Normalized {
    /// The outcome for proposal `desired`: `stabilized` (with the reason stabilization gives
    /// when it changed the proposal), then limited to `limited` (with the reason the limit
    /// gives, or DesiredWithinRange).
    fn new(
        desired: i32,
        stabilized: i32,
        (stabilized_reason, stabilized_message): (&'static str, &'static str),
        (replicas, reason, message): (i32, &'static str, &'static str),
    ) -> Self {
        let able_to_scale = if stabilized != desired {
            ConditionOut::new("AbleToScale", true, stabilized_reason, stabilized_message)
        } else {
            ConditionOut::new(
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size",
            )
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: ConditionOut::new(
                "ScalingLimited",
                replicas != stabilized,
                reason,
                message,
            ),
        }
    }
}

fn window(seconds: Option<i32>) -> SignedDuration {
    SignedDuration::from_secs(i64::from(seconds.unwrap_or(0)))
}

/// The v2 path: stabilize within both directions' windows, then apply the rate policies.
/// `up` is `None` for a rise without rules: no stabilization and no rate limit, only
/// maxReplicas (the forecast's scale-up when the policy states no `scaleUp`; see
/// [`super::forecast_decision`]).
#[allow(clippy::too_many_arguments)]
pub fn with_behaviors(
    up: Option<&ScalingRules>,
    down: &ScalingRules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    history: &History,
    now: Timestamp,
) -> Normalized {
    let (stabilized, reason, message) = stabilize(up, down, current, desired, history, now);
    Normalized::new(
        desired,
        stabilized,
        (reason, message),
        rate_limited(up, down, current, stabilized, min, max, history, now),
    )
}

/// Upstream's `stabilizeRecommendationWithBehaviors`: the lowest recommendation within the
/// scale-up window bounds a rise, the highest within the scale-down window bounds a fall.
fn stabilize(
    up: Option<&ScalingRules>,
    down: &ScalingRules,
    current: i32,
    desired: i32,
    history: &History,
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    let up_cutoff = now - window(up.and_then(|u| u.stabilization_window_seconds));
    let down_cutoff = now - window(down.stabilization_window_seconds);
    let mut up_recommendation = desired;
    let mut down_recommendation = desired;
    for (time, recommendation) in &history.recommendations {
        if *time > up_cutoff {
            up_recommendation = up_recommendation.min(*recommendation);
        }
        if *time > down_cutoff {
            down_recommendation = down_recommendation.max(*recommendation);
        }
    }
    let stabilized = current.max(up_recommendation).min(down_recommendation);
    if desired >= current {
        (
            stabilized,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            stabilized,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

/// Replicas added (`up`) or removed (`!up`) by scale events within `period` of `now`.
fn changed_within(history: &History, period_seconds: i32, up: bool, now: Timestamp) -> i32 {
    let cutoff = now - SignedDuration::from_secs(i64::from(period_seconds));
    history
        .scale_events
        .iter()
        .filter(|(time, change)| *time > cutoff && (*change > 0) == up && *change != 0)
        .map(|(_, change)| change.abs())
        .sum()
}

/// Upstream's `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(
    rules: &ScalingRules,
    current: i32,
    history: &History,
    now: Timestamp,
) -> i32 {
    rate_limit(rules, current, history, now, true)
}

/// Upstream's `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(
    rules: &ScalingRules,
    current: i32,
    history: &History,
    now: Timestamp,
) -> i32 {
    rate_limit(rules, current, history, now, false)
}

/// The replica count the rate policies allow in one direction. Each policy counts from
/// the replica count at the start of its period (current, less what was added, plus what
/// was removed within it). `Max` picks the policy allowing the largest change, `Min` the
/// smallest; when scaling down, the largest change is the lowest count.
fn rate_limit(
    rules: &ScalingRules,
    current: i32,
    history: &History,
    now: Timestamp,
    up: bool,
) -> i32 {
    let select = rules.select_policy.unwrap_or(SelectPolicy::Max);
    if select == SelectPolicy::Disabled {
        return current;
    }
    // Whether the policy allowing the larger count wins.
    let larger_wins = (select == SelectPolicy::Max) == up;
    let mut result = if larger_wins { i32::MIN } else { i32::MAX };
    for policy in &rules.policies {
        let added = changed_within(history, policy.period_seconds, true, now);
        let deleted = changed_within(history, policy.period_seconds, false, now);
        let start = current - added + deleted;
        let fraction = f64::from(policy.value) / 100.0;
        let proposed = match (policy.type_, up) {
            (ScalingRateType::Pods, true) => start + policy.value,
            (ScalingRateType::Pods, false) => start - policy.value,
            // Rounded up, or a small percent of a small count would never scale up.
            (ScalingRateType::Percent, true) => (f64::from(start) * (1.0 + fraction)).ceil() as i32,
            (ScalingRateType::Percent, false) => (f64::from(start) * (1.0 - fraction)) as i32,
        };
        result = if larger_wins {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

/// Upstream's `convertDesiredReplicasWithBehaviorRate`.
#[allow(clippy::too_many_arguments)]
fn rate_limited(
    up: Option<&ScalingRules>,
    down: &ScalingRules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    history: &History,
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let limit = up.map_or(i32::MAX, |up| {
            scale_up_limit(up, current, history, now).max(current)
        });
        let (allowed, reason, message) = upper_bound(max, limit);
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let limit = scale_down_limit(down, current, history, now).min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// The legacy path: the highest recommendation within the downscale stabilization window,
/// then the bounds, with scale-up capped at max(2 × current, 4) when `rise_limited` (the
/// forecast's scale-up is not; see [`super::forecast_decision`]).
#[allow(clippy::too_many_arguments)]
pub fn legacy(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    downscale_stabilization: SignedDuration,
    history: &History,
    now: Timestamp,
    rise_limited: bool,
) -> Normalized {
    let cutoff = now - downscale_stabilization;
    let stabilized = history
        .recommendations
        .iter()
        .filter(|(time, _)| *time >= cutoff)
        .map(|(_, r)| *r)
        .fold(desired, i32::max);
    Normalized::new(
        desired,
        stabilized,
        (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        ),
        legacy_bounds(current, stabilized, min, max, rise_limited),
    )
}

/// The lower of maxReplicas and the scale-up rate limit, with the reason it would give.
fn upper_bound(max: i32, rate_limit: i32) -> (i32, &'static str, &'static str) {
    if max > rate_limit {
        (
            rate_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    }
}

/// Upstream's `convertDesiredReplicasWithRules`.
fn legacy_bounds(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    rise_limited: bool,
) -> (i32, &'static str, &'static str) {
    let scale_up_limit = if rise_limited {
        (2.0 * f64::from(current)).max(4.0) as i32
    } else {
        i32::MAX
    };
    let (maximum, reason, message) = upper_bound(max, scale_up_limit);
    if desired < min {
        return (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        );
    }
    if desired > maximum {
        return (maximum, reason, message);
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}
