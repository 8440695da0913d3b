//! The model → Envoy's protobuf resources, in one place (`to_*` functions).
//!
//! Nothing else in Weir builds Envoy protobuf, so Envoy API details (type URLs, filter
//! names, which field carries what) live here and nowhere else.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source,
    transport_socket::ConfigType as TransportSocketConfigType,
};
use envoy_types::pb::{
    envoy::{
        config::ratelimit::v3::RateLimitServiceConfig,
        config::{
            cluster::v3::{
                Cluster as EnvoyCluster,
                cluster::{
                    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, TransportSocketMatch,
                },
            },
            core::v3::{
                Address, AggregatedConfigSource, ApiVersion, ConfigSource, HeaderValue,
                HeaderValueOption, Metadata, RuntimeFractionalPercent, SocketAddress, address,
                config_source::ConfigSourceSpecifier, header_value_option::HeaderAppendAction,
                socket_address::PortSpecifier,
            },
            endpoint::v3::{
                ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
                lb_endpoint::HostIdentifier,
            },
            route::v3::{
                DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
                RetryPolicy as EnvoyRetryPolicy, Route as EnvoyRoute,
                RouteAction as EnvoyRouteAction, RouteConfiguration, RouteMatch as EnvoyRouteMatch,
                Vhds, VirtualHost as EnvoyVirtualHost, WeightedCluster,
                header_matcher::HeaderMatchSpecifier,
                query_parameter_matcher::QueryParameterMatchSpecifier,
                redirect_action,
                route::Action,
                route_action::{ClusterSpecifier, HostRewriteSpecifier},
                route_match::PathSpecifier,
                weighted_cluster::ClusterWeight,
            },
        },
        extensions::filters::http::{
            local_ratelimit::v3::LocalRateLimit,
            ratelimit::v3::{
                RateLimit as RateLimitFilter, RateLimitPerRoute,
                rate_limit::XRateLimitHeadersRfcVersion, rate_limit_per_route::VhRateLimitsOptions,
            },
        },
        extensions::transport_sockets::tls::v3::{
            CertificateValidationContext, CommonTlsContext, SdsSecretConfig, Secret,
            SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
            common_tls_context::ValidationContextType, secret::Type as SecretType,
            subject_alt_name_matcher::SanType,
        },
        r#type::{
            matcher::v3::{
                RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
            },
            v3::{
                FractionalPercent, TokenBucket as EnvoyTokenBucket,
                fractional_percent::DenominatorType,
            },
        },
    },
    google::protobuf::{
        Any, Duration as ProtoDuration, Struct, UInt32Value, Value as ProtoValue,
        value::Kind as ProtoKind,
    },
};
use envoy_types::util::pack_any;

mod listener;
pub use self::listener::to_listener;

use crate::model::{
    Cluster, DescriptorAction, GlobalLimit, HeaderChanges, LoadAssignment, PathMatch, PathRewrite,
    Redirect, RetryPolicy, Route, RouteAction, RouteMatch, RouteTable, TokenBucket, ValueMatch,
    VirtualHost,
};

/// Type URL of clusters (CDS).
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of endpoints (EDS).
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Type URL of listeners (LDS).
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of route configurations (RDS).
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of virtual hosts fetched on demand (VHDS; delta xDS only).
pub const VIRTUAL_HOST_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.VirtualHost";

/// Type URL of secrets (SDS).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The SDS secret holding a proxy's own workload certificate and key (from its agent).
pub const IDENTITY_SECRET: &str = "weir-identity";
/// The SDS secret holding the mesh's trust bundle and the trust domain peers must be in
/// (from the agent).
pub const TRUST_BUNDLE_SECRET: &str = "weir-trust-bundle";
/// The SDS secret holding only the mesh's roots (from the agent): what the bootstrap's
/// connections to the xds-server validate its serving certificate with, by name.
pub const ROOTS_SECRET: &str = "weir-roots";
/// The bootstrap's cluster to the pod's agent (`weir agent`), which serves the workload's
/// secrets over SDS on a Unix socket: the key never leaves the pod.
pub const AGENT_CLUSTER: &str = "weir-agent";
/// Endpoint metadata key (under `envoy.transport_socket_match`) marking endpoints that take
/// mTLS.
const MTLS_MATCH_KEY: &str = "weir.io/mtls";
/// The statistics prefix of a sidecar's inbound listener and of its HTTP connection
/// manager: `listener.inbound.*`, `http.inbound.*` (in Prometheus,
/// `envoy_listener_address="inbound"`, `envoy_http_conn_manager_prefix="inbound"`).
pub const INBOUND_STAT_PREFIX: &str = "inbound";
/// The inbound chain of a Permissive listener that takes plaintext gets its statistics
/// under `<stat_prefix>` + this suffix, so plaintext callers can be counted
/// (`http.inbound_plaintext.downstream_cx_total`).
pub const PLAINTEXT_STAT_SUFFIX: &str = "_plaintext";

