//! What to write to the objects' status in a cluster, from a [`StatusReport`]. Pure: the
//! caller passes the time and applies the patches.
//!
//! - Conditions keep their `lastTransitionTime` while their status stays the same and carry
//!   the object's `metadata.generation` as `observedGeneration`.
//! - An HTTPRoute's `status.parents` is shared with other controllers: entries whose
//!   `controllerName` is not Weir's are kept as they are, Weir's are replaced. Weir writes
//!   entries for Service parents and its own Gateways, not for Gateways that do not exist
//!   (their class, and so their controller, is unknown; `/debug/status` still shows them).
//! - An object whose status would not change gets no patch, so writing is idempotent and a
//!   status write seen back through the watch does not cause another one.
//! - Each patch is a JSON merge patch of `status` carrying the `resourceVersion` the status
//!   was computed from: a concurrent change makes the API server refuse it (409) and the
//!   next round recomputes it from the newer object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use serde::Serialize;
use serde_json::{Value, json};
use weir_crds::conditions::{NewCondition, merge_conditions};
use weir_crds::gateway_api::{
    GATEWAY_GROUP, GatewayClassStatus, GatewayStatus as GatewayStatusObject, HTTPRouteStatus,
    ListenerStatus as ListenerStatusObject, ParentReference, RouteGroupKind, RouteParentStatus,
    WEIR_CONTROLLER,
};
use weir_crds::gateway_parameters::GatewayParametersStatus;
use weir_store::{ClusterState, Kind, ObjectKey};

use crate::status::{ConditionStatus, StatusReport};

/// One status write.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusPatch {
    /// GatewayClass, Gateway, HTTPRoute or GatewayParameters.
    pub kind: Kind,
    /// The object.
    pub key: ObjectKey,
    /// The JSON merge patch for the status subresource.
    pub patch: Value,
}

/// The patches that bring every object Weir reports on to `report`, at time `now`.
pub fn status_patches(state: &ClusterState, report: &StatusReport, now: &Time) -> Vec<StatusPatch> {
    let mut patches = Vec::new();
    for (name, computed) in &report.gateway_classes {
        let key = ObjectKey::cluster(name.as_str());
        let Some(class) = state.gateway_classes.get(&key) else {
            continue;
        };
        let existing = class.status.clone().unwrap_or_default();
        let desired = GatewayClassStatus {
            conditions: conditions(
                computed,
                &existing.conditions,
                generation(class.as_ref()),
                now,
            ),
        };
        if desired != existing {
            patches.push(patch(Kind::GatewayClass, key, class.as_ref(), &desired));
        }
    }
    for (key, computed) in &report.gateways {
        let Some(key) = parse_key(key) else { continue };
        let Some(gateway) = state.gateways.get(&key) else {
            continue;
        };
        let existing = gateway.status.clone().unwrap_or_default();
        let generation = generation(gateway.as_ref());
        let desired = GatewayStatusObject {
            // Weir's when it runs the Gateway; else whoever does sets them.
            addresses: computed
                .addresses
                .clone()
                .unwrap_or_else(|| existing.addresses.clone()),
            conditions: conditions(&computed.conditions, &existing.conditions, generation, now),
            listeners: computed
                .listeners
                .iter()
                .map(|listener| {
                    let before = existing
                        .listeners
                        .iter()
                        .find(|l| l.name == listener.name)
                        .map(|l| l.conditions.as_slice())
                        .unwrap_or_default();
                    let protocol = gateway
                        .spec
                        .listeners
                        .iter()
                        .find(|l| l.name == listener.name)
                        .map(|l| l.protocol.as_str())
                        .unwrap_or_default();
                    ListenerStatusObject {
                        name: listener.name.clone(),
                        attached_routes: i32::try_from(listener.attached_routes)
                            .unwrap_or(i32::MAX),
                        supported_kinds: supported_kinds(protocol),
                        conditions: conditions(&listener.conditions, before, generation, now),
                    }
                })
                .collect(),
        };
        if desired != existing {
            patches.push(patch(Kind::Gateway, key, gateway.as_ref(), &desired));
        }
    }
    for (key, computed) in &report.gateway_parameters {
        let Some(key) = parse_key(key) else { continue };
        let Some(parameters) = state.gateway_parameters.get(&key) else {
            continue;
        };
        let existing = parameters.status.clone().unwrap_or_default();
        let desired = GatewayParametersStatus {
            conditions: conditions(
                computed,
                &existing.conditions,
                generation(parameters.as_ref()),
                now,
            ),
        };
        if desired != existing {
            patches.push(patch(
                Kind::GatewayParameters,
                key,
                parameters.as_ref(),
                &desired,
            ));
        }
    }
    for (key, parents) in &report.http_routes {
        let Some(key) = parse_key(key) else { continue };
        let Some(route) = state.http_routes.get(&key) else {
            continue;
        };
        let existing = route.status.clone().unwrap_or_default();
        let generation = generation(route.as_ref());
        let mut desired = HTTPRouteStatus {
            parents: existing
                .parents
                .iter()
                .filter(|p| p.controller_name != WEIR_CONTROLLER)
                .cloned()
                .collect(),
        };
        for parent in parents {
            if !parent.parent_ref.is_service() && !gateway_exists(state, &key, &parent.parent_ref) {
                continue;
            }
            let before = existing
                .parents
                .iter()
                .find(|p| p.controller_name == WEIR_CONTROLLER && p.parent_ref == parent.parent_ref)
                .map(|p| p.conditions.as_slice())
                .unwrap_or_default();
            desired.parents.push(RouteParentStatus {
                parent_ref: parent.parent_ref.clone(),
                controller_name: WEIR_CONTROLLER.to_string(),
                conditions: conditions(&parent.conditions, before, generation, now),
            });
        }
        if desired != existing {
            patches.push(patch(Kind::HTTPRoute, key, route.as_ref(), &desired));
        }
    }
    patches
}

