//! The Envoy bootstrap `weir bootstrap` prints: ADS over gRPC to the xds-server, the node
//! id and port metadata, and the admin listener.

use serde_json::{Value, json};

use envoy_types::pb::google::protobuf::{Struct, value::Kind};

use crate::inject::probes::{AppProber, AppProbers};
use crate::translate::{ProxyId, ProxyOptions, Role};

/// What a bootstrap says.
#[derive(Clone, Debug)]
pub struct BootstrapSpec {
    /// The proxy.
    pub proxy: ProxyId,
    /// The xds-server, `host:port`.
    pub xds_addr: String,
    /// Weir's rate-limit service (`host:port`), for routes with global limits.
    pub rate_limit_addr: String,
    /// Envoy's admin port (on 127.0.0.1).
    pub admin_port: u16,
    /// A port on every address serving only the admin's `/stats/prometheus`, for
    /// Prometheus (the admin itself stays on loopback).
    pub stats_port: Option<u16>,
    /// Ports, told to the xds-server in node metadata.
    pub options: ProxyOptions,
    /// Use incremental (delta) xDS instead of state of the world.
    pub delta: bool,
    /// A plaintext port on every address for kubelet probes: `/healthz/ready` (Envoy's
    /// readiness) and `/app-health/<container>/<kind>` for each of `app_probers`.
    pub health_port: Option<u16>,
    /// The application's original probes, by health path (from the injector's
    /// `weir.io/original-probes` annotation).
    pub app_probers: AppProbers,
    /// The Unix socket of the pod's agent (`weir agent`), which serves the workload
    /// certificate Envoy presents to peers and to the xds-server, and the mesh's roots.
    pub agent_socket: String,
}

/// The default path of the agent's socket in a pod (an emptyDir shared by the agent and
/// Envoy).
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/weir/agent.sock";

/// The bootstrap as YAML.
pub fn bootstrap_yaml(spec: &BootstrapSpec) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&bootstrap(spec))
}

/// `host:port` split, brackets of an IPv6 host removed; `default` when there is no port.
fn host_port(addr: &str, default: u16) -> (&str, u16) {
    addr.rsplit_once(':')
        .map(|(h, p)| {
            (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().unwrap_or(default),
            )
        })
        .unwrap_or((addr, default))
}

fn http2_options() -> Value {
    json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        },
    })
}

/// A secret from the agent, as the bootstrap's JSON spells it.
fn agent_secret(name: &str) -> Value {
    json!({
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": crate::envoy::AGENT_CLUSTER}}],
            },
        },
    })
}

/// A static HTTP/2 cluster for a gRPC service of Weir's, over TLS: Envoy presents the
/// workload certificate its agent holds, and accepts only a server certificate from the
/// mesh's roots that names the host it dials.
fn grpc_cluster(name: &str, addr: &str, default_port: u16) -> Value {
    let (host, port) = host_port(addr, default_port);
    let san_type = if host.parse::<std::net::IpAddr>().is_ok() {
        "IP_ADDRESS"
    } else {
        "DNS"
    };
    json!({
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_options(),
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "tls_certificate_sds_secret_configs": [agent_secret(crate::envoy::IDENTITY_SECRET)],
                    "combined_validation_context": {
                        "default_validation_context": {
                            "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
                        },
                        "validation_context_sds_secret_config": agent_secret(crate::envoy::ROOTS_SECRET),
                    },
                },
            },
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}],
        },
    })
}

/// The cluster to the pod's agent, on its Unix socket.
fn agent_cluster(socket: &str) -> Value {
    json!({
        "name": crate::envoy::AGENT_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_options(),
        "load_assignment": {
            "cluster_name": crate::envoy::AGENT_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket}}}}]}],
        },
    })
}

/// The static cluster to Envoy's own admin, behind the stats listener.
const ADMIN_CLUSTER: &str = "weir-admin";

/// A listener on `0.0.0.0:port` that serves `/stats/prometheus` from the admin and
/// nothing else (404), so Prometheus can scrape a proxy whose admin is on loopback.
fn stats_listener(port: u16) -> Value {
    let routes = json!([
        {"match": {"path": "/stats/prometheus"}, "route": {"cluster": ADMIN_CLUSTER}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]);
    http_listener(
        "weir-stats",
        port,
        "weir_stats",
        routes,
        vec![router_filter()],
    )
}

/// A static HTTP listener on `0.0.0.0:port` with one catch-all virtual host.
fn http_listener(
    name: &str,
    port: u16,
    stat_prefix: &str,
    routes: Value,
    filters: Vec<Value>,
) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": stat_prefix,
                "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
                "http_filters": filters,
            },
        }]}],
    })
}

