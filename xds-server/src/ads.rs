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

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use envoy_types::pb::{
    envoy::config::core::v3::Node,
    envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse},
    google::protobuf::{Struct, value::Kind},
};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use crate::{
    cache::{SnapshotCache, TYPE_ORDER, ViewSnapshot, is_wildcard_type},
    delta::DeltaStream,
    grpc::{Outbox, ResponseBody},
    metrics::{TypeLabels, XdsMetrics},
    registry::{Nack, ProxyRegistry, ProxyStatus, TypeStatus, type_name},
    status::objects_behind,
    translate::{ProxyId, ProxyOptions, ViewKey, view_key},
};

/// Node metadata keys a bootstrap sets to give a proxy its ports.
pub mod metadata {
    /// The sidecar's inbound listener port.
    pub const INBOUND_PORT: &str = "weir.io/inbound-port";
    /// The sidecar's outbound listener port.
    pub const OUTBOUND_PORT: &str = "weir.io/outbound-port";
    /// The sidecar's workload port.
    pub const APP_PORT: &str = "weir.io/app-port";
    /// Added to every Gateway listener port.
    pub const GATEWAY_PORT_OFFSET: &str = "weir.io/gateway-port-offset";
}

/// The ADS server: shared by every stream.
#[derive(Debug)]
pub struct AdsServer {
    cache: Arc<SnapshotCache>,
    registry: Arc<ProxyRegistry>,
    metrics: XdsMetrics,
    shutdown: CancellationToken,
    next_stream: AtomicU64,
}

impl AdsServer {
    /// A server answering from `cache`.
    pub fn new(
        cache: Arc<SnapshotCache>,
        registry: Arc<ProxyRegistry>,
        metrics: XdsMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        AdsServer {
            cache,
            registry,
            metrics,
            shutdown,
            next_stream: AtomicU64::new(1),
        }
    }
}

impl AdsServer {
    /// Starts a state-of-the-world stream reading `requests`; returns its response body.
    pub(crate) fn stream_sotw(&self, requests: Streaming<DiscoveryRequest>) -> ResponseBody {
        let stream = SotwStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            proxy: None,
            types: BTreeMap::new(),
            nonce: 0,
            view: None,
            cache: self.cache.clone(),
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
        };
        self.start(stream, requests)
    }

    /// Starts an incremental stream reading `requests`; returns its response body.
    pub(crate) fn stream_delta(&self, requests: Streaming<DeltaDiscoveryRequest>) -> ResponseBody {
        let stream = DeltaStream::new(
            self.next_stream.fetch_add(1, Ordering::Relaxed),
            self.cache.clone(),
            self.registry.clone(),
            self.metrics.clone(),
        );
        self.start(stream, requests)
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
    subscription: Option<BTreeSet<String>>,
    requested: bool,
    sent_nonce: String,
    /// The digest of the snapshot last compared with what was sent, while the
    /// subscription has not changed since: the same digest again needs no work.
    checked: Option<u64>,
    status: TypeStatus,
}

struct SotwStream {
    id: u64,
    proxy: Option<(ProxyId, ProxyOptions)>,
    types: BTreeMap<&'static str, TypeState>,
    nonce: u64,
    /// The view for the generation last looked at.
    view: Option<(u64, Arc<ViewSnapshot>)>,
    cache: Arc<SnapshotCache>,
    registry: Arc<ProxyRegistry>,
    metrics: XdsMetrics,
}

impl XdsStream for SotwStream {
    type Request = DiscoveryRequest;

    async fn on_request(&mut self, request: DiscoveryRequest, tx: &Outbox) -> Result<(), Status> {
        self.handle_request(request, tx).await
    }

    async fn push_all(&mut self, tx: &Outbox) -> Result<(), ()> {
        self.push_changes(tx).await
    }

    fn disconnected(&mut self) {
        record_disconnect(
            self.id,
            self.proxy.as_ref().map(|(p, _)| p),
            &self.registry,
            &self.metrics,
        );
    }

    fn cache(&self) -> &SnapshotCache {
        &self.cache
    }
}

impl SotwStream {
    /// Handles one request; an error ends the stream with that status.
    async fn handle_request(
        &mut self,
        request: DiscoveryRequest,
        tx: &Outbox,
    ) -> Result<(), Status> {
        if self.proxy.is_none() {
            let identity = identify(request.node.as_ref())?;
            info!(proxy = %identity.0, stream = self.id, "proxy connected");
            self.metrics.connected.inc();
            self.proxy = Some(identity);
        }
        let Some(type_url) = TYPE_ORDER.iter().copied().find(|t| *t == request.type_url) else {
            debug!(stream = self.id, type_url = %request.type_url, "ignoring a request for a type Weir does not serve");
            return Ok(());
        };
        let proxy_name = self
            .proxy
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let nack_objects = match (&request.error_detail, self.current_view(), &self.proxy) {
            (Some(_), Some(view), Some((proxy, _))) => {
                objects_behind(&view.config, proxy, type_url)
            }
            _ => Vec::new(),
        };
        let state = self.types.entry(type_url).or_default();
        if !request.response_nonce.is_empty() && request.response_nonce != state.sent_nonce {
            debug!(stream = self.id, type_url, nonce = %request.response_nonce, "ignoring a request with a stale nonce");
            return Ok(());
        }
        if let Some(error) = &request.error_detail {
            record_nack(
                &mut state.status,
                &self.metrics,
                &proxy_name,
                type_url,
                &error.message,
                nack_objects,
            );
        } else if !request.response_nonce.is_empty() {
            state.status.acked = Some(request.version_info.clone());
        }
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        state.checked = None;
        state.subscription =
            if is_wildcard_type(type_url) && (names.is_empty() || names.contains("*")) {
                None
            } else {
                Some(names)
            };
        let first = !state.requested;
        state.requested = true;
        self.send(type_url, first, tx)
            .await
            .map_err(|_| Status::cancelled("stream closed"))?;
        self.publish_status();
        Ok(())
    }

