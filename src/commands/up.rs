//! `weir up`: local mode. Everything in one process against a directory of manifests.
//!
//! The directory source feeds the stores; the admin endpoint reports health, readiness,
//! metrics and problems; SIGTERM or SIGINT stops every task and waits for them to finish.
//! With --prometheus-url, the pod autoscaler and the metrics adapter run too.

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_store::StateWriter;

use weir_controllers::{
    args::MeshTlsSource,
    mesh_tls, node_autoscaler,
    pod_autoscaler::{
        prometheus::PrometheusSource, rules::RulesSource, samples::SamplesSource,
        simulated::LocalScaleApi,
    },
};
use weir_metrics_adapter::{engine::StoreObjects, run::Mode};
use weir_runtime::{
    admin::{self, AdminState},
    leader::Leadership,
    metrics::SourceMetrics,
    shutdown,
    sources::files::DirectorySource,
};
use weir_xds::{
    identity::LocalTokenReviewer,
    local_gateways::{AgentLaunch, start_local_gateways},
    local_tokens::start_token_minting,
    run::{XdsSecurity, ca_from_dir, debug_routes, start_rate_limit, start_xds},
    tokens::LocalTokens,
};

use crate::cli::UpArgs;

/// Runs local mode until SIGTERM or SIGINT.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let shutdown_token = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown_token.clone()).context("installing signal handlers")?;

    let mut registry = Registry::default();
    let metrics = SourceMetrics::register(&mut registry);
    let writer = Arc::new(StateWriter::default());
    let (ready_tx, ready_rx) = watch::channel(false);

    let mut source = DirectorySource::new(&args.config, writer.clone(), metrics.clone())?;
    let listener = admin::bind(args.admin.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", args.admin.admin_addr))?;
    info!(addr = %args.admin.admin_addr, "admin endpoint listening");

    source
        .sync()
        .with_context(|| format!("cannot read --config {}", args.config.display()))?;
    let mut tasks = JoinSet::new();
    let ca_dir = args
        .mesh_ca
        .ca_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(".weir/ca"));
    let identities = ca_from_dir(&args.mesh_ca, &ca_dir)?;
    // Playing the kubelet's part: a token for every proxy, which its agent proves with.
    let tokens = Arc::new(LocalTokens::generate().map_err(anyhow::Error::msg)?);
    start_token_minting(
        &args.proof,
        tokens.clone(),
        writer.subscribe(),
        &mut tasks,
        &shutdown_token,
    )?;
    let security = XdsSecurity::start(
        &args.mesh_ca,
        args.xds_addr,
        identities.clone(),
        Arc::new(LocalTokenReviewer {
            tokens,
            state: writer.subscribe(),
        }),
        &mut tasks,
        &shutdown_token,
    )?;
    weir_xds::webhook::start_webhook(
        &args.webhook,
        weir_xds::inject::InjectConfig {
            ca_root_pem: identities.ca().root_pem().to_string(),
            ..args.inject.config()
        },
        identities.clone(),
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    let proxies = start_xds(
        args.xds_addr,
        &writer,
        &security,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    let mesh = mesh_tls::run::MeshLoop {
        sink: mesh_tls::local::StoreSink(writer.clone()),
        state: writer.subscribe(),
        leading: Leadership::always(),
        interval: args
            .mesh_tls_interval
            .max(std::time::Duration::from_millis(100)),
        metrics: mesh_tls::run::MeshMetrics::register(&mut registry),
    };
    match args.mesh_tls_source {
        MeshTlsSource::Admin => {
            info!(interval = ?mesh.interval, "mesh-TLS controller on the configuration's MeshPolicies, sidecars read through their admin");
            let source =
                mesh_tls::local::AdminSidecars::new(proxies.clone()).map_err(anyhow::Error::msg)?;
            tasks.spawn(mesh_tls::run::run(source, mesh, shutdown_token.clone()));
        }
        MeshTlsSource::Prometheus => {
            let url = args
                .prometheus_url
                .as_deref()
                .context("--mesh-tls-source prometheus needs --prometheus-url")?;
            let source = mesh_tls::prometheus::PrometheusSidecars::new(url)
                .map_err(anyhow::Error::msg)
                .context("--prometheus-url")?;
            info!(interval = ?mesh.interval, prometheus = %url, "mesh-TLS controller on the configuration's MeshPolicies, sidecars read from Prometheus");
            tasks.spawn(mesh_tls::run::run(source, mesh, shutdown_token.clone()));
        }
    }
    // Simulated Deployments, shared by the pod autoscaler (their replica counts) and the
    // node autoscaler (their pods, scheduled onto simulated nodes).
    let api = Arc::new(LocalScaleApi::new(writer.subscribe(), &mut registry));
    let rate_limit_addr = start_rate_limit(
        &args.rate_limit,
        std::net::SocketAddr::from(([127, 0, 0, 1], 18081)),
        &security,
        &writer,
        &mut registry,
        &mut tasks,
        &shutdown_token,
    )
    .await?;
    let gateway_envoys = start_local_gateways(
        &args.gateways,
        AgentLaunch {
            weir_bin: std::env::current_exe().context("locating the weir binary")?,
            token_dir: args.proof.token_dir.clone(),
            ca_root_file: ca_dir.join(weir_xds::ca::CA_CERT_FILE),
        },
        args.xds_addr,
        rate_limit_addr,
        writer.subscribe(),
        &mut tasks,
        &shutdown_token,
    )?;
    if let Some(url) = &args.prometheus_url {
        let source = PrometheusSource::new(url)
            .map_err(anyhow::Error::msg)
            .context("--prometheus-url")?;
        let objects = Arc::new(StoreObjects(writer.subscribe()));
        let engine = weir_metrics_adapter::run::start(
            &args.adapter,
            args.metrics_adapter_addr,
            url,
            objects,
            Mode::Local,
            &mut registry,
            &mut tasks,
            &shutdown_token,
        )
        .await?;
        info!(addr = %args.metrics_adapter_addr, "metrics adapter on the configuration's objects");
        let period = std::time::Duration::from_secs(args.sync_period_seconds);
        if args.adapter.rules.is_some() {
            // The autoscaler reads Pods, Object and External metrics through the same
            // rules the adapter serves, in-process.
            info!(prometheus = %url, "pod autoscaler on simulated Deployments, metrics through --rules");
            let source = RulesSource::new(engine, source);
            tasks.spawn(weir_controllers::pod_autoscaler::simulated::run(
                api.clone(),
                source,
                period,
                shutdown_token.clone(),
            ));
        } else {
            info!(prometheus = %url, "pod autoscaler on simulated Deployments");
            tasks.spawn(weir_controllers::pod_autoscaler::simulated::run(
                api.clone(),
                source,
                period,
                shutdown_token.clone(),
            ));
        }
    } else {
        // Without Prometheus, the autoscaler scales on the directory's MetricSamples.
        info!(
            "pod autoscaler on simulated Deployments, metrics from the directory's MetricSamples"
        );
        tasks.spawn(weir_controllers::pod_autoscaler::simulated::run(
            api.clone(),
            SamplesSource::new(&args.config),
            std::time::Duration::from_secs(args.sync_period_seconds),
            shutdown_token.clone(),
        ));
    }
    args.nodes
        .validate()
        .map_err(anyhow::Error::msg)
        .context("node autoscaler settings")?;
    let nodes = node_autoscaler::simulated::SimulatedNodes::default();
    let node_metrics = node_autoscaler::run::NodeMetrics::register(&mut registry);
    let leading = Leadership::always();
    let view = {
        let state = writer.subscribe();
        let nodes = nodes.clone();
        let api = api.clone();
        move |now| {
            let current = state.borrow().clone();
            nodes.view(&api.with_simulated_pods(&current), now)
        }
    };
    info!(scan_interval = ?args.nodes.scan_interval, "node autoscaler on simulated NodePools");
    tasks.spawn(node_autoscaler::run::run(
        nodes,
        view,
        args.nodes.clone(),
        node_metrics.clone(),
        leading,
        shutdown_token.clone(),
    ));
    let admin_state = AdminState {
        registry: Arc::new(registry),
        ready: ready_rx,
        problems: source.problems(),
        state: writer.subscribe(),
    };
    let routes = debug_routes(writer.subscribe(), proxies.clone(), gateway_envoys).merge(
        node_autoscaler::run::debug_routes(node_metrics.last_plan.clone()),
    );
    admin::spawn(
        &mut tasks,
        listener,
        admin_state,
        routes,
        shutdown_token.clone(),
    );
    tasks.spawn(weir_runtime::metrics::observe_state(
        writer.subscribe(),
        metrics,
        shutdown_token.clone(),
    ));
    tasks.spawn(source.run(shutdown_token.clone()));

    ready_tx.send_replace(true);
    info!(config = %args.config.display(), "weir up: local mode running");

    shutdown_token.cancelled().await;
    shutdown::drain(tasks).await;
    Ok(())
}
