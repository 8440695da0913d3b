//! HTTPRoute rules → routes, in the Gateway API's precedence order.

use std::cmp::Reverse;

use weir_crds::{
    gateway_api::{
        GATEWAY_GROUP, HTTPBackendRef, HTTPHeaderFilter, HTTPPathModifier, HTTPRoute,
        HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule,
    },
    traffic_policy::PolicyTargetKind,
};
use weir_store::ClusterState;

use super::{policy, reference_permitted, service_cluster_name, validate};
use crate::model::{
    HeaderChanges, PathMatch, PathRewrite, Redirect, Rewrite, Route, RouteAction, RouteMatch,
    ValueMatch, WeightedBackend,
};

/// A route with what decides its place among the routes of one virtual host.
#[derive(Debug)]
pub(super) struct RankedRoute {
    key: Precedence,
    route: Route,
}

/// The Gateway API's precedence, most specific first: exact path, then regex, then the
/// longest prefix; then a method match, more header matches, more query matches; ties go
/// to the older route (creation time, then namespace/name) and the earlier rule.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Precedence {
    path_kind: u8,
    path_len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query_params: Reverse<usize>,
    created: String,
    route: String,
    rule: usize,
    matcher: usize,
}

/// Orders routes by precedence and drops the ranking.
pub(super) fn in_precedence_order(mut routes: Vec<RankedRoute>) -> Vec<Route> {
    routes.sort_by(|a, b| a.key.cmp(&b.key));
    routes.into_iter().map(|r| r.route).collect()
}

/// Every route an HTTPRoute contributes (one per match of each rule).
pub(super) fn translate_http_route(state: &ClusterState, route: &HTTPRoute) -> Vec<RankedRoute> {
    let ns = route.metadata.namespace.as_deref().unwrap_or("default");
    let name = route.metadata.name.as_deref().unwrap_or("");
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let attached_policy = policy::policy_for(state, ns, PolicyTargetKind::HTTPRoute, name);
    let policy = attached_policy.map(|p| p.spec);
    let mut ranked = Vec::new();
    for (rule_index, rule) in route.spec.rules.iter().enumerate() {
        // What Envoy would refuse is left out, and only that (see `validate`).
        let problems = validate::rule_problems(rule_index, rule);
        let (action, request_headers, response_headers) =
            if problems.iter().any(|p| p.matcher.is_none()) {
                (
                    RouteAction::DirectResponse {
                        status: 500,
                        body: "this route rule cannot be served; see the HTTPRoute's status\n"
                            .into(),
                    },
                    HeaderChanges::default(),
                    HeaderChanges::default(),
                )
            } else {
                rule_action(state, ns, rule)
            };
        let timeout_ms = rule
            .timeouts
            .as_ref()
            .and_then(|t| t.request.as_ref())
            .map(|d| d.get().as_millis() as u64)
            .or_else(|| policy.and_then(policy::timeout_ms));
        let default_match = [HTTPRouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        for (match_index, m) in matches.iter().enumerate() {
            if problems.iter().any(|p| p.matcher == Some(match_index)) {
                continue;
            }
            let matcher = route_match(m);
            let key = Precedence {
                path_kind: match &matcher.path {
                    PathMatch::Exact(_) => 0,
                    PathMatch::Regex(_) => 1,
                    PathMatch::Prefix(_) => 2,
                },
                path_len: Reverse(match &matcher.path {
                    PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Regex(p) => p.len(),
                }),
                method: Reverse(matcher.method.is_some()),
                headers: Reverse(matcher.headers.len()),
                query_params: Reverse(matcher.query_params.len()),
                created: created.clone(),
                route: format!("{ns}/{name}"),
                rule: rule_index,
                matcher: match_index,
            };
            ranked.push(RankedRoute {
                key,
                route: Route {
                    name: format!("{ns}/{name}/rule/{rule_index}/match/{match_index}"),
                    matcher,
                    action: action.clone(),
                    request_headers: request_headers.clone(),
                    response_headers: response_headers.clone(),
                    timeout_ms,
                    retry: policy
                        .and_then(|p| p.retries.as_ref())
                        .map(policy::retry_policy),
                    local_rate_limit: policy
                        .and_then(|p| p.rate_limit.as_ref())
                        .and_then(|r| r.local.as_ref())
                        .map(policy::token_bucket),
                    global_rate_limit: attached_policy.and_then(|p| p.global_limit()),
                },
            });
        }
    }
    ranked
}

fn route_match(m: &HTTPRouteMatch) -> RouteMatch {
    let path = match &m.path {
        None => PathMatch::Prefix("/".into()),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".into());
            match p.type_.as_deref() {
                Some("Exact") => PathMatch::Exact(value),
                Some("RegularExpression") => PathMatch::Regex(value),
                _ => PathMatch::Prefix(trim_prefix(value)),
            }
        }
    };
    let value_match = |type_: &Option<String>, name: &str, value: &str| ValueMatch {
        name: name.to_string(),
        value: value.to_string(),
        regex: type_.as_deref() == Some("RegularExpression"),
    };
    RouteMatch {
        path,
        headers: m
            .headers
            .iter()
            .map(|h| value_match(&h.type_, &h.name.to_ascii_lowercase(), &h.value))
            .collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| value_match(&q.type_, &q.name, &q.value))
            .collect(),
        method: m.method.clone(),
    }
}

