//! Serving xDS from the stores: shared by `weir up` (local mode) and `weir xds-server`
//! (in a cluster).

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use weir_store::StateWriter;
use weir_xds::{
    ads::AdsServer,
    cache::SnapshotCache,
    metrics::XdsMetrics,
    registry::ProxyRegistry,
    server::{DEBOUNCE, MAX_DELAY, run_publisher, serve},
};

/// Binds `addr` and starts the publisher (store changes → generations) and the ADS server
/// as tasks in `tasks`. Returns the registry of connected proxies for the admin endpoint.
pub async fn start_xds(
    addr: SocketAddr,
    writer: &StateWriter,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<ProxyRegistry>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --xds-addr {addr}"))?;
    let metrics = XdsMetrics::register(registry);
    let proxies = Arc::new(ProxyRegistry::default());
    let cache = Arc::new(SnapshotCache::new(writer.current()));
    tasks.spawn(run_publisher(
        writer.subscribe(),
        cache.clone(),
        metrics.clone(),
        DEBOUNCE,
        MAX_DELAY,
        shutdown.clone(),
    ));
    let ads = AdsServer::new(cache, proxies.clone(), metrics, shutdown.clone());
    let token = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = serve(listener, ads, token).await {
            warn!(error = %e, "xds-server failed");
        }
    });
    Ok(proxies)
}
