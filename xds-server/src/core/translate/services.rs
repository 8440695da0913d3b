//! Services and EndpointSlices → clusters and their endpoints.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{core::v1::ServicePort, discovery::v1::EndpointSlice};
use weir_store::ClusterState;

use super::{mesh, service_cluster_name, tcp_ports};
use crate::model::{Cluster, Endpoint, LoadAssignment};

/// Connect timeout of service clusters.
const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// One cluster per Service port, with the ready endpoints of the Service's EndpointSlices.
pub(super) fn translate_services(state: &ClusterState) -> (Vec<Cluster>, Vec<LoadAssignment>) {
    // EndpointSlices by (namespace, service).
    let mut slices: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for (key, slice) in state.endpoint_slices.iter() {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        if let (Some(ns), Some(service)) = (key.namespace.as_deref(), service) {
            slices
                .entry((ns, service.as_str()))
                .or_default()
                .push(slice);
        }
    }
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for (key, service) in state.services.iter() {
        let Some(ns) = key.namespace.as_deref() else {
            continue;
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let service_slices = slices
            .get(&(ns, key.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (port, number) in tcp_ports(service) {
            let name = service_cluster_name(ns, &key.name, number);
            let endpoints = ready_endpoints(state, port, ports.len(), service_slices);
            clusters.push(Cluster {
                name: name.clone(),
                connect_timeout_ms: CONNECT_TIMEOUT_MS,
                static_endpoint: None,
                mtls: endpoints.iter().any(|e| e.mtls),
                original_destination: false,
            });
            assignments.push(LoadAssignment {
                cluster: name,
                endpoints,
            });
        }
    }
    (clusters, assignments)
}

/// The ready endpoints of one Service port: slice ports match by name (an unnamed port
/// matches when the Service has a single port). Endpoints whose `ready` condition is
/// false are left out; an absent condition counts as ready, as kube-proxy treats it. An
/// endpoint whose pod (`targetRef`) runs a sidecar that is not Disable is reached over
/// mTLS.
fn ready_endpoints(
    state: &ClusterState,
    port: &ServicePort,
    service_ports: usize,
    slices: &[&EndpointSlice],
) -> Vec<Endpoint> {
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        // Envoy endpoints are IP addresses; an FQDN slice (`addressType: FQDN`) would make
        // Envoy reject the whole endpoint response, every Service's endpoints with it.
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let slice_port = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
            p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                || (service_ports == 1 && p.name.is_none())
        });
        let Some(number) = slice_port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let mtls = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r
                        .namespace
                        .as_deref()
                        .or(slice.metadata.namespace.as_deref())?;
                    state.pods.get_namespaced(ns, r.name.as_deref()?)
                })
                .is_some_and(|pod| mesh::reached_over_mtls(state, pod));
            // An address that is not an IP (the API server accepts some) is left out alone.
            for address in endpoint
                .addresses
                .iter()
                .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            {
                endpoints.insert(Endpoint {
                    address: address.clone(),
                    port: number,
                    mtls,
                });
            }
        }
    }
    endpoints.into_iter().collect()
}
