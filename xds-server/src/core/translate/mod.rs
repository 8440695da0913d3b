//! Translation: the stores → what one proxy is told ([`ProxyConfig`]). Pure: no clients,
//! no clocks, no protobuf.
//!
//! Every proxy gets one cluster per Service port (the same set for all proxies, so its
//! encoding is shared), with endpoints from the EndpointSlices. Listeners and routes depend
//! on the proxy's role:
//! - a **gateway** (`gateway~<name>.<namespace>`) gets one listener per Gateway port, with
//!   virtual hosts from listener hostnames × attached HTTPRoute hostnames;
//! - a **sidecar** (`sidecar~<pod>.<namespace>`) gets an outbound listener routing by
//!   authority to every Service port (GAMMA HTTPRoutes whose parent is a Service change
//!   how that Service is routed) and an inbound listener forwarding to its own workload.
//!
//! TrafficPolicies attach rate limits, retries and timeouts to what they target.

pub(crate) mod gateway;
pub mod mesh;
mod policy;
pub(crate) mod routes;
mod scope;
mod services;
mod sidecar;
pub mod validate;

pub use sidecar::{
    INBOUND_PASSTHROUGH_CLUSTER, InboundLimitIndex, PASSTHROUGH_CLUSTER, inbound_limit_index,
    on_demand_hosts, vhds_name,
};

use std::{fmt, str::FromStr};

use weir_crds::mesh_policy::MtlsMode;
use weir_store::ClusterState;

use crate::model::ProxyConfig;

/// The Service ports Weir routes, with their numbers: TCP ports (TCP is the default
/// protocol). A UDP or SCTP port (kube-dns serves 53/UDP beside 53/TCP) gets no cluster and
/// no virtual host: HTTP cannot reach it, and two entries for one port number would give
/// Envoy duplicate cluster names and domains, which it rejects.
pub(crate) fn tcp_ports(
    service: &k8s_openapi::api::core::v1::Service,
) -> Vec<(&k8s_openapi::api::core::v1::ServicePort, u16)> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.port).ok().map(|n| (p, n)))
        .collect()
}

/// Whether an object (`group`, `kind`, `namespace`) may refer to the object (`group`,
/// `kind`, `name`) in `to_namespace`: always within a namespace, across namespaces only
/// when a ReferenceGrant in `to_namespace` permits it.
pub(crate) fn reference_permitted(
    state: &ClusterState,
    from: (&str, &str, &str),
    to_namespace: &str,
    to: (&str, &str, &str),
) -> bool {
    from.2 == to_namespace
        || state
            .reference_grants
            .in_namespace(to_namespace)
            .any(|grant| grant.permits(from, to))
}

/// A proxy's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A sidecar next to one workload.
    Sidecar,
    /// An ingress gateway serving one Gateway.
    Gateway,
}

/// Who a proxy is, from its node id `<role>~<name>.<namespace>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId {
    /// Sidecar or gateway.
    pub role: Role,
    /// The pod (sidecar) or Gateway (gateway) name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl fmt::Display for ProxyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Sidecar => "sidecar",
            Role::Gateway => "gateway",
        };
        write!(f, "{role}~{}.{}", self.name, self.namespace)
    }
}

/// Why a node id is not one Weir serves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node id {0:?} is not <sidecar|gateway>~<name>.<namespace>")]
pub struct ProxyIdError(String);

impl FromStr for ProxyId {
    type Err = ProxyIdError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let err = || ProxyIdError(id.to_string());
        let (role, rest) = id.split_once('~').ok_or_else(err)?;
        let role = match role {
            "sidecar" => Role::Sidecar,
            "gateway" => Role::Gateway,
            _ => return Err(err()),
        };
        // Names and namespaces hold no dots in Weir's ids: namespaces are DNS labels, and
        // the name is everything before the last dot.
        let (name, namespace) = rest.rsplit_once('.').ok_or_else(err)?;
        if name.is_empty() || namespace.is_empty() {
            return Err(err());
        }
        Ok(ProxyId {
            role,
            name: name.to_string(),
            namespace: namespace.to_string(),
        })
    }
}

