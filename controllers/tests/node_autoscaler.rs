//! Scenario tests of the node autoscaler's planner, written from cluster-autoscaler's
//! semantics: every predicate, every expander and a chain, limits, backoff, each drain
//! reason, min size, cooldowns, empty-first.

#![allow(clippy::unwrap_used)]

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::{
    Plan, Settings, plan,
    settings::{Expander, ExpanderChain},
};

mod node_fixtures;

use node_fixtures::*;

fn run_with(objects: Vec<Value>, settings: &Settings, now: Timestamp) -> Plan {
    plan(&snapshot(objects), settings, now)
}

fn run(objects: Vec<Value>) -> Plan {
    run_with(objects, &Settings::default(), now())
}

fn chain(expanders: &[Expander]) -> Settings {
    Settings {
        expander: ExpanderChain(expanders.to_vec()),
        ..Settings::default()
    }
}

fn ups(plan: &Plan) -> Vec<(String, i64)> {
    plan.scale_up
        .scale_ups
        .iter()
        .map(|u| (u.pool.clone(), u.delta))
        .collect()
}

fn unschedulable_reason(plan: &Plan, pod: &str, pool: &str) -> String {
    let u = plan
        .scale_up
        .unschedulable
        .iter()
        .find(|u| u.pod == format!("shop/{pod}"))
        .unwrap_or_else(|| panic!("{pod} not unschedulable: {plan:#?}"));
    u.pools.get(pool).cloned().unwrap_or_default()
}

fn unremovable(plan: &Plan, node: &str) -> (String, Option<String>) {
    let u = plan
        .scale_down
        .unremovable
        .iter()
        .find(|u| u.node == node)
        .unwrap_or_else(|| panic!("{node} not unremovable: {:#?}", plan.scale_down));
    (u.reason.clone(), u.detail.clone())
}

fn removed(plan: &Plan) -> Vec<String> {
    plan.scale_down
        .remove
        .iter()
        .map(|r| r.node.clone())
        .collect()
}

// ---------------------------------------------------------------- scale-up

#[test]
fn pending_pods_that_fit_existing_room_trigger_nothing() {
    let plan = run(vec![
        pool("general", "4", "16Gi", 0, 10),
        node("n1", "general", "4", "16Gi"),
        on(pod("web-0", "3", "1Gi"), "n1"),
        pod("web-1", "500m", "1Gi"),
    ]);
    assert_eq!(plan.scale_up.pending_pods, 1);
    assert_eq!(plan.scale_up.fit_existing[0].node, "n1");
    assert!(plan.scale_up.scale_ups.is_empty());
}

#[test]
fn pending_pods_that_fit_upcoming_nodes_trigger_nothing_until_provisioning_times_out() {
    let mut p = pool("general", "4", "16Gi", 0, 10);
    merge(
        &mut p,
        json!({"status": {"targetSize": 1, "lastScaleUpTime": "2026-11-22T09:55:00Z"}}),
    );
    let plan = run(vec![p.clone(), pod("web-1", "2", "1Gi")]);
    assert_eq!(plan.scale_up.fit_existing[0].node, "upcoming:general");
    assert!(plan.scale_up.scale_ups.is_empty());
    // 15 minutes later the node never came: it no longer counts and the pool backs off.
    let later: Timestamp = "2026-11-22T10:10:01Z".parse().unwrap();
    let plan = run_with(
        vec![p, pod("web-1", "2", "1Gi")],
        &Settings::default(),
        later,
    );
    assert_eq!(plan.provisioning_timed_out[0].pool, "general");
    assert_eq!(plan.provisioning_timed_out[0].missing, 1);
    assert!(plan.scale_up.scale_ups.is_empty());
    assert!(unschedulable_reason(&plan, "web-1", "general").starts_with("Backoff"));
}

#[test]
fn first_fit_decreasing_counts_the_nodes() {
    // 4-cpu nodes; pods of 3, 3, 2, 2, 1, 1 cpu: FFD packs [3,1] [3,1] [2,2] = 3 nodes.
    let mut objects = vec![pool("general", "4", "64Gi", 0, 10)];
    for (i, cpu) in ["1", "2", "3", "1", "2", "3"].iter().enumerate() {
        objects.push(pod(&format!("job-{i}"), cpu, "1Gi"));
    }
    let plan = run(objects);
    assert_eq!(ups(&plan), vec![("general".into(), 3)]);
    assert_eq!(plan.scale_up.scale_ups[0].pods.len(), 6);
    assert_eq!(plan.scale_up.scale_ups[0].target_size, 3);
}

