//! `weir up` serving the metrics APIs, and the clients the tests read them with: the real
//! kubectl (through a kubeconfig) and curl.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::{WeirUp, eventually, free_port, kubectl, prometheus::Prometheus};

/// `weir up` serving the metrics APIs from a Prometheus, over a directory of objects.
#[derive(Debug)]
pub struct Adapter {
    /// The running `weir up`.
    pub weir: WeirUp,
    /// Where the adapter listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Adapter {
    /// Starts it: `objects` (YAML) as the cluster, `rules` as `--rules` (the built-in
    /// rules when empty), `extra` flags.
    pub fn start(prometheus: &Prometheus, objects: &str, rules: &str, extra: &[&str]) -> Adapter {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).expect("the config directory");
        std::fs::write(config.join("objects.yaml"), objects).expect("writing the objects");
        std::fs::write(dir.path().join("rules.yaml"), rules).expect("writing the rules");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let addr_arg = addr.to_string();
        let rules_arg = dir.path().join("rules.yaml").display().to_string();
        let certs_arg = dir.path().join("certs").display().to_string();
        let url = prometheus.url();
        let mut args = vec![
            "--prometheus-url",
            &url,
            "--metrics-adapter-addr",
            &addr_arg,
            "--cert-dir",
            &certs_arg,
            "--metrics-relist-interval",
            "1s",
            "--metrics-max-age",
            "1h",
        ];
        // No rules: the built-in ones.
        if !rules.is_empty() {
            args.extend(["--rules", &rules_arg]);
        }
        args.extend_from_slice(extra);
        let weir = WeirUp::start(&config, &args);
        let adapter = Adapter { weir, addr, dir };
        let ready = eventually(Duration::from_secs(20), || {
            adapter
                .curl(&["/readyz"], &[])
                .filter(|(code, _)| *code == 200)
        });
        assert!(
            ready.is_some(),
            "adapter not ready:\n{}",
            adapter.weir.log()
        );
        adapter
    }

    /// The serving certificate (self-signed, kept in `--cert-dir`).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/apiserver.crt")
    }

    /// A kubeconfig pointing at the adapter, with `token` if any.
    pub fn kubeconfig(&self, token: Option<&str>) -> PathBuf {
        self.kubeconfig_for(&format!("https://{}", self.addr), token)
    }

    /// A kubeconfig pointing at `server` (the adapter, or an API server in front of it)
    /// that trusts the adapter's certificate, with `token` if any.
    pub fn kubeconfig_for(&self, server: &str, token: Option<&str>) -> PathBuf {
        let path = self.dir.path().join(format!(
            "kubeconfig-{}-{}",
            token.unwrap_or("none"),
            server.replace([':', '/', '.'], "_")
        ));
        // Without credentials kubectl would prompt for a user name; the open (local) mode
        // ignores this token.
        let user = format!("token: {}", token.unwrap_or("anonymous"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: weir\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: u\n  user: {{{user}}}\ncontexts:\n- name: c\n  context: {{cluster: weir, user: u}}\ncurrent-context: c\n",
                self.ca().display()
            ),
        )
        .expect("writing the kubeconfig");
        path
    }

    /// `kubectl get --raw PATH` as JSON.
    pub fn raw(&self, path: &str, token: Option<&str>) -> Option<Value> {
        let kubeconfig = self.kubeconfig(token);
        let (ok, out) = kubectl(
            &[
                "--kubeconfig",
                kubeconfig.to_str().expect("a UTF-8 path"),
                "get",
                "--raw",
                path,
            ],
            None,
        );
        ok.then(|| serde_json::from_str(&out).expect("kubectl printed JSON"))
    }

    /// curl against the adapter: (status, body). `args` go before the URL; the first
    /// element of `path_and_args` is the path.
    pub fn curl(&self, path_and_args: &[&str], args: &[&str]) -> Option<(u16, String)> {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.ca())
            .args(args)
            .args(&path_and_args[1..])
            .arg(format!("https://{}{}", self.addr, path_and_args[0]))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (code != 0).then(|| (code, body.to_string()))
    }
}
