//! What Weir's components share and none of them owns: the sources that fill the stores
//! (a cluster's reflectors or a directory of YAML), the admin endpoint, leader election,
//! server-side-apply status and events, telemetry, graceful shutdown and
//! a small HTTP client for admin endpoints.
//!
//! This crate knows no component: the pod autoscaler, node autoscaler, mesh-TLS
//! controller, xds-server and metrics adapter build on it, and their debug views plug into
//! the admin endpoint as routes they hand in ([`admin::spawn`]). Dependencies point one
//! way: `weir-crds` → `weir-store` → `weir-runtime` → components → the `weir` binary.

pub mod admin;
pub mod admin_client;
pub mod args;
pub mod cluster;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod prometheus;
pub mod shutdown;
pub mod sources;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod token_review;

/// One Kubernetes API call a component makes: (API group, resource, verb). Each module
/// that talks to the API server lists its calls next to the code, for the RBAC rules.
pub type ApiCall = (&'static str, &'static str, &'static str);
