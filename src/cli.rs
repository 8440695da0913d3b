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
    Up(UpArgs),
    /// Check a directory of manifests the way `weir up` would; exit 1 if any problem.
    Validate(ValidateArgs),
    /// Print Weir's CustomResourceDefinitions as YAML.
    Crds,
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
