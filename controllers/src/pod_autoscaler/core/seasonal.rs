//! The seasonal model under the pod autoscaler's forecast ([`super::forecast`]): the season is found by autocorrelation among candidate periods (a day, a
//! week, at the series' step), the series is fitted with additive Holt-Winters
//! (level, trend, season; smoothing weights chosen on the series' own one-step errors),
//! and the headroom is a quantile of the recent errors (statrs' order statistics), not a
//! constant. Forecasts never go below zero. Pure.

use statrs::statistics::{Data, OrderStatistics, Statistics};

/// One-step errors kept for [`Fitted::headroom`] (older ones are dropped in halves).
const MAX_ERRORS: usize = 8192;
/// How far a value may move the model: the forecast ± this many times the running mean
/// size of the one-step errors (about 3.2 standard deviations for normal errors). A spike
/// past it moves level, trend and season as a value at the bound would (a Huber-type
/// robust Holt-Winters, after Gelper, Fried and Croux, "Robust forecasting with
/// exponential and Holt-Winters smoothing", 2010), so one burst is not taken for a new
/// level, a trend or tomorrow's season, while a lasting shift still is within a few
/// steps (the running size grows with the clipped errors, and is at least
/// [`MIN_SPREAD`] of the forecast). The newest rate and the headroom see the burst in
/// full. Chosen by replaying the development traces (docs/simulate.md): 3 and 4 were
/// tried, 4 kept.
const CLIP: f64 = 4.0;
/// The running size is taken as at least this share of the forecast, so that a series
/// that has been flat (errors of 0) still follows a lasting shift: without it a
/// reconciler test's load, flat for ten minutes, never let its pods go after it dropped.
/// With 5 % they went after 165 s instead of within the lead (150 s); 10 % keeps that.
const MIN_SPREAD: f64 = 0.1;
/// Errors seen before the clip applies (`errors` holds them all until then: it is only
/// trimmed past [`MAX_ERRORS`], to half of that).
const CLIP_AFTER: usize = 8;
/// The weight of each new error in the running size.
const SPREAD_WEIGHT: f64 = 0.05;

/// A fitted model, ready to forecast from the end of its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// The season's length, in steps (`None`: no season stood out).
    pub period: Option<usize>,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Where the series ended, in the season.
    phase: usize,
    /// A running mean of the one-step errors' size (their clipped absolute values).
    spread: f64,
    /// One-step errors over the fit (actual − forecast), oldest first.
    pub errors: Vec<f64>,
    /// The smoothing weights chosen (level, trend, season).
    pub weights: (f64, f64, f64),
}

/// The candidate period (in steps) whose autocorrelation is highest, if it is clearly
/// seasonal (above `min_correlation`) and the series holds at least two of it.
pub fn detect_period(series: &[f64], candidates: &[usize], min_correlation: f64) -> Option<usize> {
    let mean = series.iter().mean();
    let variance: f64 = series.iter().map(|v| (v - mean) * (v - mean)).sum();
    if !(variance.is_finite() && variance > 0.0) {
        return None;
    }
    candidates
        .iter()
        .copied()
        .filter(|&p| p >= 2 && series.len() >= 2 * p)
        .map(|p| {
            let covariance: f64 = series
                .iter()
                .zip(&series[p..])
                .map(|(a, b)| (a - mean) * (b - mean))
                .sum();
            (p, covariance / variance)
        })
        .filter(|(_, r)| *r >= min_correlation)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(p, _)| p)
}

/// Runs additive Holt-Winters over `series` with `weights`; `period` 1 means no season.
fn run(series: &[f64], period: usize, (alpha, beta, gamma): (f64, f64, f64)) -> Fitted {
    let first = &series[..period.min(series.len())];
    let level = first.iter().mean();
    let trend = if series.len() >= 2 * period && period > 1 {
        (series[period..2 * period].iter().mean() - level) / period as f64
    } else {
        0.0
    };
    let season: Vec<f64> = if period > 1 {
        first.iter().map(|v| v - level).collect()
    } else {
        vec![0.0]
    };
    let mut fitted = Fitted {
        period: (period > 1).then_some(period),
        level,
        trend,
        // Where the first value stepped over below falls in the season.
        phase: first.len() % season.len(),
        season,
        spread: 0.0,
        errors: Vec::with_capacity(series.len()),
        weights: (alpha, beta, gamma),
    };
    for &actual in &series[period.min(series.len())..] {
        fitted.step(actual);
    }
    fitted
}

