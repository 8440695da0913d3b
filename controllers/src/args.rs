//! Flags of `weir controllers`, and the choices of where the pod autoscaler and the
//! mesh-TLS controller read. Names and `WEIR_*` variables are part of the command-line
//! contract.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use weir_runtime::args::{AdminArgs, LeaderArgs};

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
    #[arg(long, env = "WEIR_MESH_TLS_INTERVAL", default_value = "10s", value_parser = weir_crds::parse_flag_duration)]
    pub mesh_tls_interval: std::time::Duration,
    /// The node autoscaler's settings (cluster-autoscaler's flag names and defaults).
    #[command(flatten, next_help_heading = "Node autoscaler")]
    pub nodes: crate::node_autoscaler::Settings,
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