/// The name of Envoy's local rate-limit HTTP filter (also its per-route config key).
const LOCAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
const RATE_LIMIT_FILTER: &str = "envoy.filters.http.ratelimit";
/// The bootstrap's cluster for Weir's rate-limit service (`weir bootstrap --rate-limit-addr`).
pub const RATE_LIMIT_CLUSTER: &str = "weir-ratelimit";

/// Envoy's `envoy.filters.http.ratelimit`: asks Weir's rate-limit service about requests
/// on routes with global limits. It fails open when the service cannot be reached (the
/// service itself applies `--rate-limit-failure-mode` when its counters fail), and adds
/// the `X-RateLimit-*` headers.
fn global_rate_limit_filter() -> RateLimitFilter {
    use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
    RateLimitFilter {
        domain: crate::ratelimit::DOMAIN.into(),
        failure_mode_deny: false,
        timeout: Some(duration(250)),
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: RATE_LIMIT_CLUSTER.into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        enable_x_ratelimit_headers: XRateLimitHeadersRfcVersion::DraftVersion03 as i32,
        ..Default::default()
    }
}

/// The actions that build a global limit's descriptor.
fn rate_limit_actions(limit: &GlobalLimit) -> envoy_types::pb::envoy::config::route::v3::RateLimit {
    use envoy_types::pb::envoy::config::route::v3::rate_limit::{
        Action as RateLimitAction,
        action::{ActionSpecifier, GenericKey, RemoteAddress, RequestHeaders},
    };
    let generic = |key: &str, value: &str| RateLimitAction {
        action_specifier: Some(ActionSpecifier::GenericKey(GenericKey {
            descriptor_key: key.into(),
            descriptor_value: value.into(),
            ..Default::default()
        })),
    };
    let mut actions = vec![generic(crate::ratelimit::POLICY_KEY, &limit.policy)];
    for d in &limit.descriptors {
        actions.push(match d {
            DescriptorAction::RemoteAddress => RateLimitAction {
                action_specifier: Some(ActionSpecifier::RemoteAddress(RemoteAddress::default())),
            },
            DescriptorAction::RequestHeader(name) => RateLimitAction {
                action_specifier: Some(ActionSpecifier::RequestHeaders(RequestHeaders {
                    header_name: name.clone(),
                    descriptor_key: format!("header.{name}"),
                    ..Default::default()
                })),
            },
            DescriptorAction::Key(value) => generic("key", value),
        });
    }
    envoy_types::pb::envoy::config::route::v3::RateLimit {
        actions,
        ..Default::default()
    }
}

fn duration(ms: u64) -> ProtoDuration {
    let d = Duration::from_millis(ms);
    ProtoDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn socket_address(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// A cluster: EDS over ADS, or static for a sidecar's own workload.
pub fn to_cluster(cluster: &Cluster) -> EnvoyCluster {
    let mut out = EnvoyCluster {
        name: cluster.name.clone(),
        connect_timeout: Some(duration(cluster.connect_timeout_ms)),
        ..Default::default()
    };
    match &cluster.static_endpoint {
        None if cluster.original_destination => {
            use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
            out.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            out.lb_policy = LbPolicy::ClusterProvided as i32;
        }
        None if cluster.name == crate::translate::PASSTHROUGH_CLUSTER => {
            // Registry-only: a static cluster with no endpoints, so connections close.
            out.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
        }
        None => {
            out.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            out.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: String::new(),
            });
        }
        Some(endpoint) => {
            out.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
            out.load_assignment = Some(to_load_assignment(&LoadAssignment {
                cluster: cluster.name.clone(),
                endpoints: vec![endpoint.clone()],
            }));
        }
    }
    if cluster.mtls {
        // Endpoints marked by EDS get mTLS; the others (no sidecar, or Disable) plaintext.
        out.transport_socket_matches = vec![TransportSocketMatch {
            name: "mtls".into(),
            r#match: Some(mtls_match()),
            transport_socket: Some(tls_socket(UpstreamTlsContext {
                common_tls_context: Some(mesh_tls_context()),
                ..Default::default()
            })),
        }];
    }
    out
}

