//! The cluster source: one kube-runtime watcher per kind, each in its own task and
//! tracing span, applying events to the stores.
//!
//! A watcher's initial list (and every relist after a lost watch) replaces the kind's
//! store in one step, so readers never see a half-listed kind. Errors back off and retry;
//! they are logged, never fatal.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{Namespace, Node, Pod, Secret, Service},
    discovery::v1::EndpointSlice,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use weir_crds::{
    GatewayParameters, MeshPolicy, NodePool, ScalingPolicy, TrafficPolicy,
    gateway_api::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant},
};
use weir_store::{Kind, Object, ObjectKey, StateWriter};

/// Kinds whose CRDs a cluster may not have: the Gateway API, and Weir CRDs newer than the
/// release that installed the chart. While their API is not served (404), they count as
/// listed and empty, so Weir runs (and is ready) without them; their watchers keep
/// retrying and fill the stores once the CRDs are installed.
pub const OPTIONAL_KINDS: &[Kind] = &[
    Kind::Gateway,
    Kind::HTTPRoute,
    Kind::GatewayClass,
    Kind::ReferenceGrant,
    // Newer than the first release, and `helm upgrade` does not install new CRDs: until
    // it is applied, no Gateway has parameters.
    Kind::GatewayParameters,
];

/// The list and watch calls the reflectors for `kinds` make: `(group, plural, verb)`.
pub fn watch_calls(kinds: &[Kind]) -> Vec<crate::ApiCall> {
    kinds
        .iter()
        .flat_map(|kind| {
            let (group, plural) = kind_resource(*kind);
            [(group, plural, "list"), (group, plural, "watch")]
        })
        .collect()
}

/// The API group and plural resource name of a kind.
pub fn kind_resource(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::ScalingPolicy => ("weir.io", "scalingpolicies"),
        Kind::NodePool => ("weir.io", "nodepools"),
        Kind::TrafficPolicy => ("weir.io", "trafficpolicies"),
        Kind::MeshPolicy => ("weir.io", "meshpolicies"),
        Kind::GatewayParameters => ("weir.io", "gatewayparameters"),
        Kind::Namespace => ("", "namespaces"),
        Kind::Service => ("", "services"),
        Kind::EndpointSlice => ("discovery.k8s.io", "endpointslices"),
        Kind::Pod => ("", "pods"),
        Kind::Node => ("", "nodes"),
        Kind::Deployment => ("apps", "deployments"),
        Kind::DaemonSet => ("apps", "daemonsets"),
        Kind::PodDisruptionBudget => ("policy", "poddisruptionbudgets"),
        Kind::Secret => ("", "secrets"),
        Kind::Gateway => ("gateway.networking.k8s.io", "gateways"),
        Kind::HTTPRoute => ("gateway.networking.k8s.io", "httproutes"),
        Kind::GatewayClass => ("gateway.networking.k8s.io", "gatewayclasses"),
        Kind::ReferenceGrant => ("gateway.networking.k8s.io", "referencegrants"),
    }
}

/// Kinds watched only in some namespaces, with a watcher per namespace, so that a Role in
/// each (not a ClusterRole) grants the reads: the xds-server reads Secrets only where
/// Gateway certificates are kept. A kind listed with no namespace is not watched at all
/// and counts as listed and empty. Kinds not listed are watched cluster-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(BTreeMap<Kind, BTreeSet<String>>);

impl Scopes {
    /// Watches `kind` only in `namespaces` (none: not at all).
    pub fn namespaced(mut self, kind: Kind, namespaces: impl IntoIterator<Item = String>) -> Self {
        assert!(kind.is_namespaced(), "{kind} is not namespaced");
        self.0.insert(kind, namespaces.into_iter().collect());
        self
    }

    /// The namespaces `kind` is watched in; `None` when it is watched cluster-wide.
    pub fn namespaces(&self, kind: Kind) -> Option<&BTreeSet<String>> {
        self.0.get(&kind)
    }
}

/// Where one reflector watches, and (for a namespaced scope) the namespaces of its kind
/// not listed yet: the kind is synced once every one of them has been.
#[derive(Clone)]
struct Target {
    namespace: Option<String>,
    unlisted: Arc<Mutex<BTreeSet<String>>>,
}

