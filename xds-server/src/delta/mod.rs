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

use crate::{
    cache::{Resource as CachedResource, is_wildcard_type},
    envoy::VIRTUAL_HOST_TYPE,
    grpc::Outbox,
    registry::TypeStatus,
    stream::{StreamCore, XdsStream},
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tonic::Status;

mod on_demand;

/// Stands for a version the proxy reported that is not one of Weir's content hashes.
const UNKNOWN_VERSION: u64 = 0;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    /// Names subscribed to, held as references into the snapshot where it has them.
    names: BTreeSet<Arc<str>>,
    /// Resource name → the version (content hash) the proxy holds.
    known: BTreeMap<Arc<str>, u64>,
    /// Virtual hosts asked for on demand (VHDS aliases) that have been answered, and
    /// whether with a virtual host (`false`: nothing had that name then).
    answered: BTreeMap<Arc<str>, bool>,
    requested: bool,
    /// The digest of the snapshot last diffed against `known`, while the subscription has
    /// not changed since: the same digest again has nothing to send.
    checked: Option<u64>,
    status: TypeStatus,
    /// Since when the oldest change sent but not yet ACKed was due.
    pending: Option<std::time::Instant>,
}

pub(crate) struct DeltaStream {
    core: StreamCore,
    types: BTreeMap<&'static str, TypeState>,
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

    fn requested(&self, type_url: &str) -> bool {
        self.types.get(type_url).is_some_and(|t| t.requested)
    }

    async fn push_type(&mut self, type_url: &'static str, tx: &Outbox) -> Result<(), ()> {
        self.send(type_url, tx).await
    }

    fn publish_status(&self) {
        self.core
            .publish(self.types.iter().map(|(t, s)| (*t, &s.status)));
    }

    fn core(&self) -> &StreamCore {
        &self.core
    }
}

impl DeltaStream {
    pub(crate) fn new(core: StreamCore) -> Self {
        DeltaStream {
            core,
            types: BTreeMap::new(),
        }
    }

