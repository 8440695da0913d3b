//! `weir up --prometheus-url`: the pod autoscaler scales local mode's simulated
//! Deployments on metrics from a real Prometheus.

#![allow(clippy::unwrap_used)]

use std::{fs, time::Duration};

use weir_tests::{WeirUp, eventually, prometheus::Prometheus};

const CONFIG: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec: {containers: [{name: app, image: worker, resources: {requests: {cpu: 250m}}}]}
---
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {name: worker, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Prometheus
    prometheus:
      query: sum(queue_messages_ready)
      target: {type: AverageValue, averageValue: "10"}
"#;

#[test]
fn weir_up_scales_a_simulated_deployment_on_a_prometheus_metric() {
    // 35 messages queued, 10 per replica: ceil(35 / 10) = 4 replicas, then stable.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut om = String::from("# TYPE queue_messages_ready gauge\n");
    for ago in (0..=600).rev().step_by(60) {
        om.push_str(&format!("queue_messages_ready 35 {}\n", now - ago - 60));
    }
    om.push_str("# EOF\n");
    let prometheus = Prometheus::start(&om);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.yaml"), CONFIG).unwrap();
    let url = prometheus.url();
    let weir = WeirUp::start(
        dir.path(),
        &["--prometheus-url", &url, "--sync-period-seconds", "1"],
    );
    let sample = r#"weir_autoscaler_desired_replicas{namespace="shop",policy="worker"}"#;
    let desired = eventually(Duration::from_secs(20), || {
        weir.metric(sample).filter(|v| *v == 4.0)
    });
    assert_eq!(desired, Some(4.0), "log:\n{}", weir.log());
    // A few more syncs at 4 replicas: 35 / (10 × 4) = 0.875, so it stays.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(weir.metric(sample), Some(4.0));
    let log = weir.log();
    assert!(log.contains("New size: 4"), "{log}");
    assert!(prometheus.queries_answered() >= 1);
}
