//! Global rate limits: Envoy's rate-limit service (`envoy.service.ratelimit.v3`) with
//! limits from `TrafficPolicy.rateLimit.global`, counted where every proxy (and every Weir
//! replica) sees the same numbers.
//!
//! How a request is counted:
//! - The translator gives each route under a global limit one rate-limit action list. Its
//!   first entry is `weir.policy = <namespace>/<name>`, then one entry per descriptor of
//!   the policy: `remote_address`, `header.<name>`, or `key`.
//! - Envoy's `envoy.filters.http.ratelimit` filter sends that descriptor to
//!   [`service::RateLimitServer`], which looks the policy up in the [`LimitTable`].
//! - It counts the descriptor in a fixed window of the policy's unit, under
//!   [`counter_key`], in a [`backend::Counters`] (Redis, pipelined with key expiry, or
//!   memory for local mode).
//! - A request is allowed while the window's count, this request included, is at most the
//!   limit. So N requests against a limit of L allow exactly min(N, L), whichever proxy they
//!   went through.
//!
//! This module is the pure core: the table, the keys and the verdicts.

#[cfg(feature = "runtime")]
#[cfg(feature = "runtime")]
pub mod backend;
#[cfg(feature = "runtime")]
#[cfg(feature = "runtime")]
pub mod service;

use std::collections::BTreeMap;

use weir_crds::traffic_policy::{GlobalRateLimit, RateLimitUnit};
use weir_store::ClusterState;

/// The rate-limit domain Weir's filters use.
pub const DOMAIN: &str = "weir";
/// The key of the first descriptor entry: which TrafficPolicy the request counts against.
pub const POLICY_KEY: &str = "weir.policy";

/// One policy's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests per unit, per distinct descriptor.
    pub requests: u32,
    /// The unit, also the counting window.
    pub unit: RateLimitUnit,
}

impl Limit {
    /// The limit of a `rateLimit.global`.
    pub fn of(global: &GlobalRateLimit) -> Limit {
        Limit {
            requests: global.requests,
            unit: global.unit,
        }
    }
}

/// The window length of a unit, in seconds.
pub fn unit_seconds(unit: RateLimitUnit) -> u64 {
    match unit {
        RateLimitUnit::Second => 1,
        RateLimitUnit::Minute => 60,
        RateLimitUnit::Hour => 3600,
    }
}

/// Global limits by policy (`namespace/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitTable {
    limits: BTreeMap<String, Limit>,
}

impl LimitTable {
    /// The global limits of every TrafficPolicy in `state`.
    pub fn from_state(state: &ClusterState) -> LimitTable {
        let limits = state
            .traffic_policies
            .iter()
            .filter_map(|(key, policy)| {
                let global = policy.spec.rate_limit.as_ref()?.global.as_ref()?;
                Some((key.to_string(), Limit::of(global)))
            })
            .collect();
        LimitTable { limits }
    }

    /// A table from explicit entries (tests, benchmarks).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Limit)>) -> LimitTable {
        LimitTable {
            limits: entries.into_iter().collect(),
        }
    }

    /// The limit of a policy.
    pub fn get(&self, policy: &str) -> Option<Limit> {
        self.limits.get(policy).copied()
    }

    /// How many policies have a global limit.
    pub fn len(&self) -> usize {
        self.limits.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }
}

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
}

/// The counter of one descriptor in the window that holds `now` (Unix seconds), and when
/// that window ends. Entries are escaped so that distinct descriptors never share a key.
pub fn counter_key(entries: &[(String, String)], unit: RateLimitUnit, now: u64) -> (String, u64) {
    let length = unit_seconds(unit);
    let start = now - now % length;
    let mut key = format!("weir:rl:{length}:{start}");
    for (k, v) in entries {
        key.push('|');
        escape(&mut key, k);
        key.push('=');
        escape(&mut key, v);
    }
    (key, start + length)
}

/// The verdict on one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Within the limit.
    pub allowed: bool,
    /// Requests left in the window.
    pub remaining: u32,
}

/// Allowed while the window's count, these `hits` included, is at most the limit.
pub fn verdict(limit: Limit, count_after: u64) -> Verdict {
    let limit_n = u64::from(limit.requests);
    Verdict {
        allowed: count_after <= limit_n,
        remaining: u32::try_from(limit_n.saturating_sub(count_after)).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_follow_the_window_and_never_collide() {
        let e = entries(&[(POLICY_KEY, "shop/api"), ("remote_address", "10.0.0.1")]);
        let (a, end) = counter_key(&e, RateLimitUnit::Minute, 1_000_010);
        assert_eq!(
            a,
            "weir:rl:60:999960|weir.policy=shop/api|remote_address=10.0.0.1"
        );
        assert_eq!(end, 1_000_020);
        let (b, _) = counter_key(&e, RateLimitUnit::Minute, 1_000_019);
        assert_eq!(a, b, "same window");
        let (c, _) = counter_key(&e, RateLimitUnit::Minute, 1_000_020);
        assert_ne!(a, c, "next window");
        // A value holding the separators cannot pose as two entries.
        let tricky = entries(&[(POLICY_KEY, "shop/api|remote_address=10.0.0.1")]);
        assert_ne!(counter_key(&tricky, RateLimitUnit::Minute, 1_000_010).0, a);
    }

    #[test]
    fn exactly_the_limit_is_allowed() {
        let limit = Limit {
            requests: 50,
            unit: RateLimitUnit::Minute,
        };
        let allowed = (1..=120u64).filter(|n| verdict(limit, *n).allowed).count();
        assert_eq!(allowed, 50);
        assert_eq!(verdict(limit, 50).remaining, 0);
        assert_eq!(verdict(limit, 1).remaining, 49);
    }
}