    async fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        tx: &Outbox,
    ) -> Result<(), Status> {
        let Some(type_url) = self.core.accept(request.node.as_ref(), &request.type_url)? else {
            return Ok(());
        };
        let view = self.core.view();
        let snapshot = view.as_deref().and_then(|v| v.of_type(type_url));
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
            self.core
                .record_nack(&mut state.status, type_url, &error.message);
            state.pending = None;
        } else if !request.response_nonce.is_empty() {
            state.status.acked = state.status.sent.clone();
            self.core.acked(type_url, &mut state.pending);
        }
        for name in request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                // Asked for again: answered again (a request may be waiting on it).
                state.answered.remove(name.as_str());
                state.names.insert(crate::cache::intern(snapshot, &name));
            }
        }
        for name in request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(name.as_str());
                state.answered.remove(name.as_str());
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
        let Some(view) = self.core.view() else {
            return Ok(());
        };
        let Some(snapshot) = view.of_type(type_url) else {
            return Ok(());
        };
        let generation = self.core.generation().cloned();
        let Some(state) = self.types.get_mut(type_url) else {
            return Ok(());
        };
        // What an on-demand sidecar fetched by name changes with the generation, not with
        // the view's own resources: no shortcut for it.
        let fetched = match generation.as_deref() {
            Some(generation) if view.key.on_demand() => {
                on_demand::resolve(generation, &view.key, type_url, &state.names)
            }
            _ => on_demand::Fetched::default(),
        };
        if fetched.is_empty() && state.checked == Some(snapshot.digest()) {
            return Ok(());
        }
        // By name, either way: what `removed` looks names up in.
        let mut current: Vec<Arc<CachedResource>> = snapshot
            .select((!state.wildcard).then_some(&state.names))
            .cloned()
            .collect();
        current.extend(fetched.resources.iter().cloned());
        current.sort_by(|a, b| a.name.cmp(&b.name));
        current.dedup_by(|a, b| a.name == b.name);
        // A virtual host asked for by a new alias is sent again with it: Envoy resumes the
        // request that asked when a response names the alias. So is one that did not exist
        // when asked for and does now (a Service created after its first call).
        let new_aliases: Vec<(Arc<str>, Option<Arc<str>>)> = fetched
            .aliases
            .iter()
            .filter(|(alias, to)| match state.answered.get(alias) {
                None => true,
                Some(found) => !found && to.is_some(),
            })
            .cloned()
            .collect();
        let changed: Vec<&Arc<CachedResource>> = current
            .iter()
            .filter(|r| {
                state.known.get(&r.name) != Some(&r.hash)
                    || new_aliases
                        .iter()
                        .any(|(_, to)| to.as_ref() == Some(&r.name))
            })
            .collect();
        let removed: Vec<Arc<str>> = state
            .known
            .keys()
            .filter(|name| current.binary_search_by(|r| r.name.cmp(name)).is_err())
            .cloned()
            .collect();
        // Envoy waits for a first answer to each subscription (its initialization: an
        // on-demand sidecar's wildcard CDS may hold no cluster yet, its VHDS nothing), so
        // the first is sent even when empty.
        let first = state.status.sent.is_none();
        if changed.is_empty() && removed.is_empty() && new_aliases.is_empty() && !first {
            state.checked = Some(snapshot.digest());
            return Ok(());
        }
        let aliases_of = |name: &str| -> Vec<String> {
            new_aliases
                .iter()
                .filter(|(_, to)| to.as_deref() == Some(name))
                .map(|(alias, _)| alias.to_string())
                .collect()
        };
        let mut resources: Vec<Resource> = changed
            .iter()
            .map(|r| Resource {
                name: r.name.to_string(),
                version: format!("{:016x}", r.hash),
                resource: Some(r.any.clone()),
                aliases: aliases_of(&r.name),
                ..Default::default()
            })
            .collect();
        // An alias nothing answers: a resource of that name and alias, without content,
        // so Envoy stops waiting (and answers the request 404).
        resources.extend(
            new_aliases
                .iter()
                .filter(|(_, to)| to.is_none())
                .map(|(alias, _)| Resource {
                    name: alias.to_string(),
                    aliases: vec![alias.to_string()],
                    ..Default::default()
                }),
        );
        if first && type_url == VIRTUAL_HOST_TYPE {
            // Envoy's VHDS watches its route table's name as a namespace (subscribing to
            // nothing by name) and starts routing once an answer in that namespace
            // arrives; an empty response reaches no watch, so the first one carries an
            // empty resource `<table>/` for each on-demand table (as an unresolved alias:
            // Envoy refuses a resource without content unless it names aliases).
            resources.extend(
                view.config
                    .route_tables
                    .iter()
                    .filter(|table| table.on_demand)
                    .map(|table| Resource {
                        name: format!("{}/", table.name),
                        aliases: vec![format!("{}/", table.name)],
                        ..Default::default()
                    }),
            );
        }
        let system_version = snapshot.version(None);
        let response = DeltaDiscoveryResponse {
            system_version_info: system_version.clone(),
            type_url: type_url.to_string(),
            nonce: self.core.next_nonce(),
            removed_resources: removed.iter().map(|n| n.to_string()).collect(),
            resources,
            ..Default::default()
        };
        tx.send(&response).await.map_err(|_| ())?;
        for resource in changed {
            state.known.insert(resource.name.clone(), resource.hash);
        }
        for name in removed {
            state.known.remove(&name);
        }
        state.answered.extend(
            new_aliases
                .into_iter()
                .map(|(alias, to)| (alias, to.is_some())),
        );
        state.status.sent = Some(system_version);
        state.status.resources = state.known.len();
        state.checked = Some(snapshot.digest());
        self.core.pushed(type_url, &mut state.pending);
        Ok(())
    }
}
