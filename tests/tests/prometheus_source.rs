//! The batched Prometheus source against a real Prometheus with backfilled data: per-pod
//! values come back right and each distinct template costs one query, however many
//! policies share it.

#![allow(clippy::unwrap_used)]

use k8s_openapi::jiff::Timestamp;
use weir_controllers::pod_autoscaler::{
    Container, MetricReading, Pod, PodPhase,
    prometheus::{PrometheusSource, batch_for, readings},
};
use weir_crds::scaling_policy::ScalingPolicySpec;
use weir_tests::prometheus::Prometheus;

fn pod(name: &str) -> Pod {
    Pod {
        name: name.into(),
        phase: PodPhase::Running,
        deleting: false,
        ready: Some(true),
        start_time: None,
        ready_since: None,
        containers: vec![Container::default()],
    }
}

const NAMESPACES: usize = 20;
const POLICIES_PER_NAMESPACE: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_per_template_and_right_per_pod_values() {
    // An hour ago, on a whole second: a time the backfilled blocks cover.
    let at = Timestamp::from_second(Timestamp::now().as_second() / 60 * 60 - 3600).unwrap();
    let t = at.as_second();
    let mut om = String::from("# TYPE http_requests_per_second gauge\n");
    for ns in 0..NAMESPACES {
        for p in 0..2 {
            for step in 0..3 {
                // The value at `at` is ns + p/2 (e.g. ns-7/web-1 = 7.5).
                let value = ns as f64 + p as f64 / 2.0;
                om.push_str(&format!(
                    "http_requests_per_second{{namespace=\"ns-{ns}\",pod=\"web-{p}\"}} {value} {}\n",
                    t - 60 + step * 30
                ));
            }
        }
    }
    om.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for ns in 0..NAMESPACES {
        for p in 0..2 {
            for step in 0..=40 {
                // 0.25 cores: +3.75 s of CPU every 15 s.
                om.push_str(&format!(
                    "container_cpu_usage_seconds_total{{namespace=\"ns-{ns}\",pod=\"web-{p}\",container=\"app\"}} {} {}\n",
                    step as f64 * 3.75,
                    t - 600 + step * 15
                ));
            }
        }
    }
    om.push_str("# TYPE queue_messages_ready gauge\nqueue_messages_ready{queue=\"orders\"} 42 ");
    om.push_str(&format!("{t}\n# EOF\n"));
    let prometheus = Prometheus::start(&om);

    let spec: ScalingPolicySpec = serde_yaml::from_str(
        "targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\nmaxReplicas: 10\nmetrics:\n\
         - type: Pods\n  pods: {metric: {name: http_requests_per_second}, target: {type: AverageValue, averageValue: \"5\"}}\n\
         - type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n\
         - type: Prometheus\n  prometheus: {query: 'sum(queue_messages_ready{queue=\"orders\"})', target: {type: Value, value: \"10\"}}\n",
    )
    .unwrap();
    let namespaces: Vec<String> = (0..NAMESPACES).map(|n| format!("ns-{n}")).collect();
    let policies: Vec<(&str, &ScalingPolicySpec)> = namespaces
        .iter()
        .flat_map(|ns| std::iter::repeat_n((ns.as_str(), &spec), POLICIES_PER_NAMESPACE))
        .collect();
    let batch = batch_for(policies.iter().copied());
    assert_eq!(
        batch.len(),
        3,
        "three distinct templates for {} policies",
        policies.len()
    );

    let source = PrometheusSource::new(&prometheus.url()).unwrap();
    let before = prometheus.queries_answered();
    let results = source.fetch(&batch, at).await;
    assert_eq!(source.queries_issued(), 3);
    assert_eq!(
        prometheus.queries_answered() - before,
        3,
        "Prometheus saw one query per template"
    );

    let pods = [pod("web-0"), pod("web-1")];
    let ns7 = readings("ns-7", &spec.metrics, &pods, &results);
    let MetricReading::Pods(rps) = &ns7[0] else {
        panic!("{:?}", ns7[0])
    };
    assert_eq!(rps["web-0"].milli, 7000);
    assert_eq!(rps["web-1"].milli, 7500);
    let MetricReading::Pods(cpu) = &ns7[1] else {
        panic!("{:?}", ns7[1])
    };
    assert_eq!(cpu["web-1"].milli, 250, "rate over 5m of 3.75 s per 15 s");
    assert_eq!(ns7[2], MetricReading::Value(42_000));
    // A pod that is not the policy's is not read; another namespace has other values.
    let ns3 = readings("ns-3", &spec.metrics, &pods[..1], &results);
    let MetricReading::Pods(rps3) = &ns3[0] else {
        panic!("{:?}", ns3[0])
    };
    assert_eq!(rps3.len(), 1);
    assert_eq!(rps3["web-0"].milli, 3000);
}

