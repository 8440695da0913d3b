//! The node autoscaler in a cluster: the Cluster API provider and the Kubernetes writes
//! ([`KubeNodeApi`]).
//!
//! A NodePool with `provider.clusterAPI` is one `MachineDeployment`. Growing sets its
//! replicas through the scale subresource. Removing a node cordons it (and taints it
//! `ToBeDeletedByClusterAutoscaler`), evicts its pods through the Eviction API (so PDBs
//! hold), annotates its Machine `cluster.x-k8s.io/delete-machine` so Cluster API deletes
//! that Machine and no other, then lowers the replicas. A failed eviction uncordons the
//! node and reports the error.

use crate::node_autoscaler::{
    controller::{Event, NodeApi},
    snapshot::{TO_BE_DELETED_TAINT, UNNEEDED_SINCE_ANNOTATION},
};
use k8s_openapi::{
    api::core::v1::{Node, Pod},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{
        ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams,
    },
    runtime::events::Recorder,
};
use serde_json::json;
use weir_crds::{NodePool, node_pool::NodePoolStatus};

/// The field manager of NodePool status writes (server-side apply).
pub const FIELD_MANAGER: &str = "weir-node-autoscaler";
/// The event reporter (`reportingController`) of the node autoscaler's events.
pub const REPORTER: &str = "weir-node-autoscaler";
/// Cluster API's annotation: delete this Machine first when the MachineDeployment shrinks.
pub const DELETE_MACHINE_ANNOTATION: &str = "cluster.x-k8s.io/delete-machine";
const DEPLOYMENT_NAME_LABEL: &str = "cluster.x-k8s.io/deployment-name";

/// The API calls the node autoscaler makes (beyond listing and watching what it reads).
pub const API_CALLS: &[weir_runtime::ApiCall] = &[
    ("cluster.x-k8s.io", "machinedeployments/scale", "patch"),
    ("cluster.x-k8s.io", "machines", "list"),
    ("cluster.x-k8s.io", "machines", "patch"),
    ("", "nodes", "get"),
    ("", "nodes", "patch"),
    ("", "pods/eviction", "create"),
    ("weir.io", "nodepools/status", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// The Kubernetes API for the node autoscaler.
pub struct KubeNodeApi {
    client: Client,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeNodeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeNodeApi").finish_non_exhaustive()
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cluster.x-k8s.io", "v1beta1", kind),
        plural,
    )
}

fn machine_deployment(pool: &NodePool) -> Result<(String, String), String> {
    pool.spec
        .provider
        .cluster_api
        .as_ref()
        .map(|c| (c.namespace.clone(), c.name.clone()))
        .ok_or_else(|| {
            format!(
                "NodePool {}: spec.provider: only clusterAPI pools can be scaled in a cluster",
                pool.metadata.name.as_deref().unwrap_or_default()
            )
        })
}

impl KubeNodeApi {
    /// An adapter on its own client, without kube's automatic retries. A 429 from the
    /// Eviction API means a PodDisruptionBudget refuses, and retrying it in place for
    /// minutes would stall every pool; the next pass decides again instead.
    pub fn from_config(mut config: kube::Config, instance: String) -> Result<Self, kube::Error> {
        config.default_retry = false;
        Ok(Self::new(Client::try_from(config)?, instance))
    }

    /// An adapter reporting events as `weir-node-autoscaler`/`instance`.
    pub fn new(client: Client, instance: String) -> Self {
        let recorder = weir_runtime::events::recorder(client.clone(), REPORTER, instance);
        KubeNodeApi { client, recorder }
    }

    async fn scale(&self, pool: &NodePool, target: i64) -> Result<(), String> {
        let (namespace, name) = machine_deployment(pool)?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &namespace,
            &resource("MachineDeployment", "machinedeployments"),
        );
        api.patch_scale(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": target}})),
        )
        .await
        .map(drop)
        .map_err(|e| format!("MachineDeployment {namespace}/{name}: {e}"))
    }

    async fn cordon(&self, node: &str, on: bool) -> Result<(), String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let current = nodes
            .get(node)
            .await
            .map_err(|e| format!("node {node}: {e}"))?;
        let mut taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        taints.retain(|t| t.key != TO_BE_DELETED_TAINT);
        if on {
            taints.push(k8s_openapi::api::core::v1::Taint {
                key: TO_BE_DELETED_TAINT.into(),
                value: Some(Timestamp::now().as_second().to_string()),
                effect: "NoSchedule".into(),
                time_added: None,
            });
        }
        nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": on, "taints": taints}})),
            )
            .await
            .map(drop)
            .map_err(|e| format!("node {node}: {e}"))
    }

    async fn evict(&self, pods: &[String]) -> Result<(), String> {
        for pod in pods {
            let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            match api.evict(name, &EvictParams::default()).await {
                Ok(_) => {}
                // Already gone.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(format!("evicting {pod}: {e}")),
            }
        }
        Ok(())
    }

    async fn mark_machine(&self, pool: &NodePool, node: &str) -> Result<(), String> {
        let (namespace, deployment) = machine_deployment(pool)?;
        let machines: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &namespace,
            &resource("Machine", "machines"),
        );
        let list = machines
            .list(&ListParams::default().labels(&format!("{DEPLOYMENT_NAME_LABEL}={deployment}")))
            .await
            .map_err(|e| format!("Machines of {namespace}/{deployment}: {e}"))?;
        let machine = list
            .items
            .iter()
            .find(|m| {
                m.data
                    .pointer("/status/nodeRef/name")
                    .and_then(|n| n.as_str())
                    == Some(node)
            })
            .and_then(|m| m.metadata.name.clone())
            .ok_or_else(|| {
                format!("no Machine of MachineDeployment {namespace}/{deployment} has node {node}")
            })?;
        machines
            .patch(
                &machine,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "true"}}}),
                ),
            )
            .await
            .map(drop)
            .map_err(|e| format!("Machine {namespace}/{machine}: {e}"))
    }
}

impl NodeApi for KubeNodeApi {
    async fn set_size(&self, pool: &NodePool, target: i64) -> Result<(), String> {
        self.scale(pool, target).await
    }

    async fn remove_node(
        &self,
        pool: &NodePool,
        node: &str,
        evict: &[String],
        target: i64,
    ) -> Result<(), String> {
        // Check the Machine first, so a node that cannot be removed is not drained.
        self.mark_machine(pool, node).await?;
        self.cordon(node, true).await?;
        if let Err(e) = self.evict(evict).await {
            if let Err(undo) = self.cordon(node, false).await {
                tracing::warn!(node, error = %undo, "cannot uncordon after a failed drain");
            }
            return Err(e);
        }
        self.scale(pool, target).await
    }

    async fn write_status(&self, pool: &str, status: &NodePoolStatus) -> Result<(), String> {
        let api: Api<NodePool> = Api::all(self.client.clone());
        weir_runtime::status::apply_status(&api, pool, FIELD_MANAGER, status).await
    }

    async fn mark_unneeded(&self, node: &str, since: Option<Timestamp>) -> Result<(), String> {
        let api: Api<Node> = Api::all(self.client.clone());
        let value = since.map(|t| t.to_string());
        api.patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {UNNEEDED_SINCE_ANNOTATION: value}}})),
        )
        .await
        .map(drop)
        .map_err(|e| format!("node {node}: {e}"))
    }

    async fn event(&self, pool: &NodePool, event: &Event) -> Result<(), String> {
        weir_runtime::events::publish_event(
            &self.recorder,
            &pool.object_ref(&()),
            event.type_ == "Warning",
            event.reason,
            &event.message,
            "ScaleNodes",
        )
        .await
    }
}
