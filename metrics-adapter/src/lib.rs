//! Weir's metrics adapter: the Kubernetes custom and external metrics APIs
//! (`custom.metrics.k8s.io`, `external.metrics.k8s.io`), answered from Prometheus through
//! prometheus-adapter-compatible rules.
//!
//! Pure cores: [`config`] (rules), [`discovery`] (which metrics exist), [`query`] (the
//! PromQL of a request), [`selector`], [`promql`], [`quantity`], [`api`] (wire shapes).
//! Effects, behind the default feature `runtime`: [`engine`] (Prometheus, cache), [`auth`]
//! (who is asking), [`server`] (TLS and HTTP), and the wiring ([`run`], [`args`]). CI
//! checks the cores with `cargo check -p weir-metrics-adapter --no-default-features`.

pub mod api;
#[cfg(feature = "runtime")]
pub mod args;
#[cfg(feature = "runtime")]
pub mod auth;
pub mod config;
pub mod discovery;
#[cfg(feature = "runtime")]
pub mod engine;
pub mod promql;
pub mod quantity;
pub mod query;
pub mod resources;
#[cfg(feature = "runtime")]
pub mod run;
pub mod selector;
#[cfg(feature = "runtime")]
pub mod server;
