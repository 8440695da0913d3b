//! The xds-server against a real Envoy gateway: routing, filters, timeouts, local rate
//! limits, live edits, restarts on both sides, and NACKs.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{
    fs,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use weir_tests::{
    WeirUp,
    envoy::{Backend, Envoy, HttpResponse, request, service_manifest, without_re2_limit},
    eventually, free_port,
};

const HOST: &str = "app.test";

/// A namespace with Services `svc-a` and `svc-b` on two echo backends and a Gateway
/// `edge` listening on `port`, plus `routes` (YAML documents).
fn platform(port: u16, a: &Backend, b: &Backend, routes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}{}\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\n\
         spec: {{controllerName: weir.io/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
         spec: {{gatewayClassName: weir, listeners: [{{name: http, port: {port}, protocol: HTTP}}]}}\n---\n{routes}",
        service_manifest("shop", "svc-a", a),
        service_manifest("shop", "svc-b", b),
    )
}

const SIMPLE_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: main, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  hostnames: [app.test]
  rules:
  - backendRefs: [{name: svc-a, port: 80}]
"#;

struct Setup {
    dir: tempfile::TempDir,
    weir: WeirUp,
    envoy: Envoy,
    gateway: SocketAddr,
    a: Backend,
    b: Backend,
}

const GATEWAY_SOTW: &[&str] = &["--role", "gateway", "--name", "edge", "--namespace", "shop"];
const GATEWAY_DELTA: &[&str] = &[
    "--role",
    "gateway",
    "--name",
    "edge",
    "--namespace",
    "shop",
    "--xds-protocol",
    "delta",
];

impl Setup {
    fn start(routes: &str) -> Setup {
        Self::start_with(routes, GATEWAY_SOTW)
    }

    fn start_with(routes: &str, bootstrap: &[&str]) -> Setup {
        let a = Backend::start("a");
        let b = Backend::start("b");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("platform.yaml"),
            platform(port, &a, &b, routes),
        )
        .unwrap();
        let weir = WeirUp::start(dir.path(), &[]);
        let envoy = Envoy::start(&weir, bootstrap);
        let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
        let setup = Setup {
            dir,
            weir,
            envoy,
            gateway,
            a,
            b,
        };
        setup.wait_for_backend("/", "a");
        setup
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        request(self.gateway, "GET", path, HOST, headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Waits until `path` is answered by `backend`; returns how long that took.
    fn wait_for_backend(&self, path: &str, backend: &str) -> Duration {
        let start = Instant::now();
        let reached = eventually(Duration::from_secs(20), || {
            let response = request(self.gateway, "GET", path, HOST, &[]).ok()?;
            (response.backend().as_deref() == Some(backend)).then(|| start.elapsed())
        });
        reached.unwrap_or_else(|| {
            panic!(
                "{path} never reached backend {backend}; weir log:\n{}\nenvoy log:\n{}",
                self.weir.log(),
                self.envoy.log()
            )
        })
    }

    fn write_routes(&self, routes: &str) {
        let path = self.dir.path().join("platform.yaml");
        let tmp = self.dir.path().join(".platform.yaml.tmp");
        fs::write(
            &tmp,
            platform(self.gateway.port(), &self.a, &self.b, routes),
        )
        .unwrap();
        fs::rename(tmp, path).unwrap();
    }

    fn proxies(&self) -> serde_json::Value {
        let (_, body) = self.weir.get("/debug/proxies").unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

#[test]
fn weighted_split_matches_filters_and_timeouts() {
    let routes = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: main, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  hostnames: [app.test]
  rules:
  - matches: [{headers: [{name: x-tier, value: gold}]}]
    backendRefs: [{name: svc-b, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /internal}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-added, value: by-weir}], remove: [x-secret]}
    backendRefs: [{name: svc-a, port: 80}]
  - matches: [{path: {type: Exact, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: svc-a, port: 80}]
  - backendRefs: [{name: svc-a, port: 80, weight: 80}, {name: svc-b, port: 80, weight: 20}]
"#;
    let setup = Setup::start(routes);

    // 80/20 over 1,000 requests: b's count is Binomial(1000, 0.2), mean 200, sd 12.6;
    // ±4.5 sd keeps a correct split from failing more than once in ~100,000 runs.
    let to_b = (0..1000)
        .filter(|_| setup.get("/", &[]).backend().as_deref() == Some("b"))
        .count();
    assert!(
        (143..=257).contains(&to_b),
        "{to_b} of 1000 went to the 20% backend"
    );

    // A header match wins over the weighted default.
    for _ in 0..20 {
        assert_eq!(
            setup.get("/", &[("x-tier", "gold")]).backend().as_deref(),
            Some("b")
        );
    }

    // Path prefix match with URLRewrite and RequestHeaderModifier, visible at the backend.
    let response = setup.get("/api/items?x=1", &[("x-secret", "hush")]);
    assert_eq!(response.backend().as_deref(), Some("a"));
    assert_eq!(
        response.echoed("path").as_deref(),
        Some("/internal/items?x=1")
    );
    assert_eq!(response.echoed("x-added").as_deref(), Some("by-weir"));
    assert_eq!(
        response.echoed("x-secret"),
        None,
        "removed header reached the backend"
    );
    // `/apix` is not under the `/api` prefix (segment-wise matching).
    assert_ne!(
        setup.get("/apix", &[]).echoed("path").as_deref(),
        Some("/internalx")
    );

    // The route timeout fires.
    let started = Instant::now();
    let slow = setup.get("/slow", &[("x-delay-ms", "3000")]);
    assert_eq!(slow.status, 504, "{slow:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout cut the request short"
    );
    assert_eq!(setup.get("/slow", &[]).status, 200);

    // Envoy holds only what it ACKed, nothing stuck warming, at the version Weir sent.
    let dump: serde_json::Value =
        serde_json::from_str(&setup.envoy.admin_get("/config_dump")).unwrap();
    for config in dump["configs"].as_array().unwrap() {
        for (key, value) in config.as_object().unwrap() {
            if key.contains("warming") {
                assert!(
                    value.as_array().is_none_or(|v| v.is_empty()),
                    "{key} is not empty: {value}"
                );
            }
        }
    }
    let proxies = setup.proxies();
    let routes = &proxies["proxies"][0]["types"]["routes"];
    assert_eq!(routes["sent"], routes["acked"]);
    let dumped_version = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".RoutesConfigDump"))
        })
        .and_then(|c| c["dynamic_route_configs"][0]["version_info"].as_str())
        .map(String::from);
    assert_eq!(dumped_version.as_deref(), routes["acked"].as_str());
}

