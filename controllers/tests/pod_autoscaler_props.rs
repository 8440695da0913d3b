//! Properties of the pod autoscaler's decision core over generated inputs: the result stays
//! within bounds, never scales down while a metric failed, and never moves against the
//! metrics' ratio.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use weir_controllers::pod_autoscaler::{
    Container, ControllerSettings, History, Input, MetricReading, Pod, PodPhase, PodReading,
    recommend,
};
use weir_crds::scaling_policy::ScalingPolicySpec;

fn now() -> Timestamp {
    "2026-11-22T10:00:00Z".parse().unwrap()
}

fn spec(min: i32, max: i32, metrics: &str, behavior: bool) -> ScalingPolicySpec {
    let behavior = if behavior { "\nbehavior: {}" } else { "" };
    serde_yaml::from_str(&format!(
        "targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\nminReplicas: {min}\nmaxReplicas: {max}\nmetrics:\n{metrics}{behavior}"
    ))
    .unwrap()
}

const PODS_METRIC: &str = "- type: Pods\n  pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"100\"}}";
const FAILING_EXTERNAL: &str =
    "\n- type: External\n  external: {metric: {name: q}, target: {type: Value, value: \"10\"}}";

fn pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod {
            name: format!("p{i}"),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(true),
            start_time: Some("2026-11-22T09:00:00Z".parse().unwrap()),
            ready_since: Some("2026-11-22T09:00:20Z".parse().unwrap()),
            containers: vec![Container {
                name: "app".into(),
                requests: BTreeMap::from([("cpu".to_string(), 1000)]),
            }],
        })
        .collect()
}

/// Per-pod readings; `None` entries are missing samples.
fn readings(values: &[Option<i64>]) -> MetricReading {
    MetricReading::Pods(
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|milli| {
                    (
                        format!("p{i}"),
                        PodReading {
                            milli,
                            containers: BTreeMap::new(),
                            timestamp: now(),
                            window: SignedDuration::from_secs(30),
                        },
                    )
                })
            })
            .collect(),
    )
}

fn history(recent: &[(i64, i32)], events: &[(i64, i32)]) -> History {
    History {
        recommendations: recent
            .iter()
            .map(|(ago, r)| (now() - SignedDuration::from_secs(*ago), *r))
            .collect(),
        scale_events: events
            .iter()
            .map(|(ago, c)| (now() - SignedDuration::from_secs(*ago), *c))
            .collect(),
        consecutive_failures: 0,
    }
}

prop_compose! {
    fn case()(
        min in 1i32..5,
        span in 0i32..30,
        values in prop::collection::vec(prop::option::weighted(0.85, 0i64..400_000), 1..25),
        behavior in any::<bool>(),
        recent in prop::collection::vec((0i64..900, 1i32..40), 0..5),
        events in prop::collection::vec((0i64..120, -10i32..10), 0..4),
    ) -> (i32, i32, Vec<Option<i64>>, bool, Vec<(i64, i32)>, Vec<(i64, i32)>) {
        (min, min + span, values, behavior, recent, events)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_result_is_always_within_bounds((min, max, values, behavior, recent, events) in case()) {
        let current = i32::try_from(values.len()).unwrap();
        let spec = spec(min, max, PODS_METRIC, behavior);
        let pods = pods(values.len());
        let readings = [readings(&values)];
        let history = history(&recent, &events);
        let settings = ControllerSettings::default();
        let r = recommend(&Input {
            spec: &spec, current_replicas: current, status_replicas: current, now: now(),
            pods: &pods, readings: &readings, history: &history, settings: &settings, paused: false, forecasts: &[],
        });
        prop_assert!(r.desired_replicas >= min && r.desired_replicas <= max,
            "{} outside [{min}, {max}] from {current}", r.desired_replicas);
    }

    #[test]
    fn no_scale_down_while_a_metric_failed((min, max, values, behavior, recent, events) in case()) {
        let current = i32::try_from(values.len()).unwrap().clamp(min, max);
        let spec = spec(min, max, &format!("{PODS_METRIC}{FAILING_EXTERNAL}"), behavior);
        let pods = pods(values.len());
        let readings = [readings(&values), MetricReading::Failed("down".into())];
        let history = history(&recent, &events);
        let settings = ControllerSettings::default();
        let r = recommend(&Input {
            spec: &spec, current_replicas: current, status_replicas: current, now: now(),
            pods: &pods, readings: &readings, history: &history, settings: &settings, paused: false, forecasts: &[],
        });
        prop_assert!(r.desired_replicas >= current, "{current} → {}", r.desired_replicas);
    }

    #[test]
    fn never_moves_against_the_ratio((min, max, values, behavior, _recent, events) in case()) {
        let current = i32::try_from(values.len()).unwrap();
        prop_assume!(current >= min && current <= max);
        let spec = spec(min, max, PODS_METRIC, behavior);
        let pods = pods(values.len());
        let readings = [readings(&values)];
        let history = history(&[], &events);
        let settings = ControllerSettings::default();
        let r = recommend(&Input {
            spec: &spec, current_replicas: current, status_replicas: current, now: now(),
            pods: &pods, readings: &readings, history: &history, settings: &settings, paused: false, forecasts: &[],
        });
        if let Some(ratio) = r.metrics[0].ratio {
            if ratio > 1.0 {
                prop_assert!(r.desired_replicas >= current, "ratio {ratio}: {current} → {}", r.desired_replicas);
            }
            if ratio < 1.0 {
                prop_assert!(r.desired_replicas <= current, "ratio {ratio}: {current} → {}", r.desired_replicas);
            }
        }
    }
}
