//! Load generator for the xds-server: N ADS streams acting as Envoy sidecars against a real
//! `weir up`, then one route change, timed until every stream has it.
//!
//! ```sh
//! cargo build --release --bin weir
//! cargo run --release -p weir-xds --example xds_load -- --streams 1000 [--protocol delta] \
//!     [--services 1000 --workloads 1000 --calls 5]
//! ```
//!
//! Each stream (state of the world by default, incremental with `--protocol delta`)
//! subscribes like an Envoy sidecar (CDS and LDS wildcard, EDS for every cluster it is
//! sent, RDS for `outbound`) and ACKs every response. Streams are the replicas of
//! `--workloads` workloads, each in its own namespace; with `--calls K` each workload's
//! MeshPolicy lists the K Services it calls (`egress`), so its sidecars are sent what it
//! calls; without, every sidecar is told about every Service. With `--on-demand true`
//! (delta) no egress list is written: each sidecar asks for the virtual hosts (VHDS) and
//! clusters of what its workload calls, as Envoy's on-demand filter does on first calls.
//!
//! The change (a canary route on `svc-0`) is timed on the streams whose workload calls
//! `svc-0`; the others should be sent nothing, and the generator counts those that are.
//! It measures, for `weir up` only (from /proc): resident memory per idle stream beyond
//! the shared snapshot, CPU seconds per push, and the time from writing the changed
//! HTTPRoute to each stream receiving the new route version (p50/p99/max). That time
//! includes noticing the file (inotify), parsing it and the 100 ms debounce.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use envoy_types::pb::envoy::{
    config::{cluster::v3::Cluster, core::v3::Node},
    service::discovery::v3::{
        DeltaDiscoveryRequest, DiscoveryRequest,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use weir_xds::envoy::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, VIRTUAL_HOST_TYPE};

const STREAMS_PER_CONNECTION: usize = 50;

/// Per stream: the last route version it received, and when.
type SeenVersions = Arc<Mutex<Vec<Option<(String, Instant)>>>>;

struct Args {
    streams: usize,
    services: usize,
    workloads: usize,
    /// Services each workload calls (its egress list); 0: every Service, unscoped.
    calls: usize,
    /// Streams fetch what they call on demand (VHDS, on-demand CDS) instead of workloads
    /// listing it in an egress list; delta only.
    on_demand: bool,
    changes: usize,
    delta: bool,
    weir: PathBuf,
}

impl Args {
    /// The workload stream `index` is a replica of (contiguous runs of streams).
    fn workload(&self, index: usize) -> usize {
        if index == usize::MAX {
            return 0;
        }
        index * self.workloads / self.streams.max(1)
    }

    /// The Services workload `w` calls (all, unscoped); every workload is scoped alike.
    fn calls_of(&self, w: usize) -> Vec<usize> {
        if self.calls == 0 {
            return (0..self.services).collect();
        }
        // A fixed pseudo-random spread (splitmix64), so runs are comparable.
        let mut chosen = Vec::new();
        let mut x = w as u64;
        while chosen.len() < self.calls.min(self.services) {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let service = ((z ^ (z >> 31)) % self.services as u64) as usize;
            if !chosen.contains(&service) {
                chosen.push(service);
            }
        }
        chosen
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        streams: 1000,
        services: 100,
        workloads: 1,
        calls: 0,
        on_demand: false,
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
            "--workloads" => args.workloads = value.parse().expect("--workloads N"),
            "--calls" => args.calls = value.parse().expect("--calls K"),
            "--on-demand" => args.on_demand = value.parse().expect("--on-demand true|false"),
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
                "unknown flag {other}; flags: --streams N --services N --workloads N --calls K --on-demand true|false --changes N --protocol sotw|delta --weir PATH"
            ),
        }
    }
    assert!(
        args.workloads >= 1 && args.workloads <= args.streams,
        "--workloads must be between 1 and --streams"
    );
    assert!(
        !args.on_demand || (args.delta && args.calls > 0),
        "--on-demand true needs --protocol delta and --calls K"
    );
    args
}

/// Workload `w`'s namespace (its one Pod is `load-<w>`, ServiceAccount `load`).
fn workload_namespace(w: usize) -> String {
    format!("w-{w}")
}

