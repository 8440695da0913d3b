//! Gateway status that tells the truth about what runs it, where Weir provisions it
//! ([`crate::gateway_plan`]): `status.addresses` from its Service (the load balancer's
//! ingress, or the cluster IP), and `Programmed: True` only once its Deployment has an
//! available Envoy and a gateway proxy has ACKed the configuration; otherwise the reason
//! says what is missing. Bad parameters make it `Accepted: False` (`InvalidParameters`).
//! Pure: an overlay on [`crate::status::compute_status`]'s report, from the stores (the
//! Deployment and Service as watched) and the proxies' ACKs.

use std::collections::BTreeSet;

use weir_crds::gateway_api::GatewayStatusAddress;
use weir_store::{ClusterState, ObjectKey};

use crate::{
    gateway_infrastructure::{infrastructure_name, parameters_for},
    registry::ProxyStatus,
    status::{ConditionStatus, StatusReport},
    translate::{ProxyId, Role},
};

/// The Gateways (`namespace/name`) some gateway proxy of which has ACKed everything it
/// was sent.
pub fn acked_gateways(proxies: &[ProxyStatus]) -> BTreeSet<String> {
    proxies
        .iter()
        .filter(|p| {
            !p.types.is_empty()
                && p.types
                    .values()
                    .all(|t| t.sent.is_some() && t.acked == t.sent)
        })
        .filter_map(|p| p.node_id.parse::<ProxyId>().ok())
        .filter(|id| id.role == Role::Gateway)
        .map(|id| format!("{}/{}", id.namespace, id.name))
        .collect()
}

fn set(conditions: &mut [ConditionStatus], type_: &str, reason: &'static str, message: String) {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        c.status = "False";
        c.reason = reason;
        c.message = message;
    }
}

