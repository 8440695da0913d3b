//! Weir's controllers: the pod autoscaler (HorizontalPodAutoscaler semantics on custom
//! metrics), the node autoscaler (cluster-autoscaler decisions for NodePools) and the
//! mesh-TLS controller. Each reads the typed stores of `weir-store` and keeps its decision
//! logic in pure modules, with Kubernetes writes in thin adapters.
//!
//! The components arrive with their own issues; this crate fixes their place in the
//! workspace.
