//! Table-driven tests of the pod autoscaler's decision core, written from upstream's
//! semantics (kubernetes pkg/controller/podautoscaler: horizontal.go, replica_calculator.go).
//! Each case is a STATE document, as `weir recommend replicas` reads it.

#![allow(clippy::unwrap_used)]

use weir_controllers::pod_autoscaler::{Recommendation, state};

const NOW: &str = "2026-11-22T10:00:00Z";

/// A STATE with `policy` (YAML, indented under `policy:`), `current` replicas, `pods`
/// (YAML list items) and `rest` (more top-level YAML).
fn decide(policy: &str, current: i32, pods: &str, rest: &str) -> Recommendation {
    let yaml = format!(
        "policy:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n{policy}\n\
         currentReplicas: {current}\nnow: \"{NOW}\"\npods:\n{pods}\n{rest}\n"
    );
    let parsed = state::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    parsed.recommend().unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// `n` ready, long-running pods `p1..pn`, each requesting `request` of cpu.
fn ready_pods(n: usize, request: &str) -> String {
    (1..=n)
        .map(|i| ready_pod(&format!("p{i}"), request))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ready_pod(name: &str, request: &str) -> String {
    format!(
        "- {{name: {name}, ready: true, startTime: \"2026-11-22T09:00:00Z\", readySince: \"2026-11-22T09:00:20Z\", containers: [{{name: app, requests: {{cpu: {request}, memory: 1Gi}}}}]}}"
    )
}

/// Per-pod samples `p1: v1, ...`.
fn samples(values: &[&str]) -> String {
    let pods: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("      p{}: {{value: \"{v}\"}}", i + 1))
        .collect();
    format!("- pods:\n{}", pods.join("\n"))
}

const CPU_50: &str = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}";

fn condition<'a>(r: &'a Recommendation, type_: &str) -> (&'a str, &'a str) {
    let c = r
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:#?}", r.conditions));
    (c.status, c.reason)
}

// ---- Resource utilization and the pod rules ----

#[test]
fn utilization_above_target_scales_up_by_the_ratio() {
    // 1350m of 1500m requested = 90 % vs 50 %: ratio 1.8, ceil(1.8 × 3) = 6.
    let r = decide(
        CPU_50,
        3,
        &ready_pods(3, "500m"),
        &format!("samples:\n{}", samples(&["400m", "450m", "500m"])),
    );
    assert_eq!(r.desired_replicas, 6);
    assert_eq!(r.metrics[0].current.average_utilization, Some(90));
    assert_eq!(r.metrics[0].ratio, Some(1.8));
    assert_eq!(condition(&r, "ScalingActive"), ("True", "ValidMetricFound"));
    assert_eq!(
        condition(&r, "ScalingLimited"),
        ("False", "DesiredWithinRange")
    );
}

#[test]
fn utilization_is_truncated_to_a_whole_percent_as_upstream_does() {
    // 829m of 1500m = 55.26 % → 55 %: ratio exactly 1.1, within the 0.1 tolerance.
    let r = decide(
        CPU_50,
        3,
        &ready_pods(3, "500m"),
        &format!("samples:\n{}", samples(&["276m", "276m", "277m"])),
    );
    assert_eq!(r.metrics[0].current.average_utilization, Some(55));
    assert_eq!(r.desired_replicas, 3);
}

#[test]
fn within_tolerance_keeps_the_count_and_per_direction_tolerance_applies() {
    // 58 % vs 50 %: ratio 1.16. Default tolerance 0.1 scales up; a 0.2 scale-up tolerance does not.
    let pods = ready_pods(4, "1");
    let s = format!("samples:\n{}", samples(&["580m", "580m", "580m", "580m"]));
    assert_eq!(decide(CPU_50, 4, &pods, &s).desired_replicas, 5);
    let tolerant = format!("{CPU_50}\n  behavior:\n    scaleUp: {{tolerance: 200m}}");
    assert_eq!(decide(&tolerant, 4, &pods, &s).desired_replicas, 4);
    // The scale-down tolerance does not widen the band upward.
    let down_only = format!("{CPU_50}\n  behavior:\n    scaleDown: {{tolerance: 500m}}");
    assert_eq!(decide(&down_only, 4, &pods, &s).desired_replicas, 5);
}

