//! The mesh-TLS controller's IO boundary, as traits its adapters implement: where sidecar
//! readings come from ([`SidecarSource`]: Envoy admin in local mode, Prometheus in a
//! cluster) and where statuses and events go ([`StatusSink`]: the stores, or the API
//! server).

use std::future::Future;

use weir_crds::mesh_policy::{MeshPolicy, MeshPolicyStatus};

use super::pass::SidecarReading;
use crate::pod_autoscaler::controller::Event;

/// A source of sidecar readings.
pub trait SidecarSource: Send + Sync + 'static {
    /// The connected sidecars and their counters now; an error when the source itself
    /// cannot be read (the pass is then skipped: no decision on a blind spot).
    fn read(&self) -> impl Future<Output = Result<Vec<SidecarReading>, String>> + Send;
}

/// Where statuses and events go.
pub trait StatusSink: Send + Sync + 'static {
    /// Writes `status` on `policy`.
    fn write(
        &self,
        policy: &MeshPolicy,
        status: &MeshPolicyStatus,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Records an event about `policy`.
    fn event(
        &self,
        policy: &MeshPolicy,
        event: &Event,
    ) -> impl Future<Output = Result<(), String>> + Send;
}