/// Fits `series` (evenly spaced, oldest first): the season among `candidates` (see
/// [`detect_period`]), then the smoothing weights with the least squared one-step error
/// on a small grid. `None` for fewer than 4 points.
pub fn fit(series: &[f64], candidates: &[usize]) -> Option<Fitted> {
    if series.len() < 4 || series.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let period = detect_period(series, candidates, 0.3).unwrap_or(1);
    const GRID: [f64; 4] = [0.05, 0.2, 0.5, 0.8];
    let mut best: Option<(f64, Fitted)> = None;
    // On a tie (a flat series fits every weight equally) the most responsive level wins,
    // so a later shift is followed within a few buckets, not dozens.
    for alpha in GRID.into_iter().rev() {
        for beta in [0.0, 0.05, 0.2] {
            for gamma in if period > 1 { &GRID[..] } else { &[0.0][..] } {
                let fitted = run(series, period, (alpha, beta, *gamma));
                let sse: f64 = fitted.errors.iter().map(|e| e * e).sum();
                if best.as_ref().is_none_or(|(b, _)| sse < *b) {
                    best = Some((sse, fitted));
                }
            }
        }
    }
    best.map(|(_, f)| f)
}

impl Fitted {
    /// The forecast `steps` ahead of the series' end (1 = the next step), never negative.
    pub fn forecast(&self, steps: usize) -> f64 {
        let season = self.season[(self.phase + steps - 1) % self.season.len()];
        (self.level + self.trend * steps as f64 + season).max(0.0)
    }

    /// The highest forecast over steps `from..=to` ahead (what must be served until pods
    /// asked for now are ready).
    pub fn peak(&self, from: usize, to: usize) -> f64 {
        (from.max(1)..=to.max(from).max(1))
            .map(|h| self.forecast(h))
            .fold(0.0, f64::max)
    }

    /// Takes the series' next value with the fitted weights (no refit): its one-step
    /// error is recorded, then level, trend and season move. O(1), so a long replay or a
    /// long-running controller pays a full [`fit`] only now and then.
    pub fn update(&mut self, actual: f64) {
        self.step(actual);
        if self.errors.len() > MAX_ERRORS {
            self.errors.drain(..MAX_ERRORS / 2);
        }
    }

    /// One Holt-Winters step: the one-step error is recorded as it is; level, trend and
    /// season move on the value clipped to the forecast ± a multiple of the running error
    /// size.
    fn step(&mut self, actual: f64) {
        let (alpha, beta, gamma) = self.weights;
        let s = self.phase;
        let forecast = self.level + self.trend + self.season[s];
        let error = actual - forecast;
        let seen = self.errors.len();
        self.errors.push(error);
        let bound = CLIP * self.spread.max(MIN_SPREAD * forecast.abs());
        let (used, size, weight) = if seen < CLIP_AFTER {
            // The first errors set the size as their plain mean.
            (actual, error.abs(), 1.0 / (seen + 1) as f64)
        } else if error.abs() > bound {
            (forecast + bound.copysign(error), bound, SPREAD_WEIGHT)
        } else {
            (actual, error.abs(), SPREAD_WEIGHT)
        };
        self.spread += weight * (size - self.spread);
        let previous = self.level;
        self.level = alpha * (used - self.season[s]) + (1.0 - alpha) * (self.level + self.trend);
        self.trend = beta * (self.level - previous) + (1.0 - beta) * self.trend;
        if self.period.is_some() {
            self.season[s] = gamma * (used - self.level) + (1.0 - gamma) * self.season[s];
        }
        self.phase = (s + 1) % self.season.len();
    }

