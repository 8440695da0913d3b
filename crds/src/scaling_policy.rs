//! `ScalingPolicy`: scale a target with a scale subresource between min and max replicas on
//! metrics.
//!
//! The metric and behavior shapes are those of `autoscaling/v2` HorizontalPodAutoscaler, so an
//! HPA spec moves over field for field; Weir adds a direct `Prometheus` metric, scale to zero
//! (`minReplicas: 0`), `fallback` on metric failure and `forecast`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Quantity;

/// Desired state of a ScalingPolicy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.io",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "ScalingPolicy",
    doc = "Scales a target (anything with a scale subresource) between minReplicas and maxReplicas on metrics, with HorizontalPodAutoscaler semantics.",
    namespaced,
    status = "ScalingPolicyStatus",
    shortname = "scp",
    category = "weir",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minReplicas"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxReplicas"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.conditions[?(@.type==\"ScalingActive\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must be less than or equal to maxReplicas").field_path(".minReplicas"),
    validation = Rule::new("self.minReplicas > 0 || self.metrics.exists(m, m.type in ['Object', 'External', 'Prometheus'])").message("minReplicas: 0 (scale to zero) needs at least one Object, External or Prometheus metric").field_path(".minReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicySpec {
    /// The object to scale; it must implement the scale subresource (Deployment,
    /// StatefulSet, ReplicaSet, or a custom resource).
    pub target_ref: ScaleTargetRef,
    /// Lower bound for the replica count. 0 enables scale to zero, which needs an Object,
    /// External or Prometheus metric to wake the target again.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Upper bound for the replica count.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// The metrics to scale on; the largest proposal wins. Empty means CPU utilization at
    /// 80 %, as HorizontalPodAutoscaler does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics: Vec<MetricSpec>,
    /// Scaling behavior per direction (stabilization windows, rate policies, tolerance),
    /// with HorizontalPodAutoscaler's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// What to do when metrics cannot be read for several syncs in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Scale ahead of demand on a short-horizon forecast of each metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// Seconds between this policy's syncs (default: the controller's sync period, 15 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub sync_period_seconds: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

/// Identifies the scaled object, like HPA's `scaleTargetRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target, e.g. `apps/v1`.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// Kind of the target, e.g. `Deployment`.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Which source a metric comes from (`autoscaling/v2` MetricSourceType, plus `Prometheus`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MetricSourceType {
    /// CPU or memory of the pods, as in the pod spec's requests.
    Resource,
    /// CPU or memory of one named container in each pod.
    ContainerResource,
    /// A per-pod custom metric, averaged across pods.
    Pods,
    /// A metric describing another object in the namespace (an Ingress, a queue).
    Object,
    /// A metric from outside the cluster.
    External,
    /// A PromQL query evaluated directly against Prometheus.
    Prometheus,
}

/// One metric to scale on; `type` says which of the source fields is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.resource) == (self.type == 'Resource')").message("resource must be set when type is Resource, and only then"),
    validation = Rule::new("has(self.containerResource) == (self.type == 'ContainerResource')").message("containerResource must be set when type is ContainerResource, and only then"),
    validation = Rule::new("has(self.pods) == (self.type == 'Pods')").message("pods must be set when type is Pods, and only then"),
    validation = Rule::new("has(self.object) == (self.type == 'Object')").message("object must be set when type is Object, and only then"),
    validation = Rule::new("has(self.external) == (self.type == 'External')").message("external must be set when type is External, and only then"),
    validation = Rule::new("has(self.prometheus) == (self.type == 'Prometheus')").message("prometheus must be set when type is Prometheus, and only then")
)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// The metric source type.
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    /// For `type: Resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
    /// For `type: ContainerResource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<ContainerResourceMetricSource>,
    /// For `type: Pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsMetricSource>,
    /// For `type: Object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectMetricSource>,
    /// For `type: External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMetricSource>,
    /// For `type: Prometheus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetricSource>,
}

/// Resource (cpu, memory) usage of the target's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type in ['Utilization', 'AverageValue']").message("a Resource metric's target type must be Utilization or AverageValue").field_path(".target.type"))]
pub struct ResourceMetricSource {
    /// The resource, e.g. `cpu` or `memory`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The target value.
    pub target: MetricTarget,
}

