//! The xds-server's metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels naming a resource type (`clusters`, `endpoints`, `listeners`, `routes`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    /// The type.
    pub r#type: &'static str,
}

/// Metrics of the ADS server.
#[derive(Clone, Debug, Default)]
pub struct XdsMetrics {
    /// Connected streams.
    pub connected: Gauge,
    /// Responses sent, by type.
    pub pushes: Family<TypeLabels, Counter>,
    /// NACKs received, by type.
    pub nacks: Family<TypeLabels, Counter>,
    /// The snapshot generation being served.
    pub generation: Gauge,
}

impl XdsMetrics {
    /// Creates the metrics and registers them under `weir_xds_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = XdsMetrics::default();
        let xds = registry.sub_registry_with_prefix("weir_xds");
        xds.register(
            "connected_proxies",
            "ADS streams open now",
            metrics.connected.clone(),
        );
        xds.register(
            "pushes",
            "xDS responses sent, by resource type",
            metrics.pushes.clone(),
        );
        xds.register(
            "nacks",
            "xDS responses proxies rejected, by resource type",
            metrics.nacks.clone(),
        );
        xds.register(
            "snapshot_generation",
            "The configuration generation being served",
            metrics.generation.clone(),
        );
        metrics
    }
}