#[test]
fn deleted_failed_and_succeeded_pods_are_ignored() {
    let pods = format!(
        "{}\n- {{name: gone, deleting: true, ready: true, containers: [{{name: app, requests: {{cpu: 1}}}}]}}\n\
         - {{name: crashed, phase: Failed, containers: [{{name: app, requests: {{cpu: 1}}}}]}}\n\
         - {{name: done, phase: Succeeded, containers: [{{name: app, requests: {{cpu: 1}}}}]}}",
        ready_pods(2, "1")
    );
    // Their samples (huge) would double the count if counted.
    let s = "samples:\n- pods:\n    p1: {value: \"1\"}\n    p2: {value: \"1\"}\n    gone: {value: \"50\"}\n    crashed: {value: \"50\"}\n    done: {value: \"50\"}";
    let r = decide(CPU_50, 2, &pods, s);
    // 100 % vs 50 %: ratio 2, ceil(2 × 2 ready) = 4.
    assert_eq!(r.desired_replicas, 4);
}

#[test]
fn missing_samples_count_as_full_request_on_the_way_down_and_can_cancel_it() {
    // Two pods at 10 %, one missing. Down: the missing one counts at max(100 %, 50 %) = 100 %:
    // (100+100+1000)/3000 = 40 % → ratio 0.8, ceil(0.8 × 3) = 3 = current: no change.
    let pods = ready_pods(3, "1");
    let s = "samples:\n- pods:\n    p1: {value: 100m}\n    p2: {value: 100m}";
    let r = decide(CPU_50, 3, &pods, s);
    assert_eq!(r.desired_replicas, 3);
    // With five pods, four at 10 %: (4×100 + 1000)/5000 = 28 % → 0.56 × 5 = 2.8 → 3.
    let pods = ready_pods(5, "1");
    let s = "samples:\n- pods:\n    p1: {value: 100m}\n    p2: {value: 100m}\n    p3: {value: 100m}\n    p4: {value: 100m}";
    assert_eq!(decide(CPU_50, 5, &pods, s).desired_replicas, 3);
}

#[test]
fn missing_samples_count_as_zero_on_the_way_up() {
    // p1 and p2 at 150 %, p3 missing → up; p3 at 0: 3000/3000... (1500+1500+0)/3000 = 100 %,
    // ratio 2 → ceil(2 × 3) = 6.
    let pods = ready_pods(3, "1");
    let s = "samples:\n- pods:\n    p1: {value: 1500m}\n    p2: {value: 1500m}";
    assert_eq!(decide(CPU_50, 3, &pods, s).desired_replicas, 6);
    // 60 % and missing: 0.6/0.5 = 1.2 up; with the missing pod at 0: 30 % → 0.6, the
    // direction flips: no change.
    let s = "samples:\n- pods:\n    p1: {value: 600m}\n    p2: {value: 600m}";
    assert_eq!(decide(CPU_50, 3, &pods, s).desired_replicas, 3);
}

#[test]
fn pending_and_starting_pods_count_as_zero_when_scaling_up() {
    // p1 at 200 %; p2 Pending; p3 started 1 min ago and not Ready yet (CPU init period).
    let pods = format!(
        "{}\n- {{name: p2, phase: Pending, containers: [{{name: app, requests: {{cpu: 1}}}}]}}\n\
         - {{name: p3, ready: false, startTime: \"2026-11-22T09:59:00Z\", readySince: \"2026-11-22T09:59:00Z\", containers: [{{name: app, requests: {{cpu: 1}}}}]}}",
        ready_pod("p1", "1")
    );
    let s = "samples:\n- pods:\n    p1: {value: \"2\"}\n    p3: {value: \"2\"}";
    let r = decide(CPU_50, 3, &pods, s);
    // Ready only: 200 % → ratio 4; with p2, p3 at 0: 2000/3000 = 66 % → 1.32 × 3 = 3.96 → 4.
    assert_eq!(r.metrics[0].current.average_utilization, Some(200));
    assert_eq!(r.desired_replicas, 4);
}

