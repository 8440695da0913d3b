//! Per-namespace mTLS against real Envoys: a caller sidecar (`web-0.shop`) reaches the
//! `pay` Service, whose endpoint is the inbound port of the `pay-0.payments` sidecar.
//! Certificates come over SDS from Weir's CA (kept in the test's --ca-dir).

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{
    fs,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::jiff::Timestamp;
use weir_tests::{
    WeirUp,
    envoy::{Backend, Envoy, request},
    eventually, free_port,
    http::KeepAlive,
    prometheus::Prometheus,
};
use weir_xds::ca::{self, CertificateAuthority, SpiffeId};

/// The caller's pod and the server's pod, Service and EndpointSlice (pointing at the
/// server sidecar's inbound port), and the payments MeshPolicy in `mode`.
fn manifests(inbound: u16, mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop, labels: {{app: web, weir.io/sidecar: 'true'}}}}\nspec: {{serviceAccountName: web, containers: [{{name: web, image: web}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: pay-0, namespace: payments, labels: {{app: pay, weir.io/sidecar: 'true'}}}}\nspec: {{serviceAccountName: pay, containers: [{{name: pay, image: pay}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: pay, namespace: payments}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: pay, namespace: payments, labels: {{kubernetes.io/service-name: pay}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {inbound}}}]\nendpoints: [{{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: pay-0, namespace: payments}}}}]\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: payments}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    )
}

struct Mesh {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    ca_dir: std::path::PathBuf,
    weir: WeirUp,
    caller: Envoy,
    server: Envoy,
    outbound: SocketAddr,
    inbound: SocketAddr,
    _app: Backend,
    /// With [`Mesh::start_scraped`]: Prometheus scraping both sidecars.
    prometheus: Option<Prometheus>,
    /// With [`Mesh::start_scraped`]: the server sidecar's stats port.
    server_stats: Option<SocketAddr>,
}

impl Mesh {
    fn start(mode: &str, extra: &[&str]) -> Mesh {
        Self::launch(mode, extra, false)
    }

    /// Like [`Mesh::start`], the sidecars serving `/stats/prometheus` on a stats port
    /// (`weir bootstrap --stats-port`), Prometheus scraping them every second with their
    /// `namespace` and `pod`, and the mesh-TLS controller reading them from Prometheus,
    /// as it does in a cluster.
    fn start_scraped(mode: &str, extra: &[&str]) -> Mesh {
        Self::launch(mode, extra, true)
    }