fn mtls_match() -> Struct {
    Struct {
        fields: [(
            MTLS_MATCH_KEY.to_string(),
            ProtoValue {
                kind: Some(ProtoKind::BoolValue(true)),
            },
        )]
        .into(),
    }
}

fn mtls_endpoint_metadata() -> Metadata {
    Metadata {
        filter_metadata: [("envoy.transport_socket_match".to_string(), mtls_match())].into(),
        ..Default::default()
    }
}

/// A secret the pod's agent serves over SDS ([`AGENT_CLUSTER`]).
pub fn agent_sds(name: &str) -> SdsSecretConfig {
    use envoy_types::pb::envoy::config::core::v3::{
        ApiConfigSource, GrpcService, api_config_source::ApiType, grpc_service,
    };
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: ApiType::Grpc as i32,
                    transport_api_version: ApiVersion::V3 as i32,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                            grpc_service::EnvoyGrpc {
                                cluster_name: AGENT_CLUSTER.into(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    set_node_on_first_message_only: true,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    }
}

/// The proxy's workload certificate, and peers validated against the mesh's trust bundle
/// and trust domain, both over SDS from the pod's agent (so rotation needs no listener or
/// cluster change, and the key is never sent by the xds-server).
fn mesh_tls_context() -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![agent_sds(IDENTITY_SECRET)],
        validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
            agent_sds(TRUST_BUNDLE_SECRET),
        )),
        ..Default::default()
    }
}

fn tls_socket(context: impl prost::Name) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(TransportSocketConfigType::TypedConfig(pack_any(context))),
    }
}

/// The SDS secret with a proxy's workload certificate chain and key.
pub fn to_identity_secret(certificate_chain_pem: &str, private_key_pem: &str) -> Secret {
    Secret {
        name: IDENTITY_SECRET.into(),
        r#type: Some(SecretType::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline_string(certificate_chain_pem)),
            private_key: Some(inline_string(private_key_pem)),
            ..Default::default()
        })),
    }
}

/// The SDS secret with the mesh's roots alone ([`ROOTS_SECRET`]).
pub fn to_roots_secret(roots_pem: &str) -> Secret {
    Secret {
        name: ROOTS_SECRET.into(),
        r#type: Some(SecretType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline_string(roots_pem)),
                ..Default::default()
            },
        )),
    }
}

/// The SDS secret with the mesh's roots; peers must also carry a SPIFFE id in
/// `trust_domain`.
pub fn to_trust_bundle_secret(roots_pem: &str, trust_domain: &str) -> Secret {
    Secret {
        name: TRUST_BUNDLE_SECRET.into(),
        r#type: Some(SecretType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline_string(roots_pem)),
                match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                    san_type: SanType::Uri as i32,
                    matcher: Some(StringMatcher {
                        match_pattern: Some(MatchPattern::Prefix(format!(
                            "spiffe://{trust_domain}/"
                        ))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
    }
}

/// A cluster's endpoints.
pub fn to_load_assignment(assignment: &LoadAssignment) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: assignment.cluster.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: assignment
                .endpoints
                .iter()
                .map(|e| LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
                        address: Some(socket_address(&e.address, e.port)),
                        ..Default::default()
                    })),
                    metadata: e.mtls.then(mtls_endpoint_metadata),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn local_rate_limit(stat_prefix: &str, bucket: Option<&TokenBucket>) -> LocalRateLimit {
    let always = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: DenominatorType::Hundred as i32,
        }),
        runtime_key: String::new(),
    };
    LocalRateLimit {
        stat_prefix: stat_prefix.to_string(),
        token_bucket: bucket.map(|b| EnvoyTokenBucket {
            max_tokens: b.max_tokens,
            tokens_per_fill: Some(UInt32Value {
                value: b.tokens_per_fill,
            }),
            fill_interval: Some(duration(b.fill_interval_ms)),
        }),
        filter_enabled: bucket.map(|_| always()),
        filter_enforced: bucket.map(|_| always()),
        // x-ratelimit-limit / -remaining / -reset on every response the limit covers.
        enable_x_ratelimit_headers: bucket.map_or(0, |_| 1),
        ..Default::default()
    }
}