/// The static cluster to the admin on loopback.
fn admin_cluster(admin_port: u16) -> Value {
    json!({
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}}]}],
        },
    })
}

/// The HTTP router filter.
fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

/// A static cluster to `127.0.0.1:port`.
fn loopback_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    })
}

/// The health listener on `0.0.0.0:port` (never captured) and the clusters behind it.
///
/// - `/healthz/ready` is Envoy's own readiness (the admin's `/ready`), for the sidecar's
///   readiness probe.
/// - An HTTP probe's path is forwarded to the application on loopback with its original
///   path, headers and timeout; the application's status code is the answer.
/// - TCP and gRPC probes cannot be carried over an HTTP request, so Envoy checks the
///   application itself (active TCP connect or gRPC health checks every 2 s, one
///   success or failure flips the state) and a health-check filter answers the probe's
///   path with 200 while that check passes, 503 otherwise.
fn health_listener(port: u16, probers: &AppProbers) -> (Value, Vec<Value>) {
    let mut routes = vec![json!({
        "match": {"path": "/healthz/ready"},
        "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready"},
    })];
    let mut filters = Vec::new();
    let mut clusters: std::collections::BTreeMap<String, Value> = Default::default();
    for (path, prober) in probers {
        let AppProber {
            http_get,
            tcp_socket,
            grpc,
            timeout_seconds,
        } = prober;
        let timeout = format!("{}s", (*timeout_seconds).max(1));
        if let Some(http) = http_get {
            let tls = http.scheme == "HTTPS";
            let name = format!(
                "weir-probe/{}/{}",
                if tls { "https" } else { "http" },
                http.port
            );
            let mut cluster = loopback_cluster(&name, http.port);
            if tls {
                // Like the kubelet, which does not verify the application's certificate.
                cluster["transport_socket"] = json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"},
                });
            }
            clusters.insert(name.clone(), cluster);
            let headers: Vec<Value> = http
                .http_headers
                .iter()
                .map(|(name, value)| json!({"header": {"key": name, "value": crate::envoy::literal_header_value(value)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}))
                .collect();
            routes.push(json!({
                "match": {"path": path},
                "route": {"cluster": name, "prefix_rewrite": http.path, "timeout": timeout},
                "request_headers_to_add": headers,
            }));
            continue;
        }
        let (name, check) = match (tcp_socket, grpc) {
            (Some(tcp), _) => (
                format!("weir-probe/tcp/{}", tcp.port),
                (tcp.port, json!({"tcp_health_check": {}})),
            ),
            (None, Some(g)) => (
                format!("weir-probe/grpc/{}/{}", g.port, g.service),
                (
                    g.port,
                    json!({"grpc_health_check": {"service_name": g.service}}),
                ),
            ),
            (None, None) => continue,
        };
        let (app_port, mut check) = check;
        let mut cluster = loopback_cluster(&name, app_port);
        check["timeout"] = json!(timeout);
        check["interval"] = json!("2s");
        check["no_traffic_interval"] = json!("2s");
        check["unhealthy_threshold"] = json!(1);
        check["healthy_threshold"] = json!(1);
        cluster["health_checks"] = json!([check]);
        if grpc.is_some() {
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            });
        }
        clusters.insert(name.clone(), cluster);
        filters.push(json!({
            "name": "envoy.filters.http.health_check",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                "pass_through_mode": false,
                "headers": [{"name": ":path", "string_match": {"exact": path}}],
                "cluster_min_healthy_percentages": {name: {"value": 100.0}},
            },
        }));
    }
    routes.push(json!({"match": {"prefix": "/"}, "direct_response": {"status": 404}}));
    filters.push(router_filter());
    let listener = http_listener("weir-health", port, "weir_health", json!(routes), filters);
    (listener, clusters.into_values().collect())
}