#[test]
fn local_rate_limit_allows_the_burst_and_refuses_the_rest() {
    let routes = format!(
        "{SIMPLE_ROUTE}---\napiVersion: weir.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: limit, namespace: shop}}\n\
         spec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: main}}\n  rateLimit:\n    local: {{requests: 10, unit: Second, burst: 10}}\n"
    );
    let setup = Setup::start(&routes);
    let burst = |setup: &Setup| -> (usize, usize, Option<HttpResponse>) {
        // Let the bucket fill after the requests that waited for the route.
        thread::sleep(Duration::from_millis(1_100));
        let gateway = setup.gateway;
        let handles: Vec<_> = (0..30)
            .map(|_| thread::spawn(move || request(gateway, "GET", "/", HOST, &[]).unwrap()))
            .collect();
        let responses: Vec<HttpResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = responses.iter().filter(|r| r.status == 200).count();
        let limited: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
        (ok, limited.len(), limited.first().map(|r| (*r).clone()))
    };
    let (mut ok, mut limited, mut sample) = burst(&setup);
    if (ok, limited) != (10, 20) {
        // The bucket refills 10 tokens each second; a burst that straddles a refill gets
        // more through. One more try from a full bucket tells that from a real fault.
        (ok, limited, sample) = burst(&setup);
    }
    assert_eq!((ok, limited), (10, 20));
    let sample = sample.unwrap();
    assert_eq!(
        sample.headers.get("x-ratelimit-limit").map(String::as_str),
        Some("10"),
        "{sample:?}"
    );
}

#[test]
fn editing_the_directory_under_traffic_switches_routes_without_failures() {
    let setup = Arc::new(Setup::start(SIMPLE_ROUTE));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (setup, stop) = (setup.clone(), stop.clone());
        thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = request(setup.gateway, "GET", "/", HOST, &[]);
                seen.push(
                    response
                        .map(|r| (r.status, r.backend()))
                        .map_err(|e| e.to_string()),
                );
            }
            seen
        })
    };
    thread::sleep(Duration::from_millis(300));
    setup.write_routes(&SIMPLE_ROUTE.replace("svc-a", "svc-b"));
    let switched_after = setup.wait_for_backend("/", "b");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.join().unwrap();
    eprintln!(
        "routing switched {switched_after:?} after the edit; {} requests during the test",
        seen.len()
    );
    let failures: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
    assert!(
        failures.is_empty(),
        "failed requests during the edit: {failures:?}"
    );
    assert!(
        seen.iter()
            .any(|r| matches!(r, Ok((_, Some(b))) if b == "a"))
    );
    assert!(
        seen.iter()
            .any(|r| matches!(r, Ok((_, Some(b))) if b == "b"))
    );
    assert!(
        switched_after < Duration::from_secs(5),
        "routing took {switched_after:?} to change"
    );
}

