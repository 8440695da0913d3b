//! An HTTPS server for an axum [`Router`] whose certificate can change while it serves
//! (rotation, or files rewritten by cert-manager): handshakes read the certificate from a
//! [`CertificateSlot`], so a new one applies to the next connection with no restart.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The certificate a server presents now.
pub struct CertificateSlot(ArcSwap<CertifiedKey>);

impl fmt::Debug for CertificateSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSlot").finish_non_exhaustive()
    }
}

/// A certificate chain and key from PEM, checked to belong together.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e:?}"))?;
    if chain.is_empty() {
        return Err("certificate: no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("private key: {e:?}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the key does not match the certificate: {e}"))?;
    Ok(certified)
}

/// A certificate chain and key from PEM files, the paths named in errors.
pub fn read_pem_files(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    certified_key(&read(cert)?, &read(key)?)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

fn modified(paths: [&Path; 2]) -> [Option<SystemTime>; 2] {
    paths.map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

impl CertificateSlot {
    /// A slot holding `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(CertificateSlot(ArcSwap::from_pointee(key)))
    }

    /// Presents `key` from the next handshake on.
    pub fn store(&self, key: CertifiedKey) {
        self.0.store(Arc::new(key));
    }

    /// Reloads the slot from `cert` and `key` whenever either file's modification time
    /// changes (checked every `every`), until `shutdown`: cert-manager and kubelet
    /// rewrite mounted Secrets in place. A pair that does not load (caught half-written)
    /// keeps the previous certificate in service and is retried on the next check.
    pub async fn reload_from_files(
        self: Arc<Self>,
        cert: PathBuf,
        key: PathBuf,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut seen = modified([&cert, &key]);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let now = modified([&cert, &key]);
            if now == seen {
                continue;
            }
            match read_pem_files(&cert, &key) {
                Ok(loaded) => {
                    self.store(loaded);
                    seen = now;
                    info!(cert = %cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    warn!(error = %e, "serving certificate files not usable yet; keeping the previous certificate")
                }
            }
        }
    }

    /// A TLS server configuration (HTTP/2 and HTTP/1.1) presenting this slot's certificate,
    /// verifying client certificates with `verifier` when given.
    pub fn server_config(
        self: &Arc<Self>,
        verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<rustls::ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A verifier of client certificates issued by `roots`; with `optional`, connections
/// without one are accepted too (the server decides per request what they may do).
pub fn client_verifier(
    roots: &[CertificateDer<'static>],
    optional: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    );
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| format!("client verifier: {e}"))
}

/// Serves `router` over TLS on `listener` until `shutdown` (see [`serve`]).
pub async fn serve_router(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: CancellationToken,
) {
    serve(
        listener,
        tls,
        move |_, _| TowerToHyperService::new(router.clone()),
        shutdown,
    )
    .await
}

/// Serves HTTP/1.1 and HTTP/2 over TLS on `listener` until `shutdown`, then lets open
/// connections finish their requests (up to 10 s). Each connection gets the service
/// `make_service` builds from its TLS session (which holds the client's certificates, for
/// servers that authenticate by them) and remote address. A handshake has 10 s. HTTP/2
/// connections are pinged every 30 s, so a peer that vanished is noticed.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    make_service: M,
    shutdown: CancellationToken,
) where
    M: Fn(&rustls::ServerConnection, std::net::SocketAddr) -> S + Send + Sync + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let make_service = Arc::new(make_service);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let make_service = make_service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let service = make_service(tls.get_ref().1, remote);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .timer(hyper_util::rt::TokioTimer::new());
            let connection = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after 10 s; closing them");
    }
}
