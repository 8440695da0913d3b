//! The API server: TLS (rustls), HTTP/1.1 and HTTP/2, authentication and authorization,
//! then the metrics APIs from the [`Engine`].

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use axum::body::Body;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    api::{self, ApiError, Route},
    auth::{Attributes, Authenticator, PeerIdentity},
    engine::Engine,
    resource_wire::FieldSelector,
    selector::Selector,
};

/// Who may ask.
#[derive(Clone, Debug)]
pub enum Access {
    /// Anyone (local mode, `--insecure-skip-auth`).
    Open,
    /// Authenticated and authorized callers only.
    Secured(Arc<Authenticator>),
}

/// The serving certificate and key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: PrivateKeyDer<'static>,
    /// Where the certificate is, when it is in a file (for clients to trust).
    pub cert_file: Option<PathBuf>,
    /// Where its key is, when it is in a file.
    pub key_file: Option<PathBuf>,
}

impl TlsIdentity {
    /// The identity from `cert_file` and `key_file`; else from `cert_dir`'s
    /// `apiserver.crt`/`apiserver.key`; else a new self-signed certificate for `hosts`,
    /// written to `cert_dir` when given.
    pub fn load_or_generate(
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
        cert_dir: Option<&Path>,
        hosts: &[String],
    ) -> Result<TlsIdentity, String> {
        let read = |cert: &Path, key: &Path| -> Result<TlsIdentity, String> {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("--tls-cert-file {}: {e:?}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--tls-cert-file {}: {e:?}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "--tls-cert-file {}: no certificate",
                    cert.display()
                ));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--tls-private-key-file {}: {e:?}", key.display()))?;
            Ok(TlsIdentity {
                chain,
                key: key_der,
                cert_file: Some(cert.to_path_buf()),
                key_file: Some(key.to_path_buf()),
            })
        };
        match (cert_file, key_file) {
            (Some(cert), Some(key)) => return read(cert, key),
            (None, None) => {}
            _ => {
                return Err("--tls-cert-file and --tls-private-key-file go together".to_string());
            }
        }
        if let Some(dir) = cert_dir {
            let (cert, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
            if cert.exists() && key.exists() {
                return read(&cert, &key);
            }
        }
        let generated = rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|e| format!("generating a self-signed certificate: {e}"))?;
        let cert_pem = generated.cert.pem();
        let key_pem = generated.signing_key.serialize_pem();
        let mut cert_path = None;
        let mut key_path = None;
        if let Some(dir) = cert_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--cert-dir {}: {e}", dir.display()))?;
            let (cert, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
            std::fs::write(&cert, &cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
            std::fs::write(&key, &key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
            cert_path = Some(cert);
            key_path = Some(key);
        }
        Ok(TlsIdentity {
            chain: vec![generated.cert.der().clone()],
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| format!("self-signed key: {e:?}"))?,
            cert_file: cert_path,
            key_file: key_path,
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// The server's metrics.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl ServerMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &mut Registry) -> ServerMetrics {
        let m = ServerMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
        };
        registry.register(
            "weir_metrics_adapter_requests",
            "Requests to the metrics APIs, by route and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "weir_metrics_adapter_request_duration_seconds",
            "Time to answer a request to the metrics APIs",
            m.duration.clone(),
        );
        m
    }
}

/// The API server's state.
#[derive(Debug)]
pub struct Server {
    engine: Arc<Engine>,
    access: Access,
    metrics: ServerMetrics,
}

type Answer = Result<Value, ApiError>;

/// A successful answer: a JSON tree, or JSON already encoded (resource metrics lists,
/// serialized straight from borrowed data).
enum Reply {
    Tree(Value),
    Encoded(Vec<u8>),
}

impl Server {
    /// A server answering from `engine`.
    pub fn new(engine: Arc<Engine>, access: Access, metrics: ServerMetrics) -> Server {
        Server {
            engine,
            access,
            metrics,
        }
    }

    /// The TLS configuration: `identity`, ALPN h2 and http/1.1, and client certificates
    /// requested (not required) from the configured CAs in secured mode.
    pub fn tls_config(
        &self,
        certificate: &Arc<weir_runtime::tls::CertificateSlot>,
    ) -> Result<rustls::ServerConfig, String> {
        let verifier = match &self.access {
            Access::Secured(auth) if !auth.client_roots().is_empty() => {
                Some(crate::auth::verifier(auth.client_roots())?)
            }
            _ => None,
        };
        certificate.server_config(verifier)
    }

