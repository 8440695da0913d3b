//! The mesh-TLS controller in local mode: decides each MeshPolicy's effective mode
//! ([`weir_controllers::mesh_tls::evaluate`]) from what the connected sidecars report, and
//! records it in the policy's status in the stores, where the translator reads it.
//!
//! What it observes, per policy, over the pods the policy governs:
//! - ready endpoints (EndpointSlices) and those whose pod has a connected sidecar;
//! - plaintext connections the sidecars' inbound listeners accepted and, after a promotion,
//!   inbound requests and errors (5xx and failed TLS handshakes), read from each sidecar's
//!   Envoy admin ([`InboundCounters`], on loopback: in local mode every proxy runs on this
//!   host). A counter that went down is a restarted Envoy, counted from zero.
//!
//! It remembers the phase, the promotion time and the start of the quiet window in
//! memory, and shows them in the status (`/debug/mesh`). Annotate a MeshPolicy
//! `weir.io/force-transition: "true"` to allow a direct Disable ↔ Strict move.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_controllers::mesh_tls::{Observation, Previous, evaluate};
use weir_crds::mesh_policy::{MeshPhase, MeshPolicy, MeshPolicyStatus};
use weir_store::{ClusterState, Object, ObjectKey, StateWriter};
use weir_xds::{
    envoy::PLAINTEXT_STAT_SUFFIX,
    registry::ProxyRegistry,
    translate::{ProxyId, Role, mesh::governing_policy},
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
        let mut c = InboundCounters::default();
        for line in stats.lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            let inbound = name.starts_with("http.inbound.")
                || name.starts_with(&format!("http.inbound{PLAINTEXT_STAT_SUFFIX}."));
            if name == format!("http.inbound{PLAINTEXT_STAT_SUFFIX}.downstream_cx_total") {
                c.plaintext_connections += value;
            }
            if inbound && name.ends_with(".downstream_rq_completed") {
                c.requests += value;
            }
            if inbound && name.ends_with(".downstream_rq_5xx") {
                c.errors_5xx += value;
            }
            if name == "listener.inbound.ssl.connection_error" {
                c.tls_errors += value;
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

/// A connected sidecar: its pod and where its admin listens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sidecar {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Envoy's admin port.
    pub admin_port: Option<u16>,
}

/// Whether `policy` is the one that governs a pod with `labels` in `namespace`.
fn governed_by(
    state: &ClusterState,
    policy: &ObjectKey,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    governing_policy(state, namespace, labels).is_some_and(|p| {
        p.metadata.namespace == policy.namespace && p.metadata.name.as_deref() == Some(&policy.name)
    })
}

/// Ready endpoints (by pod) a policy governs, and the connected sidecars among them.
/// Pure, for tests.
pub fn coverage(
    state: &ClusterState,
    policy: &ObjectKey,
    sidecars: &[Sidecar],
) -> (BTreeSet<(String, String)>, Vec<Sidecar>) {
    let mut ready = BTreeSet::new();
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
            if !governed_by(state, policy, ns, labels) {
                continue;
            }
            // An endpoint without a pod reference counts by address: it has no sidecar.
            let id = pod_name.map_or_else(
                || format!("address/{}", endpoint.addresses.join(",")),
                String::from,
            );
            ready.insert((ns.to_string(), id));
        }
    }
    let covering = sidecars
        .iter()
        .filter(|s| {
            let labels = state
                .pods
                .get_namespaced(&s.namespace, &s.pod)
                .and_then(|p| p.metadata.labels.as_ref());
            governed_by(state, policy, &s.namespace, labels)
        })
        .cloned()
        .collect();
    (ready, covering)
}

/// What the controller remembers of one policy.
#[derive(Debug, Default)]
struct Memory {
    previous: Previous,
    /// The spec last seen and a local generation counter (files carry no generation).
    spec: Option<weir_crds::mesh_policy::MeshPolicySpec>,
    generation: i64,
    /// Counters per sidecar at the last pass.
    counters: HashMap<(String, String), InboundCounters>,
    /// Plaintext connections seen, with when.
    plaintext: Vec<(Timestamp, u64)>,
    /// Inbound requests and errors since the promotion (while Promoted).
    since_promotion: (u64, u64),
}

