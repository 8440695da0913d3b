//! `MeshPolicy`: the mTLS mode of a namespace (or of the workloads a selector picks), and
//! optional automatic promotion from Permissive to Strict once nothing would break.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Desired state of a MeshPolicy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.io",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "MeshPolicy",
    doc = "The mTLS mode of a namespace or of selected workloads, with optional automatic promotion from Permissive to Strict.",
    namespaced,
    status = "MeshPolicyStatus",
    shortname = "mp",
    category = "weir",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mtls.mode"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.effectiveMode"}"#,
    printcolumn = r#"{"name":"Coverage","type":"string","jsonPath":".status.sidecarCoverage"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicySpec {
    /// Narrows the policy to the workloads whose pods match; absent means the whole
    /// namespace (or the whole mesh, for a policy in the root namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Mutual TLS settings.
    pub mtls: MutualTls,
    /// What the workloads' captured sidecars do with outbound connections to destinations
    /// Weir does not know (not a Service ClusterIP): AllowAny passes them through,
    /// RegistryOnly refuses them (Istio's `outboundTrafficPolicy`). Absent: the next less
    /// specific MeshPolicy's setting, and AllowAny when none sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// The Services the workloads' sidecars are told about (Istio's `Sidecar.egress`):
    /// only these get routes and clusters, so a sidecar's configuration, and the pushes it
    /// receives, follow what its workload calls rather than the size of the mesh. Absent:
    /// the next less specific MeshPolicy's list, and every Service when none sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
}

/// The Services a sidecar is told about.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[x_kube(validation = Rule::new(r"self.hosts.all(h, h.matches('^([*.]|[a-z0-9]([-a-z0-9]*[a-z0-9])?)/([*]|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$'))").message("each host is <namespace>/<service>: a namespace name, '.' (the workload's own) or '*' (any), then a Service name or '*' (all of them)").field_path(".hosts"))]
pub struct Egress {
    /// `<namespace>/<service>` patterns: `shop/cart`, `shop/*`, `./*` (the workload's own
    /// namespace), `*/dns` (a Service of that name in any namespace). A Service that routes
    /// forward to is reachable too, so a route's backends need not be listed.
    pub hosts: Vec<String>,
}

/// Outbound connections to unknown destinations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OutboundTrafficPolicy {
    /// Pass them through to where they were addressed.
    AllowAny,
    /// Refuse them: only Services in the registry are reachable.
    RegistryOnly,
}

/// The mTLS mode of inbound traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MtlsMode {
    /// Accept mTLS and plaintext; callers with sidecars use mTLS.
    Permissive,
    /// Accept only mTLS with a certificate from the mesh CA.
    Strict,
    /// Plaintext only.
    Disable,
}

/// Mutual TLS settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.promotion) || !self.promotion.auto || self.mode == 'Permissive'").message("promotion.auto applies only to mode Permissive").field_path(".promotion.auto"))]
pub struct MutualTls {
    /// The mode.
    pub mode: MtlsMode,
    /// Automatic promotion from Permissive to Strict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// When and how a Permissive namespace is promoted to Strict, and rolled back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// Promote automatically once every endpoint has a sidecar and no plaintext was seen.
    #[serde(default)]
    pub auto: bool,
    /// How long inbound listeners must see no plaintext connection before promotion.
    #[serde(default = "default_plaintext_window")]
    pub plaintext_window: Duration,
    /// How long after promotion the inbound error rate is watched.
    #[serde(default = "default_rollback_window")]
    pub rollback_window: Duration,
    /// Inbound error rate (0–1) that, if exceeded during the rollback window, returns the
    /// namespace to Permissive.
    #[serde(default = "default_rollback_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub rollback_error_rate: f64,
}

fn default_plaintext_window() -> Duration {
    Duration::from_secs(600)
}

fn default_rollback_window() -> Duration {
    Duration::from_secs(300)
}

fn default_rollback_error_rate() -> f64 {
    0.05
}

/// Where a namespace is on its way to Strict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MeshPhase {
    /// The effective mode is the spec's mode.
    Steady,
    /// Permissive with auto promotion, waiting for coverage and a quiet window.
    Observing,
    /// Just promoted to Strict, watching the error rate.
    Promoted,
    /// Returned to Permissive after the error rate rose.
    RolledBack,
}

/// Observed state of a MeshPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The mode pushed to the proxies now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_mode: Option<MtlsMode>,
    /// Ready endpoints with a connected sidecar, e.g. `11/12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_coverage: Option<String>,
    /// Plaintext connections accepted by inbound listeners in the current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_connections: Option<i64>,
    /// The promotion phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MeshPhase>,
    /// When the namespace was last promoted to Strict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// Ready, Promoted, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
