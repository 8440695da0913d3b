//! The xds-server's wiring: `weir xds-server` in a cluster ([`run_in_cluster`]), and the
//! parts `weir up` (local mode) shares with it: the ADS server and its publisher ([`start_xds`]), the global rate-limit
//! service ([`start_rate_limit`]), the mesh CA kept in a directory ([`ca_from_dir`]) and
//! its certificate rotation, and the xds-server's admin routes ([`debug_routes`]).

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use axum::{Json, Router, routing::get};
use k8s_openapi::jiff::Timestamp;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_store::{ClusterState, StateWriter};

use weir_runtime::{
    admin::{self, AdminState},
    cluster::{ClusterBase, start_leader_election, track_readiness},
};

use crate::{
    ads::{AdsServer, AdsService},
    args::{MeshCaArgs, RateLimitArgs, RateLimitFailureMode, XdsServerArgs},
    ca,
    cache::SnapshotCache,
    identities::MeshIdentities,
    identity::{Gatekeeper, IdentityMetrics, IdentityService, KubeTokenReviewer, TokenReviewer},
    k8s::{KINDS, LEASE_NAME, StatusMetrics, ca_from_secret, write_gateway_status},
    metrics::XdsMetrics,
    registry::ProxyRegistry,
    secure::XdsRouter,
    server::{DEBOUNCE, MAX_DELAY, run_publisher},
};

/// The CA kept in `dir` (generated there on first start).
pub fn ca_from_dir(args: &MeshCaArgs, dir: &Path) -> anyhow::Result<Arc<MeshIdentities>> {
    args.check()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--ca-dir {}: cannot create it", dir.display()))?;
    let ca = ca::load_or_create(dir, &args.trust_domain, Timestamp::now())
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--ca-dir {}", dir.display()))?;
    info!(dir = %dir.display(), trust_domain = %args.trust_domain, "mesh CA loaded");
    Ok(Arc::new(MeshIdentities::new(
        ca,
        args.workload_cert_lifetime,
    )))
}

/// How the xds-server's listeners prove who they are and check who calls.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // a CA, a key and a client: nothing to print
pub struct XdsSecurity {
    /// The mesh CA.
    pub identities: Arc<MeshIdentities>,
    /// The serving certificate of the ADS and rate-limit listeners.
    pub serving: Arc<weir_runtime::tls::CertificateSlot>,
    /// Who reviews proxies' tokens.
    pub reviewer: Arc<dyn TokenReviewer>,
}

impl XdsSecurity {
    /// The mesh CA's serving certificate for `--xds-server-names` (and the address served
    /// on, when it is a specific one), renewed at half its lifetime; tokens reviewed by
    /// `reviewer`.
    pub fn start(
        args: &MeshCaArgs,
        addr: SocketAddr,
        identities: Arc<MeshIdentities>,
        reviewer: Arc<dyn TokenReviewer>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut names: Vec<String> = args
            .xds_server_names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if !addr.ip().is_unspecified() && !names.contains(&addr.ip().to_string()) {
            names.push(addr.ip().to_string());
        }
        let serving = crate::secure::ca_serving_certificate(
            identities.clone(),
            names,
            args.workload_cert_lifetime,
            "xds-server",
            tasks,
            shutdown,
        )
        .context("--xds-server-names")?;
        Ok(XdsSecurity {
            identities,
            serving,
            reviewer,
        })
    }

    fn tls(&self, optional_client_certificate: bool) -> anyhow::Result<rustls::ServerConfig> {
        crate::secure::mesh_server_config(
            &self.serving,
            self.identities.ca().root_pem(),
            optional_client_certificate,
        )
    }
}

/// Binds `addr` and starts the publisher (store changes → generations) and the ADS server
/// with the certificate service, over TLS, as tasks in `tasks`. Returns the registry of
/// connected proxies for the admin endpoint. Only proxies whose client certificate covers
/// the pod or Gateway they claim are served; agents get workload certificates for the
/// identity their token proves.
pub async fn start_xds(
    addr: SocketAddr,
    writer: &StateWriter,
    security: &XdsSecurity,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<ProxyRegistry>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --xds-addr {addr}"))?;
    let metrics = XdsMetrics::register(registry);
    let proxies = Arc::new(ProxyRegistry::default());
    let gatekeeper = Arc::new(Gatekeeper::new(
        security.identities.clone(),
        security.reviewer.clone(),
        writer.subscribe(),
        proxies.clone(),
        IdentityMetrics::register(registry),
    ));
    let cache = Arc::new(SnapshotCache::new(writer.current()));
    tasks.spawn(run_publisher(
        writer.subscribe(),
        cache.clone(),
        metrics.clone(),
        DEBOUNCE,
        MAX_DELAY,
        shutdown.clone(),
    ));
    let ads = AdsServer::new(
        cache,
        proxies.clone(),
        metrics,
        gatekeeper.clone(),
        shutdown.clone(),
    );
    let router = XdsRouter {
        ads: AdsService::new(ads),
        identity: IdentityService::new(gatekeeper),
    };
    info!(%addr, "xds-server listening (ADS and certificates, TLS)");
    tasks.spawn(crate::secure::serve_grpc(
        listener,
        security.tls(true)?,
        router,
        shutdown.clone(),
    ));
    Ok(proxies)
}

