//! Weir's metrics adapter: the Kubernetes custom, external and resource metrics APIs
//! (`custom.metrics.k8s.io`, `external.metrics.k8s.io`, `metrics.k8s.io`), answered from
//! Prometheus through prometheus-adapter-compatible rules.
//!
//! Pure cores, in [`core`] and re-exported at the crate root: [`config`] (rules),
//! [`discovery`] (which metrics exist), [`query`] (the PromQL of a request), [`selector`],
//! [`promql`], [`quantity`], [`resources`], [`template`], [`resource_metrics`], [`api`]
//! (wire shapes). Effects, behind the
//! default feature `runtime`: [`engine`] (Prometheus, cache), [`resource_api`], [`auth`] (who is asking),
//! [`server`] (TLS and HTTP), and the wiring ([`run`], [`args`]). CI checks the cores with
//! `cargo check -p weir-metrics-adapter --no-default-features`.

pub mod core;
pub use self::core::*;

#[cfg(feature = "runtime")]
pub mod args;
#[cfg(feature = "runtime")]
pub mod auth;
#[cfg(feature = "runtime")]
pub mod engine;
#[cfg(feature = "runtime")]
pub mod resource_api;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "runtime")]
pub mod server;