#[test]
fn daemonset_pods_take_room_on_the_template_node() {
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "exporter", "namespace": "monitoring"},
        "spec": {"selector": {"matchLabels": {"app": "exporter"}}, "template": {
            "metadata": {"labels": {"app": "exporter"}},
            "spec": {"containers": [{"name": "e", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}}]}}}
    });
    // Two 2-cpu pods fit one 4-cpu node, but not next to the DaemonSet pod's 500m.
    let plan = run(vec![
        pool("general", "4", "16Gi", 0, 10),
        ds,
        pod("web-0", "2", "1Gi"),
        pod("web-1", "2", "1Gi"),
    ]);
    assert_eq!(ups(&plan), vec![("general".into(), 2)]);
}

#[test]
fn each_resource_predicate_names_what_is_short() {
    let mut gpu_pod = pod("train-0", "1", "1Gi");
    merge(
        &mut gpu_pod,
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}}]}}),
    );
    let mut disk_pod = pod("disk-0", "1", "1Gi");
    merge(
        &mut disk_pod,
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "200Gi"}}}]}}),
    );
    let mut small = pool("small", "2", "4Gi", 0, 10);
    merge(
        &mut small,
        json!({"spec": {"template": {"capacity": {"ephemeral-storage": "100Gi", "pods": "4"}}}}),
    );
    let plan = run(vec![
        small,
        pod("big-0", "3", "1Gi"),
        pod("fat-0", "1", "8Gi"),
        gpu_pod,
        disk_pod,
    ]);
    assert_eq!(
        unschedulable_reason(&plan, "big-0", "small"),
        "Insufficient cpu"
    );
    assert_eq!(
        unschedulable_reason(&plan, "fat-0", "small"),
        "Insufficient memory"
    );
    assert_eq!(
        unschedulable_reason(&plan, "train-0", "small"),
        "Insufficient nvidia.com/gpu"
    );
    assert_eq!(
        unschedulable_reason(&plan, "disk-0", "small"),
        "Insufficient ephemeral-storage"
    );
}

#[test]
fn max_pods_limits_pods_per_new_node() {
    let mut p = pool("tiny", "64", "256Gi", 0, 10);
    merge(
        &mut p,
        json!({"spec": {"template": {"capacity": {"pods": "2"}}}}),
    );
    let objects = vec![
        p,
        pod("a-0", "100m", "10Mi"),
        pod("a-1", "100m", "10Mi"),
        pod("a-2", "100m", "10Mi"),
    ];
    assert_eq!(ups(&run(objects)), vec![("tiny".into(), 2)]);
}

#[test]
fn gpu_pods_go_to_the_gpu_pool() {
    let mut gpu = pool("gpu", "8", "64Gi", 0, 4);
    merge(
        &mut gpu,
        json!({"spec": {"template": {"capacity": {"nvidia.com/gpu": "2"}}}}),
    );
    let mut train = pod("train-0", "1", "1Gi");
    merge(
        &mut train,
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"}}}]}}),
    );
    let plan = run(vec![pool("general", "8", "64Gi", 0, 4), gpu, train]);
    assert_eq!(ups(&plan), vec![("gpu".into(), 1)]);
}