/// A route table.
pub fn to_route_configuration(table: &RouteTable) -> RouteConfiguration {
    RouteConfiguration {
        name: table.name.clone(),
        virtual_hosts: table.virtual_hosts.iter().map(to_virtual_host).collect(),
        vhds: table.on_demand.then(|| Vhds {
            config_source: Some(ads()),
        }),
        ..Default::default()
    }
}

fn per_filter_rate_limit(
    stat_prefix: &str,
    bucket: Option<&TokenBucket>,
) -> std::collections::HashMap<String, Any> {
    bucket
        .map(|b| {
            (
                LOCAL_RATE_LIMIT_FILTER.to_string(),
                pack_any(local_rate_limit(stat_prefix, Some(b))),
            )
        })
        .into_iter()
        .collect()
}

/// A virtual host, as a route configuration holds it or VHDS sends it.
pub fn to_virtual_host(host: &VirtualHost) -> EnvoyVirtualHost {
    EnvoyVirtualHost {
        name: host.name.clone(),
        domains: host.domains.clone(),
        routes: host.routes.iter().map(to_route).collect(),
        retry_policy: host.retry.as_ref().map(to_retry_policy),
        typed_per_filter_config: per_filter_rate_limit(
            "virtual_host_rate_limit",
            host.local_rate_limit.as_ref(),
        ),
        rate_limits: host
            .global_rate_limit
            .iter()
            .map(rate_limit_actions)
            .collect(),
        ..Default::default()
    }
}

fn to_retry_policy(retry: &RetryPolicy) -> EnvoyRetryPolicy {
    EnvoyRetryPolicy {
        retry_on: retry.retry_on.clone(),
        num_retries: Some(UInt32Value {
            value: retry.attempts,
        }),
        per_try_timeout: retry.per_try_timeout_ms.map(duration),
        ..Default::default()
    }
}

/// A header value as Envoy should send it, literally. Envoy reads `%...%` in header values
/// as its own format commands (`%DOWNSTREAM_REMOTE_ADDRESS%`), and rejects a lone `%`;
/// values from HTTPRoutes are the user's text, so every `%` is escaped as `%%`.
pub fn literal_header_value(value: &str) -> String {
    value.replace('%', "%%")
}

