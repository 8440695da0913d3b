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
    identities::MeshIdentities,
    metrics::XdsMetrics,
    registry::ProxyRegistry,
    server::{DEBOUNCE, MAX_DELAY, run_publisher, serve},
};

/// Binds `addr` and starts the publisher (store changes → generations) and the ADS server
/// as tasks in `tasks`. Returns the registry of connected proxies for the admin endpoint.
/// Workload certificates from `identities` are served over SDS and rotated.
pub async fn start_xds(
    addr: SocketAddr,
    writer: &StateWriter,
    identities: Arc<MeshIdentities>,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<ProxyRegistry>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --xds-addr {addr}"))?;
    let metrics = XdsMetrics::register(registry);
    let proxies = Arc::new(ProxyRegistry::default());
    let cache = Arc::new(SnapshotCache::with_identities(
        writer.current(),
        Some(identities.clone()),
    ));
    crate::mesh_ca::spawn_rotation(identities, cache.clone(), tasks, shutdown);
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

/// Starts the global rate-limit service on `addr` (or `default_addr`): limits follow the
/// TrafficPolicies in the stores; counters in Redis or memory.
pub async fn start_rate_limit(
    args: &crate::cli::RateLimitArgs,
    default_addr: SocketAddr,
    writer: &StateWriter,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    use arc_swap::ArcSwap;
    use weir_xds::ratelimit::{
        LimitTable,
        backend::{Counters, MemoryCounters, RedisCounters},
        service::{FailureMode, RateLimitMetrics, RateLimitServer},
    };
    let addr = args.rate_limit_addr.unwrap_or(default_addr);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --rate-limit-addr {addr}"))?;
    let counters = match &args.rate_limit_redis_url {
        Some(url) => Counters::Redis(
            RedisCounters::new(url, args.rate_limit_redis_timeout)
                .map_err(anyhow::Error::msg)
                .context("--rate-limit-redis-url")?,
        ),
        None => Counters::Memory(MemoryCounters::default()),
    };
    let failure = match args.rate_limit_failure_mode {
        crate::cli::RateLimitFailureMode::Allow => FailureMode::Allow,
        crate::cli::RateLimitFailureMode::Deny => FailureMode::Deny,
    };
    tracing::info!(%addr, counters = counters.name(), ?failure, "rate-limit service listening");
    let limits = Arc::new(ArcSwap::from_pointee(LimitTable::from_state(
        &writer.current(),
    )));
    let mut state = writer.subscribe();
    let table = limits.clone();
    let token = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                changed = state.changed() => if changed.is_err() { return },
            }
            let next = LimitTable::from_state(&state.borrow_and_update());
            if **table.load() != next {
                tracing::info!(limits = next.len(), "global rate limits updated");
                table.store(Arc::new(next));
            }
        }
    });
    let server = RateLimitServer::new(
        limits,
        Arc::new(counters),
        failure,
        Some(RateLimitMetrics::register(registry)),
    );
    let token = shutdown.clone();
    tasks.spawn(async move {
        let incoming = weir_xds::server::incoming_nodelay(listener);
        let result = tonic::transport::Server::builder()
            .add_service(server.into_service())
            .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "rate-limit service failed");
        }
    });
    Ok(addr)
}
