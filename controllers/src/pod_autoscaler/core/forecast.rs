//! Forecast-driven scaling: each metric's **demand** (the replicas it needs at its target,
//! unrounded: per-pod average × pods with samples ÷ target, or a single value ÷ its
//! per-pod target) is kept as an evenly spaced series of buckets, fitted with the seasonal
//! model of [`super::seasonal`] (a daily or weekly season when the history shows one,
//! additive Holt-Winters), and projected over the **lead time** (what a pod asked for now
//! takes to serve: its startup plus the metric's window).
//!
//! The decision provisions the forecast's peak over the lead time plus a **headroom**: a
//! quantile of the forecast's own recent errors at that same lead (what the peak turned out
//! to be, minus what was forecast for it), never a constant. It releases pods when the
//! forecast's peak over the scale-down stabilization window plus a **release headroom** (a
//! quantile of the same errors, by default the same one) stays below what runs: the
//! forecast stands in for HPA's look back at its last five minutes.
//!
//! Why our own model rather than a crate: the forecasting crates on crates.io fit a series
//! in one go (augurs' ETS and MSTL, for example) and refit from scratch on every new point;
//! a controller and a month-long `weir simulate` add one bucket at a time, so the model is
//! updated in O(1) per bucket and refitted only now and then. The statistics (mean,
//! quantiles) are statrs'.
//!
//! Pure: times come in as seconds, there is no clock. The fitted state sits behind an
//! `Arc`, so remembering it between syncs costs a pointer copy; it is copied only when a
//! bucket completes.

use std::{collections::VecDeque, sync::Arc};

use serde::Serialize;
use statrs::statistics::{Data, OrderStatistics};

use super::seasonal::{self, Fitted};

/// The history is kept as about this many buckets (14 days of 5-minute buckets).
pub const TARGET_BUCKETS: i64 = 4032;
/// The shortest bucket (the controller's sync period).
pub const MIN_STEP_SECONDS: i64 = 15;
/// Observations kept for [`Forecaster::newest`] and [`Forecaster::rise`] (six minutes of
/// 15-second syncs: three metric windows of a minute, with room to spare).
const RECENT_OBSERVATIONS: usize = 24;
/// How far apart point values (no window) are compared to tell a ramp.
const POINT_RAMP_SPAN_SECONDS: i64 = 60;
/// Buckets needed before the forecast says anything.
pub const MIN_BUCKETS: usize = 8;
/// Recent lead-time errors the headroom is a quantile of (about a day at 5 minutes).
const RECENT_ERRORS: usize = 288;
/// Lead-time errors needed before they set the headroom (until then the model's own
/// one-step errors do).
const MIN_ERRORS: usize = 24;
/// A full refit (season and weights) every this many buckets; in between, O(1) updates.
const REFIT_EVERY: usize = 288;

/// The bucket length for a history of `history_seconds`: about [`TARGET_BUCKETS`] buckets,
/// a multiple of [`MIN_STEP_SECONDS`].
pub fn step_for(history_seconds: i64) -> i64 {
    let raw = (history_seconds.max(1) + TARGET_BUCKETS - 1) / TARGET_BUCKETS;
    ((raw + MIN_STEP_SECONDS - 1) / MIN_STEP_SECONDS).max(1) * MIN_STEP_SECONDS
}

/// One metric's forecast at a decision, in replicas (demand units).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricForecast {
    /// The demand measured now.
    pub demand: f64,
    /// The demand at the end of the metric's window: on the way up, extrapolated along
    /// the rise since the last sync (a window average lags a rise by half its window).
    pub current: f64,
    /// How fast the demand has been rising, per second, when it rose over each of the
    /// last three metric windows (a ramp, not a step); 0 otherwise.
    pub rise: f64,
    /// The forecast's peak over the lead time.
    pub peak: f64,
    /// Added to the peak: the quantile of recent lead-time errors.
    pub headroom: f64,
    /// The forecast's peak over the scale-down stabilization window plus the release
    /// headroom (the `releasePercentile` of the same errors): fewer replicas than this
    /// are not released.
    pub hold: f64,
    /// The season found in the history, in seconds (`None`: none stood out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub season_seconds: Option<i64>,
    /// Buckets of history the model was fitted on.
    pub buckets: usize,
    /// The bucket length, in seconds.
    pub step_seconds: i64,
}