#[test]
fn a_ready_pod_whose_sample_predates_a_full_window_after_readiness_is_unready_for_cpu() {
    // Started 2 min ago (within the 5 min CPU initialization period), Ready 10 s ago; its
    // sample, taken now with a 30 s window, covers time before it was Ready.
    let pods = format!(
        "{}\n- {{name: young, ready: true, startTime: \"2026-11-22T09:58:00Z\", readySince: \"2026-11-22T09:59:50Z\", containers: [{{name: app, requests: {{cpu: 1}}}}]}}",
        ready_pod("p1", "1")
    );
    let s = "samples:\n- pods:\n    p1: {value: 800m}\n    young: {value: \"3\"}";
    // Counted only p1: 80 % → 1.6 × 1 ready = 1.6; young at 0 → 40 % → 0.8 < 1: flips, no change.
    assert_eq!(decide(CPU_50, 2, &pods, s).desired_replicas, 2);
    // A memory metric does not apply the CPU rules: both count.
    let memory = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Resource\n    resource: {name: memory, target: {type: AverageValue, averageValue: 1Gi}}";
    let s = "samples:\n- pods:\n    p1: {value: 2Gi}\n    young: {value: 2Gi}";
    assert_eq!(decide(memory, 2, &pods, s).desired_replicas, 4);
}

#[test]
fn a_pod_that_never_became_ready_after_the_init_period_is_unready() {
    // Started an hour ago, not Ready, readiness last changed 10 s after start (within the
    // 30 s initial readiness delay): it never was ready.
    let pods = format!(
        "{}\n- {{name: stuck, ready: false, startTime: \"2026-11-22T09:00:00Z\", readySince: \"2026-11-22T09:00:10Z\", containers: [{{name: app, requests: {{cpu: 1}}}}]}}",
        ready_pod("p1", "1")
    );
    let s = "samples:\n- pods:\n    p1: {value: \"1\"}\n    stuck: {value: \"1\"}";
    // p1 alone: 100 % → 2 × 1 = 2; stuck at 0: 50 % → ratio 1: within tolerance, no change.
    assert_eq!(decide(CPU_50, 2, &pods, s).desired_replicas, 2);
    // Had it turned unready later (readiness changed after the delay), it counts as ready.
    let pods = pods.replace("09:00:10Z", "09:30:00Z");
    assert_eq!(decide(CPU_50, 2, &pods, s).desired_replicas, 4);
}

#[test]
fn a_missing_request_fails_the_metric_with_upstreams_reason() {
    let pods = "- {name: p1, ready: true, startTime: \"2026-11-22T09:00:00Z\", readySince: \"2026-11-22T09:00:20Z\", containers: [{name: app, requests: {memory: 1Gi}}]}";
    let r = decide(CPU_50, 1, pods, "samples:\n- pods:\n    p1: {value: \"1\"}");
    assert_eq!(r.desired_replicas, 1);
    assert_eq!(
        condition(&r, "ScalingActive"),
        ("False", "FailedGetResourceMetric")
    );
    assert!(
        r.metrics[0]
            .error
            .as_deref()
            .unwrap()
            .contains("missing request for cpu in container app of Pod p1")
    );
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .starts_with("invalid metrics (1 invalid out of 1)")
    );
}

#[test]
fn container_resource_counts_only_the_named_container() {
    let policy = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: ContainerResource\n    containerResource: {name: cpu, container: app, target: {type: Utilization, averageUtilization: 50}}";
    let pods = "- {name: p1, ready: true, startTime: \"2026-11-22T09:00:00Z\", readySince: \"2026-11-22T09:00:20Z\", containers: [{name: app, requests: {cpu: 1}}, {name: sidecar, requests: {cpu: 1}}]}";
    let s = "samples:\n- pods:\n    p1: {containers: {app: \"1\", sidecar: 100m}}";
    let r = decide(policy, 1, pods, s);
    assert_eq!(r.metrics[0].current.average_utilization, Some(100));
    assert_eq!(r.desired_replicas, 2);
    assert_eq!(
        r.metrics[0].metric,
        "cpu container resource utilization (percentage of request)"
    );
}

// ---- Pods, Object, External, Prometheus ----

#[test]
fn pods_metric_averages_per_pod_values() {
    let policy = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Pods\n    pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"20\"}}";
    let s = format!("samples:\n{}", samples(&["25", "35"]));
    let r = decide(policy, 2, &ready_pods(2, "1"), &s);
    assert_eq!(
        r.metrics[0]
            .current
            .average_value
            .as_ref()
            .unwrap()
            .as_str(),
        "30"
    );
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(r.metrics[0].metric, "pods metric rps");
}