/// Reads a sidecar's inbound counters from its Envoy admin on loopback; `None` if it
/// cannot be reached. A statistic that does not exist (no plaintext chain in Strict or
/// Disable) counts 0.
async fn read_counters(admin_port: u16) -> Option<InboundCounters> {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let response =
        tokio::task::spawn_blocking(move || crate::admin::http_get(admin, "/stats?filter=inbound"))
            .await
            .ok()?;
    match response {
        Ok((200, body)) => Some(InboundCounters::parse(&body)),
        _ => None,
    }
}

/// Runs until `shutdown`, every `interval`.
pub async fn run(
    writer: Arc<StateWriter>,
    proxies: Arc<ProxyRegistry>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut memory: HashMap<ObjectKey, Memory> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let state = writer.current();
        let sidecars: Vec<Sidecar> = proxies
            .list()
            .into_iter()
            .filter_map(|p| {
                let id: ProxyId = p.node_id.parse().ok()?;
                (id.role == Role::Sidecar).then_some(Sidecar {
                    namespace: id.namespace,
                    pod: id.name,
                    admin_port: p.admin_port,
                })
            })
            .collect();
        memory.retain(|key, _| state.mesh_policies.get(key).is_some());
        let now = Timestamp::now();
        for (key, policy) in state.mesh_policies.iter() {
            let remembered = memory.entry(key.clone()).or_default();
            let status = pass(&state, key, policy, &sidecars, remembered, now).await;
            if policy.status.as_ref() != Some(&status) {
                let mut updated = (**policy).clone();
                updated.status = Some(status);
                writer.apply(Object::MeshPolicy(Arc::new(updated)));
            }
        }
    }
}

/// One policy, one pass: observe, decide, and return the status to show.
async fn pass(
    state: &ClusterState,
    key: &ObjectKey,
    policy: &MeshPolicy,
    sidecars: &[Sidecar],
    memory: &mut Memory,
    now: Timestamp,
) -> MeshPolicyStatus {
    if memory.spec.as_ref() != Some(&policy.spec) {
        memory.spec = Some(policy.spec.clone());
        memory.generation += 1;
    }
    // A status written before (by an earlier pass) is where a fresh memory starts.
    if memory.previous.effective_mode.is_none()
        && let Some(status) = &policy.status
    {
        memory.previous.effective_mode = status.effective_mode;
        memory.previous.phase = status.phase;
        memory.previous.promoted_at = status.promoted_at.as_ref().map(|t| t.0);
    }
    let generation = policy.metadata.generation.unwrap_or(memory.generation);
    let (ready, covering) = coverage(state, key, sidecars);
    let with_sidecar = ready
        .iter()
        .filter(|(ns, pod)| covering.iter().any(|s| &s.namespace == ns && &s.pod == pod))
        .count();

    // What each sidecar counted since the last pass (the first reading is the baseline).
    let mut readable = true;
    let mut delta = InboundCounters::default();
    for sidecar in &covering {
        let Some(port) = sidecar.admin_port else {
            readable = false;
            continue;
        };
        let Some(now_counters) = read_counters(port).await else {
            readable = false;
            continue;
        };
        let slot = (sidecar.namespace.clone(), sidecar.pod.clone());
        if let Some(before) = memory.counters.insert(slot, now_counters) {
            let d = now_counters.since(&before);
            delta.plaintext_connections += d.plaintext_connections;
            delta.requests += d.requests;
            delta.errors_5xx += d.errors_5xx;
            delta.tls_errors += d.tls_errors;
        }
    }
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
    let window_start =
        now - k8s_openapi::jiff::SignedDuration::try_from(window).unwrap_or_default();
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
    if let Some((kind, reason, message)) = &decision.event {
        if *kind == "Warning" {
            warn!(policy = %key, reason, "{message}");
        } else {
            info!(policy = %key, reason, "{message}");
        }
    }
    if memory.previous.effective_mode != Some(decision.effective_mode) {
        info!(policy = %key, mode = ?decision.effective_mode, phase = ?decision.phase, "mesh TLS mode in force");
    }
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
    MeshPolicyStatus {
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
            admin_port: Some(15000),
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
}
