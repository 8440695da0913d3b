//! Benchmark of the pod autoscaler: decisions per second of the pure core, and full syncs
//! of N ScalingPolicies across M namespaces against a real Prometheus (promtool-backfilled),
//! with the Kubernetes API faked in memory.
//!
//! ```sh
//! cargo run --release -p weir-controllers --example autoscaler_sync -- --policies 10000 --namespaces 1000
//! ```
//!
//! Each policy scales its own Deployment (3 pods) on one of three metrics: a Pods metric
//! (`http_requests_per_second`), CPU utilization, or a shared Prometheus query. A sync is
//! the controller's whole path: one batched fetch, then per policy the scale read, pod
//! selection, the decision, the scale write and the status write.

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Pod as KubePod, jiff::Timestamp};
use weir_controllers::pod_autoscaler::{
    ControllerSettings, History, Input, MetricReading, PodReading,
    controller::{Event, Memory, Scale, ScaleApi},
    prometheus::PrometheusSource,
    recommend,
    sync::{core_pod, sync_all},
};
use weir_crds::scaling_policy::{ScaleTargetRef, ScalingPolicy, ScalingPolicyStatus};
use weir_store::{ClusterState, Object};

struct Args {
    policies: usize,
    namespaces: usize,
    syncs: usize,
}

fn args() -> Args {
    let mut args = Args {
        policies: 10_000,
        namespaces: 1_000,
        syncs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().and_then(|v| v.parse().ok()).expect("a number");
        match flag.as_str() {
            "--policies" => args.policies = value,
            "--namespaces" => args.namespaces = value,
            "--syncs" => args.syncs = value,
            other => panic!("unknown flag {other}; flags: --policies N --namespaces N --syncs N"),
        }
    }
    args
}

/// The Kubernetes API in memory: every target has 3 replicas and selector `app=<name>`.
#[derive(Default)]
struct MemoryApi {
    rescales: AtomicUsize,
    statuses: AtomicUsize,
}

