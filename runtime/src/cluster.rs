//! What every in-cluster component starts with ([`ClusterBase`]): signal handling, the API
//! client, stores fed by reflectors for the kinds it watches, a metrics registry and the
//! admin listener; leader election for the components that write; readiness once every
//! kind has been listed.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use weir_store::{Kind, StateWriter};

use crate::{
    admin,
    args::LeaderArgs,
    leader::{self, Leadership, LeaseConfig},
    metrics::SourceMetrics,
    shutdown,
    sources::kube::{Scopes, spawn_reflectors},
};

/// What every in-cluster component starts with: signal handling, the API client, the
/// stores fed by reflectors, the metrics registry and the admin listener.
#[allow(missing_debug_implementations)] // kube::Client and the registry say nothing useful
pub struct ClusterBase {
    pub client: kube::Client,
    pub registry: Registry,
    pub metrics: SourceMetrics,
    pub writer: Arc<StateWriter>,
    pub listener: tokio::net::TcpListener,
    pub tasks: JoinSet<()>,
    /// The kinds listed so far.
    pub synced: watch::Receiver<BTreeSet<Kind>>,
    pub shutdown: CancellationToken,
    /// The kinds watched.
    pub kinds: &'static [Kind],
}

impl ClusterBase {
    /// Starts the base, watching `kinds` (`Kind::ALL` for the components that read
    /// everything), cluster-wide except where `scopes` says otherwise.
    pub async fn start(
        admin_addr: std::net::SocketAddr,
        kinds: &'static [Kind],
        scopes: &Scopes,
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
            scopes,
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

/// This replica's identity in a Lease: `--leader-identity` (the pod name), else the host
/// name, else the process.
pub fn identity(args: &LeaderArgs) -> String {
    args.leader_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("weir-{}", std::process::id()))
}

/// Starts leader election (or, with `--leader-elect=false`, leads from the start) on the
/// Lease `default_id` unless `--leader-election-id` names another. The [`Leadership`]
/// says whether this replica leads, and cancels a term's in-flight writes the moment its
/// renew deadline passes.
pub fn start_leader_election(
    client: &kube::Client,
    args: &LeaderArgs,
    default_id: &str,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Leadership> {
    if !args.leader_elect {
        info!("leader election off: this replica writes");
        return Ok(Leadership::always());
    }
    let (duration, renew_deadline, retry) = args.timings().map_err(anyhow::Error::msg)?;
    let config = LeaseConfig {
        namespace: args.leader_election_namespace.clone(),
        name: args
            .leader_election_id
            .clone()
            .unwrap_or_else(|| default_id.into()),
        identity: identity(args),
        duration,
        renew_deadline,
        retry,
    };
    info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, ?duration, ?renew_deadline, ?retry, "leader election on");
    let (leadership, elector) = Leadership::elected();
    let api = leader::KubeLeases::new(client.clone(), &config.namespace);
    tasks.spawn(leader::run(api, config, elector, shutdown.clone()));
    Ok(leadership)
}

/// Waits until every kind in `needed` has been listed; false on shutdown (or if the
/// reflectors are gone). Controllers deciding on a partial picture would act wrongly
/// (remove busy nodes, count sidecars as missing), so each waits for what it reads.
pub async fn listed(
    synced: &mut watch::Receiver<BTreeSet<Kind>>,
    needed: &[Kind],
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        synced = synced.wait_for(|k| needed.iter().all(|n| k.contains(n))) => synced.is_ok(),
    }
}

/// Ready once every one of `kinds` has been listed. Until then, says every 30 s which kinds are
/// missing: usually a CRD that is not installed (Weir's, or the Gateway API's).
pub async fn track_readiness(
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
