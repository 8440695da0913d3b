//! A Gateway → listeners (one per port) with virtual hosts from listener hostnames ×
//! attached HTTPRoute hostnames.

use std::collections::{BTreeMap, BTreeSet};

use weir_crds::{
    gateway_api::{
        GATEWAY_GROUP, Gateway, HTTPRoute, Listener as GatewayListener, ParentReference,
    },
    traffic_policy::PolicyTargetKind,
};
use weir_store::{ClusterState, ObjectKey, selector_matches};

use super::{
    ProxyOptions, policy, reference_permitted,
    routes::{RankedRoute, in_precedence_order, translate_http_route},
};
use crate::model::{Listener, ProxyConfig, RouteTable, TlsTermination, VirtualHost};

pub(super) fn translate_gateway(
    state: &ClusterState,
    namespace: &str,
    name: &str,
    options: &ProxyOptions,
    config: &mut ProxyConfig,
) {
    let Some(gateway) = state
        .gateways
        .get_namespaced(namespace, name)
        .filter(|g| is_weirs(state, g))
    else {
        return;
    };
    let conflicts = listener_conflicts(gateway);
    let attached_gateway_policy =
        policy::policy_for(state, namespace, PolicyTargetKind::Gateway, name);
    let gateway_policy = attached_gateway_policy.map(|p| p.spec);
    let mut by_port: BTreeMap<u16, Vec<&GatewayListener>> = BTreeMap::new();
    let mut tls_by_port: BTreeMap<u16, Vec<TlsTermination>> = BTreeMap::new();
    for listener in &gateway.spec.listeners {
        if conflicts.contains_key(&listener.name) {
            // Conflicted listeners are not served (their status says why).
            continue;
        }
        match listener.protocol.as_str() {
            "HTTP" => by_port.entry(listener.port).or_default().push(listener),
            "HTTPS" => {
                // A listener whose certificate does not resolve is left out (its status
                // says why); the others on the port are still served.
                if let Ok(tls) = listener_tls(state, namespace, listener) {
                    tls_by_port.entry(listener.port).or_default().push(tls);
                    by_port.entry(listener.port).or_default().push(listener);
                }
            }
            // Other protocols (TCP, TLS passthrough, UDP) are not Weir's.
            _ => {}
        }
    }
    for (port, listeners) in by_port {
        let table = format!("gateway/{port}");
        let mut hosts: BTreeMap<String, Vec<RankedRoute>> = BTreeMap::new();
        let mut placed: BTreeSet<(String, String)> = BTreeSet::new();
        for (key, route) in state.http_routes.iter() {
            for listener in &listeners {
                if !attaches(state, gateway, listener, route) {
                    continue;
                }
                for host in hostnames(listener.hostname.as_deref(), &route.spec.hostnames) {
                    if placed.insert((host.clone(), key.to_string())) {
                        hosts
                            .entry(host)
                            .or_default()
                            .extend(translate_http_route(state, route));
                    }
                }
            }
        }
        let virtual_hosts = hosts
            .into_iter()
            .map(|(host, routes)| VirtualHost {
                name: host.clone(),
                domains: vec![host],
                routes: in_precedence_order(routes),
                local_rate_limit: None,
                global_rate_limit: attached_gateway_policy.and_then(|p| p.global_limit()),
                retry: None,
            })
            .collect();
        config.listeners.push(Listener {
            global_rate_limit: false,
            mesh_tls: None,
            capture: None,
            port_route_tables: Vec::new(),
            on_demand: false,
            name: table.clone(),
            address: "0.0.0.0".into(),
            port: port.saturating_add(options.gateway_port_offset),
            route_table: table.clone(),
            stat_prefix: format!("gateway_{port}"),
            strip_host_port: true,
            tls: tls_by_port.remove(&port).unwrap_or_default(),
            local_rate_limit: gateway_policy
                .and_then(|p| p.rate_limit.as_ref())
                .and_then(|r| r.local.as_ref())
                .map(policy::token_bucket),
        });
        config.route_tables.push(RouteTable {
            name: table,
            virtual_hosts,
            on_demand: false,
        });
    }
}

/// Whether Weir implements `gateway`: its GatewayClass exists and names Weir's controller.
/// Gateways of other classes belong to other controllers: Weir neither serves nor
/// reports them.
pub(crate) fn is_weirs(state: &ClusterState, gateway: &Gateway) -> bool {
    state
        .gateway_classes
        .get(&ObjectKey::cluster(
            gateway.spec.gateway_class_name.as_str(),
        ))
        .is_some_and(|class| class.is_weirs())
}

