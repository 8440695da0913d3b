//! The `weir` binary's library: command-line arguments, the sources that feed the stores
//! (a Kubernetes cluster or a directory of YAML), the admin endpoint, telemetry and the
//! wiring of local mode (`weir up`).
//!
//! `main.rs` only parses arguments and calls in here, so the wiring is tested like any
//! other code.

pub mod admin;
pub mod autoscaler;
pub mod cli;
pub mod cluster;
pub mod components;
pub mod leader;
pub mod local;
pub mod local_autoscaler;
pub mod local_nodes;
pub mod local_samples;
pub mod mesh_ca;
pub mod mesh_controller;
pub mod metrics;
pub mod metrics_adapter;
pub mod metrics_apis;
pub mod node_autoscaler;
pub mod node_provider;
pub mod proxies;
pub mod recommend;
pub mod rules_source;
pub mod shutdown;
pub mod sources;
pub mod status_writer;
pub mod telemetry;
pub mod validate;
pub mod xds;

/// One Kubernetes API call a component makes: (API group, resource, verb). Each module
/// that talks to the API server lists its calls next to the code, for the RBAC rules.
pub type ApiCall = (&'static str, &'static str, &'static str);