/// Kubernetes conditions from computed ones, keeping `lastTransitionTime` from `before`
/// for a condition whose status did not change.
pub fn conditions(
    computed: &[ConditionStatus],
    before: &[Condition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    merge_conditions(
        computed.iter().map(|c| NewCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: &c.message,
        }),
        before,
        observed_generation,
        now,
    )
}

fn gateway_exists(state: &ClusterState, route: &ObjectKey, parent: &ParentReference) -> bool {
    let namespace = parent
        .namespace
        .as_deref()
        .or(route.namespace.as_deref())
        .unwrap_or("default");
    state
        .gateways
        .get_namespaced(namespace, &parent.name)
        .is_some()
}

fn supported_kinds(protocol: &str) -> Vec<RouteGroupKind> {
    match protocol {
        "HTTP" | "HTTPS" => vec![RouteGroupKind {
            group: Some(GATEWAY_GROUP.to_string()),
            kind: "HTTPRoute".to_string(),
        }],
        _ => Vec::new(),
    }
}

fn generation<K: Resource>(object: &K) -> Option<i64> {
    object.meta().generation
}

fn parse_key(key: &str) -> Option<ObjectKey> {
    let (namespace, name) = key.split_once('/')?;
    Some(ObjectKey::namespaced(namespace, name))
}

