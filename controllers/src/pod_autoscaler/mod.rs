//! The pod autoscaler: HorizontalPodAutoscaler's decisions for ScalingPolicies.
//!
//! - [`core`] (pure): the replica calculation, behavior, stabilization, conditions, the
//!   sync over every policy, and what to ask Prometheus; re-exported here.
//! - Adapters (feature `runtime`): [`k8s`] (scale subresources, status, events),
//!   [`simulated`] (local mode's Deployments), the metric sources [`prometheus`],
//!   [`rules`] (the metrics adapter's engine in-process), [`metrics_apis`] (another
//!   adapter's APIs) and [`samples`] (local mode's MetricSamples), and [`run`] (the loop).

pub mod core;
pub use self::core::*;

#[cfg(feature = "runtime")]
pub mod k8s;
#[cfg(feature = "runtime")]
pub mod metrics_apis;
#[cfg(feature = "runtime")]
pub mod prometheus;
#[cfg(feature = "runtime")]
pub mod rules;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "runtime")]
pub mod samples;
#[cfg(feature = "runtime")]
pub mod simulated;