    /// Sends every requested type whose content changed, in dependency order.
    async fn push_changes(&mut self, tx: &Outbox) -> Result<(), ()> {
        for type_url in TYPE_ORDER {
            if self.types.get(type_url).is_some_and(|t| t.requested) {
                self.send(type_url, false, tx).await?;
            }
        }
        self.publish_status();
        Ok(())
    }

    /// Sends `type_url` if its version for this stream's subscription differs from what
    /// was sent (or always, with `force`, for a first request).
    async fn send(&mut self, type_url: &'static str, force: bool, tx: &Outbox) -> Result<(), ()> {
        let Some(view) = self.current_view() else {
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
        self.nonce += 1;
        let nonce = self.nonce.to_string();
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
        self.metrics
            .pushes
            .get_or_create(&TypeLabels {
                r#type: type_name(type_url),
            })
            .inc();
        Ok(())
    }

    /// What this proxy sees in the current generation; `None` before it identified itself.
    fn current_view(&mut self) -> Option<Arc<ViewSnapshot>> {
        let (proxy, options) = self.proxy.as_ref()?;
        Some(view_for(&self.cache, &mut self.view, proxy, options))
    }

    fn publish_status(&self) {
        let Some((proxy, _)) = &self.proxy else {
            return;
        };
        self.registry.update(ProxyStatus {
            stream: self.id,
            node_id: proxy.to_string(),
            protocol: "sotw",
            types: self
                .types
                .iter()
                .map(|(t, s)| (type_name(t), s.status.clone()))
                .collect(),
        });
    }
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

    /// Sends what a new generation changed; an error means the stream is gone.
    fn push_all(&mut self, tx: &Outbox)
    -> impl std::future::Future<Output = Result<(), ()>> + Send;

    /// Called once when the stream ends.
    fn disconnected(&mut self);

    /// The cache the stream serves from.
    fn cache(&self) -> &SnapshotCache;
}

/// Runs one stream until the proxy hangs up, the stream fails, or `shutdown`: requests are
/// handled as they come and every new generation is pushed.
pub(crate) async fn drive<S: XdsStream>(
    mut stream: S,
    mut requests: Streaming<S::Request>,
    tx: Outbox,
    shutdown: CancellationToken,
) {
    let mut generations = stream.cache().subscribe();
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
    stream.disconnected();
}

/// Records a NACK: warns with the proxy and Envoy's error, counts it, and keeps it (with
/// the objects behind the rejected resources) for `proxy-status` and status conditions.
pub(crate) fn record_nack(
    status: &mut TypeStatus,
    metrics: &XdsMetrics,
    proxy: &str,
    type_url: &str,
    message: &str,
    objects: Vec<String>,
) {
    let rejected = status.sent.clone().unwrap_or_default();
    warn!(
        proxy = %proxy,
        r#type = type_name(type_url),
        version = %rejected,
        error = %message,
        "proxy rejected configuration (NACK); it keeps what it accepted before"
    );
    metrics
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

/// Forgets a stream that ended, if it had identified its proxy.
pub(crate) fn record_disconnect(
    id: u64,
    proxy: Option<&ProxyId>,
    registry: &ProxyRegistry,
    metrics: &XdsMetrics,
) {
    if let Some(proxy) = proxy {
        registry.remove(id);
        metrics.connected.dec();
        info!(proxy = %proxy, stream = id, "proxy disconnected");
    }
}

/// Who a stream's proxy is, from the node of its first request.
pub(crate) fn identify(node: Option<&Node>) -> Result<(ProxyId, ProxyOptions), Status> {
    let node =
        node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
    let proxy: ProxyId = node
        .id
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{e}")))?;
    Ok((proxy, options_from_metadata(node.metadata.as_ref())))
}

/// The proxy's view in the current generation, reusing `cached` while the generation holds.
pub(crate) fn view_for(
    cache: &SnapshotCache,
    cached: &mut Option<(u64, Arc<ViewSnapshot>)>,
    proxy: &ProxyId,
    options: &ProxyOptions,
) -> Arc<ViewSnapshot> {
    let generation = cache.current();
    if let Some((number, view)) = cached.as_ref()
        && *number == generation.number
    {
        return view.clone();
    }
    let key: ViewKey = view_key(generation.state(), proxy, options);
    let view = generation.view(&key);
    *cached = Some((generation.number, view.clone()));
    view
}

/// Ports from node metadata (numbers or numeric strings); defaults otherwise.
pub fn options_from_metadata(metadata: Option<&Struct>) -> ProxyOptions {
    let port = |key: &str| -> Option<u16> {
        let value = metadata?.fields.get(key)?.kind.as_ref()?;
        match value {
            Kind::NumberValue(n) => u16::try_from(*n as i64).ok(),
            Kind::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    };
    let defaults = ProxyOptions::default();
    ProxyOptions {
        inbound_port: port(metadata::INBOUND_PORT).unwrap_or(defaults.inbound_port),
        outbound_port: port(metadata::OUTBOUND_PORT).unwrap_or(defaults.outbound_port),
        app_port: port(metadata::APP_PORT),
        gateway_port_offset: port(metadata::GATEWAY_PORT_OFFSET)
            .unwrap_or(defaults.gateway_port_offset),
    }
}