/// Per-proxy settings that come from the proxy's bootstrap (node metadata), so that several
/// proxies can share a host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxyOptions {
    /// Sidecar inbound listener port.
    pub inbound_port: u16,
    /// Sidecar outbound listener port.
    pub outbound_port: u16,
    /// The sidecar's workload port; otherwise the Pod's first container port.
    pub app_port: Option<u16>,
    /// Added to every Gateway listener port (0 in a cluster; tests run gateways side by side).
    pub gateway_port_offset: u16,
    /// The pod's traffic is captured (`weir capture`): the sidecar's listeners take every
    /// address and recover the original destination.
    pub capture: bool,
    /// The sidecar fetches Services' routes and clusters when its workload first calls
    /// them (delta xDS only): it is sent none up front.
    pub on_demand: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            inbound_port: 15006,
            outbound_port: 15001,
            app_port: None,
            gateway_port_offset: 0,
            capture: false,
            on_demand: false,
        }
    }
}

/// Everything `proxy` should be told, given the cluster `state`: the shared clusters and
/// endpoints plus the proxy's own view.
pub fn translate(state: &ClusterState, proxy: &ProxyId, options: &ProxyOptions) -> ProxyConfig {
    let (mut clusters, mut load_assignments) = translate_shared(state);
    let key = view_key(state, proxy, options);
    let view = translate_view(state, &key);
    if let Some(needed) = view_clusters(&key, &view) {
        clusters.retain(|c| needed.contains(c.name.as_str()));
        load_assignments.retain(|a| needed.contains(a.cluster.as_str()));
    }
    ProxyConfig {
        clusters: clusters.into_iter().chain(view.clusters).collect(),
        load_assignments,
        listeners: view.listeners,
        route_tables: view.route_tables,
    }
}

/// Which of the shared (per Service port) clusters a view needs: those its routes send to,
/// for a scoped view; `None` (all of them) otherwise.
pub fn view_clusters<'a>(
    key: &ViewKey,
    view: &'a ProxyConfig,
) -> Option<std::collections::BTreeSet<&'a str>> {
    key.scoped()
        .then(|| scope::routed_clusters(&view.route_tables))
}

/// The clusters and endpoints every proxy gets (one per Service port).
pub fn translate_shared(
    state: &ClusterState,
) -> (
    Vec<crate::model::Cluster>,
    Vec<crate::model::LoadAssignment>,
) {
    services::translate_services(state)
}

/// What decides a proxy's listeners and routes. Proxies with equal keys see the same
/// thing, so one translation serves them all: every sidecar of a namespace with the same
/// ports, every replica of a gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewKey {
    /// Sidecar or gateway.
    pub role: Role,
    /// The proxy's namespace.
    pub namespace: String,
    /// The Gateway's name (gateways only; a sidecar's pod name matters only through its
    /// port, which `options` holds).
    pub gateway: Option<String>,
    /// Ports, with the workload port resolved from the Pod.
    pub options: ProxyOptions,
    /// A sidecar's inbound mTLS mode, from the MeshPolicy that governs its Pod.
    pub mesh_tls: Option<MtlsMode>,
    /// A captured sidecar refuses destinations outside the registry.
    pub registry_only: bool,
    /// Services whose rate limits this sidecar enforces inbound, with the pod port each
    /// sends to (empty for most pods, so views stay shared).
    pub inbound_limited: Vec<(String, u16)>,
    /// A captured sidecar's pod's declared TCP ports: one inbound chain and route table
    /// each.
    pub inbound_ports: Vec<u16>,
    /// A sidecar's `egress` hosts, from the MeshPolicy that governs its Pod: it is told
    /// only about those Services (and what their routes forward to). `None`: every Service.
    pub egress: Option<Vec<String>>,
}

impl ViewKey {
    /// Whether the view holds only some Services (and so only their clusters): an egress
    /// list's, or, on demand, none up front.
    pub fn scoped(&self) -> bool {
        self.egress.is_some() || self.on_demand()
    }

    /// Whether the sidecar is told about Services when it first calls them: it asked to
    /// be, and no egress list pins what it may call (a list is sent whole, up front).
    pub fn on_demand(&self) -> bool {
        self.role == Role::Sidecar && self.options.on_demand && self.egress.is_none()
    }
}

