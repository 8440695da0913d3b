//! Flags of `weir xds-server`, and of the parts `weir up` shares with it: the global
//! rate-limit service and the mesh CA. Names and `WEIR_*` variables are part of the
//! command-line contract.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};
use weir_runtime::args::{AdminArgs, LeaderArgs};

/// Whether `weir up` runs the gateway Envoys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GatewayEnvoys {
    /// One Envoy per Gateway of Weir's class, started, restarted and stopped with it.
    Supervise,
    /// None: gateway Envoys are started by hand (`weir bootstrap --role gateway`).
    Off,
}

/// Local mode's gateway Envoys (`weir up`).
#[derive(Debug, Args, Clone)]
pub struct LocalGatewayArgs {
    /// Run one Envoy per Gateway of Weir's class (`supervise`: restarted with backoff
    /// when it exits, stopped when its Gateway is deleted and on shutdown), or none
    /// (`off`).
    #[arg(long, env = "WEIR_GATEWAY_ENVOYS", value_enum, default_value_t = GatewayEnvoys::Supervise)]
    pub gateway_envoys: GatewayEnvoys,
    /// The Envoy binary the gateways run (looked up on the PATH).
    #[arg(long, env = "WEIR_ENVOY_BIN", default_value = "envoy")]
    pub envoy_bin: PathBuf,
    /// Where each gateway Envoy's bootstrap (`<namespace>.<name>.yaml`) and log
    /// (`<namespace>.<name>.log`) are written.
    #[arg(long, env = "WEIR_GATEWAY_RUN_DIR", default_value = ".weir/gateways")]
    pub gateway_run_dir: PathBuf,
    /// Added to every Gateway listener port of the supervised Envoys (to run setups side
    /// by side on one host).
    #[arg(long, env = "WEIR_GATEWAY_PORT_OFFSET", default_value_t = 0)]
    pub gateway_port_offset: u16,
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
    #[arg(long, env = "WEIR_RATE_LIMIT_REDIS_TIMEOUT", default_value = "100ms", value_parser = weir_crds::parse_flag_duration)]
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
    #[arg(long, env = "WEIR_TRUST_DOMAIN", default_value = crate::ca::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// How long workload certificates are valid; they are renewed at half their lifetime.
    #[arg(long, env = "WEIR_WORKLOAD_CERT_LIFETIME", default_value = "24h", value_parser = weir_crds::parse_flag_duration)]
    pub workload_cert_lifetime: std::time::Duration,
    /// Directory holding the CA (`ca.crt`, `ca.key`, optionally `ca-chain.crt` above an
    /// intermediate): loaded if there, else a root is generated and written. Put your own
    /// root or intermediate there to use it. `weir up` defaults to `.weir/ca`; the
    /// xds-server keeps it in --ca-secret unless this is given.
    #[arg(long, env = "WEIR_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
    /// The names proxies and agents dial the xds-server and the rate-limit service by
    /// (DNS names or IP addresses, comma-separated): the TLS serving certificate the mesh
    /// CA issues for both carries them, and proxies check it does.
    #[arg(
        long,
        env = "WEIR_XDS_SERVER_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub xds_server_names: Vec<String>,
}

/// `--rate-limit-failure-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RateLimitFailureMode {
    /// Let requests through.
    Allow,
    /// Refuse them (429).
    Deny,
}

/// Flags of `weir xds-server`.
#[derive(Debug, Args)]
pub struct XdsServerArgs {
    /// The sidecar injection webhook.
    #[command(flatten, next_help_heading = "Sidecar injection")]
    pub webhook: WebhookArgs,
    /// What the injector puts into pods.
    #[command(flatten, next_help_heading = "Sidecar injection")]
    pub inject: InjectArgs,
    /// The MutatingWebhookConfiguration whose `caBundle` the leader keeps equal to the
    /// mesh CA's root (when the webhook's certificate is the CA's; empty: not kept).
    #[arg(long, env = "WEIR_WEBHOOK_CONFIG_NAME", default_value = "")]
    pub webhook_config_name: String,
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
    /// Run every Gateway of Weir's class while leading: a ServiceAccount, an Envoy
    /// Deployment, a Service (and a PDB, and a ScalingPolicy with autoscaling
    /// parameters), owned by the Gateway. False: operators run the gateway Envoys.
    #[arg(long, env = "WEIR_PROVISION_GATEWAYS", default_value_t = true, action = clap::ArgAction::Set)]
    pub provision_gateways: bool,
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
    /// The namespaces whose Secrets may hold Gateway certificates (comma-separated;
    /// empty: none). Secrets are read only there, with a watcher per namespace, so a
    /// Role in each suffices; a Gateway's `certificateRefs` to another namespace finds no
    /// Secret. Unset: every namespace, which needs list and watch on Secrets cluster-wide
    /// (the chart always sets it).
    #[arg(long, env = "WEIR_SECRET_NAMESPACES", value_delimiter = ',')]
    pub secret_namespaces: Option<Vec<String>>,
}

