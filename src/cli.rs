//! The command line: `weir <command>`, with flags that also read `WEIR_*` variables.
//!
//! This is a contract users script against (see ARCHITECTURE.md): commands and flags are
//! added, never renamed.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use weir_controllers::args::{ControllersArgs, MeshTlsSource};
use weir_metrics_adapter::args::{MetricsAdapterArgs, MetricsAdapterCommandArgs};
use weir_runtime::args::{AdminArgs, TelemetryArgs};
use weir_xds::args::{InjectArgs, MeshCaArgs, RateLimitArgs, WebhookArgs, XdsServerArgs};

/// Weir: autoscaling and traffic control plane for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// Logging settings, shared by every command.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Weir locally against a directory of manifests (local mode).
    Up(Box<UpArgs>),
    /// Check a directory of manifests the way `weir up` would; exit 1 if any problem.
    Validate(ValidateArgs),
    /// Print Weir's CustomResourceDefinitions as YAML.
    Crds,
    /// Print an Envoy bootstrap (YAML) that connects a proxy to the xds-server.
    Bootstrap(BootstrapArgs),
    /// Steer a pod's TCP through its sidecar with iptables (the injected init container
    /// runs this in the pod's network namespace; needs NET_ADMIN and NET_RAW).
    Capture(weir_xds::args::CaptureArgs),
    /// List connected proxies: per resource type, the version sent and ACKed, and the last
    /// NACK; and the callers recently refused for want of proof.
    ProxyStatus(ProxyStatusArgs),
    /// Run the identity agent next to a proxy: generate its key, have the xds-server
    /// certify it with the pod's ServiceAccount token, and serve it to Envoy over SDS on a
    /// Unix socket (the key never leaves the pod).
    Agent(weir_xds::agent::AgentArgs),
    /// Run the xds-server in a cluster: watch the API server, serve Envoy over ADS.
    XdsServer(Box<XdsServerArgs>),
    /// Run the controllers in a cluster: the pod autoscaler (ScalingPolicies, metrics from
    /// Prometheus), the node autoscaler (NodePools, through Cluster API) and the mesh-TLS
    /// controller (MeshPolicy status, sidecar statistics from Prometheus).
    Controllers(Box<ControllersArgs>),
    /// Dry-run an autoscaler on a captured state and print its decision as JSON.
    #[command(subcommand)]
    Recommend(RecommendCommand),
    /// Replay a demand trace through a ScalingPolicy (and, with --compare hpa, through
    /// HPA's default behavior): timeline.csv, summary.json, plot.svg and plot.png in --out (docs/simulate.md).
    Simulate(SimulateArgs),
    /// Run the metrics adapter in a cluster: the custom and external metrics APIs
    /// (custom.metrics.k8s.io, external.metrics.k8s.io) served from Prometheus.
    MetricsAdapter(Box<MetricsAdapterCommandArgs>),
}

/// What `weir recommend` decides.
#[derive(Debug, Subcommand)]
pub enum RecommendCommand {
    /// The pod autoscaler: desired replicas for a ScalingPolicy, per metric and with the
    /// status conditions, from a STATE file (see docs/recommend-replicas.md).
    Replicas(RecommendReplicasArgs),
    /// The node autoscaler: scale-ups, scale-downs and the reason for every pending pod
    /// and every node, from a SNAPSHOT of the cluster (see docs/node-autoscaler.md).
    Nodes(Box<RecommendNodesArgs>),
}

/// Flags of `weir recommend nodes`.
#[derive(Debug, Args)]
pub struct RecommendNodesArgs {
    /// The SNAPSHOT: a `List` or multi-document YAML of Nodes, Pods,
    /// PodDisruptionBudgets, DaemonSets and NodePools; `-` reads standard input.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The time to plan for (RFC 3339, e.g. 2026-11-22T10:00:00Z); default: the clock.
    #[arg(long)]
    pub now: Option<String>,
    /// The node autoscaler's settings (cluster-autoscaler's flag names and defaults).
    #[command(flatten)]
    pub settings: weir_controllers::node_autoscaler::Settings,
}

/// What a CSV trace's `value` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceValueUnit {
    /// Requests in the row's interval (until the next row).
    PerInterval,
    /// Requests per second.
    PerSecond,
}

/// What `--compare` replays beside the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulateCompare {
    /// The same policy with the forecast off and HPA's default behavior.
    Hpa,
}

