//! Who is connected, and what each proxy was sent, has ACKed and has rejected: the data
//! behind `weir proxy-status` and the admin endpoint's `/debug/proxies`.

use std::{collections::BTreeMap, sync::Mutex};

use serde::{Deserialize, Serialize};

/// A rejected push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The version the proxy rejected.
    pub version: String,
    /// Envoy's error text.
    pub message: String,
    /// The objects behind the rejected resources (`Kind namespace/name`).
    #[serde(default)]
    pub objects: Vec<String>,
}

/// One resource type on one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStatus {
    /// The version last sent.
    pub sent: Option<String>,
    /// The version last ACKed.
    pub acked: Option<String>,
    /// The last NACK.
    pub last_nack: Option<Nack>,
    /// Resources sent in the last response.
    pub resources: usize,
}

/// One connected proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyStatus {
    /// The stream's number (a proxy that reconnects gets a new one).
    pub stream: u64,
    /// The node id.
    pub node_id: String,
    /// The protocol variant: `sotw` or `delta`.
    pub protocol: &'static str,
    /// Envoy's admin port, from the bootstrap's node metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    /// Per resource type (`clusters`, `endpoints`, `listeners`, `routes`).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

/// A caller refused for want of proof: an ADS stream or a certificate request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    /// When (Unix seconds).
    pub at: i64,
    /// What was asked: `ads` (configuration) or `certify` (a workload certificate).
    pub request: String,
    /// What the caller claimed to be (a node id), when it said.
    pub claimed: String,
    /// What it proved, if anything.
    pub proven: String,
    /// The metric label of the reason.
    pub reason: String,
    /// Why, in words.
    pub message: String,
    /// Where it came from.
    pub peer: String,
    /// How many times in a row the same caller was refused the same way.
    pub count: u64,
}

/// How many refusals are kept (the most recent).
pub const REFUSALS_KEPT: usize = 100;

/// The connected proxies, and the callers recently refused.
#[derive(Debug, Default)]
pub struct ProxyRegistry {
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
    refused: Mutex<std::collections::VecDeque<Refused>>,
}

impl ProxyRegistry {
    /// Records a stream's current status.
    pub fn update(&self, status: ProxyStatus) {
        self.lock().insert(status.stream, status);
    }

    /// Forgets a stream that ended.
    pub fn remove(&self, stream: u64) {
        self.lock().remove(&stream);
    }

    /// Every connected proxy, by node id then stream.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut list: Vec<_> = self.lock().values().cloned().collect();
        list.sort_by(|a, b| (&a.node_id, a.stream).cmp(&(&b.node_id, b.stream)));
        list
    }

    /// Records a refusal; returns whether it is new (not a repeat of the last refusal of
    /// the same caller for the same reason), so that a proxy retrying every second is logged
    /// once.
    pub fn refuse(&self, refusal: Refused) -> bool {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(same) = refused.iter_mut().rev().find(|r| {
            r.request == refusal.request
                && r.claimed == refusal.claimed
                && r.proven == refusal.proven
                && r.reason == refusal.reason
        }) {
            same.count += 1;
            same.at = refusal.at;
            same.message = refusal.message;
            same.peer = refusal.peer;
            return false;
        }
        if refused.len() == REFUSALS_KEPT {
            refused.pop_front();
        }
        refused.push_back(Refused {
            count: 1,
            ..refusal
        });
        true
    }

    /// The refusals kept, oldest first.
    pub fn refusals(&self) -> Vec<Refused> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The short name of a type URL, as `proxy-status` shows it.
pub fn type_name(type_url: &str) -> &'static str {
    match type_url {
        crate::envoy::CLUSTER_TYPE => "clusters",
        crate::envoy::ENDPOINT_TYPE => "endpoints",
        crate::envoy::LISTENER_TYPE => "listeners",
        crate::envoy::ROUTE_TYPE => "routes",
        crate::envoy::SECRET_TYPE => "secrets",
        crate::envoy::VIRTUAL_HOST_TYPE => "virtualHosts",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(claimed: &str, at: i64) -> Refused {
        Refused {
            at,
            request: "ads".into(),
            claimed: claimed.into(),
            proven: "ServiceAccount shop/web".into(),
            reason: "other_service_account".into(),
            message: "no".into(),
            peer: "127.0.0.1:1".into(),
            count: 0,
        }
    }

    #[test]
    fn a_repeated_refusal_is_counted_not_listed_again() {
        let registry = ProxyRegistry::default();
        assert!(registry.refuse(refusal("sidecar~db-0.shop", 1)));
        assert!(!registry.refuse(refusal("sidecar~db-0.shop", 2)));
        assert!(registry.refuse(refusal("sidecar~api-0.shop", 3)));
        let kept = registry.refusals();
        assert_eq!(kept.len(), 2);
        assert_eq!((kept[0].count, kept[0].at), (2, 2));
        for n in 0..REFUSALS_KEPT as i64 {
            registry.refuse(refusal(&format!("sidecar~p{n}.shop"), n));
        }
        assert_eq!(registry.refusals().len(), REFUSALS_KEPT);
        assert_eq!(registry.refusals()[0].claimed, "sidecar~p0.shop");
    }
}