#[test]
fn envoy_rides_out_a_control_plane_restart_and_both_sides_converge() {
    let mut setup = Setup::start(SIMPLE_ROUTE);

    // The control plane goes away: Envoy keeps serving its last configuration.
    setup
        .weir
        .terminate(Duration::from_secs(15))
        .expect("weir up stops");
    for _ in 0..20 {
        assert_eq!(setup.get("/", &[]).backend().as_deref(), Some("a"));
    }

    // It comes back, with a changed configuration, on the same address: Envoy reconnects
    // and converges.
    setup.write_routes(&SIMPLE_ROUTE.replace("svc-a", "svc-b"));
    setup.weir.restart(setup.dir.path());
    setup.wait_for_backend("/", "b");

    // Envoy restarts: the new process gets everything from the control plane.
    setup.envoy.kill();
    setup.envoy = Envoy::start(
        &setup.weir,
        &["--role", "gateway", "--name", "edge", "--namespace", "shop"],
    );
    setup.wait_for_backend("/", "b");
    let connected = eventually(Duration::from_secs(10), || {
        let proxies = setup.proxies();
        (proxies["proxies"].as_array()?.len() == 1).then_some(())
    });
    assert!(
        connected.is_some(),
        "the old Envoy's stream is gone, the new one is listed: {}",
        setup.proxies()
    );
}