#[test]
fn node_selector_affinity_and_taints_pick_the_pool() {
    let mut arm = pool("arm", "4", "16Gi", 0, 10);
    merge(
        &mut arm,
        json!({"spec": {"template": {"labels": {"kubernetes.io/arch": "arm64"}}}}),
    );
    let mut tainted = pool("batch", "4", "16Gi", 0, 10);
    merge(
        &mut tainted,
        json!({"spec": {"template": {"labels": {"kubernetes.io/arch": "arm64"}, "taints": [{"key": "batch", "value": "true", "effect": "NoSchedule"}]}}}),
    );
    let selector = with(
        pod("sel-0", "1", "1Gi"),
        json!({"spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"}}}),
    );
    let affinity = with(
        pod("aff-0", "1", "1Gi"),
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "NotIn", "values": ["arm64"]}]}]}}}}}),
    );
    let tolerating = with(
        pod("tol-0", "1", "1Gi"),
        json!({"spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"}, "tolerations": [{"key": "batch", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]}}),
    );
    let plan = run_with(
        vec![arm, tainted, selector, affinity, tolerating],
        &chain(&[Expander::LeastNodes]),
        now(),
    );
    // aff-0 wants non-arm64: no pool has it.
    assert_eq!(
        unschedulable_reason(&plan, "aff-0", "arm"),
        "node(s) didn't match Pod's node affinity"
    );
    // sel-0 fits arm but not the tainted batch pool.
    assert!(
        plan.scale_up.scale_ups[0]
            .options
            .iter()
            .all(|o| o.pool == "arm" || o.pods == 1),
        "{plan:#?}"
    );
    let all_pods: Vec<&String> = plan
        .scale_up
        .scale_ups
        .iter()
        .flat_map(|u| &u.pods)
        .collect();
    assert!(all_pods.contains(&&"shop/sel-0".to_string()));
    assert!(all_pods.contains(&&"shop/tol-0".to_string()));
    // A pod without the toleration is told which taint stops it.
    let plan = run(vec![
        with(
            pool("batch", "4", "16Gi", 0, 10),
            json!({"spec": {"template": {"taints": [{"key": "batch", "value": "true", "effect": "NoSchedule"}]}}}),
        ),
        pod("web-0", "1", "1Gi"),
    ]);
    assert_eq!(
        unschedulable_reason(&plan, "web-0", "batch"),
        "node(s) had untolerated taint {batch: true}:NoSchedule"
    );
}

#[test]
fn host_ports_and_hostname_anti_affinity_spread_pods_over_nodes() {
    let port = |name: &str| {
        with(
            pod(name, "100m", "10Mi"),
            json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "hostPort": 8080}], "resources": {"requests": {"cpu": "100m", "memory": "10Mi"}}}]}}),
        )
    };
    let plan = run(vec![
        pool("general", "16", "64Gi", 0, 10),
        port("proxy-0"),
        port("proxy-1"),
        port("proxy-2"),
    ]);
    assert_eq!(ups(&plan), vec![("general".into(), 3)]);

    let anti = |name: &str| {
        with(
            pod(name, "100m", "10Mi"),
            json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
        )
    };
    let plan = run(vec![
        pool("general", "16", "64Gi", 0, 10),
        node("n1", "general", "16", "64Gi"),
        on(anti("db-0"), "n1"),
        anti("db-1"),
        anti("db-2"),
    ]);
    // Not beside db-0 on n1, and not beside each other.
    assert!(plan.scale_up.fit_existing.is_empty(), "{plan:#?}");
    assert_eq!(ups(&plan), vec![("general".into(), 2)]);
}

fn three_pools() -> Vec<Value> {
    // small: 2 cpu, cheap per node; large: 8 cpu; priority favours "large".
    let small = with(
        pool("small", "2", "8Gi", 0, 20),
        json!({"spec": {"pricePerHour": 0.10, "priority": 1}}),
    );
    let large = with(
        pool("large", "8", "32Gi", 0, 20),
        json!({"spec": {"pricePerHour": 0.30, "priority": 10}}),
    );
    let odd = with(
        pool("odd", "3", "8Gi", 0, 20),
        json!({"spec": {"pricePerHour": 0.50, "priority": 5}}),
    );
    let mut objects = vec![small, large, odd];
    for i in 0..4 {
        objects.push(pod(&format!("web-{i}"), "1500m", "2Gi"));
    }
    objects
}

