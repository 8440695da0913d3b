//! `weir up` end to end: a ScalingPolicy scale-up leaves pods pending, the simulated
//! NodePool grows, the pods land; load drops, and the pool shrinks back.

#![allow(clippy::unwrap_used)]

use std::{fs, time::Duration};

use weir_tests::{WeirUp, eventually};

const CONFIG: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: weir.io/v1alpha1
kind: NodePool
metadata: {name: sim}
spec:
  template:
    capacity: {cpu: "2", memory: 8Gi}
  minSize: 1
  maxSize: 5
  provider:
    simulated: {provisionDelay: 1s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec: {containers: [{name: app, image: worker, resources: {requests: {cpu: 900m, memory: 1Gi}}}]}
---
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {name: worker, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: External
    external: {metric: {name: queue}, target: {type: AverageValue, averageValue: "10"}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
"#;

fn samples(queue: u32) -> String {
    format!(
        "apiVersion: weir.io/v1alpha1\nkind: MetricSamples\nmetadata: {{name: load, namespace: shop}}\nsamples:\n  queue: {{value: \"{queue}\"}}\n"
    )
}

#[test]
fn pods_left_pending_by_a_scale_up_grow_the_pool_which_shrinks_when_load_drops() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.yaml"), CONFIG).unwrap();
    // 40 queued, 10 per replica: 4 replicas × 900m. One 2-cpu node holds two.
    fs::write(dir.path().join("load.yaml"), samples(40)).unwrap();
    let weir = WeirUp::start(
        dir.path(),
        &[
            "--sync-period-seconds",
            "1",
            "--scan-interval",
            "1s",
            "--scale-down-unneeded-time",
            "3s",
            "--scale-down-delay-after-add",
            "0s",
        ],
    );
    let nodes = r#"weir_node_pool_nodes{pool="sim"}"#;
    let grown = eventually(Duration::from_secs(30), || {
        weir.metric(nodes).filter(|n| *n == 2.0)
    });
    assert_eq!(grown, Some(2.0), "log:\n{}", weir.log());
    let log = weir.log();
    assert!(
        log.contains("Scale-up: sim to 2 nodes (+1) for 2 pending pod(s)"),
        "{log}"
    );
    // The pods land: nothing pending once the node has registered.
    let landed = eventually(Duration::from_secs(15), || {
        weir.metric("weir_node_autoscaler_pending_pods")
            .filter(|p| *p == 0.0)
    });
    assert_eq!(landed, Some(0.0), "log:\n{}", weir.log());
    let (status, plan) = weir.get("/debug/nodes").unwrap();
    assert_eq!(status, 200);
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["scaleUp"]["pendingPods"], 0, "{plan}");
    assert_eq!(
        weir.metric(r#"weir_autoscaler_desired_replicas{namespace="shop",policy="worker"}"#),
        Some(4.0)
    );

    // Load drops: 1 replica, a node empties, and after the unneeded time it goes.
    fs::write(dir.path().join("load.yaml"), samples(5)).unwrap();
    let shrunk = eventually(Duration::from_secs(40), || {
        weir.metric(nodes).filter(|n| *n == 1.0)
    });
    assert_eq!(shrunk, Some(1.0), "log:\n{}", weir.log());
    let log = weir.log();
    assert!(
        log.contains("Scale-down: removing empty node sim-2"),
        "{log}"
    );
    assert!(
        weir.metric("weir_node_autoscaler_removed_nodes_total")
            .unwrap()
            >= 1.0
    );
    // Never below the pool's minimum.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(weir.metric(nodes), Some(1.0));
    assert_eq!(
        weir.metric(r#"weir_node_pool_target_size{pool="sim"}"#),
        Some(1.0)
    );
}
