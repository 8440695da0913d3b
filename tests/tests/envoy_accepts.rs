//! Valid Kubernetes input that Envoy would refuse, live in `weir up` with a real Envoy
//! gateway (state of the world) and a real sidecar (delta): every proxy ACKs everything it
//! is sent, the parts Envoy cannot take are left out (and the route's status says so), and
//! the rest is served. The five classes found by feeding randomized valid configurations to
//! Envoy: a Service with one port for UDP and TCP (kube-dns), a regular expression above
//! Envoy's default RE2 size, an FQDN EndpointSlice, `%` in a header value, and a `Host`
//! header modifier.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fs, net::SocketAddr, time::Duration};

use serde_json::Value;
use weir_tests::{
    WeirUp,
    envoy::{Backend, GatewayAndSidecar, request, service_manifest},
    eventually, free_port,
};

const ROUTES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kube-dns-a, namespace: kube-system, labels: {kubernetes.io/service-name: kube-dns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-fqdn, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: FQDN
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [web.legacy.example.com]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weir}
spec: {controllerName: weir.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: files, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: RegularExpression, value: '^/files/[a-zA-Z0-9_-]{1,64}\.(png|jpe?g|gif|webp)$'}}]
    backendRefs: [{name: web, port: 80}]
  - matches:
    - path: {type: RegularExpression, value: '^/(old|legacy'}
    - path: {type: PathPrefix, value: /legacy}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /rehost}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: Host, value: other.example.com}]}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /sale}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-offer, value: 50% off %DOWNSTREAM_REMOTE_ADDRESS%}]}
    backendRefs: [{name: web, port: 80}]
"#;

fn config(web: &Backend, gateway_port: u16) -> String {
    format!(
        "{}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
         spec: {{gatewayClassName: weir, listeners: [{{name: http, port: {gateway_port}, protocol: HTTP}}]}}\n---\n{ROUTES}",
        service_manifest("shop", "web", web)
    )
}

/// Every connected proxy and, per type, its last NACK (if any) and whether it ACKed.
fn proxies(weir: &WeirUp) -> Vec<Value> {
    let (_, body) = weir.get("/debug/proxies").unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    value["proxies"].as_array().cloned().unwrap_or_default()
}

#[test]
fn valid_input_envoy_would_refuse_is_left_out_and_everything_else_is_acked_and_served() {
    let web = Backend::start("web");
    let gateway_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("platform.yaml"), config(&web, gateway_port)).unwrap();
    fs::write(dir.path().join("pods.yaml"), weir_tests::envoy::CLIENT_POD).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let GatewayAndSidecar {
        gateway,
        sidecar,
        outbound,
    } = GatewayAndSidecar::start(&weir);
    let gateway_addr: SocketAddr = ([127, 0, 0, 1], gateway_port).into();

    // The large (but valid) regular expression routes: the gateway has its routes.
    let served = eventually(Duration::from_secs(20), || {
        let r = request(gateway_addr, "GET", "/files/logo.png", "shop.test", &[]).ok()?;
        (r.backend().as_deref() == Some("web")).then_some(())
    });
    assert!(
        served.is_some(),
        "the gateway never served the regex route; envoy log:\n{}",
        gateway.log()
    );
    // The sidecar routes outbound although kube-dns has 53/UDP beside 53/TCP.
    let meshed = eventually(Duration::from_secs(20), || {
        let r = request(outbound, "GET", "/", "web.shop", &[]).ok()?;
        (r.backend().as_deref() == Some("web")).then_some(())
    });
    assert!(
        meshed.is_some(),
        "the sidecar never routed; envoy log:\n{}",
        sidecar.log()
    );

    // Both proxies ACKed every type they were sent, with no NACK anywhere.
    let acked = eventually(Duration::from_secs(20), || {
        let list = proxies(&weir);
        let all_acked = list.len() == 2
            && list.iter().all(|p| {
                p["types"].as_object().is_some_and(|types| {
                    types
                        .values()
                        .all(|t| t["last_nack"].is_null() && t["sent"] == t["acked"])
                })
            });
        all_acked.then_some(list)
    });
    assert!(
        acked.is_some(),
        "a proxy rejected or did not ACK: {:#?}",
        proxies(&weir)
    );

    // The rule's valid match is served, its bad regular expression is not.
    let legacy = request(gateway_addr, "GET", "/legacy/x", "shop.test", &[]).unwrap();
    assert_eq!(legacy.backend().as_deref(), Some("web"));
    // A rule that would modify Host answers 500 instead of reaching the backend.
    let rehost = request(gateway_addr, "GET", "/rehost", "shop.test", &[]).unwrap();
    assert_eq!(rehost.status, 500, "{rehost:?}");
    // '%' is the user's text: sent literally, no Envoy variable substituted.
    let sale = request(gateway_addr, "GET", "/sale", "shop.test", &[]).unwrap();
    assert_eq!(
        sale.headers.get("x-offer").map(String::as_str),
        Some("50% off %DOWNSTREAM_REMOTE_ADDRESS%")
    );

    // The route says what is not served, and where.
    let (_, status) = weir.get("/debug/status").unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    let accepted = &status["http_routes"]["shop/files"][0]["conditions"][0];
    assert_eq!(accepted["status"], "False", "{status:#}");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.contains("spec.rules[1].matches[0].path.value"),
        "{message}"
    );
}