#[test]
fn every_expander_chooses_by_its_own_measure() {
    // Four 1.5-cpu pods: small (2 cpu) needs 4 nodes, large (8 cpu) 1, odd (3 cpu) 2.
    let by = |e: &[Expander]| run_with(three_pools(), &chain(e), now());
    let plan = by(&[Expander::LeastNodes]);
    assert_eq!(ups(&plan), vec![("large".into(), 1)]);
    let options = &plan.scale_up.scale_ups[0].options;
    let nodes: Vec<(String, i64)> = options.iter().map(|o| (o.pool.clone(), o.nodes)).collect();
    assert_eq!(
        nodes,
        vec![("large".into(), 1), ("odd".into(), 2), ("small".into(), 4)]
    );
    // least-waste: odd wastes 0 cpu + (16-8)/16 memory = 0.5; large 0.25 + 0.75 = 1.0;
    // small 0.25 + 0.75 = 1.0.
    assert_eq!(ups(&by(&[Expander::LeastWaste])), vec![("odd".into(), 2)]);
    // price per pod: small 0.4/4 = 0.1, large 0.3/4 = 0.075, odd 1.0/4 = 0.25.
    assert_eq!(ups(&by(&[Expander::Price])), vec![("large".into(), 1)]);
    assert_eq!(ups(&by(&[Expander::Priority])), vec![("large".into(), 1)]);
    // most-pods: all schedule 4: a tie, the first in name order wins.
    assert_eq!(ups(&by(&[Expander::MostPods])), vec![("large".into(), 1)]);
    // random: one of them, the same one for the same `now`.
    let a = ups(&by(&[Expander::Random]));
    assert_eq!(a, ups(&by(&[Expander::Random])));
    assert!(["small", "large", "odd"].contains(&a[0].0.as_str()));
}

#[test]
fn a_chain_breaks_ties_left_to_right() {
    // most-pods ties all three; price then picks the cheapest per pod: large.
    let plan = run_with(
        three_pools(),
        &chain(&[Expander::MostPods, Expander::Price]),
        now(),
    );
    assert_eq!(ups(&plan), vec![("large".into(), 1)]);
    // least-waste picks odd alone; price has nothing left to choose.
    let plan = run_with(
        three_pools(),
        &chain(&[Expander::LeastWaste, Expander::Price]),
        now(),
    );
    assert_eq!(ups(&plan), vec![("odd".into(), 2)]);
    let scores = &plan.scale_up.scale_ups[0].options;
    assert!(scores.iter().all(|o| o.scores.contains_key("least-waste")));
    assert!(scores.iter().any(|o| o.chosen && o.pool == "odd"));
}

#[test]
fn pools_at_max_in_backoff_or_past_limits_are_skipped() {
    let full = with(
        pool("full", "4", "16Gi", 0, 1),
        json!({"status": {"targetSize": 1}}),
    );
    let backoff = with(
        pool("cooling", "4", "16Gi", 0, 10),
        json!({"status": {"backoffUntil": "2026-11-22T10:05:00Z"}}),
    );
    let plan = run(vec![
        full,
        node("f1", "full", "4", "16Gi"),
        on(pod("x-0", "4", "1Gi"), "f1"),
        backoff,
        pod("web-0", "1", "1Gi"),
    ]);
    assert!(plan.scale_up.skipped_pools["full"].starts_with("NodeGroupMaxSizeReached"));
    assert!(plan.scale_up.skipped_pools["cooling"].starts_with("Backoff"));
    assert!(unschedulable_reason(&plan, "web-0", "full").starts_with("NodeGroupMaxSizeReached"));

    // Cluster limits: max nodes, cores, memory.
    let base = vec![
        pool("general", "4", "16Gi", 0, 10),
        node("n1", "general", "4", "16Gi"),
        on(pod("x-0", "4", "1Gi"), "n1"),
        pod("web-0", "2", "1Gi"),
        pod("web-1", "2", "1Gi"),
        pod("web-2", "2", "1Gi"),
    ];
    let limited = |s: Settings| run_with(base.clone(), &s, now());
    let plan = limited(Settings {
        max_nodes_total: 1,
        ..Settings::default()
    });
    assert_eq!(
        plan.scale_up.skipped_pools["general"],
        "MaxNodesTotalReached"
    );
    let plan = limited(Settings {
        max_nodes_total: 2,
        ..Settings::default()
    });
    // Room for one more node: two pods get it, one stays with the reason.
    assert_eq!(ups(&plan), vec![("general".into(), 1)]);
    assert_eq!(plan.scale_up.unschedulable.len(), 1);
    let left = &plan.scale_up.unschedulable[0];
    assert_eq!(left.pools["general"], "MaxNodesTotalReached");
    assert_eq!(
        left.reason,
        "pools that could run it are at their maxSize, the cluster limits or in backoff"
    );
    let plan = limited(Settings {
        cores_total: "0:7".parse().unwrap(),
        ..Settings::default()
    });
    assert_eq!(
        plan.scale_up.skipped_pools["general"],
        "MaxCoresTotalReached"
    );
    let plan = limited(Settings {
        memory_total: "0:20".parse().unwrap(),
        ..Settings::default()
    });
    assert_eq!(
        plan.scale_up.skipped_pools["general"],
        "MaxMemoryTotalReached"
    );
}

