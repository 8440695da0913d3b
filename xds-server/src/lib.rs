//! Weir's Envoy control plane.
//!
//! Data flows one way: the stores' [`weir_store::ClusterState`] is published as a
//! [`cache::Generation`] (debounced, [`server::run_publisher`]); [`translate`] turns it into
//! what each class of proxy should see ([`model`]), purely; [`envoy`] converts that into
//! Envoy's protobuf in one place; [`cache`] encodes it once per generation and view; and
//! [`ads`] streams it to proxies (framed by [`grpc`]), tracking ACKs and NACKs in the [`registry`].
//!
//! The pure core ([`core`]: translation, Envoy resources, status, bootstraps, the CA's
//! certificate maths, the proxy registry; re-exported at the crate root) builds without
//! the IO stack. The servers (`ads`, `grpc`, `cache`, `server`, the rate-limit service's
//! `backend` and `service`; its limit table is pure), the in-cluster adapter ([`k8s`]) and
//! the wiring ([`run`], [`args`]) sit behind the default feature `runtime`. CI checks the
//! core with `cargo check -p weir-xds --no-default-features`.

pub mod core;
pub use self::core::*;

#[cfg(feature = "runtime")]
pub mod ads;
#[cfg(feature = "runtime")]
pub mod agent;
#[cfg(feature = "runtime")]
pub mod args;
#[cfg(feature = "runtime")]
pub mod cache;
#[cfg(feature = "runtime")]
mod delta;
#[cfg(feature = "runtime")]
pub mod gateway_provisioner;
#[cfg(feature = "runtime")]
pub mod grpc;
#[cfg(feature = "runtime")]
pub mod identity;
#[cfg(feature = "runtime")]
pub mod iptables;
#[cfg(feature = "runtime")]
pub mod k8s;
#[cfg(feature = "runtime")]
pub mod local_gateways;
#[cfg(feature = "runtime")]
pub mod local_tokens;
pub mod metrics;
pub mod ratelimit;
#[cfg(feature = "runtime")]
pub mod run;
#[cfg(feature = "runtime")]
pub mod secure;
#[cfg(feature = "runtime")]
pub mod server;
#[cfg(feature = "runtime")]
mod stream;
#[cfg(feature = "runtime")]
pub mod webhook;

#[cfg(test)]
pub(crate) mod test_support {
    use weir_store::ClusterState;

    /// The state a directory holding only `yaml` gives.
    pub(crate) fn state(yaml: &str) -> ClusterState {
        let mut index = weir_store::DirectoryIndex::default();
        index.load_file("t.yaml", yaml);
        index.state().0
    }
}