#[test]
fn object_value_scales_ready_pods_and_average_value_uses_status_replicas() {
    let value = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Object\n    object: {describedObject: {kind: Ingress, name: main}, metric: {name: rps}, target: {type: Value, value: \"100\"}}";
    // 300 vs 100: ratio 3 × 2 ready pods = 6 (the third pod is not Ready).
    let pods = format!(
        "{}\n- {{name: p3, ready: false, startTime: \"2026-11-22T09:00:00Z\", readySince: \"2026-11-22T09:30:00Z\", containers: []}}",
        ready_pods(2, "1")
    );
    let r = decide(value, 3, &pods, "samples:\n- value: \"300\"");
    assert_eq!(r.desired_replicas, 6);
    assert_eq!(r.metrics[0].metric, "Ingress metric rps");
    let average = value.replace("type: Value, value:", "type: AverageValue, averageValue:");
    // 300 / (100 × 4 status replicas) = 0.75 → ceil(300 / 100) = 3.
    let r = decide(
        &average,
        3,
        &pods,
        "statusReplicas: 4\nsamples:\n- value: \"300\"",
    );
    assert_eq!(r.metrics[0].ratio, Some(0.75));
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(
        r.metrics[0]
            .current
            .average_value
            .as_ref()
            .unwrap()
            .as_str(),
        "75"
    );
}

#[test]
fn external_and_prometheus_metrics_work_like_object_metrics() {
    let external = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: External\n    external: {metric: {name: queue_depth}, target: {type: AverageValue, averageValue: \"30\"}}";
    // 200 / (30 × 4) = 1.67 → ceil(200 / 30) = 7 (under the legacy limit of 8).
    let r = decide(
        external,
        4,
        &ready_pods(4, "1"),
        "samples:\n- value: \"200\"",
    );
    assert_eq!(r.desired_replicas, 7);
    // From 2 the legacy limit max(2 × 2, 4) holds it at 4.
    let r = decide(
        external,
        2,
        &ready_pods(2, "1"),
        "samples:\n- value: \"200\"",
    );
    assert_eq!(r.desired_replicas, 4);
    let prometheus = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Prometheus\n    prometheus: {query: \"sum(rate(requests_total[1m]))\", target: {type: Value, value: \"50\"}}";
    let r = decide(
        prometheus,
        2,
        &ready_pods(2, "1"),
        "samples:\n- value: \"75\"",
    );
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(
        r.metrics[0].metric,
        "prometheus query sum(rate(requests_total[1m]))"
    );
}

// ---- several metrics ----

const TWO_METRICS: &str = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n  - type: External\n    external: {metric: {name: queue}, target: {type: AverageValue, averageValue: \"10\"}}";

#[test]
fn the_largest_proposal_wins() {
    let s = format!("samples:\n{}\n- value: \"80\"", samples(&["500m", "500m"]));
    let r = decide(TWO_METRICS, 2, &ready_pods(2, "1"), &s);
    assert_eq!(r.metrics[0].proposed_replicas, Some(2));
    assert_eq!(r.metrics[1].proposed_replicas, Some(8));
    assert_eq!(r.desired_replicas, 4, "legacy scale-up limit max(2 × 2, 4)");
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "ScaleUpLimit"));
    assert!(
        r.conditions
            .iter()
            .any(|c| c.message.ends_with("from external metric queue"))
    );
}

#[test]
fn a_failed_metric_allows_scaling_up_but_never_down() {
    // CPU proposes 4 (up), the queue failed: scale up, but report the error.
    let s = format!(
        "samples:\n{}\n- error: \"adapter unreachable\"",
        samples(&["1", "1"])
    );
    let r = decide(TWO_METRICS, 2, &ready_pods(2, "1"), &s);
    assert_eq!(r.desired_replicas, 4);
    assert_eq!(condition(&r, "ScalingActive"), ("True", "ValidMetricFound"));
    assert!(r.error.is_some());
    // CPU proposes 1 (down), the queue failed: hold, ScalingActive False with its reason.
    let s = format!(
        "samples:\n{}\n- error: \"adapter unreachable\"",
        samples(&["100m", "100m"])
    );
    let r = decide(TWO_METRICS, 2, &ready_pods(2, "1"), &s);
    assert_eq!(r.desired_replicas, 2);
    assert_eq!(
        condition(&r, "ScalingActive"),
        ("False", "FailedGetExternalMetric")
    );
    assert_eq!(r.record, None);
}

// ---- legacy normalization (no behavior) ----

#[test]
fn legacy_path_stabilizes_downscale_over_five_minutes_and_bounds() {
    let pods = ready_pods(4, "1");
    let low = format!("samples:\n{}", samples(&["100m", "100m", "100m", "100m"]));
    // Proposal 1; a recommendation of 4 two minutes ago holds it at 4.
    let history = "history:\n  recommendations:\n  - {time: \"2026-11-22T09:58:00Z\", replicas: 4}";
    let r = decide(CPU_50, 4, &pods, &format!("{low}\n{history}"));
    assert_eq!(r.desired_replicas, 4);
    assert_eq!(
        condition(&r, "AbleToScale"),
        ("True", "ScaleDownStabilized")
    );
    assert_eq!(r.record, Some(1));
    // Six minutes ago is outside the window.
    let old = history.replace("09:58", "09:54");
    assert_eq!(
        decide(CPU_50, 4, &pods, &format!("{low}\n{old}")).desired_replicas,
        1
    );
    // minReplicas bounds it.
    let min3 = CPU_50.replace("minReplicas: 1", "minReplicas: 3");
    let r = decide(&min3, 4, &pods, &low);
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "TooFewReplicas"));
    // maxReplicas bounds it (below the rate limit).
    let max5 = CPU_50.replace("maxReplicas: 20", "maxReplicas: 5");
    let high = format!("samples:\n{}", samples(&["2", "2", "2", "2"]));
    let r = decide(&max5, 4, &pods, &high);
    assert_eq!(r.desired_replicas, 5);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "TooManyReplicas"));
}

#[test]
fn out_of_bounds_targets_are_brought_back_and_zero_disables_scaling() {
    let pods = ready_pods(2, "1");
    let s = format!("samples:\n{}", samples(&["500m", "500m"]));
    let max5 = CPU_50.replace("maxReplicas: 20", "maxReplicas: 5");
    let r = decide(&max5, 8, &pods, &s);
    assert_eq!(r.desired_replicas, 5);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "TooManyReplicas"));
    let min3 = CPU_50.replace("minReplicas: 1", "minReplicas: 3");
    assert_eq!(decide(&min3, 2, &pods, &s).desired_replicas, 3);
    let r = decide(CPU_50, 0, &pods, &s);
    assert_eq!(r.desired_replicas, 0);
    assert_eq!(condition(&r, "ScalingActive"), ("False", "ScalingDisabled"));
}