    fn launch(mode: &str, extra: &[&str], scraped: bool) -> Mesh {
        let app = Backend::start("pay");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        fs::create_dir(&config).unwrap();
        let ca_dir = dir.path().join("ca");
        let (outbound, inbound) = (free_port(), free_port());
        fs::write(config.join("mesh.yaml"), manifests(inbound, mode)).unwrap();
        let mut args = vec!["--ca-dir", ca_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (server_stats, caller_stats) = (free_port().to_string(), free_port().to_string());
        let prometheus = scraped.then(|| {
            let at = |port: &str| SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()));
            Prometheus::scraping(
                "/stats/prometheus",
                &[
                    (
                        at(&server_stats),
                        &[("namespace", "payments"), ("pod", "pay-0")],
                    ),
                    (
                        at(&caller_stats),
                        &[("namespace", "shop"), ("pod", "web-0")],
                    ),
                ],
            )
        });
        let url = prometheus.as_ref().map(Prometheus::url).unwrap_or_default();
        let stats = |port: &str| -> Vec<String> {
            if scraped {
                vec!["--stats-port".into(), port.into()]
            } else {
                Vec::new()
            }
        };
        if scraped {
            args.extend_from_slice(&["--mesh-tls-source", "prometheus", "--prometheus-url", &url]);
        }
        let weir = WeirUp::start(&config, &args);
        let server_stats_addr =
            scraped.then(|| SocketAddr::from(([127, 0, 0, 1], server_stats.parse().unwrap())));
        let server_stats = stats(&server_stats);
        let caller_stats = stats(&caller_stats);
        let server = Envoy::start(
            &weir,
            &[
                "--role",
                "sidecar",
                "--name",
                "pay-0",
                "--namespace",
                "payments",
                "--inbound-port",
                &inbound.to_string(),
                "--outbound-port",
                &free_port().to_string(),
                "--app-port",
                &app.port.to_string(),
            ]
            .into_iter()
            .chain(server_stats.iter().map(String::as_str))
            .collect::<Vec<_>>(),
        );
        let caller = Envoy::start(
            &weir,
            &[
                "--role",
                "sidecar",
                "--name",
                "web-0",
                "--namespace",
                "shop",
                "--outbound-port",
                &outbound.to_string(),
                "--inbound-port",
                &free_port().to_string(),
            ]
            .into_iter()
            .chain(caller_stats.iter().map(String::as_str))
            .collect::<Vec<_>>(),
        );
        Mesh {
            _dir: dir,
            config,
            ca_dir,
            weir,
            caller,
            server,
            outbound: ([127, 0, 0, 1], outbound).into(),
            inbound: ([127, 0, 0, 1], inbound).into(),
            _app: app,
            prometheus,
            server_stats: server_stats_addr,
        }
    }

    fn set_mode(&self, mode: &str) {
        fs::write(
            self.config.join("mesh.yaml"),
            manifests(self.inbound.port(), mode),
        )
        .unwrap();
    }

    /// Through the caller's sidecar (which originates mTLS to `pay`): the backend that
    /// answered.
    fn via_sidecar(&self) -> Option<String> {
        request(self.outbound, "GET", "/", "pay.payments", &[])
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.backend())
    }

    /// Plaintext straight to the server sidecar's inbound port.
    fn plaintext(&self) -> Option<String> {
        request(self.inbound, "GET", "/", "pay", &[])
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.backend())
    }

    /// Waits until the caller's sidecar reaches pay.
    fn wait_routed(&self) {
        let up = eventually(Duration::from_secs(30), || {
            (self.via_sidecar().as_deref() == Some("pay")).then_some(())
        });
        assert!(
            up.is_some(),
            "no route through the sidecar; {}",
            self.logs()
        );
    }

    /// Waits until plaintext straight to the inbound port is refused.
    fn wait_plaintext_refused(&self, what: &str) {
        let refused = eventually(Duration::from_secs(30), || {
            self.plaintext().is_none().then_some(())
        });
        assert!(refused.is_some(), "{what}; {}", self.logs());
    }

    /// The payments MeshPolicy's status, as `/debug/mesh` shows it.
    fn status(&self) -> serde_json::Value {
        let (_, body) = self.weir.get("/debug/mesh").unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        value["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["policy"] == "payments/default")
            .map(|p| p["status"].clone())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "weir:\n{}\ncaller envoy:\n{}\nserver envoy:\n{}",
            self.weir.log(),
            self.caller.log(),
            self.server.log()
        )
    }
}

/// A certificate and key for `spiffe://cluster.local/ns/shop/sa/web` from `ca`, written
/// to `dir`.
fn client_certificate(ca: &CertificateAuthority, dir: &Path, name: &str) -> (String, String) {
    let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), Timestamp::now())
        .unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    fs::write(&cert_path, &cert.chain_pem).unwrap();
    fs::write(&key_path, &cert.key_pem).unwrap();
    (
        cert_path.to_str().unwrap().to_string(),
        key_path.to_str().unwrap().to_string(),
    )
}

/// HTTPS with a client certificate straight to `addr` (curl, not verifying the server's
/// name): the status code, or `None` if the handshake or request failed.
fn https_with_client_cert(addr: SocketAddr, cert: &str, key: &str) -> Option<u16> {
    let output = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--cert", cert, "--key", key])
        .arg(format!("https://{addr}/"))
        .output()
        .unwrap();
    let code: u16 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    (output.status.success() && code != 0).then_some(code)
}

/// Permissive → Strict takes effect on the next push, not the controller's next pass: with
/// the controller's interval at an hour, the edit still closes plaintext within seconds.
#[test]
fn a_tightening_edit_applies_on_the_next_push_without_waiting_for_the_controller() {
    let mesh = Mesh::start("Permissive", &["--mesh-tls-interval", "1h"]);
    mesh.wait_routed();
    assert_eq!(mesh.plaintext().as_deref(), Some("pay"));
    // The controller's first pass has put Permissive in force (status.effectiveMode).
    let decided = eventually(Duration::from_secs(10), || {
        (mesh.status()["effectiveMode"] == "Permissive").then_some(())
    });
    assert!(decided.is_some(), "no status: {}", mesh.status());
    mesh.set_mode("Strict");
    mesh.wait_plaintext_refused("a tightening edit waited for the controller");
    assert_eq!(mesh.via_sidecar().as_deref(), Some("pay"));
    // The controller has not run again: the status still says Permissive.
    assert_eq!(mesh.status()["effectiveMode"], "Permissive");
}

