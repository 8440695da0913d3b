//! Global rate limits end to end: two real Envoy gateways share one limit through Weir's
//! rate-limit service and a real Redis; Redis down fails open as configured, and the
//! limit holds again once Redis is back.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use weir_tests::{
    WeirUp,
    envoy::{Backend, Envoy, request, service_manifest},
    eventually, free_port, free_ports_apart,
    redis::Redis,
};

const HOST: &str = "app.test";

fn config(port: u16, backend: &Backend, requests: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\n\
         spec: {{controllerName: weir.io/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
         spec: {{gatewayClassName: weir, listeners: [{{name: http, port: {port}, protocol: HTTP}}]}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: api, namespace: shop}}\n\
         spec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [{HOST}]\n  rules:\n  - backendRefs: [{{name: api, port: 80}}]\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: api-limit, namespace: shop}}\n\
         spec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}}\n\
         \x20 rateLimit:\n    global:\n      requests: {requests}\n      unit: Minute\n      descriptors: [{{type: RemoteAddress}}]\n",
        service_manifest("shop", "api", backend),
    )
}

/// Waits, if needed, so that the next `seconds` stay inside one minute window.
fn not_near_a_minute_boundary(seconds: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 60 > 60 - seconds {
        std::thread::sleep(Duration::from_secs(60 - now % 60 + 1));
    }
}

fn status(gateway: SocketAddr) -> u16 {
    request(gateway, "GET", "/", HOST, &[]).map_or(0, |r| r.status)
}

#[test]
fn two_envoys_share_one_limit_through_redis_and_fail_open_without_it() {
    let mut redis = Redis::start();
    let backend = Backend::start("api");
    let offset = 7;
    // The second Envoy listens on `port + offset`: both must be free.
    let port = free_ports_apart(&[offset]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.yaml"), config(port, &backend, 50)).unwrap();
    let rate_limit: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let rate_limit_arg = rate_limit.to_string();
    let weir = WeirUp::start(
        dir.path(),
        &[
            "--rate-limit-addr",
            &rate_limit_arg,
            "--rate-limit-redis-url",
            &redis.url(),
        ],
    );
    let bootstrap = |offset: u16| {
        vec![
            "--role".to_string(),
            "gateway".into(),
            "--name".into(),
            "edge".into(),
            "--namespace".into(),
            "shop".into(),
            "--rate-limit-addr".into(),
            rate_limit_arg.clone(),
            "--gateway-port-offset".into(),
            offset.to_string(),
        ]
    };
    let first = bootstrap(0);
    let second = bootstrap(offset);
    let envoys = [
        Envoy::start(&weir, &first.iter().map(String::as_str).collect::<Vec<_>>()),
        Envoy::start(
            &weir,
            &second.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
    ];
    let gateways: [SocketAddr; 2] = [
        ([127, 0, 0, 1], port).into(),
        ([127, 0, 0, 1], port + offset).into(),
    ];
    for gateway in gateways {
        let up = eventually(Duration::from_secs(20), || {
            (status(gateway) == 200).then_some(())
        });
        assert!(
            up.is_some(),
            "gateway {gateway} never served; weir:\n{}\nenvoy:\n{}",
            weir.log(),
            envoys[0].log()
        );
    }
    // Start the count afresh: the readiness probes above were counted too.
    redis.stop();
    redis.resume();

    // 120 requests spread over both Envoys: exactly 50 allowed.
    not_near_a_minute_boundary(15);
    let mut allowed = 0;
    let mut limited = 0;
    let mut headers = None;
    for i in 0..120 {
        let response = request(gateways[i % 2], "GET", "/", HOST, &[]).unwrap();
        match response.status {
            200 => allowed += 1,
            429 => {
                limited += 1;
                headers.get_or_insert(response.headers);
            }
            other => panic!(
                "request {i}: status {other}; envoy:\n{}",
                envoys[i % 2].log()
            ),
        }
    }
    assert_eq!((allowed, limited), (50, 70), "weir:\n{}", weir.log());
    let headers = headers.unwrap();
    assert_eq!(
        headers
            .get("x-ratelimit-limit")
            .map(String::as_str)
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_string()),
        Some("50".to_string()),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("x-ratelimit-remaining").map(String::as_str),
        Some("0")
    );
    let over = weir
        .metric(r#"weir_ratelimit_decisions_total{code="over_limit"}"#)
        .unwrap();
    assert!(over >= 70.0, "{over}");

    // Redis down: the service fails open (the default), through both Envoys.
    redis.stop();
    for gateway in gateways {
        for _ in 0..5 {
            assert_eq!(status(gateway), 200, "weir:\n{}", weir.log());
        }
    }
    assert!(weir.metric("weir_ratelimit_backend_errors_total").unwrap() >= 1.0);

    // Redis back (empty): the limit holds again.
    redis.resume();
    let recovered = eventually(Duration::from_secs(30), || {
        let statuses: Vec<u16> = (0..60).map(|i| status(gateways[i % 2])).collect();
        statuses.contains(&429).then_some(statuses)
    });
    assert!(
        recovered.is_some(),
        "the limit never held again; weir:\n{}",
        weir.log()
    );
}
