//! The pod autoscaler's loop in a cluster: once ScalingPolicies and Pods are listed, every
//! second it syncs the policies whose period is due ([`super::sync::sync_due`]), while this
//! replica leads, through [`KubeScaleApi`] and a [`MetricSource`]; its figures on
//! `/metrics`.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_runtime::{cluster::listed, leader::Leadership};
use weir_store::{Kind, ObjectKey, StateWriter};

use super::{
    ControllerSettings, controller::Memory, k8s::KubeScaleApi, source::MetricSource, sync::sync_due,
};

/// The pod autoscaler's own metrics.
#[derive(Debug)]
pub struct AutoscalerMetrics {
    sync_seconds: Histogram,
    policies: Gauge,
    rescales: Counter,
    errors: Counter,
    queries: Counter,
    histories_read: Counter,
    histories_unavailable: Counter,
}

impl AutoscalerMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AutoscalerMetrics {
            sync_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0]),
            policies: Gauge::default(),
            rescales: Counter::default(),
            errors: Counter::default(),
            queries: Counter::default(),
            histories_read: Counter::default(),
            histories_unavailable: Counter::default(),
        };
        registry.register(
            "weir_autoscaler_sync_seconds",
            "Wall time of one sync of every ScalingPolicy",
            metrics.sync_seconds.clone(),
        );
        registry.register(
            "weir_autoscaler_policies",
            "ScalingPolicies in the last sync",
            metrics.policies.clone(),
        );
        registry.register(
            "weir_autoscaler_rescales",
            "Targets rescaled",
            metrics.rescales.clone(),
        );
        registry.register(
            "weir_autoscaler_errors",
            "Policies whose scale could not be read or set",
            metrics.errors.clone(),
        );
        registry.register(
            "weir_autoscaler_prometheus_queries",
            "PromQL queries issued",
            metrics.queries.clone(),
        );
        registry.register(
            "weir_autoscaler_forecast_histories_read",
            "Metrics whose forecast started from Prometheus history",
            metrics.histories_read.clone(),
        );
        registry.register(
            "weir_autoscaler_forecast_histories_unavailable",
            "Metrics whose forecast started without history (none kept, or the query failed)",
            metrics.histories_unavailable.clone(),
        );
        metrics
    }
}

/// The sync loop: waits for the stores, then syncs every period while leading.
#[derive(Debug)]
pub struct SyncLoop {
    /// The Kubernetes API.
    pub api: KubeScaleApi,
    /// The default period between a policy's syncs (`--sync-period-seconds`).
    pub period: Duration,
    /// The kinds listed so far.
    pub synced: watch::Receiver<BTreeSet<Kind>>,
    /// Whether this replica leads.
    pub leading: Leadership,
    /// Set once the stores it needs are listed.
    pub ready: watch::Sender<bool>,
    /// The stores.
    pub writer: Arc<StateWriter>,
    /// Its metrics.
    pub metrics: AutoscalerMetrics,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

impl SyncLoop {
    /// Runs until shutdown, reading metrics from `source`.
    pub async fn run<S: MetricSource + Send + 'static>(mut self, source: S) {
        let needed = [Kind::ScalingPolicy, Kind::Pod];
        if !listed(&mut self.synced, &needed, &self.shutdown).await {
            return;
        }
        self.ready.send_replace(true);
        info!(period = ?self.period, "pod autoscaler running");
        let settings = ControllerSettings::default();
        let mut memory: HashMap<ObjectKey, Memory> = HashMap::new();
        // Ticks every second; each policy syncs when its period (its own
        // syncPeriodSeconds, else --sync-period-seconds) has passed.
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let period = SignedDuration::try_from(self.period).unwrap_or(SignedDuration::from_secs(15));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !self.leading.is_leading() {
                // A follower forgets: the leader's history is the one that counts.
                memory.clear();
                continue;
            }
            let state = self.writer.current();
            // A sync abandoned at the end of the term writes nothing more; its memory
            // is the next leader's to rebuild.
            let sync = sync_due(
                &self.api,
                &state,
                &source,
                &mut memory,
                &settings,
                Timestamp::now(),
                Some(period),
            );
            let Some(stats) = self.leading.while_leading(sync).await else {
                memory.clear();
                continue;
            };
            if stats.policies == 0 {
                continue;
            }
            let metrics = &self.metrics;
            metrics.sync_seconds.observe(stats.duration.as_secs_f64());
            metrics
                .policies
                .set(i64::try_from(stats.policies).unwrap_or(i64::MAX));
            metrics.rescales.inc_by(stats.rescaled as u64);
            metrics.errors.inc_by(stats.errors as u64);
            metrics.queries.inc_by(stats.queries);
            metrics.histories_read.inc_by(stats.histories_read as u64);
            metrics
                .histories_unavailable
                .inc_by(stats.histories_unavailable as u64);
            info!(policies = stats.policies, rescaled = stats.rescaled, errors = stats.errors, requests = stats.queries, took = ?stats.duration, "autoscaler sync");
        }
    }
}
