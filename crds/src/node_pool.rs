//! `NodePool`: a group of identical nodes the node autoscaler grows and shrinks.
//!
//! The template describes one node (capacity, labels, taints) so that the planner can
//! simulate scheduling onto a node before it exists; the provider says how nodes are made.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, Quantity};

/// The label that ties a Node to its NodePool.
pub const NODE_POOL_LABEL: &str = "weir.io/node-pool";

/// Desired state of a NodePool.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.io",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "NodePool",
    doc = "A group of identical nodes that the node autoscaler grows for pending pods and shrinks when idle.",
    status = "NodePoolStatus",
    shortname = "np",
    category = "weir",
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minSize"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxSize"}"#,
    printcolumn = r#"{"name":"Target","type":"integer","jsonPath":".status.targetSize"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyNodes"}"#,
    printcolumn = r#"{"name":"Price/h","type":"number","jsonPath":".spec.pricePerHour"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.minSize <= self.maxSize").message("minSize must be less than or equal to maxSize").field_path(".minSize"))]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// What each node of the pool looks like.
    pub template: NodeTemplate,
    /// The pool never shrinks below this many nodes.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_size: i32,
    /// The pool never grows beyond this many nodes.
    #[schemars(range(min = 0, max = 10000))]
    pub max_size: i32,
    /// Cost of one node per hour, in any currency used consistently; the `price` expander
    /// prefers the cheapest pool per scheduled pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub price_per_hour: Option<f64>,
    /// Higher wins with the `priority` expander.
    #[serde(default)]
    pub priority: i32,
    /// How nodes are created and removed.
    pub provider: NodePoolProvider,
}

/// One node of the pool, as the scheduler will see it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeTemplate {
    /// Allocatable resources of one node: `cpu` and `memory` are required; `pods`
    /// (default 110), `ephemeral-storage` and extended resources such as `nvidia.com/gpu`
    /// may be given.
    #[x_kube(validation = Rule::new("'cpu' in self && 'memory' in self").message("capacity must give cpu and memory"))]
    pub capacity: BTreeMap<String, Quantity>,
    /// Labels every node of the pool carries (besides `weir.io/node-pool`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Taints every node of the pool carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

/// A node taint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Taint {
    /// The taint key.
    #[schemars(length(min = 1, max = 316))]
    pub key: String,
    /// The taint value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What the taint does to pods that do not tolerate it.
    pub effect: TaintEffect,
}

/// A taint's effect.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TaintEffect {
    /// Pods that do not tolerate the taint are not scheduled.
    NoSchedule,
    /// The scheduler avoids the node for pods that do not tolerate the taint.
    PreferNoSchedule,
    /// Pods that do not tolerate the taint are evicted.
    NoExecute,
}

/// How a pool's nodes are provisioned; exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.clusterAPI) != has(self.simulated)").message("set exactly one provider: clusterAPI or simulated"))]
pub struct NodePoolProvider {
    /// Scale a Cluster API MachineDeployment.
    #[serde(
        rename = "clusterAPI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_api: Option<ClusterApiProvider>,
    /// Create and delete Node objects directly after a delay (local mode and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<SimulatedProvider>,
}

/// The MachineDeployment behind a pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ClusterApiProvider {
    /// Namespace of the MachineDeployment.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the MachineDeployment.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A simulated provider: nodes appear after `provisionDelay`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimulatedProvider {
    /// Time from a scale-up to the node being Ready.
    #[serde(default = "default_provision_delay")]
    pub provision_delay: Duration,
}

fn default_provision_delay() -> Duration {
    Duration::from_secs(0)
}

/// Observed state of a NodePool. Also holds the state the node autoscaler keeps between
/// loops, so a dry run (`weir recommend nodes`) sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes of the pool that exist.
    #[serde(default)]
    pub current_size: i32,
    /// Nodes the autoscaler wants, including those still provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_size: Option<i32>,
    /// Nodes of the pool that are Ready.
    #[serde(default)]
    pub ready_nodes: i32,
    /// When the pool last grew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_up_time: Option<Time>,
    /// When the pool last shrank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down_time: Option<Time>,
    /// No scale-up before this time, after failed provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<Time>,
    /// Ready, ScaledUp, Backoff, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
