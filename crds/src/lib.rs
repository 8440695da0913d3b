//! Weir's API: the `weir.io/v1alpha1` CustomResourceDefinitions, and the Gateway API types
//! Weir reads.
//!
//! The Rust types here are the source of truth. `kube`'s derive turns them into CRDs with
//! OpenAPI schemas and CEL rules; [`crds_yaml`] renders those (the checked-in copies under
//! `crds/yaml/` are compared against it by a test), and [`SchemaValidator`] applies the very
//! same schemas to objects that never pass an API server (local mode, `weir validate`).

pub mod conditions;
mod duration;
pub mod gateway_api;
pub mod gateway_parameters;
pub mod mesh_policy;
pub mod node_pool;
mod quantity;
pub mod scaling_policy;
pub mod traffic_policy;
mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use duration::{DURATION_PATTERN, Duration, DurationError, parse_flag_duration};
pub use gateway_parameters::GatewayParameters;
pub use mesh_policy::MeshPolicy;
pub use node_pool::NodePool;
pub use quantity::{QUANTITY_PATTERN, Quantity, QuantityError};
pub use scaling_policy::ScalingPolicy;
pub use traffic_policy::TrafficPolicy;
pub use validation::{FieldError, SchemaValidator};

/// The API group of Weir's CRDs.
pub const GROUP: &str = "weir.io";
/// The version of Weir's CRDs.
pub const VERSION: &str = "v1alpha1";

/// Every CRD Weir defines, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ScalingPolicy::crd(),
        NodePool::crd(),
        TrafficPolicy::crd(),
        MeshPolicy::crd(),
        GatewayParameters::crd(),
    ]
}

/// The file name a CRD is kept under in `crds/yaml/` (`<plural>.<group>.yaml`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML, as checked in under `crds/yaml/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// All CRDs as one multi-document YAML stream (what `weir crds` prints).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}