fn bootstrap(spec: &BootstrapSpec) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert(
        metadata::ADMIN_PORT.into(),
        json!(spec.admin_port.to_string()),
    );
    if spec.proxy.role == Role::Sidecar {
        meta.insert(
            metadata::INBOUND_PORT.into(),
            json!(spec.options.inbound_port.to_string()),
        );
        meta.insert(
            metadata::OUTBOUND_PORT.into(),
            json!(spec.options.outbound_port.to_string()),
        );
        if let Some(app) = spec.options.app_port {
            meta.insert(metadata::APP_PORT.into(), json!(app.to_string()));
        }
        if spec.options.capture {
            meta.insert(metadata::CAPTURE.into(), json!("true"));
        }
        if spec.options.on_demand && spec.delta {
            meta.insert(metadata::ON_DEMAND.into(), json!("true"));
        }
    } else if spec.options.gateway_port_offset != 0 {
        meta.insert(
            metadata::GATEWAY_PORT_OFFSET.into(),
            json!(spec.options.gateway_port_offset.to_string()),
        );
    }
    let ads = json!({"ads": {}, "resource_api_version": "V3"});
    let mut clusters = vec![
        grpc_cluster("weir-xds", &spec.xds_addr, 18000),
        grpc_cluster(
            crate::envoy::RATE_LIMIT_CLUSTER,
            &spec.rate_limit_addr,
            18081,
        ),
        agent_cluster(&spec.agent_socket),
    ];
    let mut listeners = Vec::new();
    if spec.stats_port.is_some() || spec.health_port.is_some() {
        clusters.push(admin_cluster(spec.admin_port));
    }
    if let Some(port) = spec.stats_port {
        listeners.push(stats_listener(port));
    }
    if let Some(port) = spec.health_port {
        let (listener, probe_clusters) = health_listener(port, &spec.app_probers);
        listeners.push(listener);
        clusters.extend(probe_clusters);
    }
    let mut static_resources = json!({"clusters": clusters});
    if !listeners.is_empty() {
        static_resources["listeners"] = json!(listeners);
    }
    json!({
        "node": {
            "id": spec.proxy.to_string(),
            "cluster": format!("{}.{}", spec.proxy.name, spec.proxy.namespace),
            "metadata": meta,
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": spec.admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if spec.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "weir-xds"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": static_resources,
        "layered_runtime": {"layers": [{"name": "weir", "static_layer": {
            "re2.max_program_size.error_level": RE2_MAX_PROGRAM_SIZE,
            "re2.max_program_size.warn_level": RE2_WARN_PROGRAM_SIZE,
        }}]},
    })
}

/// The RE2 program size above which Envoy refuses a regular expression. Envoy's default,
/// 100, rejects ordinary Gateway API patterns (`^/files/[a-zA-Z0-9_-]{1,64}\.(png|jpe?g)$`
/// is 341); Contour uses 2^20 too. Weir refuses a pattern itself before it could come near
/// this ([`crate::translate::routes::check_regex`]), with a condition on the route.
pub const RE2_MAX_PROGRAM_SIZE: u32 = 1 << 20;
/// Above this size Envoy counts the pattern in its `re2.exceeded_warn_level` statistic.
pub const RE2_WARN_PROGRAM_SIZE: u32 = 1000;

/// Node metadata keys a bootstrap sets to give a proxy its ports.
pub mod metadata {
    /// The sidecar's inbound listener port.
    pub const INBOUND_PORT: &str = "weir.io/inbound-port";
    /// The sidecar's outbound listener port.
    pub const OUTBOUND_PORT: &str = "weir.io/outbound-port";
    /// The sidecar's workload port.
    pub const APP_PORT: &str = "weir.io/app-port";
    /// Added to every Gateway listener port.
    pub const GATEWAY_PORT_OFFSET: &str = "weir.io/gateway-port-offset";
    /// Envoy's admin port (on the proxy's loopback), where local mode reads its statistics.
    pub const ADMIN_PORT: &str = "weir.io/admin-port";
    /// `"true"`: the pod's traffic is captured (`weir capture`), so the listeners recover
    /// original destinations.
    pub const CAPTURE: &str = "weir.io/capture";
    /// `"true"`: the sidecar fetches Services' routes and clusters when first called
    /// (VHDS and on-demand CDS over delta xDS).
    pub const ON_DEMAND: &str = "weir.io/on-demand";
}

