//! The command line: `weir <command>`, with flags that also read `WEIR_*` variables.
//!
//! This is a contract users script against (see ARCHITECTURE.md): commands and flags are
//! added, never renamed.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// List connected proxies: per resource type, the version sent and ACKed, and the last
    /// NACK.
    ProxyStatus(ProxyStatusArgs),
    /// Run the xds-server in a cluster: watch the API server, serve Envoy over ADS.
    XdsServer(Box<XdsServerArgs>),
    /// Run the controllers in a cluster: the pod autoscaler (ScalingPolicies, metrics from
    /// Prometheus), the node autoscaler (NodePools, through Cluster API) and the mesh-TLS
    /// controller (MeshPolicy status, sidecar statistics from Prometheus).
    Controllers(Box<ControllersArgs>),
    /// Dry-run an autoscaler on a captured state and print its decision as JSON.
    #[command(subcommand)]
    Recommend(RecommendCommand),
    /// Run the metrics adapter in a cluster: the custom and external metrics APIs
    /// (custom.metrics.k8s.io, external.metrics.k8s.io) served from Prometheus.
    MetricsAdapter(Box<MetricsAdapterCommandArgs>),
}

/// Flags of `weir metrics-adapter`.
#[derive(Debug, Args)]
pub struct MetricsAdapterCommandArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Address the metrics APIs are served on (HTTPS).
    #[arg(
        long,
        env = "WEIR_METRICS_ADAPTER_ADDR",
        default_value = "0.0.0.0:6443"
    )]
    pub metrics_adapter_addr: SocketAddr,
    /// Prometheus's base URL.
    #[arg(
        long,
        env = "WEIR_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub prometheus_url: String,
    /// The adapter's settings.
    #[command(flatten)]
    pub adapter: MetricsAdapterArgs,
}

/// Settings of the metrics adapter, in `weir metrics-adapter` and `weir up`. Flag names
/// follow prometheus-adapter's and the Kubernetes API server's where they exist.
#[derive(Clone, Debug, Args)]
pub struct MetricsAdapterArgs {
    /// Rules in prometheus-adapter's configuration format (`rules`, `externalRules`);
    /// without it, built-in rules for container metrics and namespaced pod series.
    #[arg(long = "rules", env = "WEIR_METRICS_ADAPTER_RULES")]
    pub rules: Option<PathBuf>,
    /// How often series discovery re-lists Prometheus's series (e.g. `1m`).
    #[arg(long, env = "WEIR_METRICS_RELIST_INTERVAL", default_value = "1m")]
    pub metrics_relist_interval: weir_crds::Duration,
    /// How far back discovery looks for series (e.g. `10m`).
    #[arg(long, env = "WEIR_METRICS_MAX_AGE", default_value = "10m")]
    pub metrics_max_age: weir_crds::Duration,
    /// How long a value fetched from Prometheus is reused (`0s`: only identical requests in
    /// flight share a query).
    #[arg(long, env = "WEIR_METRICS_CACHE_MAX_AGE", default_value = "5s")]
    pub cache_max_age: weir_crds::Duration,
    /// Serving certificate (PEM); with --tls-private-key-file.
    #[arg(long, env = "WEIR_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, env = "WEIR_TLS_PRIVATE_KEY_FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Without a certificate: where the self-signed one is kept (apiserver.crt,
    /// apiserver.key), reused when present.
    #[arg(long, env = "WEIR_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Serve everyone, without authentication or authorization (local use only).
    #[arg(long, env = "WEIR_INSECURE_SKIP_AUTH")]
    pub insecure_skip_auth: bool,
    /// CA of client certificates (user = common name, groups = organizations).
    #[arg(long, env = "WEIR_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// CA of the front proxy (the API server's aggregation layer); its certificates vouch
    /// for the user in the request headers.
    #[arg(long, env = "WEIR_REQUESTHEADER_CLIENT_CA_FILE")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed on front-proxy certificates (comma-separated; empty: any).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Headers naming the user.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,
    /// Headers naming groups.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,
    /// Prefixes of headers carrying extra user attributes.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Kubeconfig of the API server that reviews bearer tokens (TokenReview); default:
    /// in-cluster or KUBECONFIG.
    #[arg(long, env = "WEIR_AUTHENTICATION_KUBECONFIG")]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// Kubeconfig of the API server that authorizes requests (SubjectAccessReview);
    /// default: --authentication-kubeconfig, else in-cluster or KUBECONFIG.
    #[arg(long, env = "WEIR_AUTHORIZATION_KUBECONFIG")]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Do not read kube-system/extension-apiserver-authentication for the CAs and header
    /// names (flags only).
    #[arg(long)]
    pub authentication_skip_lookup: bool,
}

