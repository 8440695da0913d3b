//! `metrics.k8s.io` end to end: a real Prometheus backfilled with cAdvisor, node-exporter
//! and kubelet resource series, `weir up` serving the resource metrics API from its
//! `resourceRules`, and the real `kubectl top` reading it through a stand-in API server
//! that does what the aggregation layer does (serves `/api` and Nodes itself, forwards
//! `/apis/...` to the adapter). What kubectl prints must be what the equivalent PromQL
//! returns from Prometheus directly.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use weir_tests::{adapter::Adapter, eventually, kubectl, prometheus::Prometheus};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: bank}
---
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {pool: blue}}
status: {allocatable: {cpu: "2", memory: 8Gi}, capacity: {cpu: "2", memory: 8Gi}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {pool: green}}
status: {allocatable: {cpu: "1", memory: 4Gi}, capacity: {cpu: "1", memory: 4Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: app, image: web}, {name: sidecar, image: envoy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: app, image: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec: {nodeName: node-b, containers: [{name: app, image: api}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ledger-1, namespace: bank, labels: {app: ledger}}
spec: {nodeName: node-b, containers: [{name: app, image: ledger}]}
"#;

const MI: f64 = 1024.0 * 1024.0;

/// (namespace, pod, container, cores, bytes). `gone-1` has series but no Pod object; the
/// `""` and `POD` containers are cgroup totals cAdvisor also reports.
const CONTAINERS: &[(&str, &str, &str, f64, f64)] = &[
    ("shop", "web-1", "app", 0.25, 64.0 * MI),
    ("shop", "web-1", "sidecar", 0.02, 20.0 * MI),
    ("shop", "web-1", "", 0.3, 90.0 * MI),
    ("shop", "web-1", "POD", 0.001, MI),
    ("shop", "web-2", "app", 0.5, 96.0 * MI),
    ("shop", "api-1", "app", 1.2, 256.0 * MI),
    ("bank", "ledger-1", "app", 0.1, 32.0 * MI),
    ("shop", "gone-1", "app", 3.0, 1024.0 * MI),
];

/// (node, idle cores per CPU, MemTotal, MemAvailable).
type NodeSeries = (&'static str, &'static [f64], f64, f64);
const NODES: &[NodeSeries] = &[
    ("node-a", &[0.6, 0.9], 8192.0 * MI, 5120.0 * MI),
    ("node-b", &[0.25], 4096.0 * MI, 3584.0 * MI),
];

/// Ten minutes of series ending a second ago, 15 s apart.
fn openmetrics() -> String {
    let now = weir_tests::prometheus::last_second();
    let steps = || (0..=40).map(move |i| (now - 600 + i * 15, (i * 15) as f64));
    let mut om = String::new();
    let mut family = |name: &str, kind: &str, series: Vec<(String, f64)>| {
        om.push_str(&format!("# TYPE {name} {kind}\n"));
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        for (labels, per_second) in series {
            for (t, elapsed) in steps() {
                let value = if kind == "counter" {
                    per_second * elapsed
                } else {
                    per_second
                };
                om.push_str(&format!("{sample}{{{labels}}} {value} {t}\n"));
            }
        }
    };
    let containers = |f: fn(&(&str, &str, &str, f64, f64)) -> f64| {
        CONTAINERS
            .iter()
            .map(|c| {
                (
                    format!(
                        r#"namespace="{}",pod="{}",container="{}",id="/kubepods/{}""#,
                        c.0, c.1, c.2, c.1
                    ),
                    f(c),
                )
            })
            .collect()
    };
    family(
        "container_cpu_usage_seconds",
        "counter",
        containers(|c| c.3),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        containers(|c| c.4),
    );
    let mut cpu = Vec::new();
    for (node, idle, _, _) in NODES {
        for (i, idle) in idle.iter().enumerate() {
            cpu.push((format!(r#"instance="{node}",cpu="{i}",mode="idle""#), *idle));
            cpu.push((
                format!(r#"instance="{node}",cpu="{i}",mode="user""#),
                1.0 - idle,
            ));
        }
    }
    family("node_cpu_seconds", "counter", cpu);
    let node = |f: fn(&NodeSeries) -> f64| {
        NODES
            .iter()
            .map(|n| (format!(r#"instance="{}",job="node-exporter""#, n.0), f(n)))
            .collect()
    };
    family("node_memory_MemTotal_bytes", "gauge", node(|n| n.2));
    family("node_memory_MemAvailable_bytes", "gauge", node(|n| n.3));
    // The kubelet's own resource metrics, which prometheus-adapter's manifest reads.
    family(
        "node_cpu_usage_seconds",
        "counter",
        NODES
            .iter()
            .map(|n| {
                (
                    format!(r#"node="{}""#, n.0),
                    n.1.iter().map(|idle| 1.0 - idle).sum(),
                )
            })
            .collect(),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        NODES
            .iter()
            .map(|n| (format!(r#"node="{}""#, n.0), n.2 - n.3))
            .collect(),
    );
    om.push_str("# EOF\n");
    om
}

/// What the aggregation layer does for `kubectl top`: `/api` and Nodes from the API
/// server itself, every `/apis/...` request forwarded to the adapter (TLS, verified).
struct Front {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn front(adapter: &Adapter) -> Front {
    use axum::{
        Json, Router,
        extract::Path as UrlPath,
        http::{StatusCode, Uri, header},
        response::IntoResponse,
        routing::get,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(adapter.ca()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let nodes: Vec<Value> = serde_yaml::Deserializer::from_str(OBJECTS)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|o| o["kind"] == "Node")
        .collect();
    let by_name = nodes.clone();
    let backend = adapter.addr;
    let app = Router::new()
        .route(
            "/api",
            get(|| async { Json(json!({"kind": "APIVersions", "versions": ["v1"]})) }),
        )
        .route(
            "/api/v1/nodes",
            get(move || {
                let nodes = nodes.clone();
                async move {
                    Json(json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": nodes}))
                }
            }),
        )
        .route(
            "/api/v1/nodes/{name}",
            get(move |UrlPath(name): UrlPath<String>| {
                let node = by_name
                    .iter()
                    .find(|n| n["metadata"]["name"] == name.as_str())
                    .cloned();
                async move {
                    match node {
                        Some(node) => Json(node).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .fallback(move |uri: Uri| {
            let client = client.clone();
            async move {
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                match client.get(format!("https://{backend}{path}")).send().await {
                    Ok(response) => {
                        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                        let body = response.bytes().await.unwrap_or_default();
                        (status, [(header::CONTENT_TYPE, "application/json")], body)
                            .into_response()
                    }
                    Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                }
            }
        });
    runtime.spawn(async move { axum::serve(listener, app).await });
    Front {
        addr,
        _runtime: runtime,
    }
}

/// `kubectl top ARGS` through the front: the table's rows as column → cell.
fn top(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Vec<BTreeMap<String, String>> {
    let mut full = vec![
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "top",
    ];
    full.extend_from_slice(args);
    let (ok, out) = kubectl(&full, None);
    assert!(ok, "kubectl {args:?} failed: {out}");
    let mut lines = out.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(str::to_string))
                .collect()
        })
        .collect()
}

fn millicores(cell: &str) -> i64 {
    cell.strip_suffix('m').unwrap().parse().unwrap()
}

fn mebibytes(cell: &str) -> i64 {
    cell.strip_suffix("Mi").unwrap().parse().unwrap()
}

/// Checks kubectl's rows (keyed by `key`) against Prometheus's values: memory in MiB
/// exactly; CPU in millicores within 3 % (at least 5m): `rate()` extrapolates to the
/// evaluation time, which moves between kubectl's query and the test's.
fn assert_rows(
    rows: &[BTreeMap<String, String>],
    key: &dyn Fn(&BTreeMap<String, String>) -> String,
    cpu: &BTreeMap<String, f64>,
    memory: &BTreeMap<String, f64>,
) {
    let printed: BTreeMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                key(r),
                (millicores(&r["CPU(cores)"]), mebibytes(&r["MEMORY(bytes)"])),
            )
        })
        .collect();
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        cpu.keys().collect::<Vec<_>>(),
        "kubectl printed {printed:?}; Prometheus has {cpu:?}"
    );
    for (name, (m, mi)) in &printed {
        let want_m = (cpu[name] * 1000.0) as i64;
        let want_mi = (memory[name] / MI) as i64;
        let slack = (want_m as f64 * 0.03).max(5.0) as i64;
        assert!((m - want_m).abs() <= slack, "{name}: {m}m vs {want_m}m");
        assert_eq!(*mi, want_mi, "{name}: memory");
    }
}

const POD_CPU: &str = r#"sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!="",container!="POD",pod!="gone-1"}[2m]))"#;
const POD_MEMORY: &str = r#"sum by (namespace, pod) (container_memory_working_set_bytes{container!="",container!="POD",pod!="gone-1"})"#;

/// Prometheus's per-pod values keyed `namespace/pod`, of those `keep` accepts.
fn per_pod(
    prometheus: &Prometheus,
    query: &str,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, f64> {
    // `values_by` keys by one label: fold the namespace into the query's answer.
    let with_key = format!(r#"label_join({query}, "key", "/", "namespace", "pod")"#);
    prometheus
        .values_by(&with_key, "key")
        .into_iter()
        .filter(|(k, _)| keep(k))
        .collect()
}

#[test]
fn kubectl_top_prints_what_prometheus_computes() {
    let prometheus = Prometheus::start(&openmetrics());
    let adapter = Adapter::start(&prometheus, OBJECTS, "", &[]);
    let front = front(&adapter);
    let kubeconfig = adapter.kubeconfig_for(&format!("http://{}", front.addr), None);
    let cache = tempfile::tempdir().unwrap();

    // Discovery and shapes, straight from the adapter.
    let groups = adapter.raw("/apis", None).unwrap();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "metrics.k8s.io"),
        "{groups}"
    );
    let resources = adapter.raw("/apis/metrics.k8s.io/v1beta1", None).unwrap();
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nodes", "pods"]);
    let web = eventually(Duration::from_secs(20), || {
        adapter.raw(
            "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1",
            None,
        )
    })
    .expect("PodMetrics for web-1");
    assert_eq!(
        (web["kind"].as_str(), web["apiVersion"].as_str()),
        (Some("PodMetrics"), Some("metrics.k8s.io/v1beta1"))
    );
    assert_eq!(web["metadata"]["namespace"], "shop");
    assert_eq!(web["metadata"]["labels"]["app"], "web");
    assert_eq!(web["window"], "2m0s");
    assert!(web["timestamp"].as_str().unwrap().ends_with('Z'));
    let containers: BTreeMap<&str, &Value> = web["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), &c["usage"]))
        .collect();
    assert_eq!(containers.keys().collect::<Vec<_>>(), [&"app", &"sidecar"]);
    assert_eq!(containers["app"]["memory"], "64Mi");
    let node = adapter
        .raw("/apis/metrics.k8s.io/v1beta1/nodes/node-b", None)
        .unwrap();
    assert_eq!(node["kind"], "NodeMetrics");
    assert_eq!(node["usage"]["memory"], "512Mi");
    // rate() extrapolates, so CPU is compared with Prometheus's own answer below.
    assert!(node["usage"]["cpu"].as_str().unwrap().ends_with('m'));
    let blue = adapter
        .raw(
            "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=pool%3Dblue",
            None,
        )
        .unwrap();
    assert_eq!(blue["kind"], "NodeMetricsList");
    assert_eq!(blue["items"].as_array().unwrap().len(), 1);
    let bank = adapter
        .raw(
            "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.namespace%3Dbank",
            None,
        )
        .unwrap();
    assert_eq!(bank["items"][0]["metadata"]["name"], "ledger-1");
    assert_eq!(bank["items"].as_array().unwrap().len(), 1);
    // A pod with series but no object is not listed; unknown pods are NotFound.
    let (code, body) = adapter
        .curl(
            &["/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/gone-1"],
            &[],
        )
        .unwrap();
    assert_eq!(code, 404, "{body}");
    let (code, body) = adapter
        .curl(
            &["/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=spec.nodeName%3Dnode-a"],
            &[],
        )
        .unwrap();
    assert_eq!(code, 400, "{body}");

    // kubectl top nodes.
    let rows = top(&kubeconfig, cache.path(), &["nodes"]);
    assert_rows(
        &rows,
        &|r| r["NAME"].clone(),
        &prometheus.values_by(
            r#"sum by (instance) (1 - rate(node_cpu_seconds_total{mode="idle"}[2m]))"#,
            "instance",
        ),
        &prometheus.values_by(
            r#"sum by (instance) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)"#,
            "instance",
        ),
    );
    // Percentages come from the Nodes' allocatable, as the API server serves them.
    for row in &rows {
        assert!(
            row["CPU(%)"].ends_with('%') && row["MEMORY(%)"].ends_with('%'),
            "{row:?}"
        );
    }
    let b = rows.iter().find(|r| r["NAME"] == "node-b").unwrap();
    assert_eq!(b["MEMORY(%)"], "12%", "512Mi of 4Gi: {b:?}");

    // kubectl top pods, across namespaces, in one, by label, per container.
    let before = prometheus.logged_queries().len();
    let all = top(&kubeconfig, cache.path(), &["pods", "-A"]);
    let sent = prometheus.logged_queries()[before..].to_vec();
    assert_eq!(
        sent.len(),
        2,
        "one query per resource for the request: {sent:?}"
    );
    let key = |r: &BTreeMap<String, String>| format!("{}/{}", r["NAMESPACE"], r["NAME"]);
    assert_rows(
        &all,
        &key,
        &per_pod(&prometheus, POD_CPU, |_| true),
        &per_pod(&prometheus, POD_MEMORY, |_| true),
    );
    let shop = top(&kubeconfig, cache.path(), &["pods", "-n", "shop"]);
    let in_shop = |k: &str| k.starts_with("shop/");
    assert_rows(
        &shop,
        &|r| format!("shop/{}", r["NAME"]),
        &per_pod(&prometheus, POD_CPU, in_shop),
        &per_pod(&prometheus, POD_MEMORY, in_shop),
    );
    let web_only = top(
        &kubeconfig,
        cache.path(),
        &["pods", "-n", "shop", "-l", "app=web"],
    );
    let is_web = |k: &str| k.starts_with("shop/web-");
    assert_rows(
        &web_only,
        &|r| format!("shop/{}", r["NAME"]),
        &per_pod(&prometheus, POD_CPU, is_web),
        &per_pod(&prometheus, POD_MEMORY, is_web),
    );
    let containers = top(
        &kubeconfig,
        cache.path(),
        &["pods", "-n", "shop", "-l", "app=web", "--containers"],
    );
    let container_key = |r: &BTreeMap<String, String>| format!("{}/{}", r["POD"], r["NAME"]);
    let per_container = |query: &str| -> BTreeMap<String, f64> {
        prometheus.values_by(
            &format!(r#"label_join({query}, "key", "/", "pod", "container")"#),
            "key",
        )
    };
    assert_rows(
        &containers,
        &container_key,
        &per_container(
            r#"sum by (pod, container) (rate(container_cpu_usage_seconds_total{namespace="shop",pod=~"web-.*",container!="",container!="POD"}[2m]))"#,
        ),
        &per_container(
            r#"sum by (pod, container) (container_memory_working_set_bytes{namespace="shop",pod=~"web-.*",container!="",container!="POD"})"#,
        ),
    );
}

/// prometheus-adapter's own deployment manifest (deploy/manifests/config-map.yaml),
/// unchanged: the kubelet's resource metrics, nodes by the `node` label.
const UPSTREAM: &str =
    include_str!("../../metrics-adapter/testdata/prometheus-adapter-resource-rules.yaml");

#[test]
fn prometheus_adapter_resource_rules_answer() {
    let prometheus = Prometheus::start(&openmetrics());
    let adapter = Adapter::start(&prometheus, OBJECTS, UPSTREAM, &[]);
    let nodes = eventually(Duration::from_secs(20), || {
        adapter
            .raw("/apis/metrics.k8s.io/v1beta1/nodes", None)
            .filter(|l| l["items"].as_array().is_some_and(|i| i.len() == 2))
    })
    .expect("NodeMetricsList");
    let printed: BTreeMap<&str, (&str, &str, &str)> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap(),
                (
                    n["usage"]["cpu"].as_str().unwrap(),
                    n["usage"]["memory"].as_str().unwrap(),
                    n["window"].as_str().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        printed,
        BTreeMap::from([
            ("node-a", ("500m", "3Gi", "5m0s")),
            ("node-b", ("750m", "512Mi", "5m0s"))
        ])
    );
    let pods = adapter
        .raw("/apis/metrics.k8s.io/v1beta1/namespaces/bank/pods", None)
        .unwrap();
    assert_eq!(pods["items"][0]["containers"][0]["usage"]["memory"], "32Mi");
    // The custom and external metrics APIs have no rules in this file: nothing listed.
    let custom = adapter
        .raw("/apis/custom.metrics.k8s.io/v1beta2", None)
        .unwrap();
    assert_eq!(custom["resources"].as_array().unwrap().len(), 0);
}
