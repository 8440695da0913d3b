//! `weir controllers` in a cluster: the pod autoscaler, the node autoscaler and the
//! mesh-TLS controller on one set of reflectors, one leader election and one admin
//! endpoint. Each controller's loop is its own (`*/run.rs`); this only starts them.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;
use weir_runtime::{
    admin::{self, AdminState},
    cluster::{ClusterBase, identity, start_leader_election},
};

use crate::{
    args::{ControllersArgs, MetricsSourceKind},
    mesh_tls, node_autoscaler,
    pod_autoscaler::{
        k8s::KubeScaleApi,
        metrics_apis::MetricsApiSource,
        prometheus::PrometheusSource,
        rules::RulesSource,
        run::{AutoscalerMetrics, SyncLoop},
    },
};

/// Runs `weir controllers` until SIGTERM or SIGINT.
pub async fn run_in_cluster(args: ControllersArgs) -> anyhow::Result<()> {
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
    } = ClusterBase::start(args.admin.admin_addr, crate::KINDS, &Default::default()).await?;
    let metrics = AutoscalerMetrics::register(&mut registry);
    let leading = start_leader_election(
        &client,
        &args.leader,
        crate::LEASE_NAME,
        &mut tasks,
        &shutdown_token,
    )?;
    let identity = identity(&args.leader);
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(weir_runtime::metrics::observe_state(
        writer.subscribe(),
        source_metrics,
        shutdown_token.clone(),
    ));
    // Pods, Object and External metrics through prometheus-adapter rules.
    let rules_engine = if args.metrics_source == MetricsSourceKind::Rules {
        Some(weir_metrics_adapter::run::engine(
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
        let source = mesh_tls::prometheus::PrometheusSidecars::new(&args.prometheus_url)
            .map_err(anyhow::Error::msg)
            .context("--prometheus-url")?;
        let mesh = mesh_tls::run::MeshLoop {
            sink: mesh_tls::k8s::KubeMeshApi::new(client.clone(), identity.clone()),
            state: writer.subscribe(),
            leading: leading.clone(),
            interval: args.mesh_tls_interval.max(Duration::from_secs(1)),
            metrics: mesh_tls::run::MeshMetrics::register(&mut registry),
        };
        tasks.spawn(mesh_tls::run::run_in_cluster(
            source,
            mesh,
            synced_rx.clone(),
            shutdown_token.clone(),
        ));
    } else {
        info!("mesh-TLS controller off (--mesh-tls=false)");
    }
    let node_metrics = node_autoscaler::run::NodeMetrics::register(&mut registry);
    let routes = node_autoscaler::run::debug_routes(node_metrics.last_plan.clone());
    let admin_state = AdminState::in_cluster(registry, ready_rx, writer.subscribe());
    admin::spawn(
        &mut tasks,
        listener,
        admin_state,
        routes,
        shutdown_token.clone(),
    );
    let node_api = node_autoscaler::k8s::KubeNodeApi::from_config(
        kube::Config::infer()
            .await
            .context("Kubernetes client configuration")?,
        identity.clone(),
    )
    .context("Kubernetes client for the node autoscaler")?;
    tasks.spawn(node_autoscaler::run::run_in_cluster(
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
            tasks.spawn(sync.run(RulesSource::new(engine, prometheus)));
        }
        MetricsSourceKind::Kubernetes => {
            info!("metrics from the Kubernetes metrics APIs");
            tasks.spawn(sync.run(MetricsApiSource::new(client)));
        }
    }
    info!(admin = %args.admin.admin_addr, "weir controllers running");
    shutdown_token.cancelled().await;
    weir_runtime::shutdown::drain(tasks).await;
    Ok(())
}
