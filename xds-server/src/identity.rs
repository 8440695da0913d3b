//! Proof before anything is served, the effects around [`crate::proof`]: reviewing tokens
//! (TokenReview in a cluster, the local token authority in `weir up`), the certificate
//! service an in-pod agent calls ([`IdentityService`], `weir.identity.v1.Identity/Certify`),
//! the check every ADS stream passes before it is sent anything ([`Gatekeeper::admit`]),
//! and what a refusal leaves behind: a `PermissionDenied`, one log line per new refusal,
//! `weir_identity_refusals_total{request,reason}`, and an entry in `/debug/proxies` that
//! `weir proxy-status` prints.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Buf;
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use prost::Message;
use tokio::sync::watch;
use tonic::{Status, server::NamedService};
use tracing::{info, warn};
use weir_store::ClusterState;

use crate::{
    ca::SpiffeId,
    certify::{CERTIFY_PATH, CertifyRequest, CertifyResponse, MAX_REQUEST_BYTES, SERVICE},
    grpc::frame,
    identities::MeshIdentities,
    proof::{self, AUDIENCE, Proven, Refusal, RefusalReason},
    registry::{ProxyRegistry, Refused},
    tokens::{LocalTokens, ReviewedUser},
    translate::ProxyId,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reviews a proxy's token: `Ok(Ok(user))` for a valid token, `Ok(Err(refusal))` for one
/// the reviewer does not accept, `Err` when the review itself failed (the API server is
/// unreachable): the caller is asked to retry, not refused.
pub trait TokenReviewer: Send + Sync {
    /// Reviews `token` for the audience `weir`.
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<ReviewedUser, Refusal>, String>>;
}

/// Reviews with the API server's TokenReview (the same call the metrics adapter makes).
#[derive(Clone)]
#[allow(missing_debug_implementations)] // a client: nothing to print
pub struct KubeTokenReviewer(pub kube::Client);

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<ReviewedUser, Refusal>, String>> {
        Box::pin(async move {
            let user = weir_runtime::token_review::review_token(
                &self.0,
                token,
                Some(vec![AUDIENCE.to_string()]),
            )
            .await?;
            Ok(match user {
                Some(user) => Ok(ReviewedUser {
                    username: user.name,
                    extra: user.extra,
                }),
                None => Err(Refusal::new(
                    RefusalReason::InvalidProof,
                    format!("the API server does not accept the token for audience {AUDIENCE:?}"),
                )),
            })
        })
    }
}

/// Reviews local-mode tokens: signed by this `weir up`, and bound to a Pod that still
/// exists in its configuration.
#[allow(missing_debug_implementations)] // a key and the state: nothing to print
pub struct LocalTokenReviewer {
    /// The authority that minted them.
    pub tokens: Arc<LocalTokens>,
    /// The configuration, for the pods tokens are bound to.
    pub state: watch::Receiver<ClusterState>,
}

impl TokenReviewer for LocalTokenReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<ReviewedUser, Refusal>, String>> {
        let state = self.state.borrow().clone();
        Box::pin(async move {
            Ok(self
                .tokens
                .review(token, Timestamp::now(), |namespace, name, uid| {
                    state
                        .pods
                        .get_namespaced(namespace, name)
                        .is_some_and(|pod| {
                            uid.is_empty() || pod.metadata.uid.as_deref().unwrap_or_default() == uid
                        })
                }))
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    request: &'static str,
    reason: &'static str,
}

/// Metrics of proofs.
#[derive(Clone, Debug, Default)]
pub struct IdentityMetrics {
    refusals: Family<RefusalLabels, Counter>,
    issued: Counter,
    admitted: Counter,
}

impl IdentityMetrics {
    /// Registers them under `weir_identity_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = IdentityMetrics::default();
        let sub = registry.sub_registry_with_prefix("weir_identity");
        sub.register(
            "refusals",
            "Callers refused for want of proof, by request (ads, certify) and reason",
            metrics.refusals.clone(),
        );
        sub.register(
            "certificates_issued",
            "Workload certificates issued to agents that proved their identity",
            metrics.issued.clone(),
        );
        sub.register(
            "streams_admitted",
            "ADS streams whose client certificate covered the proxy they claimed",
            metrics.admitted.clone(),
        );
        metrics
    }
}

/// The client certificate a connection presented, as an identity of the mesh (`None`
/// without one). Inserted into each request's extensions by the TLS server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SPIFFE id of the certificate.
    pub id: Option<SpiffeId>,
    /// The remote address.
    pub remote: String,
}