/// The listeners of `gateway` that conflict with an earlier one on the same port, with
/// the Gateway API's reason: `ProtocolConflict` (another protocol than the port's first
/// listener) or `HostnameConflict` (the same protocol and hostname as an earlier one).
/// The earlier listener keeps the port, so adding a listener never breaks one that works.
pub(crate) fn listener_conflicts(gateway: &Gateway) -> BTreeMap<String, (&'static str, String)> {
    let mut conflicts = BTreeMap::new();
    let mut first_by_port: BTreeMap<u16, &GatewayListener> = BTreeMap::new();
    let mut hostnames_by_port: BTreeMap<u16, BTreeMap<Option<&str>, &str>> = BTreeMap::new();
    for listener in &gateway.spec.listeners {
        let first = *first_by_port.entry(listener.port).or_insert(listener);
        if first.protocol != listener.protocol {
            conflicts.insert(
                listener.name.clone(),
                (
                    "ProtocolConflict",
                    format!(
                        "port {} is already {} (listener {}); one port serves one protocol",
                        listener.port, first.protocol, first.name
                    ),
                ),
            );
            continue;
        }
        let taken = hostnames_by_port.entry(listener.port).or_default();
        if let Some(other) = taken.get(&listener.hostname.as_deref()) {
            conflicts.insert(
                listener.name.clone(),
                (
                    "HostnameConflict",
                    format!(
                        "listener {other} already serves hostname {} on port {}",
                        listener.hostname.as_deref().unwrap_or("*"),
                        listener.port
                    ),
                ),
            );
            continue;
        }
        taken.insert(listener.hostname.as_deref(), &listener.name);
    }
    conflicts
}

/// Whether `route` attaches to `listener` of `gateway`: a parentRef names the listener
/// and the listener's `allowedRoutes` admit the route.
pub(crate) fn attaches(
    state: &ClusterState,
    gateway: &Gateway,
    listener: &GatewayListener,
    route: &HTTPRoute,
) -> bool {
    let route_ns = route.metadata.namespace.as_deref().unwrap_or("default");
    route
        .spec
        .parent_refs
        .iter()
        .any(|p| parent_names_listener(route_ns, p, gateway, listener))
        && listener_allows(state, listener, gateway, route_ns)
}

/// Whether a parentRef names `gateway` and, if it says so, this listener's name and port.
pub(crate) fn parent_names_listener(
    route_ns: &str,
    parent: &ParentReference,
    gateway: &Gateway,
    listener: &GatewayListener,
) -> bool {
    parent_names_gateway(route_ns, parent, gateway)
        && parent
            .section_name
            .as_ref()
            .is_none_or(|s| *s == listener.name)
        && parent.port.is_none_or(|port| port == listener.port)
}

/// Whether a parentRef names `gateway` at all.
pub(crate) fn parent_names_gateway(
    route_ns: &str,
    parent: &ParentReference,
    gateway: &Gateway,
) -> bool {
    parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        && parent.namespace.as_deref().unwrap_or(route_ns)
            == gateway.metadata.namespace.as_deref().unwrap_or("default")
        && Some(parent.name.as_str()) == gateway.metadata.name.as_deref()
}

/// Whether a listener's `allowedRoutes` admit HTTPRoutes from `route_ns`.
pub(crate) fn listener_allows(
    state: &ClusterState,
    listener: &GatewayListener,
    gateway: &Gateway,
    route_ns: &str,
) -> bool {
    let gateway_ns = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let allowed = listener.allowed_routes.as_ref();
    let kinds_ok = allowed.is_none_or(|a| {
        a.kinds.is_empty()
            || a.kinds.iter().any(|k| {
                k.kind == "HTTPRoute"
                    && k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
            })
    });
    let namespaces = allowed.and_then(|a| a.namespaces.as_ref());
    let namespace_ok = match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let labels = state
                .namespaces
                .get(&weir_store::ObjectKey::cluster(route_ns))
                .and_then(|n| n.metadata.labels.as_ref());
            namespaces
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|s| selector_matches(s, labels))
        }
        _ => route_ns == gateway_ns,
    };
    kinds_ok && namespace_ok
}