#[test]
fn pods_that_need_different_pools_grow_both_in_one_pass() {
    let gpu = with(
        pool("gpu", "8", "64Gi", 0, 4),
        json!({"spec": {"template": {"capacity": {"nvidia.com/gpu": "1"}}}}),
    );
    let train = with(
        pod("train-0", "1", "1Gi"),
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}}]}}),
    );
    let plan = run_with(
        vec![
            pool("general", "4", "16Gi", 0, 4),
            gpu,
            train,
            pod("web-0", "3", "1Gi"),
        ],
        &chain(&[Expander::LeastWaste]),
        now(),
    );
    let mut got = ups(&plan);
    got.sort();
    assert_eq!(got, vec![("general".into(), 1), ("gpu".into(), 1)]);
    let rounds: Vec<usize> = plan.scale_up.scale_ups.iter().map(|u| u.round).collect();
    assert_eq!(rounds, vec![1, 2]);
    assert!(plan.scale_up.unschedulable.is_empty());
}

#[test]
fn balancing_spreads_the_delta_over_similar_pools() {
    let zone = |name: &str, z: &str, target: i32| {
        with(
            pool(name, "4", "16Gi", 0, 10),
            json!({"spec": {"template": {"labels": {"topology.kubernetes.io/zone": z}}}, "status": {"targetSize": target}}),
        )
    };
    let mut objects = vec![
        zone("a", "eu-1a", 0),
        zone("b", "eu-1b", 0),
        zone("c", "eu-1c", 0),
    ];
    for i in 0..6 {
        objects.push(pod(&format!("web-{i}"), "3", "1Gi"));
    }
    let settings = Settings {
        balance_similar_node_groups: true,
        expander: ExpanderChain(vec![Expander::LeastNodes]),
        ..Settings::default()
    };
    let plan = run_with(objects.clone(), &settings, now());
    assert_eq!(
        ups(&plan),
        vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 2)]
    );
    assert_eq!(plan.scale_up.scale_ups[1].reason, "balanced with a");
    let plan = run_with(objects, &chain(&[Expander::LeastNodes]), now());
    assert_eq!(ups(&plan), vec![("a".into(), 6)]);
}

// ---------------------------------------------------------------- scale-down

fn idle_cluster() -> Vec<Value> {
    vec![
        pool("general", "4", "16Gi", 1, 10),
        node("n1", "general", "4", "16Gi"),
        node("n2", "general", "4", "16Gi"),
        node("n3", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
        on(pod("light-0", "1", "1Gi"), "n2"),
    ]
}

fn annotate_unneeded(mut objects: Vec<Value>, since: &str) -> Vec<Value> {
    for o in &mut objects {
        if o["kind"] == "Node" {
            merge(
                o,
                json!({"metadata": {"annotations": {"weir.io/unneeded-since": since}}}),
            );
        }
    }
    objects
}

#[test]
fn utilization_threshold_is_inclusive_and_counts_daemonset_pods() {
    let ds_pod = with(
        on(pod("exporter-n2", "1", "1Gi"), "n2"),
        json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "exporter", "uid": "d", "controller": true}]}}),
    );
    let mut objects = idle_cluster();
    objects.push(ds_pod);
    let plan = run(objects);
    let u = &plan.scale_down.utilization;
    assert_eq!(u["n1"].max, 0.75);
    // light-0 (1 cpu) + the DaemonSet pod (1 cpu) = 2/4 = 0.5: exactly the threshold.
    assert_eq!(u["n2"].max, 0.5);
    assert_eq!(unremovable(&plan, "n1").0, "NotUnderutilized");
    let unneeded: Vec<&str> = plan
        .scale_down
        .unneeded
        .iter()
        .map(|u| u.node.as_str())
        .collect();
    // Empty first: n3 (nothing), then n2 (its DaemonSet pod does not count as a pod to move).
    assert_eq!(unneeded, vec!["n3", "n2"]);
}