/// Flags of `weir controllers`.
#[derive(Debug, Args)]
pub struct ControllersArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Leader election: only the leader scales.
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Where metrics are read: Prometheus directly (one query per distinct metric per
    /// sync), or the cluster's metrics APIs (metrics.k8s.io, custom.metrics.k8s.io,
    /// external.metrics.k8s.io) served by another adapter.
    #[arg(long, env = "WEIR_METRICS_SOURCE", value_enum, default_value_t = MetricsSourceKind::Prometheus)]
    pub metrics_source: MetricsSourceKind,
    /// prometheus-adapter rules for `--metrics-source rules` (default: the built-in rules).
    #[arg(long = "rules", env = "WEIR_METRICS_ADAPTER_RULES")]
    pub rules: Option<PathBuf>,
    /// Prometheus, for `--metrics-source prometheus` and `rules`.
    #[arg(
        long,
        env = "WEIR_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub prometheus_url: String,
    /// Seconds between syncs of every ScalingPolicy (HPA's default: 15).
    #[arg(long, env = "WEIR_SYNC_PERIOD_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_period_seconds: u64,
    /// Run the mesh-TLS controller: MeshPolicy status (effective mode, sidecar coverage,
    /// promotion and rollback), from the sidecars' statistics in Prometheus at
    /// --prometheus-url.
    #[arg(long, env = "WEIR_MESH_TLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub mesh_tls: bool,
    /// How often the mesh-TLS controller re-evaluates MeshPolicies.
    #[arg(long, env = "WEIR_MESH_TLS_INTERVAL", default_value = "10s", value_parser = weir_controllers::node_autoscaler::settings::parse_duration)]
    pub mesh_tls_interval: std::time::Duration,
    /// The node autoscaler's settings (cluster-autoscaler's flag names and defaults).
    #[command(flatten, next_help_heading = "Node autoscaler")]
    pub nodes: weir_controllers::node_autoscaler::Settings,
}

/// Where the pod autoscaler reads metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsSourceKind {
    /// Prometheus, queried directly (one query per distinct metric per sync, for every
    /// namespace; series labelled as prometheus-adapter's conventions have them).
    Prometheus,
    /// Pods, Object and External metrics through prometheus-adapter rules (`--rules`),
    /// with the metrics adapter's engine in-process; Resource and Prometheus metrics
    /// straight from Prometheus.
    Rules,
    /// The Kubernetes metrics APIs.
    Kubernetes,
}

/// Where the mesh-TLS controller reads the sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MeshTlsSource {
    /// Each connected sidecar's Envoy admin, on 127.0.0.1 (local mode only).
    Admin,
    /// Prometheus scraping the sidecars' `/stats/prometheus`.
    Prometheus,
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

