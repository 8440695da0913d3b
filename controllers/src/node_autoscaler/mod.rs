//! The node autoscaler: cluster-autoscaler's decisions for NodePools.
//!
//! - [`core`] (pure): the snapshot, scheduling predicates, scale-up and scale-down
//!   planning, settings; re-exported here.
//! - Adapters (feature `runtime`): [`k8s`] (Cluster API and the Kubernetes writes),
//!   [`simulated`] (local mode's nodes and scheduler) and [`run`] (the loop).

pub mod core;
pub use self::core::*;

#[cfg(feature = "runtime")]
pub mod k8s;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "runtime")]
pub mod simulated;
