//! What a sidecar is told about: every Service, or those its MeshPolicy's `egress` lists
//! (Istio's `Sidecar.egress`), plus whatever their routes forward to.
//!
//! A scoped sidecar's outbound route table holds only its Services' virtual hosts, its
//! clusters only what those routes name, and a captured sidecar's outbound listener
//! routes only their ClusterIPs (other destinations meet `outboundTrafficPolicy`). So its
//! configuration follows what its workload calls, not the size of the mesh, and a change
//! to a Service it does not call changes nothing it holds: no push.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use weir_store::{ClusterState, ObjectKey};

use crate::model::{RouteAction, RouteTable};

/// One `<namespace>/<service>` pattern of an egress list, resolved against the sidecar's
/// namespace: `None` matches any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern<'a> {
    namespace: Option<&'a str>,
    service: Option<&'a str>,
}

impl<'a> Pattern<'a> {
    /// Parses `host`; `None` for a malformed one (the CRD's validation refuses those, so
    /// only objects that skipped it get here, and they select nothing).
    fn parse(host: &'a str, own_namespace: &'a str) -> Option<Self> {
        let (namespace, service) = host.split_once('/')?;
        if namespace.is_empty() || service.is_empty() || service.contains('/') {
            return None;
        }
        Some(Pattern {
            namespace: match namespace {
                "*" => None,
                "." => Some(own_namespace),
                ns => Some(ns),
            },
            service: (service != "*").then_some(service),
        })
    }
}

/// The Services a sidecar in `namespace` with `egress` hosts (`None`: every Service) is
/// told about, in key order.
pub(super) fn services<'a>(
    state: &'a ClusterState,
    namespace: &str,
    egress: Option<&[String]>,
) -> Vec<(&'a ObjectKey, &'a Service)> {
    let Some(hosts) = egress else {
        return state.services.iter().map(|(k, s)| (k, &**s)).collect();
    };
    let mut chosen: BTreeMap<&ObjectKey, &Service> = BTreeMap::new();
    for pattern in hosts.iter().filter_map(|h| Pattern::parse(h, namespace)) {
        match pattern {
            // The common case, one Service: a lookup, not a scan.
            Pattern {
                namespace: Some(ns),
                service: Some(name),
            } => {
                if let Some((key, service)) = state.services.get_keyed(ns, name) {
                    chosen.insert(key, &**service);
                }
            }
            Pattern {
                namespace: Some(ns),
                service: None,
            } => {
                chosen.extend(
                    state
                        .services
                        .in_namespace_keyed(ns)
                        .map(|(k, s)| (k, &**s)),
                );
            }
            Pattern {
                namespace: None,
                service,
            } => {
                for (key, s) in state.services.iter() {
                    if service.is_none_or(|name| key.name == name) {
                        chosen.insert(key, s);
                    }
                }
            }
        }
    }
    chosen.into_iter().collect()
}

/// Every cluster the routes of `tables` send to.
pub(crate) fn routed_clusters(tables: &[RouteTable]) -> BTreeSet<&str> {
    tables
        .iter()
        .flat_map(|t| &t.virtual_hosts)
        .flat_map(|h| &h.routes)
        .flat_map(|r| match &r.action {
            RouteAction::Forward { backends, .. } => backends.as_slice(),
            _ => &[],
        })
        .map(|b| b.cluster.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_resolve_own_namespace_and_wildcards_and_refuse_malformed_hosts() {
        let p = |h| Pattern::parse(h, "shop");
        assert_eq!(
            p("./*"),
            Some(Pattern {
                namespace: Some("shop"),
                service: None
            })
        );
        assert_eq!(
            p("*/dns"),
            Some(Pattern {
                namespace: None,
                service: Some("dns")
            })
        );
        assert_eq!(
            p("pay/api"),
            Some(Pattern {
                namespace: Some("pay"),
                service: Some("api")
            })
        );
        for bad in ["api", "/api", "pay/", "a/b/c"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