/// How the forecast is scored: the lead its errors are measured at, and the quantile of
/// them the headroom is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// Pod startup plus the metric window, in seconds.
    pub lead: i64,
    /// The headroom's quantile of recent errors (0..1).
    pub quantile: f64,
    /// The quantile of the same errors added to the peak over the stabilization window
    /// when pods are released (0..1).
    pub release_quantile: f64,
    /// The metric's window, in seconds (0 for a point value): what the newest rate is
    /// read through ([`Forecaster::newest`]).
    pub window: i64,
}

/// What is asked of [`Forecaster::predict`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Horizon {
    /// Now, in seconds.
    pub now: i64,
    /// Pod startup plus the metric window.
    pub lead: i64,
    /// The scale-down stabilization window.
    pub hold: i64,
    /// The window the metric is averaged over (0 for a point value).
    pub window: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    step: i64,
    capacity: usize,
    /// Complete buckets, oldest first.
    series: VecDeque<f64>,
    /// The index (time ÷ step) of the bucket after the series' last.
    next: i64,
    fitted: Option<Fitted>,
    since_fit: usize,
    /// The lead, in buckets, the errors below are measured at.
    lead: usize,
    /// The headroom's quantile.
    quantile: f64,
    /// The release headroom's quantile.
    release_quantile: f64,
    /// That quantile of `errors` (or of the model's one-step errors while they are few),
    /// at least 0; recomputed when a bucket completes.
    headroom: f64,
    /// Likewise at `release_quantile`.
    release_headroom: f64,
    /// (bucket index the forecast was made before, its peak over the lead).
    pending: VecDeque<(i64, f64)>,
    /// Actual peak minus forecast peak over the lead, oldest first.
    errors: VecDeque<f64>,
}

/// One sync's value as [`Forecaster`] keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Observed {
    /// When the value describes (a window's middle), in seconds.
    time: i64,
    /// The value (a window average, or a point value).
    demand: f64,
    /// The rate in the sync interval before it ([`Forecaster::newest`]).
    rate: f64,
}

/// A metric's demand history and its fitted model.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecaster {
    model: Arc<Model>,
    /// The bucket being filled: (index, sum, count).
    partial: Option<(i64, f64, u32)>,
    /// The last values observed, when, and the newest rate read at each (about two metric
    /// windows of syncs).
    recent: VecDeque<Observed>,
}

impl Forecaster {
    /// An empty history of `history_seconds`.
    pub fn new(history_seconds: i64) -> Self {
        let step = step_for(history_seconds);
        Self {
            model: Arc::new(Model {
                step,
                capacity: usize::try_from(history_seconds / step).unwrap_or(1).max(1),
                series: VecDeque::new(),
                next: 0,
                fitted: None,
                since_fit: 0,
                lead: 1,
                quantile: 0.9,
                release_quantile: 0.9,
                headroom: 0.0,
                release_headroom: 0.0,
                pending: VecDeque::new(),
                errors: VecDeque::new(),
            }),
            partial: None,
            recent: VecDeque::new(),
        }
    }

    /// The bucket length, in seconds.
    pub fn step(&self) -> i64 {
        self.model.step
    }

    /// The history it keeps, in seconds.
    pub fn history_seconds(&self) -> i64 {
        self.model.capacity as i64 * self.model.step
    }

    /// Complete buckets held.
    pub fn buckets(&self) -> usize {
        self.model.series.len()
    }

    /// Replaces the history with `points` (seconds, demand; e.g. a Prometheus range
    /// query), bucketed, and fits the model. Points need not be sorted.
    pub fn seed(&mut self, points: &[(i64, f64)], tuning: Tuning) {
        let mut fresh = Self::new(self.history_seconds());
        let mut sorted: Vec<(i64, f64)> = points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .collect();
        sorted.sort_by_key(|(t, _)| *t);
        for (time, value) in sorted {
            fresh.observe(time, value, tuning);
        }
        *self = fresh;
    }

