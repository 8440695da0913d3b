//! Load generator for the metrics adapter: requests per second and latency of a cached
//! custom-metrics `pods/*` request and a cached resource-metrics `pods` list (what
//! `kubectl top pods` and Resource-metric HPAs ask), and of uncached ones next to the same
//! queries sent straight to Prometheus, in the same run.
//!
//! ```sh
//! cargo build --release --bin weir
//! WEIR_BIN=target/release/weir cargo run --release -p weir-tests --example adapter_load -- [--rps 2000] [--seconds 10] [--pods 50] [--uncached 400]
//! ```
//!
//! It backfills a real Prometheus, starts `weir up` with the adapter (cache on), drives an
//! open loop at `--rps` for `--seconds` per request kind, then restarts it with
//! `--cache-max-age 0s` and alternates `--uncached` sequential requests between the
//! adapter and Prometheus (for resource metrics, the CPU and memory queries the adapter
//! sends, concurrently, as it sends them).

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use weir_tests::{WeirUp, free_port, prometheus::Prometheus};

struct Options {
    rps: u64,
    seconds: u64,
    pods: usize,
    uncached: usize,
}

fn options() -> Options {
    let mut o = Options {
        rps: 2000,
        seconds: 10,
        pods: 50,
        uncached: 400,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--rps" => o.rps = value.parse().unwrap(),
            "--seconds" => o.seconds = value.parse().unwrap(),
            "--pods" => o.pods = value.parse().unwrap(),
            "--uncached" => o.uncached = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    o
}

fn openmetrics(pods: usize) -> String {
    let now = weir_tests::prometheus::last_second();
    let mut om = String::from("# TYPE http_requests counter\n");
    for p in 0..pods {
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "http_requests_total{{namespace=\"shop\",pod=\"web-{p}\"}} {} {t}\n",
                (p + 1) as f64 * (step * 15) as f64
            ));
        }
    }
    // cAdvisor: 0.1 core per pod index, and 64 MiB each.
    om.push_str("# TYPE container_cpu_usage_seconds counter\n");
    for p in 0..pods {
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"web-{p}\",container=\"app\"}} {} {t}\n",
                0.1 * (p + 1) as f64 * (step * 15) as f64
            ));
        }
    }
    om.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for p in 0..pods {
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "container_memory_working_set_bytes{{namespace=\"shop\",pod=\"web-{p}\",container=\"app\"}} 67108864 {t}\n"
            ));
        }
    }
    om.push_str("# EOF\n");
    om
}

const RULES: &str = r#"
rules:
- seriesQuery: '{__name__="http_requests_total",namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)'
resourceRules:
  cpu:
    containerQuery: 'sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[2m]))'
    nodeQuery: 'sum by (<<.GroupBy>>) (1 - rate(node_cpu_seconds_total{<<.LabelMatchers>>,mode="idle"}[2m]))'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, instance: {resource: node}}}
    containerLabel: container
  memory:
    containerQuery: 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""})'
    nodeQuery: 'sum by (<<.GroupBy>>) (node_memory_MemTotal_bytes{<<.LabelMatchers>>} - node_memory_MemAvailable_bytes{<<.LabelMatchers>>})'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}, instance: {resource: node}}}
    containerLabel: container
  window: 2m
"#;

/// The resource-metrics request, and the two queries the adapter sends for it.
const RESOURCE_PATH: &str = "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods";
const RESOURCE_PROMQL: [&str; 2] = [
    r#"sum by (namespace,pod,container) (rate(container_cpu_usage_seconds_total{namespace="shop",pod!="",container!=""}[2m]))"#,
    r#"sum by (namespace,pod,container) (container_memory_working_set_bytes{namespace="shop",pod!="",container!=""})"#,
];