fn header_options(changes: &HeaderChanges) -> Vec<HeaderValueOption> {
    let option = |(name, value): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: name.clone(),
            value: literal_header_value(value),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    changes
        .set
        .iter()
        .map(|h| option(h, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            changes
                .add
                .iter()
                .map(|h| option(h, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

fn to_route(route: &Route) -> EnvoyRoute {
    let action = match &route.action {
        RouteAction::Forward { backends, rewrite } => {
            let cluster_specifier = match backends.as_slice() {
                [single] => ClusterSpecifier::Cluster(single.cluster.clone()),
                many => ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: many
                        .iter()
                        .map(|b| ClusterWeight {
                            name: b.cluster.clone(),
                            weight: Some(UInt32Value { value: b.weight }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
            };
            let mut action = EnvoyRouteAction {
                cluster_specifier: Some(cluster_specifier),
                timeout: route.timeout_ms.map(duration),
                retry_policy: route.retry.as_ref().map(to_retry_policy),
                rate_limits: route
                    .global_rate_limit
                    .iter()
                    .map(rate_limit_actions)
                    .collect(),
                ..Default::default()
            };
            if let Some(rewrite) = rewrite {
                action.host_rewrite_specifier = rewrite
                    .host
                    .clone()
                    .map(HostRewriteSpecifier::HostRewriteLiteral);
                match &rewrite.path {
                    Some(PathRewrite::Prefix(prefix)) => {
                        action.prefix_rewrite = prefix_rewrite(&route.matcher.path, prefix)
                    }
                    Some(PathRewrite::Full(path)) => {
                        action.regex_rewrite = Some(RegexMatchAndSubstitute {
                            pattern: Some(regex("^/.*$")),
                            substitution: path.clone(),
                        });
                    }
                    None => {}
                }
            }
            Action::Route(action)
        }
        RouteAction::Redirect(redirect) => {
            Action::Redirect(to_redirect(redirect, &route.matcher.path))
        }
        RouteAction::DirectResponse { status, body } => {
            Action::DirectResponse(DirectResponseAction {
                status: u32::from(*status),
                body: Some(inline_string(body)),
                ..Default::default()
            })
        }
    };
    EnvoyRoute {
        name: route.name.clone(),
        r#match: Some(to_route_match(&route.matcher)),
        action: Some(action),
        request_headers_to_add: header_options(&route.request_headers),
        request_headers_to_remove: route.request_headers.remove.clone(),
        response_headers_to_add: header_options(&route.response_headers),
        response_headers_to_remove: route.response_headers.remove.clone(),
        typed_per_filter_config: {
            let mut config =
                per_filter_rate_limit("route_rate_limit", route.local_rate_limit.as_ref());
            if route.global_rate_limit.is_some() {
                // The virtual host's global limit applies too: a request passes both.
                config.insert(
                    RATE_LIMIT_FILTER.into(),
                    pack_any(RateLimitPerRoute {
                        vh_rate_limits: VhRateLimitsOptions::Include as i32,
                        ..Default::default()
                    }),
                );
            }
            config
        },
        ..Default::default()
    }
}

/// A prefix rewrite that keeps the path segment boundary: replacing `/api` with `/` in
/// `/api/x` must give `/x`, not `//x`.
fn prefix_rewrite(matched: &PathMatch, replacement: &str) -> String {
    match matched {
        PathMatch::Prefix(prefix) if prefix != "/" && replacement == "/" => String::from("/"),
        _ => replacement.to_string(),
    }
}

fn to_redirect(redirect: &Redirect, matched: &PathMatch) -> RedirectAction {
    let mut out = RedirectAction {
        host_redirect: redirect.host.clone().unwrap_or_default(),
        port_redirect: redirect.port.map(u32::from).unwrap_or_default(),
        response_code: match redirect.status {
            301 => redirect_action::RedirectResponseCode::MovedPermanently as i32,
            _ => redirect_action::RedirectResponseCode::Found as i32,
        },
        ..Default::default()
    };
    if let Some(scheme) = &redirect.scheme {
        out.scheme_rewrite_specifier = Some(
            redirect_action::SchemeRewriteSpecifier::SchemeRedirect(scheme.clone()),
        );
    }
    match &redirect.path {
        Some(PathRewrite::Full(path)) => {
            out.path_rewrite_specifier = Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                path.clone(),
            ));
        }
        Some(PathRewrite::Prefix(prefix)) => {
            out.path_rewrite_specifier =
                Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
                    prefix_rewrite(matched, prefix),
                ));
        }
        None => {}
    }
    out
}

fn inline_string(value: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(value.to_string())),
        ..Default::default()
    }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_string(),
        ..Default::default()
    }
}

fn string_matcher(value: &ValueMatch) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(if value.regex {
            MatchPattern::SafeRegex(regex(&value.value))
        } else {
            MatchPattern::Exact(value.value.clone())
        }),
        ..Default::default()
    }
}

fn to_route_match(matcher: &RouteMatch) -> EnvoyRouteMatch {
    let path = match &matcher.path {
        PathMatch::Exact(p) => PathSpecifier::Path(p.clone()),
        PathMatch::Prefix(p) if p == "/" => PathSpecifier::Prefix("/".into()),
        // Segment-wise prefix: `/api` takes `/api` and `/api/x`, not `/apix`.
        PathMatch::Prefix(p) => PathSpecifier::PathSeparatedPrefix(p.clone()),
        PathMatch::Regex(p) => PathSpecifier::SafeRegex(regex(p)),
    };
    let mut headers: Vec<HeaderMatcher> = matcher
        .headers
        .iter()
        .map(|h| HeaderMatcher {
            name: h.name.clone(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string_matcher(h))),
            ..Default::default()
        })
        .collect();
    if let Some(method) = &matcher.method {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string_matcher(
                &ValueMatch {
                    name: ":method".into(),
                    value: method.clone(),
                    regex: false,
                },
            ))),
            ..Default::default()
        });
    }
    EnvoyRouteMatch {
        path_specifier: Some(path),
        headers,
        query_parameters: matcher
            .query_params
            .iter()
            .map(|q| QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(
                    string_matcher(q),
                )),
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_sent_literally() {
        let changes = HeaderChanges {
            set: vec![("x-offer".into(), "50% off".into())],
            add: vec![("x-who".into(), "%DOWNSTREAM_REMOTE_ADDRESS%".into())],
            remove: Vec::new(),
        };
        let values: Vec<String> = header_options(&changes)
            .into_iter()
            .filter_map(|o| o.header.map(|h| h.value))
            .collect();
        // Envoy turns `%%` back into `%` and substitutes nothing.
        assert_eq!(values, ["50%% off", "%%DOWNSTREAM_REMOTE_ADDRESS%%"]);
    }
}