/// The hostnames a route serves on a listener (Gateway API hostname intersection);
/// `*` when neither constrains.
pub(crate) fn hostnames(listener: Option<&str>, route: &[String]) -> Vec<String> {
    match (listener, route.is_empty()) {
        (None, true) => vec!["*".into()],
        (Some(l), true) => vec![l.to_string()],
        (None, false) => route.to_vec(),
        (Some(l), false) => {
            let mut hosts: Vec<String> = route.iter().filter_map(|r| intersect(l, r)).collect();
            hosts.sort();
            hosts.dedup();
            hosts
        }
    }
}

/// The more specific of two hostnames if they overlap: equal names, or a wildcard
/// (`*.example.com`) and a name under it.
fn intersect(a: &str, b: &str) -> Option<String> {
    if a == b {
        return Some(a.to_string());
    }
    let covers = |wildcard: &str, name: &str| {
        wildcard
            .strip_prefix('*')
            .is_some_and(|suffix| name.ends_with(suffix) && name.len() > suffix.len())
    };
    if covers(a, b) {
        Some(b.to_string())
    } else if covers(b, a) {
        Some(a.to_string())
    } else {
        None
    }
}

/// Why an HTTPS listener's certificate cannot be used, with the Gateway API's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertificateProblem {
    /// `InvalidCertificateRef` or `RefNotPermitted`.
    pub(crate) reason: &'static str,
    /// A sentence for the condition's message.
    pub(crate) message: String,
}

impl From<String> for CertificateProblem {
    fn from(message: String) -> Self {
        CertificateProblem {
            reason: "InvalidCertificateRef",
            message,
        }
    }
}

impl From<&str> for CertificateProblem {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Why an HTTPS listener's certificate does not resolve (`InvalidCertificateRef`).
pub(crate) fn listener_tls(
    state: &ClusterState,
    namespace: &str,
    listener: &GatewayListener,
) -> Result<TlsTermination, CertificateProblem> {
    let tls = listener
        .tls
        .as_ref()
        .ok_or("an HTTPS listener needs tls.certificateRefs")?;
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        return Err(format!(
            "tls.mode {} is not supported; use Terminate",
            tls.mode.as_deref().unwrap_or("")
        )
        .into());
    }
    let reference = tls
        .certificate_refs
        .first()
        .ok_or("an HTTPS listener needs tls.certificateRefs")?;
    let secret_ns = reference.namespace.as_deref().unwrap_or(namespace);
    if !reference_permitted(
        state,
        (GATEWAY_GROUP, "Gateway", namespace),
        secret_ns,
        ("", "Secret", &reference.name),
    ) {
        return Err(CertificateProblem {
            reason: "RefNotPermitted",
            message: format!(
                "Secret {secret_ns}/{} is in another namespace and no ReferenceGrant there permits Gateways from this one",
                reference.name
            ),
        });
    }
    let secret = state
        .secrets
        .get_namespaced(secret_ns, &reference.name)
        .ok_or_else(|| format!("Secret {secret_ns}/{} does not exist", reference.name))?;
    let field = |key: &str| -> Option<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .cloned()
            })
            .filter(|v| v.contains("-----BEGIN"))
    };
    let (Some(certificate_pem), Some(private_key_pem)) = (field("tls.crt"), field("tls.key"))
    else {
        return Err(format!(
            "Secret {secret_ns}/{} has no PEM tls.crt and tls.key",
            reference.name
        )
        .into());
    };
    Ok(TlsTermination {
        server_names: listener.hostname.iter().cloned().collect(),
        secret: format!("{secret_ns}/{}", reference.name),
        certificate_pem,
        private_key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_intersect_as_the_gateway_api_says() {
        assert_eq!(hostnames(None, &[]), vec!["*"]);
        assert_eq!(
            hostnames(Some("shop.example.com"), &[]),
            vec!["shop.example.com"]
        );
        assert_eq!(
            hostnames(
                Some("*.example.com"),
                &[
                    "a.example.com".into(),
                    "b.other.com".into(),
                    "*.example.com".into()
                ]
            ),
            vec!["*.example.com", "a.example.com"]
        );
        assert_eq!(
            hostnames(Some("a.example.com"), &["*.example.com".into()]),
            vec!["a.example.com"]
        );
        assert!(hostnames(Some("a.example.com"), &["b.example.com".into()]).is_empty());
        assert_eq!(
            intersect("*.example.com", "example.com"),
            None,
            "a wildcard needs a label before the suffix"
        );
    }
}