    /// The `q` quantile (0..1) of the last `recent` one-step errors, at least 0: how much
    /// to add so that a share `q` of recent surprises would have been covered.
    pub fn headroom(&self, q: f64, recent: usize) -> f64 {
        let tail = &self.errors[self.errors.len().saturating_sub(recent)..];
        if tail.is_empty() {
            return 0.0;
        }
        Data::new(tail.to_vec())
            .quantile(q.clamp(0.0, 1.0))
            .max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hourly: a daily wave around 100, weekends lower, a little noise.
    fn hourly(days: usize) -> Vec<f64> {
        (0..days * 24)
            .map(|h| {
                let daily = (2.0 * std::f64::consts::PI * (h % 24) as f64 / 24.0).sin();
                let weekend = if (h / 24) % 7 >= 5 { 0.7 } else { 1.0 };
                let noise = ((h * 7919) % 13) as f64 / 13.0 - 0.5;
                (100.0 + 60.0 * daily) * weekend + noise
            })
            .collect()
    }

    #[test]
    fn it_learns_the_period() {
        // Ten days: the weekend (days 5 and 6) is three weekdays behind the end.
        let series = hourly(10);
        assert_eq!(detect_period(&series, &[24, 168], 0.3), Some(24));
        let fitted = fit(&series, &[24, 168]).unwrap();
        assert_eq!(fitted.period, Some(24));
        // The next day's shape: peak six hours into the day, trough at eighteen.
        let next: Vec<f64> = (1..=24).map(|h| fitted.forecast(h)).collect();
        let peak = (0..24)
            .max_by(|a, b| next[*a].total_cmp(&next[*b]))
            .unwrap();
        let trough = (0..24)
            .min_by(|a, b| next[*a].total_cmp(&next[*b]))
            .unwrap();
        assert!((5..=7).contains(&peak), "peak at hour {peak}: {next:?}");
        assert!(
            (17..=19).contains(&trough),
            "trough at hour {trough}: {next:?}"
        );
        assert!(
            (next[peak] - 160.0).abs() < 20.0 && (next[trough] - 40.0).abs() < 20.0,
            "{next:?}"
        );
        // Its errors are small next to the swing, and the headroom reflects them.
        let headroom = fitted.headroom(0.9, 48);
        assert!(headroom > 0.0 && headroom < 15.0, "{headroom}");
        assert!(fitted.peak(1, 6) >= fitted.forecast(1));
    }

    #[test]
    fn a_burst_does_not_move_the_model_but_a_lasting_shift_does() {
        let noise = |i: usize| ((i * 7919) % 13) as f64 / 13.0 - 0.5;
        // 10 with a little noise, then one burst to 100.
        let mut series: Vec<f64> = (0..200).map(|i| 10.0 + noise(i)).collect();
        series.push(100.0);
        let fitted = fit(&series, &[24]).unwrap();
        // Without the clip the burst would move the level by up to 0.8 × 90 (the most
        // responsive weight); with it, by at most a bound of a few times the noise.
        assert!(fitted.forecast(1) < 15.0, "{}", fitted.forecast(1));
        assert!(fitted.forecast(24) < 40.0, "{}", fitted.forecast(24));
        // The error is recorded as it was: the headroom sees the burst.
        assert!(
            *fitted.errors.last().unwrap() > 85.0,
            "{:?}",
            fitted.errors.last()
        );
        // A flat series that drops for good is followed too (its errors had been 0).
        let mut flat = fit(&[10.0; 100], &[24]).unwrap();
        for _ in 0..30 {
            flat.update(1.0);
        }
        assert!((flat.forecast(1) - 1.0).abs() < 0.5, "{}", flat.forecast(1));
        // A shift to 20 that lasts is followed.
        let mut shifted = fitted.clone();
        for i in 0..60 {
            shifted.update(20.0 + noise(i));
        }
        assert!(
            (shifted.forecast(1) - 20.0).abs() < 1.0,
            "{}",
            shifted.forecast(1)
        );
    }

    #[test]
    fn flat_or_noisy_series_have_no_season_and_forecasts_stay_non_negative() {
        assert_eq!(detect_period(&[5.0; 100], &[24], 0.3), None);
        let falling: Vec<f64> = (0..60).map(|i| 60.0 - i as f64).collect();
        let fitted = fit(&falling, &[24]).unwrap();
        assert!(fitted.forecast(500) >= 0.0);
        assert_eq!(fitted.forecast(500), 0.0, "a falling trend stops at zero");
        assert!(fit(&[1.0, 2.0], &[24]).is_none());
        assert!(fit(&[1.0, f64::NAN, 2.0, 3.0], &[24]).is_none());
    }

    #[test]
    fn updating_a_fit_step_by_step_is_the_same_as_running_it_over_the_whole_series() {
        let series = hourly(10);
        let fitted = fit(&series[..200], &[24, 168]).unwrap();
        let mut updated = fitted.clone();
        for v in &series[200..] {
            updated.update(*v);
        }
        let whole = run(&series, 24, fitted.weights);
        for h in 1..=48 {
            assert!(
                (updated.forecast(h) - whole.forecast(h)).abs() < 1e-9,
                "step {h}"
            );
        }
        assert_eq!(updated.errors.len(), whole.errors.len());
    }
}
