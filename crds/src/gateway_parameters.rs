//! `GatewayParameters`: how the Envoy Deployment and Service Weir runs for a Gateway are
//! shaped (replicas, image, resources, Service type and annotations, autoscaling). A
//! GatewayClass points at one with `spec.parametersRef` (for every Gateway of the class),
//! a Gateway with `spec.infrastructure.parametersRef` (in its own namespace; it wins over
//! the class's), as the Gateway API intends for implementation-specific settings.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Quantity;

/// Desired shape of the Envoy Deployment and Service of the Gateways that use it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "weir.io",
    derive = "PartialEq",
    derive = "Default",
    version = "v1alpha1",
    kind = "GatewayParameters",
    plural = "gatewayparameters",
    doc = "How the Envoy Deployment and Service Weir runs for a Gateway are shaped; referenced by a GatewayClass's or a Gateway's parametersRef.",
    namespaced,
    status = "GatewayParametersStatus",
    shortname = "gwp",
    category = "weir",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service.type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParametersSpec {
    /// Envoy replicas (default 2). With `autoscaling` the ScalingPolicy sets the count
    /// and this is where it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// The Envoy image (default: the xds-server's `--inject-proxy-image`, the sidecars'
    /// Envoy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Envoy's container resources (default: requests 100m CPU and 128Mi memory, a 1Gi
    /// memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the Envoys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<GatewayServiceParameters>,
    /// Scale the Envoys on the requests they serve: a ScalingPolicy for the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<GatewayAutoscaling>,
}

/// The Service in front of a Gateway's Envoys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServiceParameters {
    /// The Service type (default LoadBalancer).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<GatewayServiceType>,
    /// Annotations on the Service (e.g. a cloud load balancer's settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `Local` keeps the client's source address and skips the extra hop; `Cluster`
    /// (Kubernetes' default) spreads evenly. Only for LoadBalancer and NodePort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
}

/// How a Gateway's Service is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GatewayServiceType {
    /// Inside the cluster only.
    ClusterIP,
    /// On a port of every node.
    NodePort,
    /// Through the cloud's load balancer.
    LoadBalancer,
}

/// `Service.spec.externalTrafficPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    /// Spread over every node's endpoints.
    Cluster,
    /// Only to endpoints on the node the traffic arrived at, source address kept.
    Local,
}

/// Autoscaling of a Gateway's Envoys on their downstream requests per second.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAutoscaling {
    /// The fewest Envoys.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// The most Envoys.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Requests per second one Envoy should serve on average.
    pub target_requests_per_second: Quantity,
}

/// Observed state of a GatewayParameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParametersStatus {
    /// Accepted (the parameters are valid and in use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
