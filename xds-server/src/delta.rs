//! The Aggregated Discovery Service, incremental (delta) variant.
//!
//! Per resource type the stream keeps the subscription (wildcard, or names added with
//! `resource_names_subscribe` and dropped with `resource_names_unsubscribe`) and the version
//! of every resource the proxy holds, from what was sent, or from
//! `initial_resource_versions` when a proxy reconnects. A response carries only resources
//! whose version differs from the proxy's, plus the names it holds that no longer exist
//! (`removed_resources`), so a reconnecting proxy is brought to the current state without
//! being sent what it already has. Resource versions are content hashes, so every stream
//! agrees on them. NACKs are logged, counted and recorded, and not answered with a resend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tonic::Status;
use tracing::{debug, info};

use crate::{
    ads::{XdsStream, identify, record_disconnect, record_nack, view_for},
    cache::{
        Resource as CachedResource, SnapshotCache, TYPE_ORDER, ViewSnapshot, is_wildcard_type,
    },
    grpc::Outbox,
    metrics::{TypeLabels, XdsMetrics},
    registry::{ProxyRegistry, ProxyStatus, TypeStatus, type_name},
    status::objects_behind,
    translate::{ProxyId, ProxyOptions},
};

/// Stands for a version the proxy reported that is not one of Weir's content hashes.
const UNKNOWN_VERSION: u64 = 0;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name → the version (content hash) the proxy holds.
    known: BTreeMap<Arc<str>, u64>,
    requested: bool,
    /// The digest of the snapshot last diffed against `known`, while the subscription has
    /// not changed since: the same digest again has nothing to send.
    checked: Option<u64>,
    status: TypeStatus,
}

impl TypeState {
    fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

pub(crate) struct DeltaStream {
    pub(crate) id: u64,
    pub(crate) proxy: Option<(ProxyId, ProxyOptions)>,
    types: BTreeMap<&'static str, TypeState>,
    nonce: u64,
    view: Option<(u64, Arc<ViewSnapshot>)>,
    cache: Arc<SnapshotCache>,
    registry: Arc<ProxyRegistry>,
    metrics: XdsMetrics,
}

impl XdsStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;

    async fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        tx: &Outbox,
    ) -> Result<(), Status> {
        self.handle_request(request, tx).await
    }

    async fn push_all(&mut self, tx: &Outbox) -> Result<(), ()> {
        for type_url in TYPE_ORDER {
            if self.types.get(type_url).is_some_and(|t| t.requested) {
                self.send(type_url, tx).await?;
            }
        }
        self.publish_status();
        Ok(())
    }

    fn disconnected(&mut self) {
        record_disconnect(
            self.id,
            self.proxy.as_ref().map(|(p, _)| p),
            &self.registry,
            &self.metrics,
        );
    }

    fn cache(&self) -> &SnapshotCache {
        &self.cache
    }
}

impl DeltaStream {
    pub(crate) fn new(
        id: u64,
        cache: Arc<SnapshotCache>,
        registry: Arc<ProxyRegistry>,
        metrics: XdsMetrics,
    ) -> Self {
        DeltaStream {
            id,
            proxy: None,
            types: BTreeMap::new(),
            nonce: 0,
            view: None,
            cache,
            registry,
            metrics,
        }
    }

