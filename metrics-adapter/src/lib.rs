//! Weir's metrics adapter: the Kubernetes custom and external metrics APIs
//! (`custom.metrics.k8s.io`, `external.metrics.k8s.io`), answered from Prometheus through
//! prometheus-adapter-compatible rules.
//!
//! The components arrive with their own issues; this crate fixes their place in the
//! workspace.