/// Resource usage of one container in each of the target's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type in ['Utilization', 'AverageValue']").message("a ContainerResource metric's target type must be Utilization or AverageValue").field_path(".target.type"))]
pub struct ContainerResourceMetricSource {
    /// The resource, e.g. `cpu` or `memory`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The container whose usage counts.
    #[schemars(length(min = 1))]
    pub container: String,
    /// The target value.
    pub target: MetricTarget,
}

/// A custom metric of each pod, averaged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type == 'AverageValue'").message("a Pods metric's target type must be AverageValue").field_path(".target.type"))]
pub struct PodsMetricSource {
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target value.
    pub target: MetricTarget,
}

/// A metric describing one object in the policy's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type in ['Value', 'AverageValue']").message("an Object metric's target type must be Value or AverageValue").field_path(".target.type"))]
#[serde(rename_all = "camelCase")]
pub struct ObjectMetricSource {
    /// The object the metric describes.
    pub described_object: CrossVersionObjectReference,
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target value.
    pub target: MetricTarget,
}

/// A metric not tied to any Kubernetes object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type in ['Value', 'AverageValue']").message("an External metric's target type must be Value or AverageValue").field_path(".target.type"))]
pub struct ExternalMetricSource {
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target value.
    pub target: MetricTarget,
}

/// A PromQL query whose result (a single number) is compared with the target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.target.type in ['Value', 'AverageValue']").message("a Prometheus metric's target type must be Value or AverageValue").field_path(".target.type"))]
pub struct PrometheusMetricSource {
    /// The query; it must return one sample (use `sum(...)` to aggregate).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// The target value. `AverageValue` divides the result by the current replica count.
    pub target: MetricTarget,
}

/// A metric name and an optional selector narrowing its series.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct MetricIdentifier {
    /// The metric name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// A label selector on the metric's series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Name of the referent.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// How a metric's current value is compared.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MetricTargetType {
    /// Percent of the pods' resource requests.
    Utilization,
    /// The metric's value as is.
    Value,
    /// The metric's value divided by the number of pods.
    AverageValue,
}

/// The value a metric should hold; the field matching `type` is required.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type != 'Utilization' || has(self.averageUtilization)").message("averageUtilization is required when type is Utilization").field_path(".averageUtilization"),
    validation = Rule::new("self.type != 'Value' || has(self.value)").message("value is required when type is Value").field_path(".value"),
    validation = Rule::new("self.type != 'AverageValue' || has(self.averageValue)").message("averageValue is required when type is AverageValue").field_path(".averageValue")
)]
#[serde(rename_all = "camelCase")]
pub struct MetricTarget {
    /// The comparison.
    #[serde(rename = "type")]
    pub type_: MetricTargetType,
    /// Target value, for `Value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    /// Target per-pod value, for `AverageValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// Target percent of requests, for `Utilization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub average_utilization: Option<i32>,
}

/// `autoscaling/v2` HorizontalPodAutoscalerBehavior.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Rules for scaling up. Default: no stabilization; add 100 % or 4 pods per 15 s,
    /// whichever is more. With `forecast.enabled`, a rise the forecast sized is not paced
    /// unless these are stated (maxReplicas still bounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Rules for scaling down. Default: 300 s stabilization; remove up to 100 % per 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// Scaling rules for one direction (`autoscaling/v2` HPAScalingRules).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// How far back recommendations are considered before scaling, to avoid flapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy applies when several allow different changes (default `Max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Limits on how fast replicas change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub policies: Vec<ScalingRatePolicy>,
    /// Ratio band around 1.0 within which no scaling happens in this direction (default
    /// 0.1, the controller-wide tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Quantity>,
}

/// Which of several rate policies applies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// How a rate policy counts change.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ScalingRateType {
    /// An absolute number of pods.
    Pods,
    /// A percent of the current replica count.
    Percent,
}

