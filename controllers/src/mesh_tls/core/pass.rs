//! The mesh-TLS controller: decides each MeshPolicy's effective mode
//! ([`super::evaluate::evaluate`]) from what the connected sidecars report, and
//! writes it to the policy's status, where the xds-server reads it.
//!
//! What it observes, per policy, over the pods the policy governs:
//! - ready endpoints (EndpointSlices) and those whose pod has a connected sidecar;
//! - plaintext connections the sidecars' inbound listeners accepted and, after a promotion,
//!   inbound requests and errors (5xx and failed TLS handshakes) ([`InboundCounters`],
//!   cumulative per sidecar; a counter that went down is a restarted Envoy, counted from
//!   zero).
//!
//! The decision ([`MeshTlsController::pass`]) is pure. Around it (`mesh_tls::run`):
//! - where sidecars and their counters come from (`mesh_tls::local`,
//!   `mesh_tls::prometheus`): in local mode the
//!   xds-server's connected proxies and their Envoy admin on loopback; in a cluster (or
//!   `weir up --mesh-tls-source prometheus`) Prometheus scraping the sidecars;
//! - where the status goes (`mesh_tls::run::StatusSink`): the stores in local mode, the API
//!   server (status subresource and events) in a cluster, while this replica leads.
//!
//! It remembers the phase, the promotion time and the start of the quiet window in
//! memory; a new leader starts from the status. Annotate a MeshPolicy
//! `weir.io/force-transition: "true"` to allow a direct Disable ↔ Strict move.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use super::evaluate::{Observation, Previous, evaluate};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::{SignedDuration, Timestamp},
};
use weir_crds::mesh_policy::{MeshPhase, MeshPolicy, MeshPolicyStatus, MtlsMode};
use weir_store::{ClusterState, ObjectKey};
use weir_xds::{
    envoy::{INBOUND_STAT_PREFIX, PLAINTEXT_STAT_SUFFIX},
    translate::mesh::governing_policy,
};

/// The annotation that allows a direct Disable ↔ Strict move.
pub const FORCE_ANNOTATION: &str = "weir.io/force-transition";

/// What a sidecar's inbound listener has counted (Envoy counters, since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundCounters {
    /// Plaintext connections accepted (`http.inbound_plaintext.downstream_cx_total`).
    pub plaintext_connections: u64,
    /// Requests answered (`http.inbound*.downstream_rq_completed`).
    pub requests: u64,
    /// Of those, 5xx (`http.inbound*.downstream_rq_5xx`).
    pub errors_5xx: u64,
    /// Connections that failed the TLS handshake (`listener.inbound.ssl.connection_error`): after
    /// a promotion, a plaintext caller shows here.
    pub tls_errors: u64,
}

impl InboundCounters {
    /// From the admin's `/stats` text.
    pub fn parse(stats: &str) -> Self {
        let mtls = format!("http.{INBOUND_STAT_PREFIX}.");
        let plaintext = format!("http.{INBOUND_STAT_PREFIX}{PLAINTEXT_STAT_SUFFIX}.");
        let tls_errors = format!("listener.{INBOUND_STAT_PREFIX}.ssl.connection_error");
        let mut c = InboundCounters::default();
        for line in stats.lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            if name == tls_errors {
                c.tls_errors += value;
                continue;
            }
            let (stat, is_plaintext) =
                match (name.strip_prefix(&mtls), name.strip_prefix(&plaintext)) {
                    (Some(stat), _) => (stat, false),
                    (None, Some(stat)) => (stat, true),
                    (None, None) => continue,
                };
            match stat {
                "downstream_cx_total" if is_plaintext => c.plaintext_connections += value,
                "downstream_rq_completed" => c.requests += value,
                "downstream_rq_5xx" => c.errors_5xx += value,
                _ => {}
            }
        }
        c
    }

    /// What happened between `before` and `self`; a counter that went down is a
    /// restarted Envoy, counted from zero.
    pub fn since(&self, before: &InboundCounters) -> InboundCounters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        InboundCounters {
            plaintext_connections: d(self.plaintext_connections, before.plaintext_connections),
            requests: d(self.requests, before.requests),
            errors_5xx: d(self.errors_5xx, before.errors_5xx),
            tls_errors: d(self.tls_errors, before.tls_errors),
        }
    }
}

/// A connected sidecar: its pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sidecar {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
}