impl Target {
    /// Records that this reflector's list arrived; returns whether the kind is now fully
    /// listed.
    fn listed(&self) -> bool {
        let Some(namespace) = &self.namespace else {
            return true;
        };
        let mut unlisted = self
            .unlisted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        unlisted.remove(namespace);
        unlisted.is_empty()
    }
}

/// Starts a watcher for each of `kinds` (per namespace for the kinds `scopes` names).
/// `synced` collects the kinds whose initial list has arrived; the source is ready when it
/// holds every one of them. A kind whose API is not served (its CRD is not installed) never
/// syncs, and its watcher logs why while retrying; except [`OPTIONAL_KINDS`], which count as
/// listed and empty meanwhile.
pub fn spawn_reflectors(
    client: Client,
    writer: Arc<StateWriter>,
    synced: watch::Sender<BTreeSet<Kind>>,
    shutdown: CancellationToken,
    kinds: &[Kind],
    scopes: &Scopes,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let synced = Arc::new(synced);
    for kind in kinds {
        let targets: Vec<Target> = match scopes.namespaces(*kind) {
            None => vec![Target {
                namespace: None,
                unlisted: Arc::default(),
            }],
            Some(namespaces) if namespaces.is_empty() => {
                info!(kind = kind.name(), "not watched in any namespace: none");
                writer.reset(*kind, Vec::new());
                synced.send_if_modified(|kinds| kinds.insert(*kind));
                continue;
            }
            Some(namespaces) => {
                let unlisted = Arc::new(Mutex::new(namespaces.clone()));
                namespaces
                    .iter()
                    .map(|ns| Target {
                        namespace: Some(ns.clone()),
                        unlisted: unlisted.clone(),
                    })
                    .collect()
            }
        };
        for target in targets {
            spawn_kind(
                &mut tasks, *kind, &client, &writer, &synced, &shutdown, target,
            );
        }
    }
    tasks
}

fn spawn_kind(
    tasks: &mut JoinSet<()>,
    kind: Kind,
    client: &Client,
    writer: &Arc<StateWriter>,
    synced: &Arc<watch::Sender<BTreeSet<Kind>>>,
    shutdown: &CancellationToken,
    target: Target,
) {
    let ctx = |target: Target| (writer.clone(), synced.clone(), shutdown.clone(), target);
    match kind {
        Kind::ScalingPolicy => {
            spawn::<ScalingPolicy>(tasks, kind, scoped(client, &target), ctx(target))
        }
        Kind::NodePool => spawn::<NodePool>(tasks, kind, all(client, &target), ctx(target)),
        Kind::TrafficPolicy => {
            spawn::<TrafficPolicy>(tasks, kind, scoped(client, &target), ctx(target))
        }
        Kind::MeshPolicy => spawn::<MeshPolicy>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::GatewayParameters => {
            spawn::<GatewayParameters>(tasks, kind, scoped(client, &target), ctx(target))
        }
        Kind::Namespace => spawn::<Namespace>(tasks, kind, all(client, &target), ctx(target)),
        Kind::Service => spawn::<Service>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::EndpointSlice => {
            spawn::<EndpointSlice>(tasks, kind, scoped(client, &target), ctx(target))
        }
        Kind::Pod => spawn::<Pod>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::Node => spawn::<Node>(tasks, kind, all(client, &target), ctx(target)),
        Kind::Deployment => spawn::<Deployment>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::DaemonSet => spawn::<DaemonSet>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::PodDisruptionBudget => {
            spawn::<PodDisruptionBudget>(tasks, kind, scoped(client, &target), ctx(target))
        }
        Kind::Secret => spawn::<Secret>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::Gateway => spawn::<Gateway>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::HTTPRoute => spawn::<HTTPRoute>(tasks, kind, scoped(client, &target), ctx(target)),
        Kind::GatewayClass => spawn::<GatewayClass>(tasks, kind, all(client, &target), ctx(target)),
        Kind::ReferenceGrant => {
            spawn::<ReferenceGrant>(tasks, kind, scoped(client, &target), ctx(target))
        }
    }
}

