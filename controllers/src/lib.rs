//! Weir's controllers: the pod autoscaler (HorizontalPodAutoscaler semantics on custom
//! metrics), the node autoscaler (cluster-autoscaler decisions for NodePools) and the
//! mesh-TLS controller. Each keeps its decisions in a pure `core/` (no clients, no
//! clocks, no IO), beside its adapters: `k8s.rs` (in a cluster), `simulated.rs` or
//! `local.rs` (local mode) and `run.rs` (the loop, its metrics and admin routes).
//!
//! The adapters sit behind the default feature `runtime`; CI checks the cores with
//! `cargo check -p weir-controllers --no-default-features`, so a client import in a core
//! fails the build.
//!
//! - [`pod_autoscaler`]: HorizontalPodAutoscaler's decisions for ScalingPolicies.
//! - [`node_autoscaler`]: cluster-autoscaler's decisions for NodePools.
//! - [`mesh_tls`]: a MeshPolicy's effective mTLS mode and safe promotion to Strict.
//! - [`simulate`]: demand traces replayed through the pod autoscaler, beside HPA.

#[cfg(feature = "runtime")]
pub mod args;
pub mod mesh_tls;
pub mod node_autoscaler;
pub mod pod_autoscaler;
#[cfg(feature = "runtime")]
pub mod run;
pub mod simulate;

/// The Kubernetes kinds `weir controllers` watches: their policies, and the objects the
/// autoscalers and the mesh-TLS controller decide on (the metrics adapter's kinds, for
/// `--metrics-source rules`).
pub const KINDS: &[weir_store::Kind] = &[
    weir_store::Kind::ScalingPolicy,
    weir_store::Kind::NodePool,
    weir_store::Kind::MeshPolicy,
    weir_store::Kind::Namespace,
    weir_store::Kind::Service,
    weir_store::Kind::EndpointSlice,
    weir_store::Kind::Pod,
    weir_store::Kind::Node,
    weir_store::Kind::Deployment,
    weir_store::Kind::DaemonSet,
    weir_store::Kind::PodDisruptionBudget,
];

/// The Lease `weir controllers` elects its leader on (unless `--leader-election-id`).
pub const LEASE_NAME: &str = "weir-controllers";