/// Flags of `weir recommend replicas`.
#[derive(Debug, Args)]
pub struct RecommendReplicasArgs {
    /// The STATE file (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Flags of `weir xds-server`.
#[derive(Debug, Args)]
pub struct XdsServerArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Address the xds-server (Envoy's ADS) listens on.
    #[arg(long, env = "WEIR_XDS_ADDR", default_value = "0.0.0.0:18000")]
    pub xds_addr: SocketAddr,
    /// Leader election: which replica writes status.
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Write Gateway API status (GatewayClass, Gateway, HTTPRoute) while leading.
    #[arg(long, env = "WEIR_WRITE_STATUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub write_status: bool,
    /// The global rate-limit service (default address 0.0.0.0:18081).
    #[command(flatten)]
    pub rate_limit: RateLimitArgs,
    /// The mesh CA.
    #[command(flatten, next_help_heading = "Mesh CA")]
    pub mesh_ca: MeshCaArgs,
    /// The Secret holding the mesh CA (`namespace/name`, keys `ca.crt`, `ca.key`,
    /// optionally `ca-chain.crt`): created with a generated root if missing, so every
    /// replica uses the same one. Ignored with --ca-dir.
    #[arg(long, env = "WEIR_CA_SECRET", default_value = "weir-system/weir-ca")]
    pub ca_secret: String,
}

/// The global rate-limit service (Envoy's `envoy.service.ratelimit.v3`).
#[derive(Debug, Args, Clone)]
pub struct RateLimitArgs {
    /// Where the rate-limit service listens (gRPC).
    #[arg(long = "rate-limit-addr", env = "WEIR_RATE_LIMIT_ADDR")]
    pub rate_limit_addr: Option<SocketAddr>,
    /// Redis for the counters, e.g. `redis://redis.weir-system:6379/0`, shared by every
    /// replica; without it, counters live in this process's memory.
    #[arg(long, env = "WEIR_RATE_LIMIT_REDIS_URL")]
    pub rate_limit_redis_url: Option<String>,
    /// Deadline of one Redis round trip (e.g. `100ms`).
    #[arg(long, env = "WEIR_RATE_LIMIT_REDIS_TIMEOUT", default_value = "100ms", value_parser = weir_controllers::node_autoscaler::settings::parse_duration)]
    pub rate_limit_redis_timeout: std::time::Duration,
    /// What the service answers when the counters cannot be reached: `allow` (fail open,
    /// like Envoy) or `deny`.
    #[arg(long, env = "WEIR_RATE_LIMIT_FAILURE_MODE", value_enum, default_value_t = RateLimitFailureMode::Allow)]
    pub rate_limit_failure_mode: RateLimitFailureMode,
}

/// The mesh CA: workload certificates (SPIFFE identities) delivered to proxies over SDS.
#[derive(Debug, Args, Clone)]
pub struct MeshCaArgs {
    /// Trust domain of workload identities, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    #[arg(long, env = "WEIR_TRUST_DOMAIN", default_value = weir_xds::ca::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// How long workload certificates are valid; they are renewed at half their lifetime.
    #[arg(long, env = "WEIR_WORKLOAD_CERT_LIFETIME", default_value = "24h", value_parser = weir_controllers::node_autoscaler::settings::parse_duration)]
    pub workload_cert_lifetime: std::time::Duration,
    /// Directory holding the CA (`ca.crt`, `ca.key`, optionally `ca-chain.crt` above an
    /// intermediate): loaded if there, else a root is generated and written. Put your own
    /// root or intermediate there to use it. `weir up` defaults to `.weir/ca`; the
    /// xds-server keeps it in --ca-secret unless this is given.
    #[arg(long, env = "WEIR_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
}

/// `--rate-limit-failure-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RateLimitFailureMode {
    /// Let requests through.
    Allow,
    /// Refuse them (429).
    Deny,
}

/// Leader election on a Lease: every replica serves, the leader also writes.
#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Elect a leader among replicas (`--leader-elect=false` for a single replica that
    /// always writes).
    #[arg(long, env = "WEIR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease (the pod's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "weir-system")]
    pub leader_election_namespace: String,
    /// Name of the Lease (default: the component's name, `weir-xds-server` or
    /// `weir-controllers`).
    #[arg(long, env = "WEIR_LEADER_ELECTION_ID")]
    pub leader_election_id: Option<String>,
    /// This replica's identity in the Lease (the pod name, from the downward API).
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// How long the Lease holds without renewal, in seconds.
    #[arg(long, env = "WEIR_LEADER_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub leader_lease_seconds: u64,
}

/// How Weir logs.
#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's `EnvFilter` syntax (e.g. `info,weir=debug`).
    #[arg(long, global = true, env = "WEIR_LOG", default_value = "info")]
    pub log_level: String,
}

/// A log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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
    /// How often the mesh-TLS controller re-evaluates MeshPolicies (promotion, rollback,
    /// refused transitions).
    #[arg(long, env = "WEIR_MESH_TLS_INTERVAL", default_value = "10s", value_parser = weir_controllers::node_autoscaler::settings::parse_duration)]
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
}

/// The admin endpoint every long-running mode serves.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "127.0.0.1:18090")]
    pub admin_addr: SocketAddr,
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