/// Decides who is served, and records who is not.
pub struct Gatekeeper {
    identities: Arc<MeshIdentities>,
    reviewer: Arc<dyn TokenReviewer>,
    state: watch::Receiver<ClusterState>,
    registry: Arc<ProxyRegistry>,
    metrics: IdentityMetrics,
}

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper").finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// A gatekeeper certifying from `identities`' CA, reviewing tokens with `reviewer`,
    /// checking claims against `state`, recording refusals in `registry`.
    pub fn new(
        identities: Arc<MeshIdentities>,
        reviewer: Arc<dyn TokenReviewer>,
        state: watch::Receiver<ClusterState>,
        registry: Arc<ProxyRegistry>,
        metrics: IdentityMetrics,
    ) -> Self {
        Gatekeeper {
            identities,
            reviewer,
            state,
            registry,
            metrics,
        }
    }

    /// Whether an ADS stream from `peer` may be served as `claimed`: its client
    /// certificate must be the mesh's and cover the claim. A refusal is recorded.
    pub fn admit(&self, peer: &PeerIdentity, claimed: &ProxyId) -> Result<Proven, Status> {
        let result = match &peer.id {
            None => Err(Refusal::new(
                RefusalReason::NoProof,
                "no client certificate: start Envoy with `weir bootstrap --sds-socket` next to `weir agent`",
            )),
            Some(id) => {
                let proven = Proven::from_certificate(id);
                proof::check_claim(&self.state.borrow(), &proven, claimed).map(|()| proven)
            }
        };
        match result {
            Ok(proven) => {
                self.metrics.admitted.inc();
                Ok(proven)
            }
            Err(refusal) => {
                let proven = peer
                    .id
                    .as_ref()
                    .map(|id| Proven::from_certificate(id).to_string());
                Err(self.refuse("ads", &claimed.to_string(), proven, &peer.remote, refusal))
            }
        }
    }

    /// Records and logs (once per new refusal) why a caller was refused; the status to
    /// end its call with.
    fn refuse(
        &self,
        request: &'static str,
        claimed: &str,
        proven: Option<String>,
        peer: &str,
        refusal: Refusal,
    ) -> Status {
        self.metrics
            .refusals
            .get_or_create(&RefusalLabels {
                request,
                reason: refusal.reason.label(),
            })
            .inc();
        let proven = proven.unwrap_or_else(|| "nothing".into());
        let new = self.registry.refuse(Refused {
            at: Timestamp::now().as_second(),
            request: request.into(),
            claimed: claimed.into(),
            proven: proven.clone(),
            reason: refusal.reason.label().into(),
            message: refusal.message.clone(),
            peer: peer.into(),
            count: 0,
        });
        if new {
            warn!(request, claimed, %proven, reason = refusal.reason.label(), %peer, "refused: {}", refusal.message);
        }
        Status::permission_denied(refusal.message)
    }

    /// Certifies the key in `request` for the identity `token` proves.
    pub async fn certify(
        &self,
        token: Option<&str>,
        request: &CertifyRequest,
        peer: &str,
    ) -> Result<CertifyResponse, Status> {
        let claimed = request.proxy.trim();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            let refusal = Refusal::new(
                RefusalReason::NoProof,
                "no token: send the pod's ServiceAccount token (audience weir) as `authorization: Bearer <token>`",
            );
            return Err(self.refuse("certify", claimed, None, peer, refusal));
        };
        let user = match self.reviewer.review(token).await {
            Err(e) => {
                warn!(error = %e, "cannot review a token; the agent will retry");
                return Err(Status::unavailable(format!(
                    "cannot review the token now: {e}"
                )));
            }
            Ok(Err(refusal)) => return Err(self.refuse("certify", claimed, None, peer, refusal)),
            Ok(Ok(user)) => user,
        };
        let proven = match proof::from_review(&user.username, &user.extra) {
            Ok(proven) => proven,
            Err(refusal) => {
                return Err(self.refuse(
                    "certify",
                    claimed,
                    Some(user.username.clone()),
                    peer,
                    refusal,
                ));
            }
        };
        if !claimed.is_empty() {
            let checked = claimed
                .parse::<ProxyId>()
                .map_err(|e| Refusal::new(RefusalReason::Unknown, e.to_string()))
                .and_then(|id| proof::check_claim(&self.state.borrow(), &proven, &id));
            if let Err(refusal) = checked {
                return Err(self.refuse(
                    "certify",
                    claimed,
                    Some(proven.to_string()),
                    peer,
                    refusal,
                ));
            }
        }
        let ca = self.identities.ca();
        let id = proven.spiffe_id(ca.trust_domain());
        let chain = ca
            .certify(
                &request.csr,
                &id,
                self.identities.lifetime(),
                Timestamp::now(),
            )
            .map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        self.metrics.issued.inc();
        info!(identity = %id, proxy = claimed, not_after = %chain.not_after, "workload certificate issued");
        Ok(CertifyResponse {
            certificate_chain: chain.chain_pem,
            roots: ca.root_pem().to_string(),
            trust_domain: ca.trust_domain().to_string(),
            not_after: chain.not_after.as_second(),
            spiffe_id: id.to_string(),
        })
    }
}

