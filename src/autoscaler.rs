//! `weir controllers`: the pod autoscaler (and, through [`crate::node_autoscaler`] and
//! [`crate::mesh_controller`], the node autoscaler and the mesh-TLS controller) in a
//! cluster. Reflectors fill the stores; while
//! this replica holds the Lease, every sync period it runs one sync of every ScalingPolicy
//! ([`weir_controllers::pod_autoscaler::sync::sync_due`]) with metrics from Prometheus,
//! through [`KubeScaleApi`], the thin adapter to the Kubernetes API.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter},
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_controllers::pod_autoscaler::{
    ControllerSettings,
    controller::{Event, Memory, Scale, ScaleApi},
    prometheus::PrometheusSource,
    source::MetricSource,
    sync::sync_due,
};
use weir_crds::scaling_policy::{ScaleTargetRef, ScalingPolicy, ScalingPolicyStatus};
use weir_store::{Kind, ObjectKey, StateWriter};

use crate::{
    admin::{self, AdminState},
    cli::{ControllersArgs, MetricsSourceKind},
    cluster::{ClusterBase, identity, start_leader_election},
    metrics_apis::MetricsApiSource,
    shutdown,
};

/// The field manager of the autoscaler's status writes (server-side apply).
pub const FIELD_MANAGER: &str = "weir-pod-autoscaler";

/// The API calls the pod autoscaler makes (beyond listing and watching what it reads).
pub const API_CALLS: &[crate::ApiCall] = &[
    ("*", "*/scale", "get"),
    ("*", "*/scale", "patch"),
    ("weir.io", "scalingpolicies/status", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// The Kubernetes API for the reconciler: scale subresources of any kind (resolved once
/// per kind through discovery), ScalingPolicy status by server-side apply, and events.
pub struct KubeScaleApi {
    client: Client,
    recorder: Recorder,
    kinds: Mutex<HashMap<(String, String), ApiResource>>,
}

impl std::fmt::Debug for KubeScaleApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeScaleApi").finish_non_exhaustive()
    }
}

impl KubeScaleApi {
    /// An adapter reporting events as `controller`/`instance`.
    pub fn new(client: Client, instance: String) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "weir-pod-autoscaler".into(),
                instance: Some(instance),
            },
        );
        KubeScaleApi {
            client,
            recorder,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    async fn scale_api(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<Api<DynamicObject>, String> {
        let key = (target.api_version.clone(), target.kind.clone());
        let cached = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned());
        let resource = match cached {
            Some(resource) => resource,
            None => {
                let (group, version) = match target.api_version.split_once('/') {
                    Some((g, v)) => (g.to_string(), v.to_string()),
                    None => (String::new(), target.api_version.clone()),
                };
                let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
                let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                    .await
                    .map_err(|e| format!("{} {}: {e}", target.api_version, target.kind))?;
                if let Ok(mut kinds) = self.kinds.lock() {
                    kinds.insert(key, resource.clone());
                }
                resource
            }
        };
        Ok(Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource,
        ))
    }
}

impl ScaleApi for KubeScaleApi {
    async fn get_scale(&self, namespace: &str, target: &ScaleTargetRef) -> Result<Scale, String> {
        let api = self.scale_api(namespace, target).await?;
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Scale {
            spec_replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
            selector: scale.status.and_then(|s| s.selector),
        })
    }

    async fn set_replicas(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), String> {
        let api = self.scale_api(namespace, target).await?;
        api.patch_scale(
            &target.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }

    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> Result<(), String> {
        let api: Api<ScalingPolicy> = Api::namespaced(self.client.clone(), namespace);
        crate::cluster::apply_status(&api, name, FIELD_MANAGER, status).await
    }

    async fn event(&self, policy: &ScalingPolicy, event: &Event) -> Result<(), String> {
        publish_event(&self.recorder, &policy.object_ref(&()), event, "Scale").await
    }
}

/// Publishes a controller's event about `reference` through `recorder`.
pub async fn publish_event(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    event: &Event,
    action: &str,
) -> Result<(), String> {
    recorder
        .publish(
            &KubeEvent {
                type_: if event.type_ == "Warning" {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.into(),
                note: Some(event.message.clone()),
                action: action.into(),
                secondary: None,
            },
            reference,
        )
        .await
        .map_err(|e| e.to_string())
}

struct AutoscalerMetrics {
    sync_seconds: Histogram,
    policies: Gauge,
    rescales: Counter,
    errors: Counter,
    queries: Counter,
}

impl AutoscalerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = AutoscalerMetrics {
            sync_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0]),
            policies: Gauge::default(),
            rescales: Counter::default(),
            errors: Counter::default(),
            queries: Counter::default(),
        };
        registry.register(
            "weir_autoscaler_sync_seconds",
            "Wall time of one sync of every ScalingPolicy",
            metrics.sync_seconds.clone(),
        );
        registry.register(
            "weir_autoscaler_policies",
            "ScalingPolicies in the last sync",
            metrics.policies.clone(),
        );
        registry.register(
            "weir_autoscaler_rescales",
            "Targets rescaled",
            metrics.rescales.clone(),
        );
        registry.register(
            "weir_autoscaler_errors",
            "Policies whose scale could not be read or set",
            metrics.errors.clone(),
        );
        registry.register(
            "weir_autoscaler_prometheus_queries",
            "PromQL queries issued",
            metrics.queries.clone(),
        );
        metrics
    }
}

