//! TLS on the xds-server's gRPC listeners (ADS with the certificate service, and the
//! rate-limit service): a serving certificate from the mesh CA for the names proxies dial,
//! renewed at half its lifetime with no restart, and client certificates from the mesh CA,
//! whose SPIFFE id each request carries in its extensions as a [`PeerIdentity`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use hyper::body::Incoming;
use k8s_openapi::jiff::Timestamp;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_runtime::tls::{CertificateSlot, certified_key};

use crate::{
    ca::{CertificateAuthority, ServerCertificate, SpiffeId},
    identities::MeshIdentities,
    identity::PeerIdentity,
};

/// The longest a CA-issued serving certificate goes unchecked for renewal: the renewal
/// is timed from its lifetime (half of it), and checked at least this often in case the
/// wall clock jumped.
const RENEWAL_CHECK: Duration = Duration::from_secs(10);

fn issue(
    ca: &CertificateAuthority,
    names: &[String],
    lifetime: Duration,
    what: &str,
) -> anyhow::Result<(ServerCertificate, rustls::sign::CertifiedKey)> {
    let certificate = ca
        .issue_server(names, lifetime, Timestamp::now())
        .with_context(|| format!("issuing the {what} serving certificate"))?;
    let key = certified_key(&certificate.chain_pem, &certificate.key_pem)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("the {what} serving certificate"))?;
    Ok((certificate, key))
}

/// A serving certificate for `names` (DNS names or IP addresses) from the mesh CA, valid
/// for `lifetime` and renewed at half of it, until `shutdown`. `what` names the server in
/// logs and errors.
pub fn ca_serving_certificate(
    identities: Arc<MeshIdentities>,
    names: Vec<String>,
    lifetime: Duration,
    what: &'static str,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<CertificateSlot>> {
    let (mut current, key) = issue(identities.ca(), &names, lifetime, what)?;
    let slot = CertificateSlot::new(key);
    let (renewed, token) = (slot.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            // Timed from the certificate, not a fixed period: a lifetime shorter than
            // twice the check period would otherwise expire before it was renewed.
            let wait = current
                .until_renewal(Timestamp::now())
                .clamp(Duration::from_secs(1), RENEWAL_CHECK);
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if !current.renewal_due(Timestamp::now()) {
                continue;
            }
            match issue(identities.ca(), &names, lifetime, what) {
                Ok((certificate, key)) => {
                    renewed.store(key);
                    current = certificate;
                    info!(server = what, not_after = %current.not_after, "serving certificate renewed");
                }
                Err(e) => {
                    warn!(server = what, error = %format!("{e:#}"), "renewing a serving certificate failed; retrying")
                }
            }
        }
    });
    Ok(slot)
}

/// A TLS configuration presenting `slot`'s certificate and verifying client certificates
/// against the mesh's roots: `optional` accepts connections without one (ADS, where the
/// stream is refused with a reason, and the certificate service, where a token is the
/// proof); otherwise the handshake fails without one.
pub fn mesh_server_config(
    slot: &Arc<CertificateSlot>,
    roots_pem: &str,
    optional: bool,
) -> anyhow::Result<rustls::ServerConfig> {
    let roots = CertificateDer::pem_slice_iter(roots_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("mesh roots: {e:?}"))?;
    let verifier =
        weir_runtime::tls::client_verifier(&roots, optional).map_err(anyhow::Error::msg)?;
    let mut config = slot
        .server_config(Some(verifier))
        .map_err(anyhow::Error::msg)?;
    // gRPC only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The mesh identity of a connection's client certificate (already verified against the
/// mesh's roots by the handshake): its SPIFFE URI SAN.
pub fn peer_identity(session: &rustls::ServerConnection, remote: SocketAddr) -> PeerIdentity {
    let id = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| spiffe_id(leaf));
    PeerIdentity {
        id,
        remote: remote.to_string(),
    }
}

/// The SPIFFE id in a certificate's URI SANs.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<SpiffeId> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let sans = parsed.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.parse().ok(),
        _ => None,
    })
}

/// What the TLS server serves: a gRPC service (a tower service on tonic's bodies, always
/// ready, never failing), cloned per connection.
pub trait GrpcService:
    tower_service::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A gRPC service with each request's [`PeerIdentity`] in its extensions.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: PeerIdentity,
}

impl<S: GrpcService> hyper::service::Service<http::Request<Incoming>> for WithPeer<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        let mut inner = self.inner.clone();
        // Weir's gRPC services are always ready.
        let _ = inner.poll_ready(&mut Context::from_waker(std::task::Waker::noop()));
        inner.call(request.map(tonic::body::Body::new))
    }
}

/// Serves the gRPC `service` over TLS on `listener` until `shutdown`.
pub async fn serve_grpc<S: GrpcService>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    service: S,
    shutdown: CancellationToken,
) {
    weir_runtime::tls::serve(
        listener,
        tls,
        move |session, remote| WithPeer {
            inner: service.clone(),
            peer: peer_identity(session, remote),
        },
        shutdown,
    )
    .await;
}

/// Routes requests by gRPC service: the certificate service, else ADS.
#[derive(Clone, Debug)]
pub struct XdsRouter {
    /// ADS.
    pub ads: crate::ads::AdsService,
    /// The certificate service.
    pub identity: crate::identity::IdentityService,
}

impl tower_service::Service<http::Request<tonic::body::Body>> for XdsRouter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request
            .uri()
            .path()
            .starts_with(&format!("/{}/", crate::certify::SERVICE))
        {
            self.identity.call(request)
        } else {
            self.ads.call(request)
        }
    }
}
