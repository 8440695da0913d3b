//! The Aggregated Discovery Service, state-of-the-world variant.
//!
//! One task per stream. Per resource type the stream remembers the subscription (wildcard
//! for clusters and listeners, names for endpoints and routes), the version and nonce last
//! sent, and what the proxy ACKed or NACKed. A response goes out when the proxy asks for a
//! type the first time, when its subscription changes what it should see, or when a new
//! generation changes it; never twice with the same version. A NACK keeps the proxy on its
//! last accepted version (Envoy's own behaviour) and is logged, counted and recorded; the
//! rejected version is not resent, so there is no loop. Requests carrying a stale nonce
//! (answers to an older response) are ignored, as the protocol says.
//!
//! [`AdsService`] mounts it on a gRPC server: requests routed by method to the
//! state-of-the-world or delta stream, responses framed by [`crate::grpc`].

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming, server::NamedService};
use tracing::debug;

use crate::{
    cache::{SnapshotCache, is_wildcard_type},
    delta::DeltaStream,
    grpc::{DELTA_PATH, Outbox, ResponseBody, SERVICE, SOTW_PATH, decode},
    identity::{Gatekeeper, PeerIdentity},
    metrics::XdsMetrics,
    registry::{ProxyRegistry, TypeStatus},
    stream::{StreamCore, XdsStream, drive},
};

pub use crate::bootstrap::{metadata, metadata_port, options_from_metadata};

/// The ADS server: shared by every stream.
#[derive(Debug)]
pub struct AdsServer {
    cache: Arc<SnapshotCache>,
    registry: Arc<ProxyRegistry>,
    metrics: XdsMetrics,
    gatekeeper: Arc<Gatekeeper>,
    shutdown: CancellationToken,
    next_stream: AtomicU64,
}

impl AdsServer {
    /// A server answering from `cache` the proxies `gatekeeper` admits.
    pub fn new(
        cache: Arc<SnapshotCache>,
        registry: Arc<ProxyRegistry>,
        metrics: XdsMetrics,
        gatekeeper: Arc<Gatekeeper>,
        shutdown: CancellationToken,
    ) -> Self {
        AdsServer {
            cache,
            registry,
            metrics,
            gatekeeper,
            shutdown,
            next_stream: AtomicU64::new(1),
        }
    }
}

impl AdsServer {
    fn core(&self, protocol: &'static str, peer: PeerIdentity) -> StreamCore {
        StreamCore::new(
            self.next_stream.fetch_add(1, Ordering::Relaxed),
            protocol,
            self.cache.clone(),
            self.registry.clone(),
            self.metrics.clone(),
            peer,
            self.gatekeeper.clone(),
        )
    }

    /// Starts a state-of-the-world stream reading `requests`; returns its response body.
    pub(crate) fn stream_sotw(
        &self,
        requests: Streaming<DiscoveryRequest>,
        peer: PeerIdentity,
    ) -> ResponseBody {
        let stream = SotwStream {
            core: self.core("sotw", peer),
            types: BTreeMap::new(),
        };
        self.start(stream, requests)
    }

    /// Starts an incremental stream reading `requests`; returns its response body.
    pub(crate) fn stream_delta(
        &self,
        requests: Streaming<DeltaDiscoveryRequest>,
        peer: PeerIdentity,
    ) -> ResponseBody {
        self.start(DeltaStream::new(self.core("delta", peer)), requests)
    }

    /// Runs `stream` in its own task and returns the response body it feeds.
    fn start<S: XdsStream>(&self, stream: S, requests: Streaming<S::Request>) -> ResponseBody {
        let (outbox, body) = Outbox::new();
        tokio::spawn(drive(stream, requests, outbox, self.shutdown.clone()));
        body
    }
}

#[derive(Debug, Default)]
struct TypeState {
    /// `None`: everything (wildcard); `Some`: these names.
    subscription: Option<BTreeSet<Arc<str>>>,
    requested: bool,
    sent_nonce: String,
    /// The digest of the snapshot last compared with what was sent, while the
    /// subscription has not changed since: the same digest again needs no work.
    checked: Option<u64>,
    status: TypeStatus,
    /// Since when the oldest change sent but not yet ACKed was due.
    pending: Option<std::time::Instant>,
}

struct SotwStream {
    core: StreamCore,
    types: BTreeMap<&'static str, TypeState>,
}

impl XdsStream for SotwStream {
    type Request = DiscoveryRequest;

    async fn on_request(&mut self, request: DiscoveryRequest, tx: &Outbox) -> Result<(), Status> {
        self.handle_request(request, tx).await
    }

