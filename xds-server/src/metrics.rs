//! The xds-server's metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels naming a resource type (`clusters`, `endpoints`, `listeners`, `routes`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    /// The type.
    pub r#type: &'static str,
}

/// A histogram of convergence times.
pub type ConvergenceHistogram = Family<TypeLabels, Histogram, fn() -> Histogram>;

fn convergence_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Metrics of the ADS server.
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    /// Connected streams.
    pub connected: Gauge,
    /// Responses sent, by type.
    pub pushes: Family<TypeLabels, Counter>,
    /// NACKs received, by type.
    pub nacks: Family<TypeLabels, Counter>,
    /// The snapshot generation being served.
    pub generation: Gauge,
    /// From a configuration change (or the proxy's first request) to the proxy's ACK of
    /// the response carrying it, by type.
    pub convergence: ConvergenceHistogram,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        XdsMetrics {
            connected: Gauge::default(),
            pushes: Family::default(),
            nacks: Family::default(),
            generation: Gauge::default(),
            convergence: Family::new_with_constructor(convergence_histogram),
        }
    }
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
            "convergence_seconds",
            "From a configuration change (or a proxy's first request) to the proxy's ACK, by resource type",
            metrics.convergence.clone(),
        );
        xds.register(
            "snapshot_generation",
            "The configuration generation being served",
            metrics.generation.clone(),
        );
        metrics
    }
}