/// The rules source (the metrics adapter's engine in-process): Pods and Object metrics
/// of policies in 20 namespaces cost one query each, with the right per-namespace values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_source_batches_across_namespaces() {
    use std::sync::Arc;

    use weir_controllers::pod_autoscaler::source::MetricSource;
    use weir_metrics_adapter::{
        config::Rules,
        engine::{Engine, EngineMetrics, EngineSettings, StoreObjects},
    };

    let now = Timestamp::now().as_second() - 1;
    let mut om = String::from("# TYPE inflight gauge\n");
    for ns in 0..NAMESPACES {
        for p in 0..2 {
            for step in 0..5 {
                om.push_str(&format!(
                    "inflight{{namespace=\"ns-{ns}\",pod=\"web-{p}\"}} {} {}\n",
                    ns as f64 + p as f64 / 2.0,
                    now - 120 + step * 30
                ));
            }
        }
    }
    om.push_str("# TYPE queue_length gauge\n");
    for ns in 0..NAMESPACES {
        for step in 0..5 {
            om.push_str(&format!(
                "queue_length{{namespace=\"ns-{ns}\",deployment=\"web\"}} {} {}\n",
                ns * 10,
                now - 120 + step * 30
            ));
        }
    }
    om.push_str("# EOF\n");
    let prometheus = Prometheus::start(&om);
    let rules = Rules::from_yaml(
        r#"
rules:
- seriesQuery: '{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: '{namespace!="",deployment!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#,
        "test rules",
    )
    .unwrap();
    let engine = Arc::new(Engine::new(
        rules,
        weir_runtime::prometheus::Prometheus::new(&prometheus.url()).unwrap(),
        Arc::new(StoreObjects(weir_store::StateWriter::default().subscribe())),
        EngineSettings::default(),
        EngineMetrics::default(),
    ));
    let source = weir_controllers::pod_autoscaler::rules::RulesSource::new(
        engine.clone(),
        PrometheusSource::new(&prometheus.url()).unwrap(),
    );
    let spec: ScalingPolicySpec = serde_yaml::from_str(
        "targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\nmaxReplicas: 10\nmetrics:\n\
         - type: Pods\n  pods: {metric: {name: inflight}, target: {type: AverageValue, averageValue: \"5\"}}\n\
         - type: Object\n  object: {describedObject: {apiVersion: apps/v1, kind: Deployment, name: web}, metric: {name: queue_length}, target: {type: Value, value: \"10\"}}\n",
    )
    .unwrap();
    let namespaces: Vec<String> = (0..NAMESPACES).map(|n| format!("ns-{n}")).collect();
    let policies: Vec<(&str, &ScalingPolicySpec)> = namespaces
        .iter()
        .flat_map(|ns| std::iter::repeat_n((ns.as_str(), &spec), POLICIES_PER_NAMESPACE))
        .collect();
    let queries_before = prometheus.logged_queries().len();
    let batch = source.fetch(&policies, Timestamp::now()).await;
    assert_eq!(
        prometheus.logged_queries().len() - queries_before,
        2,
        "one query for the Pods metric and one for the Object metric: {:?}",
        prometheus.logged_queries()
    );
    let pods = [pod("web-0"), pod("web-1")];
    let ns7 = source.readings(&batch, "ns-7", &spec.metrics, &pods);
    let MetricReading::Pods(inflight) = &ns7[0] else {
        panic!("{:?}", ns7[0])
    };
    assert_eq!(
        (inflight["web-0"].milli, inflight["web-1"].milli),
        (7000, 7500)
    );
    assert_eq!(ns7[1], MetricReading::Value(70_000));
}
