//! The xds-server against a real Envoy sidecar: outbound routing by authority, GAMMA
//! routes that change a Service's routing, and the inbound listener to the workload,
//! on ports from the bootstrap's overrides.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fs, net::SocketAddr, time::Duration};

use weir_tests::{
    WeirUp,
    envoy::{Backend, Envoy, request, service_manifest},
    eventually, free_port,
};

fn services(a: &Backend, b: &Backend) -> String {
    format!(
        "{}{}",
        service_manifest("shop", "svc-a", a),
        service_manifest("shop", "svc-b", b)
    )
}

#[test]
fn sidecar_routes_outbound_by_authority_follows_gamma_routes_and_forwards_inbound() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let app = Backend::start("app");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mesh.yaml");
    fs::write(&config, services(&a, &b)).unwrap();
    fs::write(dir.path().join("pods.yaml"), weir_tests::envoy::CLIENT_POD).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let (outbound, inbound) = (free_port(), free_port());
    let outbound: SocketAddr = ([127, 0, 0, 1], outbound).into();
    let envoy = Envoy::client_sidecar(
        &weir,
        outbound,
        &[
            "--inbound-port",
            &inbound.to_string(),
            "--app-port",
            &app.port.to_string(),
        ],
    );
    let inbound: SocketAddr = ([127, 0, 0, 1], inbound).into();
    let backend_for = |host: &str| {
        request(outbound, "GET", "/", host, &[])
            .ok()
            .and_then(|r| r.backend())
    };

    // Outbound: every spelling of a Service's name reaches it, with and without the port.
    let ready = eventually(Duration::from_secs(20), || {
        (backend_for("svc-a").as_deref() == Some("a")).then_some(())
    });
    assert!(
        ready.is_some(),
        "outbound never routed; envoy log:\n{}",
        envoy.log()
    );
    for host in [
        "svc-a:80",
        "svc-a.shop",
        "svc-a.shop.svc.cluster.local",
        "svc-a.shop.svc.cluster.local:80",
    ] {
        assert_eq!(backend_for(host).as_deref(), Some("a"), "{host}");
    }
    assert_eq!(backend_for("svc-b.shop").as_deref(), Some("b"));
    assert_eq!(
        request(outbound, "GET", "/", "nothing.shop", &[])
            .unwrap()
            .status,
        404
    );

    // Inbound: requests to the sidecar's inbound port reach its own workload.
    let inbound_response = eventually(Duration::from_secs(20), || {
        request(inbound, "GET", "/hello", "client-0", &[]).ok()
    });
    assert_eq!(
        inbound_response.and_then(|r| r.backend()).as_deref(),
        Some("app")
    );

    // A GAMMA route on svc-a sends its /v2 traffic to svc-b.
    let gamma = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a-v2, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: svc-a, port: 80}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n    backendRefs: [{name: svc-b, port: 80}]\n  - backendRefs: [{name: svc-a, port: 80}]\n";
    fs::write(&config, format!("{}---\n{gamma}", services(&a, &b))).unwrap();
    let switched = eventually(Duration::from_secs(20), || {
        let response = request(outbound, "GET", "/v2/items", "svc-a.shop", &[]).ok()?;
        (response.backend().as_deref() == Some("b")).then_some(())
    });
    assert!(
        switched.is_some(),
        "the GAMMA route never applied; envoy log:\n{}",
        envoy.log()
    );
    assert_eq!(
        request(outbound, "GET", "/other", "svc-a.shop", &[])
            .unwrap()
            .backend()
            .as_deref(),
        Some("a")
    );
}
