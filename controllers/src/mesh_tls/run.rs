//! The mesh-TLS controller's loop: every interval, while this replica leads, read the
//! sidecars, run the pure pass, write the statuses that changed and record events. Where
//! sidecars are read ([`SidecarSource`]) and where statuses go ([`StatusSink`]) are the
//! adapters': [`super::local`], [`super::prometheus`], [`super::k8s`].

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weir_runtime::{cluster::listed, leader::Leadership};
use weir_store::{ClusterState, Kind, ObjectKey};

use super::{MeshTlsController, Outcome, SidecarSource, StatusSink};
use crate::pod_autoscaler::controller::Event;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    namespace: String,
    policy: String,
    mode: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The controller's metrics, per MeshPolicy: coverage, plaintext, mode and phase.
#[derive(Clone, Debug, Default)]
pub struct MeshMetrics {
    ready: Family<PolicyLabels, Gauge>,
    with_sidecar: Family<PolicyLabels, Gauge>,
    plaintext: Family<PolicyLabels, Gauge>,
    mode: Family<ModeLabels, Gauge>,
    events: Family<ReasonLabels, Counter>,
    read_errors: Counter,
    write_errors: Counter,
    /// The mode series set last, per policy (removed when the mode or phase changes).
    modes: HashMap<ObjectKey, ModeLabels>,
}

impl MeshMetrics {
    /// Registers `weir_mesh_tls_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = MeshMetrics::default();
        registry.register(
            "weir_mesh_tls_ready_endpoints",
            "Ready endpoints a MeshPolicy governs",
            m.ready.clone(),
        );
        registry.register(
            "weir_mesh_tls_endpoints_with_sidecar",
            "Of a MeshPolicy's ready endpoints, those whose pod has a connected sidecar",
            m.with_sidecar.clone(),
        );
        registry.register(
            "weir_mesh_tls_plaintext_connections",
            "Plaintext connections a MeshPolicy's sidecars accepted in its plaintext window",
            m.plaintext.clone(),
        );
        registry.register(
            "weir_mesh_tls_mode",
            "1 for the mode in force and the phase of each MeshPolicy",
            m.mode.clone(),
        );
        registry.register(
            "weir_mesh_tls_events",
            "Mesh-TLS decisions worth an event (Promoted, RolledBack, TransitionRefused, ...)",
            m.events.clone(),
        );
        registry.register(
            "weir_mesh_tls_read_errors",
            "Passes skipped because the sidecars' statistics could not be read",
            m.read_errors.clone(),
        );
        registry.register(
            "weir_mesh_tls_status_write_errors",
            "MeshPolicy status writes that failed",
            m.write_errors.clone(),
        );
        m
    }

    fn observe(&mut self, outcome: &Outcome) {
        let labels = policy_labels(&outcome.key);
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.ready
            .get_or_create(&labels)
            .set(gauge(outcome.ready_endpoints));
        self.with_sidecar
            .get_or_create(&labels)
            .set(gauge(outcome.with_sidecar));
        match outcome.status.plaintext_connections {
            Some(n) => {
                self.plaintext.get_or_create(&labels).set(n);
            }
            None => {
                self.plaintext.remove(&labels);
            }
        }
        if let Some(before) = self.modes.remove(&outcome.key) {
            self.mode.remove(&before);
        }
        if let (Some(mode), Some(phase)) = (outcome.status.effective_mode, outcome.status.phase) {
            let current = ModeLabels {
                namespace: labels.namespace,
                policy: labels.policy,
                mode: format!("{mode:?}"),
                phase: format!("{phase:?}"),
            };
            self.mode.get_or_create(&current).set(1);
            self.modes.insert(outcome.key.clone(), current);
        }
    }

    /// Drops the series of policies no longer in `state` (every policy observed has a
    /// mode series, so `modes` knows them all).
    fn forget_deleted(&mut self, state: &ClusterState) {
        let gone: Vec<ObjectKey> = self
            .modes
            .keys()
            .filter(|key| state.mesh_policies.get(key).is_none())
            .cloned()
            .collect();
        for key in gone {
            let labels = policy_labels(&key);
            self.ready.remove(&labels);
            self.with_sidecar.remove(&labels);
            self.plaintext.remove(&labels);
            if let Some(before) = self.modes.remove(&key) {
                self.mode.remove(&before);
            }
        }
    }
}