/// Flags of `weir simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The ScalingPolicy manifest, as it would be applied (`spec.forecast.enabled` turns
    /// the forecast on).
    #[arg(long)]
    pub policy: PathBuf,
    /// The demand trace: CSV `timestamp_seconds,value` (seconds from the start) or
    /// `timestamp,value` (date-times, e.g. `2015-02-26 21:42:53` as UTC), or a Prometheus
    /// range-query JSON answer (`.json`).
    #[arg(long)]
    pub trace: PathBuf,
    /// Requests per second one ready pod serves.
    #[arg(long)]
    pub capacity_per_pod: f64,
    /// What the CSV `value` column holds.
    #[arg(long, value_enum, default_value_t = TraceValueUnit::PerInterval)]
    pub value_unit: TraceValueUnit,
    /// From a pod asked for to ready.
    #[arg(long, default_value = "60s", value_parser = weir_crds::parse_flag_duration)]
    pub startup: std::time::Duration,
    /// Between decisions.
    #[arg(long, default_value = "15s", value_parser = weir_crds::parse_flag_duration)]
    pub sync_period: std::time::Duration,
    /// What the metric averages over.
    #[arg(long, default_value = "60s", value_parser = weir_crds::parse_flag_duration)]
    pub metric_window: std::time::Duration,
    /// Replay a second policy beside it.
    #[arg(long, value_enum)]
    pub compare: Option<SimulateCompare>,
    /// Where timeline.csv, summary.json, plot.svg and plot.png go (created if missing).
    #[arg(long, default_value = "simulation")]
    pub out: PathBuf,
}

/// Flags of `weir recommend replicas`.
#[derive(Debug, Args)]
pub struct RecommendReplicasArgs {
    /// The STATE file (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Flags of `weir up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory of manifests (multi-document YAML, read recursively); watched for changes.
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: PathBuf,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Address the xds-server (Envoy's ADS) listens on.
    #[arg(long, env = "WEIR_XDS_ADDR", default_value = "127.0.0.1:18000")]
    pub xds_addr: SocketAddr,
    /// Run the pod autoscaler on the directory's simulated Deployments, with metrics from
    /// this Prometheus.
    #[arg(long, env = "WEIR_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Seconds between autoscaler syncs.
    #[arg(long, env = "WEIR_SYNC_PERIOD_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_period_seconds: u64,
    /// Where the metrics adapter serves the custom and external metrics APIs (HTTPS),
    /// when --prometheus-url is given. Without authentication settings it serves
    /// everyone, so only a loopback address is accepted unless --insecure-skip-auth.
    #[arg(
        long,
        env = "WEIR_METRICS_ADAPTER_ADDR",
        default_value = "127.0.0.1:6443"
    )]
    pub metrics_adapter_addr: SocketAddr,
    /// The metrics adapter's settings.
    #[command(flatten)]
    pub adapter: MetricsAdapterArgs,
    /// The global rate-limit service (default address 127.0.0.1:18081, counters in
    /// memory unless --rate-limit-redis-url).
    #[command(flatten)]
    pub rate_limit: RateLimitArgs,
    /// The mesh CA (kept in --ca-dir, default `.weir/ca`).
    #[command(flatten, next_help_heading = "Mesh CA")]
    pub mesh_ca: MeshCaArgs,
    /// The sidecar injection webhook, served when --webhook-addr is set (its certificate
    /// from the mesh CA, for `localhost` and `127.0.0.1` by default), so injection can be
    /// tried without a cluster.
    #[command(flatten, next_help_heading = "Sidecar injection")]
    pub webhook: WebhookArgs,
    /// What the injector puts into pods.
    #[command(flatten, next_help_heading = "Sidecar injection")]
    pub inject: InjectArgs,
    /// How often the mesh-TLS controller re-evaluates MeshPolicies (promotion, rollback,
    /// refused transitions).
    #[arg(long, env = "WEIR_MESH_TLS_INTERVAL", default_value = "10s", value_parser = weir_crds::parse_flag_duration)]
    pub mesh_tls_interval: std::time::Duration,
    /// Where the mesh-TLS controller reads the sidecars (which are connected, and their
    /// inbound statistics): their Envoy admin on loopback, or Prometheus at
    /// --prometheus-url scraping them (series labelled `namespace` and `pod`, as in a
    /// cluster).
    #[arg(long, env = "WEIR_MESH_TLS_SOURCE", value_enum, default_value_t = MeshTlsSource::Admin)]
    pub mesh_tls_source: MeshTlsSource,
    /// The node autoscaler's settings (cluster-autoscaler's flag names and defaults); in
    /// local mode it acts on NodePools with the simulated provider.
    #[command(flatten, next_help_heading = "Node autoscaler")]
    pub nodes: weir_controllers::node_autoscaler::Settings,
    /// One Envoy per Gateway of Weir's class, run and supervised by `weir up`.
    #[command(flatten, next_help_heading = "Gateway Envoys")]
    pub gateways: weir_xds::args::LocalGatewayArgs,
    /// The tokens proxies prove who they are with (`weir up` mints them, as a kubelet).
    #[command(flatten, next_help_heading = "Proxy identity")]
    pub proof: weir_xds::local_tokens::LocalProofArgs,
}

