//! The xds-server's pure core: from the stores' state to what each proxy should see
//! ([`translate`] into [`model`], then Envoy's protobuf in [`envoy`]), Gateway API status
//! ([`status`], [`status_patch`]), bootstraps ([`bootstrap`]), the mesh CA's certificates
//! ([`ca`], [`identities`]) and the record of connected proxies ([`registry`]). No clients,
//! no servers, no clocks: time is passed in.

pub mod bootstrap;
pub mod ca;
pub mod capture;
pub mod certify;
pub mod envoy;
pub mod gateway_envoys;
pub mod gateway_infrastructure;
pub mod gateway_plan;
pub mod gateway_readiness;
pub mod identities;
pub mod inject;
pub mod model;
pub mod proof;
pub mod registry;
pub mod status;
pub mod status_patch;
pub mod tokens;
pub mod translate;