#[test]
fn removal_waits_for_the_unneeded_time_and_takes_empty_nodes_first() {
    let plan = run(idle_cluster());
    assert!(plan.scale_down.remove.is_empty(), "newly unneeded");
    assert_eq!(plan.scale_down.unneeded[0].since, NOW);
    assert_eq!(
        plan.scale_down.unneeded[0].removable_at,
        "2026-11-22T10:10:00Z"
    );
    let plan = run(annotate_unneeded(idle_cluster(), "2026-11-22T09:45:00Z"));
    // n3 (empty) in bulk, and one drain: n2, whose pod moves to n1 (3 + 1 = 4 cpu).
    assert_eq!(removed(&plan), vec!["n3", "n2"]);
    assert!(plan.scale_down.remove[0].empty);
    assert_eq!(plan.scale_down.remove[1].evict, vec!["shop/light-0"]);
    assert_eq!(plan.scale_down.unneeded[1].moves[0].node, "n1");
}

#[test]
fn never_below_the_pool_minimum() {
    let mut objects = annotate_unneeded(idle_cluster(), "2026-11-22T09:45:00Z");
    objects[0] = pool("general", "4", "16Gi", 2, 10);
    let plan = run(objects);
    assert_eq!(removed(&plan), vec!["n3"]);
    assert_eq!(unremovable(&plan, "n2").0, "NodeGroupMinSizeReached");
}

#[test]
fn no_removal_within_the_delay_after_a_scale_up() {
    let mut objects = annotate_unneeded(idle_cluster(), "2026-11-22T09:45:00Z");
    merge(
        &mut objects[0],
        json!({"status": {"lastScaleUpTime": "2026-11-22T09:55:00Z"}}),
    );
    let plan = run(objects.clone());
    assert!(plan.scale_down.remove.is_empty());
    assert!(
        plan.scale_down
            .blocked
            .as_deref()
            .unwrap()
            .starts_with("ScaleDownInCooldown")
    );
    let later: Timestamp = "2026-11-22T10:05:00Z".parse().unwrap();
    let plan = run_with(objects, &Settings::default(), later);
    assert_eq!(removed(&plan), vec!["n3", "n2"]);
}

#[test]
fn scale_down_disabled_annotations_keep_nodes() {
    let mut objects = idle_cluster();
    merge(
        &mut objects[3],
        json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}}}),
    );
    merge(
        &mut objects[2],
        json!({"metadata": {"annotations": {"weir.io/scale-down-disabled": "true"}}}),
    );
    let plan = run(objects);
    assert_eq!(unremovable(&plan, "n3").0, "ScaleDownDisabledAnnotation");
    assert_eq!(unremovable(&plan, "n2").0, "ScaleDownDisabledAnnotation");
}

fn blocked_by(light: Value, extra: Vec<Value>) -> (String, Option<String>) {
    let mut objects = vec![
        pool("general", "4", "16Gi", 0, 10),
        node("n1", "general", "4", "16Gi"),
        node("n2", "general", "4", "16Gi"),
        on(light, "n2"),
    ];
    objects.extend(extra);
    unremovable(&run(objects), "n2")
}

