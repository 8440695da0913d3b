//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, served from the
//! [`LimitTable`] and the [`Counters`].
//!
//! [`plan_request`] and [`respond`] are pure (the request and the counts in, the response
//! out); [`RateLimitServer`] adds the clock, the counters and the metrics.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use envoy_types::pb::{
    envoy::service::ratelimit::v3::{
        RateLimitRequest, RateLimitResponse,
        rate_limit_response::{Code, DescriptorStatus, RateLimit, rate_limit::Unit},
        rate_limit_service_server::{RateLimitService, RateLimitServiceServer},
    },
    google::protobuf::Duration as ProtoDuration,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use weir_crds::traffic_policy::RateLimitUnit;

use super::{
    DOMAIN, Limit, LimitTable, POLICY_KEY,
    backend::{Counters, Increment},
    counter_key, verdict,
};

/// What the service answers when the counters cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Let the request through (Envoy's own default).
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// What counting a request takes: the counters to increment, and for each descriptor the
/// counter it reads (`None`: no limit applies).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestPlan {
    /// Counters to increment, in order.
    pub increments: Vec<Increment>,
    /// Per descriptor: its limit, the index in `increments`, and its window's end.
    pub descriptors: Vec<Option<(Limit, usize, u64)>>,
}

/// Which counters a request touches at `now` (Unix seconds). Descriptors of another
/// domain, or whose first entry is not a known `weir.policy`, are not limited.
pub fn plan_request(table: &LimitTable, request: &RateLimitRequest, now: u64) -> RequestPlan {
    let mut plan = RequestPlan {
        increments: Vec::new(),
        descriptors: Vec::with_capacity(request.descriptors.len()),
    };
    let request_hits = u64::from(request.hits_addend.max(1));
    for descriptor in &request.descriptors {
        let limit = (request.domain == DOMAIN)
            .then(|| descriptor.entries.first())
            .flatten()
            .filter(|e| e.key == POLICY_KEY)
            .and_then(|e| table.get(&e.value));
        let Some(limit) = limit else {
            plan.descriptors.push(None);
            continue;
        };
        let entries: Vec<(String, String)> = descriptor
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let (key, expires_at) = counter_key(&entries, limit.unit, now);
        let hits = descriptor
            .hits_addend
            .as_ref()
            .map_or(request_hits, |h| h.value.max(1));
        plan.descriptors
            .push(Some((limit, plan.increments.len(), expires_at)));
        plan.increments.push(Increment {
            key,
            hits,
            expires_at,
        });
    }
    plan
}

fn proto_unit(unit: RateLimitUnit) -> Unit {
    match unit {
        RateLimitUnit::Second => Unit::Second,
        RateLimitUnit::Minute => Unit::Minute,
        RateLimitUnit::Hour => Unit::Hour,
    }
}

/// The response, from the counts after incrementing (`None`: the counters failed, and
/// `failure` decides).
pub fn respond(
    plan: &RequestPlan,
    counts: Option<&[u64]>,
    failure: FailureMode,
    now: u64,
) -> RateLimitResponse {
    let mut overall = Code::Ok;
    let statuses = plan
        .descriptors
        .iter()
        .map(|d| {
            let Some((limit, index, window_end)) = d else {
                return DescriptorStatus {
                    code: Code::Ok as i32,
                    ..DescriptorStatus::default()
                };
            };
            let (allowed, remaining) = match counts.and_then(|c| c.get(*index)) {
                Some(count) => {
                    let v = verdict(*limit, *count);
                    (v.allowed, v.remaining)
                }
                None => (failure == FailureMode::Allow, 0),
            };
            let code = if allowed { Code::Ok } else { Code::OverLimit };
            if code == Code::OverLimit {
                overall = Code::OverLimit;
            }
            DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    name: String::new(),
                    requests_per_unit: limit.requests,
                    unit: proto_unit(limit.unit) as i32,
                }),
                limit_remaining: remaining,
                duration_until_reset: Some(ProtoDuration {
                    seconds: i64::try_from(window_end.saturating_sub(now)).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                ..DescriptorStatus::default()
            }
        })
        .collect();
    RateLimitResponse {
        overall_code: overall as i32,
        statuses,
        ..RateLimitResponse::default()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// The service's metrics.
#[derive(Clone, Debug)]
pub struct RateLimitMetrics {
    decisions: Family<CodeLabels, Counter>,
    backend_errors: Counter,
    seconds: Histogram,
}

impl RateLimitMetrics {
    /// Registers `weir_ratelimit_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RateLimitMetrics {
            decisions: Family::default(),
            backend_errors: Counter::default(),
            seconds: Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
        };
        registry.register(
            "weir_ratelimit_decisions",
            "ShouldRateLimit answers by code: ok, over_limit, unlimited (no global limit applies), failure_allowed, failure_denied",
            m.decisions.clone(),
        );
        registry.register(
            "weir_ratelimit_backend_errors",
            "Calls to the rate-limit counters that failed",
            m.backend_errors.clone(),
        );
        registry.register(
            "weir_ratelimit_decision_seconds",
            "Time to answer ShouldRateLimit",
            m.seconds.clone(),
        );
        m
    }
}