impl ScaleApi for MemoryApi {
    async fn get_scale(&self, _: &str, target: &ScaleTargetRef) -> Result<Scale, String> {
        Ok(Scale {
            spec_replicas: 3,
            status_replicas: 3,
            selector: Some(format!("app={}", target.name)),
        })
    }
    async fn set_replicas(&self, _: &str, _: &ScaleTargetRef, _: i32) -> Result<(), String> {
        self.rescales.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn write_status(&self, _: &str, _: &str, _: &ScalingPolicyStatus) -> Result<(), String> {
        self.statuses.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn event(&self, _: &ScalingPolicy, _: &Event) -> Result<(), String> {
        Ok(())
    }
}

struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = write!(s, "GET /-/ready HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains(" 200 ")
}

fn metric_of(policy: usize) -> usize {
    policy % 3
}

fn main() {
    let args = args();
    let per_namespace = args.policies.div_ceil(args.namespaces);
    let now = Timestamp::from_second(Timestamp::now().as_second() / 60 * 60 - 3600).expect("time");
    let t = now.as_second();

    // Pure core: decisions per second on a 3-pod CPU case.
    let spec: ScalingPolicy = serde_yaml::from_str(&policy_yaml("ns-0", "bench", 1)).expect("spec");
    let pods: Vec<_> = (0..3).map(|p| core_pod(&pod("ns-0", "bench", p))).collect();
    let readings = [MetricReading::Pods(
        pods.iter()
            .map(|p| {
                (
                    p.name.clone(),
                    PodReading {
                        milli: 450,
                        containers: BTreeMap::new(),
                        timestamp: now,
                        window: k8s_openapi::jiff::SignedDuration::from_secs(30),
                    },
                )
            })
            .collect(),
    )];
    let settings = ControllerSettings::default();
    let history = History::default();
    let decisions = 200_000;
    let started = Instant::now();
    let mut total = 0i64;
    for _ in 0..decisions {
        let r = recommend(&Input {
            spec: &spec.spec,
            current_replicas: 3,
            status_replicas: 3,
            now,
            pods: &pods,
            readings: &readings,
            history: &history,
            settings: &settings,
            paused: false,
            forecasts: &[],
        });
        total += i64::from(r.desired_replicas);
    }
    let elapsed = started.elapsed();
    println!(
        "pure core: {decisions} decisions in {elapsed:?}: {:.0} decisions/s (checksum {total})",
        decisions as f64 / elapsed.as_secs_f64()
    );

    // Backfill Prometheus with every target's pods.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut om = String::new();
    om.push_str("# TYPE http_requests_per_second gauge\n");
    for i in 0..args.policies {
        let ns = i / per_namespace;
        for p in 0..3 {
            for step in 0..3 {
                om.push_str(&format!(
                    "http_requests_per_second{{namespace=\"ns-{ns}\",pod=\"app-{i}-{p}\"}} {} {}\n",
                    5 + (i % 20),
                    t - 60 + step * 30
                ));
            }
        }
    }
    om.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for i in 0..args.policies {
        let ns = i / per_namespace;
        for p in 0..3 {
            for step in 0..3 {
                om.push_str(&format!(
                    "container_cpu_usage_seconds_total{{namespace=\"ns-{ns}\",pod=\"app-{i}-{p}\",container=\"app\"}} {} {}\n",
                    step as f64 * 60.0 * 0.2 * (1 + i % 4) as f64,
                    t - 120 + step * 60
                ));
            }
        }
    }
    om.push_str(&format!("# TYPE queue_messages_ready gauge\nqueue_messages_ready{{queue=\"orders\"}} 420 {t}\n# EOF\n"));
    let input = dir.path().join("input.om");
    std::fs::write(&input, om).expect("write");
    let data = dir.path().join("data");
    let started = Instant::now();
    let ok = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .expect("promtool")
        .success();
    assert!(ok, "backfill failed");
    println!(
        "backfilled {} series in {:?}",
        args.policies * 6 + 1,
        started.elapsed()
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("config");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let _prometheus = Prometheus { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(port) {
        assert!(Instant::now() < deadline, "Prometheus did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The cluster: policies and pods in the store.
    let mut state = ClusterState::default();
    for i in 0..args.policies {
        let ns = format!("ns-{}", i / per_namespace);
        let name = format!("app-{i}");
        let policy: ScalingPolicy =
            serde_yaml::from_str(&policy_yaml(&ns, &name, metric_of(i))).expect("policy");
        state.apply(Object::ScalingPolicy(Arc::new(policy)));
        for p in 0..3 {
            state.apply(Object::Pod(Arc::new(pod(&ns, &name, p))));
        }
    }
    let source = PrometheusSource::new(&format!("http://127.0.0.1:{port}")).expect("source");
    let api = MemoryApi::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut memory: HashMap<_, Memory> = HashMap::new();
    for sync in 1..=args.syncs {
        let stats = runtime.block_on(sync_all(&api, &state, &source, &mut memory, &settings, now));
        println!(
            "sync {sync}: {} policies in {} namespaces in {:?}; {} PromQL queries; {} rescaled, {} errors",
            stats.policies,
            args.namespaces,
            stats.duration,
            stats.queries,
            stats.rescaled,
            stats.errors
        );
    }
    println!("status writes: {}", api.statuses.load(Ordering::Relaxed));
}

fn policy_yaml(ns: &str, name: &str, metric: usize) -> String {
    let metric = match metric {
        0 => {
            "- type: Pods\n  pods: {metric: {name: http_requests_per_second}, target: {type: AverageValue, averageValue: \"10\"}}"
        }
        1 => {
            "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}"
        }
        _ => {
            "- type: Prometheus\n  prometheus: {query: 'sum(queue_messages_ready{queue=\"orders\"})', target: {type: AverageValue, averageValue: \"100\"}}"
        }
    };
    format!(
        "apiVersion: weir.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}, namespace: {ns}, generation: 1}}\n\
         spec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 1\n  maxReplicas: 50\n  metrics:\n  {}\n",
        metric.replace('\n', "\n  ")
    )
}

fn pod(ns: &str, app: &str, index: usize) -> KubePod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{app}-{index}"), "namespace": ns, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "500m"}}}]},
        "status": {
            "phase": "Running",
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]
        }
    }))
    .expect("pod")
}
