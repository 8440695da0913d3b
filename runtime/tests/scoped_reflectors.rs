//! Reflectors scoped to namespaces, against a stand-in API server that serves Secrets per
//! namespace and forbids the cluster-wide list (as a Role per namespace would): the store
//! fills from the namespaces named and no other, the kind counts as synced once each has
//! been listed, and no cluster-wide request is ever made.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_runtime::sources::kube::{Scopes, spawn_reflectors};
use weir_store::{Kind, StateWriter};

type Requests = Arc<Mutex<Vec<String>>>;

async fn api(State(requests): State<Requests>, uri: Uri) -> Response {
    requests.lock().unwrap().push(uri.to_string());
    let path = uri.path();
    let Some(namespace) = path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.strip_suffix("/secrets"))
    else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Forbidden", "code": 403, "message": "secrets is forbidden at the cluster scope"})),
        )
            .into_response();
    };
    if uri.query().unwrap_or_default().contains("watch=true") {
        // An open watch with nothing to report.
        return axum::body::Body::from_stream(futures::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >())
        .into_response();
    }
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}})
    };
    axum::Json(json!({
        "apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "1"},
        "items": [secret("tls"), secret("other")],
    }))
    .into_response()
}

#[tokio::test]
async fn secrets_are_read_only_in_the_namespaces_named() {
    let requests = Requests::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(api))
        .with_state(requests.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();

    let writer = Arc::new(StateWriter::default());
    let (synced_tx, mut synced) = watch::channel(BTreeSet::new());
    let shutdown = CancellationToken::new();
    let scopes = Scopes::default().namespaced(Kind::Secret, ["shop".into(), "edge".into()]);
    let mut tasks = spawn_reflectors(
        client,
        writer.clone(),
        synced_tx,
        shutdown.clone(),
        &[Kind::Secret],
        &scopes,
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        synced.wait_for(|kinds| kinds.contains(&Kind::Secret)),
    )
    .await
    .expect("Secrets synced once both namespaces were listed")
    .unwrap();
    let names: Vec<String> = writer
        .current()
        .secrets
        .iter()
        .map(|(k, _)| format!("{}/{}", k.namespace.as_deref().unwrap(), k.name))
        .collect();
    assert_eq!(names, ["edge/other", "edge/tls", "shop/other", "shop/tls"]);
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("/api/v1/namespaces/shop/secrets")
                || r.starts_with("/api/v1/namespaces/edge/secrets")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn a_kind_scoped_to_no_namespace_is_synced_empty_without_a_request() {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let writer = Arc::new(StateWriter::default());
    let (synced_tx, synced) = watch::channel(BTreeSet::new());
    let shutdown = CancellationToken::new();
    let tasks = spawn_reflectors(
        client,
        writer.clone(),
        synced_tx,
        shutdown,
        &[Kind::Secret],
        &Scopes::default().namespaced(Kind::Secret, []),
    );
    assert!(tasks.is_empty());
    assert!(synced.borrow().contains(&Kind::Secret));
    assert_eq!(writer.current().secrets.len(), 0);
}