fn patch<K: Resource>(
    kind: Kind,
    key: ObjectKey,
    object: &K,
    status: &impl Serialize,
) -> StatusPatch {
    let mut patch = json!({ "status": status });
    if let Some(version) = &object.meta().resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    StatusPatch { kind, key, patch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{status::compute_status, test_support::state};

    const CONFIG: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weir, generation: 1, resourceVersion: "10"}
spec: {controllerName: weir.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra, generation: 3, resourceVersion: "11"}
spec:
  gatewayClassName: weir
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: web}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: web, generation: 2, resourceVersion: "12"}
spec:
  parentRefs: [{name: edge, namespace: infra}, {name: istio-gw, namespace: infra}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
status:
  parents:
  - parentRef: {name: istio-gw, namespace: infra}
    controllerName: istio.io/gateway-controller
    conditions:
    - {type: Accepted, status: "True", reason: Accepted, message: ok, lastTransitionTime: "2026-01-01T00:00:00Z"}
"#;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    /// Applies `patches` to `state` as the API server would (status replaced by the patch's).
    fn apply(state: &mut ClusterState, patches: &[StatusPatch]) {
        for p in patches {
            let status = p.patch["status"].clone();
            match p.kind {
                Kind::GatewayClass => {
                    let mut class = state.gateway_classes.get(&p.key).unwrap().as_ref().clone();
                    class.status = Some(serde_json::from_value(status).unwrap());
                    state.gateway_classes.insert(class.into());
                }
                Kind::Gateway => {
                    let mut gateway = state.gateways.get(&p.key).unwrap().as_ref().clone();
                    gateway.status = Some(serde_json::from_value(status).unwrap());
                    state.gateways.insert(gateway.into());
                }
                Kind::HTTPRoute => {
                    let mut route = state.http_routes.get(&p.key).unwrap().as_ref().clone();
                    route.status = Some(serde_json::from_value(status).unwrap());
                    state.http_routes.insert(route.into());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn writes_each_object_once_and_keeps_other_controllers_entries() {
        let mut state = state(CONFIG);
        let now = time("2026-11-22T10:00:00Z");
        let report = compute_status(&state, &[]);
        let patches = status_patches(&state, &report, &now);
        let kinds: Vec<Kind> = patches.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [Kind::GatewayClass, Kind::Gateway, Kind::HTTPRoute]);

        let route = &patches[2].patch;
        assert_eq!(route["metadata"]["resourceVersion"], "12");
        let parents = route["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2, "{parents:?}");
        assert_eq!(parents[0]["controllerName"], "istio.io/gateway-controller");
        assert_eq!(parents[1]["controllerName"], WEIR_CONTROLLER);
        assert_eq!(parents[1]["parentRef"]["name"], "edge");
        assert_eq!(parents[1]["conditions"][0]["type"], "Accepted");
        assert_eq!(parents[1]["conditions"][0]["status"], "True");
        assert_eq!(parents[1]["conditions"][0]["observedGeneration"], 2);
        assert_eq!(
            parents[1]["conditions"][0]["lastTransitionTime"],
            "2026-11-22T10:00:00Z"
        );

        let gateway = &patches[1].patch["status"];
        assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1);
        assert_eq!(
            gateway["listeners"][0]["supportedKinds"][0]["kind"],
            "HTTPRoute"
        );
        assert_eq!(gateway["conditions"][1]["type"], "Programmed");
        assert_eq!(gateway["conditions"][1]["observedGeneration"], 3);

        // Written back (as the watch would show it), nothing more to write, even later.
        apply(&mut state, &patches);
        let later = time("2026-11-22T11:00:00Z");
        let report = compute_status(&state, &[]);
        assert_eq!(status_patches(&state, &report, &later), vec![]);
    }

    #[test]
    fn a_changed_condition_gets_a_new_transition_time_and_the_others_keep_theirs() {
        let mut state = state(CONFIG);
        let first = time("2026-11-22T10:00:00Z");
        let report = compute_status(&state, &[]);
        let patches = status_patches(&state, &report, &first);
        apply(&mut state, &patches);

        // The backend Service goes away: ResolvedRefs turns False.
        state.services.remove(&ObjectKey::namespaced("web", "app"));
        let later = time("2026-11-22T10:05:00Z");
        let report = compute_status(&state, &[]);
        let patches = status_patches(&state, &report, &later);
        assert_eq!(patches.len(), 1, "only the route changes: {patches:?}");
        let ours = &patches[0].patch["status"]["parents"][1]["conditions"];
        assert_eq!(ours[0]["type"], "Accepted");
        assert_eq!(ours[0]["lastTransitionTime"], "2026-11-22T10:00:00Z");
        assert_eq!(ours[1]["type"], "ResolvedRefs");
        assert_eq!(ours[1]["status"], "False");
        assert_eq!(ours[1]["reason"], "BackendNotFound");
        assert_eq!(ours[1]["lastTransitionTime"], "2026-11-22T10:05:00Z");
    }

    #[test]
    fn gateways_of_other_classes_are_left_alone() {
        let yaml = CONFIG.replace(
            "spec: {controllerName: weir.io/gateway-controller}",
            "spec: {controllerName: example.com/other}",
        );
        let state = state(&yaml);
        let report = compute_status(&state, &[]);
        let patches = status_patches(&state, &report, &time("2026-11-22T10:00:00Z"));
        // Not the class, not the Gateway, and not the route: one parent is another
        // controller's Gateway, the other a Gateway that does not exist (whose class,
        // and so whose controller, nobody can tell).
        assert_eq!(patches, vec![]);
    }

    #[test]
    fn gateway_parameters_get_accepted_or_why_not() {
        let state = state(
            "apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {name: bad, namespace: infra, generation: 2, resourceVersion: \"7\"}\n\
             spec: {service: {type: ClusterIP, externalTrafficPolicy: Local}}\n---\n\
             apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {name: good, namespace: infra, generation: 1, resourceVersion: \"8\"}\n\
             spec: {replicas: 3}\n",
        );
        let report = compute_status(&state, &[]);
        let patches = status_patches(
            &state,
            &report,
            &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        let by_name = |name: &str| {
            patches
                .iter()
                .find(|p| p.kind == Kind::GatewayParameters && p.key.name == name)
                .unwrap()
                .patch["status"]["conditions"][0]
                .clone()
        };
        let bad = by_name("bad");
        assert_eq!(
            (bad["status"].as_str(), bad["reason"].as_str()),
            (Some("False"), Some("Invalid"))
        );
        assert!(
            bad["message"]
                .as_str()
                .unwrap()
                .starts_with("service.externalTrafficPolicy")
        );
        assert_eq!(bad["observedGeneration"], 2);
        assert_eq!(by_name("good")["status"], "True");
    }
}
