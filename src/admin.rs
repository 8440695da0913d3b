//! The admin endpoint every long-running mode serves: `/healthz` (the process is alive),
//! `/readyz` (its sources have synced), `/metrics` (OpenMetrics text), and debug views of
//! the current configuration problems and store sizes.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use weir_store::{ClusterState, Kind, Problem};
use weir_xds::registry::ProxyRegistry;

/// What the admin endpoint reports on.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// Whether the process is ready to serve (its sources have synced).
    pub ready: watch::Receiver<bool>,
    /// Current configuration problems.
    pub problems: watch::Receiver<Vec<Problem>>,
    /// The published cluster state.
    pub state: watch::Receiver<ClusterState>,
    /// Connected proxies, where this process serves xDS.
    pub proxies: Option<Arc<ProxyRegistry>>,
    /// The node autoscaler's last plan, where this process runs it.
    pub node_plan: Option<NodePlan>,
}

/// The node autoscaler's last plan, shared with the admin endpoint.
pub type NodePlan = Arc<std::sync::Mutex<Option<weir_controllers::node_autoscaler::Plan>>>;

impl AdminState {
    /// The state of an in-cluster component: configuration problems go to object status
    /// and events there, so the problems view stays empty.
    pub fn in_cluster(
        registry: Registry,
        ready: watch::Receiver<bool>,
        state: watch::Receiver<ClusterState>,
        proxies: Option<Arc<ProxyRegistry>>,
    ) -> AdminState {
        AdminState {
            registry: Arc::new(registry),
            ready,
            problems: watch::channel(Vec::new()).1,
            state,
            proxies,
            node_plan: None,
        }
    }
}

/// Serves `state` on `listener` as a task of `tasks` until `shutdown`; a failure is logged.
pub fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        if let Err(e) = serve(listener, state, shutdown).await {
            tracing::warn!(error = %e, "admin endpoint failed");
        }
    });
}

/// Binds the admin address (separately from serving, so a busy port fails at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown`, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/problems", get(problems))
        .route("/debug/objects", get(objects))
        .route("/debug/proxies", get(proxies))
        .route("/debug/status", get(gateway_status))
        .route("/debug/nodes", get(node_plan))
        .route("/debug/mesh", get(mesh))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn node_plan(State(state): State<AdminState>) -> Response {
    let plan = state
        .node_plan
        .as_ref()
        .and_then(|p| p.lock().ok().and_then(|p| p.clone()));
    match plan {
        Some(plan) => Json(plan).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no node autoscaler plan yet (it runs in weir up and weir controllers)\n",
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: sources have not synced\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn problems(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let problems = state.problems.borrow().clone();
    let entries: Vec<_> = problems
        .iter()
        .map(|p| json!({"severity": p.severity, "origin": p.origin, "object": p.object, "field": p.field, "message": p.message, "text": p.to_string()}))
        .collect();
    Json(json!({ "problems": entries }))
}

async fn objects(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let snapshot = state.state.borrow().clone();
    let counts: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(snapshot.count(*k))))
        .collect();
    Json(json!({ "objects": counts }))
}

/// Gateway API status of every Gateway and HTTPRoute (what a cluster would hold in their
/// `status`), with rejections by proxies attributed to the objects behind them.
async fn gateway_status(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let snapshot = state.state.borrow().clone();
    let rejections = state
        .proxies
        .as_ref()
        .map(|registry| weir_xds::status::current_rejections(&registry.list()))
        .unwrap_or_default();
    Json(json!(weir_xds::status::compute_status(
        &snapshot,
        &rejections
    )))
}

/// Every MeshPolicy's spec mode and status (the mesh-TLS controller's decision).
async fn mesh(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let snapshot = state.state.borrow().clone();
    let policies: Vec<serde_json::Value> = snapshot
        .mesh_policies
        .iter()
        .map(|(key, p)| {
            json!({
                "policy": key.to_string(),
                "mode": p.spec.mtls.mode,
                "status": p.status,
            })
        })
        .collect();
    Json(json!({ "policies": policies }))
}

async fn proxies(State(state): State<AdminState>) -> Response {
    match &state.proxies {
        Some(registry) => Json(json!({ "proxies": registry.list() })).into_response(),
        None => (StatusCode::NOT_FOUND, "this process does not serve xDS\n").into_response(),
    }
}

/// A plain HTTP/1.1 GET against an admin endpoint (loopback, no TLS), for the commands that
/// ask a running Weir and for tests: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        decode_chunked(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn decode_chunked(mut rest: &str) -> std::io::Result<String> {
    let mut body = String::new();
    loop {
        let (size_line, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| std::io::Error::other("truncated chunked body"))?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| std::io::Error::other("truncated chunk"))?;
        body.push_str(chunk);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            super::decode_chunked("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n").unwrap(),
            "hello, world"
        );
        assert!(super::decode_chunked("5\r\nhel").is_err());
    }
}
