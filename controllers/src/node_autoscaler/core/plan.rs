//! The plan: what the node autoscaler would do now, and why. `weir recommend nodes` prints
//! it as JSON; the controller acts on it and records it in NodePool status and Events.

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything decided in one pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The time the plan was made for (RFC 3339).
    pub now: String,
    /// Scale-up.
    pub scale_up: ScaleUpPlan,
    /// Scale-down.
    pub scale_down: ScaleDownPlan,
    /// Pools whose requested nodes did not register within `--max-node-provision-time`;
    /// they back off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provisioning_timed_out: Vec<TimedOut>,
    /// Objects left out of the snapshot, each naming the field that was wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Plan {
    /// The size each pool should have after this plan, for pools it changes.
    pub fn target_sizes(&self) -> BTreeMap<String, i64> {
        let mut sizes = BTreeMap::new();
        for up in &self.scale_up.scale_ups {
            sizes.insert(up.pool.clone(), up.target_size);
        }
        for removal in &self.scale_down.remove {
            sizes.insert(removal.pool.clone(), removal.target_size);
        }
        sizes
    }
}

/// A pool whose nodes did not come up in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimedOut {
    /// The pool.
    pub pool: String,
    /// Nodes asked for that never registered.
    pub missing: i64,
    /// When the scale-up was asked for.
    pub since: String,
}

/// Scale-up: which pending pods trigger nothing, which pools grow for which pods, and
/// which pods stay unschedulable.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUpPlan {
    /// Pending pods considered.
    pub pending_pods: usize,
    /// Pending pods that fit an existing node's free room or a node already being
    /// provisioned (`upcoming:<pool>`): they trigger nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fit_existing: Vec<Placement>,
    /// Pool increases. More than one pool grows when pods need different pools (one round
    /// each) or when similar pools are balanced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scale_ups: Vec<ScaleUp>,
    /// Pools that could not grow at all, and why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_pools: BTreeMap<String, String>,
    /// Pods no scale-up helps, with the reason per pool.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unschedulable: Vec<Unschedulable>,
}

/// A pod and where it would land.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    /// `namespace/name`.
    pub pod: String,
    /// A node, or `upcoming:<pool>`.
    pub node: String,
}

/// One pool's increase.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUp {
    /// The round of the pass (pods left by one round are planned in the next).
    pub round: usize,
    /// The pool.
    pub pool: String,
    /// Nodes to add.
    pub delta: i64,
    /// The pool's size after.
    pub target_size: i64,
    /// The pods the new nodes are for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Why this pool: the expander chain, or the pool it is balanced with.
    pub reason: String,
    /// Every option considered in the round, with its scores.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionScore>,
}

/// One scale-up option and its expander scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionScore {
    /// The pool.
    pub pool: String,
    /// New nodes it needs.
    pub nodes: i64,
    /// Pending pods it schedules.
    pub pods: usize,
    /// Scores by expander (`least-waste`: idle fraction, lower wins; `price`: per pod and
    /// hour, lower wins; `priority`: higher wins; ...).
    pub scores: BTreeMap<String, f64>,
    /// Whether it was chosen.
    pub chosen: bool,
}

/// A pod no scale-up helps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unschedulable {
    /// `namespace/name`.
    pub pod: String,
    /// Summary.
    pub reason: String,
    /// The reason per pool.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, String>,
}

/// Scale-down: every node's utilization, which are unneeded, which cannot go and why, and
/// what goes now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownPlan {
    /// Why nothing is removed now, when that holds for every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Utilization per node, by name.
    pub utilization: BTreeMap<String, Utilization>,
    /// Nodes that could go, with since when and where their pods would move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unneeded: Vec<Unneeded>,
    /// Nodes that cannot go, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unremovable: Vec<Unremovable>,
    /// Nodes to remove now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<Removal>,
}

/// Requests over allocatable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Utilization {
    /// cpu requests / allocatable cpu.
    pub cpu: f64,
    /// memory requests / allocatable memory.
    pub memory: f64,
    /// The larger of the two: what the threshold applies to.
    pub max: f64,
}

/// A node that could be removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unneeded {
    /// The node.
    pub node: String,
    /// Its pool.
    pub pool: String,
    /// No pods to move.
    pub empty: bool,
    /// Unneeded since (RFC 3339): the annotation, or now for a node newly found unneeded.
    pub since: String,
    /// When it may be removed.
    pub removable_at: String,
    /// Where its pods would go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Placement>,
}

/// A node that cannot be removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unremovable {
    /// The node.
    pub node: String,
    /// CA's reason name; `BlockedByPod:<reason>` for a pod that cannot be drained.
    pub reason: String,
    /// Details: the pod, the resource, the pool's minimum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A node to remove now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// The node.
    pub node: String,
    /// Its pool.
    pub pool: String,
    /// Empty (deleted in bulk) or to be drained.
    pub empty: bool,
    /// The pool's size after.
    pub target_size: i64,
    /// Pods to evict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evict: Vec<String>,
}
