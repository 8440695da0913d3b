//! Where the pod autoscaler's metrics come from, behind one trait: a sync asks the source
//! once for everything every policy needs ([`MetricSource::fetch`]), then each policy reads
//! its own values from that shared batch ([`MetricSource::readings`]).
//!
//! Implementations: Prometheus directly ([`super::prometheus::PrometheusSource`]), and the
//! Kubernetes metrics APIs (`metrics.k8s.io`, `custom.metrics.k8s.io`,
//! `external.metrics.k8s.io`, for clusters that run another adapter) in the `weir` binary.

use std::future::Future;

use k8s_openapi::jiff::Timestamp;
use weir_crds::scaling_policy::{MetricSpec, ScaleTargetRef, ScalingPolicySpec};

use super::{MetricReading, Pod};

/// A source of metric readings, batched per sync.
pub trait MetricSource: Sync {
    /// What one fetch returns, shared by every policy of the sync.
    type Batch: Send + Sync;

    /// Fetches what the `(namespace, spec)` policies need, evaluated at `at`.
    fn fetch(
        &self,
        policies: &[(&str, &ScalingPolicySpec)],
        at: Timestamp,
    ) -> impl Future<Output = Self::Batch> + Send;

    /// One reading per metric of a policy in `namespace`, for its `pods`.
    fn readings(
        &self,
        batch: &Self::Batch,
        namespace: &str,
        metrics: &[MetricSpec],
        pods: &[Pod],
    ) -> Vec<MetricReading>;

    /// Requests issued so far (PromQL queries, API calls).
    fn requests_issued(&self) -> u64;

    /// The demand history of one metric of a policy in `namespace` scaling `target`
    /// (whose pods are now `pods`): (seconds, demand) points over `range`, oldest first,
    /// for the forecast to start from. Sources that keep no history say so (the default);
    /// the forecast then learns from syncs alone.
    fn demand_history(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
        metric: &MetricSpec,
        pods: &[Pod],
        range: HistoryRange,
    ) -> impl Future<Output = Result<Vec<(i64, f64)>, NoHistory>> + Send {
        let _ = (namespace, target, metric, pods, range);
        async {
            Err(NoHistory::Unsupported(
                "this metric source keeps no history".into(),
            ))
        }
    }
}

/// Why a metric's history was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoHistory {
    /// The source does not keep it for such a metric (expected; the forecast learns from
    /// syncs).
    Unsupported(String),
    /// Reading it failed.
    Failed(String),
}

impl std::fmt::Display for NoHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoHistory::Unsupported(reason) | NoHistory::Failed(reason) => f.write_str(reason),
        }
    }
}

/// The span a forecast's history is read over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryRange {
    /// The oldest point.
    pub start: Timestamp,
    /// The newest point.
    pub end: Timestamp,
    /// Seconds between points (the forecast's bucket).
    pub step_seconds: i64,
}
