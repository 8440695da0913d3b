//! Flags every long-running command shares: the admin endpoint, leader election and
//! logging. The `weir` binary flattens them into its commands; names and `WEIR_*`
//! variables are part of the command-line contract (ARCHITECTURE.md).

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// The admin endpoint every long-running mode serves.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, /debug/*).
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "127.0.0.1:18090")]
    pub admin_addr: SocketAddr,
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
    /// How long the Lease holds without renewal, in seconds (client-go's default: 15).
    #[arg(long, env = "WEIR_LEADER_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub leader_lease_seconds: u64,
    /// How long the leader keeps trying to renew before it stops acting, in seconds.
    /// Must be shorter than the lease, so the leader has stopped writing before another
    /// replica may take over. Default: two thirds of the lease (client-go's 10 for 15).
    #[arg(long, env = "WEIR_LEADER_RENEW_DEADLINE_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_renew_deadline_seconds: Option<u64>,
    /// Seconds between attempts to acquire or renew the Lease; shorter than the renew
    /// deadline. Default: a fifth of the renew deadline, at least 1 (client-go's 2 for 10).
    #[arg(long, env = "WEIR_LEADER_RETRY_PERIOD_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_retry_period_seconds: Option<u64>,
}

impl LeaderArgs {
    /// The three timings, checked against each other as client-go checks them: the
    /// lease outlasts the renew deadline, which outlasts the retry period.
    pub fn timings(&self) -> Result<(Duration, Duration, Duration), String> {
        let lease = Duration::from_secs(self.leader_lease_seconds);
        let deadline = self
            .leader_renew_deadline_seconds
            .map_or(lease * 2 / 3, Duration::from_secs);
        let retry = self
            .leader_retry_period_seconds
            .map_or(deadline / 5, Duration::from_secs);
        if deadline >= lease {
            return Err(format!(
                "--leader-renew-deadline-seconds ({}) must be less than --leader-lease-seconds ({})",
                deadline.as_secs_f64(),
                lease.as_secs()
            ));
        }
        if retry >= deadline {
            return Err(format!(
                "--leader-retry-period-seconds ({}) must be less than the renew deadline ({}s)",
                retry.as_secs_f64(),
                deadline.as_secs_f64()
            ));
        }
        Ok((lease, deadline, retry))
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        leader: LeaderArgs,
    }

    fn timings(args: &[&str]) -> Result<(u128, u128, u128), String> {
        let flags = Flags::try_parse_from([&["weir"], args].concat()).map_err(|e| e.to_string())?;
        let (lease, deadline, retry) = flags.leader.timings()?;
        Ok((lease.as_millis(), deadline.as_millis(), retry.as_millis()))
    }

    #[test]
    fn timings_default_to_client_go_and_scale_with_the_lease() {
        assert_eq!(timings(&[]), Ok((15_000, 10_000, 2_000)));
        // A shorter lease alone still yields a deadline inside it.
        assert_eq!(
            timings(&["--leader-lease-seconds", "3"]),
            Ok((3_000, 2_000, 400))
        );
        let late = timings(&["--leader-renew-deadline-seconds", "15"]).unwrap_err();
        assert!(
            late.contains("must be less than --leader-lease-seconds (15)"),
            "{late}"
        );
        let slow = timings(&["--leader-retry-period-seconds", "10"]).unwrap_err();
        assert!(
            slow.contains("must be less than the renew deadline"),
            "{slow}"
        );
    }
}