#[test]
fn a_nacked_configuration_keeps_the_last_good_one_and_shows_in_proxy_status() {
    let mut setup = Setup::start(SIMPLE_ROUTE);
    // Weir leaves out what it knows Envoy refuses, so a NACK needs an Envoy that refuses
    // more: one started without Weir's RE2 program-size limit rejects an ordinary regex.
    setup.envoy.kill();
    setup.envoy = Envoy::start_edited(&setup.weir, GATEWAY_SOTW, without_re2_limit);
    setup.wait_for_backend("/", "a");
    let bad = SIMPLE_ROUTE.replace(
        "  - backendRefs: [{name: svc-a, port: 80}]",
        "  - matches: [{path: {type: RegularExpression, value: '^/files/[a-zA-Z0-9_-]{1,64}\\.(png|jpe?g|gif|webp)$'}}]\n    backendRefs: [{name: svc-b, port: 80}]\n  - backendRefs: [{name: svc-a, port: 80}]",
    );
    setup.write_routes(&bad);
    let nack = eventually(Duration::from_secs(20), || {
        let proxies = setup.proxies();
        let list = proxies["proxies"].as_array()?.clone();
        list.iter()
            .map(|p| p["types"]["routes"]["last_nack"].clone())
            .find(|nack| !nack.is_null())
    })
    .unwrap_or_else(|| panic!("no NACK recorded; envoy log:\n{}", setup.envoy.log()));
    assert!(
        nack["message"].as_str().unwrap().contains("program size"),
        "{nack}"
    );

    // The rejection is attributed to the HTTPRoute behind the rejected route table.
    let route_conditions = |setup: &Setup| -> Vec<serde_json::Value> {
        let (_, body) = setup.weir.get("/debug/status").unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["http_routes"]["shop/main"][0]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let conditions = route_conditions(&setup);
    assert!(
        conditions.iter().any(|c| c["type"] == "weir.io/Programmed"
            && c["status"] == "False"
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("gateway~edge.shop") && m.contains("program size"))),
        "{conditions:#?}"
    );

    // The proxy keeps serving its last accepted routes.
    for _ in 0..10 {
        assert_eq!(setup.get("/", &[]).backend().as_deref(), Some("a"));
    }
    // The rejected version is not sent again and again.
    let pushes = || {
        setup
            .weir
            .metric("weir_xds_pushes_total{type=\"routes\"}")
            .unwrap_or(0.0)
    };
    let before = pushes();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(pushes(), before, "no resend loop");
    // Accepted types converged: each ACK is timed from the change that caused it.
    assert!(
        setup
            .weir
            .metric("weir_xds_convergence_seconds_count{type=\"listeners\"}")
            .unwrap_or(0.0)
            >= 1.0,
        "{}",
        setup.weir.metrics()
    );
    assert!(
        setup
            .weir
            .metric("weir_xds_nacks_total{type=\"routes\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    // weir proxy-status shows it.
    let output = weir_tests::weir()
        .args([
            "proxy-status",
            "--admin-addr",
            &setup.weir.admin.to_string(),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    let routes_line = table
        .lines()
        .find(|l| l.starts_with("gateway~edge.shop") && l.contains("routes"))
        .unwrap();
    assert!(routes_line.contains("program size"), "{table}");

    // Fixing the route clears the way: the next version is accepted.
    setup.write_routes(SIMPLE_ROUTE);
    let acked = eventually(Duration::from_secs(20), || {
        let proxies = setup.proxies();
        let routes = &proxies["proxies"][0]["types"]["routes"];
        (routes["sent"] == routes["acked"] && routes["sent"].as_str() != nack["version"].as_str())
            .then_some(())
    });
    assert!(acked.is_some(), "{}", setup.proxies());
    assert!(
        route_conditions(&setup)
            .iter()
            .all(|c| c["type"] != "weir.io/Programmed"),
        "the rejection clears once a fixed version is accepted"
    );
}

#[test]
fn delta_xds_serves_edits_and_brings_a_reconnecting_envoy_up_to_date() {
    let mut setup = Setup::start_with(SIMPLE_ROUTE, GATEWAY_DELTA);
    assert_eq!(setup.proxies()["proxies"][0]["protocol"], "delta");

    // An edit reaches the proxy incrementally.
    setup.write_routes(&SIMPLE_ROUTE.replace("svc-a", "svc-b"));
    setup.wait_for_backend("/", "b");

    // Control plane restart with a change made while it was down: Envoy reconnects with
    // the versions it holds (initial_resource_versions) and gets what differs.
    setup
        .weir
        .terminate(Duration::from_secs(15))
        .expect("weir up stops");
    assert_eq!(
        setup.get("/", &[]).backend().as_deref(),
        Some("b"),
        "Envoy serves without its control plane"
    );
    setup.write_routes(
        &SIMPLE_ROUTE.replace("hostnames: [app.test]", "hostnames: [app.test, other.test]"),
    );
    setup.weir.restart(setup.dir.path());
    let reached = eventually(Duration::from_secs(20), || {
        let response = request(setup.gateway, "GET", "/", "other.test", &[]).ok()?;
        (response.backend().as_deref() == Some("a")).then_some(())
    });
    assert!(
        reached.is_some(),
        "the reconnected Envoy did not get the change; envoy log:\n{}",
        setup.envoy.log()
    );
    let proxies = setup.proxies();
    let routes = &proxies["proxies"][0]["types"]["routes"];
    assert_eq!(routes["sent"], routes["acked"], "{proxies}");
}

#[test]
fn https_listeners_terminate_tls_with_the_certificate_from_the_secret() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    let crt = dir.path().join("tls.crt");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=app.test",
        ])
        .args(["-addext", "subjectAltName=DNS:app.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let indent = |pem: &std::path::Path| {
        fs::read_to_string(pem)
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let https_port = free_port();
    let tls = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: app-cert, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
         spec:\n  gatewayClassName: weir\n  listeners:\n  - {{name: https, port: {https_port}, protocol: HTTPS, hostname: app.test, tls: {{certificateRefs: [{{name: app-cert}}]}}}}\n---\n{SIMPLE_ROUTE}",
        indent(&crt),
        indent(&key)
    );
    // The platform's own plaintext Gateway is replaced by the HTTPS one above.
    let platform_yaml = platform(free_port(), &a, &b, "");
    let without_gateway: String = platform_yaml
        .split("---\n")
        .filter(|d| !d.contains("kind: Gateway\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    fs::write(
        dir.path().join("platform.yaml"),
        format!("{without_gateway}---\n{tls}"),
    )
    .unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let envoy = Envoy::start(&weir, GATEWAY_SOTW);
    let curl = || {
        std::process::Command::new("curl")
            .args(["-sv", "--max-time", "3", "--cacert"])
            .arg(&crt)
            .args([
                "--resolve",
                &format!("app.test:{https_port}:127.0.0.1"),
                &format!("https://app.test:{https_port}/"),
            ])
            .output()
            .unwrap()
    };
    let served = eventually(Duration::from_secs(20), || {
        let output = curl();
        output.status.success().then_some(output)
    })
    .unwrap_or_else(|| panic!("no HTTPS response; envoy log:\n{}", envoy.log()));
    let body = String::from_utf8_lossy(&served.stdout);
    assert!(body.contains("\"backend\":\"a\""), "{body}");
    let handshake = String::from_utf8_lossy(&served.stderr);
    assert!(
        handshake.contains("CN=app.test"),
        "the Secret's certificate was served: {handshake}"
    );
}