    /// Adds the demand measured around `time` (seconds): it goes into that time's bucket;
    /// a bucket is complete when a later one gets a value. Out-of-order values are dropped.
    pub fn observe(&mut self, time: i64, demand: f64, tuning: Tuning) {
        if !(demand.is_finite() && demand >= 0.0) {
            return;
        }
        if self.recent.len() >= RECENT_OBSERVATIONS {
            self.recent.pop_front();
        }
        let rate = self.rate_at(time, demand, tuning.window);
        self.recent.push_back(Observed { time, demand, rate });
        let bucket = time.div_euclid(self.model.step);
        match self.partial {
            Some((index, ref mut sum, ref mut count)) if index == bucket => {
                *sum += demand;
                *count += 1;
                return;
            }
            Some((index, _, _)) if index > bucket => return,
            Some((index, sum, count)) => {
                let lead = self.lead_buckets(tuning.lead);
                let model = Arc::make_mut(&mut self.model);
                model.quantile = tuning.quantile.clamp(0.0, 1.0);
                model.release_quantile = tuning.release_quantile.clamp(0.0, 1.0);
                model.push(index, sum / f64::from(count), lead);
            }
            None => {}
        }
        if bucket < self.model.next {
            return;
        }
        self.partial = Some((bucket, demand, 1));
    }

    /// The rate in the newest sync interval, from successive window averages: an average
    /// over `w` moves by (newest − oldest part) × s / w between syncs `s` apart, so the
    /// newest part is the oldest part plus (w / s) × the move. The oldest part, the sync
    /// interval leaving the window, was the newest one a window back: its rate as read
    /// then, kept between that sync's window average and this one's so that errors in it
    /// cannot build up from window to window. A rise shows in full one sync after it
    /// starts, where the average shows a quarter of it (60 s window, 15 s syncs); a fall
    /// likewise, and once the window holds only the lower level, the rate stays there (the
    /// average one window back, taken for the oldest part until 2026-12-08, still held the
    /// higher level and echoed it for a window).
    fn newest(&self, demand: f64, horizon: &Horizon) -> f64 {
        self.rate_at(horizon.now - horizon.window / 2, demand, horizon.window)
    }

    /// [`Self::newest`] for a value observed at `now` (a window's middle), before it joins
    /// `recent`.
    fn rate_at(&self, now: i64, demand: f64, window: i64) -> f64 {
        let Some(previous) = self.recent.back() else {
            return demand;
        };
        let sync = now - previous.time;
        let back = self.recent.iter().rev().find(|o| o.time <= now - window);
        match back {
            Some(back) if window > 0 && sync > 0 && now - back.time <= 2 * window => {
                let oldest = back
                    .rate
                    .clamp(back.demand.min(demand), back.demand.max(demand));
                (oldest + (demand - previous.demand) * window as f64 / sync as f64).max(0.0)
            }
            _ => demand,
        }
    }

    /// The demand's rise per second when the window averages one, two and three windows
    /// back each rose to the next (a ramp): the smallest of the three rises over a window.
    /// A step moves a window average over one window only, so it is not taken for a ramp.
    /// Point values (a window of 0) are compared a minute apart.
    fn rise(&self, demand: f64, horizon: &Horizon) -> f64 {
        let window = if horizon.window > 0 {
            horizon.window
        } else {
            POINT_RAMP_SPAN_SECONDS
        };
        let now = horizon.now - horizon.window / 2;
        let at = |back: i64| {
            self.recent
                .iter()
                .rev()
                .find(|o| o.time <= now - back * window)
                .filter(|o| now - back * window - o.time < window / 2)
                .map(|o| o.demand)
        };
        let (Some(a), Some(b), Some(c)) = (at(1), at(2), at(3)) else {
            return 0.0;
        };
        let rises = [demand - a, a - b, b - c];
        if rises.iter().all(|r| *r > 0.0) {
            rises.iter().copied().fold(f64::INFINITY, f64::min) / window as f64
        } else {
            0.0
        }
    }

    fn lead_buckets(&self, lead_seconds: i64) -> usize {
        usize::try_from((lead_seconds.max(1) + self.model.step - 1) / self.model.step).unwrap_or(1)
    }

