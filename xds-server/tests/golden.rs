//! Golden tests of the translator: manifests in (`testdata/in/<case>.yaml`, or a directory),
//! one JSON file per proxy out (`testdata/out/<case>/<node-id>.json`).
//! Regenerate with `WEIR_BLESS=1 cargo test -p weir-xds --test golden`, then review the diff.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

use std::{fs, path::Path};

use weir_store::{DirectoryIndex, Severity};
use weir_xds::{
    status::compute_status,
    translate::{ProxyId, ProxyOptions, translate},
};

/// Loads a case: a YAML file whose first line lists the proxies (`# proxies: a b`), or a
/// directory of manifests with that line in `testdata/in/<case>.proxies`.
fn load(name: &str, input: &Path) -> (weir_store::ClusterState, Vec<(ProxyId, bool)>) {
    let mut index = DirectoryIndex::default();
    let header = if input.is_dir() {
        for entry in fs::read_dir(input).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                index.load_file(
                    &path.display().to_string(),
                    &fs::read_to_string(&path).unwrap(),
                );
            }
        }
        let list =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/testdata/in/{name}.proxies"));
        fs::read_to_string(list).unwrap()
    } else {
        let text = fs::read_to_string(input).unwrap();
        index.load_file(&input.display().to_string(), &text);
        text
    };
    let (state, problems) = index.state();
    let errors: Vec<_> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "{} has invalid objects: {errors:#?}",
        input.display()
    );
    let proxies = header
        .lines()
        .find_map(|l| l.strip_prefix("# proxies:"))
        .unwrap_or_else(|| panic!("{}: no '# proxies:' line", input.display()))
        .split_whitespace()
        // `<node id>+capture`: a sidecar whose bootstrap says its traffic is captured.
        .map(|id| match id.strip_suffix("+capture") {
            Some(id) => (id.parse().unwrap(), true),
            None => (id.parse().unwrap(), false),
        })
        .collect();
    (state, proxies)
}

fn check_case(name: &str, input: &Path) {
    let (state, proxies) = load(name, input);
    let mut outputs: Vec<(String, String)> = proxies
        .iter()
        .map(|(proxy, capture)| {
            let options = ProxyOptions {
                capture: *capture,
                ..ProxyOptions::default()
            };
            let config = translate(&state, proxy, &options);
            let suffix = if *capture { "+capture" } else { "" };
            (
                format!("{proxy}{suffix}.json"),
                serde_json::to_string_pretty(&config).unwrap() + "\n",
            )
        })
        .collect();
    let status = compute_status(&state, &[]);
    outputs.push((
        "status.json".into(),
        serde_json::to_string_pretty(&status).unwrap() + "\n",
    ));
    check_outputs(name, input, outputs);
}

fn check_outputs(name: &str, input: &Path, outputs: Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    for (file, actual) in outputs {
        let path = root.join("out").join(name).join(file);
        if bless {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &actual).unwrap();
        }
        let expected = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "{} differs from the translation of {}; run WEIR_BLESS=1 cargo test -p weir-xds --test golden and review the diff",
            path.display(),
            input.display()
        );
    }
}

#[test]
fn quickstart() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    check_case("quickstart", &input);
}

#[test]
fn sidecar_capture() {
    check_case(
        "sidecar-capture",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/in/sidecar-capture.yaml"),
    );
}

#[test]
fn gateway_matching() {
    check_case(
        "gateway-matching",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/in/gateway-matching.yaml"),
    );
}

#[test]
fn sidecar_mesh() {
    check_case(
        "sidecar-mesh",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/in/sidecar-mesh.yaml"),
    );
}

#[test]
fn envoy_refusals() {
    check_case(
        "envoy-refusals",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/in/envoy-refusals.yaml"),
    );
}

#[test]
fn sidecar_scoped() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/in/sidecar-scoped.yaml");
    check_case("sidecar-scoped", &input);
    // What the golden files say, stated: 2 of 50 Services, plus the canary's backend.
    let (state, _) = load("sidecar-scoped", &input);
    let client = translate(
        &state,
        &"sidecar~client-0.shop".parse().unwrap(),
        &ProxyOptions::default(),
    );
    let names = |c: &weir_xds::model::ProxyConfig| -> Vec<String> {
        c.clusters.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(
        names(&client),
        [
            "shop/svc-3/80",
            "shop/svc-40/80",
            "shop/svc-7/80",
            "inbound/8080"
        ]
    );
    let outbound = client
        .route_tables
        .iter()
        .find(|t| t.name == "outbound")
        .unwrap();
    let hosts: Vec<&str> = outbound
        .virtual_hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(hosts, ["shop/svc-3/80", "shop/svc-7/80"]);
    assert_eq!(client.load_assignments.len(), 3);
}
