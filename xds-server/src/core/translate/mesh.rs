//! MeshPolicies → the mTLS mode of a workload, and whether an endpoint is reached over
//! mTLS.
//!
//! The policy that governs a pod, most specific first:
//! 1. a MeshPolicy in the pod's namespace whose `selector` matches the pod's labels (if
//!    several do, the oldest, then the first by name);
//! 2. the namespace's MeshPolicy without a selector;
//! 3. the mesh-wide MeshPolicy without a selector in the root namespace
//!    ([`ROOT_NAMESPACE`]);
//! 4. none: Permissive.
//!
//! A policy's mode is the one the mesh-TLS controller decided (`status.effectiveMode`),
//! or its spec's before the controller has decided.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use weir_crds::mesh_policy::{Egress, MeshPolicy, MtlsMode, OutboundTrafficPolicy};
use weir_store::{ClusterState, selector_matches};

/// The namespace whose selector-less MeshPolicy applies mesh-wide.
pub const ROOT_NAMESPACE: &str = "weir-system";

/// The pod label that says the pod runs a Weir sidecar (`"true"`): callers' sidecars
/// originate mTLS to it unless its mode is Disable.
pub const SIDECAR_LABEL: &str = "weir.io/sidecar";

/// The mode a MeshPolicy puts in force now: the one the mesh-TLS controller decided
/// (`status.effectiveMode`), except that an edit tightening the mode by one step
/// (Disable → Permissive, Permissive → Strict) takes effect on the next push, before the
/// controller has seen it (`status.observedGeneration` behind `metadata.generation`). The
/// controller only ever holds back loosening moves and the direct Disable ↔ Strict jump,
/// so acting on a one-step tightening early never pushes what it would refuse.
pub fn policy_mode(policy: &MeshPolicy) -> MtlsMode {
    let status = policy.status.as_ref();
    let Some(effective) = status.and_then(|s| s.effective_mode) else {
        return policy.spec.mtls.mode;
    };
    let unseen_edit = policy.metadata.generation.is_some()
        && status.and_then(|s| s.observed_generation) != policy.metadata.generation;
    let tightening = matches!(
        (effective, policy.spec.mtls.mode),
        (MtlsMode::Disable, MtlsMode::Permissive) | (MtlsMode::Permissive, MtlsMode::Strict)
    );
    if unseen_edit && tightening {
        policy.spec.mtls.mode
    } else {
        effective
    }
}

/// Whether a captured sidecar of a pod with `labels` in `namespace` refuses unknown
/// destinations: the first of the selecting, the namespace's and the mesh-wide MeshPolicy
/// that sets `outboundTrafficPolicy` decides; AllowAny when none does.
pub fn registry_only(
    state: &ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    governing_setting(state, namespace, labels, |p| p.spec.outbound_traffic_policy)
        == Some(OutboundTrafficPolicy::RegistryOnly)
}

/// The Services a sidecar of a pod with `labels` in `namespace` is told about: the
/// `egress` of the first of the selecting, the namespace's and the mesh-wide MeshPolicy
/// that sets one; `None` (every Service) when none does.
pub fn egress<'a>(
    state: &'a ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<&'a Egress> {
    governing_setting(state, namespace, labels, |p| p.spec.egress.as_ref())
}

/// A setting of the MeshPolicies that may govern a pod, most specific first: the
/// selecting policy's, the namespace's, the mesh-wide one's.
fn governing_setting<'a, T>(
    state: &'a ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    set: impl Fn(&'a MeshPolicy) -> Option<T>,
) -> Option<T> {
    let namespace_wide = |ns: &str| {
        state
            .mesh_policies
            .in_namespace(ns)
            .find(|p| p.spec.selector.is_none())
            .and_then(|p| set(p))
    };
    governing_policy(state, namespace, labels)
        .and_then(&set)
        .or_else(|| namespace_wide(namespace))
        .or_else(|| namespace_wide(ROOT_NAMESPACE))
}

/// The MeshPolicy that governs a pod with `labels` in `namespace`, if any.
pub fn governing_policy<'a>(
    state: &'a ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<&'a MeshPolicy> {
    let selected = state
        .mesh_policies
        .in_namespace(namespace)
        .filter(|p| {
            p.spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
        })
        .min_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
    let namespace_wide = |ns: &str| {
        state
            .mesh_policies
            .in_namespace(ns)
            .find(|p| p.spec.selector.is_none())
    };
    selected
        .or_else(|| namespace_wide(namespace))
        .or_else(|| namespace_wide(ROOT_NAMESPACE))
        .map(AsRef::as_ref)
}

/// The inbound mode of a pod with `labels` in `namespace`.
pub fn workload_mode(
    state: &ClusterState,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> MtlsMode {
    governing_policy(state, namespace, labels).map_or(MtlsMode::Permissive, policy_mode)
}

/// Whether a pod runs a Weir sidecar.
pub fn runs_sidecar(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SIDECAR_LABEL))
        .is_some_and(|v| v == "true")
}

/// Whether callers' sidecars reach `pod` over mTLS: it runs a sidecar, and its mode is
/// not Disable.
pub fn reached_over_mtls(state: &ClusterState, pod: &Pod) -> bool {
    let Some(namespace) = pod.metadata.namespace.as_deref() else {
        return false;
    };
    runs_sidecar(pod)
        && workload_mode(state, namespace, pod.metadata.labels.as_ref()) != MtlsMode::Disable
}

