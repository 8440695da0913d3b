//! Weir's metrics adapter: the Kubernetes custom and external metrics APIs
//! (`custom.metrics.k8s.io`, `external.metrics.k8s.io`), answered from Prometheus through
//! prometheus-adapter-compatible rules.
//!
//! Pure cores: [`config`] (rules), [`discovery`] (which metrics exist), [`query`] (the
//! PromQL of a request), [`selector`], [`promql`], [`quantity`], [`api`] (wire shapes).
//! Effects: [`engine`] (Prometheus, cache), [`auth`] (who is asking), [`server`] (TLS and
//! HTTP).

pub mod api;
pub mod auth;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod promql;
pub mod quantity;
pub mod query;
pub mod resources;
pub mod selector;
pub mod server;
