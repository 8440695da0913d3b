//! Real Envoy proxies and plain HTTP backends for end-to-end tests.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub use crate::http::{HttpResponse, request};
use crate::{WeirUp, eventually, free_port, http_get, workspace_root};

/// The Envoy binary: `ENVOY_BIN`, else the one `scripts/setup.sh` installs in `.venv`,
/// else `envoy` on PATH.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("envoy")
    }
}

/// A running Envoy and its agent (`weir agent`, which proves the proxy's identity and
/// serves its certificate), killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Option<Child>,
    agent: Option<Child>,
    /// Envoy's admin endpoint.
    pub admin: SocketAddr,
    log: PathBuf,
    agent_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How a test Envoy's agent proves who it is.
#[derive(Clone, Debug, Default)]
pub enum Proof {
    /// The token `weir up` minted for the proxy the bootstrap names (what a pod has).
    #[default]
    Own,
    /// Another token file (someone else's, forged, expired).
    Token(PathBuf),
    /// No token at all.
    None,
}

/// The node id `weir bootstrap <args>` gives a proxy.
pub fn node_id(bootstrap_args: &[&str]) -> String {
    let value = |flag: &str| {
        bootstrap_args
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| bootstrap_args.get(i + 1))
            .copied()
            .unwrap_or_default()
    };
    format!(
        "{}~{}.{}",
        value("--role"),
        value("--name"),
        value("--namespace")
    )
}

/// `weir agent` proving with `token` to `weir`'s xds-server (trusting its CA), serving on
/// `socket`.
pub fn agent_command(weir: &WeirUp, token: &std::path::Path, socket: &std::path::Path) -> Command {
    let mut command = crate::weir();
    command
        .arg("agent")
        .arg("--token-file")
        .arg(token)
        .args(["--xds-addr", &weir.xds.to_string()])
        .arg("--ca-root-file")
        .arg(weir.ca_root())
        .arg("--agent-socket")
        .arg(socket);
    command
}

