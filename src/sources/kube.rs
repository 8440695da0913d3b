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
    MeshPolicy, NodePool, ScalingPolicy, TrafficPolicy,
    gateway_api::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant},
};
use weir_store::{Kind, Object, ObjectKey, StateWriter};

/// Starts a watcher for each of `kinds`. `synced` collects the kinds whose initial list
/// has arrived; the source is ready when it holds every one of them. A kind whose API is not
/// served (its CRD is not installed) never syncs, and its watcher logs why while retrying.
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
