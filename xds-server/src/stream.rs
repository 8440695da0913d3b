//! What every ADS stream does, whichever protocol variant: identify the proxy from its
//! first request, keep its view of the current generation, number responses, record NACKs,
//! publish its status to the registry, and clean up when it ends ([`StreamCore`]); and the
//! loop that drives a stream ([`drive`]).

use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use crate::{
    bootstrap::{metadata, metadata_port, options_from_metadata},
    cache::{Generation, SnapshotCache, TYPE_ORDER, ViewSnapshot},
    grpc::Outbox,
    identity::{Gatekeeper, PeerIdentity},
    metrics::{TypeLabels, XdsMetrics},
    registry::{Nack, ProxyRegistry, ProxyStatus, TypeStatus, type_name},
    status::objects_behind,
    translate::{ProxyId, ProxyOptions},
};

/// The state and bookkeeping shared by state-of-the-world and delta streams.
pub(crate) struct StreamCore {
    id: u64,
    protocol: &'static str,
    proxy: Option<(ProxyId, ProxyOptions)>,
    admin_port: Option<u16>,
    /// The generation last looked at, and the proxy's view of it.
    view: Option<(Arc<Generation>, Arc<ViewSnapshot>)>,
    /// When the stream opened.
    started: Instant,
    nonce: u64,
    cache: Arc<SnapshotCache>,
    registry: Arc<ProxyRegistry>,
    metrics: XdsMetrics,
    /// Who the connection proved to be, and who decides whether that covers the claim.
    peer: PeerIdentity,
    gatekeeper: Arc<Gatekeeper>,
}

impl StreamCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        protocol: &'static str,
        cache: Arc<SnapshotCache>,
        registry: Arc<ProxyRegistry>,
        metrics: XdsMetrics,
        peer: PeerIdentity,
        gatekeeper: Arc<Gatekeeper>,
    ) -> Self {
        StreamCore {
            id,
            protocol,
            peer,
            gatekeeper,
            proxy: None,
            admin_port: None,
            started: Instant::now(),
            view: None,
            nonce: 0,
            cache,
            registry,
            metrics,
        }
    }

    /// Starts handling a request: identifies the proxy from the first request's node and
    /// checks the connection's proof covers it (else the stream ends with
    /// PermissionDenied before anything is sent), and returns the served type the request
    /// is about (`None`: a type Weir does not serve, to be ignored).
    pub(crate) fn accept(
        &mut self,
        node: Option<&Node>,
        type_url: &str,
    ) -> Result<Option<&'static str>, Status> {
        if self.proxy.is_none() {
            let identity = identify(node)?;
            let proven = self.gatekeeper.admit(&self.peer, &identity.0)?;
            info!(proxy = %identity.0, stream = self.id, protocol = self.protocol, %proven, "proxy connected");
            self.metrics.connected.inc();
            self.proxy = Some(identity);
            self.admin_port =
                node.and_then(|n| metadata_port(n.metadata.as_ref(), metadata::ADMIN_PORT));
        }
        let served = TYPE_ORDER.iter().copied().find(|t| *t == type_url);
        if served.is_none() {
            debug!(
                stream = self.id,
                type_url, "ignoring a request for a type Weir does not serve"
            );
        }
        Ok(served)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// What this proxy sees in the current generation; `None` before it identified itself.
    pub(crate) fn view(&mut self) -> Option<Arc<ViewSnapshot>> {
        let (proxy, options) = self.proxy.as_ref()?;
        let generation = self.cache.current();
        if let Some((seen, view)) = self.view.as_ref()
            && seen.number == generation.number
        {
            return Some(view.clone());
        }
        let view = generation.proxy_view(proxy, options);
        self.view = Some((generation, view.clone()));
        Some(view)
    }

    /// The generation [`StreamCore::view`] last looked at (what on-demand names resolve
    /// against).
    pub(crate) fn generation(&self) -> Option<&Arc<Generation>> {
        self.view.as_ref().map(|(generation, _)| generation)
    }

    /// When the configuration the stream sends now started to be due: the publish time of
    /// the generation last looked at, or the stream's opening if later.
    pub(crate) fn due_since(&self) -> Instant {
        self.view.as_ref().map_or(self.started, |(generation, _)| {
            generation.published.max(self.started)
        })
    }

    /// A response of `type_url` went out: `pending` remembers since when the change it
    /// carries was due, until the proxy ACKs.
    pub(crate) fn pushed(&self, type_url: &str, pending: &mut Option<Instant>) {
        pending.get_or_insert_with(|| self.due_since());
        self.count_push(type_url);
    }

    /// The proxy ACKed `type_url`: observes how long since the oldest unacknowledged
    /// change was due.
    pub(crate) fn acked(&self, type_url: &str, pending: &mut Option<Instant>) {
        if let Some(since) = pending.take() {
            self.metrics
                .convergence
                .get_or_create(&TypeLabels {
                    r#type: type_name(type_url),
                })
                .observe(since.elapsed().as_secs_f64());
        }
    }

    /// How many responses the stream has sent.
    pub(crate) fn responses(&self) -> u64 {
        self.nonce
    }

    /// The next response nonce.
    pub(crate) fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    /// Counts a response of `type_url` sent.
    pub(crate) fn count_push(&self, type_url: &str) {
        self.metrics
            .pushes
            .get_or_create(&TypeLabels {
                r#type: type_name(type_url),
            })
            .inc();
    }

    /// Records a NACK of `type_url`: warns with the proxy and Envoy's error, counts it, and
    /// keeps it in `status` with the objects behind the rejected resources, for
    /// `proxy-status` and status conditions.
    pub(crate) fn record_nack(&mut self, status: &mut TypeStatus, type_url: &str, message: &str) {
        let objects = match (self.view(), &self.proxy) {
            (Some(view), Some((proxy, _))) => {
                objects_behind(&view.config, proxy, type_url, message)
            }
            _ => Vec::new(),
        };
        let rejected = status.sent.clone().unwrap_or_default();
        let proxy = self
            .proxy
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        warn!(
            proxy = %proxy,
            r#type = type_name(type_url),
            version = %rejected,
            error = %message,
            "proxy rejected configuration (NACK); it keeps what it accepted before"
        );
        self.metrics
            .nacks
            .get_or_create(&TypeLabels {
                r#type: type_name(type_url),
            })
            .inc();
        status.last_nack = Some(Nack {
            version: rejected,
            message: message.to_string(),
            objects,
        });
    }

    /// Publishes the stream's per-type status for `proxy-status`.
    pub(crate) fn publish<'a>(&self, types: impl Iterator<Item = (&'a str, &'a TypeStatus)>) {
        let Some((proxy, _)) = &self.proxy else {
            return;
        };
        self.registry.update(ProxyStatus {
            stream: self.id,
            node_id: proxy.to_string(),
            protocol: self.protocol,
            admin_port: self.admin_port,
            types: types.map(|(t, s)| (type_name(t), s.clone())).collect(),
        });
    }

    /// Forgets the stream, if it had identified its proxy.
    fn disconnected(&self) {
        if let Some((proxy, _)) = &self.proxy {
            self.registry.remove(self.id);
            self.metrics.connected.dec();
            info!(proxy = %proxy, stream = self.id, "proxy disconnected");
        }
    }
}

