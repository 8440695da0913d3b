//! The admin endpoint every long-running mode serves: `/healthz` (the process is alive),
//! `/readyz` (its sources have synced), `/metrics` (OpenMetrics text), and debug views of
//! the current configuration problems, store sizes and MeshPolicy modes.
//!
//! Components add their own debug views (`/debug/proxies`, `/debug/nodes`, ...) as an
//! [`axum::Router`] handed to [`spawn`]; this module knows none of them.

use std::{net::SocketAddr, sync::Arc};

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
}

impl AdminState {
    /// The state of an in-cluster component: configuration problems go to object status
    /// and events there, so the problems view stays empty.
    pub fn in_cluster(
        registry: Registry,
        ready: watch::Receiver<bool>,
        state: watch::Receiver<ClusterState>,
    ) -> AdminState {
        AdminState {
            registry: Arc::new(registry),
            ready,
            problems: watch::channel(Vec::new()).1,
            state,
        }
    }
}

/// Serves `state`, plus the components' `routes`, on `listener` as a task of `tasks`
/// until `shutdown`; a failure is logged.
pub fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    listener: TcpListener,
    state: AdminState,
    routes: Router,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        if let Err(e) = serve(listener, state, routes, shutdown).await {
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
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/problems", get(problems))
        .route("/debug/objects", get(objects))
        .route("/debug/mesh", get(mesh))
        .with_state(state)
        .merge(routes);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
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

/// Every MeshPolicy's spec mode and status, as this process's stores hold them (the
/// mesh-TLS controller writes the status; the xds-server pushes the mode it says).
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
