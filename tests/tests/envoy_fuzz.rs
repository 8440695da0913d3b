//! Generated valid configurations, live-edited into `weir up`, must all be accepted by a
//! real Envoy gateway (state of the world) and a real sidecar (delta): no NACK, ever, and
//! each configuration's marker route served. The generator (`weir_tests::fuzz`) is seeded;
//! a failure prints its seed and the configuration.
//!
//! `WEIR_FUZZ_SEEDS` (default 200) sets how many configurations a run checks and
//! `WEIR_FUZZ_FIRST_SEED` (default 1) where it starts; reproduce one with
//! `WEIR_FUZZ_FIRST_SEED=<seed> WEIR_FUZZ_SEEDS=1`.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fs, net::SocketAddr, time::Duration};

use serde_json::Value;
use weir_store::{DirectoryIndex, Severity};
use weir_tests::{
    WeirUp,
    envoy::{Backend, GatewayAndSidecar, request},
    eventually, free_port, fuzz,
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What every configuration holds: Weir's GatewayClass, the Gateway the gateway proxy
/// serves, and a marker unique to the seed (a Service `seed-<n>` on the marker backend and
/// a route to it), whose arrival at both proxies says they took this configuration.
fn base(gateway_port: u16, marker: &Backend, seed: u64) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\nspec: {{controllerName: weir.io/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
         spec: {{gatewayClassName: weir, listeners: [{{name: http, port: {gateway_port}, protocol: HTTP}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: seed-{seed}, namespace: shop}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: seed-{seed}, namespace: shop, labels: {{kubernetes.io/service-name: seed-{seed}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: marker, namespace: shop}}\n\
         spec: {{parentRefs: [{{name: edge}}], hostnames: [marker.test], rules: [{{matches: [{{path: {{type: Exact, value: /seed-{seed}}}}}], backendRefs: [{{name: seed-{seed}, port: 80}}]}}]}}\n---\n",
        marker.port
    )
}

/// The Services of a generated configuration: (name, namespace).
fn generated_services(text: &str) -> Vec<(String, String)> {
    text.split("kind: Service\nmetadata: {name: ")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(", namespace: ")?;
            let (ns, _) = rest.split_once('}')?;
            Some((name.to_string(), ns.to_string()))
        })
        .collect()
}

/// The NACKs the proxies report, one line each.
fn nacks(weir: &WeirUp) -> Vec<String> {
    let (_, body) = weir.get("/debug/proxies").unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    let mut found = Vec::new();
    for proxy in value["proxies"].as_array().into_iter().flatten() {
        for (kind, status) in proxy["types"].as_object().into_iter().flatten() {
            if !status["last_nack"].is_null() {
                found.push(format!(
                    "{} rejected {kind}: {}",
                    proxy["node_id"], status["last_nack"]
                ));
            }
        }
    }
    found
}

#[test]
fn envoy_accepts_every_generated_valid_configuration() {
    let seeds = env_number("WEIR_FUZZ_SEEDS", 200);
    let first = env_number("WEIR_FUZZ_FIRST_SEED", 1);
    let marker = Backend::start("marker");
    let gateway_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("platform.yaml");
    fs::write(&config, base(gateway_port, &marker, 0)).unwrap();
    fs::write(dir.path().join("pods.yaml"), weir_tests::envoy::CLIENT_POD).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let GatewayAndSidecar {
        gateway,
        sidecar,
        outbound,
    } = GatewayAndSidecar::start(&weir);
    let gateway_addr: SocketAddr = ([127, 0, 0, 1], gateway_port).into();
    let reached = |addr: SocketAddr, path: &str, host: &str| {
        request(addr, "GET", path, host, &[])
            .ok()
            .and_then(|r| r.backend())
            .as_deref()
            == Some("marker")
    };

    let mut documents = 0;
    for seed in first..first + seeds {
        let generated = fuzz::configuration(seed);
        let text = format!("{}{generated}", base(gateway_port, &marker, seed));
        // The generator must only produce what `weir validate` (and the API server) accept.
        let mut index = DirectoryIndex::default();
        index.load_file("platform.yaml", &text);
        let (_, problems) = index.state();
        let errors: Vec<String> = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.is_empty(),
            "seed {seed}: the generator produced invalid input: {errors:#?}\n{text}"
        );
        documents += text.matches("\n---\n").count();
        let tmp = dir.path().join(".platform.yaml.tmp");
        fs::write(&tmp, &text).unwrap();
        fs::rename(&tmp, &config).unwrap();
        let path = format!("/seed-{seed}");
        let host = format!("seed-{seed}.shop");
        let taken = eventually(Duration::from_secs(15), || {
            (reached(gateway_addr, &path, "marker.test") && reached(outbound, "/", &host))
                .then_some(())
        });
        // The sidecar fetches on demand: call every generated Service once, so each one's
        // virtual hosts and cluster reach Envoy (and would be NACKed if it refused them).
        // At once: some answer only after a generated timeout or retries.
        std::thread::scope(|calls| {
            for (name, ns) in generated_services(&generated) {
                calls.spawn(move || {
                    let _ = request(outbound, "GET", "/", &format!("{name}.{ns}"), &[]);
                });
            }
        });
        let rejected = nacks(&weir);
        assert!(
            taken.is_some() && rejected.is_empty(),
            "seed {seed} (reproduce: WEIR_FUZZ_FIRST_SEED={seed} WEIR_FUZZ_SEEDS=1): {}\n{rejected:#?}\nconfiguration:\n{text}\ngateway log:\n{}\nsidecar log:\n{}",
            if taken.is_some() {
                "a proxy rejected it"
            } else {
                "the proxies never took it"
            },
            gateway.log(),
            sidecar.log(),
        );
    }
    println!(
        "weir fuzz: {seeds} generated configurations (seeds {first}..{}, {documents} objects) accepted by Envoy, gateway (SotW) and sidecar (delta)",
        first + seeds - 1
    );
}
