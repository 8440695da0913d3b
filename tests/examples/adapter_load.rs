//! Load generator for the metrics adapter: requests per second and latency of a cached
//! `pods/*` request, and of an uncached one next to the same query sent straight to
//! Prometheus, in the same run.
//!
//! ```sh
//! cargo build --release --bin weir
//! WEIR_BIN=target/release/weir cargo run --release -p weir-tests --example adapter_load -- [--rps 2000] [--seconds 10] [--pods 50] [--uncached 400]
//! ```
//!
//! It backfills a real Prometheus, starts `weir up` with the adapter (cache on), drives an
//! open loop at `--rps` for `--seconds`, then restarts it with `--cache-max-age 0s` and
//! alternates `--uncached` sequential requests between the adapter and Prometheus.

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
    om.push_str("# EOF\n");
    om
}

const RULES: &str = r#"
rules:
- seriesQuery: '{__name__="http_requests_total",namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)'
"#;

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
    let get = |client: reqwest::Client, url: String| async move {
        let started = Instant::now();
        let response = client.get(&url).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.bytes().await.unwrap();
        assert!(body.len() > 100);
        started.elapsed()
    };
    // Wait for discovery, warm the cache and the connection pool.
    for _ in 0..200 {
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
    }

    // Cached: an open loop at --rps.
    let interval = Duration::from_secs_f64(1.0 / o.rps as f64);
    let total = o.rps * o.seconds;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        tasks.push(tokio::spawn(get(client.clone(), url.clone())));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let wall = started.elapsed();
    report(
        &format!(
            "cached pods/* ({} pods, open loop at {} rps)",
            o.pods, o.rps
        ),
        latencies,
        wall,
    );
    drop(up);

    // Uncached: the adapter with no cache, alternating with the same PromQL sent straight
    // to Prometheus.
    let (up, addr) = start(dir.path(), &prometheus, "0s");
    let url = format!("https://{addr}{path}");
    let names: Vec<String> = (0..o.pods).map(|p| format!("web-{p}")).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let promql = format!(
        "sum(rate(http_requests_total{{namespace=\"shop\",pod=~\"{}\"}}[5m])) by (pod)",
        sorted.join("|")
    );
    let direct = Arc::new(format!("{}/api/v1/query", prometheus.url()));
    let plain = reqwest::Client::new();
    for _ in 0..50 {
        let _ = get(client.clone(), url.clone()).await;
    }
    let (mut adapter, mut straight) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..o.uncached {
        adapter.push(get(client.clone(), url.clone()).await);
        let t = Instant::now();
        let response = plain
            .post(direct.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("query={}", form(&promql)))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let _ = response.bytes().await.unwrap();
        straight.push(t.elapsed());
    }
    let wall = started.elapsed();
    report("uncached pods/* via the adapter", adapter, wall);
    report("the same PromQL straight to Prometheus", straight, wall);
    drop(up);
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
