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

/// The connected proxies.
#[derive(Debug, Default)]
pub struct ProxyRegistry {
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
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
        _ => "other",
    }
}