/// The sync loop: waits for the stores, then syncs every period while leading.
struct SyncLoop {
    api: KubeScaleApi,
    period: Duration,
    synced: watch::Receiver<BTreeSet<Kind>>,
    leading: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
    writer: Arc<StateWriter>,
    metrics: AutoscalerMetrics,
    shutdown: CancellationToken,
}

impl SyncLoop {
    async fn run<S: MetricSource + Send + 'static>(mut self, source: S) {
        let needed = [Kind::ScalingPolicy, Kind::Pod];
        if !listed(&mut self.synced, &needed, &self.shutdown).await {
            return;
        }
        self.ready.send_replace(true);
        info!(period = ?self.period, "pod autoscaler running");
        let settings = ControllerSettings::default();
        let mut memory: HashMap<ObjectKey, Memory> = HashMap::new();
        // Ticks every second; each policy syncs when its period (its own
        // syncPeriodSeconds, else --sync-period-seconds) has passed.
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let period = SignedDuration::try_from(self.period).unwrap_or(SignedDuration::from_secs(15));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !*self.leading.borrow() {
                // A follower forgets: the leader's history is the one that counts.
                memory.clear();
                continue;
            }
            let state = self.writer.current();
            let stats = sync_due(
                &self.api,
                &state,
                &source,
                &mut memory,
                &settings,
                Timestamp::now(),
                Some(period),
            )
            .await;
            if stats.policies == 0 {
                continue;
            }
            let metrics = &self.metrics;
            metrics.sync_seconds.observe(stats.duration.as_secs_f64());
            metrics
                .policies
                .set(i64::try_from(stats.policies).unwrap_or(i64::MAX));
            metrics.rescales.inc_by(stats.rescaled as u64);
            metrics.errors.inc_by(stats.errors as u64);
            metrics.queries.inc_by(stats.queries);
            info!(policies = stats.policies, rescaled = stats.rescaled, errors = stats.errors, requests = stats.queries, took = ?stats.duration, "autoscaler sync");
        }
    }
}

/// The node autoscaler: once Nodes, Pods, NodePools, PodDisruptionBudgets and DaemonSets
/// are listed (planning on a partial picture could remove busy nodes), a pass every
/// `--scan-interval` while leading.
async fn run_node_autoscaler(
    api: crate::node_provider::KubeNodeApi,
    settings: weir_controllers::node_autoscaler::Settings,
    metrics: crate::node_autoscaler::NodeMetrics,
    mut synced: watch::Receiver<BTreeSet<Kind>>,
    leading: watch::Receiver<bool>,
    writer: Arc<StateWriter>,
    shutdown: CancellationToken,
) {
    let needed = [
        Kind::Node,
        Kind::Pod,
        Kind::NodePool,
        Kind::PodDisruptionBudget,
        Kind::DaemonSet,
    ];
    if !listed(&mut synced, &needed, &shutdown).await {
        return;
    }
    let view = move |_| writer.current();
    crate::node_autoscaler::run(api, view, settings, metrics, leading, shutdown).await;
}

/// The mesh-TLS controller: once MeshPolicies, Pods and EndpointSlices are listed
/// (coverage on a partial picture would be wrong), a pass every interval while leading.
async fn run_mesh_tls(
    source: crate::mesh_controller::sources::PrometheusSidecars,
    mesh: crate::mesh_controller::run::MeshLoop<crate::mesh_controller::run::KubeMeshApi>,
    mut synced: watch::Receiver<BTreeSet<Kind>>,
    shutdown: CancellationToken,
) {
    let needed = [Kind::MeshPolicy, Kind::Pod, Kind::EndpointSlice];
    if listed(&mut synced, &needed, &shutdown).await {
        info!(interval = ?mesh.interval, "mesh-TLS controller running, sidecars read from Prometheus");
        crate::mesh_controller::run(source, mesh, shutdown).await;
    }
}

/// Waits until every kind in `needed` has been listed; false on shutdown (or if the
/// reflectors are gone).
async fn listed(
    synced: &mut watch::Receiver<BTreeSet<Kind>>,
    needed: &[Kind],
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        synced = synced.wait_for(|k| needed.iter().all(|n| k.contains(n))) => synced.is_ok(),
    }
}