/// The certificate service, mountable next to ADS.
#[derive(Clone, Debug)]
pub struct IdentityService {
    gatekeeper: Arc<Gatekeeper>,
}

impl IdentityService {
    /// Serves certificates through `gatekeeper`.
    pub fn new(gatekeeper: Arc<Gatekeeper>) -> Self {
        IdentityService { gatekeeper }
    }
}

impl NamedService for IdentityService {
    const NAME: &'static str = SERVICE;
}

impl tower_service::Service<http::Request<tonic::body::Body>> for IdentityService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let gatekeeper = self.gatekeeper.clone();
        Box::pin(async move {
            Ok(match certify(&gatekeeper, request).await {
                Ok(response) => http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/grpc")
                    .body(tonic::body::Body::new(unary_body(frame(&response))))
                    .unwrap_or_else(|_| Status::internal("building the response").into_http()),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// The bearer token of a request's `authorization` metadata.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn certify(
    gatekeeper: &Gatekeeper,
    request: http::Request<tonic::body::Body>,
) -> Result<CertifyResponse, Status> {
    if request.uri().path() != CERTIFY_PATH {
        return Err(Status::unimplemented(format!(
            "no method {}",
            request.uri().path()
        )));
    }
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .map(|p| p.remote.clone())
        .unwrap_or_default();
    let token = bearer(request.headers()).map(str::to_string);
    let body = http_body_util::Limited::new(request.into_body(), MAX_REQUEST_BYTES + 5);
    let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .map_err(|_| Status::deadline_exceeded("the request did not arrive in 10 s"))?
        .map_err(|e| Status::invalid_argument(format!("reading the request: {e}")))?
        .to_bytes();
    let mut buf = bytes.as_ref();
    if buf.len() < 5 || buf[0] != 0 {
        return Err(Status::invalid_argument(
            "not one uncompressed gRPC message",
        ));
    }
    buf.advance(1);
    let len = buf.get_u32() as usize;
    if buf.len() != len {
        return Err(Status::invalid_argument("a truncated gRPC message"));
    }
    let message = CertifyRequest::decode(buf)
        .map_err(|e| Status::invalid_argument(format!("not a CertifyRequest: {e}")))?;
    gatekeeper.certify(token.as_deref(), &message, &peer).await
}

/// A response body of one message and an OK status.
fn unary_body(message: bytes::Bytes) -> impl http_body::Body<Data = bytes::Bytes, Error = Status> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("0"));
    let frames = vec![
        Ok::<_, Status>(http_body::Frame::data(message)),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    http_body_util::StreamBody::new(futures::stream::iter(frames))
}