fn write_workloads(dir: &Path, args: &Args) {
    let mut yaml = String::new();
    for w in 0..args.workloads {
        let ns = workload_namespace(w);
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: load-{w}, namespace: {ns}}}\n\
             spec: {{serviceAccountName: load, containers: [{{name: load, image: load}}]}}\n"
        ));
        if args.calls > 0 && !args.on_demand {
            let hosts: Vec<String> = args
                .calls_of(w)
                .iter()
                .map(|s| format!("bench/svc-{s}"))
                .collect();
            yaml.push_str(&format!(
                "---\napiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: egress, namespace: {ns}}}\n\
                 spec: {{mtls: {{mode: Permissive}}, egress: {{hosts: [{}]}}}}\n",
                hosts.join(", ")
            ));
        }
    }
    std::fs::write(dir.join("workloads.yaml"), yaml).expect("writing workloads");
}

fn write_config(dir: &Path, services: usize, weight: u32) {
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    for i in 0..services {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: bench}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}, namespace: bench, labels: {{kubernetes.io/service-name: svc-{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [10.0.{}.{}, 10.1.{}.{}, 10.2.{}.{}]}}]\n",
            i / 250, i % 250, i / 250, i % 250, i / 250, i % 250
        ));
    }
    // Written once, whole (a rename): rewriting it in place on every change let `weir up`
    // read it half-written, a generation without most Services.
    let services_file = dir.join("services.yaml");
    if !services_file.exists() {
        let tmp = dir.join(".services.tmp");
        std::fs::write(&tmp, yaml).expect("writing services");
        std::fs::rename(tmp, services_file).expect("placing services");
    }
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

/// What every stream reports: new route versions, and a count of every response; and
/// what it calls.
#[derive(Clone)]
struct Reports {
    routes: RoutesSeen,
    responses: Arc<Vec<AtomicU64>>,
    /// Each workload's calls (every Service, unscoped).
    calls: Arc<Vec<Vec<usize>>>,
    /// Streams fetch what they call on demand (delta only).
    on_demand: bool,
}

impl Reports {
    fn calls_of(&self, workload: usize) -> Vec<usize> {
        self.calls.get(workload).cloned().unwrap_or_default()
    }

    fn response(&self, index: usize) {
        if let Some(count) = self.responses.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One simulated sidecar of workload `workload` over the protocol chosen.
async fn run_stream(
    channel: Channel,
    index: usize,
    workload: usize,
    reports: Reports,
    delta: bool,
) {
    if delta {
        run_delta_stream(channel, index, workload, reports).await;
    } else {
        run_sotw_stream(channel, index, workload, reports).await;
    }
}

/// A stream speaks for its workload's one Pod, `w-<w>/load-<w>` (as its ServiceAccount
/// `load` proves with a client certificate from the mesh CA): the replicas of a workload
/// share one view, as the sidecars of one Deployment do.
fn sidecar_node(workload: usize) -> Node {
    Node {
        id: format!("sidecar~load-{workload}.{}", workload_namespace(workload)),
        ..Default::default()
    }
}

/// One simulated incremental sidecar: subscribes, ACKs everything, reports each new
/// version of the `outbound` route.
async fn run_delta_stream(channel: Channel, index: usize, workload: usize, reports: Reports) {
    // On demand, the sidecar asks for the virtual hosts and clusters of what it calls, as
    // Envoy's on-demand filter does on each first request to a Service.
    let on_demand = reports.on_demand.then(|| reports.calls_of(workload));
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
    let mut node = sidecar_node(workload);
    if on_demand.is_some() {
        node.metadata = Some(Struct {
            fields: [(
                weir_xds::bootstrap::metadata::ON_DEMAND.to_string(),
                Value {
                    kind: Some(Kind::StringValue("true".into())),
                },
            )]
            .into_iter()
            .collect(),
        });
    }
    let _ = tx.send(subscribe(CLUSTER_TYPE, vec![], Some(node))).await;
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
        reports.response(index);
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
                if let Some(calls) = &on_demand {
                    let mut hosts = vec!["outbound".to_string()];
                    hosts.extend(calls.iter().map(|s| format!("outbound/svc-{s}.bench")));
                    let _ = tx.send(subscribe(VIRTUAL_HOST_TYPE, hosts, None)).await;
                    let clusters = calls.iter().map(|s| format!("bench/svc-{s}/80")).collect();
                    let _ = tx.send(subscribe(CLUSTER_TYPE, clusters, None)).await;
                }
            }
            ROUTE_TYPE => {
                if let Some(route) = response.resources.iter().find(|r| r.name == "outbound") {
                    let _ = reports
                        .routes
                        .send((index, route.version.clone(), Instant::now()));
                }
            }
            VIRTUAL_HOST_TYPE => {
                if let Some(host) = response
                    .resources
                    .iter()
                    .find(|r| r.name == "outbound/bench.svc-0.80")
                {
                    let _ = reports
                        .routes
                        .send((index, host.version.clone(), Instant::now()));
                }
            }
            _ => {}
        }
    }
}