// ---- behavior ----

#[test]
fn behavior_defaults_allow_4_pods_or_100_percent_per_15_seconds() {
    let behavior = format!("{CPU_50}\n  behavior: {{}}");
    let s = format!("samples:\n{}", samples(&["5", "5"]));
    // Proposal ceil(10 × 2) = 20; limit max(2 + 4, 2 × 2) = 6.
    let r = decide(&behavior, 2, &ready_pods(2, "1"), &s);
    assert_eq!(r.desired_replicas, 6);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "ScaleUpLimit"));
    // After adding 4 in the last 15 s, the period started at 2: still max(2 + 4, 4) = 6.
    let events = "history:\n  scaleEvents:\n  - {time: \"2026-11-22T09:59:50Z\", change: 4}";
    let r = decide(
        &behavior,
        6,
        &ready_pods(6, "1"),
        &format!(
            "samples:\n{}\n{events}",
            samples(&["5", "5", "5", "5", "5", "5"])
        ),
    );
    assert_eq!(r.desired_replicas, 6);
}

#[test]
fn behavior_policies_select_max_min_or_disabled() {
    let rules = |select: &str| {
        format!(
            "{CPU_50}\n  behavior:\n    scaleUp:\n      selectPolicy: {select}\n      policies:\n      - {{type: Pods, value: 1, periodSeconds: 60}}\n      - {{type: Percent, value: 50, periodSeconds: 60}}"
        )
    };
    let pods = ready_pods(4, "1");
    let s = format!("samples:\n{}", samples(&["2", "2", "2", "2"]));
    // Pods: 4 + 1 = 5; Percent: ceil(4 × 1.5) = 6.
    assert_eq!(decide(&rules("Max"), 4, &pods, &s).desired_replicas, 6);
    assert_eq!(decide(&rules("Min"), 4, &pods, &s).desired_replicas, 5);
    let r = decide(&rules("Disabled"), 4, &pods, &s);
    assert_eq!(r.desired_replicas, 4);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "ScaleUpLimit"));
}

