//! `weir simulate`: replay a demand trace through the pod autoscaler's decision core,
//! side by side with HPA, and measure how often pods were short, at what cost, and how
//! much they flapped. Pure: [`trace`] parses traces, [`model`] replays them; the command
//! (files, progress bar, outputs) is in the `weir` binary.

pub mod model;
pub mod plot;
pub mod trace;

pub use model::{Decision, ModelOptions, Replay, Row, Summary, as_hpa, replay, replay_observed};

/// Parses a ScalingPolicy manifest (YAML or JSON) named `source` in errors, and checks
/// that it can be replayed.
pub fn parse_policy(
    text: &str,
    source: &str,
) -> Result<weir_crds::scaling_policy::ScalingPolicy, String> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let policy: weir_crds::scaling_policy::ScalingPolicy =
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| format!("{source}: {}: {}", e.path(), e.inner()))?;
    model::check(&policy.spec).map_err(|e| format!("{source}: {e}"))?;
    Ok(policy)
}
pub use trace::{Trace, ValueUnit, parse_csv, parse_prometheus_json};

/// The timeline of every replay, one row per sync: the shared columns once, then each
/// policy's.
pub fn timeline_csv(replays: &[(&str, &Replay)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("time_seconds,offered_load,observed_load");
    for (name, _) in replays {
        let _ = write!(
            out,
            ",{name}_desired,{name}_ready,{name}_running,{name}_capacity,{name}_forecast_replicas"
        );
    }
    out.push('\n');
    let Some((_, first)) = replays.first() else {
        return out;
    };
    for (i, row) in first.rows.iter().enumerate() {
        let _ = write!(out, "{},{},{}", row.time, row.load, row.observed);
        for (_, replay) in replays {
            let r = &replay.rows[i];
            let forecast = r
                .forecast_replicas
                .map(|f| f.to_string())
                .unwrap_or_default();
            let _ = write!(
                out,
                ",{},{},{},{},{forecast}",
                r.desired, r.ready, r.running, r.capacity
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use weir_crds::scaling_policy::ScalingPolicy;

    use super::*;

    /// A Pods metric at 70 % of a pod's 10 requests/s.
    fn policy(extra: &str) -> ScalingPolicy {
        policy_at("\"7\"", extra)
    }

    /// A Pods metric with this target (`averageValue`).
    fn policy_at(target: &str, extra: &str) -> ScalingPolicy {
        serde_yaml::from_str(&format!(
            "apiVersion: weir.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: web, namespace: shop}}\n\
             spec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: 1\n  maxReplicas: 100\n\
             \x20 metrics:\n  - type: Pods\n    pods: {{metric: {{name: rps}}, target: {{type: AverageValue, averageValue: {target}}}}}\n{extra}"
        ))
        .unwrap()
    }

    fn options() -> ModelOptions {
        ModelOptions {
            capacity_per_pod: 10.0,
            startup_seconds: 60,
            sync_seconds: 15,
            metric_window_seconds: 60,
            initial_replicas: None,
        }
    }

    fn trace(points: &[(u64, f64)], end: u64) -> Trace {
        Trace::from_rates(points.to_vec(), end)
    }

    #[test]
    fn a_constant_load_settles_and_is_never_short() {
        // 70 rps at 7 per pod: 10 pods, once started; then steady.
        let replay = replay(&policy(""), &trace(&[(0, 70.0)], 3600), &options(), |_| {}).unwrap();
        let last = replay.rows.last().unwrap();
        assert_eq!((last.desired, last.ready), (10, 10));
        let settled = replay.rows.iter().position(|r| r.ready == 10).unwrap();
        assert!(
            replay.rows[settled..].iter().all(|r| r.desired == 10),
            "no flapping once settled"
        );
        // Short only while the first pods start (from 1 pod at 10 rps capacity).
        assert!(
            replay.summary.under_provisioned_minutes <= 3.0,
            "{:?}",
            replay.summary
        );
        let steady = trace(&[(0, 70.0)], 3600);
        let started = ModelOptions {
            initial_replicas: Some(10),
            ..options()
        };
        let steady = super::replay(&policy(""), &steady, &started, |_| {}).unwrap();
        assert_eq!(steady.summary.under_provisioned_minutes, 0.0);
        assert_eq!(steady.summary.scale_events, 0);
        assert!((steady.summary.replica_hours - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_step_is_answered_after_the_window_and_the_startup() {
        let opts = ModelOptions {
            initial_replicas: Some(10),
            ..options()
        };
        // 70 rps, then 140 rps from t = 600.
        let replay = replay(
            &policy(""),
            &trace(&[(0, 70.0), (600, 140.0)], 1800),
            &opts,
            |_| {},
        )
        .unwrap();
        let scaled = replay.rows.iter().find(|r| r.desired > 10).unwrap();
        // The first sync at or after the step sees part of it in its window.
        assert!(scaled.time >= 615 && scaled.time <= 660, "{scaled:?}");
        let ready = replay.rows.iter().find(|r| r.ready > 10).unwrap();
        assert_eq!(ready.time, scaled.time + 60, "ready one startup later");
        assert_eq!(replay.rows.last().unwrap().desired, 20);
        // Short from the step until enough pods are ready.
        assert!(replay.summary.under_provisioned_minutes >= 1.0);
    }

    #[test]
    fn decisions_use_only_the_past() {
        let full = trace(&[(0, 30.0), (900, 90.0), (1800, 20.0), (2700, 60.0)], 3600);
        let cut = full.truncated(1800);
        let a = replay(&policy(""), &full, &options(), |_| {}).unwrap();
        let b = replay(&policy(""), &cut, &options(), |_| {}).unwrap();
        assert_eq!(&a.rows[..b.rows.len()], &b.rows[..]);
    }

    #[test]
    fn hpa_replay_is_the_policy_without_forecast_or_behavior() {
        let with =
            policy("  forecast: {enabled: true, horizonSeconds: 120, historySeconds: 600}\n");
        let hpa = as_hpa(&with);
        assert!(hpa.spec.forecast.is_none() && hpa.spec.behavior.is_none());
        let load = trace(&[(0, 30.0), (900, 90.0)], 1800);
        assert!(
            replay(&with, &load, &options(), |_| {}).unwrap().rows[0]
                .forecast_replicas
                .is_some()
        );
        assert!(
            replay(&hpa, &load, &options(), |_| {}).unwrap().rows[0]
                .forecast_replicas
                .is_none()
        );
    }

    #[test]
    fn targets_finer_than_milli_units_keep_their_value() {
        // 1470u is 2m in milli-units (rounded up, as Kubernetes' MilliValue rounds): the
        // replay would run pods at 95 % of 2.1m instead of 70 %.
        let micro = policy_at("1470u", "");
        let (scaled, unit) = model::fine_grained(&micro);
        let target = scaled.spec.metrics[0]
            .pods
            .as_ref()
            .unwrap()
            .target
            .average_value
            .clone();
        let target = target.unwrap().to_milli().unwrap() as f64 / unit;
        assert!((target - 0.00147).abs() < 1e-12, "{target}");
        // 0.1 rps at 1.47m per pod: 69 pods, not 50.
        let opts = ModelOptions {
            capacity_per_pod: 0.0021,
            initial_replicas: Some(69),
            ..options()
        };
        let replay = replay(&micro, &trace(&[(0, 0.1)], 1800), &opts, |_| {}).unwrap();
        assert_eq!(replay.rows.last().unwrap().desired, 69);
    }
}