/// One simulated state-of-the-world sidecar: subscribes, ACKs everything, reports each
/// new route version.
async fn run_sotw_stream(channel: Channel, index: usize, workload: usize, reports: Reports) {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(16);
    let node = sidecar_node(workload);
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
        reports.response(index);
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
            let _ = reports
                .routes
                .send((index, response.version_info.clone(), Instant::now()));
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
    write_workloads(dir.path(), &args);
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
    // One client certificate per workload namespace (its ServiceAccount `load`).
    let endpoint_for = |w: usize| {
        let identity: weir_xds::ca::SpiffeId = format!(
            "spiffe://cluster.local/ns/{}/sa/load",
            workload_namespace(w)
        )
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
        Endpoint::from_shared(format!("https://127.0.0.1:{xds_port}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("TLS")
    };
    // Warm the shared snapshot with one stream so the baseline includes it.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let reports = Reports {
        routes: seen_tx.clone(),
        responses: Arc::new((0..args.streams).map(|_| AtomicU64::new(0)).collect()),
        calls: Arc::new((0..args.workloads).map(|w| args.calls_of(w)).collect()),
        on_demand: args.on_demand,
    };
    // `weir up` listens once it has loaded the directory (seconds, for thousands of objects).
    let mut attempts = 0;
    let warm = loop {
        match endpoint_for(0).connect().await {
            Ok(channel) => break channel,
            Err(e) if attempts < 300 => {
                attempts += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connecting to weir up: {e}"),
        }
    };
    tokio::spawn(run_stream(warm, usize::MAX, 0, reports.clone(), args.delta));
    let _ = seen_rx.recv().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss_base) = usage(pid);

    // Open the streams: the replicas of a workload share HTTP/2 connections (its
    // certificate), STREAMS_PER_CONNECTION each.
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
    let mut channel: Option<(usize, usize, Channel)> = None;
    for index in 0..args.streams {
        let workload = args.workload(index);
        let reuse = match &channel {
            Some((w, n, _)) => *w == workload && *n < STREAMS_PER_CONNECTION,
            None => false,
        };
        if !reuse {
            let connected = endpoint_for(workload).connect().await.expect("connect");
            channel = Some((workload, 0, connected));
        }
        let (_, count, connected) = channel.as_mut().expect("channel");
        *count += 1;
        tokio::spawn(run_stream(
            connected.clone(),
            index,
            workload,
            reports.clone(),
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

    // The streams the change is for: the replicas of workloads that call svc-0.
    let affected: Vec<bool> = (0..args.streams)
        .map(|i| args.calls_of(args.workload(i)).contains(&0))
        .collect();
    let expected = affected.iter().filter(|a| **a).count();
    println!(
        "{} workloads, each calling {} of {} Services; {expected} streams call svc-0",
        args.workloads,
        if args.calls == 0 {
            args.services
        } else {
            args.calls
        },
        args.services
    );
    for change in 0..args.changes {
        let responses_before: Vec<u64> = reports
            .responses
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
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
                .zip(&affected)
                .filter(|(_, affected)| **affected)
                .filter_map(|((now, old), _)| {
                    now.as_ref()
                        .filter(|(s, _)| s != old)
                        .map(|(_, at)| at.saturating_duration_since(written))
                })
                .collect();
            if done.len() == expected || Instant::now() > deadline {
                break done;
            }
        };
        let mut sorted = latencies.clone();
        sorted.sort();
        // Whatever else was going to be sent has been by now.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (cpu_after, _) = usage(pid);
        let bystanders_pushed = reports
            .responses
            .iter()
            .zip(&responses_before)
            .zip(&affected)
            .filter(|((now, before), affected)| {
                !**affected && now.load(Ordering::Relaxed) != **before
            })
            .count();
        println!(
            "change {}: {}/{expected} streams updated; {bystanders_pushed} of the {} others were sent something; from file write: p50 {:?}, p99 {:?}, max {:?}; weir up CPU for the push: {:.3} s",
            change + 1,
            latencies.len(),
            args.streams - expected,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
            cpu_after - cpu_before
        );
    }
    drop(weir);
}
