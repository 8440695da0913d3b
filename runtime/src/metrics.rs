//! Weir's own metrics, registered in a registry passed in (no globals).

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_store::{ClusterState, Kind, Problem, Severity};

/// Labels naming a kind of object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind, e.g. `HTTPRoute`.
    pub kind: String,
}

/// Labels naming a problem severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    /// `error` (object not applied) or `warning` (applied, with a dangling reference).
    pub severity: SeverityLabel,
}

/// A severity as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SeverityLabel {
    /// The object was not applied.
    error,
    /// The object was applied with a dangling reference.
    warning,
}

/// Labels of a configuration reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `clean` (no problems) or `with_problems`.
    pub result: ReloadResult,
}

/// How a reload went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    /// Everything applied.
    clean,
    /// Something was rejected or is dangling; the last good state of it stays.
    with_problems,
}

/// Metrics of the configuration sources and the stores.
#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    /// Reloads of the configuration directory that changed something.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Unix time of the last reload that changed something.
    pub last_reload: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Current problems, by severity.
    pub problems: Family<SeverityLabels, Gauge>,
    /// Objects in the stores, by kind.
    pub objects: Family<KindLabels, Gauge>,
    /// Published state snapshots.
    pub state_generation: Gauge,
}

impl SourceMetrics {
    /// Creates the metrics and registers them under `weir_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = SourceMetrics::default();
        let weir = registry.sub_registry_with_prefix("weir");
        weir.register(
            "config_reloads",
            "Reloads of the configuration that changed something",
            metrics.reloads.clone(),
        );
        weir.register(
            "config_last_reload_timestamp_seconds",
            "Unix time of the last configuration reload that changed something",
            metrics.last_reload.clone(),
        );
        weir.register(
            "config_problems",
            "Current problems with the configuration, by severity",
            metrics.problems.clone(),
        );
        weir.register(
            "store_objects",
            "Objects in Weir's stores, by kind",
            metrics.objects.clone(),
        );
        weir.register(
            "state_generation",
            "Cluster state snapshots published since start",
            metrics.state_generation.clone(),
        );
        metrics
    }

    /// Records the objects per kind of a published state.
    pub fn observe_state(&self, state: &ClusterState) {
        for kind in Kind::ALL {
            self.objects
                .get_or_create(&KindLabels {
                    kind: kind.name().to_string(),
                })
                .set(state.count(*kind) as i64);
        }
        self.state_generation.inc();
    }

    /// Records the current problems.
    pub fn observe_problems(&self, problems: &[Problem]) {
        for (label, severity) in [
            (SeverityLabel::error, Severity::Error),
            (SeverityLabel::warning, Severity::Warning),
        ] {
            let count = problems.iter().filter(|p| p.severity == severity).count();
            self.problems
                .get_or_create(&SeverityLabels { severity: label })
                .set(count as i64);
        }
    }
}

/// Keeps the store metrics in step with the published state until `shutdown`.
pub async fn observe_state(
    mut state: watch::Receiver<ClusterState>,
    metrics: SourceMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let snapshot = state.borrow_and_update().clone();
        metrics.observe_state(&snapshot);
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = state.changed() => if changed.is_err() { break },
        }
    }
}