/// Who a stream's proxy is, from the node of its first request.
fn identify(node: Option<&Node>) -> Result<(ProxyId, ProxyOptions), Status> {
    let node =
        node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
    let proxy: ProxyId = node
        .id
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{e}")))?;
    Ok((proxy, options_from_metadata(node.metadata.as_ref())))
}

/// What the stream driver needs from each protocol variant.
pub(crate) trait XdsStream: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;

    /// Handles one request; an error ends the stream with that status.
    fn on_request(
        &mut self,
        request: Self::Request,
        tx: &Outbox,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send;

    /// Whether the proxy has asked for `type_url`.
    fn requested(&self, type_url: &str) -> bool;

    /// Sends `type_url` if what the proxy should hold of it changed; an error means the
    /// stream is gone.
    fn push_type(
        &mut self,
        type_url: &'static str,
        tx: &Outbox,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send;

    /// Publishes the stream's per-type status for `proxy-status`.
    fn publish_status(&self);

    /// Sends what a new generation changed, type by type in push order; an error means
    /// the stream is gone.
    fn push_all(
        &mut self,
        tx: &Outbox,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send {
        async move {
            let responses = self.core().responses();
            for type_url in TYPE_ORDER {
                if self.requested(type_url) {
                    self.push_type(type_url, tx).await?;
                }
            }
            // Most streams have nothing new in most generations: nothing to report either.
            if self.core().responses() != responses {
                self.publish_status();
            }
            Ok(())
        }
    }

    /// The shared part.
    fn core(&self) -> &StreamCore;
}

/// Runs one stream until the proxy hangs up, the stream fails, or `shutdown`: requests are
/// handled as they come and every new generation is pushed.
pub(crate) async fn drive<S: XdsStream>(
    mut stream: S,
    mut requests: Streaming<S::Request>,
    tx: Outbox,
    shutdown: CancellationToken,
) {
    let mut generations = stream.core().cache.subscribe();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = requests.message() => match message {
                Ok(Some(request)) => {
                    if let Err(status) = stream.on_request(request, &tx).await {
                        tx.end(status).await;
                        break;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "xDS stream ended with an error");
                    break;
                }
            },
            changed = generations.changed() => {
                if changed.is_err() || stream.push_all(&tx).await.is_err() {
                    break;
                }
            }
        }
    }
    stream.core().disconnected();
}
