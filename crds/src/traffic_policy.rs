//! `TrafficPolicy`: rate limits, retries and timeouts attached to a Service, an HTTPRoute or
//! a Gateway through `targetRef` (the Gateway API policy attachment pattern).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Desired state of a TrafficPolicy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.io",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    doc = "Rate limits, retries and timeouts for traffic to a Service, an HTTPRoute or a Gateway.",
    namespaced,
    status = "TrafficPolicyStatus",
    shortname = "tp",
    category = "weir",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.targetRef.kind"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.rateLimit) || has(self.retries) || has(self.timeout)").message("a TrafficPolicy must set at least one of rateLimit, retries, timeout"))]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// The object the policy applies to, in the policy's namespace.
    pub target_ref: PolicyTargetRef,
    /// Local (per proxy) and global (shared) request rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Retries of failed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Timeout for the whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// The kinds a TrafficPolicy can attach to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PolicyTargetKind {
    /// Traffic to a Service, through the mesh and the gateway.
    Service,
    /// Traffic matched by an HTTPRoute.
    HTTPRoute,
    /// All traffic entering a Gateway.
    Gateway,
}

/// Names the policy's target (Gateway API `LocalPolicyTargetReferenceWithSectionName`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.kind == 'Service' ? self.group == '' : self.group == 'gateway.networking.k8s.io'").message("group must be \"\" for Service and \"gateway.networking.k8s.io\" for HTTPRoute and Gateway").field_path(".group"))]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// API group of the target: `""` for Service, `gateway.networking.k8s.io` otherwise.
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    pub kind: PolicyTargetKind,
    /// Name of the target.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A part of the target: a Gateway listener name, or an HTTPRoute rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Rate limits; both kinds may be set, a request must pass both.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.local) || has(self.global)").message("rateLimit must set local, global or both"))]
pub struct RateLimit {
    /// A token bucket in each proxy: cheap, but the limit multiplies with replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRateLimit>,
    /// A limit shared by every proxy, counted by Weir's rate-limit service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalRateLimit>,
}

/// The time unit of a rate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RateLimitUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

/// A per-proxy token bucket: `requests` tokens per `unit`, at most `burst` saved up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalRateLimit {
    /// Requests allowed per unit.
    #[schemars(range(min = 1, max = 1000000000))]
    pub requests: u32,
    /// The unit.
    pub unit: RateLimitUnit,
    /// Bucket size; defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub burst: Option<u32>,
}

/// A limit shared by all proxies, per distinct descriptor value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct GlobalRateLimit {
    /// Requests allowed per unit, per distinct combination of descriptor values.
    #[schemars(range(min = 1, max = 1000000000))]
    pub requests: u32,
    /// The unit.
    pub unit: RateLimitUnit,
    /// What a request is counted by; empty counts all requests together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub descriptors: Vec<RateLimitDescriptor>,
}

/// What part of a request a global limit is counted by.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RateLimitDescriptorType {
    /// The client's address.
    RemoteAddress,
    /// The value of a request header.
    RequestHeader,
    /// A fixed key, to group routes under one counter.
    Key,
}

/// One descriptor entry; `type` says which field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.requestHeader) == (self.type == 'RequestHeader')").message("requestHeader must be set when type is RequestHeader, and only then"),
    validation = Rule::new("has(self.key) == (self.type == 'Key')").message("key must be set when type is Key, and only then")
)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitDescriptor {
    /// The descriptor type.
    #[serde(rename = "type")]
    pub type_: RateLimitDescriptorType,
    /// For `type: RequestHeader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header: Option<HeaderDescriptor>,
    /// For `type: Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyDescriptor>,
}

/// Count by a request header's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct HeaderDescriptor {
    /// The header name.
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub name: String,
}

/// Count under a fixed key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyDescriptor {
    /// The key's value.
    #[schemars(length(min = 1, max = 256))]
    pub value: String,
}

/// Retries of failed requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Retries after the first attempt.
    #[schemars(range(min = 0, max = 10))]
    pub attempts: u32,
    /// Timeout of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Which failures are retried (Envoy's `retry_on`); default `5xx,connect-failure,reset`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<RetryOn>,
}

/// A class of failure that is retried (Envoy's `x-envoy-retry-on` values).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx response, or no response.
    #[serde(rename = "5xx")]
    FiveXx,
    /// 502, 503 or 504.
    GatewayError,
    /// The upstream reset the connection.
    Reset,
    /// Connecting to the upstream failed.
    ConnectFailure,
    /// 409 Conflict.
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// The upstream's 503 carried a rate-limit header.
    EnvoyRatelimited,
}

/// Observed state of a TrafficPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted (the target exists and the policy is programmed), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