#[test]
fn behavior_scale_down_is_stabilized_and_rate_limited() {
    let policy = format!(
        "{CPU_50}\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 60\n      policies:\n      - {{type: Pods, value: 2, periodSeconds: 60}}"
    );
    let pods = ready_pods(10, "1");
    let low = format!("samples:\n{}", samples(&["100m"; 10]));
    // Proposal 2; the last minute's recommendations peak at 8: stabilized to 8.
    let history = "history:\n  recommendations:\n  - {time: \"2026-11-22T09:59:30Z\", replicas: 8}\n  - {time: \"2026-11-22T09:58:00Z\", replicas: 10}";
    let r = decide(&policy, 10, &pods, &format!("{low}\n{history}"));
    assert_eq!(r.desired_replicas, 8);
    assert_eq!(
        condition(&r, "AbleToScale"),
        ("True", "ScaleDownStabilized")
    );
    assert_eq!(
        condition(&r, "ScalingLimited"),
        ("False", "DesiredWithinRange")
    );
    // Without history: 2 pods per minute: 10 → 8.
    let r = decide(&policy, 10, &pods, &low);
    assert_eq!(r.desired_replicas, 8);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "ScaleDownLimit"));
    // Two removed 30 s ago: the period started at 10 again, so 8 → 8.
    let events = "history:\n  scaleEvents:\n  - {time: \"2026-11-22T09:59:30Z\", change: -2}";
    let pods8 = ready_pods(8, "1");
    let low8 = format!("samples:\n{}", samples(&["100m"; 8]));
    assert_eq!(
        decide(&policy, 8, &pods8, &format!("{low8}\n{events}")).desired_replicas,
        8
    );
}

#[test]
fn behavior_scale_up_stabilization_uses_the_lowest_recent_recommendation() {
    let policy = format!("{CPU_50}\n  behavior:\n    scaleUp: {{stabilizationWindowSeconds: 120}}");
    let pods = ready_pods(2, "1");
    let high = format!("samples:\n{}", samples(&["1", "1"]));
    let history = "history:\n  recommendations:\n  - {time: \"2026-11-22T09:59:00Z\", replicas: 3}";
    let r = decide(&policy, 2, &pods, &format!("{high}\n{history}"));
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(condition(&r, "AbleToScale"), ("True", "ScaleUpStabilized"));
}

// ---- beyond HPA ----

const QUEUE_TO_ZERO: &str = "  minReplicas: 0\n  maxReplicas: 10\n  metrics:\n  - type: External\n    external: {metric: {name: queue}, target: {type: Value, value: \"10\"}}";

#[test]
fn scales_to_zero_and_back_on_an_external_metric() {
    let r = decide(
        QUEUE_TO_ZERO,
        1,
        &ready_pods(1, "1"),
        "samples:\n- value: \"0\"\nhistory: {}",
    );
    assert_eq!(r.desired_replicas, 0);
    // From zero, no pods: ceil(ratio) = ceil(25 / 10) = 3.
    let r = decide(QUEUE_TO_ZERO, 0, "  []", "samples:\n- value: \"25\"");
    assert_eq!(r.metrics[0].proposed_replicas, Some(3));
    assert_eq!(r.desired_replicas, 3);
    // From zero with nothing queued, stay at zero.
    assert_eq!(
        decide(QUEUE_TO_ZERO, 0, "  []", "samples:\n- value: \"0\"").desired_replicas,
        0
    );
}

#[test]
fn fallback_holds_or_goes_to_its_count_after_the_threshold() {
    let hold = format!("{QUEUE_TO_ZERO}\n  fallback: {{failureThreshold: 3, action: Hold}}");
    let failed = "samples:\n- error: \"prometheus unreachable\"";
    let r = decide(
        &hold,
        4,
        &ready_pods(4, "1"),
        &format!("{failed}\nhistory: {{consecutiveFailures: 1}}"),
    );
    assert!(r.metrics_failed && !r.fallback_active);
    assert_eq!(r.desired_replicas, 4);
    let fixed = format!(
        "{QUEUE_TO_ZERO}\n  fallback: {{failureThreshold: 3, action: Replicas, replicas: 6}}"
    );
    let r = decide(
        &fixed,
        4,
        &ready_pods(4, "1"),
        &format!("{failed}\nhistory: {{consecutiveFailures: 2}}"),
    );
    assert!(r.fallback_active);
    assert_eq!(r.desired_replicas, 6);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "FallbackActive"));
}