/// A namespaced kind's API: in the target's namespace, or in all of them.
fn scoped<K>(client: &Client, target: &Target) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match &target.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A cluster-scoped kind's API ([`Scopes`] never names one).
fn all<K: Resource<DynamicType = ()>>(client: &Client, target: &Target) -> Api<K> {
    debug_assert!(
        target.namespace.is_none(),
        "a cluster-scoped kind has no namespace"
    );
    Api::all(client.clone())
}

type Ctx = (
    Arc<StateWriter>,
    Arc<watch::Sender<BTreeSet<Kind>>>,
    CancellationToken,
    Target,
);

fn spawn<K>(
    tasks: &mut JoinSet<()>,
    kind: Kind,
    api: Api<K>,
    (writer, synced, shutdown, target): Ctx,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Object: From<K>,
{
    let span = match &target.namespace {
        Some(namespace) => info_span!("reflector", kind = kind.name(), namespace = %namespace),
        None => info_span!("reflector", kind = kind.name()),
    };
    tasks.spawn(
        async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut relist: Vec<Object> = Vec::new();
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => break,
                    event = events.next() => event,
                };
                match event {
                    None => break,
                    Some(Err(watcher::Error::InitialListFailed(kube::Error::Api(e))))
                        if e.code == 404 && OPTIONAL_KINDS.contains(&kind) =>
                    {
                        let first = synced.send_if_modified(|kinds| kinds.insert(kind));
                        if first {
                            writer.reset(kind, Vec::new());
                            info!("not served (its CRD is not installed): none, until it is");
                        }
                    }
                    Some(Err(e)) => warn!(error = %e, "watch failed; retrying with backoff"),
                    Some(Ok(watcher::Event::Init)) => relist.clear(),
                    Some(Ok(watcher::Event::InitApply(object))) => relist.push(object.into()),
                    Some(Ok(watcher::Event::InitDone)) => {
                        let count = relist.len();
                        let objects = std::mem::take(&mut relist);
                        match &target.namespace {
                            Some(namespace) => writer.reset_namespace(kind, namespace, objects),
                            None => writer.reset(kind, objects),
                        }
                        info!(objects = count, "listed");
                        if target.listed() {
                            synced.send_if_modified(|kinds| kinds.insert(kind));
                        }
                    }
                    Some(Ok(watcher::Event::Apply(object))) => writer.apply(object.into()),
                    Some(Ok(watcher::Event::Delete(object))) => {
                        writer.delete(kind, &ObjectKey::of(&object))
                    }
                }
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource<K: Resource<DynamicType = ()>>() -> (String, String) {
        (K::group(&()).into_owned(), K::plural(&()).into_owned())
    }

    #[test]
    fn kind_resources_are_the_types_own() {
        for kind in Kind::ALL {
            let expected = match kind {
                Kind::ScalingPolicy => resource::<ScalingPolicy>(),
                Kind::NodePool => resource::<NodePool>(),
                Kind::TrafficPolicy => resource::<TrafficPolicy>(),
                Kind::MeshPolicy => resource::<MeshPolicy>(),
                Kind::GatewayParameters => resource::<GatewayParameters>(),
                Kind::Namespace => resource::<Namespace>(),
                Kind::Service => resource::<Service>(),
                Kind::EndpointSlice => resource::<EndpointSlice>(),
                Kind::Pod => resource::<Pod>(),
                Kind::Node => resource::<Node>(),
                Kind::Deployment => resource::<Deployment>(),
                Kind::DaemonSet => resource::<DaemonSet>(),
                Kind::PodDisruptionBudget => resource::<PodDisruptionBudget>(),
                Kind::Secret => resource::<Secret>(),
                Kind::Gateway => resource::<Gateway>(),
                Kind::HTTPRoute => resource::<HTTPRoute>(),
                Kind::GatewayClass => resource::<GatewayClass>(),
                Kind::ReferenceGrant => resource::<ReferenceGrant>(),
            };
            let (group, plural) = kind_resource(*kind);
            assert_eq!((group.to_string(), plural.to_string()), expected, "{kind}");
        }
    }
}
