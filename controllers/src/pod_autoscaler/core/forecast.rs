//! Forecast-driven scaling: project each metric's ratio to its target a short horizon ahead
//! from its recent history, and scale on max(current, forecast).
//!
//! The model is a least-squares linear trend over the history window. It needs
//! three points or more; with fewer, or a flat or falling trend, the forecast adds nothing.
//! The plain recommendation is always reported beside it, so users can compare before they
//! set `forecast.enabled: true`.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// The smallest history that gives a forecast.
pub const MIN_POINTS: usize = 3;

/// A metric's ratio (current value over target) over time.
pub type RatioHistory = Vec<(Timestamp, f64)>;

/// A fitted trend: the ratio at the horizon.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricForecast {
    /// The ratio now, as measured.
    pub ratio: f64,
    /// The projected ratio at now + horizon (never below zero).
    pub forecast_ratio: f64,
    /// Ratio change per minute of the fitted trend.
    pub slope_per_minute: f64,
    /// Points the fit used.
    pub points: usize,
}

/// Fits `history` (within `window` before `now`, plus the current `ratio` at `now`) and
/// projects it to `now + horizon`. `None` without enough points.
pub fn project(
    history: &[(Timestamp, f64)],
    ratio: f64,
    now: Timestamp,
    window: SignedDuration,
    horizon: SignedDuration,
) -> Option<MetricForecast> {
    let start = now - window;
    // Two passes over the history, no allocation (it runs every sync of every policy, and
    // 170,000 times in a month's `weir simulate`): means, then (co)variances. The
    // current ratio is the point at x = 0.
    let points = || {
        history
            .iter()
            .filter(move |(t, v)| *t >= start && *t < now && v.is_finite())
            .map(move |(time, value)| (seconds_between(now, *time), *value))
            .chain(std::iter::once((0.0, ratio)))
    };
    let (n, sum_x, sum_y) = points().fold((0usize, 0.0, 0.0), |(n, sx, sy), (x, y)| {
        (n + 1, sx + x, sy + y)
    });
    if n < MIN_POINTS {
        return None;
    }
    let (mean_x, mean_y) = (sum_x / n as f64, sum_y / n as f64);
    let (var, cov) = points().fold((0.0, 0.0), |(var, cov), (x, y)| {
        (
            var + (x - mean_x) * (x - mean_x),
            cov + (x - mean_x) * (y - mean_y),
        )
    });
    let variance = var / n as f64;
    if !(variance.is_finite() && variance > 0.0) {
        return None;
    }
    let slope = cov / n as f64 / variance;
    let intercept = mean_y - slope * mean_x;
    let at_horizon = intercept + slope * horizon.as_secs_f64();
    Some(MetricForecast {
        ratio,
        forecast_ratio: at_horizon.max(0.0),
        slope_per_minute: slope * 60.0,
        points: n,
    })
}

/// Seconds from `now` back to `time` (negative for the past).
fn seconds_between(now: Timestamp, time: Timestamp) -> f64 {
    time.duration_since(now).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn a_rising_line_is_projected_along_its_slope() {
        let now = at("2026-11-22T10:00:00Z");
        // 0.6, 0.8, 1.0 a minute apart, now 1.2: +0.2 per minute; in 2 minutes 1.6.
        let history = [
            (at("2026-11-22T09:57:00Z"), 0.6),
            (at("2026-11-22T09:58:00Z"), 0.8),
            (at("2026-11-22T09:59:00Z"), 1.0),
        ];
        let f = project(
            &history,
            1.2,
            now,
            SignedDuration::from_mins(60),
            SignedDuration::from_mins(2),
        )
        .expect("forecast");
        assert!((f.forecast_ratio - 1.6).abs() < 1e-9, "{f:?}");
        assert!((f.slope_per_minute - 0.2).abs() < 1e-9);
        assert_eq!(f.points, 4);
    }

    #[test]
    fn too_little_or_too_old_history_gives_nothing_and_falls_stop_at_zero() {
        let now = at("2026-11-22T10:00:00Z");
        let old = [
            (at("2026-11-22T08:00:00Z"), 5.0),
            (at("2026-11-22T08:01:00Z"), 6.0),
        ];
        assert_eq!(
            project(
                &old,
                1.0,
                now,
                SignedDuration::from_mins(60),
                SignedDuration::from_mins(2)
            ),
            None
        );
        let falling = [
            (at("2026-11-22T09:58:00Z"), 2.0),
            (at("2026-11-22T09:59:00Z"), 1.0),
        ];
        let f = project(
            &falling,
            0.0,
            now,
            SignedDuration::from_mins(60),
            SignedDuration::from_mins(5),
        )
        .expect("forecast");
        assert_eq!(f.forecast_ratio, 0.0);
    }
}