/// Starts the global rate-limit service on `addr` (or `default_addr`): limits follow the
/// TrafficPolicies in the stores; counters in Redis or memory.
pub async fn start_rate_limit(
    args: &RateLimitArgs,
    default_addr: SocketAddr,
    security: &XdsSecurity,
    writer: &StateWriter,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    use crate::ratelimit::{
        LimitTable,
        backend::{Counters, MemoryCounters, RedisCounters},
        service::{FailureMode, RateLimitMetrics, RateLimitServer},
    };
    use arc_swap::ArcSwap;
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
        RateLimitFailureMode::Allow => FailureMode::Allow,
        RateLimitFailureMode::Deny => FailureMode::Deny,
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
    // Only proxies of the mesh: the handshake needs a workload certificate.
    tasks.spawn(crate::secure::serve_grpc(
        listener,
        security.tls(false)?,
        server.into_service(),
        shutdown.clone(),
    ));
    Ok(addr)
}

/// The xds-server's admin routes: `/debug/proxies` (connected proxies, versions sent and
/// ACKed, last NACK; in local mode also the gateway Envoys it supervises) and `/debug/status` (Gateway API status as a cluster would hold it,
/// with rejections by proxies attributed to the objects behind them).
pub fn debug_routes(
    state: watch::Receiver<ClusterState>,
    proxies: Arc<ProxyRegistry>,
    gateway_envoys: crate::local_gateways::GatewayEnvoysView,
) -> Router {
    let listed = proxies.clone();
    Router::new()
        .route(
            "/debug/proxies",
            get(move || {
                let list = listed.list();
                let envoys = gateway_envoys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let refused = listed.refusals();
                async move {
                    Json(json!({ "proxies": list, "refused": refused, "gatewayEnvoys": envoys }))
                }
            }),
        )
        .route(
            "/debug/status",
            get(move || {
                let snapshot = state.borrow().clone();
                let rejections = crate::status::current_rejections(&proxies.list());
                async move { Json(json!(crate::status::compute_status(&snapshot, &rejections))) }
            }),
        )
}

/// Runs `weir xds-server` until SIGTERM or SIGINT.
pub async fn run_in_cluster(args: XdsServerArgs) -> anyhow::Result<()> {
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
    } = ClusterBase::start(args.admin.admin_addr, KINDS, &args.scopes()?).await?;
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(track_readiness(
        synced_rx,
        ready_tx,
        shutdown_token.clone(),
        KINDS,
    ));
    let identities = match &args.mesh_ca.ca_dir {
        Some(dir) => ca_from_dir(&args.mesh_ca, dir)?,
        None => ca_from_secret(&client, &args.mesh_ca, &args.ca_secret).await?,
    };
    let webhook_ca = identities.clone();
    let security = XdsSecurity::start(
        &args.mesh_ca,
        args.xds_addr,
        identities,
        Arc::new(KubeTokenReviewer(client.clone())),
        &mut tasks,
        &shutdown_token,
    )?;
    let proxies = start_xds(
        args.xds_addr,
        &writer,
        &security,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    // What pods and gateway Envoys are given: their agents trust the mesh's roots.
    let inject = crate::inject::InjectConfig {
        ca_root_pem: webhook_ca.ca().root_pem().to_string(),
        ..args.inject.config()
    };
    crate::webhook::start_webhook(
        &args.webhook,
        inject.clone(),
        webhook_ca.clone(),
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    // The leader keeps the webhook configuration trusting the CA that issued the
    // webhook's certificate (with certificate files, whoever issued them sets it).
    let keep_bundle = !args.webhook_config_name.is_empty()
        && args.webhook.webhook_addr.is_some()
        && args.webhook.webhook_cert_file.is_none();
    let leading = (args.write_status || keep_bundle || args.provision_gateways)
        .then(|| {
            start_leader_election(
                &client,
                &args.leader,
                LEASE_NAME,
                &mut tasks,
                &shutdown_token,
            )
        })
        .transpose()?;
    if let (true, Some(leading)) = (keep_bundle, &leading) {
        tasks.spawn(crate::k8s::keep_ca_bundle(
            client.clone(),
            args.webhook_config_name.clone(),
            webhook_ca.ca().root_pem().to_string(),
            leading.clone(),
            shutdown_token.clone(),
        ));
    }
    start_rate_limit(
        &args.rate_limit,
        std::net::SocketAddr::from(([0, 0, 0, 0], 18081)),
        &security,
        &writer,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    if let (true, Some(leading)) = (args.provision_gateways, &leading) {
        tasks.spawn(crate::gateway_provisioner::run_provisioner(
            Arc::new(crate::gateway_provisioner::KubeInfrastructure::new(
                client.clone(),
            )),
            writer.subscribe(),
            inject,
            leading.clone(),
            crate::gateway_provisioner::ProvisionerMetrics::register(&mut registry),
            shutdown_token.clone(),
        ));
    } else {
        info!("not provisioning Gateways (--provision-gateways=false)");
    }
    if let (true, Some(leading)) = (args.write_status, leading) {
        tasks.spawn(write_gateway_status(
            client.clone(),
            writer.subscribe(),
            proxies.clone(),
            leading,
            StatusMetrics::register(&mut registry),
            args.provision_gateways,
            shutdown_token.clone(),
        ));
    } else {
        info!("not writing Gateway API status (--write-status=false)");
    }
    tasks.spawn(weir_runtime::metrics::observe_state(
        writer.subscribe(),
        metrics,
        shutdown_token.clone(),
    ));
    let routes = debug_routes(writer.subscribe(), proxies, Default::default());
    let admin_state = AdminState::in_cluster(registry, ready_rx, writer.subscribe());
    admin::spawn(
        &mut tasks,
        listener,
        admin_state,
        routes,
        shutdown_token.clone(),
    );
    info!(xds = %args.xds_addr, admin = %args.admin.admin_addr, "weir xds-server running");
    shutdown_token.cancelled().await;
    weir_runtime::shutdown::drain(tasks).await;
    Ok(())
}