/// The policy that governs a pod with `labels` in `namespace`.
fn governing_key(
    state: &ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<ObjectKey> {
    governing_policy(state, namespace, labels).map(ObjectKey::of)
}

/// What one policy governs: its ready endpoints (by pod) and the connected sidecars
/// among its pods.
#[derive(Debug, Default)]
struct Scope {
    ready: BTreeSet<(String, String)>,
    covering: Vec<Sidecar>,
}

/// Every policy's scope, in one walk over the EndpointSlices and the sidecars.
fn scopes(state: &ClusterState, sidecars: &[Sidecar]) -> HashMap<ObjectKey, Scope> {
    let mut scopes: HashMap<ObjectKey, Scope> = HashMap::new();
    for (key, slice) in state.endpoint_slices.iter() {
        let Some(slice_ns) = key.namespace.as_deref() else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            if !endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true)
            {
                continue;
            }
            let target = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"));
            let ns = target
                .and_then(|r| r.namespace.as_deref())
                .unwrap_or(slice_ns);
            let pod_name = target.and_then(|r| r.name.as_deref());
            let pod = pod_name.and_then(|n| state.pods.get_namespaced(ns, n));
            let labels = pod.and_then(|p| p.metadata.labels.as_ref());
            let Some(policy) = governing_key(state, ns, labels) else {
                continue;
            };
            // An endpoint without a pod reference counts by address: it has no sidecar.
            let id = pod_name.map_or_else(
                || format!("address/{}", endpoint.addresses.join(",")),
                String::from,
            );
            scopes
                .entry(policy)
                .or_default()
                .ready
                .insert((ns.to_string(), id));
        }
    }
    for sidecar in sidecars {
        let labels = state
            .pods
            .get_namespaced(&sidecar.namespace, &sidecar.pod)
            .and_then(|p| p.metadata.labels.as_ref());
        if let Some(policy) = governing_key(state, &sidecar.namespace, labels) {
            scopes
                .entry(policy)
                .or_default()
                .covering
                .push(sidecar.clone());
        }
    }
    scopes
}

/// Ready endpoints (by pod) a policy governs, and the connected sidecars among them.
/// Pure, for tests.
pub fn coverage(
    state: &ClusterState,
    policy: &ObjectKey,
    sidecars: &[Sidecar],
) -> (BTreeSet<(String, String)>, Vec<Sidecar>) {
    scopes(state, sidecars)
        .remove(policy)
        .map(|s| (s.ready, s.covering))
        .unwrap_or_default()
}

/// What the controller remembers of one policy.
#[derive(Debug, Default)]
struct Memory {
    previous: Previous,
    /// The spec last seen and a local generation counter (files carry no generation).
    spec: Option<weir_crds::mesh_policy::MeshPolicySpec>,
    generation: i64,
    /// Counters per sidecar at the last pass.
    counters: HashMap<Sidecar, InboundCounters>,
    /// Plaintext connections seen, with when.
    plaintext: Vec<(Timestamp, u64)>,
    /// Inbound requests and errors since the promotion (while Promoted).
    since_promotion: (u64, u64),
}

/// What the controller knows of one connected sidecar at one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarReading {
    /// The sidecar.
    pub sidecar: Sidecar,
    /// Its inbound counters; `None` when they could not be read.
    pub counters: Option<InboundCounters>,
}

/// The result of one pass for one policy.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The policy.
    pub key: ObjectKey,
    /// The policy as the pass saw it.
    pub policy: Arc<MeshPolicy>,
    /// The status to show.
    pub status: MeshPolicyStatus,
    /// Whether `status` differs from the policy's (a write is due).
    pub changed: bool,
    /// The mode in force before this pass (`None` at the first).
    pub previous_mode: Option<MtlsMode>,
    /// An event worth recording: (type, reason, message).
    pub event: Option<(&'static str, &'static str, String)>,
    /// Ready endpoints the policy governs.
    pub ready_endpoints: usize,
    /// Of those, the ones with a connected sidecar.
    pub with_sidecar: usize,
}

/// The mesh-TLS controller's memory and its pass: pure (no clients, no clock), so the
/// same core runs in local mode and in a cluster, with sidecars read from Envoy admin or
/// from Prometheus.
#[derive(Debug, Default)]
pub struct MeshTlsController {
    memory: HashMap<ObjectKey, Memory>,
}

impl MeshTlsController {
    /// Forgets everything (a follower: the leader's history is the one that counts).
    pub fn forget(&mut self) {
        self.memory.clear();
    }

