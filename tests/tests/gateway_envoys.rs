//! `weir up` runs the gateway Envoys itself: a Gateway in the directory gets a real Envoy
//! that serves its routes; killed, it is restarted and serves again; the Gateway deleted,
//! its Envoy stops; SIGTERM to `weir up` leaves no Envoy running.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fs, net::SocketAddr, path::Path, process::Command, time::Duration};

use serde_json::Value;
use weir_tests::{
    WeirUp,
    envoy::{Backend, envoy_bin, request, service_manifest},
    eventually, free_port,
};

const HOST: &str = "app.test";

fn platform(port: u16, backend: &Backend, with_gateway: bool) -> String {
    let gateway = if with_gateway {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\n\
             spec: {{gatewayClassName: weir, listeners: [{{name: http, port: {port}, protocol: HTTP}}]}}\n---\n"
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\n\
         spec: {{controllerName: weir.io/gateway-controller}}\n---\n{gateway}\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: main, namespace: shop}}\n\
         spec: {{parentRefs: [{{name: edge}}], hostnames: [{HOST}], rules: [{{backendRefs: [{{name: svc-a, port: 80}}]}}]}}\n",
        service_manifest("shop", "svc-a", backend),
    )
}

fn write(dir: &Path, yaml: &str) {
    let tmp = dir.join(".platform.yaml.tmp");
    fs::write(&tmp, yaml).unwrap();
    fs::rename(tmp, dir.join("platform.yaml")).unwrap();
}

/// The supervised gateway Envoys `/debug/proxies` lists.
fn envoys(weir: &WeirUp) -> Vec<Value> {
    let (_, body) = weir.get("/debug/proxies").unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    value["gatewayEnvoys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The running Envoy's (pid, restarts), once there is one with a pid other than `not`.
fn running(weir: &WeirUp, not: Option<u64>) -> (u64, u64) {
    eventually(Duration::from_secs(20), || {
        let envoys = envoys(weir);
        let [envoy] = envoys.as_slice() else {
            return None;
        };
        let pid = envoy["pid"].as_u64()?;
        (envoy["state"] == "running" && Some(pid) != not)
            .then(|| (pid, envoy["restarts"].as_u64().unwrap()))
    })
    .unwrap_or_else(|| {
        panic!(
            "no running gateway Envoy (other than {not:?}): {:?}\nweir log:\n{}",
            envoys(weir),
            weir.log()
        )
    })
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn kill(signal: &str, pid: u64) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Kills the Envoys it was told about when the test ends, even by a panic (a `weir up`
/// killed with SIGKILL cannot stop them).
#[derive(Default)]
struct Reaper(Vec<u64>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            kill("KILL", *pid);
        }
    }
}

fn serves(gateway: SocketAddr) -> bool {
    eventually(Duration::from_secs(20), || {
        let response = request(gateway, "GET", "/", HOST, &[]).ok()?;
        (response.backend().as_deref() == Some("a")).then_some(())
    })
    .is_some()
}

#[test]
fn weir_up_starts_restarts_and_stops_gateway_envoys() {
    let backend = Backend::start("a");
    let port = free_port();
    let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    write(dir.path(), &platform(port, &backend, true));
    let envoy = envoy_bin();
    let mut weir = WeirUp::start(
        dir.path(),
        &[
            "--gateway-envoys",
            "supervise",
            "--envoy-bin",
            envoy.to_str().unwrap(),
            "--gateway-run-dir",
            run_dir.path().to_str().unwrap(),
        ],
    );
    let mut reaper = Reaper::default();

    // The Gateway gets an Envoy, on a free admin port, that serves its route.
    let (first, restarts) = running(&weir, None);
    reaper.0.push(first);
    assert_eq!(restarts, 0);
    let listed = envoys(&weir);
    assert_eq!(listed[0]["gateway"], "shop/edge");
    assert_eq!(listed[0]["nodeId"], "gateway~edge.shop");
    let admin_port = listed[0]["adminPort"].as_u64().unwrap();
    assert!(admin_port > 0);
    assert!(
        serves(gateway),
        "the gateway Envoy never served; weir log:\n{}",
        weir.log()
    );
    assert!(run_dir.path().join("shop.edge.yaml").exists());

    // Killed: restarted (after a 1 s backoff), and it serves again.
    kill("KILL", first);
    let (second, restarts) = running(&weir, Some(first));
    reaper.0.push(second);
    assert_eq!(restarts, 1);
    assert!(
        weir.log().contains("gateway Envoy exited; restarting it"),
        "{}",
        weir.log()
    );
    assert!(
        serves(gateway),
        "the restarted Envoy never served; weir log:\n{}",
        weir.log()
    );

    // The Gateway deleted: its Envoy stops and is no longer listed.
    write(dir.path(), &platform(port, &backend, false));
    let stopped = eventually(Duration::from_secs(20), || {
        (envoys(&weir).is_empty() && !alive(second)).then_some(())
    });
    assert!(
        stopped.is_some(),
        "{:?}\nweir log:\n{}",
        envoys(&weir),
        weir.log()
    );

    // Back again, then SIGTERM to weir up: no Envoy outlives it.
    write(dir.path(), &platform(port, &backend, true));
    let (third, _) = running(&weir, Some(second));
    reaper.0.push(third);
    assert!(serves(gateway));
    let status = weir.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "weir up: {status:?}");
    assert!(!alive(third), "Envoy {third} outlived weir up");
}