/// The pod's ServiceAccount (`default` when unset), which names its identity.
pub fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::state;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web, weir.io/sidecar: 'true'}}\nspec: {serviceAccountName: web, containers: [{name: web, image: x}]}\n";

    fn policy(ns: &str, name: &str, mode: &str, selector: Option<&str>) -> String {
        let selector = selector
            .map(|app| format!("selector: {{matchLabels: {{app: {app}}}}}, "))
            .unwrap_or_default();
        format!(
            "---\napiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{{selector}mtls: {{mode: {mode}}}}}\n"
        )
    }

    fn mode_of_web(yaml: &str) -> MtlsMode {
        let state = state(&format!("{POD}{yaml}"));
        let pod = state.pods.get_namespaced("shop", "web-1").unwrap();
        workload_mode(&state, "shop", pod.metadata.labels.as_ref())
    }

    #[test]
    fn precedence_selector_then_namespace_then_root_then_permissive() {
        assert_eq!(mode_of_web(""), MtlsMode::Permissive);
        let root = policy(ROOT_NAMESPACE, "mesh", "Strict", None);
        assert_eq!(mode_of_web(&root), MtlsMode::Strict);
        let namespace = policy("shop", "default", "Disable", None);
        assert_eq!(
            mode_of_web(&format!("{root}{namespace}")),
            MtlsMode::Disable
        );
        let web = policy("shop", "web", "Strict", Some("web"));
        let other = policy("shop", "api", "Permissive", Some("api"));
        assert_eq!(
            mode_of_web(&format!("{root}{namespace}{web}{other}")),
            MtlsMode::Strict
        );
        // Another namespace's policies never apply.
        assert_eq!(
            mode_of_web(&policy("payments", "default", "Strict", None)),
            MtlsMode::Permissive
        );
    }

    #[test]
    fn the_controllers_decision_overrides_the_spec() {
        let yaml = format!(
            "{}status: {{effectiveMode: Permissive}}\n",
            policy("shop", "default", "Strict", None)
        );
        assert_eq!(mode_of_web(&yaml), MtlsMode::Permissive);
    }

    #[test]
    fn endpoints_take_mtls_when_they_run_a_sidecar_and_are_not_disabled() {
        let state_with = |yaml: &str| state(&format!("{POD}{yaml}"));
        let s = state_with("");
        let pod = s.pods.get_namespaced("shop", "web-1").unwrap();
        assert!(reached_over_mtls(&s, pod));
        assert_eq!(service_account(pod), "web");
        let s = state_with(&policy("shop", "default", "Disable", None));
        let pod = s.pods.get_namespaced("shop", "web-1").unwrap();
        assert!(!reached_over_mtls(&s, pod));
        let s = state(&POD.replace("weir.io/sidecar: 'true'", "tier: x"));
        let pod = s.pods.get_namespaced("shop", "web-1").unwrap();
        assert!(!reached_over_mtls(&s, pod));
    }

    const CLIENT: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client-0, namespace: shop, labels: {app: client}}\nspec: {containers: [{name: c, image: c}]}\n";

    fn client_policy(outbound: &str) -> String {
        format!(
            "{CLIENT}---\napiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: shop}}\nspec: {{mtls: {{mode: Permissive}}{outbound}}}\n"
        )
    }

    #[test]
    fn registry_only_comes_from_the_governing_policy_and_makes_the_passthrough_a_dead_end() {
        use crate::translate::{ProxyOptions, translate};
        let registry_only_of = |yaml: &str| {
            let s = state(yaml);
            let pod = s.pods.get_namespaced("shop", "client-0").unwrap();
            registry_only(&s, "shop", pod.metadata.labels.as_ref())
        };
        assert!(!registry_only_of(CLIENT));
        assert!(!registry_only_of(&client_policy("")));
        assert!(registry_only_of(&client_policy(
            ", outboundTrafficPolicy: RegistryOnly"
        )));
        // The namespace's setting applies under a selecting policy that sets none.
        let selecting = format!(
            "{}---\n{}",
            client_policy(", outboundTrafficPolicy: RegistryOnly"),
            policy("shop", "strict-client", "Strict", Some("client"))
        );
        assert!(registry_only_of(&selecting));

        let s = state(&client_policy(", outboundTrafficPolicy: RegistryOnly"));
        let proxy = "sidecar~client-0.shop".parse().unwrap();
        let passthrough = |options: &ProxyOptions| {
            translate(&s, &proxy, options)
                .clusters
                .into_iter()
                .find(|c| c.name == crate::translate::PASSTHROUGH_CLUSTER)
        };
        let captured = ProxyOptions {
            capture: true,
            ..ProxyOptions::default()
        };
        assert!(!passthrough(&captured).unwrap().original_destination);
        // Explicit-port sidecars have no passthrough at all.
        assert!(passthrough(&ProxyOptions::default()).is_none());
    }

    #[test]
    fn a_one_step_tightening_takes_effect_before_the_controller_has_seen_it() {
        let with = |spec: &str, effective: &str, generation: i64, observed: i64| {
            let yaml = format!(
                "apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: shop, generation: {generation}}}\nspec: {{mtls: {{mode: {spec}}}}}\nstatus: {{observedGeneration: {observed}, effectiveMode: {effective}}}\n"
            );
            let s = state(&yaml);
            policy_mode(s.mesh_policies.get_namespaced("shop", "default").unwrap())
        };
        // Edited, not yet seen: tightening is immediate.
        assert_eq!(with("Strict", "Permissive", 2, 1), MtlsMode::Strict);
        assert_eq!(with("Permissive", "Disable", 2, 1), MtlsMode::Permissive);
        // Loosening, and the refused jump, wait for the controller.
        assert_eq!(with("Permissive", "Strict", 2, 1), MtlsMode::Strict);
        assert_eq!(with("Strict", "Disable", 2, 1), MtlsMode::Disable);
        // Seen: the controller's decision stands (e.g. held back or rolled back).
        assert_eq!(with("Strict", "Permissive", 2, 2), MtlsMode::Permissive);
    }
}