/// The view key of a proxy in `state`.
pub fn view_key(state: &ClusterState, proxy: &ProxyId, options: &ProxyOptions) -> ViewKey {
    view_key_indexed(state, &inbound_limit_index(state), proxy, options)
}

/// [`view_key`] with the state's [`InboundLimitIndex`] built once (the cache keeps one per
/// generation), for keying many proxies.
pub fn view_key_indexed(
    state: &ClusterState,
    inbound_limits: &InboundLimitIndex,
    proxy: &ProxyId,
    options: &ProxyOptions,
) -> ViewKey {
    let mut options = options.clone();
    let inbound_limited = match proxy.role {
        Role::Sidecar => inbound_limits
            .get(&proxy.namespace)
            .and_then(|pods| pods.get(&proxy.name))
            .cloned()
            .unwrap_or_default(),
        Role::Gateway => Vec::new(),
    };
    let inbound_ports = match (proxy.role, options.capture) {
        (Role::Sidecar, true) => sidecar::pod(state, proxy)
            .map(sidecar::declared_ports)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let (mesh_tls, registry_only, egress) = match proxy.role {
        Role::Sidecar => {
            let pod = sidecar::pod(state, proxy);
            if options.app_port.is_none() && !options.capture {
                options.app_port = pod.and_then(sidecar::pod_port);
            }
            let labels = pod.and_then(|p| p.metadata.labels.as_ref());
            (
                Some(mesh::workload_mode(state, &proxy.namespace, labels)),
                options.capture && mesh::registry_only(state, &proxy.namespace, labels),
                mesh::egress(state, &proxy.namespace, labels).map(|e| e.hosts.clone()),
            )
        }
        Role::Gateway => (None, false, None),
    };
    ViewKey {
        role: proxy.role,
        namespace: proxy.namespace.clone(),
        gateway: (proxy.role == Role::Gateway).then(|| proxy.name.clone()),
        options,
        mesh_tls,
        registry_only,
        inbound_limited,
        inbound_ports,
        egress,
    }
}

/// The listeners, routes and view-specific clusters of one view.
pub fn translate_view(state: &ClusterState, key: &ViewKey) -> ProxyConfig {
    let mut config = ProxyConfig::default();
    match (&key.role, &key.gateway) {
        (Role::Gateway, Some(name)) => {
            gateway::translate_gateway(state, &key.namespace, name, &key.options, &mut config)
        }
        _ => sidecar::translate_sidecar(state, key, &mut config),
    }
    // A listener calls the rate-limit service only where some route needs it (for an
    // on-demand listener, a route it may fetch: some Service has a global limit).
    let on_demand_limits = key.on_demand() && sidecar::any_global_service_limit(state);
    for listener in &mut config.listeners {
        listener.global_rate_limit = (listener.on_demand && on_demand_limits)
            || config
                .route_tables
                .iter()
                .filter(|t| t.name == listener.route_table)
                .flat_map(|t| &t.virtual_hosts)
                .any(|h| {
                    h.global_rate_limit.is_some()
                        || h.routes.iter().any(|r| r.global_rate_limit.is_some())
                });
    }
    config
}

/// The cluster name of a Service port.
pub fn service_cluster_name(namespace: &str, service: &str, port: u16) -> String {
    format!("{namespace}/{service}/{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_parse_and_print() {
        let id: ProxyId = "sidecar~web-7d9f.shop".parse().unwrap();
        assert_eq!(
            id,
            ProxyId {
                role: Role::Sidecar,
                name: "web-7d9f".into(),
                namespace: "shop".into()
            }
        );
        assert_eq!(id.to_string(), "sidecar~web-7d9f.shop");
        let id: ProxyId = "gateway~public.ingress".parse().unwrap();
        assert_eq!(id.role, Role::Gateway);
        for bad in [
            "web.shop",
            "router~web.shop",
            "sidecar~web",
            "sidecar~.shop",
            "sidecar~web.",
        ] {
            assert!(bad.parse::<ProxyId>().is_err(), "{bad}");
        }
    }
}
