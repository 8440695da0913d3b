//! A sidecar → an outbound listener routing by authority to every Service port (GAMMA
//! HTTPRoutes change a Service's routing), and an inbound listener to its own workload.
//!
//! Two shapes, told apart by the bootstrap's `weir.io/capture`:
//! - **explicit ports** (local mode, hand-started Envoys): the application calls the
//!   outbound listener on `127.0.0.1:<outbound port>`; the inbound listener forwards to
//!   the workload port;
//! - **captured** (`weir capture` in the pod): both listeners take every address and
//!   recover the original destination. Outbound, HTTP to a Service ClusterIP is routed by
//!   its Host (the Service's names, or the ClusterIP itself, each with its port); other
//!   destinations pass through, or are refused under `outboundTrafficPolicy:
//!   RegistryOnly`. Inbound, requests go on to the port the caller addressed.

use k8s_openapi::api::{core::v1::Pod, discovery::v1::EndpointSlice};
use weir_crds::{mesh_policy::MtlsMode, traffic_policy::PolicyTargetKind};
use weir_store::ClusterState;

use super::{
    ProxyId, ViewKey, policy,
    routes::{in_precedence_order, translate_http_route},
    service_cluster_name, tcp_ports,
};
use crate::model::{
    Capture, Cluster, Endpoint, Listener, PathMatch, ProxyConfig, Route, RouteAction, RouteMatch,
    RouteTable, VirtualHost, WeightedBackend,
};

/// The cluster that sends a captured connection on to where it was addressed.
pub const PASSTHROUGH_CLUSTER: &str = "passthrough";
/// The cluster a captured sidecar's inbound requests go to: the addressed port.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "inbound-passthrough";

/// Route table of the outbound listener.
const OUTBOUND: &str = "outbound";
/// Route table of the inbound listener.
use crate::envoy::INBOUND_STAT_PREFIX as INBOUND;