/// A port from node metadata (a number or a numeric string).
pub fn metadata_port(metadata: Option<&Struct>, key: &str) -> Option<u16> {
    let value = metadata?.fields.get(key)?.kind.as_ref()?;
    match value {
        Kind::NumberValue(n) => u16::try_from(*n as i64).ok(),
        Kind::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// Ports from node metadata (numbers or numeric strings); defaults otherwise.
pub fn options_from_metadata(metadata: Option<&Struct>) -> ProxyOptions {
    let port = |key: &str| metadata_port(metadata, key);
    let defaults = ProxyOptions::default();
    ProxyOptions {
        inbound_port: port(metadata::INBOUND_PORT).unwrap_or(defaults.inbound_port),
        outbound_port: port(metadata::OUTBOUND_PORT).unwrap_or(defaults.outbound_port),
        app_port: port(metadata::APP_PORT),
        gateway_port_offset: port(metadata::GATEWAY_PORT_OFFSET)
            .unwrap_or(defaults.gateway_port_offset),
        capture: metadata_flag(metadata, metadata::CAPTURE),
        on_demand: metadata_flag(metadata, metadata::ON_DEMAND),
    }
}

/// A flag from node metadata: `"true"` or `true`.
fn metadata_flag(metadata: Option<&Struct>, key: &str) -> bool {
    metadata
        .and_then(|m| m.fields.get(key))
        .and_then(|v| v.kind.as_ref())
        .is_some_and(|k| match k {
            Kind::StringValue(s) => s == "true",
            Kind::BoolValue(b) => *b,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_bootstrap_carries_identity_ports_and_the_ads_cluster() {
        let spec = BootstrapSpec {
            proxy: "sidecar~web-0.shop".parse().unwrap(),
            xds_addr: "127.0.0.1:18000".into(),
            rate_limit_addr: "127.0.0.1:18081".into(),
            admin_port: 15000,
            stats_port: None,
            options: ProxyOptions {
                inbound_port: 25006,
                outbound_port: 25001,
                app_port: Some(8080),
                gateway_port_offset: 0,
                capture: false,
                on_demand: false,
            },
            delta: false,
            health_port: None,
            app_probers: Default::default(),
            agent_socket: "/run/weir/agent.sock".into(),
        };
        let value = bootstrap(&spec);
        assert_eq!(value["node"]["id"], "sidecar~web-0.shop");
        assert_eq!(value["node"]["metadata"]["weir.io/inbound-port"], "25006");
        assert_eq!(value["node"]["metadata"]["weir.io/app-port"], "8080");
        assert_eq!(
            value["admin"]["address"]["socket_address"]["port_value"],
            15000
        );
        let endpoint = &value["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"][0];
        assert_eq!(
            endpoint["endpoint"]["address"]["socket_address"]["port_value"],
            18000
        );
        assert!(bootstrap_yaml(&spec).unwrap().contains("api_type: GRPC"));
        let rls = &value["static_resources"]["clusters"][1];
        assert_eq!(rls["name"], "weir-ratelimit");
        assert_eq!(
            rls["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            18081
        );
        // Weir's gRPC services over TLS, with the agent's certificate, checking the
        // server's name against the mesh's roots.
        let tls = &rls["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "127.0.0.1");
        let context = &tls["common_tls_context"];
        assert_eq!(
            context["tls_certificate_sds_secret_configs"][0]["name"],
            "weir-identity"
        );
        let validation = &context["combined_validation_context"];
        assert_eq!(
            validation["default_validation_context"]["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
        assert_eq!(
            validation["validation_context_sds_secret_config"]["sds_config"]["api_config_source"]["grpc_services"]
                [0]["envoy_grpc"]["cluster_name"],
            "weir-agent"
        );
        let agent = &value["static_resources"]["clusters"][2];
        assert_eq!(
            agent["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            "/run/weir/agent.sock"
        );
        assert!(value["static_resources"]["listeners"].is_null());
        let with_stats = bootstrap(&BootstrapSpec {
            stats_port: Some(15090),
            ..spec
        });
        let listener = &with_stats["static_resources"]["listeners"][0];
        assert_eq!(listener["address"]["socket_address"]["port_value"], 15090);
        assert_eq!(
            with_stats["static_resources"]["clusters"][3]["name"],
            "weir-admin"
        );
        // Gateway API regular expressions fit (Envoy's default limit of 100 does not).
        let limit = &with_stats["layered_runtime"]["layers"][0]["static_layer"];
        assert_eq!(limit["re2.max_program_size.error_level"], 1 << 20);
    }
}
