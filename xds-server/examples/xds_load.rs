//! Load generator for the xds-server: N ADS streams acting as Envoy sidecars against a real
//! `weir up`, then one route change, timed until every stream has it.
//!
//! ```sh
//! cargo build --release --bin weir
//! cargo run --release -p weir-xds --example xds_load -- --streams 1000 [--protocol delta]
//! ```
//!
//! Each stream (state of the world by default, incremental with `--protocol delta`)
//! subscribes like an Envoy sidecar (CDS and LDS wildcard, EDS for every cluster,
//! RDS for `outbound`) and ACKs every response. The generator measures, for `weir up` only
//! (from /proc): resident memory per idle stream beyond the shared snapshot, CPU seconds per
//! push, and the time from writing the changed HTTPRoute to each stream receiving the new
//! route version (p50/p99/max). That time includes noticing the file (inotify), parsing it
//! and the 100 ms debounce.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use envoy_types::pb::envoy::{
    config::{cluster::v3::Cluster, core::v3::Node},
    service::discovery::v3::{
        DeltaDiscoveryRequest, DiscoveryRequest,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use weir_xds::envoy::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};

const STREAMS_PER_CONNECTION: usize = 50;

/// Per stream: the last route version it received, and when.
type SeenVersions = Arc<Mutex<Vec<Option<(String, Instant)>>>>;

struct Args {
    streams: usize,
    services: usize,
    changes: usize,
    delta: bool,
    weir: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        streams: 1000,
        services: 100,
        changes: 3,
        delta: false,
        weir: PathBuf::from(
            std::env::var("WEIR_BIN").unwrap_or_else(|_| "target/release/weir".into()),
        ),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--streams" => args.streams = value.parse().expect("--streams N"),
            "--services" => args.services = value.parse().expect("--services N"),
            "--changes" => args.changes = value.parse().expect("--changes N"),
            "--weir" => args.weir = PathBuf::from(value),
            "--protocol" => {
                args.delta = match value.as_str() {
                    "sotw" => false,
                    "delta" => true,
                    other => panic!("--protocol sotw|delta, not {other:?}"),
                }
            }
            other => panic!(
                "unknown flag {other}; flags: --streams N --services N --changes N --protocol sotw|delta --weir PATH"
            ),
        }
    }
    args
}

fn write_config(dir: &Path, services: usize, weight: u32) {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: load-0, namespace: bench}\n\
         spec: {serviceAccountName: load, containers: [{name: load, image: load}]}\n",
    );
    for i in 0..services {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: bench}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}, namespace: bench, labels: {{kubernetes.io/service-name: svc-{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [10.0.{}.{}, 10.1.{}.{}, 10.2.{}.{}]}}]\n",
            i / 250, i % 250, i / 250, i % 250, i / 250, i % 250
        ));
    }
    std::fs::write(dir.join("services.yaml"), yaml).expect("writing services");
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: canary, namespace: bench}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: svc-0, port: 80}}]\n  rules:\n  - backendRefs: [{{name: svc-0, port: 80, weight: {}}}, {{name: svc-1, port: 80, weight: {weight}}}]\n",
        100 - weight
    );
    let tmp = dir.join(".route.tmp");
    std::fs::write(&tmp, route).expect("writing route");
    std::fs::rename(tmp, dir.join("route.yaml")).expect("replacing route");
}

/// (user + system CPU seconds, resident bytes) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let cpu = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu / ticks, rss_kib * 1024)
}

fn request(
    type_url: &str,
    names: Vec<String>,
    version: String,
    nonce: String,
    node: Option<Node>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        node,
        type_url: type_url.into(),
        resource_names: names,
        version_info: version,
        response_nonce: nonce,
        ..Default::default()
    }
}

type RoutesSeen = mpsc::UnboundedSender<(usize, String, Instant)>;

/// One simulated sidecar over the protocol chosen.
async fn run_stream(channel: Channel, index: usize, routes_seen: RoutesSeen, delta: bool) {
    if delta {
        run_delta_stream(channel, index, routes_seen).await;
    } else {
        run_sotw_stream(channel, index, routes_seen).await;
    }
}

/// Every stream speaks for the one Pod of the configuration, `bench/load-0` (as its
/// ServiceAccount `load` proves with a client certificate from the mesh CA): they all
/// share one view, as the sidecars of one workload's replicas do.
fn sidecar_node(_index: usize) -> Node {
    Node {
        id: "sidecar~load-0.bench".into(),
        ..Default::default()
    }
}

