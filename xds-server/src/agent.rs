//! `weir agent`: the identity agent next to each proxy. It keeps the workload's private key
//! in its own memory: it generates the key, asks the xds-server to certify it
//! (`weir.identity.v1.Identity/Certify`, over TLS, with the pod's ServiceAccount token as
//! proof), and serves the certificate and key to the local Envoy over SDS on a Unix socket
//! (mode 0600). At half the certificate's lifetime it does it again with a new key; Envoy
//! swaps the secret in place, so open connections are not dropped.
//!
//! The xds-server never sees the key, and a proxy gets a certificate only for the identity
//! its token proves. The token file is read again for every request (the kubelet rotates
//! it). Failures are retried with backoff (1 s doubling to 30 s) while the current
//! certificate keeps being served.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    path::{Path, PathBuf},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming, server::NamedService};
use tracing::{debug, info, warn};

use crate::{
    bootstrap::DEFAULT_AGENT_SOCKET,
    ca::key_and_request,
    certify::{CERTIFY_PATH, CertifyRequest, CertifyResponse},
    envoy::{
        IDENTITY_SECRET, ROOTS_SECRET, SECRET_TYPE, TRUST_BUNDLE_SECRET, to_identity_secret,
        to_roots_secret, to_trust_bundle_secret,
    },
    grpc::{Outbox, decode},
};

/// Flags of `weir agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The pod's ServiceAccount token (audience `weir`), read again for every request.
    #[arg(
        long,
        env = "WEIR_TOKEN_FILE",
        default_value = "/var/run/secrets/weir/token"
    )]
    pub token_file: PathBuf,
    /// The xds-server, `host:port`; its serving certificate must name `host` and come from
    /// the mesh's roots.
    #[arg(long, env = "WEIR_XDS_ADDR", default_value = "127.0.0.1:18000")]
    pub xds_addr: String,
    /// The mesh's roots (PEM file) that the xds-server's certificate must chain to.
    #[arg(long, env = "WEIR_CA_ROOT_FILE", required_unless_present = "ca_root")]
    pub ca_root_file: Option<PathBuf>,
    /// The same roots inline (PEM; the injector sets it).
    #[arg(long, env = "WEIR_CA_ROOT", hide_env_values = true)]
    pub ca_root: Option<String>,
    /// The Unix socket Envoy reads its secrets from.
    #[arg(long, env = "WEIR_AGENT_SOCKET", default_value = DEFAULT_AGENT_SOCKET)]
    pub agent_socket: PathBuf,
    /// The proxy this agent serves (`sidecar~<pod>.<namespace>`), checked by the
    /// xds-server against the token.
    #[arg(long, env = "WEIR_PROXY_ID")]
    pub proxy: Option<String>,
}

/// The gRPC service Envoy's SDS calls.
const SDS_SERVICE: &str = "envoy.service.secret.v3.SecretDiscoveryService";
const SDS_STREAM_PATH: &str = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets";

/// What the agent serves: the three secrets, under one version.
#[derive(Debug)]
pub struct Secrets {
    version: String,
    identity: Any,
    trust_bundle: Any,
    roots: Any,
    /// The roots as PEM, which later requests trust the xds-server by too.
    roots_pem: String,
    /// When the certificate expires, and when to renew it.
    not_after: Timestamp,
    renew_at: Timestamp,
    /// The identity certified (for logs).
    spiffe_id: String,
}

impl Secrets {
    fn from_response(response: &CertifyResponse, key_pem: &str, now: Timestamp) -> Self {
        let not_after = Timestamp::from_second(response.not_after).unwrap_or(now);
        let half = (response.not_after - now.as_second()).max(2) / 2;
        Secrets {
            version: format!("{}-{}", now.as_second(), response.not_after),
            identity: pack_any(to_identity_secret(&response.certificate_chain, key_pem)),
            trust_bundle: pack_any(to_trust_bundle_secret(
                &response.roots,
                &response.trust_domain,
            )),
            roots: pack_any(to_roots_secret(&response.roots)),
            roots_pem: response.roots.clone(),
            not_after,
            renew_at: Timestamp::from_second(now.as_second() + half).unwrap_or(now),
            spiffe_id: response.spiffe_id.clone(),
        }
    }

    fn get(&self, name: &str) -> Option<&Any> {
        match name {
            IDENTITY_SECRET => Some(&self.identity),
            TRUST_BUNDLE_SECRET => Some(&self.trust_bundle),
            ROOTS_SECRET => Some(&self.roots),
            _ => None,
        }
    }
}

fn read_roots(args: &AgentArgs) -> anyhow::Result<String> {
    match (&args.ca_root, &args.ca_root_file) {
        (Some(inline), _) if !inline.trim().is_empty() => Ok(inline.clone()),
        (_, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("--ca-root-file {}", file.display())),
        _ => anyhow::bail!("the mesh's roots are needed: --ca-root-file or WEIR_CA_ROOT"),
    }
}

fn read_token(file: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("--token-file {}", file.display()))?;
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "--token-file {}: empty", file.display());
    Ok(token)
}