    /// The forecast at `horizon.now`; `None` until [`MIN_BUCKETS`] buckets are held.
    pub fn predict(&self, demand: f64, horizon: &Horizon) -> Option<MetricForecast> {
        let model = &*self.model;
        let fitted = model.fitted.as_ref()?;
        // Steps ahead of the series' end for a time (1 = the bucket after the last
        // complete one, which is the one being filled or just begun).
        let ahead = |time: i64| {
            usize::try_from(time.div_euclid(model.step) - model.next + 1)
                .unwrap_or(1)
                .max(1)
        };
        let from = ahead(horizon.now);
        let peak = fitted.peak(from, ahead(horizon.now + horizon.lead.max(0)));
        let headroom = model.headroom;
        let current = self.newest(demand, horizon).max(demand);
        let hold = fitted.peak(from, ahead(horizon.now + horizon.hold.max(horizon.lead)))
            + model.release_headroom;
        Some(MetricForecast {
            demand,
            current,
            rise: self.rise(demand, horizon),
            peak,
            headroom,
            hold,
            season_seconds: fitted.period.map(|p| p as i64 * model.step),
            buckets: model.series.len(),
            step_seconds: model.step,
        })
    }
}

impl Model {
    /// Appends bucket `index` (gaps are filled on a line),
    /// scores the forecasts made for the lead that just ended, and updates or refits.
    fn push(&mut self, index: i64, value: f64, lead: usize) {
        if self.series.is_empty() || index - self.next > self.capacity as i64 {
            self.series.clear();
            self.fitted = None;
            self.pending.clear();
            self.errors.clear();
            self.next = index;
        }
        if lead != self.lead {
            self.lead = lead;
            self.pending.clear();
            self.errors.clear();
        }
        // A gap (no syncs, or a sparse history) is filled on the line between the values
        // on either side.
        let (from, gap) = (
            self.series.back().copied().unwrap_or(value),
            index - self.next + 1,
        );
        for k in 1..gap {
            self.append(from + (value - from) * k as f64 / gap as f64);
        }
        self.append(value);
    }