/// One simulated incremental sidecar: subscribes, ACKs everything, reports each new
/// version of the `outbound` route.
async fn run_delta_stream(channel: Channel, index: usize, routes_seen: RoutesSeen) {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(16);
    let subscribe =
        |type_url: &str, names: Vec<String>, node: Option<Node>| DeltaDiscoveryRequest {
            node,
            type_url: type_url.into(),
            resource_names_subscribe: names,
            ..Default::default()
        };
    let _ = tx
        .send(subscribe(CLUSTER_TYPE, vec![], Some(sidecar_node(index))))
        .await;
    let _ = tx.send(subscribe(LISTENER_TYPE, vec![], None)).await;
    let Ok(response) = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
    else {
        eprintln!("stream {index}: could not open");
        return;
    };
    let mut responses = response.into_inner();
    let mut clusters: BTreeSet<String> = BTreeSet::new();
    let mut rds_requested = false;
    while let Ok(Some(response)) = responses.message().await {
        let ack = DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            return;
        }
        match response.type_url.as_str() {
            CLUSTER_TYPE => {
                let new: Vec<String> = response
                    .resources
                    .iter()
                    .filter(|r| clusters.insert(r.name.clone()))
                    .map(|r| r.name.clone())
                    .collect();
                for removed in &response.removed_resources {
                    clusters.remove(removed);
                }
                if !new.is_empty() {
                    let _ = tx.send(subscribe(ENDPOINT_TYPE, new, None)).await;
                }
            }
            LISTENER_TYPE if !rds_requested => {
                rds_requested = true;
                let _ = tx
                    .send(subscribe(ROUTE_TYPE, vec!["outbound".into()], None))
                    .await;
            }
            ROUTE_TYPE => {
                if let Some(route) = response.resources.iter().find(|r| r.name == "outbound") {
                    let _ = routes_seen.send((index, route.version.clone(), Instant::now()));
                }
            }
            _ => {}
        }
    }
}

