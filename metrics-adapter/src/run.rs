//! The metrics adapter's wiring: `weir metrics-adapter` in a cluster
//! ([`run_in_cluster`]), and the part of `weir up` that serves the metrics APIs locally
//! ([`start`]).

/// How often the serving certificate's files are checked for a new certificate.
const CERT_CHECK: Duration = Duration::from_secs(2);

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_runtime::{
    admin::{self, AdminState},
    cluster::{ClusterBase, track_readiness},
};
use weir_store::Kind;

use crate::{
    args::{MetricsAdapterArgs, MetricsAdapterCommandArgs},
    auth::{Authenticator, DelegatedSettings, KubeReviewer, Reviewer},
    config::Rules,
    engine::{Engine, EngineMetrics, EngineSettings, ObjectSource, Prometheus},
    server::{Access, Server, ServerMetrics, TlsIdentity},
};

/// The kinds whose labels `*` requests select on.
pub const KINDS: &[Kind] = &[
    Kind::Pod,
    Kind::Namespace,
    Kind::Node,
    Kind::Service,
    Kind::Deployment,
    Kind::DaemonSet,
];

/// Where the adapter runs, which decides how callers are checked by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `weir up`: open on loopback unless authentication settings are given.
    Local,
    /// `weir metrics-adapter`: secured, settings from flags and the cluster.
    Cluster,
}

fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
}

async fn client_from(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig for reviews (in-cluster service account, or KUBECONFIG)")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client for reviews")
}

/// Splits reviews between the authentication and authorization API servers.
struct SplitReviewer {
    authentication: KubeReviewer,
    authorization: KubeReviewer,
}

impl Reviewer for SplitReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<crate::auth::UserInfo>, String>> {
        self.authentication.review_token(token)
    }

    fn review_access<'a>(
        &'a self,
        user: &'a crate::auth::UserInfo,
        attributes: &'a crate::auth::Attributes,
    ) -> futures::future::BoxFuture<'a, Result<(bool, String), String>> {
        self.authorization.review_access(user, attributes)
    }
}

/// Who may call, from the flags (and in a cluster, the
/// `extension-apiserver-authentication` ConfigMap).
pub async fn access(
    args: &MetricsAdapterArgs,
    addr: SocketAddr,
    mode: Mode,
) -> anyhow::Result<Access> {
    if args.insecure_skip_auth {
        warn!("metrics adapter: --insecure-skip-auth, every caller is served");
        return Ok(Access::Open);
    }
    let configured = args.client_ca_file.is_some()
        || args.requestheader_client_ca_file.is_some()
        || args.authentication_kubeconfig.is_some()
        || args.authorization_kubeconfig.is_some();
    if mode == Mode::Local && !configured {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "--metrics-adapter-addr {addr} is not a loopback address: give authentication \
             settings (--authentication-kubeconfig, --client-ca-file, \
             --requestheader-client-ca-file) or --insecure-skip-auth"
        );
        info!("metrics adapter: local mode on loopback, no authentication");
        return Ok(Access::Open);
    }
    let authentication = client_from(
        args.authentication_kubeconfig
            .as_deref()
            .or(args.authorization_kubeconfig.as_deref()),
    )
    .await?;
    let authorization = client_from(
        args.authorization_kubeconfig
            .as_deref()
            .or(args.authentication_kubeconfig.as_deref()),
    )
    .await?;
    let mut settings = if mode == Mode::Cluster && !args.authentication_skip_lookup {
        DelegatedSettings::from_cluster(&authentication)
            .await
            .map_err(anyhow::Error::msg)?
    } else {
        DelegatedSettings::default()
    };
    if let Some(path) = &args.client_ca_file {
        settings.client_ca = Some(read(path, "--client-ca-file")?);
    }
    if let Some(path) = &args.requestheader_client_ca_file {
        settings.requestheader_ca = Some(read(path, "--requestheader-client-ca-file")?);
        settings.requestheader.allowed_names = args.requestheader_allowed_names.clone();
        settings.requestheader.username_headers = args.requestheader_username_headers.clone();
        settings.requestheader.group_headers = args.requestheader_group_headers.clone();
        settings.requestheader.extra_prefixes = args.requestheader_extra_headers_prefix.clone();
    }
    let reviewer: Arc<dyn Reviewer> = Arc::new(SplitReviewer {
        authentication: KubeReviewer::new(authentication),
        authorization: KubeReviewer::new(authorization),
    });
    let authenticator =
        Authenticator::new(&settings, Some(reviewer)).map_err(anyhow::Error::msg)?;
    info!(
        ?authenticator,
        "metrics adapter: callers authenticated and authorized"
    );
    Ok(Access::Secured(Arc::new(authenticator)))
}

