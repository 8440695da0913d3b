//! Gateway API status, computed from the stores: per HTTPRoute parent `Accepted` and
//! `ResolvedRefs`, per Gateway `Accepted` and `Programmed`, per listener `attachedRoutes`,
//! with the Gateway API's reason strings. Pure: in a cluster a status writer applies it to
//! the objects, in local mode the admin endpoint shows it.
//!
//! Rejections by proxies (NACKs) are attributed to the objects behind the rejected
//! resources: HTTPRoutes get `weir.io/Programmed: False` (the Gateway API defines no
//! Programmed condition for routes), Gateways `Programmed: False`.

use std::collections::BTreeMap;

use serde::Serialize;
use weir_crds::gateway_api::{Gateway, HTTPRoute};
use weir_store::ClusterState;

use crate::translate::{
    gateway::{
        attaches, hostnames, is_weirs, listener_allows, listener_conflicts, parent_names_gateway,
        parent_names_listener,
    },
    routes::resolve_backend,
};

/// One condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConditionStatus {
    /// The condition type.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// The reason, CamelCase.
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

fn condition(
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: impl Into<String>,
) -> ConditionStatus {
    ConditionStatus {
        type_,
        status: if ok { "True" } else { "False" },
        reason,
        message: message.into(),
    }
}

/// A route's status for one parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParentStatus {
    /// The parent, `Kind namespace/name[/section]`.
    pub parent: String,
    /// The parentRef as the route wrote it (status entries repeat it).
    #[serde(skip)]
    pub parent_ref: weir_crds::gateway_api::ParentReference,
    /// Accepted, ResolvedRefs, and weir.io/Programmed when a proxy rejected it.
    pub conditions: Vec<ConditionStatus>,
}

/// One listener's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerStatus {
    /// The listener.
    pub name: String,
    /// Routes attached to it.
    pub attached_routes: u32,
    /// Accepted, ResolvedRefs, Programmed.
    pub conditions: Vec<ConditionStatus>,
}

/// A Gateway's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayStatus {
    /// Where it is reached, where Weir runs it ([`crate::gateway_readiness`]); `None`:
    /// whoever runs it sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<weir_crds::gateway_api::GatewayStatusAddress>>,
    /// Accepted, Programmed.
    pub conditions: Vec<ConditionStatus>,
    /// Per listener.
    pub listeners: Vec<ListenerStatus>,
}

/// The status of Weir's GatewayClasses (by name), and of every Gateway of those classes
/// and every HTTPRoute (by `namespace/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// GatewayClasses naming Weir's controller: their conditions.
    pub gateway_classes: BTreeMap<String, Vec<ConditionStatus>>,
    /// Gateways.
    pub gateways: BTreeMap<String, GatewayStatus>,
    /// HTTPRoutes, one entry per parentRef.
    pub http_routes: BTreeMap<String, Vec<ParentStatus>>,
    /// GatewayParameters (by `namespace/name`): Accepted, or why not.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_parameters: BTreeMap<String, Vec<ConditionStatus>>,
}

/// A proxy's rejection of a configuration it still has not accepted a newer version of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The proxy.
    pub proxy: String,
    /// Envoy's error.
    pub message: String,
    /// The objects behind the rejected resources, as `Kind namespace/name`.
    pub objects: Vec<String>,
}

/// Listener protocols Weir programs.
fn supported(protocol: &str) -> bool {
    protocol == "HTTP" || protocol == "HTTPS"
}

