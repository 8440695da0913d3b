//! Weir's controllers: the pod autoscaler (HorizontalPodAutoscaler semantics on custom
//! metrics), the node autoscaler (cluster-autoscaler decisions for NodePools) and the
//! mesh-TLS controller. Each reads the typed stores of `weir-store` and keeps its decision
//! logic in pure modules, with Kubernetes writes in thin adapters.
//!
//! - [`pod_autoscaler`]: HorizontalPodAutoscaler's decisions for ScalingPolicies.
//! - [`node_autoscaler`]: cluster-autoscaler's decisions for NodePools.
//! - [`mesh_tls`]: a MeshPolicy's effective mTLS mode and safe promotion to Strict.

pub mod mesh_tls;
pub mod node_autoscaler;
pub mod pod_autoscaler;