pub(super) fn translate_sidecar(state: &ClusterState, key: &ViewKey, config: &mut ProxyConfig) {
    let options = &key.options;
    let mesh_tls = key.mesh_tls.unwrap_or(MtlsMode::Permissive);
    let registry_only = key.registry_only;
    let inbound_limited = key.inbound_limited.as_slice();
    let inbound_ports = key.inbound_ports.as_slice();
    let namespace = key.namespace.as_str();
    let on_demand = key.on_demand();
    let mut virtual_hosts = Vec::new();
    let mut service_addresses = Vec::new();
    for (service_key, service) in super::scope::services(state, namespace, key.egress.as_deref()) {
        let Some(ns) = service_key.namespace.as_deref() else {
            continue;
        };
        if on_demand {
            // Sent when first called; a captured sidecar still routes every ClusterIP
            // (not only those it has fetched) to the connection manager that fetches.
            if options.capture && !tcp_ports(service).is_empty() {
                service_addresses.extend(cluster_ips(service));
            }
            continue;
        }
        let (hosts, addresses) = service_hosts(state, key, ns, &service_key.name, service);
        virtual_hosts.extend(hosts);
        service_addresses.extend(addresses);
    }
    let any_address = "0.0.0.0";
    let capture = options.capture.then_some(Capture::Outbound {
        service_addresses,
        passthrough: !registry_only,
    });
    config.listeners.push(Listener {
        global_rate_limit: false,
        mesh_tls: None,
        name: OUTBOUND.into(),
        address: if capture.is_some() {
            any_address
        } else {
            "127.0.0.1"
        }
        .into(),
        port: options.outbound_port,
        route_table: OUTBOUND.into(),
        stat_prefix: OUTBOUND.into(),
        strip_host_port: false,
        local_rate_limit: None,
        tls: Vec::new(),
        capture,
        port_route_tables: Vec::new(),
        on_demand,
    });
    config.route_tables.push(RouteTable {
        name: OUTBOUND.into(),
        virtual_hosts,
        on_demand,
    });
    if options.capture {
        // Passthrough for allow-any; a cluster without endpoints for registry-only (Envoy
        // closes the connection).
        config.clusters.push(Cluster {
            name: PASSTHROUGH_CLUSTER.into(),
            connect_timeout_ms: 2_000,
            static_endpoint: None,
            mtls: false,
            original_destination: !registry_only,
        });
    }

    let inbound_cluster = if options.capture {
        config.clusters.push(Cluster {
            name: INBOUND_PASSTHROUGH_CLUSTER.into(),
            connect_timeout_ms: 1_000,
            static_endpoint: None,
            mtls: false,
            original_destination: true,
        });
        INBOUND_PASSTHROUGH_CLUSTER.to_string()
    } else if let Some(app_port) = options.app_port {
        let cluster = format!("inbound/{app_port}");
        config.clusters.push(Cluster {
            name: cluster.clone(),
            connect_timeout_ms: 1_000,
            static_endpoint: Some(Endpoint {
                address: "127.0.0.1".into(),
                port: app_port,
                mtls: false,
            }),
            mtls: false,
            original_destination: false,
        });
        cluster
    } else {
        return;
    };
    // Service limits enforced here, by the port the Service sends to. A captured sidecar
    // has a chain and a route table per port its pod declares, whether limited or not: the
    // pod's ports never change, so a policy edit changes only route tables, which apply to
    // open connections too (a new filter chain would not). Limits on an undeclared port,
    // and an explicit-port sidecar's (one workload port), go in the listener's own table.
    let mut port_tables: Vec<(u16, String, Limits)> = if options.capture {
        inbound_ports
            .iter()
            .map(|port| (*port, format!("{INBOUND}/{port}"), (None, None)))
            .collect()
    } else {
        Vec::new()
    };
    let mut default_limits: Limits = (None, None);
    for (service, pod_port) in inbound_limited {
        let Some(attached) =
            policy::policy_for(state, namespace, PolicyTargetKind::Service, service)
        else {
            continue;
        };
        let limits = (
            attached
                .spec
                .rate_limit
                .as_ref()
                .and_then(|r| r.local.as_ref())
                .map(policy::token_bucket),
            attached.global_limit(),
        );
        let slot = match port_tables.iter_mut().find(|(port, _, _)| port == pod_port) {
            Some((_, _, slot)) => slot,
            None if options.capture || Some(*pod_port) == options.app_port => &mut default_limits,
            None => continue,
        };
        // Two limited Services on one port: the first by name applies.
        if *slot == (None, None) {
            *slot = limits;
        }
    }
    for (_, table, limits) in &port_tables {
        config
            .route_tables
            .push(inbound_table(table, &inbound_cluster, limits.clone()));
    }
    let port_tables = port_tables
        .into_iter()
        .map(|(port, table, _)| (port, table))
        .collect();
    config.listeners.push(Listener {
        global_rate_limit: false,
        mesh_tls: Some(mesh_tls),
        name: INBOUND.into(),
        address: any_address.into(),
        port: options.inbound_port,
        route_table: INBOUND.into(),
        stat_prefix: INBOUND.into(),
        strip_host_port: true,
        local_rate_limit: None,
        tls: Vec::new(),
        capture: options.capture.then_some(Capture::Inbound),
        port_route_tables: port_tables,
        on_demand: false,
    });
    config
        .route_tables
        .push(inbound_table(INBOUND, &inbound_cluster, default_limits));
}

/// The outbound virtual hosts of Service `ns/name` (one per TCP port) as a sidecar with
/// view `key` sees them, and the ClusterIPs a captured sidecar routes to them.
fn service_hosts(
    state: &ClusterState,
    key: &ViewKey,
    ns: &str,
    name: &str,
    service: &k8s_openapi::api::core::v1::Service,
) -> (Vec<VirtualHost>, Vec<String>) {
    let namespace = key.namespace.as_str();
    let ports = tcp_ports(service);
    let cluster_ips = if key.options.capture && !ports.is_empty() {
        cluster_ips(service)
    } else {
        Vec::new()
    };
    let attached_service_policy = policy::policy_for(state, ns, PolicyTargetKind::Service, name);
    let service_policy = attached_service_policy.map(|p| p.spec);
    // Limits are enforced where the Service receives traffic once every endpoint runs
    // a sidecar (so they hold for every caller, meshed or not); until then, here.
    let limited_here =
        service_policy.is_some_and(policy::limits) && !limits_enforced_inbound(state, ns, name);
    let mut virtual_hosts = Vec::new();
    for &(_, number) in &ports {
        let cluster = service_cluster_name(ns, name, number);
        let mut routes = mesh_routes(state, namespace, ns, name, number);
        if routes.is_empty() {
            routes.push(default_route(&cluster));
        }
        if let Some(timeout) = service_policy.and_then(policy::timeout_ms) {
            for route in &mut routes {
                route.timeout_ms.get_or_insert(timeout);
            }
        }
        let default_port = number == 80 || ports.len() == 1;
        let mut domains = service_domains(name, ns, number, ns == namespace, default_port);
        for ip in &cluster_ips {
            // `curl http://10.96.0.10/` sends `Host: 10.96.0.10`.
            if number == 80 {
                domains.push(ip.clone());
            }
            domains.push(format!("{ip}:{number}"));
        }
        virtual_hosts.push(VirtualHost {
            name: cluster.clone(),
            domains,
            routes,
            local_rate_limit: service_policy
                .filter(|_| limited_here)
                .and_then(|p| p.rate_limit.as_ref())
                .and_then(|r| r.local.as_ref())
                .map(policy::token_bucket),
            global_rate_limit: attached_service_policy
                .filter(|_| limited_here)
                .and_then(|p| p.global_limit()),
            retry: service_policy
                .and_then(|p| p.retries.as_ref())
                .map(policy::retry_policy),
        });
    }
    (virtual_hosts, cluster_ips)
}

