//! The mesh-TLS controller in local mode: decides each MeshPolicy's effective mode
//! ([`weir_controllers::mesh_tls::evaluate`]) from what the connected sidecars report, and
//! records it in the policy's status in the stores, where the translator reads it.
//!
//! What it observes, per policy, over the pods the policy governs:
//! - ready endpoints (EndpointSlices) and those whose pod has a connected sidecar;
//! - plaintext connections the sidecars' inbound listeners accepted, read from each
//!   sidecar's Envoy admin (`http.inbound_plaintext.downstream_cx_total`, on loopback: in
//!   local mode every proxy runs on this host). A counter that went down is a restarted
//!   Envoy, counted from zero.
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_controllers::mesh_tls::{Observation, Previous, evaluate};
use weir_crds::mesh_policy::{MeshPolicy, MeshPolicyStatus};
use weir_store::{ClusterState, Object, ObjectKey, StateWriter};
use weir_xds::{
    envoy::PLAINTEXT_STAT_SUFFIX,
    registry::ProxyRegistry,
    translate::{ProxyId, Role, mesh::governing_policy},
};

/// The annotation that allows a direct Disable ↔ Strict move.
pub const FORCE_ANNOTATION: &str = "weir.io/force-transition";

/// The statistic counting plaintext connections on a Permissive inbound listener.
fn plaintext_stat() -> String {
    format!("http.inbound{PLAINTEXT_STAT_SUFFIX}.downstream_cx_total")
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
    /// Plaintext counter per sidecar at the last pass.
    counters: HashMap<(String, String), u64>,
    /// Plaintext connections seen, with when.
    plaintext: Vec<(Timestamp, u64)>,
}

/// Reads one counter from an Envoy admin on loopback; `None` if it cannot be reached.
/// A listener without the statistic (Strict, Disable) has accepted no plaintext: 0.
async fn read_counter(admin_port: u16, stat: &str) -> Option<u64> {
    let request = format!(
        "GET /stats?filter=^{}$ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        stat.replace('.', "\\.")
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", admin_port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()?
        .ok()?;
    if !body.starts_with("HTTP/1.") || !body.contains(" 200 ") {
        return None;
    }
    let value = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{stat}: "))?.trim().parse().ok());
    Some(value.unwrap_or(0))
}

fn time(t: Timestamp) -> Time {
    Time(t)
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

    // Plaintext connections since the last pass, per sidecar.
    let stat = plaintext_stat();
    let mut readable = true;
    for sidecar in &covering {
        let Some(port) = sidecar.admin_port else {
            readable = false;
            continue;
        };
        let Some(value) = read_counter(port, &stat).await else {
            readable = false;
            continue;
        };
        let slot = (sidecar.namespace.clone(), sidecar.pod.clone());
        let before = memory.counters.insert(slot, value);
        let new = match before {
            Some(b) if value >= b => value - b,
            Some(_) => value, // Envoy restarted
            None => 0,        // the first reading is the baseline
        };
        if new > 0 {
            memory.plaintext.push((now, new));
        }
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
        // Inbound error rates are not read in local mode.
        inbound_requests: 0,
        inbound_errors: 0,
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
        .map_or_else(|| time(now), |c| c.last_transition_time.clone());
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
        promoted_at: decision.promoted_at.map(time),
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