#[test]
fn permissive_takes_both_strict_only_mesh_mtls_and_the_switch_needs_no_restart() {
    let mesh = Mesh::start("Permissive", &[]);

    // Permissive: the caller's sidecar reaches pay over mTLS, and plaintext works too.
    mesh.wait_routed();
    assert_eq!(mesh.plaintext().as_deref(), Some("pay"));
    // The sidecar hop was TLS (the server's mTLS chain shook hands), the direct one was
    // counted as plaintext.
    let handshake = "listener.inbound.ssl.handshake";
    assert!(
        mesh.server.stat(handshake).unwrap_or(0) > 0,
        "no TLS handshake on the server's inbound listener"
    );
    assert!(
        mesh.server
            .stat("http.inbound_plaintext.downstream_cx_total")
            .unwrap_or(0)
            > 0,
        "plaintext connections are counted apart"
    );
    let listener_updates = mesh
        .server
        .stat("listener_manager.lds.update_success")
        .unwrap_or(0);

    // Permissive → Strict in the directory: plaintext stops, the sidecar path keeps working,
    // and Envoy was not restarted.
    mesh.set_mode("Strict");
    mesh.wait_plaintext_refused("plaintext still accepted after Strict");
    assert_eq!(mesh.via_sidecar().as_deref(), Some("pay"));
    // The same Envoy took a new listener over LDS.
    assert!(
        mesh.server
            .stat("listener_manager.lds.update_success")
            .unwrap_or(0)
            > listener_updates
    );

    // A client certificate from the mesh CA is accepted; one from another CA with the same
    // SPIFFE id is not.
    let mesh_ca = ca::load_or_create(&mesh.ca_dir, "cluster.local", Timestamp::now()).unwrap();
    let other_ca = CertificateAuthority::generate("cluster.local", Timestamp::now()).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = client_certificate(&mesh_ca, certs.path(), "mesh");
    assert_eq!(https_with_client_cert(mesh.inbound, &cert, &key), Some(200));
    let (cert, key) = client_certificate(&other_ca, certs.path(), "other");
    assert_eq!(
        https_with_client_cert(mesh.inbound, &cert, &key),
        None,
        "a certificate from another CA must be refused"
    );

    // And back to Permissive: plaintext is accepted again.
    mesh.set_mode("Permissive");
    let back = eventually(Duration::from_secs(30), || {
        (mesh.plaintext().as_deref() == Some("pay")).then_some(())
    });
    assert!(back.is_some(), "Permissive did not return; {}", mesh.logs());
}

#[test]
fn disable_is_plaintext_on_both_sides() {
    let mesh = Mesh::start("Disable", &[]);
    mesh.wait_routed();
    assert_eq!(mesh.plaintext().as_deref(), Some("pay"));
    // The server's listener is plaintext only: the caller did not originate TLS.
    let handshake = "listener.inbound.ssl.handshake";
    assert_eq!(mesh.server.stat(handshake).unwrap_or(0), 0);
}

/// The serial numbers of the certificates an Envoy holds (admin `/certs`).
fn serials(envoy: &Envoy) -> Vec<String> {
    let certs: serde_json::Value =
        serde_json::from_str(&envoy.admin_get("/certs")).unwrap_or_default();
    let mut serials: Vec<String> = certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
        .filter_map(|c| c["serial_number"].as_str().map(String::from))
        .collect();
    serials.sort();
    serials.dedup();
    serials
}

