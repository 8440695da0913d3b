//! Weir's Envoy control plane: translates the typed stores into Envoy resources (pure),
//! caches them per proxy and serves them over ADS, plus Envoy's rate-limit service and the
//! mesh certificate authority.
//!
//! The components arrive with their own issues; this crate fixes their place in the
//! workspace.