impl XdsServerArgs {
    /// Where Secrets are watched: only in `--secret-namespaces` when given.
    pub fn scopes(&self) -> anyhow::Result<weir_runtime::sources::kube::Scopes> {
        let scopes = weir_runtime::sources::kube::Scopes::default();
        let Some(namespaces) = &self.secret_namespaces else {
            return Ok(scopes);
        };
        let namespaces: Vec<String> = namespaces
            .iter()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty())
            .collect();
        for ns in &namespaces {
            if let Some(problem) = weir_store::manifest::invalid_dns_label(ns) {
                anyhow::bail!("--secret-namespaces: {ns:?} is not a namespace name: {problem}");
            }
        }
        Ok(scopes.namespaced(weir_store::Kind::Secret, namespaces))
    }
}

impl MeshCaArgs {
    /// Checks the trust domain and lifetime flags.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            crate::ca::valid_trust_domain(&self.trust_domain),
            "--trust-domain {:?}: not a valid trust domain (lowercase letters, digits, '-', '.', '_')",
            self.trust_domain
        );
        anyhow::ensure!(
            self.workload_cert_lifetime >= std::time::Duration::from_secs(2),
            "--workload-cert-lifetime: must be at least 2s"
        );
        Ok(())
    }
}

/// Where and how the sidecar injection webhook (`POST /inject`, AdmissionReview over TLS)
/// is served.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Address of the injection webhook (HTTPS); unset: not served.
    #[arg(long, env = "WEIR_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// Serving certificate (PEM) from a file, e.g. cert-manager's; reloaded when it
    /// changes. Unset: the mesh CA issues one for --webhook-names and renews it.
    #[arg(long, env = "WEIR_WEBHOOK_CERT_FILE", requires = "webhook_key_file")]
    pub webhook_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM), with --webhook-cert-file.
    #[arg(long, env = "WEIR_WEBHOOK_KEY_FILE", requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,
    /// DNS names (and IPs) the CA-issued certificate is for, comma-separated: the
    /// webhook Service's names.
    #[arg(
        long,
        env = "WEIR_WEBHOOK_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub webhook_names: Vec<String>,
}

/// What the injector gives a meshed pod.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Envoy's image for the sidecar (default: the release Weir is tested with).
    #[arg(
        long,
        env = "WEIR_INJECT_PROXY_IMAGE",
        default_value = "envoyproxy/envoy:v1.40.0"
    )]
    pub inject_proxy_image: String,
    /// Weir's init image (weir with iptables, the Dockerfile's `init` target), for the
    /// capture and bootstrap init containers.
    #[arg(long, env = "WEIR_INJECT_INIT_IMAGE", default_value = concat!("ghcr.io/weir-io/weir-init:", env!("CARGO_PKG_VERSION")))]
    pub inject_init_image: String,
    /// Image pull policy of the injected containers.
    #[arg(long, env = "WEIR_INJECT_PULL_POLICY", default_value = "IfNotPresent")]
    pub inject_pull_policy: String,
    /// The xds-server as sidecars reach it, `host:port`.
    #[arg(
        long,
        env = "WEIR_INJECT_XDS_ADDR",
        default_value = "weir-xds-server.weir-system.svc:18000"
    )]
    pub inject_xds_addr: String,
    /// The rate-limit service as sidecars reach it, `host:port`.
    #[arg(
        long,
        env = "WEIR_INJECT_RATE_LIMIT_ADDR",
        default_value = "weir-xds-server.weir-system.svc:18081"
    )]
    pub inject_rate_limit_addr: String,
    /// The sidecar's CPU request (annotation weir.io/proxy-cpu overrides).
    #[arg(long, env = "WEIR_INJECT_PROXY_CPU", default_value = "100m")]
    pub inject_proxy_cpu: String,
    /// The sidecar's memory request (annotation weir.io/proxy-memory overrides).
    #[arg(long, env = "WEIR_INJECT_PROXY_MEMORY", default_value = "128Mi")]
    pub inject_proxy_memory: String,
    /// The sidecar's CPU limit; empty for none (annotation weir.io/proxy-cpu-limit).
    #[arg(long, env = "WEIR_INJECT_PROXY_CPU_LIMIT", default_value = "")]
    pub inject_proxy_cpu_limit: String,
    /// The sidecar's memory limit (annotation weir.io/proxy-memory-limit overrides).
    #[arg(long, env = "WEIR_INJECT_PROXY_MEMORY_LIMIT", default_value = "1Gi")]
    pub inject_proxy_memory_limit: String,
}

