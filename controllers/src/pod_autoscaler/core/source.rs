//! Where the pod autoscaler's metrics come from, behind one trait: a sync asks the source
//! once for everything every policy needs ([`MetricSource::fetch`]), then each policy reads
//! its own values from that shared batch ([`MetricSource::readings`]).
//!
//! Implementations: Prometheus directly ([`super::prometheus::PrometheusSource`]), and the
//! Kubernetes metrics APIs (`metrics.k8s.io`, `custom.metrics.k8s.io`,
//! `external.metrics.k8s.io`, for clusters that run another adapter) in the `weir` binary.

use std::future::Future;

use k8s_openapi::jiff::Timestamp;
use weir_crds::scaling_policy::{MetricSpec, ScalingPolicySpec};

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
}
