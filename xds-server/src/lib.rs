//! Weir's Envoy control plane.
//!
//! [`translate`] turns the stores into what each proxy should be told ([`model`]), purely;
//! `envoy` (to come) converts that into Envoy's protobuf resources in one place, and the
//! ADS server streams them to proxies.

pub mod envoy;
pub mod model;
pub mod translate;
