//! The mesh-TLS controller in a cluster: MeshPolicy status by server-side apply, and
//! events ([`KubeMeshApi`]). Sidecars are read from Prometheus there
//! ([`super::prometheus::PrometheusSidecars`]).

use kube::{Api, Client, Resource, runtime::events::Recorder};
use weir_crds::mesh_policy::{MeshPolicy, MeshPolicyStatus};

use super::StatusSink;
use crate::pod_autoscaler::controller::Event;

/// The field manager of the controller's status writes (server-side apply).
pub const FIELD_MANAGER: &str = "weir-mesh-tls";
/// The event reporter (`reportingController`) of its events.
pub const REPORTER: &str = "weir-mesh-tls";

/// The API calls the mesh-TLS controller makes in a cluster (beyond listing and watching
/// MeshPolicies, Pods and EndpointSlices).
pub const API_CALLS: &[weir_runtime::ApiCall] = &[
    ("weir.io", "meshpolicies/status", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// A cluster: the MeshPolicy status subresource (server-side apply) and events.
pub struct KubeMeshApi {
    client: Client,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeMeshApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMeshApi").finish_non_exhaustive()
    }
}

impl KubeMeshApi {
    /// Reports events as `weir-mesh-tls`/`instance`.
    pub fn new(client: Client, instance: String) -> Self {
        let recorder = weir_runtime::events::recorder(client.clone(), REPORTER, instance);
        KubeMeshApi { client, recorder }
    }
}

impl StatusSink for KubeMeshApi {
    async fn write(&self, policy: &MeshPolicy, status: &MeshPolicyStatus) -> Result<(), String> {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let api: Api<MeshPolicy> = Api::namespaced(self.client.clone(), namespace);
        weir_runtime::status::apply_status(&api, name, FIELD_MANAGER, status).await
    }

    async fn event(&self, policy: &MeshPolicy, event: &Event) -> Result<(), String> {
        weir_runtime::events::publish_event(
            &self.recorder,
            &policy.object_ref(&()),
            event.type_ == "Warning",
            event.reason,
            &event.message,
            "Evaluate",
        )
        .await
    }
}