/// The virtual hosts an on-demand sidecar with view `key` is sent when it first asks for
/// `authority` (a request's Host: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`, or a
/// captured sidecar's ClusterIP, each with an optional port): those of the Service it
/// names, every port's (the request picks its own by domain). `None`: no such Service.
pub fn on_demand_hosts(
    state: &ClusterState,
    key: &ViewKey,
    authority: &str,
) -> Option<Vec<VirtualHost>> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let (ns, name) = if host.parse::<std::net::IpAddr>().is_ok() {
        if !key.options.capture {
            return None;
        }
        let (service_key, _) = state
            .services
            .iter()
            .find(|(_, s)| cluster_ips(s).iter().any(|ip| ip == host))?;
        (service_key.namespace.clone()?, service_key.name.clone())
    } else {
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            [name] => (key.namespace.clone(), (*name).to_string()),
            [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
                ((*ns).to_string(), (*name).to_string())
            }
            _ => return None,
        }
    };
    let service = state.services.get_namespaced(&ns, &name)?;
    let (hosts, _) = service_hosts(state, key, &ns, &name, service);
    Some(hosts)
}

/// The VHDS resource name of an on-demand virtual host: `outbound/` (the route table it
/// belongs to, as VHDS names go) and its cluster's name with dots for slashes (a name's
/// last part must hold no slash).
pub fn vhds_name(host: &VirtualHost) -> String {
    format!("{OUTBOUND}/{}", host.name.replace('/', "."))
}

/// Whether some Service's TrafficPolicy sets a global limit: an on-demand sidecar's
/// outbound listener then has the rate-limit filter, for the hosts it may fetch.
pub(super) fn any_global_service_limit(state: &ClusterState) -> bool {
    state.traffic_policies.iter().any(|(_, p)| {
        p.spec.target_ref.kind == PolicyTargetKind::Service
            && p.spec
                .rate_limit
                .as_ref()
                .is_some_and(|r| r.global.is_some())
    })
}

/// A Service's limits: local, global.
type Limits = (
    Option<crate::model::TokenBucket>,
    Option<crate::model::GlobalLimit>,
);

/// An inbound route table: everything to `cluster`, under a Service's limits.
fn inbound_table(name: &str, cluster: &str, (local, global): Limits) -> RouteTable {
    RouteTable {
        on_demand: false,
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            global_rate_limit: global,
            name: INBOUND.into(),
            domains: vec!["*".into()],
            routes: vec![default_route(cluster)],
            local_rate_limit: local,
            retry: None,
        }],
    }
}

/// The EndpointSlices of Service `namespace/service`.
fn service_slices<'a>(
    state: &'a ClusterState,
    namespace: &'a str,
    service: &'a str,
) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
    state
        .endpoint_slices
        .in_namespace(namespace)
        .map(AsRef::as_ref)
        .filter(move |slice: &&EndpointSlice| {
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|s| s == service)
        })
}

/// The pods behind a slice's ready endpoints (absent `ready` counts as ready), by name.
fn ready_pods(slice: &EndpointSlice) -> impl Iterator<Item = Option<&str>> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .map(|e| {
            e.target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.as_deref())
        })
}

/// Whether a Service's limits are enforced by its own sidecars: it has ready endpoints,
/// and every one is a pod running a sidecar.
pub(super) fn limits_enforced_inbound(
    state: &ClusterState,
    namespace: &str,
    service: &str,
) -> bool {
    let mut any = false;
    for slice in service_slices(state, namespace, service) {
        for pod in ready_pods(slice) {
            any = true;
            let meshed = pod
                .and_then(|name| state.pods.get_namespaced(namespace, name))
                .is_some_and(|p| super::mesh::runs_sidecar(p));
            if !meshed {
                return false;
            }
        }
    }
    any
}