#[test]
fn a_paused_policy_leaves_replicas_alone() {
    let s = format!("paused: true\nsamples:\n{}", samples(&["5", "5"]));
    let r = decide(CPU_50, 2, &ready_pods(2, "1"), &s);
    assert_eq!(r.desired_replicas, 2);
    assert_eq!(condition(&r, "ScalingActive"), ("False", "ScalingPaused"));
}

#[test]
fn state_problems_name_the_field() {
    let bad = format!(
        "policy:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n{CPU_50}\ncurrentReplicas: 2\nnow: \"{NOW}\"\npods:\n- {{name: p1, containers: [{{name: app, requests: {{cpu: lots}}}}]}}\n"
    );
    let e = state::parse(&bad).unwrap_err();
    assert_eq!(e.field, "pods[0].containers[0].requests.cpu");
    assert!(e.message.contains("not a quantity"), "{e}");
    assert!(
        !e.message.starts_with("pods[0]"),
        "the field is not repeated: {e}"
    );
    let unknown = bad.replace("currentReplicas", "curentReplicas");
    let e = state::parse(&unknown).unwrap_err();
    assert!(e.message.contains("curentReplicas"), "{e}");
}

#[test]
fn forecast_is_reported_beside_the_plain_decision_and_followed_when_enabled() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/recommend/forecast-rising-load.yaml"
    ))
    .unwrap();
    let report_only = state::parse(&example).unwrap().recommend().unwrap();
    assert_eq!(report_only.desired_replicas, 5);
    let forecast = report_only.forecast.as_ref().unwrap();
    // Demand climbs 0.8 a minute and is 4.8 now: two minutes ahead about 6.4. It has
    // risen over each of the last three minutes, a ramp: sized at target (7), not within
    // the tolerance band (6.4 / 1.1 would give 6).
    assert_eq!(
        (forecast.desired_replicas, forecast.plain_desired_replicas),
        (7, 5)
    );
    let metric = forecast.metrics[0].as_ref().unwrap();
    assert!((metric.peak - 6.4).abs() < 0.2, "{metric:?}");
    assert!((metric.rise * 60.0 - 0.8).abs() < 1e-9, "{metric:?}");
    let enabled = state::parse(&example.replace("enabled: false", "enabled: true"))
        .unwrap()
        .recommend()
        .unwrap();
    assert_eq!(enabled.desired_replicas, 7);
    assert_eq!(enabled.record, Some(7));
    // A falling history releases no pods while the demand now is above it: the forecast
    // never lowers the decision below what the demand measured now needs.
    let falling = example
        .replace("demand: 0.8}", "demand: 8.8}")
        .replace("demand: 1.6}", "demand: 8.0}")
        .replace("demand: 2.4}", "demand: 7.2}")
        .replace("demand: 3.2}", "demand: 6.4}")
        .replace("demand: 4.0}", "demand: 5.6}")
        .replace("enabled: false", "enabled: true");
    let r = state::parse(&falling).unwrap().recommend().unwrap();
    assert_eq!(r.desired_replicas, 5);
    // History given as ratios (as recorded before demand was reported) is taken as ratio
    // × currentReplicas; a point with both, or neither, names the field.
    let ratios = example
        .replace("demand: 0.8}", "ratio: 0.2}")
        .replace("demand: 4.0}", "ratio: 1.0}");
    assert_eq!(
        state::parse(&ratios).unwrap().recommend().unwrap().forecast,
        report_only.forecast
    );
    let both = example.replace("demand: 0.8}", "demand: 0.8, ratio: 0.2}");
    let e = state::parse(&both).unwrap().recommend().unwrap_err();
    assert_eq!(e.field, "samples[0].history[0]");
}

