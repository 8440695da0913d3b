//! References between objects that point at nothing: an HTTPRoute whose backend Service
//! does not exist, a TrafficPolicy whose target is missing, and the like.
//!
//! These do not make an object invalid (the referenced object may be created a moment
//! later, and Gateway API routes stay attached with `ResolvedRefs: False`), but an operator
//! wants to hear about them, and `weir validate` fails on them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use weir_crds::{gateway_api::HTTPBackendRef, traffic_policy::PolicyTargetKind};

use crate::{ClusterState, Kind, ObjectKey};

/// A reference that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DanglingReference {
    /// Kind of the referring object.
    pub kind: Kind,
    /// The referring object.
    pub key: ObjectKey,
    /// The field holding the reference.
    pub field: String,
    /// What is missing.
    pub message: String,
}

/// Every reference in `state` that does not resolve.
pub fn check_references(state: &ClusterState) -> Vec<DanglingReference> {
    let mut found = Vec::new();
    let mut report = |kind: Kind, key: &ObjectKey, field: String, message: String| {
        found.push(DanglingReference {
            kind,
            key: key.clone(),
            field,
            message,
        });
    };

    for (key, route) in state.http_routes.iter() {
        let ns = key.namespace.as_deref().unwrap_or("default");
        for (i, parent) in route.spec.parent_refs.iter().enumerate() {
            let parent_ns = parent.namespace.as_deref().unwrap_or(ns);
            let field = format!("spec.parentRefs[{i}]");
            if parent.is_service() {
                if state
                    .services
                    .get_namespaced(parent_ns, &parent.name)
                    .is_none()
                {
                    report(
                        Kind::HTTPRoute,
                        key,
                        field,
                        format!("parent Service {parent_ns}/{} does not exist", parent.name),
                    );
                }
            } else if parent.kind.as_deref().unwrap_or("Gateway") == "Gateway" {
                match state.gateways.get_namespaced(parent_ns, &parent.name) {
                    None => report(
                        Kind::HTTPRoute,
                        key,
                        field,
                        format!("parent Gateway {parent_ns}/{} does not exist", parent.name),
                    ),
                    Some(gateway) => {
                        if let Some(section) = &parent.section_name
                            && !gateway.spec.listeners.iter().any(|l| &l.name == section)
                        {
                            report(
                                Kind::HTTPRoute,
                                key,
                                format!("{field}.sectionName"),
                                format!(
                                    "Gateway {parent_ns}/{} has no listener named {section:?}",
                                    parent.name
                                ),
                            );
                        }
                    }
                }
            }
        }
        for (r, rule) in route.spec.rules.iter().enumerate() {
            for (b, backend) in rule.backend_refs.iter().enumerate() {
                let field = format!("spec.rules[{r}].backendRefs[{b}]");
                if let Some((field, message)) = check_backend(state, ns, backend, field) {
                    report(Kind::HTTPRoute, key, field, message);
                }
            }
        }
    }

    for (key, gateway) in state.gateways.iter() {
        let ns = key.namespace.as_deref().unwrap_or("default");
        let class = &gateway.spec.gateway_class_name;
        if state
            .gateway_classes
            .get(&ObjectKey::cluster(class.as_str()))
            .is_none()
        {
            report(
                Kind::Gateway,
                key,
                "spec.gatewayClassName".into(),
                format!(
                    "GatewayClass {class} does not exist (Weir serves Gateways whose class names controllerName {})",
                    weir_crds::gateway_api::WEIR_CONTROLLER
                ),
            );
        }
        for (l, listener) in gateway.spec.listeners.iter().enumerate() {
            for (c, cert) in listener
                .tls
                .iter()
                .flat_map(|t| t.certificate_refs.iter())
                .enumerate()
            {
                let cert_ns = cert.namespace.as_deref().unwrap_or(ns);
                if state.secrets.get_namespaced(cert_ns, &cert.name).is_none() {
                    report(
                        Kind::Gateway,
                        key,
                        format!("spec.listeners[{l}].tls.certificateRefs[{c}]"),
                        format!("Secret {cert_ns}/{} does not exist", cert.name),
                    );
                }
            }
        }
    }

    for (key, policy) in state.traffic_policies.iter() {
        let ns = key.namespace.as_deref().unwrap_or("default");
        let target = &policy.spec.target_ref;
        let (kind, exists) = match target.kind {
            PolicyTargetKind::Service => (
                Kind::Service,
                state.services.get_namespaced(ns, &target.name).is_some(),
            ),
            PolicyTargetKind::HTTPRoute => (
                Kind::HTTPRoute,
                state.http_routes.get_namespaced(ns, &target.name).is_some(),
            ),
            PolicyTargetKind::Gateway => (
                Kind::Gateway,
                state.gateways.get_namespaced(ns, &target.name).is_some(),
            ),
        };
        if !exists {
            report(
                Kind::TrafficPolicy,
                key,
                "spec.targetRef".into(),
                format!("{kind} {ns}/{} does not exist", target.name),
            );
        }
    }

    for (key, policy) in state.scaling_policies.iter() {
        let ns = key.namespace.as_deref().unwrap_or("default");
        let target = &policy.spec.target_ref;
        // Only Deployments can be checked here; other scalable kinds (StatefulSets, custom
        // resources) are not among the kinds Weir stores.
        if target.kind == "Deployment"
            && target.api_version == "apps/v1"
            && state.deployments.get_namespaced(ns, &target.name).is_none()
        {
            report(
                Kind::ScalingPolicy,
                key,
                "spec.targetRef".into(),
                format!("Deployment {ns}/{} does not exist", target.name),
            );
        }
    }

    for (key, slice) in state.endpoint_slices.iter() {
        let ns = key.namespace.as_deref().unwrap_or("default");
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        match service {
            None => report(
                Kind::EndpointSlice,
                key,
                "metadata.labels".into(),
                "has no kubernetes.io/service-name label, so it belongs to no Service".into(),
            ),
            Some(name) if state.services.get_namespaced(ns, name).is_none() => report(
                Kind::EndpointSlice,
                key,
                "metadata.labels[kubernetes.io/service-name]".into(),
                format!("Service {ns}/{name} does not exist"),
            ),
            Some(_) => {}
        }
    }

    // At most one namespace-wide MeshPolicy per namespace: two would leave the mode to
    // chance.
    let mut namespace_wide: BTreeMap<&str, &ObjectKey> = BTreeMap::new();
    for (key, policy) in state.mesh_policies.iter() {
        if policy.spec.selector.is_some() {
            continue;
        }
        let ns = key.namespace.as_deref().unwrap_or("default");
        if let Some(first) = namespace_wide.insert(ns, key) {
            namespace_wide.insert(ns, first);
            report(
                Kind::MeshPolicy,
                key,
                "spec.selector".into(),
                format!(
                    "namespace {ns} already has a namespace-wide MeshPolicy ({}); give this one a selector or remove it",
                    first.name
                ),
            );
        }
    }

    found
}

fn check_backend(
    state: &ClusterState,
    ns: &str,
    backend: &HTTPBackendRef,
    field: String,
) -> Option<(String, String)> {
    if !backend.is_service() {
        return Some((
            format!("{field}.kind"),
            format!(
                "backend kind {}/{} is not supported; use a Service",
                backend.group.as_deref().unwrap_or(""),
                backend.kind.as_deref().unwrap_or("")
            ),
        ));
    }
    let backend_ns = backend.namespace.as_deref().unwrap_or(ns);
    let Some(service) = state.services.get_namespaced(backend_ns, &backend.name) else {
        return Some((
            field,
            format!(
                "backend Service {backend_ns}/{} does not exist",
                backend.name
            ),
        ));
    };
    let Some(port) = backend.port else {
        return Some((
            format!("{field}.port"),
            "required for a Service backend".into(),
        ));
    };
    if !service_has_port(service, port) {
        return Some((
            format!("{field}.port"),
            format!("Service {backend_ns}/{} has no port {port}", backend.name),
        ));
    }
    None
}

fn service_has_port(service: &Service, port: u16) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|ports| ports.iter().any(|p| p.port == i32::from(port)))
}