/// `/api/` and `/api` are the same prefix in the Gateway API.
fn trim_prefix(prefix: String) -> String {
    if prefix.len() > 1 && prefix.ends_with('/') {
        prefix.trim_end_matches('/').to_string()
    } else {
        prefix
    }
}

/// A rule's action and header changes, from its filters and backends.
fn rule_action(
    state: &ClusterState,
    ns: &str,
    rule: &HTTPRouteRule,
) -> (RouteAction, HeaderChanges, HeaderChanges) {
    let mut request_headers = HeaderChanges::default();
    let mut response_headers = HeaderChanges::default();
    let mut rewrite: Option<Rewrite> = None;
    let mut redirect: Option<Redirect> = None;
    for filter in &rule.filters {
        apply_filter(
            filter,
            &mut request_headers,
            &mut response_headers,
            &mut rewrite,
            &mut redirect,
        );
    }
    if let Some(redirect) = redirect {
        return (
            RouteAction::Redirect(redirect),
            request_headers,
            response_headers,
        );
    }
    let backends: Vec<WeightedBackend> = rule
        .backend_refs
        .iter()
        .filter_map(|b| resolve_backend(state, ns, b).ok())
        .filter(|b| b.weight > 0)
        .collect();
    let action = if backends.is_empty() {
        // The Gateway API's rule: a request whose backends are all invalid gets a 500.
        RouteAction::DirectResponse {
            status: 500,
            body: "no valid backend for this route\n".into(),
        }
    } else {
        RouteAction::Forward { backends, rewrite }
    };
    (action, request_headers, response_headers)
}

fn apply_filter(
    filter: &HTTPRouteFilter,
    request_headers: &mut HeaderChanges,
    response_headers: &mut HeaderChanges,
    rewrite: &mut Option<Rewrite>,
    redirect: &mut Option<Redirect>,
) {
    match filter.type_.as_str() {
        "RequestHeaderModifier" => {
            if let Some(m) = &filter.request_header_modifier {
                merge_headers(request_headers, m);
            }
        }
        "ResponseHeaderModifier" => {
            if let Some(m) = &filter.response_header_modifier {
                merge_headers(response_headers, m);
            }
        }
        "URLRewrite" => {
            if let Some(r) = &filter.url_rewrite {
                *rewrite = Some(Rewrite {
                    host: r.hostname.clone(),
                    path: r.path.as_ref().and_then(path_rewrite),
                });
            }
        }
        "RequestRedirect" => {
            if let Some(r) = &filter.request_redirect {
                *redirect = Some(Redirect {
                    scheme: r.scheme.clone(),
                    host: r.hostname.clone(),
                    port: r.port,
                    path: r.path.as_ref().and_then(path_rewrite),
                    status: r.status_code.unwrap_or(302),
                });
            }
        }
        // Other filter types (ExtensionRef, RequestMirror, CORS) are not supported yet; the
        // route is still served without them.
        _ => {}
    }
}