/// Runs `weir controllers` until SIGTERM or SIGINT.
pub async fn run_controllers(args: ControllersArgs) -> anyhow::Result<()> {
    let ClusterBase {
        client,
        mut registry,
        metrics: source_metrics,
        writer,
        listener,
        mut tasks,
        synced: synced_rx,
        shutdown: shutdown_token,
        ..
    } = ClusterBase::start(args.admin.admin_addr, crate::components::CONTROLLER_KINDS).await?;
    let metrics = AutoscalerMetrics::register(&mut registry);
    let leading = start_leader_election(
        &client,
        &args.leader,
        "weir-controllers",
        &mut tasks,
        &shutdown_token,
    );
    let identity = identity(&args.leader);
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(crate::metrics::observe_state(
        writer.subscribe(),
        source_metrics,
        shutdown_token.clone(),
    ));
    // Pods, Object and External metrics through prometheus-adapter rules.
    let rules_engine = if args.metrics_source == MetricsSourceKind::Rules {
        Some(crate::metrics_adapter::engine(
            args.rules.as_deref(),
            &args.prometheus_url,
            Arc::new(weir_metrics_adapter::engine::StoreObjects(
                writer.subscribe(),
            )),
            Default::default(),
            &mut registry,
        )?)
    } else {
        None
    };
    args.nodes.validate().map_err(anyhow::Error::msg)?;
    if args.mesh_tls {
        let source = crate::mesh_controller::sources::PrometheusSidecars::new(&args.prometheus_url)
            .map_err(anyhow::Error::msg)
            .context("--prometheus-url")?;
        let mesh = crate::mesh_controller::run::MeshLoop {
            sink: crate::mesh_controller::run::KubeMeshApi::new(client.clone(), identity.clone()),
            state: writer.subscribe(),
            leading: leading.clone(),
            interval: args.mesh_tls_interval.max(Duration::from_secs(1)),
            metrics: crate::mesh_controller::run::MeshMetrics::register(&mut registry),
        };
        tasks.spawn(run_mesh_tls(
            source,
            mesh,
            synced_rx.clone(),
            shutdown_token.clone(),
        ));
    } else {
        info!("mesh-TLS controller off (--mesh-tls=false)");
    }
    let node_metrics = crate::node_autoscaler::NodeMetrics::register(&mut registry);
    let mut admin_state = AdminState::in_cluster(registry, ready_rx, writer.subscribe(), None);
    admin_state.node_plan = Some(node_metrics.last_plan.clone());
    admin::spawn(&mut tasks, listener, admin_state, shutdown_token.clone());
    let node_api = crate::node_provider::KubeNodeApi::from_config(
        kube::Config::infer()
            .await
            .context("Kubernetes client configuration")?,
        identity.clone(),
    )
    .context("Kubernetes client for the node autoscaler")?;
    tasks.spawn(run_node_autoscaler(
        node_api,
        args.nodes.clone(),
        node_metrics,
        synced_rx.clone(),
        leading.clone(),
        writer.clone(),
        shutdown_token.clone(),
    ));
    let api = KubeScaleApi::new(client.clone(), identity);
    let period = Duration::from_secs(args.sync_period_seconds);
    let sync = SyncLoop {
        api,
        period,
        synced: synced_rx,
        leading,
        ready: ready_tx,
        writer,
        metrics,
        shutdown: shutdown_token.clone(),
    };
    match args.metrics_source {
        MetricsSourceKind::Prometheus => {
            let source = PrometheusSource::new(&args.prometheus_url)
                .map_err(anyhow::Error::msg)
                .context("--prometheus-url")?;
            info!(prometheus = %source.url(), "metrics from Prometheus");
            tasks.spawn(sync.run(source));
        }
        MetricsSourceKind::Rules => {
            let prometheus = PrometheusSource::new(&args.prometheus_url)
                .map_err(anyhow::Error::msg)
                .context("--prometheus-url")?;
            let engine = rules_engine.context("the rule engine")?;
            let relist = engine.clone();
            let token = shutdown_token.clone();
            tasks.spawn(async move { relist.relist_every(Duration::from_secs(60), token).await });
            info!(prometheus = %args.prometheus_url, "metrics through prometheus-adapter rules");
            tasks.spawn(sync.run(crate::rules_source::RulesSource::new(engine, prometheus)));
        }
        MetricsSourceKind::Kubernetes => {
            info!("metrics from the Kubernetes metrics APIs");
            tasks.spawn(sync.run(MetricsApiSource::new(client)));
        }
    }
    info!(admin = %args.admin.admin_addr, "weir controllers running");
    shutdown_token.cancelled().await;
    shutdown::drain(tasks).await;
    Ok(())
}