/// Computes the status of every Gateway and HTTPRoute in `state`.
pub fn compute_status(state: &ClusterState, rejections: &[Rejection]) -> StatusReport {
    let mut report = StatusReport::default();
    let rejected = |kind: &str, key: &str| -> Option<&Rejection> {
        let id = format!("{kind} {key}");
        rejections.iter().find(|r| r.objects.contains(&id))
    };

    for (key, class) in state.gateway_classes.iter() {
        if class.is_weirs() {
            report.gateway_classes.insert(
                key.name.clone(),
                vec![condition(
                    "Accepted",
                    true,
                    "Accepted",
                    "Weir implements Gateways of this class",
                )],
            );
        }
    }

    for (key, parameters) in state.gateway_parameters.iter() {
        let accepted = match crate::gateway_infrastructure::check_parameters(&parameters.spec) {
            Ok(()) => condition("Accepted", true, "Accepted", "valid"),
            Err(problem) => condition("Accepted", false, "Invalid", problem),
        };
        report
            .gateway_parameters
            .insert(key.to_string(), vec![accepted]);
    }

    for (key, gateway) in state.gateways.iter() {
        if !is_weirs(state, gateway) {
            continue;
        }
        let conflicts = listener_conflicts(gateway);
        let listeners: Vec<ListenerStatus> = gateway
            .spec
            .listeners
            .iter()
            .map(|listener| {
                let attached = state
                    .http_routes
                    .iter()
                    .filter(|(_, route)| attaches(state, gateway, listener, route))
                    .count() as u32;
                let gateway_ns = key.namespace.as_deref().unwrap_or("default");
                let certificate = (listener.protocol == "HTTPS")
                    .then(|| {
                        crate::translate::gateway::listener_tls(state, gateway_ns, listener).err()
                    })
                    .flatten();
                let conflict = conflicts.get(&listener.name);
                let ok =
                    supported(&listener.protocol) && certificate.is_none() && conflict.is_none();
                let conflicted = match conflict {
                    None => condition("Conflicted", false, "NoConflicts", "no conflicts"),
                    Some((reason, message)) => ConditionStatus {
                        type_: "Conflicted",
                        status: "True",
                        reason,
                        message: message.clone(),
                    },
                };
                let resolved = match &certificate {
                    None => condition("ResolvedRefs", true, "ResolvedRefs", "references resolved"),
                    Some(why) => condition("ResolvedRefs", false, why.reason, why.message.clone()),
                };
                let accepted = if supported(&listener.protocol) {
                    condition("Accepted", true, "Accepted", "listener accepted")
                } else {
                    condition(
                        "Accepted",
                        false,
                        "UnsupportedProtocol",
                        format!(
                            "protocol {} is not supported yet (HTTP is)",
                            listener.protocol
                        ),
                    )
                };
                ListenerStatus {
                    name: listener.name.clone(),
                    attached_routes: attached,
                    conditions: vec![
                        accepted,
                        resolved,
                        conflicted,
                        condition(
                            "Programmed",
                            ok,
                            if ok { "Programmed" } else { "Invalid" },
                            if ok { "programmed" } else { "not programmed" },
                        ),
                    ],
                }
            })
            .collect();
        let any_programmed = listeners.iter().any(|l| {
            l.conditions
                .iter()
                .any(|c| c.type_ == "Programmed" && c.status == "True")
        });
        let mut programmed = if any_programmed {
            condition(
                "Programmed",
                true,
                "Programmed",
                "configuration is served to the gateway's proxies",
            )
        } else {
            condition(
                "Programmed",
                false,
                "Invalid",
                "no listener can be programmed",
            )
        };
        if let Some(r) = rejected("Gateway", &key.to_string()) {
            programmed = condition(
                "Programmed",
                false,
                "Invalid",
                format!(
                    "proxy {} rejected the configuration: {}",
                    r.proxy, r.message
                ),
            );
        }
        let accepted = if any_programmed {
            condition("Accepted", true, "Accepted", "gateway accepted")
        } else {
            condition(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener is valid",
            )
        };
        report.gateways.insert(
            key.to_string(),
            GatewayStatus {
                addresses: None,
                conditions: vec![accepted, programmed],
                listeners,
            },
        );
    }

    for (key, route) in state.http_routes.iter() {
        let route_ns = key.namespace.as_deref().unwrap_or("default");
        let resolved = resolved_refs(state, route_ns, route);
        let problems = crate::translate::validate::route_problems(route);
        let programmed = rejected("HTTPRoute", &key.to_string()).map(|r| {
            condition(
                "weir.io/Programmed",
                false,
                "Rejected",
                format!(
                    "proxy {} rejected the configuration built from this route: {}",
                    r.proxy, r.message
                ),
            )
        });
        let parents = route
            .spec
            .parent_refs
            .iter()
            .filter(|parent| {
                // Parents that are another controller's Gateways are theirs to report.
                let ns = parent.namespace.as_deref().unwrap_or(route_ns);
                parent.is_service()
                    || state
                        .gateways
                        .get_namespaced(ns, &parent.name)
                        .is_none_or(|g| is_weirs(state, g))
            })
            .map(|parent| {
                let ns = parent.namespace.as_deref().unwrap_or(route_ns);
                let section = parent
                    .section_name
                    .as_ref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                let (kind, accepted) = if parent.is_service() {
                    let found = state.services.get_namespaced(ns, &parent.name).is_some();
                    let accepted = if found {
                        condition(
                            "Accepted",
                            true,
                            "Accepted",
                            "attached to the Service (mesh routing)",
                        )
                    } else {
                        condition(
                            "Accepted",
                            false,
                            "NoMatchingParent",
                            format!("Service {ns}/{} does not exist", parent.name),
                        )
                    };
                    ("Service", accepted)
                } else {
                    (
                        "Gateway",
                        gateway_acceptance(
                            state,
                            route_ns,
                            route,
                            parent,
                            state
                                .gateways
                                .get_namespaced(ns, &parent.name)
                                .map(AsRef::as_ref),
                        ),
                    )
                };
                // Parts Envoy would refuse are left out of what is pushed; the route says so.
                let accepted = match problems.first() {
                    Some(first) if accepted.status == "True" => condition(
                        "Accepted",
                        false,
                        "UnsupportedValue",
                        match problems.len() {
                            1 => format!("{first}; that part is not served"),
                            n => {
                                format!("{first} (and {} more); those parts are not served", n - 1)
                            }
                        },
                    ),
                    _ => accepted,
                };
                let mut conditions = vec![accepted, resolved.clone()];
                conditions.extend(programmed.clone());
                ParentStatus {
                    parent: format!("{kind} {ns}/{}{section}", parent.name),
                    parent_ref: parent.clone(),
                    conditions,
                }
            })
            .collect();
        report.http_routes.insert(key.to_string(), parents);
    }
    report
}

