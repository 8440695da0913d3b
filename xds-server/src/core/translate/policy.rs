//! TrafficPolicies: which one applies to a target, and what it becomes.

use weir_crds::traffic_policy::{
    LocalRateLimit, PolicyTargetKind, RateLimitDescriptorType, RateLimitUnit, Retries, RetryOn,
    TrafficPolicySpec,
};
use weir_store::ClusterState;

use crate::model::{DescriptorAction, GlobalLimit, RetryPolicy, TokenBucket};

/// A TrafficPolicy attached to a target: its spec, and its name for global limits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attached<'a> {
    namespace: &'a str,
    name: &'a str,
    /// The policy's spec.
    pub(super) spec: &'a TrafficPolicySpec,
}

impl Attached<'_> {
    /// The policy's global rate limit, as the descriptor Envoy sends.
    pub(super) fn global_limit(&self) -> Option<GlobalLimit> {
        let global = self.spec.rate_limit.as_ref()?.global.as_ref()?;
        Some(GlobalLimit {
            policy: format!("{}/{}", self.namespace, self.name),
            descriptors: global
                .descriptors
                .iter()
                .filter_map(|d| match d.type_ {
                    RateLimitDescriptorType::RemoteAddress => Some(DescriptorAction::RemoteAddress),
                    RateLimitDescriptorType::RequestHeader => d
                        .request_header
                        .as_ref()
                        .map(|h| DescriptorAction::RequestHeader(h.name.to_ascii_lowercase())),
                    RateLimitDescriptorType::Key => d
                        .key
                        .as_ref()
                        .map(|k| DescriptorAction::Key(k.value.clone())),
                })
                .collect(),
        })
    }
}

/// The TrafficPolicy attached to `kind` `namespace/name` (section-less), if any. Several
/// attached to one target: the first by name applies (later ones are reported as
/// conflicts by the status writer).
pub(super) fn policy_for<'a>(
    state: &'a ClusterState,
    namespace: &str,
    kind: PolicyTargetKind,
    name: &str,
) -> Option<Attached<'a>> {
    state
        .traffic_policies
        .in_namespace(namespace)
        .find(|p| p.spec.target_ref.kind == kind && p.spec.target_ref.name == name)
        .map(|p| Attached {
            namespace: p.metadata.namespace.as_deref().unwrap_or_default(),
            name: p.metadata.name.as_deref().unwrap_or_default(),
            spec: &p.spec,
        })
}

/// Whether the policy limits requests (locally or globally): what is enforced where the
/// target receives traffic.
pub(super) fn limits(spec: &TrafficPolicySpec) -> bool {
    spec.rate_limit
        .as_ref()
        .is_some_and(|r| r.local.is_some() || r.global.is_some())
}

/// A local rate limit as a token bucket.
pub(super) fn token_bucket(limit: &LocalRateLimit) -> TokenBucket {
    TokenBucket {
        max_tokens: limit.burst.unwrap_or(limit.requests),
        tokens_per_fill: limit.requests,
        fill_interval_ms: unit_ms(limit.unit),
    }
}

/// The length of a rate-limit unit.
pub(crate) fn unit_ms(unit: RateLimitUnit) -> u64 {
    match unit {
        RateLimitUnit::Second => 1_000,
        RateLimitUnit::Minute => 60_000,
        RateLimitUnit::Hour => 3_600_000,
    }
}

/// Retries as Envoy's retry policy; the default conditions are `5xx,connect-failure,reset`.
pub(super) fn retry_policy(retries: &Retries) -> RetryPolicy {
    let conditions: Vec<&str> = if retries.retry_on.is_empty() {
        vec!["5xx", "connect-failure", "reset"]
    } else {
        retries.retry_on.iter().map(|r| retry_on_name(*r)).collect()
    };
    RetryPolicy {
        retry_on: conditions.join(","),
        attempts: retries.attempts,
        per_try_timeout_ms: retries
            .per_try_timeout
            .as_ref()
            .map(|d| d.get().as_millis() as u64),
    }
}

fn retry_on_name(retry_on: RetryOn) -> &'static str {
    match retry_on {
        RetryOn::FiveXx => "5xx",
        RetryOn::GatewayError => "gateway-error",
        RetryOn::Reset => "reset",
        RetryOn::ConnectFailure => "connect-failure",
        RetryOn::Retriable4xx => "retriable-4xx",
        RetryOn::RefusedStream => "refused-stream",
        RetryOn::EnvoyRatelimited => "envoy-ratelimited",
    }
}

/// The policy's timeout in milliseconds.
pub(super) fn timeout_ms(spec: &TrafficPolicySpec) -> Option<u64> {
    spec.timeout.as_ref().map(|d| d.get().as_millis() as u64)
}