    async fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        tx: &Outbox,
    ) -> Result<(), Status> {
        if self.proxy.is_none() {
            let identity = identify(request.node.as_ref())?;
            info!(proxy = %identity.0, stream = self.id, protocol = "delta", "proxy connected");
            self.metrics.connected.inc();
            self.proxy = Some(identity);
        }
        let Some(type_url) = TYPE_ORDER.iter().copied().find(|t| *t == request.type_url) else {
            debug!(stream = self.id, type_url = %request.type_url, "ignoring a request for a type Weir does not serve");
            return Ok(());
        };
        let proxy_name = self
            .proxy
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let nack_objects = match (&request.error_detail, &self.proxy) {
            (Some(_), Some((proxy, options))) => {
                let view = view_for(&self.cache, &mut self.view, proxy, options);
                objects_behind(&view.config, proxy, type_url)
            }
            _ => Vec::new(),
        };
        let state = self.types.entry(type_url).or_default();
        state.checked = None;
        let first = !state.requested;
        if first {
            state.requested = true;
            // A wildcard type with no names subscribed means "everything" (legacy wildcard).
            state.wildcard =
                is_wildcard_type(type_url) && request.resource_names_subscribe.is_empty();
            // Versions Weir did not write (or cannot read) never match, so they are resent.
            state.known = request
                .initial_resource_versions
                .iter()
                .map(|(name, version)| {
                    let hash = u64::from_str_radix(version, 16).unwrap_or(UNKNOWN_VERSION);
                    (Arc::from(name.as_str()), hash)
                })
                .collect();
        }
        if let Some(error) = &request.error_detail {
            record_nack(
                &mut state.status,
                &self.metrics,
                &proxy_name,
                type_url,
                &error.message,
                nack_objects,
            );
        } else if !request.response_nonce.is_empty() {
            state.status.acked = state.status.sent.clone();
        }
        for name in request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name);
            }
        }
        for name in request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(&name);
                state.known.remove(name.as_str());
            }
        }
        self.send(type_url, tx)
            .await
            .map_err(|_| Status::cancelled("stream closed"))?;
        self.publish_status();
        Ok(())
    }

    /// Sends what differs between the current view and what the proxy holds, if anything.
    async fn send(&mut self, type_url: &'static str, tx: &Outbox) -> Result<(), ()> {
        let Some((proxy, options)) = &self.proxy else {
            return Ok(());
        };
        let view = view_for(&self.cache, &mut self.view, proxy, options);
        let Some(snapshot) = view.of_type(type_url) else {
            return Ok(());
        };
        let Some(state) = self.types.get_mut(type_url) else {
            return Ok(());
        };
        if state.checked == Some(snapshot.digest()) {
            return Ok(());
        }
        let current: Vec<&Arc<CachedResource>> = snapshot
            .select(None)
            .filter(|r| state.subscribed(&r.name))
            .collect();
        let changed: Vec<&Arc<CachedResource>> = current
            .iter()
            .filter(|r| state.known.get(&r.name) != Some(&r.hash))
            .copied()
            .collect();
        let removed: Vec<Arc<str>> = state
            .known
            .keys()
            .filter(|name| current.binary_search_by(|r| r.name.cmp(name)).is_err())
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            state.checked = Some(snapshot.digest());
            return Ok(());
        }
        let system_version = snapshot.version(None);
        self.nonce += 1;
        let response = DeltaDiscoveryResponse {
            system_version_info: system_version.clone(),
            type_url: type_url.to_string(),
            nonce: self.nonce.to_string(),
            removed_resources: removed.iter().map(|n| n.to_string()).collect(),
            resources: changed
                .iter()
                .map(|r| Resource {
                    name: r.name.to_string(),
                    version: format!("{:016x}", r.hash),
                    resource: Some(r.any.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        tx.send(&response).await.map_err(|_| ())?;
        for resource in changed {
            state.known.insert(resource.name.clone(), resource.hash);
        }
        for name in removed {
            state.known.remove(&name);
        }
        state.status.sent = Some(system_version);
        state.status.resources = state.known.len();
        state.checked = Some(snapshot.digest());
        self.metrics
            .pushes
            .get_or_create(&TypeLabels {
                r#type: type_name(type_url),
            })
            .inc();
        Ok(())
    }

    fn publish_status(&self) {
        let Some((proxy, _)) = &self.proxy else {
            return;
        };
        self.registry.update(ProxyStatus {
            stream: self.id,
            node_id: proxy.to_string(),
            protocol: "delta",
            types: self
                .types
                .iter()
                .map(|(t, s)| (type_name(t), s.status.clone()))
                .collect(),
        });
    }
}