fn resolved_refs(state: &ClusterState, route_ns: &str, route: &HTTPRoute) -> ConditionStatus {
    let problem = route
        .spec
        .rules
        .iter()
        .flat_map(|rule| &rule.backend_refs)
        .find_map(|backend| resolve_backend(state, route_ns, backend).err());
    match problem {
        None => condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all backends resolved",
        ),
        Some(problem) => condition("ResolvedRefs", false, problem.reason(), problem.message()),
    }
}

fn gateway_acceptance(
    state: &ClusterState,
    route_ns: &str,
    route: &HTTPRoute,
    parent: &weir_crds::gateway_api::ParentReference,
    gateway: Option<&Gateway>,
) -> ConditionStatus {
    let Some(gateway) = gateway.filter(|g| parent_names_gateway(route_ns, parent, g)) else {
        return condition(
            "Accepted",
            false,
            "NoMatchingParent",
            format!("Gateway {} does not exist", parent.name),
        );
    };
    let named: Vec<_> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| parent_names_listener(route_ns, parent, gateway, l))
        .collect();
    if named.is_empty() {
        return condition(
            "Accepted",
            false,
            "NoMatchingParent",
            "no listener matches the parentRef's sectionName and port",
        );
    }
    let allowed: Vec<_> = named
        .into_iter()
        .filter(|l| listener_allows(state, l, gateway, route_ns))
        .collect();
    if allowed.is_empty() {
        return condition(
            "Accepted",
            false,
            "NotAllowedByListeners",
            "the listeners' allowedRoutes do not admit this route",
        );
    }
    if allowed
        .iter()
        .all(|l| hostnames(l.hostname.as_deref(), &route.spec.hostnames).is_empty())
    {
        return condition(
            "Accepted",
            false,
            "NoMatchingListenerHostname",
            "no route hostname matches a listener hostname",
        );
    }
    condition("Accepted", true, "Accepted", "attached to the Gateway")
}

/// The objects behind one type of a proxy's configuration, as `Kind namespace/name`, for
/// attributing a NACK: HTTPRoutes behind route tables, Services behind clusters and
/// endpoints, the Gateway behind a gateway's listeners.
///
/// Envoy's error usually quotes what it refused (a regular expression, a domain, a header,
/// an address, a cluster name). When `message` quotes something only some objects
/// produced, the NACK is theirs alone; otherwise it is every object behind the type.
pub fn objects_behind(
    config: &crate::model::ProxyConfig,
    proxy: &crate::translate::ProxyId,
    type_url: &str,
    message: &str,
) -> Vec<String> {
    use crate::envoy::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
    // (object, the texts it put into this type that Envoy could quote)
    let contributions: Vec<(String, Vec<String>)> = match type_url {
        ROUTE_TYPE => config
            .route_tables
            .iter()
            .flat_map(|t| &t.virtual_hosts)
            .flat_map(|host| {
                // A virtual host of a Service (sidecars) is named after its cluster.
                let service = service_of_cluster(&host.name)
                    .map(|svc| (format!("Service {svc}"), host.domains.clone()));
                let routes = host.routes.iter().filter_map(|r| {
                    r.name
                        .split_once("/rule/")
                        .map(|(route, _)| (format!("HTTPRoute {route}"), route_texts(r)))
                });
                service.into_iter().chain(routes).collect::<Vec<_>>()
            })
            .collect(),
        CLUSTER_TYPE | ENDPOINT_TYPE => config
            .clusters
            .iter()
            .filter_map(|c| {
                let service = service_of_cluster(&c.name)?;
                let addresses = config
                    .load_assignments
                    .iter()
                    .filter(|a| a.cluster == c.name)
                    .flat_map(|a| a.endpoints.iter().map(|e| e.address.clone()));
                let texts = std::iter::once(c.name.clone()).chain(addresses).collect();
                Some((format!("Service {service}"), texts))
            })
            .collect(),
        LISTENER_TYPE if proxy.role == crate::translate::Role::Gateway => {
            vec![(
                format!("Gateway {}/{}", proxy.namespace, proxy.name),
                Vec::new(),
            )]
        }
        _ => Vec::new(),
    };
    // Texts too short or too common to point at anything are not evidence.
    let quoted = |text: &String| text.len() >= 4 && message.contains(text.as_str());
    let named: Vec<&String> = contributions
        .iter()
        .filter(|(_, texts)| texts.iter().any(quoted))
        .map(|(object, _)| object)
        .collect();
    let mut objects: Vec<String> = if named.is_empty() {
        contributions.iter().map(|(o, _)| o.clone()).collect()
    } else {
        named.into_iter().cloned().collect()
    };
    objects.sort();
    objects.dedup();
    objects
}

