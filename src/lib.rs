//! The `weir` binary's library: the command line ([`cli`]), one wiring module per
//! subcommand ([`commands`]) and the catalogue of in-cluster components ([`components`]),
//! which the Helm chart's RBAC is checked against.
//!
//! Everything else lives with the component that owns it: `controllers/`, `xds-server/`,
//! `metrics-adapter/`, and what they share in `runtime/`. `main.rs` only parses arguments
//! and calls in here.

pub mod cli;
pub mod commands;
pub mod components;

pub use weir_runtime::ApiCall;
