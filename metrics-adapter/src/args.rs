//! Flags of the metrics adapter: `weir metrics-adapter`, and the adapter's part of
//! `weir up`. Names follow prometheus-adapter's and the Kubernetes API server's where they
//! exist, and are part of the command-line contract.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

/// Flags of `weir metrics-adapter`.
#[derive(Debug, Args)]
pub struct MetricsAdapterCommandArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[command(flatten)]
    pub admin: weir_runtime::args::AdminArgs,
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
    #[arg(long, env = "WEIR_METRICS_RELIST_INTERVAL", default_value = "1m", value_parser = weir_crds::parse_flag_duration)]
    pub metrics_relist_interval: Duration,
    /// How far back discovery looks for series (e.g. `10m`).
    #[arg(long, env = "WEIR_METRICS_MAX_AGE", default_value = "10m", value_parser = weir_crds::parse_flag_duration)]
    pub metrics_max_age: Duration,
    /// How long a value fetched from Prometheus is reused (`0s`: only identical requests in
    /// flight share a query).
    #[arg(long, env = "WEIR_METRICS_CACHE_MAX_AGE", default_value = "5s", value_parser = weir_crds::parse_flag_duration)]
    pub cache_max_age: Duration,
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
