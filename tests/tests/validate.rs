//! `weir validate` and `weir crds`, as a user runs them.

use std::fs;

use weir_tests::{weir, workspace_root};

#[test]
fn the_quickstart_is_valid() {
    let output = weir()
        .arg("validate")
        .arg(workspace_root().join("examples/quickstart"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ok: 32 objects in 9 files"));
}

#[test]
fn every_problem_gets_one_line_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a-syntax.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web\n  ports: [\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("b-policy.yaml"),
        "apiVersion: weir.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 5\n  maxReplicas: 2\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("c-route.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  rules:\n  - backendRefs: [{name: missing, port: 80}]\n",
    )
    .unwrap();
    let output = weir().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let d = dir.path().display();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{d}/a-syntax.yaml: YAML syntax error: "))
            && lines[0].contains("line 4"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!(
            "{d}/b-policy.yaml: document 1: ScalingPolicy shop/web: spec.minReplicas: minReplicas must be less than or equal to maxReplicas"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{d}/c-route.yaml: document 1: HTTPRoute shop/web: spec.rules[0].backendRefs[0]: backend Service shop/missing does not exist"
        )
    );
}

#[test]
fn an_empty_directory_is_not_silently_valid() {
    let dir = tempfile::tempdir().unwrap();
    let output = weir().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no manifests"));
}

#[test]
fn weir_crds_prints_the_checked_in_crds() {
    let output = weir().arg("crds").output().unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let mut expected = String::new();
    for name in [
        "scalingpolicies",
        "nodepools",
        "trafficpolicies",
        "meshpolicies",
        "gatewayparameters",
    ] {
        expected.push_str("---\n");
        expected.push_str(
            &fs::read_to_string(workspace_root().join(format!("crds/yaml/{name}.weir.io.yaml")))
                .unwrap(),
        );
    }
    assert!(printed == expected, "weir crds differs from crds/yaml/");
}

#[test]
fn bad_metric_samples_are_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("samples.yaml"),
        "apiVersion: weir.io/v1alpha1\nkind: MetricSamples\nmetadata: {name: load, namespace: shop}\nsamples:\n  rps: {total: lots}\n",
    )
    .unwrap();
    let output = weir().arg("validate").arg(dir.path()).output().unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("samples.yaml: document 1: MetricSamples: samples.rps.total"),
        "{stdout}"
    );
}