/// Starts `weir agent` for the proxy `node_id` of `weir`, serving on `socket`.
pub fn start_agent(
    weir: &WeirUp,
    node_id: &str,
    proof: &Proof,
    socket: &std::path::Path,
    log: &std::path::Path,
) -> Child {
    let token = match proof {
        Proof::Own => weir.token_file(node_id),
        Proof::Token(file) => file.clone(),
        Proof::None => socket.with_extension("no-token"),
    };
    if matches!(proof, Proof::None) {
        std::fs::write(&token, "").unwrap_or_else(|e| panic!("empty token: {e}"));
    }
    agent_command(weir, &token, socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap_or_else(|e| panic!("agent log: {e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("starting weir agent: {e}"))
}

/// The Pod the sidecar of [`GatewayAndSidecar`] serves: a configuration must hold it, as a
/// sidecar proves the identity of a Pod that exists.
pub const CLIENT_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client-0, namespace: shop}\nspec: {containers: [{name: client, image: client}]}\n";

/// The two kinds of proxy side by side, on one xds-server: the Gateway `shop/edge`'s
/// gateway over state-of-the-world xDS, and the sidecar of pod `shop/client-0` over delta
/// xDS, with its outbound listener on a free port.
#[derive(Debug)]
pub struct GatewayAndSidecar {
    /// The gateway proxy.
    pub gateway: Envoy,
    /// The sidecar proxy.
    pub sidecar: Envoy,
    /// The sidecar's outbound listener.
    pub outbound: SocketAddr,
}

impl GatewayAndSidecar {
    /// Starts both against `weir`.
    pub fn start(weir: &WeirUp) -> GatewayAndSidecar {
        let gateway = Envoy::start(
            weir,
            &["--role", "gateway", "--name", "edge", "--namespace", "shop"],
        );
        let outbound: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let sidecar = Envoy::client_sidecar(weir, outbound, &["--xds-protocol", "delta"]);
        GatewayAndSidecar {
            gateway,
            sidecar,
            outbound,
        }
    }
}

impl Envoy {
    /// The sidecar of [`CLIENT_POD`] (`shop/client-0`), its outbound listener on `outbound`,
    /// with more bootstrap arguments (`--xds-protocol delta`, ports...).
    pub fn client_sidecar(weir: &WeirUp, outbound: SocketAddr, extra: &[&str]) -> Envoy {
        let port = outbound.port().to_string();
        let mut args = vec![
            "--role",
            "sidecar",
            "--name",
            "client-0",
            "--namespace",
            "shop",
            "--outbound-port",
            &port,
        ];
        args.extend_from_slice(extra);
        Self::start(weir, &args)
    }

    /// Starts Envoy for `weir` with the bootstrap `weir bootstrap <args> --xds-addr <xds>`
    /// prints, next to its agent proving the identity of the proxy it names, and waits
    /// until its admin endpoint answers.
    pub fn start(weir: &WeirUp, bootstrap_args: &[&str]) -> Envoy {
        Self::start_with(weir, bootstrap_args, Proof::Own, |bootstrap| bootstrap)
    }

    /// Like [`Envoy::start`], with the bootstrap passed through `edit` first: an Envoy
    /// started from another bootstrap than the one Weir prints.
    pub fn start_edited(
        weir: &WeirUp,
        bootstrap_args: &[&str],
        edit: impl FnOnce(String) -> String,
    ) -> Envoy {
        Self::start_with(weir, bootstrap_args, Proof::Own, edit)
    }

    /// Like [`Envoy::start_edited`], its agent proving with `proof`.
    pub fn start_with(
        weir: &WeirUp,
        bootstrap_args: &[&str],
        proof: Proof,
        edit: impl FnOnce(String) -> String,
    ) -> Envoy {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let socket = dir.path().join("agent.sock");
        let agent_log = dir.path().join("agent.log");
        let agent = start_agent(weir, &node_id(bootstrap_args), &proof, &socket, &agent_log);
        let output = crate::weir()
            .arg("bootstrap")
            .args(bootstrap_args)
            .args([
                "--xds-addr",
                &weir.xds.to_string(),
                "--admin-port",
                &admin.port().to_string(),
            ])
            .arg("--agent-socket")
            .arg(&socket)
            .output()
            .unwrap_or_else(|e| panic!("weir bootstrap: {e}"));
        assert!(
            output.status.success(),
            "weir bootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(
            &config,
            edit(String::from_utf8_lossy(&output.stdout).into_owned()),
        )
        .unwrap_or_else(|e| panic!("writing bootstrap: {e}"));
        let log = dir.path().join("envoy.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting envoy ({}): {e}; run scripts/setup.sh",
                    envoy_bin().display()
                )
            });
        let envoy = Envoy {
            child: Some(child),
            agent: Some(agent),
            admin,
            log,
            agent_log,
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(30), || {
            matches!(http_get(admin, "/ready"), Ok((_, _))).then_some(())
        });
        assert!(
            up.is_some(),
            "envoy's admin endpoint did not come up; log:\n{}",
            envoy.log()
        );
        envoy
    }

    /// Envoy's log so far, and its agent's.
    pub fn log(&self) -> String {
        format!(
            "{}\n--- agent ---\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            self.agent_log()
        )
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.agent_log).unwrap_or_default()
    }

    /// GET on Envoy's admin endpoint.
    pub fn admin_get(&self, path: &str) -> String {
        match http_get(self.admin, path) {
            Ok((200, body)) => body,
            other => panic!("envoy admin GET {path}: {other:?}"),
        }
    }

    /// A counter or gauge from Envoy's `/stats`.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
    }

    /// Stops Envoy (and its agent) now.
    pub fn kill(&mut self) {
        for mut child in [self.child.take(), self.agent.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Service `namespace/name` (port 80, named `http`) and the EndpointSlice that puts
/// `backend` behind it, as two YAML documents each ending in `---`.
pub fn service_manifest(namespace: &str, name: &str, backend: &Backend) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n---\n",
        backend.port
    )
}

/// An HTTP backend on 127.0.0.1 that answers every request with JSON naming itself and
/// echoing the method, path and headers it received. A request header `x-delay-ms` makes it
/// wait that long first (for timeout tests). Runs until the test process ends.
#[derive(Debug)]
pub struct Backend {
    /// Its name, echoed in every response.
    pub name: String,
    /// Its port.
    pub port: u16,
}

impl Backend {
    /// Starts a backend.
    pub fn start(name: &str) -> Backend {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("backend bind: {e}"));
        Self::serve(listener, name)
    }

    /// Serves a backend on a listener the caller bound (another address, another network
    /// namespace).
    pub fn serve(listener: TcpListener, name: &str) -> Backend {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let backend_name = name.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let name = backend_name.clone();
                std::thread::spawn(move || serve_connection(stream, &name));
            }
        });
        Backend {
            name: name.to_string(),
            port,
        }
    }
}

fn serve_connection(stream: TcpStream, name: &str) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut discard = vec![0; length];
        if reader.read_exact(&mut discard).is_err() {
            return;
        }
        if let Some(delay) = headers.get("x-delay-ms").and_then(|d| d.parse().ok()) {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let body = serde_json::json!({"backend": name, "method": method, "path": path, "headers": headers}).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A bootstrap without Weir's RE2 program-size limit (`layered_runtime`), as an Envoy
/// started from an older or hand-written bootstrap would run: Envoy's default limit (100)
/// then refuses ordinary regular expressions, which makes a real NACK on demand.
pub fn without_re2_limit(bootstrap: String) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in bootstrap.lines() {
        if !line.starts_with(' ') {
            skipping = line.starts_with("layered_runtime:");
        }
        if !skipping {
            kept.push(line);
        }
    }
    kept.join("\n") + "\n"
}
