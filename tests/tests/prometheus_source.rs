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

/// The rules source (the metrics adapter's engine in-process): Pods and Object metrics,
/// and Resource and ContainerResource metrics through `resourceRules`, of policies in 20
/// namespaces cost one query each, with the right per-namespace (and per-container) values.
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
    // Memory per container (app: ns MiB, sidecar: 1 MiB) and CPU (app: 0.1 cores per
    // pod index + 0.1, so web-1 = 0.2 cores).
    om.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    om.push_str("# TYPE container_cpu_usage_seconds counter\n");
    let mut cpu = String::new();
    for ns in 0..NAMESPACES {
        for p in 0..2 {
            for (container, mib) in [("app", ns as f64), ("sidecar", 1.0)] {
                for step in 0..5 {
                    let t = now - 120 + step * 30;
                    om.push_str(&format!(
                        "container_memory_working_set_bytes{{namespace=\"ns-{ns}\",pod=\"web-{p}\",container=\"{container}\"}} {} {t}\n",
                        mib * 1024.0 * 1024.0
                    ));
                    if container == "app" {
                        cpu.push_str(&format!(
                            "container_cpu_usage_seconds_total{{namespace=\"ns-{ns}\",pod=\"web-{p}\",container=\"app\"}} {} {t}\n",
                            (p as f64 + 1.0) * 0.1 * (step * 30) as f64
                        ));
                    }
                }
            }
        }
    }
    // One family's samples must be contiguous in OpenMetrics: CPU after memory.
    let om = om.replace("# TYPE container_cpu_usage_seconds counter\n", "")
        + "# TYPE container_cpu_usage_seconds counter\n"
        + &cpu;
    let om = om + "# EOF\n";
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
resourceRules:
  cpu:
    containerQuery: 'sum by (<<.GroupBy>>) (irate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[2m]))'
    nodeQuery: 'sum by (<<.GroupBy>>) (irate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[2m]))'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  memory:
    containerQuery: 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>})'
    nodeQuery: 'sum by (<<.GroupBy>>) (node_memory_working_set_bytes{<<.LabelMatchers>>})'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, node: {resource: node}}}
    containerLabel: container
  window: 2m
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
         - type: Object\n  object: {describedObject: {apiVersion: apps/v1, kind: Deployment, name: web}, metric: {name: queue_length}, target: {type: Value, value: \"10\"}}\n\
         - type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}\n\
         - type: ContainerResource\n  containerResource: {name: cpu, container: app, target: {type: AverageValue, averageValue: 500m}}\n",
    )
    .unwrap();
    let namespaces: Vec<String> = (0..NAMESPACES).map(|n| format!("ns-{n}")).collect();
    let policies: Vec<(&str, &ScalingPolicySpec)> = namespaces
        .iter()
        .flat_map(|ns| std::iter::repeat_n((ns.as_str(), &spec), POLICIES_PER_NAMESPACE))
        .collect();
    let queries_before = prometheus.logged_queries().len();
    let batch = source.fetch(&policies, Timestamp::now()).await;
    let sent = prometheus.logged_queries()[queries_before..].to_vec();
    assert_eq!(
        sent.len(),
        4,
        "one query each for the Pods, Object, memory and CPU metrics: {sent:?}"
    );
    assert!(
        sent.iter()
            .any(|q| q.contains("container_memory_working_set_bytes")
                && q.contains("by (namespace,pod,container)")),
        "memory read through resourceRules: {sent:?}"
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
    let MetricReading::Pods(memory) = &ns7[2] else {
        panic!("{:?}", ns7[2])
    };
    // 7 MiB (app) + 1 MiB (sidecar), in milli-bytes.
    assert_eq!(memory["web-0"].milli, 8 * 1024 * 1024 * 1000);
    assert_eq!(memory["web-0"].window.as_secs(), 120);
    let MetricReading::Pods(cpu) = &ns7[3] else {
        panic!("{:?}", ns7[3])
    };
    assert_eq!(cpu["web-1"].containers["app"], 200, "irate of 0.2 cores");
}

/// The Kubernetes API in memory for a sync: `web` runs 3 replicas selected by `app=web`;
/// statuses written are kept.
#[derive(Default)]
struct MemoryApi {
    statuses: std::sync::Mutex<Vec<weir_crds::scaling_policy::ScalingPolicyStatus>>,
}

impl weir_controllers::pod_autoscaler::controller::ScaleApi for MemoryApi {
    async fn get_scale(
        &self,
        _: &str,
        target: &weir_crds::scaling_policy::ScaleTargetRef,
    ) -> Result<weir_controllers::pod_autoscaler::controller::Scale, String> {
        Ok(weir_controllers::pod_autoscaler::controller::Scale {
            spec_replicas: 3,
            status_replicas: 3,
            selector: Some(format!("app={}", target.name)),
        })
    }
    async fn set_replicas(
        &self,
        _: &str,
        _: &weir_crds::scaling_policy::ScaleTargetRef,
        _: i32,
    ) -> Result<(), String> {
        Ok(())
    }
    async fn write_status(
        &self,
        _: &str,
        _: &str,
        status: &weir_crds::scaling_policy::ScalingPolicyStatus,
    ) -> Result<(), String> {
        self.statuses.lock().unwrap().push(status.clone());
        Ok(())
    }
    async fn event(
        &self,
        _: &weir_crds::ScalingPolicy,
        _: &weir_controllers::pod_autoscaler::controller::Event,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A forecast starts from Prometheus: the first sync of a policy with `forecast` reads
/// `historySeconds` of its metric with one range query (summed over the Deployment's pods
/// past and present, not another Deployment's), the model learns the daily season from
/// it, and later syncs do not ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_starts_from_prometheus_history() {
    use std::{collections::HashMap, sync::Arc};
    use weir_controllers::pod_autoscaler::{
        ControllerSettings,
        controller::Memory,
        source::{HistoryRange, MetricSource},
        sync::sync_all,
    };
    use weir_store::{ClusterState, Object, ObjectKey};

    const DAY: i64 = 86_400;
    // Three days of a daily wave, 10 ± 8 requests/s for `web`, every 2 minutes; the
    // Deployment rolled out a day and a half ago (other pod names), and `web-api`, another
    // Deployment, has its own much larger series.
    let end = weir_tests::prometheus::last_second() / 60 * 60;
    let wave =
        |t: i64| 10.0 + 8.0 * (2.0 * std::f64::consts::PI * (t % DAY) as f64 / DAY as f64).sin();
    let mut om = String::from("# TYPE http_requests_per_second gauge\n");
    for t in (end - 3 * DAY..=end).step_by(120) {
        let pods = if t < end - 3 * DAY / 2 {
            ["web-6d8f7b9c4-abcde", "web-6d8f7b9c4-fghij"]
        } else {
            ["web-59b7c8d6f-klmno", "web-59b7c8d6f-pqrst"]
        };
        for pod in pods {
            om.push_str(&format!(
                "http_requests_per_second{{namespace=\"shop\",pod=\"{pod}\"}} {} {t}\n",
                wave(t) / 2.0
            ));
        }
        om.push_str(&format!(
            "http_requests_per_second{{namespace=\"shop\",pod=\"web-api-7c9d8b6f5-xyz12\"}} 1000 {t}\n"
        ));
    }
    om.push_str("# EOF\n");
    let prometheus = Prometheus::start(&om);
    let source = PrometheusSource::new(&prometheus.url()).unwrap();

    let policy: weir_crds::ScalingPolicy = serde_yaml::from_str(
        "apiVersion: weir.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: web, namespace: shop, generation: 1}\n\
         spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 50\n  \
         forecast: {enabled: true, historySeconds: 259200}\n  metrics:\n  \
         - type: Pods\n    pods: {metric: {name: http_requests_per_second}, target: {type: AverageValue, averageValue: \"2\"}}\n",
    )
    .unwrap();

    // The range query itself: demand (replicas at 2 requests/s each) at every step.
    let at = Timestamp::from_second(end).unwrap();
    let points = source
        .demand_history(
            "shop",
            &policy.spec.target_ref,
            &policy.spec.metrics[0],
            &[],
            HistoryRange {
                start: Timestamp::from_second(end - DAY).unwrap(),
                end: at,
                step_seconds: 300,
            },
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 289, "a day at 5 minutes, both ends");
    for &(t, demand) in &points {
        // Prometheus answers with the newest sample at or before t (up to 2 minutes old).
        let expected = wave(t - (t - end).rem_euclid(120)) / 2.0;
        assert!(
            (demand - expected).abs() < 1e-6,
            "at {t}: {demand} vs {expected}"
        );
    }

    // The whole sync: the forecaster starts from the history, once.
    let mut state = ClusterState::default();
    state.apply(Object::ScalingPolicy(Arc::new(policy.clone())));
    for name in [
        "web-59b7c8d6f-klmno",
        "web-59b7c8d6f-pqrst",
        "web-59b7c8d6f-uvwxy",
    ] {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}
        }))
        .unwrap();
        state.apply(Object::Pod(Arc::new(pod)));
    }
    let api = MemoryApi::default();
    let settings = ControllerSettings::default();
    let mut memory: HashMap<ObjectKey, Memory> = HashMap::new();
    let first = sync_all(&api, &state, &source, &mut memory, &settings, at).await;
    assert_eq!(
        (first.histories_read, first.histories_unavailable),
        (1, 0),
        "{first:?}"
    );
    assert_eq!(
        first.queries, 2,
        "the sync's instant query and one range query"
    );
    let key = ObjectKey::of(&policy);
    let buckets = memory[&key].forecasts[0].buckets();
    assert!(buckets > 3400, "three days of 75 s buckets: {buckets}");
    let status = api.statuses.lock().unwrap().last().cloned().unwrap();
    let forecast = status.forecast.expect("status.forecast");
    assert_eq!(forecast.metrics.len(), 1, "{forecast:?}");
    assert_eq!(
        forecast.metrics[0].season_seconds,
        Some(DAY),
        "{forecast:?}"
    );

    let second = sync_all(
        &api,
        &state,
        &source,
        &mut memory,
        &settings,
        at + k8s_openapi::jiff::SignedDuration::from_secs(15),
    )
    .await;
    assert_eq!(
        (second.histories_read, second.queries),
        (0, 1),
        "{second:?}"
    );
    assert!(memory[&key].forecasts[0].buckets() >= buckets);
}