/// One certificate: a new key, certified by the xds-server.
async fn certify(args: &AgentArgs, roots: &str) -> anyhow::Result<Secrets> {
    let token = read_token(&args.token_file)?;
    let (key_pem, csr) = key_and_request().map_err(anyhow::Error::msg)?;
    let host = args
        .xds_addr
        .rsplit_once(':')
        .map_or(args.xds_addr.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(roots))
        .domain_name(host);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", args.xds_addr))
        .context("--xds-addr")?
        .tls_config(tls)
        .context("TLS to the xds-server")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .with_context(|| format!("connecting to the xds-server at {}", args.xds_addr))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("the xds-server")?;
    let mut request = tonic::Request::new(CertifyRequest {
        csr,
        proxy: args.proxy.clone().unwrap_or_default(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the token is not a valid header value")?,
    );
    let response: CertifyResponse = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static(CERTIFY_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|status| anyhow::anyhow!("{:?}: {}", status.code(), status.message()))
        .context("the xds-server refused to certify the key")?
        .into_inner();
    Ok(Secrets::from_response(
        &response,
        &key_pem,
        Timestamp::now(),
    ))
}

/// Keeps `secrets` holding a valid certificate until `shutdown`.
async fn keep_certified(
    args: AgentArgs,
    mut roots: String,
    secrets: watch::Sender<Option<Arc<Secrets>>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            attempt = certify(&args, &roots) => attempt,
        };
        let wait = match attempt {
            Ok(next) => {
                backoff = Duration::from_secs(1);
                info!(identity = %next.spiffe_id, not_after = %next.not_after, renew_at = %next.renew_at, "workload certificate obtained");
                let wait = Duration::from_secs(
                    u64::try_from(next.renew_at.as_second() - Timestamp::now().as_second())
                        .unwrap_or(0)
                        .max(1),
                );
                // Later requests trust the roots the xds-server sent too (a root rotation).
                if !roots.contains(next.roots_pem.trim()) {
                    roots.push_str(&next.roots_pem);
                }
                secrets.send_replace(Some(Arc::new(next)));
                wait
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot obtain a workload certificate");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    weir_runtime::shutdown::cancel_on_signal(shutdown.clone())
        .context("installing signal handlers")?;
    let roots = read_roots(&args)?;
    let listener = bind_socket(&args.agent_socket)?;
    info!(socket = %args.agent_socket.display(), xds = %args.xds_addr, "agent serving SDS");
    let (secrets, watched) = watch::channel(None);
    let keeper = tokio::spawn(keep_certified(
        args.clone(),
        roots,
        secrets,
        shutdown.clone(),
    ));
    let service = SdsService {
        secrets: watched,
        shutdown: shutdown.clone(),
    };
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = keeper.await;
    let _ = std::fs::remove_file(&args.agent_socket);
    served.context("the agent's SDS server")?;
    info!("agent stopped");
    Ok(())
}

/// Binds the socket, owner-only: the key is served to whoever can connect.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--agent-socket: creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => debug!(socket = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("--agent-socket {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("--agent-socket {}: cannot listen", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("--agent-socket {}: chmod 0600", path.display()))?;
    Ok(listener)
}

/// SDS (state of the world) for the local Envoy.
#[derive(Clone, Debug)]
struct SdsService {
    secrets: watch::Receiver<Option<Arc<Secrets>>>,
    shutdown: CancellationToken,
}

impl NamedService for SdsService {
    const NAME: &'static str = SDS_SERVICE;
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for SdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != SDS_STREAM_PATH {
                return Ok(Status::unimplemented(format!(
                    "no method {} (the agent serves StreamSecrets)",
                    request.uri().path()
                ))
                .into_http());
            }
            let (outbox, body) = Outbox::new();
            tokio::spawn(serve_stream(
                decode(request.into_body()),
                outbox,
                service.secrets,
                service.shutdown,
            ));
            Ok(http::Response::builder()
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .body(tonic::body::Body::new(body))
                .unwrap_or_else(|_| Status::internal("building the response").into_http()))
        })
    }
}

/// One SDS stream: answers the names Envoy asks for once a certificate is there, and
/// again whenever it changes; never twice the same version for the same names.
async fn serve_stream(
    mut requests: Streaming<DiscoveryRequest>,
    outbox: Outbox,
    mut secrets: watch::Receiver<Option<Arc<Secrets>>>,
    shutdown: CancellationToken,
) {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut sent: Option<(String, BTreeSet<String>)> = None;
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            message = requests.message() => match message {
                Ok(Some(request)) => {
                    if let Some(error) = &request.error_detail {
                        warn!(version = %request.version_info, error = %error.message, "Envoy rejected a secret");
                    }
                    if !request.resource_names.is_empty() {
                        names = request.resource_names.into_iter().collect();
                    }
                }
                _ => return,
            },
            changed = secrets.changed() => if changed.is_err() { return },
        }
        let current = secrets.borrow().clone();
        let Some(current) = current else { continue };
        if names.is_empty()
            || sent.as_ref().is_some_and(|(version, sent_names)| {
                *version == current.version && *sent_names == names
            })
        {
            continue;
        }
        nonce += 1;
        let response = DiscoveryResponse {
            version_info: current.version.clone(),
            resources: names
                .iter()
                .filter_map(|name| current.get(name).cloned())
                .collect(),
            type_url: SECRET_TYPE.into(),
            nonce: nonce.to_string(),
            ..Default::default()
        };
        if outbox.send(&response).await.is_err() {
            return;
        }
        debug!(version = %current.version, names = ?names, "secrets sent to Envoy");
        sent = Some((current.version.clone(), names.clone()));
    }
}