/// Per namespace and pod: the Services whose limits its sidecar enforces, with the pod
/// port each sends to. Services targeted by a TrafficPolicy with limits whose endpoints all
/// run sidecars. Built once per state, so a push to many sidecars does not scan policies
/// and EndpointSlices per proxy; most pods are absent.
pub type InboundLimitIndex =
    std::collections::HashMap<String, std::collections::HashMap<String, Vec<(String, u16)>>>;

/// Builds the [`InboundLimitIndex`] of `state`.
pub fn inbound_limit_index(state: &ClusterState) -> InboundLimitIndex {
    let mut index = InboundLimitIndex::new();
    for (key, policy) in state.traffic_policies.iter() {
        let (Some(namespace), target) = (key.namespace.as_deref(), &policy.spec.target_ref) else {
            continue;
        };
        if target.kind != PolicyTargetKind::Service
            || !policy::limits(&policy.spec)
            || !limits_enforced_inbound(state, namespace, &target.name)
        {
            continue;
        }
        for slice in service_slices(state, namespace, &target.name) {
            let ports: Vec<u16> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
                .collect();
            for pod in ready_pods(slice).flatten() {
                let entry = index
                    .entry(namespace.to_string())
                    .or_default()
                    .entry(pod.to_string())
                    .or_default();
                entry.extend(ports.iter().map(|port| (target.name.clone(), *port)));
            }
        }
    }
    for entry in index.values_mut().flat_map(|pods| pods.values_mut()) {
        entry.sort();
        entry.dedup();
    }
    index
}

/// A Service's ClusterIPs (IPv4 and IPv6; none for a headless Service).
fn cluster_ips(service: &k8s_openapi::api::core::v1::Service) -> Vec<String> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .cloned()
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Routes from GAMMA HTTPRoutes attached to the Service port. Routes in the caller's own
/// namespace (consumer routes) take precedence over routes in the Service's namespace
/// (producer routes), which apply to every caller. When a route attaches, requests that
/// match none of its rules get 404, as at a Gateway.
fn mesh_routes(
    state: &ClusterState,
    caller_ns: &str,
    ns: &str,
    service: &str,
    port: u16,
) -> Vec<Route> {
    let attached = |route_ns: &str| -> Vec<_> {
        state
            .http_routes
            .in_namespace(route_ns)
            .filter(|route| {
                route.spec.parent_refs.iter().any(|p| {
                    p.is_service()
                        && p.name == service
                        && p.namespace.as_deref().unwrap_or(route_ns) == ns
                        && p.port.is_none_or(|p| p == port)
                })
            })
            .flat_map(|route| translate_http_route(state, route))
            .collect()
    };
    let consumer = if caller_ns != ns {
        attached(caller_ns)
    } else {
        Vec::new()
    };
    let chosen = if consumer.is_empty() {
        attached(ns)
    } else {
        consumer
    };
    in_precedence_order(chosen)
}

fn default_route(cluster: &str) -> Route {
    Route {
        global_rate_limit: None,
        name: format!("{cluster}/default"),
        matcher: RouteMatch {
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            query_params: Vec::new(),
            method: None,
        },
        action: RouteAction::Forward {
            backends: vec![WeightedBackend {
                cluster: cluster.to_string(),
                weight: 1,
            }],
            rewrite: None,
        },
        request_headers: Default::default(),
        response_headers: Default::default(),
        timeout_ms: None,
        retry: None,
        local_rate_limit: None,
    }
}

/// The authorities that reach a Service port: `svc.ns`, `svc.ns.svc`,
/// `svc.ns.svc.cluster.local`, and the short `svc` for the caller's own namespace, each
/// with `:port`, and without a port for the Service's default port (80, or its only one).
fn service_domains(
    name: &str,
    ns: &str,
    port: u16,
    same_namespace: bool,
    default_port: bool,
) -> Vec<String> {
    let mut hosts = vec![
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
    ];
    if same_namespace {
        hosts.insert(0, name.to_string());
    }
    let mut domains = Vec::new();
    for host in hosts {
        if default_port {
            domains.push(host.clone());
        }
        domains.push(format!("{host}:{port}"));
    }
    domains
}

/// The sidecar's Pod, if the stores hold it.
pub(super) fn pod<'a>(state: &'a ClusterState, proxy: &ProxyId) -> Option<&'a Pod> {
    state
        .pods
        .get_namespaced(&proxy.namespace, &proxy.name)
        .map(AsRef::as_ref)
}

/// The TCP ports a Pod's containers declare, sorted.
pub(super) fn declared_ports(pod: &Pod) -> Vec<u16> {
    let mut ports: Vec<u16> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The sidecar's workload port: the first container port of its Pod.
pub(super) fn pod_port(pod: &Pod) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| u16::try_from(p.container_port).ok())
}
