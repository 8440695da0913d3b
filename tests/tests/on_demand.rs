//! A real Envoy sidecar over delta xDS in a mesh it is not sent up front: its first request
//! to a Service fetches that Service's virtual host (VHDS) and cluster (on-demand CDS) and
//! gets a 200; then five more Services; it ends up holding those six of the mesh's
//! clusters, and a route change to a Service nobody calls sends it nothing.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{
    fs,
    net::SocketAddr,
    time::{Duration, Instant},
};

use weir_tests::{
    WeirUp,
    envoy::{Backend, CLIENT_POD, Envoy, request, service_manifest},
    eventually, free_port,
};

/// Services the workload calls (`svc-0` … `svc-5`), each with its own backend, and
/// `IDLE` more that it never calls.
const CALLED: usize = 6;
const IDLE: usize = 40;

fn mesh(backends: &[Backend], idle_route: &str) -> String {
    let mut yaml = String::from(CLIENT_POD);
    yaml.push_str("---\n");
    for (i, backend) in backends.iter().enumerate() {
        yaml.push_str(&service_manifest("shop", &format!("svc-{i}"), backend));
    }
    for i in 0..IDLE {
        yaml.push_str(&service_manifest(
            "shop",
            &format!("idle-{i}"),
            &backends[0],
        ));
    }
    yaml.push_str(idle_route);
    yaml
}

/// A GAMMA route on `service` sending everything to `backend`.
fn route(name: &str, service: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: {service}, port: 80}}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 80}}]\n---\n"
    )
}

/// The mesh clusters (`shop/...`) Envoy holds.
fn mesh_clusters(envoy: &Envoy) -> Vec<String> {
    let mut names: Vec<String> = envoy
        .admin_get("/clusters")
        .lines()
        .filter_map(|l| l.split("::").next())
        .filter(|name| name.starts_with("shop/"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Envoy's counters of xDS updates received (every subscription's), summed by name.
fn xds_updates(envoy: &Envoy) -> Vec<(String, u64)> {
    envoy
        .admin_get("/stats")
        .lines()
        .filter(|l| {
            [".update_attempt:", ".update_success:", ".config_reload:"]
                .iter()
                .any(|s| l.contains(s))
        })
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn a_sidecar_fetches_what_it_calls_and_hears_nothing_of_the_rest() {
    let backends: Vec<Backend> = (0..CALLED)
        .map(|i| Backend::start(&i.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mesh.yaml");
    fs::write(&config, mesh(&backends, "")).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let outbound: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let envoy = Envoy::client_sidecar(&weir, outbound, &["--xds-protocol", "delta"]);
    // Up (the outbound listener is there) before anything was called: no mesh cluster.
    let up = eventually(Duration::from_secs(20), || {
        request(outbound, "GET", "/", "nothing.shop", &[])
            .ok()
            .map(|r| r.status)
    });
    assert_eq!(
        up,
        Some(404),
        "the outbound listener never answered; envoy log:\n{}",
        envoy.log()
    );
    assert_eq!(mesh_clusters(&envoy), Vec::<String>::new());
    // Every subscription was answered, the on-demand ones included (Envoy would wait 15 s
    // for a first answer that never came, and say so).
    assert!(
        !envoy.log().contains("initial fetch timed out"),
        "{}",
        envoy.log()
    );

    // The first request to a Service never called fetches its route and cluster: 200.
    let started = Instant::now();
    let first = request(outbound, "GET", "/", "svc-0.shop", &[]).unwrap();
    let first_took = started.elapsed();
    assert_eq!(
        (first.status, first.backend().as_deref()),
        (200, Some("0")),
        "first request to svc-0; envoy log:\n{}",
        envoy.log()
    );
    let started = Instant::now();
    let again = request(outbound, "GET", "/", "svc-0.shop", &[]).unwrap();
    let again_took = started.elapsed();
    assert_eq!(again.backend().as_deref(), Some("0"));
    eprintln!("svc-0: first request {first_took:?} (fetching), the next {again_took:?}");

    // Five more, each by another spelling of its name.
    for (i, host) in [
        "svc-1",
        "svc-2.shop:80",
        "svc-3.shop.svc",
        "svc-4.shop.svc.cluster.local",
        "svc-5:80",
    ]
    .iter()
    .enumerate()
    {
        let response = request(outbound, "GET", "/", host, &[]).unwrap();
        assert_eq!(
            (response.status, response.backend()),
            (200, Some((i + 1).to_string())),
            "{host}"
        );
    }
    // An unknown Service is still a 404, not a hang.
    assert_eq!(
        request(outbound, "GET", "/", "missing.shop", &[])
            .unwrap()
            .status,
        404
    );
    let expected: Vec<String> = (0..CALLED).map(|i| format!("shop/svc-{i}/80")).collect();
    // Everything it was sent it took: no NACK of any type.
    let (_, proxies) = weir.get("/debug/proxies").unwrap();
    assert!(!proxies.contains("\"message\""), "a NACK: {proxies}");
    assert_eq!(
        mesh_clusters(&envoy),
        expected,
        "6 of {} Services",
        CALLED + IDLE
    );

    // A route change to a Service nobody calls: nothing reaches this sidecar.
    let quiet = xds_updates(&envoy);
    fs::write(&config, mesh(&backends, &route("idle", "idle-7", "idle-8"))).unwrap();
    // Weir has taken the change once a route to a Service the sidecar does call, written
    // after it, applies; until then compare nothing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        xds_updates(&envoy),
        quiet,
        "the sidecar was sent something for a Service it never called"
    );
    fs::write(
        &config,
        mesh(
            &backends,
            &format!(
                "{}{}",
                route("idle", "idle-7", "idle-8"),
                route("moved", "svc-0", "svc-1")
            ),
        ),
    )
    .unwrap();
    let moved = eventually(Duration::from_secs(20), || {
        let response = request(outbound, "GET", "/", "svc-0.shop", &[]).ok()?;
        (response.backend().as_deref() == Some("1")).then_some(())
    });
    assert!(
        moved.is_some(),
        "a route change to a Service it calls never arrived; envoy log:\n{}",
        envoy.log()
    );
    assert_ne!(xds_updates(&envoy), quiet);
}