fn policy_labels(key: &ObjectKey) -> PolicyLabels {
    PolicyLabels {
        namespace: key.namespace.clone().unwrap_or_default(),
        policy: key.name.clone(),
    }
}

/// The loop's wiring, besides where sidecars are read.
#[derive(Debug)]
pub struct MeshLoop<K> {
    /// Where statuses go.
    pub sink: K,
    /// The stores.
    pub state: watch::Receiver<ClusterState>,
    /// Whether this replica leads (always in local mode).
    pub leading: Leadership,
    /// Time between passes.
    pub interval: Duration,
    /// Metrics.
    pub metrics: MeshMetrics,
}

/// Runs until `shutdown`: a pass every interval while leading, sidecars read from
/// `source`.
pub async fn run<S: SidecarSource, K: StatusSink>(
    source: S,
    wiring: MeshLoop<K>,
    shutdown: CancellationToken,
) {
    let MeshLoop {
        sink,
        state,
        leading,
        interval,
        mut metrics,
    } = wiring;
    let mut controller = MeshTlsController::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !leading.is_leading() {
            controller.forget();
            continue;
        }
        let snapshot = state.borrow().clone();
        metrics.forget_deleted(&snapshot);
        if snapshot.mesh_policies.is_empty() {
            controller.forget();
            continue;
        }
        let readings = match source.read().await {
            Ok(readings) => {
                if last_error.take().is_some() {
                    info!("sidecar statistics readable again");
                }
                readings
            }
            Err(e) => {
                metrics.read_errors.inc();
                if last_error.as_deref() != Some(&e) {
                    warn!(error = %e, "cannot read the sidecars' statistics; MeshPolicies keep their mode until they can be read");
                }
                last_error = Some(e);
                continue;
            }
        };
        for outcome in controller.pass(&snapshot, &readings, Timestamp::now()) {
            if shutdown.is_cancelled() {
                return;
            }
            // Abandoned at the end of the term: the next leader decides again.
            if leading
                .while_leading(apply(&sink, &mut metrics, &outcome))
                .await
                .is_none()
            {
                controller.forget();
                break;
            }
        }
    }
}

/// Logs, counts, writes and records one outcome.
async fn apply<K: StatusSink>(sink: &K, metrics: &mut MeshMetrics, outcome: &Outcome) {
    let key = &outcome.key;
    metrics.observe(outcome);
    if let Some((type_, reason, message)) = &outcome.event {
        if *type_ == "Warning" {
            warn!(policy = %key, reason, "{message}");
        } else {
            info!(policy = %key, reason, "{message}");
        }
        metrics
            .events
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        let event = Event {
            type_,
            reason,
            message: message.clone(),
        };
        if let Err(e) = sink.event(&outcome.policy, &event).await {
            warn!(policy = %key, error = %e, "cannot record the event");
        }
    }
    if outcome.previous_mode != outcome.status.effective_mode {
        info!(policy = %key, mode = ?outcome.status.effective_mode, phase = ?outcome.status.phase, "mesh TLS mode in force");
    }
    if outcome.changed {
        match sink.write(&outcome.policy, &outcome.status).await {
            Ok(()) => debug!(policy = %key, "status written"),
            Err(e) => {
                metrics.write_errors.inc();
                warn!(policy = %key, error = %e, "cannot write the MeshPolicy status; retrying next pass");
            }
        }
    }
}

/// The mesh-TLS controller: once MeshPolicies, Pods and EndpointSlices are listed
/// (coverage on a partial picture would be wrong), a pass every interval while leading.
pub async fn run_in_cluster(
    source: super::prometheus::PrometheusSidecars,
    mesh: MeshLoop<super::k8s::KubeMeshApi>,
    mut synced: watch::Receiver<BTreeSet<Kind>>,
    shutdown: CancellationToken,
) {
    let needed = [Kind::MeshPolicy, Kind::Pod, Kind::EndpointSlice];
    if listed(&mut synced, &needed, &shutdown).await {
        info!(interval = ?mesh.interval, "mesh-TLS controller running, sidecars read from Prometheus");
        run(source, mesh, shutdown).await;
    }
}
