//! Weir's Envoy control plane.
//!
//! Data flows one way: the stores' [`weir_store::ClusterState`] is published as a
//! [`cache::Generation`] (debounced, [`server::run_publisher`]); [`translate`] turns it into
//! what each class of proxy should see ([`model`]), purely; [`envoy`] converts that into
//! Envoy's protobuf in one place; [`cache`] encodes it once per generation and view; and
//! [`ads`] streams it to proxies (framed by [`grpc`]), tracking ACKs and NACKs in the [`registry`].

pub mod ads;
pub mod bootstrap;
pub mod ca;
pub mod cache;
mod delta;
pub mod envoy;
pub mod grpc;
pub mod identities;
pub mod metrics;
pub mod model;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod status;
pub mod status_patch;
mod stream;
pub mod translate;

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