fn start(dir: &std::path::Path, prometheus: &Prometheus, cache: &str) -> (WeirUp, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (url, addr_arg) = (prometheus.url(), addr.to_string());
    let rules = dir.join("rules.yaml").display().to_string();
    let certs = dir.join("certs").display().to_string();
    let up = WeirUp::start(
        &dir.join("config"),
        &[
            "--prometheus-url",
            &url,
            "--metrics-adapter-addr",
            &addr_arg,
            "--rules",
            &rules,
            "--cert-dir",
            &certs,
            "--cache-max-age",
            cache,
            "--log-level",
            "warn",
        ],
    );
    (up, addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut latencies: Vec<Duration>, wall: Duration) {
    latencies.sort();
    println!(
        "{name}: {} requests, {:.0} rps, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prometheus = Prometheus::start(&openmetrics(o.pods));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let mut pods = String::new();
    for p in 0..o.pods {
        pods.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-{p}, namespace: shop, labels: {{app: web}}}}\nspec: {{containers: [{{name: app, image: web}}]}}\n"
        ));
    }
    std::fs::write(dir.path().join("config/pods.yaml"), pods).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();

    let (up, addr) = start(dir.path(), &prometheus, "5s");
    let ca = std::fs::read(dir.path().join("certs/apiserver.crt")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second?labelSelector=app%3Dweb";
    let url = format!("https://{addr}{path}");
    // Wait for discovery.
    let mut n = 0;
    while !client
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        n += 1;
        assert!(n < 100, "the adapter never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Cached: an open loop at --rps, for each request kind.
    for (name, path, route) in [
        ("cached pods/*", path, "custom"),
        ("cached metrics.k8s.io pods", RESOURCE_PATH, "resource_pods"),
    ] {
        let server = |up: &WeirUp| {
            let m = |s: &str| {
                up.metric(&format!(
                    "weir_metrics_adapter_request_duration_seconds_{s}{{route=\"{route}\"}}"
                ))
                .unwrap_or(0.0)
            };
            (m("sum"), m("count"))
        };
        let before = server(&up);
        open_loop(&o, &client, &format!("https://{addr}{path}"), name).await;
        let after = server(&up);
        println!(
            "  server side: mean {:.3} ms per request (weir_metrics_adapter_request_duration_seconds)",
            (after.0 - before.0) / (after.1 - before.1).max(1.0) * 1e3
        );
    }
    drop(up);

    // Uncached: the adapter with no cache, alternating with the same PromQL sent straight
    // to Prometheus.
    let (up, addr) = start(dir.path(), &prometheus, "0s");
    let names: Vec<String> = (0..o.pods).map(|p| format!("web-{p}")).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let promql = format!(
        "sum(rate(http_requests_total{{namespace=\"shop\",pod=~\"{}\"}}[5m])) by (pod)",
        sorted.join("|")
    );
    let prometheus_url = prometheus.url();
    for (name, path, queries) in [
        ("uncached pods/*", path, vec![promql.as_str()]),
        (
            "uncached metrics.k8s.io pods",
            RESOURCE_PATH,
            RESOURCE_PROMQL.to_vec(),
        ),
    ] {
        let url = format!("https://{addr}{path}");
        side_by_side(&o, &client, &url, &prometheus_url, &queries, name).await;
    }
    drop(up);
}

async fn get(client: reqwest::Client, url: String) -> Duration {
    let started = Instant::now();
    let response = client.get(&url).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.bytes().await.unwrap();
    assert!(body.len() > 100);
    started.elapsed()
}

async fn open_loop(o: &Options, client: &reqwest::Client, url: &str, name: &str) {
    // Warm the cache and the connection pool.
    for _ in 0..200 {
        let _ = get(client.clone(), url.to_string()).await;
    }
    let interval = Duration::from_secs_f64(1.0 / o.rps as f64);
    let total = o.rps * o.seconds;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        tasks.push(tokio::spawn(get(client.clone(), url.to_string())));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let wall = started.elapsed();
    report(
        &format!("{name} ({} pods, open loop at {} rps)", o.pods, o.rps),
        latencies,
        wall,
    );
}

/// `--uncached` sequential requests to the adapter, each followed by `queries` POSTed
/// straight to Prometheus (concurrently, as the adapter sends them).
async fn side_by_side(
    o: &Options,
    client: &reqwest::Client,
    url: &str,
    prometheus: &str,
    queries: &[&str],
    name: &str,
) {
    let direct = Arc::new(format!("{prometheus}/api/v1/query"));
    let plain = reqwest::Client::new();
    for _ in 0..50 {
        let _ = get(client.clone(), url.to_string()).await;
    }
    let (mut adapter, mut straight) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..o.uncached {
        adapter.push(get(client.clone(), url.to_string()).await);
        let t = Instant::now();
        let sends = queries.iter().map(|q| {
            let request = plain
                .post(direct.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("query={}", form(q)));
            async move {
                let response = request.send().await.unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await.unwrap();
            }
        });
        futures::future::join_all(sends).await;
        straight.push(t.elapsed());
    }
    let wall = started.elapsed();
    report(&format!("{name} via the adapter"), adapter, wall);
    report(
        &format!("{name}: the same PromQL straight to Prometheus"),
        straight,
        wall,
    );
}

fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
