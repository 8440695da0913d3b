//! The sidecar injection webhook over real TLS: `weir up --webhook-addr` serves it with a
//! certificate from the mesh CA, and curl, trusting only that CA's root, gets the patch
//! back; a malformed body gets an error review, and the process keeps serving. And the
//! leader keeps the webhook configuration's caBundle, against a stand-in API server.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fs, process::Command};

use serde_json::{Value, json};
use weir_tests::{WeirUp, free_port};

fn post(port: u16, ca: &std::path::Path, body: &str) -> (String, Value) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}/inject"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), serde_json::from_str(body).unwrap())
}

#[test]
fn the_webhook_answers_over_tls_with_a_certificate_from_the_mesh_ca() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    fs::create_dir(&config).unwrap();
    let ca_dir = dir.path().join("ca");
    let port = free_port();
    let weir = WeirUp::start(
        &config,
        &[
            "--ca-dir",
            ca_dir.to_str().unwrap(),
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"},
                       "spec": {"containers": [{"name": "web", "image": "web"}]}}
        }
    });
    let (code, reply) = post(port, &ca_dir.join("ca.crt"), &review.to_string());
    assert_eq!(code, "200");
    assert_eq!(reply["response"]["uid"], "u-1");
    assert_eq!(reply["response"]["allowed"], true);
    assert_eq!(reply["response"]["patchType"], "JSONPatch");
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(reply["response"]["patch"].clone()).unwrap();
    let patch: Value = serde_json::from_slice(&bytes.0).unwrap();
    assert!(patch.to_string().contains("weir-proxy"), "{patch}");

    let (code, reply) = post(port, &ca_dir.join("ca.crt"), "{not json");
    assert_eq!(code, "200");
    assert_eq!(reply["response"]["allowed"], false);
    assert!(
        reply["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("AdmissionReview")
    );
    // Still serving, and counting.
    let (_, reply) = post(port, &ca_dir.join("ca.crt"), &review.to_string());
    assert_eq!(reply["response"]["allowed"], true);
    let metrics = weir.metrics();
    assert!(
        metrics.contains("weir_injection_reviews_total{verdict=\"injected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_injection_reviews_total{verdict=\"malformed\"} 1"),
        "{metrics}"
    );
}

#[derive(Clone, Default)]
struct StandIn {
    config: std::sync::Arc<std::sync::Mutex<Value>>,
    calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
}

async fn api(
    axum::extract::State(api): axum::extract::State<StandIn>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    api.calls
        .lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_string(), content_type));
    if uri.path()
        != "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/weir-sidecar-injector"
    {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let mut config = api.config.lock().unwrap();
    if method == axum::http::Method::PATCH {
        let patch: json_patch::Patch = serde_json::from_slice(&body).unwrap();
        if json_patch::patch(&mut config, &patch).is_err() {
            return axum::http::StatusCode::UNPROCESSABLE_ENTITY.into_response();
        }
    }
    axum::Json(config.clone()).into_response()
}

#[tokio::test]
async fn the_leader_keeps_the_webhook_ca_bundle_on_the_mesh_root() {
    let stand_in = StandIn::default();
    *stand_in.config.lock().unwrap() = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "weir-sidecar-injector"},
        "webhooks": [
            {"name": "namespace.inject.weir.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": "weir-xds-server", "namespace": "weir-system", "path": "/inject"}}},
            {"name": "object.inject.weir.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": "weir-xds-server", "namespace": "weir-system", "path": "/inject"}, "caBundle": "c3RhbGU="}},
        ]
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::any(api))
        .with_state(stand_in.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let keeper = tokio::spawn(weir_xds::k8s::keep_ca_bundle(
        client,
        "weir-sidecar-injector".into(),
        "ROOT PEM\n".into(),
        weir_runtime::leader::Leadership::always(),
        shutdown.clone(),
    ));
    let expected = serde_json::to_value(k8s_openapi::ByteString(b"ROOT PEM\n".to_vec())).unwrap();
    let mut done = false;
    for _ in 0..100 {
        let config = stand_in.config.lock().unwrap().clone();
        if config["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["clientConfig"]["caBundle"] == expected)
        {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    keeper.await.unwrap();
    assert!(
        done,
        "caBundle never set: {:?}",
        stand_in.config.lock().unwrap()
    );
    let calls = stand_in.calls.lock().unwrap().clone();
    // One read, one JSON patch of the one configuration it may touch; nothing else.
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, "GET");
    assert_eq!(calls[1].0, "PATCH");
    assert_eq!(calls[1].2, "application/json-patch+json");
    assert!(
        calls
            .iter()
            .all(|c| c.1.ends_with("/weir-sidecar-injector"))
    );
}