    fn append(&mut self, value: f64) {
        self.series.push_back(value);
        self.next += 1;
        if self.series.len() > self.capacity {
            self.series.pop_front();
        }
        // Forecasts made `lead` buckets ago are now due: the actual peak over their lead
        // against the forecast peak.
        while let Some(&(made, forecast)) = self.pending.front() {
            if made + self.lead as i64 > self.next {
                break;
            }
            self.pending.pop_front();
            let actual = self
                .series
                .iter()
                .rev()
                .take(
                    usize::try_from(self.next - made)
                        .unwrap_or(0)
                        .min(self.lead),
                )
                .copied()
                .fold(0.0, f64::max);
            self.errors.push_back(actual - forecast);
            if self.errors.len() > RECENT_ERRORS {
                self.errors.pop_front();
            }
        }
        self.since_fit += 1;
        match &mut self.fitted {
            Some(fitted) if self.since_fit < REFIT_EVERY => fitted.update(value),
            _ if self.series.len() >= MIN_BUCKETS => {
                let series: Vec<f64> = self.series.iter().copied().collect();
                let day = (86_400 / self.step) as usize;
                self.fitted = seasonal::fit(&series, &[day, 7 * day]);
                self.since_fit = 0;
            }
            _ => {}
        }
        if let Some(fitted) = &self.fitted {
            self.pending
                .push_back((self.next, fitted.peak(1, self.lead)));
        }
        (self.headroom, self.release_headroom) = match &self.fitted {
            _ if self.errors.len() >= MIN_ERRORS => {
                let mut errors = Data::new(self.errors.iter().copied().collect::<Vec<f64>>());
                (
                    errors.quantile(self.quantile).max(0.0),
                    errors.quantile(self.release_quantile).max(0.0),
                )
            }
            Some(fitted) => (
                fitted.headroom(self.quantile, RECENT_ERRORS),
                fitted.headroom(self.release_quantile, RECENT_ERRORS),
            ),
            None => (0.0, 0.0),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Demand with a daily wave (5-minute samples over `days`), between 2 and 18 replicas.
    fn daily(days: i64, step: i64) -> Vec<(i64, f64)> {
        (0..days * 86_400 / step)
            .map(|i| {
                let t = i * step;
                let phase = 2.0 * std::f64::consts::PI * (t % 86_400) as f64 / 86_400.0;
                (t, 10.0 + 8.0 * phase.sin())
            })
            .collect()
    }

    const TUNING: Tuning = Tuning {
        lead: 120,
        quantile: 0.9,
        release_quantile: 0.9,
        window: 0,
    };

    fn horizon(now: i64) -> Horizon {
        Horizon {
            now,
            lead: 120,
            hold: 300,
            window: 0,
        }
    }

    #[test]
    fn buckets_follow_the_history_length() {
        assert_eq!(step_for(14 * 86_400), 300);
        assert_eq!(step_for(3600), 15);
        assert_eq!(step_for(7 * 86_400), 150);
        let f = Forecaster::new(14 * 86_400);
        assert_eq!(f.history_seconds(), 14 * 86_400);
    }

    #[test]
    fn it_learns_the_daily_season_and_sees_the_morning_coming() {
        let mut f = Forecaster::new(14 * 86_400);
        let points = daily(4, 60);
        for (t, v) in &points {
            f.observe(*t, *v, TUNING);
        }
        let now = 4 * 86_400;
        let p = f.predict(10.0, &horizon(now)).expect("a forecast");
        assert_eq!(p.season_seconds, Some(86_400), "{p:?}");
        // Six hours into the next day the wave peaks at 18.
        let morning = f
            .predict(
                10.0,
                &Horizon {
                    lead: 6 * 3600,
                    ..horizon(now)
                },
            )
            .unwrap();
        assert!((morning.peak - 18.0).abs() < 1.0, "{morning:?}");
        // Its errors are small: the headroom is too.
        assert!(p.headroom < 1.0, "{p:?}");
        assert!(p.hold >= p.peak);
    }

    #[test]
    fn seeding_gives_the_same_model_as_observing() {
        let points = daily(3, 300);
        let mut observed = Forecaster::new(14 * 86_400);
        for (t, v) in &points {
            observed.observe(*t, *v, TUNING);
        }
        let mut seeded = Forecaster::new(14 * 86_400);
        seeded.seed(&points, TUNING);
        assert_eq!(observed, seeded);
        assert_eq!(
            seeded.buckets(),
            points.len() - 1,
            "the last bucket is open"
        );
    }

    #[test]
    fn too_little_history_gives_nothing_and_gaps_are_filled() {
        let mut f = Forecaster::new(14 * 86_400);
        for i in 0..5 {
            f.observe(i * 300, 4.0, TUNING);
        }
        assert_eq!(f.predict(4.0, &horizon(1500)), None);
        // A gap of an hour is filled, not left as a hole.
        f.observe(5 * 300 + 3600, 4.0, TUNING);
        f.observe(5 * 300 + 3900, 4.0, TUNING);
        assert_eq!(f.buckets(), 18);
        let p = f.predict(4.0, &horizon(5 * 300 + 3900)).unwrap();
        assert!((p.peak - 4.0).abs() < 1e-6, "{p:?}");
        // Bad values and values from the past are dropped.
        f.observe(0, 100.0, TUNING);
        f.observe(5 * 300 + 3900, f64::NAN, TUNING);
        assert_eq!(f.buckets(), 18);
    }

    /// `rise` at the last of `points` (sync time, 60-second window average), the others
    /// observed at the syncs before.
    fn rise_after(points: &[(i64, f64)]) -> f64 {
        let mut f = Forecaster::new(14 * 86_400);
        let (&(now, demand), before) = points.split_last().unwrap();
        for (t, v) in before {
            f.observe(t - 30, *v, TUNING);
        }
        f.rise(
            demand,
            &Horizon {
                window: 60,
                ..horizon(now)
            },
        )
    }

    #[test]
    fn a_ramp_is_told_from_a_step_and_from_noise() {
        let syncs = |shape: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
            (0..40).map(|i| (i * 15, shape(i * 15))).collect()
        };
        // Demand climbing 1 a minute: window averages climb alike.
        let ramp = rise_after(&syncs(&|t| 10.0 + t as f64 / 60.0));
        assert!((ramp - 1.0 / 60.0).abs() < 1e-9, "{ramp}");
        // A step from 10 to 20 three minutes ago moved the window averages over one
        // window only: not a ramp, then or since.
        for at in [420, 480, 540] {
            let step = rise_after(&syncs(&|t| {
                if t < at {
                    10.0
                } else {
                    10.0 + 10.0 * ((t - at) as f64 / 60.0).min(1.0)
                }
            }));
            assert_eq!(step, 0.0, "step at {at}");
        }
        // Flat, and alternating noise, are not ramps either.
        assert_eq!(rise_after(&syncs(&|_| 10.0)), 0.0);
        assert_eq!(
            rise_after(&syncs(&|t| if (t / 60) % 2 == 0 { 9.0 } else { 11.0 })),
            0.0
        );
    }

    #[test]
    fn the_newest_rate_follows_a_step_at_once_and_does_not_echo_it() {
        // Demand 10, then 20 from 600 s, then 10 again from 900 s, read as 60-second window
        // averages every 15 s.
        let level = |t: i64| if (600..900).contains(&t) { 20.0 } else { 10.0 };
        let average = |t: i64| (t - 60..t).map(level).sum::<f64>() / 60.0;
        let tuning = Tuning {
            window: 60,
            ..TUNING
        };
        let mut f = Forecaster::new(14 * 86_400);
        let mut newest = Vec::new();
        for sync in (15..=1200).step_by(15) {
            let horizon = Horizon {
                window: 60,
                ..horizon(sync)
            };
            newest.push((sync, f.newest(average(sync), &horizon)));
            f.observe(sync - 30, average(sync), tuning);
        }
        for (sync, rate) in newest.into_iter().filter(|(sync, _)| *sync > 120) {
            // The rate in the 15 s before the sync.
            let expected = level(sync - 1);
            assert!(
                (rate - expected).abs() < 1e-9,
                "at {sync} s: newest {rate}, demand in the last sync interval {expected}"
            );
        }
    }

    #[test]
    fn a_falling_series_never_forecasts_negative_demand() {
        let mut f = Forecaster::new(14 * 86_400);
        for i in 0..40 {
            f.observe(i * 300, (40 - i) as f64, TUNING);
        }
        let p = f
            .predict(
                1.0,
                &Horizon {
                    lead: 86_400,
                    ..horizon(40 * 300)
                },
            )
            .unwrap();
        assert!(p.peak >= 0.0 && p.headroom >= 0.0, "{p:?}");
    }

    #[test]
    fn the_headroom_is_a_quantile_of_lead_time_errors() {
        // A steady 10 with a burst to 20 one bucket in ten: the 0.95 quantile of the
        // errors covers the burst, the median does not.
        let at = |quantile, release_quantile| {
            let mut f = Forecaster::new(14 * 86_400);
            for i in 0..400 {
                let v = if i % 10 == 0 { 20.0 } else { 10.0 };
                f.observe(
                    i * 300,
                    v,
                    Tuning {
                        lead: 300,
                        quantile,
                        release_quantile,
                        window: 0,
                    },
                );
            }
            f.predict(
                10.0,
                &Horizon {
                    lead: 300,
                    ..horizon(400 * 300)
                },
            )
            .unwrap()
        };
        let (high, median) = (at(0.95, 0.95), at(0.5, 0.5));
        assert!(high.peak + high.headroom >= 19.0, "{high:?}");
        assert!(median.headroom < high.headroom, "{median:?} {high:?}");
        // The release headroom is its own quantile: pods asked for at the median are kept
        // through the burst's quantile.
        let keep = at(0.5, 0.95);
        assert_eq!(keep.headroom, median.headroom, "{keep:?}");
        assert_eq!(keep.hold, high.hold, "{keep:?} {high:?}");
        assert!(
            keep.hold >= 19.0 && median.hold < keep.hold,
            "{median:?} {keep:?}"
        );
    }
}