fn merge_headers(changes: &mut HeaderChanges, filter: &HTTPHeaderFilter) {
    changes.set.extend(
        filter
            .set
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone())),
    );
    changes.add.extend(
        filter
            .add
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone())),
    );
    changes
        .remove
        .extend(filter.remove.iter().map(|h| h.to_ascii_lowercase()));
}

fn path_rewrite(modifier: &HTTPPathModifier) -> Option<PathRewrite> {
    match modifier.type_.as_str() {
        "ReplaceFullPath" => modifier.replace_full_path.clone().map(PathRewrite::Full),
        "ReplacePrefixMatch" => modifier
            .replace_prefix_match
            .clone()
            .map(PathRewrite::Prefix),
        _ => None,
    }
}

/// Why a backendRef does not resolve, with the Gateway API's reason for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BackendProblem {
    /// Not a core Service (`InvalidKind`).
    InvalidKind(String),
    /// In another namespace with no ReferenceGrant there permitting it (`RefNotPermitted`).
    CrossNamespace(String),
    /// No port given (`UnsupportedValue`).
    NoPort(String),
    /// The Service does not exist (`BackendNotFound`).
    ServiceNotFound(String),
    /// The Service has no such port (`BackendNotFound`).
    PortNotFound(String, u16),
}

impl BackendProblem {
    /// The Gateway API reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            BackendProblem::InvalidKind(_) => "InvalidKind",
            BackendProblem::CrossNamespace(_) => "RefNotPermitted",
            BackendProblem::NoPort(_) => "UnsupportedValue",
            BackendProblem::ServiceNotFound(_) | BackendProblem::PortNotFound(..) => {
                "BackendNotFound"
            }
        }
    }

    /// A sentence for the condition's message.
    pub(crate) fn message(&self) -> String {
        match self {
            BackendProblem::InvalidKind(k) => {
                format!("backend kind {k} is not supported; use a Service")
            }
            BackendProblem::CrossNamespace(n) => format!(
                "backend {n} is in another namespace and no ReferenceGrant there permits HTTPRoutes from this one"
            ),
            BackendProblem::NoPort(n) => format!("backend Service {n} needs a port"),
            BackendProblem::ServiceNotFound(n) => format!("backend Service {n} does not exist"),
            BackendProblem::PortNotFound(n, p) => format!("backend Service {n} has no port {p}"),
        }
    }
}

/// The cluster of a backend: a Service port that exists, in the route's namespace or in
/// one whose ReferenceGrant permits it.
pub(crate) fn resolve_backend(
    state: &ClusterState,
    ns: &str,
    backend: &HTTPBackendRef,
) -> Result<WeightedBackend, BackendProblem> {
    if !backend.is_service() {
        return Err(BackendProblem::InvalidKind(format!(
            "{}/{}",
            backend.group.as_deref().unwrap_or(""),
            backend.kind.as_deref().unwrap_or("")
        )));
    }
    let target_ns = backend.namespace.as_deref().unwrap_or(ns);
    let name = format!("{target_ns}/{}", backend.name);
    if !reference_permitted(
        state,
        (GATEWAY_GROUP, "HTTPRoute", ns),
        target_ns,
        ("", "Service", &backend.name),
    ) {
        return Err(BackendProblem::CrossNamespace(name));
    }
    let port = backend
        .port
        .ok_or_else(|| BackendProblem::NoPort(name.clone()))?;
    let service = state
        .services
        .get_namespaced(target_ns, &backend.name)
        .ok_or_else(|| BackendProblem::ServiceNotFound(name.clone()))?;
    let has_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|ports| ports.iter().any(|p| p.port == i32::from(port)));
    if !has_port {
        return Err(BackendProblem::PortNotFound(name, port));
    }
    Ok(WeightedBackend {
        cluster: service_cluster_name(target_ns, &backend.name, port),
        weight: backend.weight.unwrap_or(1),
    })
}
