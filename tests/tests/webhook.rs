//! The sidecar injection webhook over real TLS: `weir up --webhook-addr` serves it with a
//! certificate from the mesh CA, and curl, trusting only that CA's root, gets the patch
//! back; a malformed body gets an error review, and the process keeps serving.

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