    /// One pass over every MeshPolicy in `state`, with what the connected sidecars
    /// reported (`readings`) at `now`.
    pub fn pass(
        &mut self,
        state: &ClusterState,
        readings: &[SidecarReading],
        now: Timestamp,
    ) -> Vec<Outcome> {
        self.memory
            .retain(|key, _| state.mesh_policies.get(key).is_some());
        let sidecars: Vec<Sidecar> = readings.iter().map(|r| r.sidecar.clone()).collect();
        let counters: HashMap<&Sidecar, Option<InboundCounters>> =
            readings.iter().map(|r| (&r.sidecar, r.counters)).collect();
        let mut scopes = scopes(state, &sidecars);
        state
            .mesh_policies
            .iter()
            .map(|(key, policy)| {
                let memory = self.memory.entry(key.clone()).or_default();
                let scope = scopes.remove(key).unwrap_or_default();
                pass(key, policy, &scope, &counters, memory, now)
            })
            .collect()
    }
}

/// One policy, one pass: observe, decide, and return the status to show.
fn pass(
    key: &ObjectKey,
    policy: &Arc<MeshPolicy>,
    scope: &Scope,
    counters: &HashMap<&Sidecar, Option<InboundCounters>>,
    memory: &mut Memory,
    now: Timestamp,
) -> Outcome {
    if memory.spec.as_ref() != Some(&policy.spec) {
        memory.spec = Some(policy.spec.clone());
        memory.generation += 1;
    }
    // A status written before (by an earlier pass, or by another replica that led
    // before) is where a fresh memory starts.
    if memory.previous.effective_mode.is_none()
        && let Some(status) = &policy.status
    {
        memory.previous.effective_mode = status.effective_mode;
        memory.previous.phase = status.phase;
        memory.previous.promoted_at = status.promoted_at.as_ref().map(|t| t.0);
    }
    let previous_mode = memory.previous.effective_mode;
    let generation = policy.metadata.generation.unwrap_or(memory.generation);
    let Scope { ready, covering } = scope;
    let with_sidecar = ready
        .iter()
        .filter(|(ns, pod)| covering.iter().any(|s| &s.namespace == ns && &s.pod == pod))
        .count();

    // What each sidecar counted since the last pass (the first reading is the baseline;
    // an unreadable sidecar keeps its baseline).
    let mut readable = true;
    let mut delta = InboundCounters::default();
    let mut baselines = HashMap::new();
    for sidecar in covering {
        let before = memory.counters.get(sidecar).copied();
        let reading = counters.get(sidecar).copied().flatten();
        match (reading, before) {
            (Some(now_counters), before) => {
                if let Some(before) = before {
                    let d = now_counters.since(&before);
                    delta.plaintext_connections += d.plaintext_connections;
                    delta.requests += d.requests;
                    delta.errors_5xx += d.errors_5xx;
                    delta.tls_errors += d.tls_errors;
                }
                baselines.insert(sidecar.clone(), now_counters);
            }
            (None, before) => {
                readable = false;
                if let Some(before) = before {
                    baselines.insert(sidecar.clone(), before);
                }
            }
        }
    }
    memory.counters = baselines;
    if delta.plaintext_connections > 0 {
        memory.plaintext.push((now, delta.plaintext_connections));
    }
    if memory.previous.phase == Some(MeshPhase::Promoted) {
        memory.since_promotion.0 += delta.requests + delta.tls_errors;
        memory.since_promotion.1 += delta.errors_5xx + delta.tls_errors;
    } else {
        memory.since_promotion = (0, 0);
    }
    let window = policy
        .spec
        .mtls
        .promotion
        .as_ref()
        .map(|p| p.plaintext_window.get())
        .unwrap_or(Duration::from_secs(600));
    let window_start = now - SignedDuration::try_from(window).unwrap_or_default();
    memory.plaintext.retain(|(t, _)| *t > window_start);
    let seen = Observation {
        ready_endpoints: u32::try_from(ready.len()).unwrap_or(u32::MAX),
        with_sidecar: u32::try_from(with_sidecar).unwrap_or(u32::MAX),
        plaintext_connections: readable.then(|| memory.plaintext.iter().map(|(_, n)| n).sum()),
        inbound_requests: memory.since_promotion.0,
        inbound_errors: memory.since_promotion.1,
    };
    let force = policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FORCE_ANNOTATION))
        .is_some_and(|v| v == "true");
    let decision = evaluate(
        &policy.spec,
        Some(generation),
        force,
        &memory.previous,
        &seen,
        now,
    );
    let (kind, status, reason, message) = &decision.condition;
    let previous_condition = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == *kind));
    let transition = previous_condition
        .filter(|c| c.status == *status && c.reason == *reason)
        .map_or_else(|| Time(now), |c| c.last_transition_time.clone());
    memory.previous = Previous {
        effective_mode: Some(decision.effective_mode),
        phase: Some(decision.phase),
        promoted_at: decision.promoted_at,
        observing_since: decision.observing_since,
        generation: Some(generation),
    };
    let status = MeshPolicyStatus {
        observed_generation: Some(generation),
        effective_mode: Some(decision.effective_mode),
        sidecar_coverage: Some(decision.sidecar_coverage),
        plaintext_connections: seen
            .plaintext_connections
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        phase: Some(decision.phase),
        promoted_at: decision.promoted_at.map(Time),
        conditions: vec![Condition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.clone(),
            last_transition_time: transition,
            observed_generation: Some(generation),
        }],
    };
    Outcome {
        key: key.clone(),
        policy: policy.clone(),
        changed: policy.status.as_ref() != Some(&status),
        status,
        previous_mode,
        event: decision.event,
        ready_endpoints: ready.len(),
        with_sidecar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(yaml: &str) -> ClusterState {
        let mut index = weir_store::DirectoryIndex::default();
        index.load_file("t.yaml", yaml);
        index.state().0
    }

    const YAML: &str = "\
apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default, namespace: payments}\nspec: {mtls: {mode: Permissive}}\n---\n\
apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: ledger, namespace: payments}\nspec: {selector: {matchLabels: {app: ledger}}, mtls: {mode: Strict}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: pay-0, namespace: payments, labels: {app: pay}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: pay-1, namespace: payments, labels: {app: pay}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: ledger-0, namespace: payments, labels: {app: ledger}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: pay, namespace: payments, labels: {kubernetes.io/service-name: pay}}\naddressType: IPv4\nports: [{port: 80}]\nendpoints:\n\
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: pay-0}}\n\
- {addresses: [10.0.0.2], targetRef: {kind: Pod, name: pay-1}}\n\
- {addresses: [10.0.0.3], targetRef: {kind: Pod, name: ledger-0}}\n\
- {addresses: [10.0.0.4], conditions: {ready: false}, targetRef: {kind: Pod, name: pay-1}}\n\
- {addresses: [10.0.0.9]}\n";

    fn sidecar(pod: &str) -> Sidecar {
        Sidecar {
            namespace: "payments".into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn inbound_counters_add_both_chains_and_survive_a_restart() {
        let stats = "http.inbound.downstream_rq_completed: 10\n\
http.inbound.downstream_rq_5xx: 1\n\
http.inbound_plaintext.downstream_rq_completed: 5\n\
http.inbound_plaintext.downstream_rq_5xx: 2\n\
http.inbound_plaintext.downstream_cx_total: 4\n\
http.inbound_rate_limit.rate_limited: 7\n\
listener.inbound.ssl.connection_error: 3\n\
listener.outbound.downstream_cx_total: 9\n";
        let c = InboundCounters::parse(stats);
        assert_eq!(
            c,
            InboundCounters {
                plaintext_connections: 4,
                requests: 15,
                errors_5xx: 3,
                tls_errors: 3
            }
        );
        let later = InboundCounters { requests: 20, ..c };
        assert_eq!(later.since(&c).requests, 5);
        let restarted = InboundCounters { requests: 2, ..c };
        assert_eq!(restarted.since(&c).requests, 2);
    }

    #[test]
    fn coverage_counts_the_ready_endpoints_a_policy_governs_and_their_sidecars() {
        let state = state(YAML);
        let sidecars = [sidecar("pay-0"), sidecar("ledger-0")];
        let default = ObjectKey::namespaced("payments", "default");
        let (ready, covering) = coverage(&state, &default, &sidecars);
        // pay-0, pay-1 and the pod-less address; ledger-0 has its own policy.
        assert_eq!(ready.len(), 3, "{ready:?}");
        assert_eq!(covering, [sidecar("pay-0")]);
        let ledger = ObjectKey::namespaced("payments", "ledger");
        let (ready, covering) = coverage(&state, &ledger, &sidecars);
        assert_eq!(ready.len(), 1);
        assert_eq!(covering, [sidecar("ledger-0")]);
    }

    const PROMOTION: &str = "\
apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default, namespace: payments}\nspec: {mtls: {mode: Permissive, promotion: {auto: true, plaintextWindow: 10s, rollbackWindow: 60s}}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: pay-0, namespace: payments, labels: {app: pay}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: pay, namespace: payments, labels: {kubernetes.io/service-name: pay}}\naddressType: IPv4\nports: [{port: 80}]\nendpoints:\n\
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: pay-0}}\n";

    fn reading(plaintext: u64, requests: u64, tls_errors: u64) -> Vec<SidecarReading> {
        vec![SidecarReading {
            sidecar: sidecar("pay-0"),
            counters: Some(InboundCounters {
                plaintext_connections: plaintext,
                requests,
                errors_5xx: 0,
                tls_errors,
            }),
        }]
    }

    /// Runs one pass at `t` seconds, keeping the status it writes (as a sink would).
    fn step(
        controller: &mut MeshTlsController,
        state: &mut ClusterState,
        readings: &[SidecarReading],
        t: i64,
    ) -> Outcome {
        let now = Timestamp::from_second(1_800_000_000 + t).unwrap();
        let outcome = controller.pass(state, readings, now).remove(0);
        let mut policy = (*outcome.policy).clone();
        policy.status = Some(outcome.status.clone());
        state.mesh_policies.insert(Arc::new(policy));
        outcome
    }

    #[test]
    fn a_pass_promotes_after_a_quiet_window_and_rolls_back_on_failed_handshakes() {
        let mut state = state(PROMOTION);
        let mut c = MeshTlsController::default();
        let first = step(&mut c, &mut state, &reading(3, 0, 0), 0);
        assert!(first.changed);
        assert_eq!(first.previous_mode, None);
        assert_eq!(first.status.sidecar_coverage.as_deref(), Some("1/1"));
        // The first reading is the baseline: a plaintext caller shows from the second.
        let o = step(&mut c, &mut state, &reading(5, 0, 0), 5);
        assert_eq!(o.status.plaintext_connections, Some(2));
        assert_eq!(o.status.phase, Some(MeshPhase::Observing));
        // Unreadable: no verdict on plaintext, and the baseline is kept.
        let blind = vec![SidecarReading {
            sidecar: sidecar("pay-0"),
            counters: None,
        }];
        let o = step(&mut c, &mut state, &blind, 8);
        assert_eq!(o.status.plaintext_connections, None);
        assert_eq!(o.status.effective_mode, Some(MtlsMode::Permissive));
        let o = step(&mut c, &mut state, &reading(6, 0, 0), 12);
        assert_eq!(
            o.status.plaintext_connections,
            Some(3),
            "5→6 counted from the kept baseline"
        );
        // Quiet for a whole window after the last plaintext connection: Strict.
        let o = step(&mut c, &mut state, &reading(6, 0, 0), 18);
        assert_eq!(o.status.effective_mode, Some(MtlsMode::Permissive));
        let o = step(&mut c, &mut state, &reading(6, 0, 0), 23);
        assert_eq!(o.status.effective_mode, Some(MtlsMode::Strict));
        assert_eq!(o.status.phase, Some(MeshPhase::Promoted));
        assert_eq!(o.previous_mode, Some(MtlsMode::Permissive));
        assert_eq!(o.event.as_ref().map(|e| e.1), Some("Promoted"));
        // Watching the error rate; then nothing new: no write due.
        let o = step(&mut c, &mut state, &reading(6, 100, 0), 25);
        assert!(o.changed);
        let o = step(&mut c, &mut state, &reading(6, 100, 0), 26);
        assert!(!o.changed, "{:?}", o.status);
        // Failed handshakes push the error rate past the threshold: back to Permissive.
        let o = step(&mut c, &mut state, &reading(6, 110, 40), 30);
        assert_eq!(o.status.effective_mode, Some(MtlsMode::Permissive));
        assert_eq!(o.status.phase, Some(MeshPhase::RolledBack));
    }

    #[test]
    fn a_new_leader_starts_from_the_written_status() {
        let mut state = state(PROMOTION);
        let mut first = MeshTlsController::default();
        for t in [0, 11, 22] {
            step(&mut first, &mut state, &reading(0, 0, 0), t);
        }
        let key = ObjectKey::namespaced("payments", "default");
        let written = state
            .mesh_policies
            .get(&key)
            .unwrap()
            .status
            .clone()
            .unwrap();
        assert_eq!(written.effective_mode, Some(MtlsMode::Strict));
        // Another replica takes over with no memory: it keeps Strict (Promoted).
        let mut second = MeshTlsController::default();
        let o = step(&mut second, &mut state, &reading(0, 0, 0), 30);
        assert_eq!(o.previous_mode, Some(MtlsMode::Strict));
        assert_eq!(o.status.effective_mode, Some(MtlsMode::Strict));
        assert_eq!(o.status.phase, Some(MeshPhase::Promoted));
    }
}