/// The rule engine: rules from `rules` (prometheus-adapter format) or the built-in ones,
/// against the Prometheus at `prometheus_url`.
pub fn engine(
    rules: Option<&Path>,
    prometheus_url: &str,
    objects: Arc<dyn ObjectSource>,
    settings: EngineSettings,
    registry: &mut Registry,
) -> anyhow::Result<Arc<Engine>> {
    let rules = match rules {
        Some(path) => Rules::from_yaml(&read(path, "--rules")?, &path.display().to_string())
            .map_err(anyhow::Error::msg)?,
        None => Rules::defaults(),
    };
    let prometheus = Prometheus::new(prometheus_url)
        .map_err(anyhow::Error::msg)
        .context("--prometheus-url")?;
    Ok(Arc::new(Engine::new(
        rules,
        prometheus,
        objects,
        settings,
        EngineMetrics::register(registry),
    )))
}

/// Starts the adapter: discovery every relist interval and the API server on `addr`.
/// Returns the engine (for readiness).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    args: &MetricsAdapterArgs,
    addr: SocketAddr,
    prometheus_url: &str,
    objects: Arc<dyn ObjectSource>,
    mode: Mode,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Engine>> {
    let settings = EngineSettings {
        cache_max_age: args.cache_max_age,
        series_max_age: args.metrics_max_age,
    };
    let engine = engine(
        args.rules.as_deref(),
        prometheus_url,
        objects,
        settings,
        registry,
    )?;
    let access = access(args, addr, mode).await?;
    let mut hosts = vec!["localhost".to_string(), addr.ip().to_string()];
    if let Ok(host) = std::env::var("HOSTNAME") {
        hosts.push(host);
    }
    let identity = TlsIdentity::load_or_generate(
        args.tls_cert_file.as_deref(),
        args.tls_private_key_file.as_deref(),
        args.cert_dir.as_deref(),
        &hosts,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(file) = &identity.cert_file {
        info!(cert = %file.display(), "metrics adapter serving certificate");
    }
    let server = Arc::new(Server::new(
        engine.clone(),
        access,
        ServerMetrics::register(registry),
    ));
    let signing = rustls::crypto::ring::sign::any_supported_type(&identity.key)
        .map_err(|e| anyhow::anyhow!("the serving key: {e}"))?;
    let certificate = weir_runtime::tls::CertificateSlot::new(rustls::sign::CertifiedKey::new(
        identity.chain.clone(),
        signing,
    ));
    // Certificates in files (given, or kept in --cert-dir) are reloaded when they change,
    // so a rotated Secret needs no restart.
    if let (Some(cert), Some(key)) = (&identity.cert_file, &identity.key_file) {
        tasks.spawn(certificate.clone().reload_from_files(
            cert.clone(),
            key.clone(),
            CERT_CHECK,
            shutdown.clone(),
        ));
    }
    let tls = server
        .tls_config(&certificate)
        .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-adapter-addr {addr}"))?;
    let relist = args.metrics_relist_interval.max(Duration::from_secs(1));
    let discovery = engine.clone();
    let token = shutdown.clone();
    tasks.spawn(async move { discovery.relist_every(relist, token).await });
    tasks.spawn(crate::server::serve(
        listener,
        tls,
        server,
        shutdown.clone(),
    ));
    Ok(engine)
}

/// Runs `weir metrics-adapter` until SIGTERM or SIGINT.
pub async fn run_in_cluster(args: MetricsAdapterCommandArgs) -> anyhow::Result<()> {
    let ClusterBase {
        mut registry,
        writer,
        listener,
        mut tasks,
        synced,
        shutdown,
        kinds,
        ..
    } = ClusterBase::start(args.admin.admin_addr, KINDS, &Default::default()).await?;
    let objects = Arc::new(crate::engine::StoreObjects(writer.subscribe()));
    let engine = start(
        &args.adapter,
        args.metrics_adapter_addr,
        &args.prometheus_url,
        objects,
        Mode::Cluster,
        &mut registry,
        &mut tasks,
        &shutdown,
    )
    .await?;
    // Ready when the objects are listed and discovery has run once.
    let (listed_tx, mut listed) = watch::channel(false);
    tasks.spawn(track_readiness(synced, listed_tx, shutdown.clone(), kinds));
    let (ready_tx, ready_rx) = watch::channel(false);
    let token = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            ready_tx.send_replace(*listed.borrow_and_update() && engine.discovered());
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
        }
    });
    let admin_state = AdminState::in_cluster(registry, ready_rx, writer.subscribe());
    admin::spawn(
        &mut tasks,
        listener,
        admin_state,
        axum::Router::new(),
        shutdown.clone(),
    );
    shutdown.cancelled().await;
    weir_runtime::shutdown::drain(tasks).await;
    Ok(())
}
