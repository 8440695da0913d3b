//! The in-cluster components. `weir xds-server`: kube-runtime reflectors feed the stores;
//! the xds-server serves Envoy from them; the admin endpoint reports readiness once every
//! kind has been listed.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_store::{Kind, StateWriter};

use crate::{
    admin::{self, AdminState},
    cli::{LeaderArgs, XdsServerArgs},
    components::XDS_SERVER_KINDS,
    leader::{self, LeaseConfig},
    metrics::SourceMetrics,
    shutdown,
    sources::kube::spawn_reflectors,
    status_writer::{self, StatusMetrics},
};

/// What every in-cluster component starts with: signal handling, the API client, the
/// stores fed by reflectors, the metrics registry and the admin listener.
pub(crate) struct ClusterBase {
    pub(crate) client: kube::Client,
    pub(crate) registry: Registry,
    pub(crate) metrics: SourceMetrics,
    pub(crate) writer: Arc<StateWriter>,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) tasks: JoinSet<()>,
    /// The kinds listed so far.
    pub(crate) synced: watch::Receiver<BTreeSet<Kind>>,
    pub(crate) shutdown: CancellationToken,
    /// The kinds watched.
    pub(crate) kinds: &'static [Kind],
}

impl ClusterBase {
    /// Starts the base, watching `kinds` (`Kind::ALL` for the components that read
    /// everything).
    pub(crate) async fn start(
        admin_addr: std::net::SocketAddr,
        kinds: &'static [Kind],
    ) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        shutdown::cancel_on_signal(shutdown.clone()).context("installing signal handlers")?;
        let client = kube::Client::try_default().await.context(
            "connecting to the Kubernetes API (in-cluster service account, or KUBECONFIG)",
        )?;
        let mut registry = Registry::default();
        let metrics = SourceMetrics::register(&mut registry);
        let writer = Arc::new(StateWriter::default());
        let listener = admin::bind(admin_addr)
            .await
            .with_context(|| format!("cannot listen on --admin-addr {admin_addr}"))?;
        let mut tasks = JoinSet::new();
        let (synced_tx, synced) = watch::channel(BTreeSet::new());
        let mut reflectors = spawn_reflectors(
            client.clone(),
            writer.clone(),
            synced_tx,
            shutdown.clone(),
            kinds,
        );
        tasks.spawn(async move { while reflectors.join_next().await.is_some() {} });
        Ok(ClusterBase {
            client,
            registry,
            metrics,
            writer,
            listener,
            tasks,
            synced,
            shutdown,
            kinds,
        })
    }
}

/// Writes `status` on the object `name` of `api` by server-side apply, as `manager`
/// (forcing: the status belongs to the controller).
pub(crate) async fn apply_status<K, S>(
    api: &kube::Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply(manager).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// This replica's identity in a Lease: `--leader-identity` (the pod name), else the host
/// name, else the process.
pub(crate) fn identity(args: &LeaderArgs) -> String {
    args.leader_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("weir-{}", std::process::id()))
}

/// Runs `weir xds-server` until SIGTERM or SIGINT.
pub async fn run_xds_server(args: XdsServerArgs) -> anyhow::Result<()> {
    let ClusterBase {
        client,
        mut registry,
        metrics,
        writer,
        listener,
        mut tasks,
        synced: synced_rx,
        shutdown: shutdown_token,
        ..
    } = ClusterBase::start(args.admin.admin_addr, XDS_SERVER_KINDS).await?;
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(track_readiness(
        synced_rx,
        ready_tx,
        shutdown_token.clone(),
        XDS_SERVER_KINDS,
    ));
    let identities = match &args.mesh_ca.ca_dir {
        Some(dir) => crate::mesh_ca::from_dir(&args.mesh_ca, dir)?,
        None => crate::mesh_ca::from_secret(&client, &args.mesh_ca, &args.ca_secret).await?,
    };
    let proxies = crate::xds::start_xds(
        args.xds_addr,
        &writer,
        identities,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    crate::xds::start_rate_limit(
        &args.rate_limit,
        std::net::SocketAddr::from(([0, 0, 0, 0], 18081)),
        &writer,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    if args.write_status {
        let leading = start_leader_election(
            &client,
            &args.leader,
            "weir-xds-server",
            &mut tasks,
            &shutdown_token,
        );
        tasks.spawn(status_writer::run(
            client.clone(),
            writer.subscribe(),
            proxies.clone(),
            leading,
            StatusMetrics::register(&mut registry),
            shutdown_token.clone(),
        ));
    } else {
        info!("not writing Gateway API status (--write-status=false)");
    }
    tasks.spawn(crate::metrics::observe_state(
        writer.subscribe(),
        metrics,
        shutdown_token.clone(),
    ));
    let admin_state = AdminState::in_cluster(registry, ready_rx, writer.subscribe(), Some(proxies));
    admin::spawn(&mut tasks, listener, admin_state, shutdown_token.clone());
    info!(xds = %args.xds_addr, admin = %args.admin.admin_addr, "weir xds-server running");
    shutdown_token.cancelled().await;
    shutdown::drain(tasks).await;
    Ok(())
}

/// Starts leader election (or, with `--leader-elect=false`, leads from the start); the
/// receiver says whether this replica leads.
pub(crate) fn start_leader_election(
    client: &kube::Client,
    args: &LeaderArgs,
    default_id: &str,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> watch::Receiver<bool> {
    if !args.leader_elect {
        info!("leader election off: this replica writes");
        return watch::channel(true).1;
    }
    let duration = Duration::from_secs(args.leader_lease_seconds);
    let config = LeaseConfig {
        namespace: args.leader_election_namespace.clone(),
        name: args
            .leader_election_id
            .clone()
            .unwrap_or_else(|| default_id.into()),
        identity: identity(args),
        duration,
        retry: duration / 5,
    };
    info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "leader election on");
    let (tx, rx) = watch::channel(false);
    tasks.spawn(leader::run(client.clone(), config, tx, shutdown.clone()));
    rx
}

/// Ready once every one of `kinds` has been listed. Until then, says every 30 s which kinds are
/// missing: usually a CRD that is not installed (Weir's, or the Gateway API's).
pub(crate) async fn track_readiness(
    mut synced: watch::Receiver<BTreeSet<Kind>>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
    kinds: &'static [Kind],
) {
    let mut reminder = tokio::time::interval(Duration::from_secs(30));
    reminder.tick().await;
    loop {
        let missing: Vec<&str> = kinds
            .iter()
            .filter(|k| !synced.borrow().contains(k))
            .map(|k| k.name())
            .collect();
        if missing.is_empty() {
            ready.send_replace(true);
            info!("every kind listed: ready");
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = synced.changed() => if changed.is_err() { return },
            _ = reminder.tick() => warn!(?missing, "not ready: these kinds have not been listed yet (is their CRD installed?)"),
        }
    }
}
