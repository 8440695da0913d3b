//! Golden tests of the sidecar injector: a Pod (`testdata/inject/<case>.yaml`) sent in an
//! AdmissionReview → the response's verdict and JSONPatch (`testdata/inject/out/<case>.json`).
//! Every patch must apply to the pod, give a Pod that k8s-openapi reads, hold the security
//! and resource settings the chart holds Weir's own pods to, and leave nothing to do on a
//! second pass. Regenerate with `WEIR_BLESS=1 cargo test -p weir-xds --test inject`.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::{fs, path::Path};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use weir_xds::inject::review::{Verdict, review};

use common::inject_config as config;

fn admission_review(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
        }
    }))
    .unwrap()
}

/// The response's patch, decoded from base64 (how the API server reads Go `[]byte`).
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    match &response["patch"] {
        Value::Null => None,
        Value::String(_) => {
            let bytes: k8s_openapi::ByteString =
                serde_json::from_value(response["patch"].clone()).unwrap();
            Some(serde_json::from_slice(&bytes.0).unwrap())
        }
        other => panic!("patch is neither base64 nor absent: {other}"),
    }
}

/// What a golden file holds: the verdict, the message of a refusal, the patch.
fn summary(reply: &Value, verdict: &Verdict) -> Value {
    let response = &reply["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(reply["kind"], "AdmissionReview");
    let mut out = json!({"verdict": verdict.label(), "allowed": response["allowed"]});
    if let Some(message) = response["status"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
    {
        out["message"] = json!(message);
    }
    if let Some(patch) = patch_of(response) {
        out["patch"] = serde_json::to_value(patch).unwrap();
    }
    out
}

fn check_container(container: &Container, pod: &str) {
    let name = &container.name;
    let security = container
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{pod}/{name}: no securityContext"));
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "{pod}/{name}"
    );
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "{pod}/{name}"
    );
    assert_eq!(security.privileged, Some(false), "{pod}/{name}");
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(
        capabilities.drop.as_deref(),
        Some(&["ALL".to_string()][..]),
        "{pod}/{name}"
    );
    let added = capabilities.add.clone().unwrap_or_default();
    if name == "weir-capture" {
        assert_eq!(
            added,
            ["NET_ADMIN", "NET_RAW"],
            "{pod}/{name}: NET_ADMIN and NET_RAW only"
        );
        assert_eq!(security.run_as_user, Some(0));
    } else {
        assert!(added.is_empty(), "{pod}/{name} adds {added:?}");
        assert_eq!(security.run_as_non_root, Some(true), "{pod}/{name}");
        assert_eq!(security.run_as_user, Some(1337), "{pod}/{name}");
    }
    let resources = container.resources.as_ref().unwrap();
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory")),
        "{pod}/{name}: no memory request"
    );
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|r| r.contains_key("memory")),
        "{pod}/{name}: no memory limit"
    );
}

fn check_injected(patched: &Value, case: &str) {
    let pod: Pod = serde_json::from_value(patched.clone())
        .unwrap_or_else(|e| panic!("{case}: the patched pod is not a Pod: {e}"));
    let spec = pod.spec.as_ref().unwrap();
    let init = spec.init_containers.as_deref().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["weir-capture", "weir-bootstrap", "weir-agent", "weir-proxy"],
        "{case}"
    );
    for container in &init[..4] {
        check_container(container, case);
    }
    for sidecar in &init[2..4] {
        assert_eq!(
            sidecar.restart_policy.as_deref(),
            Some("Always"),
            "{case}: {} is a native sidecar",
            sidecar.name
        );
    }
    // The agent alone holds the pod's token, and shares its socket's volume with Envoy.
    let mounts = |c: &k8s_openapi::api::core::v1::Container| -> Vec<String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect()
    };
    assert!(
        mounts(&init[2]).contains(&"weir-token".to_string()),
        "{case}"
    );
    assert!(
        !mounts(&init[3]).contains(&"weir-token".to_string()),
        "{case}"
    );
    assert!(
        mounts(&init[3]).contains(&"weir-agent".to_string()),
        "{case}"
    );
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("weir.io/sidecar")
            .map(String::as_str),
        Some("true")
    );
    let volumes = spec.volumes.as_deref().unwrap();
    let token = volumes.iter().find(|v| v.name == "weir-token").unwrap();
    let source = &token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0];
    assert_eq!(
        source
            .service_account_token
            .as_ref()
            .unwrap()
            .audience
            .as_deref(),
        Some("weir")
    );
    // No application probe still points at an application port.
    for container in &spec.containers {
        for probe in [
            &container.readiness_probe,
            &container.liveness_probe,
            &container.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                probe.tcp_socket.is_none() && probe.grpc.is_none(),
                "{case}: {probe:?}"
            );
            if let Some(http) = &probe.http_get {
                assert_eq!(
                    http.port,
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(15021),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn injector_golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/inject");
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "{cases:?}");
    for path in cases {
        let case = path.file_stem().unwrap().to_string_lossy().into_owned();
        let pod: Value = serde_yaml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let (reply, verdict) = review(&admission_review(&pod), &config());
        let actual = summary(&reply, &verdict);
        let golden = dir.join(format!("out/{case}.json"));
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if bless {
            fs::create_dir_all(golden.parent().unwrap()).unwrap();
            fs::write(&golden, &text).unwrap();
        } else {
            let expected = fs::read_to_string(&golden)
                .unwrap_or_else(|_| panic!("{} missing; run with WEIR_BLESS=1", golden.display()));
            assert_eq!(
                text, expected,
                "{case}: the response changed (WEIR_BLESS=1 to accept)"
            );
        }
        if let Some(patch) = patch_of(&reply["response"]) {
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch)
                .unwrap_or_else(|e| panic!("{case}: the patch does not apply: {e}"));
            check_injected(&patched, &case);
            // A second pass (reinvocation) changes nothing.
            let (again, verdict) = review(&admission_review(&patched), &config());
            assert_eq!(verdict, Verdict::Skipped("already-injected"), "{case}");
            assert!(
                patch_of(&again["response"]).is_none(),
                "{case}: patched twice"
            );
        }
    }
}

#[test]
fn malformed_reviews_get_an_error_not_a_panic() {
    let bodies: [&[u8]; 5] = [
        b"",
        b"not json",
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}"#,
        br#"[1, 2, 3]"#,
    ];
    for body in bodies {
        let (reply, verdict) = review(body, &config());
        assert!(matches!(verdict, Verdict::Malformed(_)), "{verdict:?}");
        assert_eq!(reply["response"]["allowed"], false);
        let message = reply["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("AdmissionReview"), "{message}");
    }
    // Not a pod creation: allowed untouched.
    let mut review_body: Value =
        serde_json::from_slice(&admission_review(&json!({"metadata": {"name": "x"}}))).unwrap();
    review_body["request"]["operation"] = json!("UPDATE");
    let (reply, verdict) = review(&serde_json::to_vec(&review_body).unwrap(), &config());
    assert_eq!(verdict, Verdict::Ignored);
    assert_eq!(reply["response"]["allowed"], true);
    // A pod without containers is refused with the field named.
    let (reply, _) = review(
        &admission_review(&json!({"metadata": {"name": "x"}, "spec": {}})),
        &config(),
    );
    assert_eq!(reply["response"]["allowed"], false);
    assert!(
        reply["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers")
    );
}