/// `namespace/service` of a Service port's cluster (`namespace/service/port`).
fn service_of_cluster(name: &str) -> Option<String> {
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("inbound"), _, _) => None,
        (Some(ns), Some(svc), Some(port)) if port.parse::<u16>().is_ok() => {
            Some(format!("{ns}/{svc}"))
        }
        _ => None,
    }
}

/// What a route put into a route table that Envoy's errors quote: its regular
/// expressions, and the headers it modifies with their values.
fn route_texts(route: &crate::model::Route) -> Vec<String> {
    let mut texts = Vec::new();
    if let crate::model::PathMatch::Regex(pattern) = &route.matcher.path {
        texts.push(pattern.clone());
    }
    let matches = route
        .matcher
        .headers
        .iter()
        .chain(&route.matcher.query_params);
    texts.extend(matches.filter(|m| m.regex).map(|m| m.value.clone()));
    for changes in [&route.request_headers, &route.response_headers] {
        for (name, value) in changes.set.iter().chain(&changes.add) {
            texts.push(name.clone());
            texts.push(value.clone());
        }
        texts.extend(changes.remove.iter().cloned());
    }
    texts
}

/// The rejections still in force: proxies whose last response of a type was NACKed and
/// not followed by an accepted one.
pub fn current_rejections(proxies: &[crate::registry::ProxyStatus]) -> Vec<Rejection> {
    proxies
        .iter()
        .flat_map(|proxy| {
            proxy.types.values().filter_map(move |status| {
                let nack = status.last_nack.as_ref()?;
                (status.acked != status.sent
                    && status.sent.as_deref() == Some(nack.version.as_str()))
                .then(|| Rejection {
                    proxy: proxy.node_id.clone(),
                    message: nack.message.clone(),
                    objects: nack.objects.clone(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        envoy::{CLUSTER_TYPE, ROUTE_TYPE},
        test_support::state,
        translate::{ProxyId, ProxyOptions, translate},
    };

    const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: files, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: images, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: files}]
  rules:
  - matches: [{path: {type: RegularExpression, value: '^/img/[a-z]{1,64}\.png$'}}]
    backendRefs: [{name: files, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: pages, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-page, value: home}]}}]
    backendRefs: [{name: web, port: 80}]
"#;

    #[test]
    fn a_nack_is_attributed_to_the_objects_whose_text_envoy_quotes() {
        let state = state(MESH);
        let proxy: ProxyId = "sidecar~client-0.shop".parse().unwrap();
        let config = translate(&state, &proxy, &ProxyOptions::default());
        let behind = |type_url, message| objects_behind(&config, &proxy, type_url, message);
        // Envoy quotes the regular expression: only the route that wrote it.
        assert_eq!(
            behind(
                ROUTE_TYPE,
                r"regex '^/img/[a-z]{1,64}\.png$' RE2 program size of 341 > max program size of 100"
            ),
            ["HTTPRoute shop/images"]
        );
        // A duplicate domain: the Service whose virtual host holds it.
        assert_eq!(
            behind(
                ROUTE_TYPE,
                "Only unique values for domains are permitted. Duplicate entry of domain web.shop:80 in route outbound"
            ),
            ["Service shop/web"]
        );
        // Nothing quoted: everything behind the type, as before.
        let all = behind(ROUTE_TYPE, "Proto constraint validation failed");
        assert!(
            all.contains(&"HTTPRoute shop/images".to_string()),
            "{all:?}"
        );
        assert!(all.contains(&"HTTPRoute shop/pages".to_string()), "{all:?}");
        assert!(all.contains(&"Service shop/web".to_string()), "{all:?}");
        // Clusters: the one Envoy names.
        assert_eq!(
            behind(CLUSTER_TYPE, "cluster 'shop/files/80': bad config"),
            ["Service shop/files"]
        );
    }
}
