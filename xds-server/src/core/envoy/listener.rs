//! Listeners: the HTTP connection manager over RDS, TLS termination by SNI, a sidecar's
//! inbound listener in its mTLS mode, and a captured sidecar's original-destination
//! listeners.

use envoy_types::pb::envoy::{
    config::listener::v3::{
        Filter, FilterChain, FilterChainMatch, Listener as EnvoyListener, ListenerFilter,
        filter::ConfigType as FilterConfigType,
        listener_filter::ConfigType as ListenerFilterConfigType,
    },
    extensions::{
        filters::{
            http::{
                on_demand::v3::{OnDemand, OnDemandCds},
                router::v3::Router,
            },
            listener::tls_inspector::v3::TlsInspector,
            network::http_connection_manager::v3::{
                HttpConnectionManager, HttpFilter, Rds,
                http_connection_manager::{CodecType, RouteSpecifier, StripPortMode},
                http_filter::ConfigType as HttpFilterConfigType,
            },
        },
        transport_sockets::tls::v3::{CommonTlsContext, DownstreamTlsContext, TlsCertificate},
    },
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::util::pack_any;
use weir_crds::mesh_policy::MtlsMode;

use super::{
    LOCAL_RATE_LIMIT_FILTER, PLAINTEXT_STAT_SUFFIX, RATE_LIMIT_FILTER, ads,
    global_rate_limit_filter, inline_string, local_rate_limit, mesh_tls_context, socket_address,
    tls_socket,
};
use crate::model::{Capture, Listener};

/// The on-demand discovery filter.
const ON_DEMAND_FILTER: &str = "envoy.filters.http.on_demand";
/// How long a request waits for a cluster fetched on demand before it fails (503).
const ON_DEMAND_TIMEOUT_SECONDS: i64 = 5;

/// A listener with one HTTP connection manager that takes its routes over RDS.
pub fn to_listener(listener: &Listener) -> EnvoyListener {
    let mut http_filters = vec![
        HttpFilter {
            name: LOCAL_RATE_LIMIT_FILTER.into(),
            config_type: Some(HttpFilterConfigType::TypedConfig(pack_any(
                local_rate_limit(
                    &format!("{}_rate_limit", listener.stat_prefix),
                    listener.local_rate_limit.as_ref(),
                ),
            ))),
            ..Default::default()
        },
        HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(HttpFilterConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        },
    ];
    if listener.global_rate_limit {
        http_filters.insert(
            1,
            HttpFilter {
                name: RATE_LIMIT_FILTER.into(),
                config_type: Some(HttpFilterConfigType::TypedConfig(pack_any(
                    global_rate_limit_filter(),
                ))),
                ..Default::default()
            },
        );
    }
    if listener.on_demand {
        // First: an unknown authority fetches its virtual host (VHDS) before routing, and
        // a route to an unknown cluster fetches the cluster (on-demand CDS), both over ADS.
        http_filters.insert(
            0,
            HttpFilter {
                name: ON_DEMAND_FILTER.into(),
                config_type: Some(HttpFilterConfigType::TypedConfig(pack_any(OnDemand {
                    odcds: Some(OnDemandCds {
                        source: Some(ads()),
                        resources_locator: String::new(),
                        timeout: Some(envoy_types::pb::google::protobuf::Duration {
                            seconds: ON_DEMAND_TIMEOUT_SECONDS,
                            nanos: 0,
                        }),
                    }),
                }))),
                ..Default::default()
            },
        );
    }
    let manager = |stat_prefix: String, route_table: &str| HttpConnectionManager {
        stat_prefix,
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_table.to_string(),
        })),
        http_filters: http_filters.clone(),
        strip_port_mode: listener
            .strip_host_port
            .then_some(StripPortMode::StripAnyHostPort(true)),
        ..Default::default()
    };
    let table_filter = |stat_prefix: String, route_table: &str| Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(FilterConfigType::TypedConfig(pack_any(manager(
            stat_prefix,
            route_table,
        )))),
    };
    if let Some(mode) = listener.mesh_tls {
        let mut out = mesh_listener(listener, mode, table_filter);
        if listener.capture.is_some() {
            out.listener_filters.insert(0, original_dst());
        }
        return out;
    }
    let manager_filter = |stat_prefix: String| table_filter(stat_prefix, &listener.route_table);
    let manager_filter = manager_filter(listener.stat_prefix.clone());
    if let Some(Capture::Outbound {
        service_addresses,
        passthrough,
    }) = &listener.capture
    {
        return outbound_capture_listener(
            listener,
            manager_filter,
            service_addresses,
            *passthrough,
        );
    }
    if listener.tls.is_empty() {
        return EnvoyListener {
            name: listener.name.clone(),
            address: Some(socket_address(&listener.address, listener.port)),
            filter_chains: vec![FilterChain {
                filters: vec![manager_filter],
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    // TLS: the inspector reads SNI, and each certificate gets a chain for its names.
    EnvoyListener {
        name: listener.name.clone(),
        address: Some(socket_address(&listener.address, listener.port)),
        listener_filters: vec![tls_inspector()],
        filter_chains: listener
            .tls
            .iter()
            .map(|tls| FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    server_names: tls.server_names.clone(),
                    ..Default::default()
                }),
                filters: vec![manager_filter.clone()],
                transport_socket: Some(tls_socket(DownstreamTlsContext {
                    common_tls_context: Some(CommonTlsContext {
                        tls_certificates: vec![TlsCertificate {
                            certificate_chain: Some(inline_string(&tls.certificate_pem)),
                            private_key: Some(inline_string(&tls.private_key_pem)),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Envoy's `original_dst` listener filter: the connection's local address becomes the one
/// the application addressed before iptables redirected it.
fn original_dst() -> ListenerFilter {
    use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
    listener_filter(
        "envoy.filters.listener.original_dst",
        OriginalDst::default(),
    )
}

fn listener_filter(name: &str, config: impl prost::Name) -> ListenerFilter {
    ListenerFilter {
        name: name.into(),
        config_type: Some(ListenerFilterConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    }
}

/// A captured sidecar's outbound listener: connections to a Service address go to the
/// HTTP connection manager (routed by Host); any other destination to the default chain,
/// a TCP proxy to the passthrough cluster (which connects where the application
/// addressed, or nowhere under registry-only).
fn outbound_capture_listener(
    listener: &Listener,
    manager_filter: Filter,
    service_addresses: &[String],
    passthrough: bool,
) -> EnvoyListener {
    use envoy_types::pb::envoy::config::core::v3::CidrRange;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
        TcpProxy, tcp_proxy::ClusterSpecifier as TcpCluster,
    };
    let prefix_ranges: Vec<CidrRange> = service_addresses
        .iter()
        .map(|ip| CidrRange {
            address_prefix: ip.clone(),
            prefix_len: Some(UInt32Value {
                value: if ip.contains(':') { 128 } else { 32 },
            }),
        })
        .collect();
    let stat_prefix = if passthrough {
        "outbound_passthrough"
    } else {
        "outbound_blackhole"
    };
    let default_chain = FilterChain {
        name: stat_prefix.into(),
        filters: vec![Filter {
            name: "envoy.filters.network.tcp_proxy".into(),
            config_type: Some(FilterConfigType::TypedConfig(pack_any(TcpProxy {
                stat_prefix: stat_prefix.into(),
                cluster_specifier: Some(TcpCluster::Cluster(
                    crate::translate::PASSTHROUGH_CLUSTER.into(),
                )),
                ..Default::default()
            }))),
        }],
        ..Default::default()
    };
    // With no Service, an empty prefix list would match everything: only the default.
    let filter_chains = if prefix_ranges.is_empty() {
        Vec::new()
    } else {
        vec![FilterChain {
            name: "services".into(),
            filter_chain_match: Some(FilterChainMatch {
                prefix_ranges,
                ..Default::default()
            }),
            filters: vec![manager_filter],
            ..Default::default()
        }]
    };
    EnvoyListener {
        name: listener.name.clone(),
        address: Some(socket_address(&listener.address, listener.port)),
        stat_prefix: listener.stat_prefix.clone(),
        listener_filters: vec![original_dst()],
        filter_chains,
        default_filter_chain: Some(default_chain),
        ..Default::default()
    }
}

fn tls_inspector() -> ListenerFilter {
    listener_filter(
        "envoy.filters.listener.tls_inspector",
        TlsInspector::default(),
    )
}

/// A sidecar's inbound listener in its mTLS mode:
/// - Strict: one chain, mTLS only, a client certificate from the mesh CA required;
/// - Permissive: the TLS inspector sends TLS to the mTLS chain and anything else to a
///   plaintext chain (counted under `<stat_prefix>_plaintext`);
/// - Disable: plaintext only.
fn mesh_listener(
    listener: &Listener,
    mode: MtlsMode,
    manager_filter: impl Fn(String, &str) -> Filter,
) -> EnvoyListener {
    // The listener's own table for any port, then one set of chains per port with a table
    // of its own (Envoy matches the destination port before the transport protocol).
    let tables = std::iter::once((None, listener.route_table.as_str())).chain(
        listener
            .port_route_tables
            .iter()
            .map(|(port, table)| (Some(*port), table.as_str())),
    );
    let mut filter_chains = Vec::new();
    for (port, table) in tables {
        let suffix = port.map(|p| format!("/{p}")).unwrap_or_default();
        let chain_match = |transport_protocol: &str| {
            (port.is_some() || !transport_protocol.is_empty()).then(|| FilterChainMatch {
                destination_port: port.map(|p| UInt32Value {
                    value: u32::from(p),
                }),
                transport_protocol: transport_protocol.into(),
                ..Default::default()
            })
        };
        let mtls_chain = |transport_protocol: &str| FilterChain {
            name: format!("mtls{suffix}"),
            filter_chain_match: chain_match(transport_protocol),
            filters: vec![manager_filter(listener.stat_prefix.clone(), table)],
            transport_socket: Some(tls_socket(DownstreamTlsContext {
                common_tls_context: Some(mesh_tls_context()),
                require_client_certificate: Some(BoolValue { value: true }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let plaintext_chain = |stat_prefix: String| FilterChain {
            name: format!("plaintext{suffix}"),
            filter_chain_match: chain_match(""),
            filters: vec![manager_filter(stat_prefix, table)],
            ..Default::default()
        };
        match mode {
            MtlsMode::Strict => filter_chains.push(mtls_chain("")),
            MtlsMode::Disable => filter_chains.push(plaintext_chain(listener.stat_prefix.clone())),
            MtlsMode::Permissive => {
                filter_chains.push(mtls_chain("tls"));
                filter_chains.push(plaintext_chain(format!(
                    "{}{PLAINTEXT_STAT_SUFFIX}",
                    listener.stat_prefix
                )));
            }
        }
    }
    let listener_filters = if mode == MtlsMode::Permissive {
        vec![tls_inspector()]
    } else {
        Vec::new()
    };
    EnvoyListener {
        name: listener.name.clone(),
        address: Some(socket_address(&listener.address, listener.port)),
        // `listener.inbound.*` rather than the address, so the mesh-TLS controller finds
        // the TLS statistics (`ssl.connection_error`) on any port.
        stat_prefix: listener.stat_prefix.clone(),
        listener_filters,
        filter_chains,
        ..Default::default()
    }
}