#[test]
fn certificates_and_tokens_rotate_without_a_failed_request_on_a_kept_alive_connection() {
    // 6 s certificates, renewed by the agents every 3 s, each time with a new key and the
    // token read again; 4 s tokens, minted again every 2 s (a renewal with an expired
    // token would fail, and the certificate would run out).
    let mesh = Mesh::start(
        "Strict",
        &[
            "--workload-cert-lifetime",
            "6s",
            "--proxy-token-lifetime",
            "4s",
        ],
    );
    mesh.wait_routed();
    let first = serials(&mesh.server);
    assert!(!first.is_empty(), "the server holds no certificate");
    let token_file = mesh.weir.token_file("sidecar~pay-0.payments");
    let first_token = std::fs::read_to_string(&token_file).unwrap();

    let mut connection = KeepAlive::connect(mesh.outbound).unwrap();
    let start = Instant::now();
    let mut sent = 0;
    let mut rotations_seen = 0;
    let mut last = first.clone();
    while start.elapsed() < Duration::from_secs(12) {
        let status = connection.get("pay.payments");
        assert_eq!(
            status.as_ref().ok(),
            Some(&200),
            "request {sent} failed: {status:?}; {}",
            mesh.logs()
        );
        // New connections work with the new certificates too.
        if sent % 10 == 0 {
            assert_eq!(
                mesh.via_sidecar().as_deref(),
                Some("pay"),
                "a fresh connection failed"
            );
        }
        sent += 1;
        let now = serials(&mesh.server);
        if !now.is_empty() && now != last {
            rotations_seen += 1;
            last = now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        rotations_seen >= 2,
        "expected the server's certificate to rotate at least twice in 12 s, saw {rotations_seen}; {}",
        mesh.logs()
    );
    assert!(sent > 50, "only {sent} requests");
    let obtained = mesh
        .server
        .agent_log()
        .matches("workload certificate obtained")
        .count();
    assert!(obtained >= 3, "the server's agent renewed {obtained} times");
    // Every renewal succeeded at the first attempt: none met an expired serving
    // certificate on the xds-server (whose own renewal is timed from the same lifetime).
    for (who, envoy) in [("server", &mesh.server), ("caller", &mesh.caller)] {
        let log = envoy.agent_log();
        assert!(
            !log.contains("cannot obtain a workload certificate"),
            "the {who}'s agent failed a renewal:\n{log}"
        );
    }
    assert_ne!(
        std::fs::read_to_string(&token_file).unwrap(),
        first_token,
        "the token was minted again"
    );
}

/// Auto promotion after 4 quiet seconds. The test's own plaintext probe after the
/// promotion is a failed handshake, which past the default 5% would roll the promotion
/// back (a_promotion_that_breaks_a_caller_is_rolled_back tests that): never here.
const PROMOTION: &str =
    "Permissive, promotion: {auto: true, plaintextWindow: 4s, rollbackErrorRate: 1}";

/// With a plaintext caller the namespace stays Permissive and says why; once the caller
/// has gone, after a quiet `plaintextWindow` (4s), it is promoted and plaintext refused.
fn promotes_once_the_plaintext_caller_is_gone(mesh: &Mesh) {
    mesh.wait_routed();

    // A plaintext caller keeps calling: the namespace stays Permissive, and says why.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let stop = stop.clone();
        let inbound = mesh.inbound;
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = request(inbound, "GET", "/", "pay", &[]);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let observing = eventually(Duration::from_secs(20), || {
        let status = mesh.status();
        let message = status["conditions"][0]["message"].as_str().unwrap_or("");
        message.contains("plaintext connection").then_some(status)
    });
    let status = observing.unwrap_or_else(|| {
        panic!(
            "never reported the plaintext caller: {}; {}",
            mesh.status(),
            mesh.logs()
        )
    });
    assert_eq!(status["effectiveMode"], "Permissive");
    assert_eq!(status["phase"], "Observing");
    assert_eq!(status["sidecarCoverage"], "1/1");
    // Longer than the window: still Permissive while the caller is there.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        assert_eq!(mesh.status()["effectiveMode"], "Permissive");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(mesh.plaintext().as_deref(), Some("pay"));

    // The caller leaves: after a quiet window, Strict.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    caller.join().unwrap();
    let promoted = eventually(Duration::from_secs(30), || {
        let status = mesh.status();
        (status["effectiveMode"] == "Strict").then_some(status)
    });
    let status = promoted.unwrap_or_else(|| panic!("never promoted; {}", mesh.logs()));
    assert_eq!(status["phase"], "Promoted");
    assert_eq!(status["conditions"][0]["reason"], "Promoted");
    // And the proxies follow: plaintext is refused, the sidecar path still works.
    mesh.wait_plaintext_refused("promoted but plaintext still accepted");
    assert_eq!(mesh.via_sidecar().as_deref(), Some("pay"));
}

#[test]
fn auto_promotion_waits_until_the_plaintext_caller_is_gone() {
    let mesh = Mesh::start(PROMOTION, &["--mesh-tls-interval", "500ms"]);
    promotes_once_the_plaintext_caller_is_gone(&mesh);
}

/// The same, with the sidecars read from Prometheus (as `weir controllers` does in a
/// cluster): connected sidecars from `envoy_control_plane_connected_state`, plaintext
/// connections from the inbound_plaintext connection manager's counters.
#[test]
fn auto_promotion_from_the_sidecars_statistics_in_prometheus() {
    let mesh = Mesh::start_scraped(PROMOTION, &["--mesh-tls-interval", "500ms"]);
    promotes_once_the_plaintext_caller_is_gone(&mesh);
    let prometheus = mesh.prometheus.as_ref().unwrap();
    let queries = prometheus.logged_queries();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("envoy_control_plane_connected_state")),
        "{queries:?}"
    );
    // The stats port serves only the Prometheus statistics.
    let (status, _) = weir_tests::http_get(mesh.server_stats.unwrap(), "/clusters").unwrap();
    assert_eq!(status, 404);
    // The controller's own metrics show the coverage.
    let (_, metrics) = mesh.weir.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            r#"weir_mesh_tls_endpoints_with_sidecar{namespace="payments",policy="default"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"weir_mesh_tls_mode{namespace="payments",policy="default",mode="Strict",phase="Promoted"} 1"#),
        "{metrics}"
    );
}