    fn requested(&self, type_url: &str) -> bool {
        self.types.get(type_url).is_some_and(|t| t.requested)
    }

    async fn push_type(&mut self, type_url: &'static str, tx: &Outbox) -> Result<(), ()> {
        self.send(type_url, false, tx).await
    }

    fn publish_status(&self) {
        self.core
            .publish(self.types.iter().map(|(t, s)| (*t, &s.status)));
    }

    fn core(&self) -> &StreamCore {
        &self.core
    }
}

impl SotwStream {
    /// Handles one request; an error ends the stream with that status.
    async fn handle_request(
        &mut self,
        request: DiscoveryRequest,
        tx: &Outbox,
    ) -> Result<(), Status> {
        let Some(type_url) = self.core.accept(request.node.as_ref(), &request.type_url)? else {
            return Ok(());
        };
        let view = self.core.view();
        let snapshot = view.as_deref().and_then(|v| v.of_type(type_url));
        let state = self.types.entry(type_url).or_default();
        if !request.response_nonce.is_empty() && request.response_nonce != state.sent_nonce {
            debug!(stream = self.core.id(), type_url, nonce = %request.response_nonce, "ignoring a request with a stale nonce");
            return Ok(());
        }
        if let Some(error) = &request.error_detail {
            self.core
                .record_nack(&mut state.status, type_url, &error.message);
            state.pending = None;
        } else if !request.response_nonce.is_empty() {
            state.status.acked = Some(request.version_info.clone());
            self.core.acked(type_url, &mut state.pending);
        }
        let wildcard = is_wildcard_type(type_url)
            && (request.resource_names.is_empty()
                || request.resource_names.iter().any(|n| n == "*"));
        // Names are held as references into the snapshot (see `TypeSnapshot::intern`).
        let subscription = (!wildcard).then(|| {
            request
                .resource_names
                .iter()
                .map(|n| crate::cache::intern(snapshot, n))
                .collect::<BTreeSet<Arc<str>>>()
        });
        if subscription != state.subscription {
            state.checked = None;
            state.subscription = subscription;
        }
        let first = !state.requested;
        state.requested = true;
        self.send(type_url, first, tx)
            .await
            .map_err(|_| Status::cancelled("stream closed"))?;
        self.publish_status();
        Ok(())
    }

    /// Sends `type_url` if its version for this stream's subscription differs from what
    /// was sent (or always, with `force`, for a first request).
    async fn send(&mut self, type_url: &'static str, force: bool, tx: &Outbox) -> Result<(), ()> {
        let Some(view) = self.core.view() else {
            return Ok(());
        };
        let Some(snapshot) = view.of_type(type_url) else {
            return Ok(());
        };
        let Some(state) = self.types.get_mut(type_url) else {
            return Ok(());
        };
        if !force && state.checked == Some(snapshot.digest()) {
            return Ok(());
        }
        let version = snapshot.version(state.subscription.as_ref());
        if !force && state.status.sent.as_deref() == Some(version.as_str()) {
            state.checked = Some(snapshot.digest());
            return Ok(());
        }
        let resources: Vec<_> = snapshot
            .select(state.subscription.as_ref())
            .map(|r| r.any.clone())
            .collect();
        let nonce = self.core.next_nonce();
        state.status.resources = resources.len();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources,
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        tx.send(&response).await.map_err(|_| ())?;
        state.status.sent = Some(version);
        state.sent_nonce = nonce;
        state.checked = Some(snapshot.digest());
        self.core.pushed(type_url, &mut state.pending);
        Ok(())
    }
}

/// The ADS service, mountable on a tonic server.
#[derive(Debug, Clone)]
pub struct AdsService {
    server: Arc<AdsServer>,
}

impl AdsService {
    /// Serves ADS from `server`.
    pub fn new(server: AdsServer) -> Self {
        AdsService {
            server: Arc::new(server),
        }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let server = self.server.clone();
        Box::pin(async move { Ok(route(&server, request)) })
    }
}

fn route(
    server: &AdsServer,
    request: http::Request<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding.as_bytes() != b"identity"
    {
        return Status::unimplemented(format!(
            "request compression {:?} is not supported",
            String::from_utf8_lossy(encoding.as_bytes())
        ))
        .into_http();
    }
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .unwrap_or_default();
    let body = request.into_body();
    let response = match path.as_str() {
        SOTW_PATH => server.stream_sotw(decode(body), peer),
        DELTA_PATH => server.stream_delta(decode(body), peer),
        _ => return Status::unimplemented(format!("no method {path}")).into_http(),
    };
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(tonic::body::Body::new(response))
        .unwrap_or_else(|_| Status::internal("building the response").into_http())
}
