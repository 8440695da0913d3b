//! The cluster source: one kube-runtime watcher per kind, each in its own task and
//! tracing span, applying events to the stores.
//!
//! A watcher's initial list (and every relist after a lost watch) replaces the kind's
//! store in one step, so readers never see a half-listed kind. Errors back off and retry;
//! they are logged, never fatal.

use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

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

/// Starts a watcher for each of `kinds`. `synced` collects the kinds whose initial list
/// has arrived; the source is ready when it holds every one of them. A kind whose API is not
/// served (its CRD is not installed) never syncs, and its watcher logs why while retrying;
/// except [`OPTIONAL_KINDS`], which count as listed and empty meanwhile.
pub fn spawn_reflectors(
    client: Client,
    writer: Arc<StateWriter>,
    synced: watch::Sender<BTreeSet<Kind>>,
    shutdown: CancellationToken,
    kinds: &[Kind],
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let synced = Arc::new(synced);
    for kind in kinds {
        let ctx = (
            client.clone(),
            writer.clone(),
            synced.clone(),
            shutdown.clone(),
        );
        match kind {
            Kind::ScalingPolicy => spawn::<ScalingPolicy>(&mut tasks, *kind, ctx),
            Kind::NodePool => spawn::<NodePool>(&mut tasks, *kind, ctx),
            Kind::TrafficPolicy => spawn::<TrafficPolicy>(&mut tasks, *kind, ctx),
            Kind::MeshPolicy => spawn::<MeshPolicy>(&mut tasks, *kind, ctx),
            Kind::GatewayParameters => spawn::<GatewayParameters>(&mut tasks, *kind, ctx),
            Kind::Namespace => spawn::<Namespace>(&mut tasks, *kind, ctx),
            Kind::Service => spawn::<Service>(&mut tasks, *kind, ctx),
            Kind::EndpointSlice => spawn::<EndpointSlice>(&mut tasks, *kind, ctx),
            Kind::Pod => spawn::<Pod>(&mut tasks, *kind, ctx),
            Kind::Node => spawn::<Node>(&mut tasks, *kind, ctx),
            Kind::Deployment => spawn::<Deployment>(&mut tasks, *kind, ctx),
            Kind::DaemonSet => spawn::<DaemonSet>(&mut tasks, *kind, ctx),
            Kind::PodDisruptionBudget => spawn::<PodDisruptionBudget>(&mut tasks, *kind, ctx),
            Kind::Secret => spawn::<Secret>(&mut tasks, *kind, ctx),
            Kind::Gateway => spawn::<Gateway>(&mut tasks, *kind, ctx),
            Kind::HTTPRoute => spawn::<HTTPRoute>(&mut tasks, *kind, ctx),
            Kind::GatewayClass => spawn::<GatewayClass>(&mut tasks, *kind, ctx),
            Kind::ReferenceGrant => spawn::<ReferenceGrant>(&mut tasks, *kind, ctx),
        }
    }
    tasks
}

type Ctx = (
    Client,
    Arc<StateWriter>,
    Arc<watch::Sender<BTreeSet<Kind>>>,
    CancellationToken,
);

fn spawn<K>(tasks: &mut JoinSet<()>, kind: Kind, (client, writer, synced, shutdown): Ctx)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Object: From<K>,
{
    let api: Api<K> = Api::all(client);
    let span = info_span!("reflector", kind = kind.name());
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
                        writer.reset(kind, std::mem::take(&mut relist));
                        info!(objects = count, "listed");
                        synced.send_if_modified(|kinds| kinds.insert(kind));
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
