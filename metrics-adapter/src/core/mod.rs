//! The metrics adapter's pure cores: rules in prometheus-adapter's format ([`config`]),
//! which metrics exist ([`discovery`]), the PromQL of a request ([`query`]), label
//! selectors ([`selector`]) and PromQL matchers ([`promql`]), Kubernetes quantities
//! ([`quantity`]), resource names ([`resources`]) and the APIs' wire shapes ([`api`]).

pub mod api;
pub mod config;
pub mod discovery;
pub mod promql;
pub mod quantity;
pub mod query;
pub mod resource_metrics;
pub mod resource_wire;
pub mod resources;
pub mod selector;
pub mod template;