    /// Answers one request.
    pub async fn handle(&self, peer: &PeerIdentity, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let (parts, _) = request.into_parts();
        let raw_path = parts.uri.path();
        let path = percent_encoding::percent_decode_str(raw_path)
            .decode_utf8()
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| raw_path.to_string());
        let query = parts.uri.query().unwrap_or_default();
        let (label, answer) = self
            .answer(peer, &parts.method, &parts.headers, &path, query)
            .await;
        let (status, body) = match answer {
            Ok(Reply::Encoded(bytes)) => (StatusCode::OK, Ok(bytes)),
            Ok(Reply::Tree(body)) => (StatusCode::OK, Err(body)),
            Err(e) => {
                if e.code >= 500 {
                    warn!(path = %path, error = %e.message, "metrics request failed");
                } else {
                    debug!(path = %path, code = e.code, error = %e.message, "metrics request refused");
                }
                (
                    StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    Err(e.to_status()),
                )
            }
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: label,
                code: status.as_u16(),
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&RouteLabels { route: label })
            .observe(started.elapsed().as_secs_f64());
        let bytes = body.unwrap_or_else(|tree| serde_json::to_vec(&tree).unwrap_or_default());
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }

    async fn answer(
        &self,
        peer: &PeerIdentity,
        method: &Method,
        headers: &http::HeaderMap,
        path: &str,
        query: &str,
    ) -> (&'static str, Result<Reply, ApiError>) {
        match path.trim_end_matches('/') {
            "/healthz" | "/livez" => {
                return ("health", Ok(Reply::Tree(Value::String("ok".into()))));
            }
            "/readyz" => {
                return (
                    "health",
                    if self.engine.discovered() {
                        Ok(Reply::Tree(Value::String("ok".into())))
                    } else {
                        Err(ApiError::unavailable(
                            "series discovery has not completed yet",
                        ))
                    },
                );
            }
            _ => {}
        }
        let route = api::route(path);
        let label = match &route {
            Ok(Route::Custom(_)) => "custom",
            Ok(Route::External { .. }) => "external",
            Ok(Route::Resource(p)) if p.pods => "resource_pods",
            Ok(Route::Resource(_)) => "resource_nodes",
            Ok(_) => "discovery",
            Err(_) if path.starts_with("/openapi") || path == "/version" => "openapi",
            Err(_) => "other",
        };
        if method != Method::GET && method != Method::HEAD {
            return (
                label,
                Err(ApiError {
                    code: 405,
                    reason: "MethodNotAllowed",
                    message: format!("the metrics APIs only serve GET, not {method}"),
                }),
            );
        }
        if let Access::Secured(auth) = &self.access {
            let user = match auth.authenticate(peer, headers).await {
                Ok(user) => user,
                Err(e) => return (label, Err(e)),
            };
            if let Err(e) = auth.authorize(&user, &attributes(&route, path)).await {
                return (label, Err(e));
            }
        }
        (label, self.dispatch(route, path, query).await)
    }

    async fn dispatch(
        &self,
        route: Result<Route, ApiError>,
        path: &str,
        query: &str,
    ) -> Result<Reply, ApiError> {
        let route = match route {
            Ok(route) => route,
            Err(e) => {
                return match path.trim_end_matches('/') {
                    "/openapi/v2" => Ok(api::openapi_v2()),
                    "/openapi/v3" => Ok(api::openapi_v3_root()),
                    "/version" => Ok(serde_json::json!({
                        "major": "1", "minor": "0",
                        "gitVersion": concat!("weir-v", env!("CARGO_PKG_VERSION")),
                    })),
                    p => match p
                        .strip_prefix("/openapi/v3/apis/")
                        .and_then(|gv| gv.split_once('/'))
                    {
                        Some((g, v)) => api::openapi_v3(g, v).ok_or(e),
                        None => Err(e),
                    },
                }
                .map(Reply::Tree);
            }
        };
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let selector = |name: &str| -> Result<Selector, ApiError> {
            match params.iter().find(|(k, _)| k == name) {
                Some((_, v)) => {
                    Selector::parse(v).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
                }
                None => Ok(Selector::default()),
            }
        };
        let serves_resource = self.engine.resource_rules().is_some();
        let resource_not_served = || {
            ApiError::not_found(
                "the resource metrics API (metrics.k8s.io) is not served: the adapter's rules \
                 have no resourceRules",
            )
        };
        let tree: Answer = match route {
            Route::Groups => Ok(api::group_list(serves_resource)),
            Route::Group(api::RESOURCE_GROUP) | Route::Resources(api::RESOURCE_GROUP, _)
                if !serves_resource =>
            {
                Err(resource_not_served())
            }
            Route::Group(g) => Ok(api::group(g)),
            Route::Resources(g, v) => Ok(api::resource_list(g, &v, &self.engine.index())),
            Route::Custom(path) => {
                let labels = selector("labelSelector")?;
                let metric_labels = selector("metricLabelSelector")?;
                let values = self.engine.custom(&path, &labels, &metric_labels).await?;
                let echoed = (!metric_labels.is_empty())
                    .then(|| serde_json::to_value(metric_labels.to_label_selector()).ok())
                    .flatten();
                Ok(api::metric_value_list(
                    &path.version,
                    &path.metric,
                    echoed.as_ref(),
                    &values,
                ))
            }
            Route::External { namespace, metric } => {
                let labels = selector("labelSelector")?;
                let values = self.engine.external(&namespace, &metric, &labels).await?;
                Ok(api::external_value_list(&metric, &values))
            }
            Route::Resource(path) => {
                let labels = selector("labelSelector")?;
                let fields = match params.iter().find(|(k, _)| k == "fieldSelector") {
                    Some((_, v)) => FieldSelector::parse(v)
                        .map_err(|e| ApiError::bad_request(format!("fieldSelector: {e}")))?,
                    None => FieldSelector::default(),
                };
                return self
                    .engine
                    .resource_metrics(&path, &labels, &fields)
                    .await
                    .map(Reply::Encoded);
            }
        };
        tree.map(Reply::Tree)
    }
}

