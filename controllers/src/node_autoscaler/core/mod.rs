//! The node autoscaler's decision core: a cluster snapshot and settings → a [`Plan`] of
//! scale-ups and scale-downs with the reason for every pod and node. Pure: no clients, no
//! clock (`now` is an input).
//!
//! It follows cluster-autoscaler (`core/`, `estimator/`, `expander/`, `simulator/`):
//! - [`scale_up`]: pending pods that fit existing or upcoming nodes trigger nothing; the
//!   rest are simulated on each NodePool's template node (with its DaemonSet pods) under
//!   the scheduler's [`predicates`], estimated with first-fit decreasing, capped by the
//!   pool's max and the cluster limits, and chosen by the expander chain.
//! - [`scale_down`]: nodes at or under the utilization threshold whose pods drain (CA's
//!   reasons, in CA's order) and fit elsewhere are unneeded; they go after the unneeded
//!   time, empty ones first and in bulk, never below a pool's minimum.
//!
//! Weir plans several pools in one pass when pending pods need different pools (one round
//! per pool, recorded in the plan), where CA grows one pool per loop.

pub mod controller;
pub mod plan;
pub mod predicates;
pub mod scale_down;
pub mod scale_up;
pub mod settings;
pub mod snapshot;
pub mod snapshot_file;

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub use plan::Plan;
pub use settings::Settings;
pub use snapshot::{Objects, Snapshot};
pub use snapshot_file::SnapshotFile;

/// Plans one pass of the node autoscaler.
pub fn plan(snapshot: &Snapshot, settings: &Settings, now: Timestamp) -> Plan {
    let (mut states, timed_out) = scale_up::pool_states(snapshot, settings, now);
    let mut totals = scale_up::Totals::default();
    for node in &snapshot.nodes {
        totals.nodes += 1;
        totals.cpu += node.allocatable.cpu;
        totals.memory += node.allocatable.memory;
    }
    for (pool, state) in snapshot.pools.iter().zip(&states) {
        totals.nodes += state.upcoming;
        totals.cpu += pool.allocatable.cpu * state.upcoming;
        totals.memory += pool.allocatable.memory * state.upcoming;
    }
    let scale_up = scale_up::plan(snapshot, settings, now, &mut states, &mut totals);
    let scale_down = scale_down::plan(
        snapshot,
        settings,
        now,
        &states,
        &totals,
        !scale_up.scale_ups.is_empty(),
    );
    Plan {
        now: now.to_string(),
        scale_up,
        scale_down,
        provisioning_timed_out: timed_out
            .into_iter()
            .map(|(pool, missing)| plan::TimedOut {
                pool: snapshot.pools[pool].name.clone(),
                missing,
                since: snapshot.pools[pool]
                    .last_scale_up
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        warnings: snapshot.warnings.clone(),
    }
}

/// The backoff after a failed provisioning: `--initial-node-group-backoff-duration`,
/// doubling on each failure up to `--max-node-group-backoff-duration`, starting over when
/// the previous failure is older than `--node-group-backoff-reset-timeout`.
/// `previous` is the last failure's time and the backoff it got.
pub fn next_backoff(
    previous: Option<(Timestamp, Duration)>,
    settings: &Settings,
    now: Timestamp,
) -> Duration {
    let reset = SignedDuration::try_from(settings.node_group_backoff_reset_timeout)
        .unwrap_or(SignedDuration::MAX);
    match previous {
        Some((at, last)) if now.duration_since(at) < reset => last.saturating_mul(2).clamp(
            settings.initial_node_group_backoff_duration,
            settings.max_node_group_backoff_duration,
        ),
        _ => settings.initial_node_group_backoff_duration,
    }
}