/// Adds what runs each provisioned Gateway to `report`: its addresses, and `Programmed`
/// (and `Accepted`) lowered to what is really there.
pub fn provisioned_status(
    report: &mut StatusReport,
    state: &ClusterState,
    acked: &BTreeSet<String>,
) {
    for (key, status) in report.gateways.iter_mut() {
        let Some((namespace, name)) = key.split_once('/') else {
            continue;
        };
        let Some(gateway) = state.gateways.get(&ObjectKey::namespaced(namespace, name)) else {
            continue;
        };
        status.addresses = Some(Vec::new());
        if let Err(problem) = parameters_for(state, gateway) {
            set(
                &mut status.conditions,
                "Accepted",
                "InvalidParameters",
                problem.clone(),
            );
            set(&mut status.conditions, "Programmed", "Invalid", problem);
            continue;
        }
        let infrastructure = infrastructure_name(name, &gateway.spec.gateway_class_name);
        let object = ObjectKey::namespaced(namespace, &infrastructure);
        let service = state.services.get(&object);
        let addresses = service.map(|s| addresses(s)).unwrap_or_default();
        status.addresses = Some(addresses.clone());
        let programmed = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Programmed" && c.status == "True");
        if !programmed {
            continue;
        }
        let available = state
            .deployments
            .get(&object)
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let missing = if available == 0 {
            Some((
                "Pending",
                format!("Deployment {namespace}/{infrastructure} has no available Envoy yet"),
            ))
        } else if !acked.contains(key.as_str()) {
            Some((
                "Pending",
                "no gateway Envoy has accepted the configuration yet".to_string(),
            ))
        } else if addresses.is_empty() {
            Some((
                "AddressNotAssigned",
                format!("Service {namespace}/{infrastructure} has no address yet"),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = missing {
            set(&mut status.conditions, "Programmed", reason, message);
        }
    }
}

/// A Service's addresses: its load balancer's ingress (IPs and hostnames) for a
/// LoadBalancer, else its cluster IP.
fn addresses(service: &k8s_openapi::api::core::v1::Service) -> Vec<GatewayStatusAddress> {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") {
        return service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ingress| match (&ingress.ip, &ingress.hostname) {
                (Some(ip), _) => Some(GatewayStatusAddress {
                    type_: Some("IPAddress".into()),
                    value: ip.clone(),
                }),
                (None, Some(hostname)) => Some(GatewayStatusAddress {
                    type_: Some("Hostname".into()),
                    value: hostname.clone(),
                }),
                (None, None) => None,
            })
            .collect();
    }
    spec.and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| {
            vec![GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: ip.to_string(),
            }]
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{registry::TypeStatus, status::compute_status};

    const BASE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weir}\n\
        spec: {controllerName: weir.io/gateway-controller}\n---\n\
        apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: ingress, uid: u-1}\n\
        spec: {gatewayClassName: weir, listeners: [{name: http, port: 80, protocol: HTTP}]}\n";

    fn deployment(available: i32) -> String {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: public-weir, namespace: ingress}}\n\
             spec: {{selector: {{matchLabels: {{a: b}}}}, template: {{metadata: {{labels: {{a: b}}}}, spec: {{containers: [{{name: envoy}}]}}}}}}\n\
             status: {{availableReplicas: {available}}}\n"
        )
    }

    fn service(ingress: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: public-weir, namespace: ingress}}\n\
             spec: {{type: LoadBalancer, clusterIP: 10.0.0.7, ports: [{{port: 80}}]}}\n\
             status: {{loadBalancer: {{ingress: [{ingress}]}}}}\n"
        )
    }

    fn programmed(yaml: &str, acked: &[&str]) -> (String, String, Vec<GatewayStatusAddress>) {
        let state = crate::test_support::state(yaml);
        let mut report = compute_status(&state, &[]);
        let acked = acked.iter().map(ToString::to_string).collect();
        provisioned_status(&mut report, &state, &acked);
        let status = &report.gateways["ingress/public"];
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Programmed")
            .unwrap();
        (
            format!("{} {}", c.status, c.reason),
            c.message.clone(),
            status.addresses.clone().unwrap(),
        )
    }

    #[test]
    fn programmed_waits_for_envoys_acks_and_an_address() {
        let (state, message, _) = programmed(BASE, &[]);
        assert_eq!(state, "False Pending");
        assert!(message.contains("no available Envoy"), "{message}");
        let with_pods = format!("{BASE}{}{}", deployment(2), service(""));
        assert_eq!(programmed(&with_pods, &[]).0, "False Pending");
        let (state, message, _) = programmed(&with_pods, &["ingress/public"]);
        assert_eq!(state, "False AddressNotAssigned", "{message}");
        let all = format!("{BASE}{}{}", deployment(2), service("{ip: 203.0.113.9}"));
        let (state, _, addresses) = programmed(&all, &["ingress/public"]);
        assert_eq!(state, "True Programmed");
        assert_eq!(
            addresses,
            [GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: "203.0.113.9".into()
            }]
        );
        // Envoys gone again: back to Pending.
        let none = format!("{BASE}{}{}", deployment(0), service("{ip: 203.0.113.9}"));
        assert_eq!(programmed(&none, &["ingress/public"]).0, "False Pending");
    }

    #[test]
    fn bad_parameters_are_not_accepted() {
        let yaml = BASE.replace(
            "spec: {gatewayClassName: weir,",
            "spec: {gatewayClassName: weir, infrastructure: {parametersRef: {group: weir.io, kind: GatewayParameters, name: nope}},",
        );
        let state = crate::test_support::state(&yaml);
        let mut report = compute_status(&state, &[]);
        provisioned_status(&mut report, &state, &BTreeSet::new());
        let accepted = &report.gateways["ingress/public"].conditions[0];
        assert_eq!(
            (accepted.status, accepted.reason),
            ("False", "InvalidParameters")
        );
        assert!(
            accepted.message.contains("ingress/nope not found"),
            "{}",
            accepted.message
        );
    }

    #[test]
    fn acks_are_counted_per_gateway_proxy() {
        let status = |node: &str, sent: Option<&str>, acked: Option<&str>| ProxyStatus {
            stream: 1,
            node_id: node.into(),
            protocol: "sotw",
            admin_port: None,
            types: [(
                "listeners",
                TypeStatus {
                    sent: sent.map(String::from),
                    acked: acked.map(String::from),
                    last_nack: None,
                    resources: 1,
                },
            )]
            .into(),
        };
        let acked = acked_gateways(&[
            status("gateway~public.ingress", Some("v1"), Some("v1")),
            status("gateway~edge.shop", Some("v2"), Some("v1")),
            status("sidecar~web-0.shop", Some("v1"), Some("v1")),
        ]);
        assert_eq!(acked, BTreeSet::from(["ingress/public".to_string()]));
    }
}
