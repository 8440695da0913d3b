//! Load generator for Weir's rate-limit service (docs/benchmarks.md): decisions per second
//! and latency of `ShouldRateLimit` with counters in a real Redis, and a check that the
//! counts are exact.
//!
//! It starts the service in this process on a loopback port, with Redis at `--redis-url`
//! (or a `redis-server` it starts on a free port), then runs `--connections` HTTP/2
//! connections with `--concurrency` requests in flight each, for `--seconds`. Requests go
//! round-robin over `--keys` distinct descriptors of one policy limited to `--limit` per
//! hour. At the end, for every key, allowed = min(sent, limit) must hold exactly.
//!
//! ```sh
//! cargo run --release -p weir-xds --example ratelimit_load -- --seconds 10
//! ```

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::{
    extensions::common::ratelimit::v3::{RateLimitDescriptor, rate_limit_descriptor::Entry},
    service::ratelimit::v3::{
        RateLimitRequest, rate_limit_response::Code,
        rate_limit_service_client::RateLimitServiceClient,
    },
};
use weir_crds::traffic_policy::RateLimitUnit;
use weir_xds::ratelimit::{
    DOMAIN, Limit, LimitTable, POLICY_KEY,
    backend::{Counters, RedisCounters},
    service::{FailureMode, RateLimitServer},
};

struct Args {
    redis_url: Option<String>,
    seconds: u64,
    connections: usize,
    concurrency: usize,
    keys: usize,
    limit: u32,
}

fn args() -> Args {
    let mut a = Args {
        redis_url: None,
        seconds: 10,
        connections: 4,
        concurrency: 64,
        keys: 1000,
        limit: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--redis-url" => a.redis_url = Some(value),
            "--seconds" => a.seconds = value.parse().unwrap(),
            "--connections" => a.connections = value.parse().unwrap(),
            "--concurrency" => a.concurrency = value.parse().unwrap(),
            "--keys" => a.keys = value.parse().unwrap(),
            "--limit" => a.limit = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One hit on the `bench/api` policy, counted by `key = value`.
fn bench_request(key: &str, value: String) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: POLICY_KEY.into(),
                    value: "bench/api".into(),
                },
                Entry {
                    key: key.into(),
                    value,
                },
            ],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

fn start_redis() -> (Child, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("redis://127.0.0.1:{port}/0"))
}

#[tokio::main]
async fn main() {
    let a = args();
    let (mut redis, url) = match &a.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let (child, url) = start_redis();
            (Some(child), url)
        }
    };
    let limits = Arc::new(ArcSwap::from_pointee(LimitTable::from_entries([(
        "bench/api".to_string(),
        Limit {
            requests: a.limit,
            unit: RateLimitUnit::Hour,
        },
    )])));
    let counters = Counters::Redis(RedisCounters::new(&url, Duration::from_millis(500)).unwrap());
    let server = RateLimitServer::new(limits, Arc::new(counters), FailureMode::Deny, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server.into_service())
            .serve_with_incoming(weir_xds::server::incoming_nodelay(listener))
            .await
            .unwrap();
    });
    // Warm up: the service's first call dials Redis.
    {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = RateLimitServiceClient::new(channel);
        client
            .should_rate_limit(bench_request("warm", "up".into()))
            .await
            .unwrap();
    }
    // A run id keeps counters of earlier runs (same Redis, same hour) apart.
    let run = format!("{}", std::process::id());
    let sent: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..a.keys).map(|_| Default::default()).collect());
    let allowed: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..a.keys).map(|_| Default::default()).collect());
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut next_key = 0usize;
    for _ in 0..a.connections {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for _ in 0..a.concurrency {
            let mut client = RateLimitServiceClient::new(channel.clone());
            let (sent, allowed, latencies, run) = (
                sent.clone(),
                allowed.clone(),
                latencies.clone(),
                run.clone(),
            );
            let keys = a.keys;
            let mut key = next_key;
            next_key += 1;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let k = key % keys;
                    key += 7;
                    let request = bench_request("remote_address", format!("10.{run}.{k}"));
                    let t = Instant::now();
                    let response = client
                        .should_rate_limit(request)
                        .await
                        .unwrap()
                        .into_inner();
                    mine.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    sent[k].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if response.overall_code == Code::Ok as i32 {
                        allowed[k].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let total = lat.len();
    let pct = |p: f64| lat[((total as f64 * p) as usize).min(total - 1)] as f64 / 1000.0;
    let mut wrong = HashMap::new();
    for k in 0..a.keys {
        let s = sent[k].load(std::sync::atomic::Ordering::Relaxed);
        let got = allowed[k].load(std::sync::atomic::Ordering::Relaxed);
        let expect = s.min(u64::from(a.limit));
        if got != expect {
            wrong.insert(k, (s, got, expect));
        }
    }
    println!(
        "decisions={total} in {elapsed:.1}s = {:.0}/s | latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms | keys={} limit={}/h | exact: {}",
        total as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        lat[total - 1] as f64 / 1000.0,
        a.keys,
        a.limit,
        if wrong.is_empty() {
            "yes (allowed = min(sent, limit) for every key)".to_string()
        } else {
            format!(
                "NO, {} keys off: {:?}",
                wrong.len(),
                wrong.iter().take(5).collect::<Vec<_>>()
            )
        },
    );
    if let Some(r) = redis.as_mut() {
        let _ = r.kill();
        let _ = r.wait();
    }
    if !wrong.is_empty() {
        std::process::exit(1);
    }
}