impl InjectArgs {
    /// The injector's configuration.
    pub fn config(&self) -> crate::inject::InjectConfig {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        crate::inject::InjectConfig {
            proxy_image: self.inject_proxy_image.clone(),
            init_image: self.inject_init_image.clone(),
            image_pull_policy: self.inject_pull_policy.clone(),
            xds_addr: self.inject_xds_addr.clone(),
            rate_limit_addr: self.inject_rate_limit_addr.clone(),
            resources: crate::inject::ProxyResources {
                cpu: some(&self.inject_proxy_cpu),
                memory: some(&self.inject_proxy_memory),
                cpu_limit: some(&self.inject_proxy_cpu_limit),
                memory_limit: some(&self.inject_proxy_memory_limit),
            },
            // Known once the CA is loaded: `InjectConfig::ca_root_pem` is set then.
            ca_root_pem: String::new(),
        }
    }
}

/// Flags of `weir capture`.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// The sidecar's inbound capture port.
    #[arg(long, default_value_t = crate::capture::ports::INBOUND)]
    pub inbound_port: u16,
    /// The sidecar's outbound capture port.
    #[arg(long, default_value_t = crate::capture::ports::OUTBOUND)]
    pub outbound_port: u16,
    /// The uid (and gid) the sidecar runs as; its own traffic is not captured.
    #[arg(long, default_value_t = crate::capture::PROXY_UID)]
    pub proxy_uid: u32,
    /// Inbound ports not captured, comma-separated.
    #[arg(long, default_value = "")]
    pub exclude_inbound_ports: String,
    /// Capture only these inbound ports, comma-separated (default: all).
    #[arg(long, default_value = "")]
    pub include_inbound_ports: String,
    /// Outbound destination ports not captured, comma-separated.
    #[arg(long, default_value = "")]
    pub exclude_outbound_ports: String,
    /// Outbound destination CIDRs not captured, comma-separated (IPv4).
    #[arg(long, default_value = "")]
    pub exclude_outbound_cidrs: String,
    /// iptables backend: nft, legacy, or auto (the one already holding rules in this
    /// network namespace; else nft if it works; else legacy).
    #[arg(long, value_enum, default_value_t = IptablesBackend::Auto)]
    pub iptables_backend: IptablesBackend,
    /// Print the rules instead of installing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove Weir's rules instead of installing them.
    #[arg(long)]
    pub cleanup: bool,
}

/// Which iptables `weir capture` drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IptablesBackend {
    /// Whichever the namespace already uses; nft when neither has rules and it works.
    Auto,
    /// `iptables-nft`.
    Nft,
    /// `iptables-legacy`.
    Legacy,
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use weir_store::Kind;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: XdsServerArgs,
    }

    fn scopes(flags: &[&str]) -> anyhow::Result<weir_runtime::sources::kube::Scopes> {
        Cli::try_parse_from(std::iter::once("weir").chain(flags.iter().copied()))
            .unwrap()
            .args
            .scopes()
    }

    #[test]
    fn secret_namespaces_scope_the_secret_watchers() {
        assert_eq!(scopes(&[]).unwrap().namespaces(Kind::Secret), None);
        let none = scopes(&["--secret-namespaces="]).unwrap();
        assert_eq!(none.namespaces(Kind::Secret).map(|n| n.len()), Some(0));
        let two = scopes(&["--secret-namespaces=shop, edge-certs"]).unwrap();
        assert_eq!(
            two.namespaces(Kind::Secret)
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            ["edge-certs", "shop"]
        );
        let bad = scopes(&["--secret-namespaces=Shop"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("--secret-namespaces: \"Shop\""), "{bad}");
    }
}