#[test]
fn a_rise_the_forecast_sized_is_not_paced_unless_the_policy_states_scale_up() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/recommend/forecast-rising-load.yaml"
    ))
    .unwrap()
    .replace("enabled: false", "enabled: true")
    .replace("currentReplicas: 4", "currentReplicas: 2");
    let recommend = |yaml: &str| state::parse(yaml).unwrap().recommend().unwrap();
    // HPA's pace without `behavior` allows max(2 × 2, 4) = 4 now; the forecast's 7 is
    // applied at once.
    let r = recommend(&example);
    assert_eq!(r.desired_replicas, 7);
    assert_eq!(r.forecast.as_ref().unwrap().plain_desired_replicas, 4);
    assert_eq!(
        condition(&r, "ScalingLimited"),
        ("False", "DesiredWithinRange")
    );
    // maxReplicas still bounds it.
    let r = recommend(&example.replace("maxReplicas: 20", "maxReplicas: 6"));
    assert_eq!(r.desired_replicas, 6);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "TooManyReplicas"));
    // Stated scale-down rules leave the rise unpaced; stated scale-up rules pace it.
    let with_behavior = |behavior: &str| {
        example.replace(
            "  forecast:",
            &format!("  behavior: {behavior}\n  forecast:"),
        )
    };
    let r = recommend(&with_behavior(
        "{scaleDown: {stabilizationWindowSeconds: 60}}",
    ));
    assert_eq!(r.desired_replicas, 7);
    let r = recommend(&with_behavior(
        "{scaleUp: {policies: [{type: Percent, value: 100, periodSeconds: 15}]}}",
    ));
    assert_eq!(r.desired_replicas, 4);
    assert_eq!(condition(&r, "ScalingLimited"), ("True", "ScaleUpLimit"));
    // Without a model yet (one point of history), the plain proposal keeps HPA's pace.
    let young = example
        .lines()
        .filter(|l| !l.contains("demand:") || l.contains("10:00:00Z"))
        .collect::<Vec<_>>()
        .join("\n");
    let r = recommend(&young);
    assert!(r.forecast.as_ref().unwrap().metrics[0].is_none());
    assert_eq!(r.desired_replicas, 4);
}

// ---- Parity with current upstream's edge cases ----

#[test]
fn pods_exactly_at_the_target_leave_missing_pods_out_as_upstream_does() {
    // 5 replicas, samples 20/19/21 for three of them, target 20: the average is the target
    // exactly, so current upstream (replica_calculator.go) assumes nothing for the two
    // missing pods and keeps 5. Filling them with 0 would give 60/5 = 12 per pod → 3.
    let policy = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Pods\n    pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"20\"}}";
    let s = format!("samples:\n{}", samples(&["20", "19", "21"]));
    let r = decide(policy, 5, &ready_pods(5, "1"), &s);
    assert_eq!(r.desired_replicas, 5);
    // Just above and just below the target, the missing pods still count (0 up, the
    // target down), as before.
    let s = format!("samples:\n{}", samples(&["30", "30", "30"]));
    assert_eq!(
        decide(policy, 5, &ready_pods(5, "1"), &s).desired_replicas,
        5
    );
    let s = format!("samples:\n{}", samples(&["10", "10", "10"]));
    assert_eq!(
        decide(policy, 5, &ready_pods(5, "1"), &s).desired_replicas,
        4
    );
}

#[test]
fn values_beyond_int64_milli_units_are_capped_and_decided_as_upstream_does() {
    // A target at the int64 maximum of milli-units, and a usage beyond it: upstream's
    // MilliValue() caps both, the ratio is 1 and the count stays (Weir used to refuse the
    // metric as "out of range").
    let policy = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: External\n    external: {metric: {name: backlog}, target: {type: Value, value: \"9223372036854775807m\"}}";
    let r = decide(
        policy,
        3,
        &ready_pods(3, "1"),
        "samples:\n- value: \"1e19\"",
    );
    assert_eq!(r.desired_replicas, 3);
    assert_eq!(r.metrics[0].ratio, Some(1.0));
    // Per-pod values that each reach the cap do not overflow their sum.
    let pods_policy = "  minReplicas: 1\n  maxReplicas: 20\n  metrics:\n  - type: Pods\n    pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"1\"}}";
    let s = format!("samples:\n{}", samples(&["1e19", "1e19"]));
    assert_eq!(
        decide(pods_policy, 2, &ready_pods(2, "1"), &s).desired_replicas,
        4
    );
}
