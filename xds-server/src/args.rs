//! Flags of `weir xds-server`, and of the parts `weir up` shares with it: the global
//! rate-limit service and the mesh CA. Names and `WEIR_*` variables are part of the
//! command-line contract.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};
use weir_runtime::args::{AdminArgs, LeaderArgs};

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
