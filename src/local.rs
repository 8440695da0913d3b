//! `weir up`: local mode. Everything in one process against a directory of manifests.
//!
//! The directory source feeds the stores; the admin endpoint reports health, readiness,
//! metrics and problems; SIGTERM or SIGINT stops every task and waits for them to finish.
//! The components (xds-server, controllers, metrics adapter) plug in here as they arrive.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_store::StateWriter;
use weir_xds::{
    ads::AdsServer,
    cache::SnapshotCache,
    metrics::XdsMetrics,
    registry::ProxyRegistry,
    server::{DEBOUNCE, MAX_DELAY},
};

use crate::{
    admin::{self, AdminState},
    cli::UpArgs,
    metrics::SourceMetrics,
    shutdown,
    sources::files::DirectorySource,
};

/// How long tasks get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs local mode until SIGTERM or SIGINT.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone()).context("installing signal handlers")?;

    let mut registry = Registry::default();
    let metrics = SourceMetrics::register(&mut registry);
    let xds_metrics = XdsMetrics::register(&mut registry);
    let writer = Arc::new(StateWriter::default());
    let (ready_tx, ready_rx) = watch::channel(false);

    let mut source = DirectorySource::new(&args.config, writer.clone(), metrics.clone())?;
    let listener = admin::bind(args.admin.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", args.admin.admin_addr))?;
    info!(addr = %args.admin.admin_addr, "admin endpoint listening");
    let xds_listener = tokio::net::TcpListener::bind(args.xds_addr)
        .await
        .with_context(|| format!("cannot listen on --xds-addr {}", args.xds_addr))?;

    source
        .sync()
        .with_context(|| format!("cannot read --config {}", args.config.display()))?;
    let proxies = Arc::new(ProxyRegistry::default());
    let cache = Arc::new(SnapshotCache::new(writer.current()));
    let admin_state = AdminState {
        registry: Arc::new(registry),
        ready: ready_rx,
        problems: source.problems(),
        state: writer.subscribe(),
        proxies: Some(proxies.clone()),
    };

    let mut tasks = JoinSet::new();
    let token = shutdown_token.clone();
    tasks.spawn(async move {
        if let Err(e) = admin::serve(listener, admin_state, token).await {
            warn!(error = %e, "admin endpoint failed");
        }
    });
    tasks.spawn(observe_state(
        writer.subscribe(),
        metrics,
        shutdown_token.clone(),
    ));
    tasks.spawn(source.run(shutdown_token.clone()));
    tasks.spawn(weir_xds::server::run_publisher(
        writer.subscribe(),
        cache.clone(),
        xds_metrics.clone(),
        DEBOUNCE,
        MAX_DELAY,
        shutdown_token.clone(),
    ));
    let ads = AdsServer::new(cache, proxies, xds_metrics, shutdown_token.clone());
    let token = shutdown_token.clone();
    tasks.spawn(async move {
        if let Err(e) = weir_xds::server::serve(xds_listener, ads, token).await {
            warn!(error = %e, "xds-server failed");
        }
    });

    ready_tx.send_replace(true);
    info!(config = %args.config.display(), "weir up: local mode running");

    shutdown_token.cancelled().await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => info!("stopped cleanly"),
        Err(_) => warn!(timeout = ?DRAIN_TIMEOUT, "tasks did not finish in time; exiting anyway"),
    }
    Ok(())
}

/// Keeps the store metrics in step with the published state.
async fn observe_state(
    mut state: watch::Receiver<weir_store::ClusterState>,
    metrics: SourceMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let snapshot = state.borrow_and_update().clone();
        metrics.observe_state(&snapshot);
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = state.changed() => if changed.is_err() { break },
        }
    }
}