/// One simulated state-of-the-world sidecar: subscribes, ACKs everything, reports each
/// new route version.
async fn run_sotw_stream(channel: Channel, index: usize, routes_seen: RoutesSeen) {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(16);
    let node = sidecar_node(index);
    let _ = tx
        .send(request(
            CLUSTER_TYPE,
            vec![],
            String::new(),
            String::new(),
            Some(node),
        ))
        .await;
    let _ = tx
        .send(request(
            LISTENER_TYPE,
            vec![],
            String::new(),
            String::new(),
            None,
        ))
        .await;
    let Ok(response) = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    else {
        eprintln!("stream {index}: could not open");
        return;
    };
    let mut responses = response.into_inner();
    let mut eds_names: Vec<String> = Vec::new();
    let mut rds_requested = false;
    while let Ok(Some(response)) = responses.message().await {
        let names = match response.type_url.as_str() {
            CLUSTER_TYPE => {
                let clusters: BTreeSet<String> = response
                    .resources
                    .iter()
                    .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
                    .map(|c| c.name)
                    .collect();
                let clusters: Vec<String> = clusters.into_iter().collect();
                if clusters != eds_names {
                    eds_names = clusters;
                    let _ = tx
                        .send(request(
                            ENDPOINT_TYPE,
                            eds_names.clone(),
                            String::new(),
                            String::new(),
                            None,
                        ))
                        .await;
                }
                vec![]
            }
            LISTENER_TYPE => {
                if !rds_requested {
                    rds_requested = true;
                    let _ = tx
                        .send(request(
                            ROUTE_TYPE,
                            vec!["outbound".into()],
                            String::new(),
                            String::new(),
                            None,
                        ))
                        .await;
                }
                vec![]
            }
            ENDPOINT_TYPE => eds_names.clone(),
            _ => vec!["outbound".into()],
        };
        if response.type_url == ROUTE_TYPE {
            let _ = routes_seen.send((index, response.version_info.clone(), Instant::now()));
        }
        let ack = request(
            &response.type_url,
            names,
            response.version_info,
            response.nonce,
            None,
        );
        if tx.send(ack).await.is_err() {
            return;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct WeirProcess(Child);

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), args.services, 10);
    let xds_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let run = tempfile::tempdir().expect("tempdir");
    let ca_dir = run.path().join("ca");
    let child = Command::new(&args.weir)
        .args(["up", "--config"])
        .arg(dir.path())
        .arg("--ca-dir")
        .arg(&ca_dir)
        .arg("--token-dir")
        .arg(run.path().join("tokens"))
        .args(["--gateway-envoys", "off"])
        .args([
            "--xds-addr",
            &format!("127.0.0.1:{xds_port}"),
            "--admin-addr",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (build it: cargo build --release --bin weir)",
                args.weir.display()
            )
        });
    let weir = WeirProcess(child);
    let pid = weir.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Streams prove who they are as Envoy does: TLS with a workload certificate.
    for _ in 0..100 {
        if ca_dir.join(weir_xds::ca::CA_CERT_FILE).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ca = weir_xds::ca::load_or_create(
        &ca_dir,
        "cluster.local",
        k8s_openapi::jiff::Timestamp::now(),
    )
    .expect("the mesh CA weir up created");
    let identity: weir_xds::ca::SpiffeId = "spiffe://cluster.local/ns/bench/sa/load"
        .parse()
        .expect("SPIFFE id");
    let certificate = ca
        .issue(
            &identity,
            Duration::from_secs(24 * 3600),
            k8s_openapi::jiff::Timestamp::now(),
        )
        .expect("a client certificate");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.root_pem()))
        .identity(tonic::transport::Identity::from_pem(
            &certificate.chain_pem,
            &certificate.key_pem,
        ))
        .domain_name("127.0.0.1");
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{xds_port}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS");
    // Warm the shared snapshot with one stream so the baseline includes it.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let warm = endpoint.connect().await.expect("connect");
    tokio::spawn(run_stream(warm, usize::MAX, seen_tx.clone(), args.delta));
    let _ = seen_rx.recv().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss_base) = usage(pid);

    // Open the streams, STREAMS_PER_CONNECTION per HTTP/2 connection.
    let versions: SeenVersions = Arc::new(Mutex::new(vec![None; args.streams]));
    let (all_tx, all_rx) = watch::channel(0usize);
    {
        let versions = versions.clone();
        tokio::spawn(async move {
            while let Some((index, version, at)) = seen_rx.recv().await {
                if index == usize::MAX {
                    continue;
                }
                let mut v = versions.lock().expect("lock");
                v[index] = Some((version, at));
                let _ = all_tx.send(v.iter().filter(|x| x.is_some()).count());
            }
        });
    }
    let started = Instant::now();
    let mut channel = None;
    for index in 0..args.streams {
        if index % STREAMS_PER_CONNECTION == 0 {
            channel = Some(endpoint.connect().await.expect("connect"));
        }
        tokio::spawn(run_stream(
            channel.clone().expect("channel"),
            index,
            seen_tx.clone(),
            args.delta,
        ));
    }
    let mut all = all_rx.clone();
    let _ = all.wait_for(|n| *n == args.streams).await;
    println!(
        "{} streams connected and ACKed in {:?}",
        args.streams,
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_idle) = usage(pid);
    let per_stream = (rss_idle.saturating_sub(rss_base)) as f64 / args.streams as f64;
    println!(
        "weir up RSS: {:.1} MiB with the snapshot, {:.1} MiB with {} idle streams: {:.1} KiB per idle stream",
        rss_base as f64 / 1048576.0,
        rss_idle as f64 / 1048576.0,
        args.streams,
        per_stream / 1024.0
    );

    for change in 0..args.changes {
        let before: Vec<String> = versions
            .lock()
            .expect("lock")
            .iter()
            .map(|v| v.as_ref().map(|(s, _)| s.clone()).unwrap_or_default())
            .collect();
        let (cpu_before, _) = usage(pid);
        let written = Instant::now();
        write_config(dir.path(), args.services, 20 + 10 * change as u32);
        let deadline = Instant::now() + Duration::from_secs(60);
        let latencies = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let v = versions.lock().expect("lock");
            let done: Vec<Duration> = v
                .iter()
                .zip(&before)
                .filter_map(|(now, old)| {
                    now.as_ref()
                        .filter(|(s, _)| s != old)
                        .map(|(_, at)| at.saturating_duration_since(written))
                })
                .collect();
            if done.len() == args.streams || Instant::now() > deadline {
                break done;
            }
        };
        let mut sorted = latencies.clone();
        sorted.sort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (cpu_after, _) = usage(pid);
        println!(
            "change {}: {}/{} streams updated; from file write: p50 {:?}, p99 {:?}, max {:?}; weir up CPU for the push: {:.3} s",
            change + 1,
            latencies.len(),
            args.streams,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
            cpu_after - cpu_before
        );
    }
    drop(weir);
}
