//! The mesh-TLS controller: a MeshPolicy's effective mTLS mode and safe promotion from
//! Permissive to Strict.
//!
//! - [`core`] (pure): the decision for one policy ([`core::evaluate`]) and the pass over
//!   every policy from the sidecars' readings ([`core::pass`]); re-exported here.
//! - Adapters (feature `runtime`): [`k8s`] (status and events in a cluster), [`local`]
//!   (local mode: status into the stores, sidecars read through their Envoy admin),
//!   [`prometheus`] (sidecars read from Prometheus) and [`run`] (the loop).

pub mod core;
pub use self::core::*;

#[cfg(feature = "runtime")]
pub mod k8s;
#[cfg(feature = "runtime")]
pub mod local;
#[cfg(feature = "runtime")]
pub mod prometheus;
#[cfg(feature = "runtime")]
pub mod run;