#[test]
fn each_drain_reason_blocks_with_the_pod_named() {
    let light = || on(pod("light-0", "1", "1Gi"), "n2");
    let bare = with(light(), json!({"metadata": {"ownerReferences": null}}));
    assert_eq!(
        blocked_by(bare.clone(), vec![]),
        (
            "BlockedByPod:NotReplicated".into(),
            Some("shop/light-0".into())
        )
    );
    // safe-to-evict: "true" lets even an unreplicated pod go.
    let safe = with(
        bare,
        json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}}}),
    );
    let mut objects = vec![
        pool("general", "4", "16Gi", 0, 10),
        node("n1", "general", "4", "16Gi"),
        node("n2", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
        safe,
    ];
    let plan = run(objects.clone());
    assert!(
        plan.scale_down.unneeded.iter().any(|u| u.node == "n2"),
        "{plan:#?}"
    );

    let system = with(
        light(),
        json!({"metadata": {"namespace": "kube-system", "creationTimestamp": "2026-11-22T09:30:00Z"}}),
    );
    assert_eq!(
        blocked_by(system.clone(), vec![]).0,
        "BlockedByPod:UnmovableKubeSystemPod"
    );
    let system_pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "light", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": "light"}}},
        "status": {"disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 0, "expectedPods": 1}
    });
    objects.pop();
    objects.push(on(system, "n2"));
    objects.push(system_pdb);
    assert!(
        run(objects)
            .scale_down
            .unneeded
            .iter()
            .any(|u| u.node == "n2")
    );

    let pinned = with(
        light(),
        json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}}),
    );
    assert_eq!(
        blocked_by(pinned, vec![]).0,
        "BlockedByPod:NotSafeToEvictAnnotation"
    );

    let scratch = with(
        light(),
        json!({"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}}),
    );
    assert_eq!(
        blocked_by(scratch.clone(), vec![]).0,
        "BlockedByPod:LocalStorageRequested"
    );
    let declared = with(
        scratch,
        json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "scratch"}}}),
    );
    let memory = with(
        light(),
        json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}}]}}),
    );
    for ok in [declared, memory] {
        let objects = vec![
            pool("general", "4", "16Gi", 0, 10),
            node("n1", "general", "4", "16Gi"),
            node("n2", "general", "4", "16Gi"),
            on(pod("busy-0", "3", "1Gi"), "n1"),
            ok,
        ];
        assert!(
            run(objects)
                .scale_down
                .unneeded
                .iter()
                .any(|u| u.node == "n2")
        );
    }

    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "light", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "light"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    });
    assert_eq!(
        blocked_by(light(), vec![pdb]).0,
        "BlockedByPod:NotEnoughPdb"
    );

    // n1 is full: light-0 has nowhere to go.
    let full = on(pod("busy-0", "3500m", "1Gi"), "n1");
    assert_eq!(
        blocked_by(light(), vec![full]),
        ("NoPlaceToMovePods".into(), Some("shop/light-0".into()))
    );
}

#[test]
fn moves_persist_so_two_nodes_cannot_both_lean_on_the_same_room() {
    // n1 has 1.9 cpu free; n2 and n3 each hold a 1.5-cpu pod: only one of them can go.
    let objects = vec![
        pool("general", "4", "16Gi", 0, 10),
        node("n1", "general", "4", "16Gi"),
        node("n2", "general", "4", "16Gi"),
        node("n3", "general", "4", "16Gi"),
        on(pod("busy-0", "2100m", "1Gi"), "n1"),
        on(pod("a-0", "1500m", "1Gi"), "n2"),
        on(pod("b-0", "1500m", "1Gi"), "n3"),
    ];
    let plan = run(objects);
    let unneeded: Vec<&str> = plan
        .scale_down
        .unneeded
        .iter()
        .map(|u| u.node.as_str())
        .collect();
    // n2's a-0 moves to n1 (2.1 + 1.5 = 3.6); then n3's b-0 finds 0.4 on n1, and n2 is
    // going: no place.
    assert_eq!(unneeded, vec!["n2"], "{:#?}", plan.scale_down);
    assert_eq!(
        unremovable(&plan, "n3"),
        ("NoPlaceToMovePods".into(), Some("shop/b-0".into()))
    );
}

#[test]
fn unready_nodes_go_after_the_unready_time() {
    let mut objects = idle_cluster();
    merge(
        &mut objects[3],
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let plan = run(annotate_unneeded(objects, "2026-11-22T09:45:00Z"));
    let n3 = plan
        .scale_down
        .unneeded
        .iter()
        .find(|u| u.node == "n3")
        .unwrap();
    assert_eq!(n3.removable_at, "2026-11-22T10:05:00Z");
    assert!(!removed(&plan).contains(&"n3".to_string()));
}

#[test]
fn backoff_doubles_caps_and_resets() {
    use std::time::Duration;
    use weir_controllers::node_autoscaler::next_backoff;
    let s = Settings::default();
    let t = now();
    assert_eq!(next_backoff(None, &s, t), Duration::from_secs(300));
    let earlier: Timestamp = "2026-11-22T09:50:00Z".parse().unwrap();
    assert_eq!(
        next_backoff(Some((earlier, Duration::from_secs(300))), &s, t),
        Duration::from_secs(600)
    );
    assert_eq!(
        next_backoff(Some((earlier, Duration::from_secs(1200))), &s, t),
        Duration::from_secs(1800)
    );
    let long_ago: Timestamp = "2026-11-22T06:00:00Z".parse().unwrap();
    assert_eq!(
        next_backoff(Some((long_ago, Duration::from_secs(1800))), &s, t),
        Duration::from_secs(300)
    );
}