#[test]
fn disable_to_strict_is_refused_until_forced() {
    let mesh = Mesh::start("Disable", &["--mesh-tls-interval", "200ms"]);
    let up = eventually(Duration::from_secs(30), || {
        (mesh.status()["effectiveMode"] == "Disable").then_some(())
    });
    assert!(up.is_some(), "{}", mesh.logs());
    mesh.set_mode("Strict");
    let refused = eventually(Duration::from_secs(20), || {
        let status = mesh.status();
        (status["conditions"][0]["reason"] == "TransitionRefused").then_some(status)
    });
    let status = refused.unwrap_or_else(|| panic!("not refused; {}", mesh.logs()));
    assert_eq!(status["effectiveMode"], "Disable");
    assert_eq!(status["conditions"][0]["status"], "False");
    // Disable stays in force: plaintext still works.
    let _ = eventually(Duration::from_secs(20), || mesh.plaintext());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mesh.plaintext().as_deref(), Some("pay"));

    // Forced: the jump happens.
    fs::write(
        mesh.config.join("mesh.yaml"),
        manifests(mesh.inbound.port(), "Strict").replace(
            "metadata: {name: default, namespace: payments}",
            "metadata: {name: default, namespace: payments, annotations: {weir.io/force-transition: 'true'}}",
        ),
    )
    .unwrap();
    let forced = eventually(Duration::from_secs(20), || {
        (mesh.status()["effectiveMode"] == "Strict").then_some(())
    });
    assert!(
        forced.is_some(),
        "the forced jump did not happen; {}",
        mesh.logs()
    );
    mesh.wait_plaintext_refused("forced Strict still takes plaintext");
}

#[test]
fn a_promotion_that_breaks_a_caller_is_rolled_back() {
    let mesh = Mesh::start(
        "Permissive, promotion: {auto: true, plaintextWindow: 2s, rollbackWindow: 2m, rollbackErrorRate: 0.05}",
        &["--mesh-tls-interval", "500ms"],
    );
    let promoted = eventually(Duration::from_secs(30), || {
        (mesh.status()["effectiveMode"] == "Strict").then_some(())
    });
    assert!(promoted.is_some(), "never promoted; {}", mesh.logs());
    mesh.wait_plaintext_refused("after promotion");

    // A plaintext caller shows up after the promotion: its handshakes fail, and the
    // namespace goes back to Permissive.
    let rolled_back = eventually(Duration::from_secs(30), || {
        let _ = mesh.plaintext();
        let status = mesh.status();
        (status["phase"] == "RolledBack").then_some(status)
    });
    let status = rolled_back.unwrap_or_else(|| panic!("never rolled back; {}", mesh.logs()));
    assert_eq!(status["effectiveMode"], "Permissive");
    assert_eq!(status["conditions"][0]["reason"], "RolledBack");
    let plaintext_back = eventually(Duration::from_secs(20), || mesh.plaintext());
    assert_eq!(plaintext_back.as_deref(), Some("pay"), "{}", mesh.logs());
    assert_eq!(mesh.via_sidecar().as_deref(), Some("pay"));
}