/// Flags of `weir validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Directory of manifests (read recursively), or a single file.
    pub dir: PathBuf,
}

/// A proxy's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyRole {
    /// A sidecar next to one workload.
    Sidecar,
    /// An ingress gateway serving one Gateway.
    Gateway,
}

/// Flags of `weir bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The proxy's role.
    #[arg(long, value_enum)]
    pub role: ProxyRole,
    /// The pod name (sidecar) or Gateway name (gateway).
    #[arg(long)]
    pub name: String,
    /// The namespace.
    #[arg(long)]
    pub namespace: String,
    /// The xds-server, `host:port`.
    #[arg(long, env = "WEIR_XDS_ADDR", default_value = "127.0.0.1:18000")]
    pub xds_addr: String,
    /// Weir's rate-limit service, `host:port`, called on routes with global limits.
    #[arg(long, env = "WEIR_RATE_LIMIT_ADDR", default_value = "127.0.0.1:18081")]
    pub rate_limit_addr: String,
    /// Envoy's admin port (on 127.0.0.1).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Also serve the admin's `/stats/prometheus` (and nothing else) on this port, on
    /// every address, for Prometheus to scrape (e.g. 15090; the mesh-TLS controller in a
    /// cluster reads the sidecars' statistics from Prometheus).
    #[arg(long)]
    pub stats_port: Option<u16>,
    /// The sidecar's inbound listener port.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// The sidecar's outbound listener port.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// The sidecar's workload port (default: the Pod's first container port).
    #[arg(long)]
    pub app_port: Option<u16>,
    /// Added to every Gateway listener port, so several gateways can share a host.
    #[arg(long, default_value_t = 0)]
    pub gateway_port_offset: u16,
    /// The xDS protocol variant Envoy uses.
    #[arg(long, value_enum, default_value_t = XdsProtocol::Sotw)]
    pub xds_protocol: XdsProtocol,
    /// With `--xds-protocol delta`, a sidecar is sent no Service up front: it fetches a
    /// Service's routes and cluster when its workload first calls it (VHDS and on-demand
    /// CDS). `false`: every Service (or its MeshPolicy's egress list) is sent up front.
    /// State of the world cannot fetch on demand; an egress list, when set, is sent whole.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub on_demand: bool,
    /// The pod's traffic is captured by `weir capture`: the sidecar listens on every
    /// address on its inbound and outbound ports and recovers original destinations.
    #[arg(long)]
    pub capture: bool,
    /// Also serve a plaintext health port on every address (e.g. 15021) for kubelet
    /// probes: `/healthz/ready` and the application's rewritten probes.
    #[arg(long)]
    pub health_port: Option<u16>,
    /// The application's original probes (the injector's `weir.io/original-probes`
    /// annotation, JSON), served under `/app-health/...` on --health-port.
    #[arg(long, env = "WEIR_APP_PROBES", requires = "health_port")]
    pub app_probes: Option<String>,
    /// The Unix socket of the proxy's agent (`weir agent`), which holds its workload
    /// certificate and key: Envoy presents it to the xds-server and to peers.
    #[arg(long, env = "WEIR_AGENT_SOCKET", default_value = weir_xds::bootstrap::DEFAULT_AGENT_SOCKET)]
    pub agent_socket: String,
    /// Write the bootstrap to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// An xDS protocol variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdsProtocol {
    /// State of the world: every response carries every resource of its type.
    Sotw,
    /// Incremental: responses carry only what changed.
    Delta,
}

/// Flags of `weir proxy-status`.
#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// Admin address of the Weir process serving xDS.
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "127.0.0.1:18090")]
    pub admin_addr: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