/// The rate-limit service.
#[derive(Debug, Clone)]
pub struct RateLimitServer {
    limits: Arc<ArcSwap<LimitTable>>,
    counters: Arc<Counters>,
    failure: FailureMode,
    metrics: Option<RateLimitMetrics>,
}

impl RateLimitServer {
    /// A service over `limits` (swapped as the configuration changes) and `counters`.
    pub fn new(
        limits: Arc<ArcSwap<LimitTable>>,
        counters: Arc<Counters>,
        failure: FailureMode,
        metrics: Option<RateLimitMetrics>,
    ) -> Self {
        RateLimitServer {
            limits,
            counters,
            failure,
            metrics,
        }
    }

    /// The tonic service, to add to a server.
    pub fn into_service(self) -> RateLimitServiceServer<RateLimitServer> {
        RateLimitServiceServer::new(self)
    }

    /// Answers one request.
    pub async fn decide(&self, request: &RateLimitRequest) -> RateLimitResponse {
        let started = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let plan = plan_request(&self.limits.load(), request, now);
        let counts = if plan.increments.is_empty() {
            Some(Vec::new())
        } else {
            match self.counters.increment(&plan.increments, now).await {
                Ok(counts) => Some(counts),
                Err(e) => {
                    tracing::warn!(error = %e, failure_mode = ?self.failure, "rate-limit counters unavailable");
                    if let Some(m) = &self.metrics {
                        m.backend_errors.inc();
                    }
                    None
                }
            }
        };
        let response = respond(&plan, counts.as_deref(), self.failure, now);
        if let Some(m) = &self.metrics {
            let code = match (
                counts.is_some(),
                plan.increments.is_empty(),
                response.overall_code == Code::OverLimit as i32,
            ) {
                (_, true, _) => "unlimited",
                (true, false, false) => "ok",
                (true, false, true) => "over_limit",
                (false, false, false) => "failure_allowed",
                (false, false, true) => "failure_denied",
            };
            m.decisions.get_or_create(&CodeLabels { code }).inc();
            m.seconds.observe(started.elapsed().as_secs_f64());
        }
        response
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitServer {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.decide(request.get_ref()).await))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
        RateLimitDescriptor, rate_limit_descriptor::Entry,
    };

    use super::*;

    fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
        RateLimitRequest {
            domain: domain.into(),
            descriptors: descriptors
                .iter()
                .map(|entries| RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(k, v)| Entry {
                            key: k.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                    ..RateLimitDescriptor::default()
                })
                .collect(),
            hits_addend: 0,
        }
    }

    fn table() -> LimitTable {
        LimitTable::from_entries([(
            "shop/api".to_string(),
            Limit {
                requests: 2,
                unit: RateLimitUnit::Minute,
            },
        )])
    }

    #[test]
    fn only_known_policies_in_weirs_domain_are_counted() {
        let t = table();
        let r = request(
            DOMAIN,
            &[
                &[(POLICY_KEY, "shop/api"), ("remote_address", "10.0.0.1")],
                &[(POLICY_KEY, "shop/unknown")],
                &[("generic_key", "x")],
            ],
        );
        let plan = plan_request(&t, &r, 1_000);
        assert_eq!(plan.increments.len(), 1);
        assert_eq!(plan.descriptors[1], None);
        assert_eq!(plan.descriptors[2], None);
        assert!(
            plan_request(&t, &request("other", &[&[(POLICY_KEY, "shop/api")]]), 1_000)
                .increments
                .is_empty()
        );
    }

    #[test]
    fn over_the_limit_and_failure_modes() {
        let plan = plan_request(
            &table(),
            &request(DOMAIN, &[&[(POLICY_KEY, "shop/api")]]),
            1_000,
        );
        let ok = respond(&plan, Some(&[2]), FailureMode::Allow, 1_000);
        assert_eq!(ok.overall_code, Code::Ok as i32);
        let status = &ok.statuses[0];
        assert_eq!(status.limit_remaining, 0);
        assert_eq!(status.current_limit.as_ref().unwrap().requests_per_unit, 2);
        assert_eq!(status.duration_until_reset.unwrap().seconds, 20);
        let over = respond(&plan, Some(&[3]), FailureMode::Allow, 1_000);
        assert_eq!(over.overall_code, Code::OverLimit as i32);
        assert_eq!(
            respond(&plan, None, FailureMode::Allow, 1_000).overall_code,
            Code::Ok as i32
        );
        assert_eq!(
            respond(&plan, None, FailureMode::Deny, 1_000).overall_code,
            Code::OverLimit as i32
        );
    }
}