/// One limit on change over a period (`autoscaling/v2` HPAScalingPolicy).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRatePolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub type_: ScalingRateType,
    /// How many pods, or what percent, may change in one period.
    #[schemars(range(min = 1))]
    pub value: i32,
    /// The period the limit applies over.
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// What the autoscaler does when metrics keep failing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.action != 'Replicas' || has(self.replicas)").message("replicas is required when action is Replicas").field_path(".replicas"))]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    /// Consecutive failed syncs before the fallback applies.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Hold the current count, or go to `replicas`.
    pub action: FallbackAction,
    /// The replica count for `action: Replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

fn default_failure_threshold() -> i32 {
    3
}

/// The fallback action.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FallbackAction {
    /// Keep the current replica count.
    Hold,
    /// Scale to `fallback.replicas`.
    Replicas,
}

/// Forecast-driven scaling: each metric's demand is learned from its history (a daily or
/// weekly season when there is one) and projected over the lead time; the policy
/// provisions the forecast's peak plus a headroom taken from the forecast's own recent
/// errors, at once (HPA's pace of 100 % or 4 pods per 15 s applies only when
/// `behavior.scaleUp` states it), and releases pods as soon as the forecast says the load
/// stays low.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Forecast {
    /// Act on the forecast; when false the forecast is only reported in status.
    #[serde(default)]
    pub enabled: bool,
    /// The shortest lead time: the forecast looks at least this far ahead, and further
    /// when a new pod takes longer to become ready plus the metric's window.
    #[serde(default = "default_forecast_horizon")]
    #[schemars(range(min = 15, max = 3600))]
    pub horizon_seconds: i32,
    /// How much history the forecast is fitted on (a weekly season needs two weeks).
    #[serde(default = "default_forecast_history")]
    #[schemars(range(min = 60, max = 2419200))]
    pub history_seconds: i32,
    /// The headroom: this percentile of the forecast's recent errors over the lead time
    /// is added to its peak.
    #[serde(default = "default_headroom_percentile")]
    #[schemars(range(min = 50, max = 100))]
    pub headroom_percentile: i32,
    /// How eagerly pods are released: this percentile of the same errors is added to the
    /// forecast's peak over the scale-down stabilization window, and fewer pods than that
    /// are not kept. Defaults to `headroomPercentile`. Higher keeps pods through a lull
    /// inside a burst that lasts, at the cost of replica-hours where spikes do not last;
    /// replay your traffic with `weir simulate` to choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 100))]
    pub release_percentile: Option<i32>,
}

fn default_forecast_horizon() -> i32 {
    120
}

fn default_forecast_history() -> i32 {
    14 * 86_400
}

fn default_headroom_percentile() -> i32 {
    57
}

/// The forecast at the last sync (`status.forecast`), so users see why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ForecastStatus {
    /// Whether the decision followed it.
    pub enabled: bool,
    /// How far ahead it provisioned, in seconds.
    pub lead_seconds: i64,
    /// The replica count the forecast decides.
    pub desired_replicas: i32,
    /// The replica count HPA's rules alone decide.
    pub plain_desired_replicas: i32,
    /// Per metric with a fitted model, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricForecastStatus>,
}

/// One metric's forecast, in replicas at its target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricForecastStatus {
    /// The metric's name.
    pub name: String,
    /// The replicas it needs now.
    pub demand: Quantity,
    /// The forecast's peak over the lead time.
    pub peak: Quantity,
    /// Added to the peak: a percentile of its recent errors.
    pub headroom: Quantity,
    /// The season found in its history, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season_seconds: Option<i64>,
}

/// Observed state of a ScalingPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the target was last scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Replicas of the target as last seen.
    #[serde(default)]
    pub current_replicas: i32,
    /// Replicas the autoscaler last asked for.
    #[serde(default)]
    pub desired_replicas: i32,
    /// The last value read for each metric, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    /// AbleToScale, ScalingActive, ScalingLimited, as HorizontalPodAutoscaler reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// With `spec.forecast`: what the forecast saw and decided at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastStatus>,
}

/// The last reading of one metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric source type.
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    /// The metric's name (the resource name for Resource metrics, the query for Prometheus).
    pub name: String,
    /// The current value, when the target type is Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    /// The current per-pod value, when the target type is AverageValue or Utilization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// The current percent of requests, when the target type is Utilization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
}
