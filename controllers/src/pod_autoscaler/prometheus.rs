//! Prometheus as the pod autoscaler's metric source: the client that runs a sync's
//! batch of queries ([`super::core::queries`]) against the Prometheus HTTP API.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use futures::{StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use weir_crds::scaling_policy::MetricSpec;
use weir_runtime::prometheus::Prometheus;

pub use super::core::queries::*;
use super::{MetricReading, Pod, source::NoHistory};

/// The Prometheus HTTP API, counting the queries it issues.
pub struct PrometheusSource {
    url: String,
    prometheus: Prometheus,
    queries: AtomicU64,
    concurrency: usize,
}

impl PrometheusSource {
    /// A source on `url` (e.g. `http://prometheus.monitoring:9090`).
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(PrometheusSource {
            url: url.to_string(),
            prometheus: Prometheus::new(url)?,
            queries: AtomicU64::new(0),
            concurrency: 8,
        })
    }

    /// The Prometheus URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queries issued so far.
    pub fn queries_issued(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Runs every query of `batch`, evaluated at `at`, up to eight at a time.
    pub async fn fetch(&self, batch: &Batch, at: Timestamp) -> Results {
        let by_template = stream::iter(batch.queries())
            .map(|(template, query)| async move {
                let series = match query {
                    Ok(query) => self.query(&query, at).await,
                    Err(e) => Err(e),
                };
                let indexed = series.map(|s| Indexed::new(&template, s));
                (template, indexed)
            })
            .buffer_unordered(self.concurrency)
            .collect::<BTreeMap<_, _>>()
            .await;
        Results {
            by_template,
            at: Some(at),
        }
    }

    async fn query(&self, query: &str, at: Timestamp) -> Series {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let samples = self.prometheus.query_at(query, Some(at)).await?;
        Ok(samples.into_iter().map(|s| (s.labels, s.value)).collect())
    }
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("url", &self.url)
            .field("queries", &self.queries_issued())
            .finish()
    }
}

impl super::core::source::MetricSource for PrometheusSource {
    type Batch = Results;

    async fn fetch(
        &self,
        policies: &[(&str, &weir_crds::scaling_policy::ScalingPolicySpec)],
        at: Timestamp,
    ) -> Results {
        let batch = batch_for(policies.iter().copied());
        PrometheusSource::fetch(self, &batch, at).await
    }

    fn readings(
        &self,
        batch: &Results,
        namespace: &str,
        metrics: &[MetricSpec],
        pods: &[Pod],
    ) -> Vec<MetricReading> {
        readings(namespace, metrics, pods, batch)
    }

    fn requests_issued(&self) -> u64 {
        self.queries_issued()
    }

    async fn demand_history(
        &self,
        namespace: &str,
        target: &weir_crds::scaling_policy::ScaleTargetRef,
        metric: &MetricSpec,
        pods: &[Pod],
        range: super::core::source::HistoryRange,
    ) -> Result<Vec<(i64, f64)>, NoHistory> {
        let history = super::core::history::history_query(namespace, target, metric, pods)
            .map_err(NoHistory::Unsupported)?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        let series = self
            .prometheus
            .query_range(&history.query, range.start, range.end, range.step_seconds)
            .await
            .map_err(NoHistory::Failed)?;
        match series.as_slice() {
            [] => Ok(Vec::new()),
            [one] => Ok(history.demand(&one.points)),
            many => Err(NoHistory::Failed(format!(
                "the history query returned {} series; aggregate it to one (e.g. sum(...))",
                many.len()
            ))),
        }
    }
}