/// What a request does, for the SubjectAccessReview (as the API server's request-info
/// resolver would describe it).
fn attributes(route: &Result<Route, ApiError>, path: &str) -> Attributes {
    match route {
        Ok(Route::Custom(p)) => Attributes::Resource {
            group: api::CUSTOM_GROUP.into(),
            version: p.version.clone(),
            resource: p.resource.clone(),
            subresource: p.metric.clone(),
            namespace: p.namespace.clone().unwrap_or_default(),
            name: p.name.clone(),
            verb: "get".into(),
        },
        Ok(Route::Resource(p)) => Attributes::Resource {
            group: api::RESOURCE_GROUP.into(),
            version: "v1beta1".into(),
            resource: p.resource().into(),
            subresource: String::new(),
            namespace: p.namespace.clone().unwrap_or_default(),
            name: p.name.clone().unwrap_or_default(),
            verb: if p.name.is_some() { "get" } else { "list" }.into(),
        },
        Ok(Route::External { namespace, metric }) => Attributes::Resource {
            group: api::EXTERNAL_GROUP.into(),
            version: "v1beta1".into(),
            resource: metric.clone(),
            subresource: String::new(),
            namespace: namespace.clone(),
            name: String::new(),
            verb: "list".into(),
        },
        _ => Attributes::NonResource {
            path: path.to_string(),
        },
    }
}

/// Serves `server` on `listener` until `shutdown`, then lets open connections finish
/// their requests (up to 10 s). Each connection's client certificate, if any, is its
/// caller's identity (front proxy or client certificate authentication).
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    server: Arc<Server>,
    shutdown: CancellationToken,
) {
    info!(addr = ?listener.local_addr().ok(), "metrics adapter serving the metrics APIs");
    let make_service = move |session: &rustls::ServerConnection, _remote| {
        let peer = match (&server.access, session.peer_certificates()) {
            (Access::Secured(auth), Some(chain)) => auth.peer(chain),
            _ => PeerIdentity::default(),
        };
        let server = server.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let server = server.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(server.handle(&peer, request).await) }
        })
    };
    weir_runtime::tls::serve(listener, tls, make_service, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resource metrics requests are reviewed as the API server would describe them:
    /// `list` or `get` on `pods`/`nodes` of `metrics.k8s.io`, in the request's namespace.
    #[test]
    fn resource_metrics_attributes() {
        let review = |path: &str| attributes(&api::route(path), path);
        let Attributes::Resource {
            group,
            resource,
            namespace,
            name,
            verb,
            ..
        } = review("/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1")
        else {
            panic!("a resource request")
        };
        assert_eq!(
            (
                group.as_str(),
                resource.as_str(),
                namespace.as_str(),
                name.as_str(),
                verb.as_str()
            ),
            ("metrics.k8s.io", "pods", "shop", "web-1", "get")
        );
        let Attributes::Resource {
            resource,
            namespace,
            verb,
            ..
        } = review("/apis/metrics.k8s.io/v1beta1/nodes")
        else {
            panic!("a resource request")
        };
        assert_eq!(
            (resource.as_str(), namespace.as_str(), verb.as_str()),
            ("nodes", "", "list")
        );
        assert!(matches!(
            review("/apis/metrics.k8s.io/v1beta1"),
            Attributes::NonResource { .. }
        ));
    }
}
