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
    let now = weir_tests::prometheus::last_second();
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

#[test]
fn with_rules_the_autoscaler_reads_pods_metrics_through_the_adapters_engine() {
    // `http_requests_per_second` exists only through the rule (a rate of
    // http_requests_total): 30 requests/s per pod on 2 pods, 10 per pod wanted → 6.
    let now = weir_tests::prometheus::last_second();
    let mut om = String::from("# TYPE http_requests counter\n");
    for pod in ["worker-0", "worker-1"] {
        for step in 0..=40i64 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "http_requests_total{{namespace=\"shop\",pod=\"{pod}\"}} {} {t}\n",
                30 * step * 15
            ));
        }
    }
    om.push_str("# EOF\n");
    let prometheus = Prometheus::start(&om);
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG
        .replace("replicas: 1\n", "replicas: 2\n")
        .replace(
            "  - type: Prometheus\n    prometheus:\n      query: sum(queue_messages_ready)\n      target: {type: AverageValue, averageValue: \"10\"}\n",
            "  - type: Pods\n    pods:\n      metric: {name: http_requests_per_second}\n      target: {type: AverageValue, averageValue: \"10\"}\n",
        );
    assert!(config.contains("type: Pods"));
    fs::create_dir(dir.path().join("config")).unwrap();
    fs::write(dir.path().join("config/app.yaml"), config).unwrap();
    let rules = dir.path().join("rules.yaml");
    fs::write(
        &rules,
        r#"
rules:
- seriesQuery: '{__name__="http_requests_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#,
    )
    .unwrap();
    let url = prometheus.url();
    let adapter = format!("127.0.0.1:{}", weir_tests::free_port());
    let weir = WeirUp::start(
        &dir.path().join("config"),
        &[
            "--prometheus-url",
            &url,
            "--sync-period-seconds",
            "1",
            "--rules",
            rules.to_str().unwrap(),
            "--metrics-adapter-addr",
            &adapter,
            "--cert-dir",
            dir.path().join("certs").to_str().unwrap(),
        ],
    );
    let sample = r#"weir_autoscaler_desired_replicas{namespace="shop",policy="worker"}"#;
    let desired = eventually(Duration::from_secs(20), || {
        weir.metric(sample).filter(|v| *v == 6.0)
    });
    assert_eq!(desired, Some(6.0), "log:\n{}", weir.log());
    // The engine sent the rule's query.
    assert!(
        prometheus.logged_queries().iter().any(
            |q| q == r#"sum(rate(http_requests_total{namespace="shop",pod!=""}[2m])) by (namespace,pod)"#
        ),
        "{:?}",
        prometheus.logged_queries()
    );
}

#[test]
fn without_prometheus_the_autoscaler_scales_on_the_directorys_samples() {
    // 35 messages over 10 per replica → 4; then the sample is edited to 72 → 8.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.yaml"), CONFIG).unwrap();
    let samples = |value: &str| {
        format!(
            "apiVersion: weir.io/v1alpha1\nkind: MetricSamples\nmetadata: {{name: load, namespace: shop}}\nsamples:\n  sum(queue_messages_ready): {{value: \"{value}\"}}\n"
        )
    };
    fs::write(dir.path().join("samples.yaml"), samples("35")).unwrap();
    let weir = WeirUp::start(dir.path(), &["--sync-period-seconds", "1"]);
    let sample = r#"weir_autoscaler_desired_replicas{namespace="shop",policy="worker"}"#;
    let desired = eventually(Duration::from_secs(20), || {
        weir.metric(sample).filter(|v| *v == 4.0)
    });
    assert_eq!(desired, Some(4.0), "log:\n{}", weir.log());
    fs::write(dir.path().join("samples.yaml"), samples("72")).unwrap();
    let desired = eventually(Duration::from_secs(20), || {
        weir.metric(sample).filter(|v| *v == 8.0)
    });
    assert_eq!(desired, Some(8.0), "log:\n{}", weir.log());
    // A broken edit is reported and the last good samples stay in force.
    fs::write(dir.path().join("samples.yaml"), samples("lots")).unwrap();
    let reported = eventually(Duration::from_secs(20), || {
        weir.log()
            .contains("samples.sum(queue_messages_ready)")
            .then_some(())
    });
    assert!(reported.is_some(), "log:\n{}", weir.log());
    assert_eq!(weir.metric(sample), Some(8.0));
}
