//! A sidecar → an outbound listener routing by authority to every Service port (GAMMA
//! HTTPRoutes change a Service's routing), and an inbound listener to its own workload.

use k8s_openapi::api::core::v1::Pod;
use weir_crds::{mesh_policy::MtlsMode, traffic_policy::PolicyTargetKind};
use weir_store::ClusterState;

use super::{
    ProxyId, ProxyOptions, policy,
    routes::{in_precedence_order, translate_http_route},
    service_cluster_name, tcp_ports,
};
use crate::model::{
    Cluster, Endpoint, Listener, PathMatch, ProxyConfig, Route, RouteAction, RouteMatch,
    RouteTable, VirtualHost, WeightedBackend,
};

/// Route table of the outbound listener.
const OUTBOUND: &str = "outbound";
/// Route table of the inbound listener.
use crate::envoy::INBOUND_STAT_PREFIX as INBOUND;

pub(super) fn translate_sidecar(
    state: &ClusterState,
    namespace: &str,
    options: &ProxyOptions,
    mesh_tls: MtlsMode,
    config: &mut ProxyConfig,
) {
    let mut virtual_hosts = Vec::new();
    for (key, service) in state.services.iter() {
        let Some(ns) = key.namespace.as_deref() else {
            continue;
        };
        let ports = tcp_ports(service);
        let attached_service_policy =
            policy::policy_for(state, ns, PolicyTargetKind::Service, &key.name);
        let service_policy = attached_service_policy.map(|p| p.spec);
        for &(_, number) in &ports {
            let cluster = service_cluster_name(ns, &key.name, number);
            let mut routes = mesh_routes(state, namespace, ns, &key.name, number);
            if routes.is_empty() {
                routes.push(default_route(&cluster));
            }
            if let Some(timeout) = service_policy.and_then(policy::timeout_ms) {
                for route in &mut routes {
                    route.timeout_ms.get_or_insert(timeout);
                }
            }
            virtual_hosts.push(VirtualHost {
                name: cluster.clone(),
                domains: service_domains(
                    &key.name,
                    ns,
                    number,
                    ns == namespace,
                    number == 80 || ports.len() == 1,
                ),
                routes,
                local_rate_limit: service_policy
                    .and_then(|p| p.rate_limit.as_ref())
                    .and_then(|r| r.local.as_ref())
                    .map(policy::token_bucket),
                global_rate_limit: attached_service_policy.and_then(|p| p.global_limit()),
                retry: service_policy
                    .and_then(|p| p.retries.as_ref())
                    .map(policy::retry_policy),
            });
        }
    }
    config.listeners.push(Listener {
        global_rate_limit: false,
        mesh_tls: None,
        name: OUTBOUND.into(),
        address: "127.0.0.1".into(),
        port: options.outbound_port,
        route_table: OUTBOUND.into(),
        stat_prefix: OUTBOUND.into(),
        strip_host_port: false,
        local_rate_limit: None,
        tls: Vec::new(),
    });
    config.route_tables.push(RouteTable {
        name: OUTBOUND.into(),
        virtual_hosts,
    });

    if let Some(app_port) = options.app_port {
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
        });
        config.listeners.push(Listener {
            global_rate_limit: false,
            mesh_tls: Some(mesh_tls),
            name: INBOUND.into(),
            address: "0.0.0.0".into(),
            port: options.inbound_port,
            route_table: INBOUND.into(),
            stat_prefix: INBOUND.into(),
            strip_host_port: true,
            local_rate_limit: None,
            tls: Vec::new(),
        });
        config.route_tables.push(RouteTable {
            name: INBOUND.into(),
            virtual_hosts: vec![VirtualHost {
                global_rate_limit: None,
                name: INBOUND.into(),
                domains: vec!["*".into()],
                routes: vec![default_route(&cluster)],
                local_rate_limit: None,
                retry: None,
            }],
        });
    }
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

/// The sidecar's workload port: the first container port of its Pod.
pub(super) fn pod_port(pod: &Pod) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| u16::try_from(p.container_port).ok())
}
