//! Helpers for Weir's cross-component tests: the `weir` binary, free ports, a running
//! `weir up` with its admin endpoint, and plain HTTP requests.
//!
//! Tests run the real binary as users do. It is built on first use through cargo (a no-op
//! when up to date), so a test never runs a stale binary; `WEIR_BIN` points at another one
//! (a release build, say) instead.

pub mod adapter;
pub mod chart;
pub mod envoy;
pub mod fuzz;
pub mod http;
pub mod netns;
pub mod prometheus;
pub mod redis;

pub use http::http_get;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The workspace's members, as the root `Cargo.toml` lists them (`"."` is the root
/// package), so tests that scan the sources cover a member added later.
pub fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
        .expect("the workspace's Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members = [...] line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Prefixes of the variables cargo sets for one package's build or test run.
const PER_PACKAGE_CARGO_VARS: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// The `weir` binary under test.
pub fn weir_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Relative to the workspace root, where it is typed: a test runs in its package's
        // directory.
        if let Some(bin) = std::env::var_os("WEIR_BIN") {
            return workspace_root().join(bin);
        }
        let mut build = escargot::CargoBuild::new()
            .bin("weir")
            .manifest_path(workspace_root().join("Cargo.toml"))
            .target_dir(workspace_root().join("target"));
        // Cargo gives this test process the variables of the weir-tests package
        // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR...). Build scripts such as ring's rerun when
        // those change, so passing them on would rebuild half the tree on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if PER_PACKAGE_CARGO_VARS
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                build = build.env_remove(name.as_ref());
            }
        }
        let built = build
            .run()
            .unwrap_or_else(|e| panic!("building the weir binary: {e}"));
        built.path().to_path_buf()
    })
}

/// A `weir` command.
pub fn weir() -> Command {
    Command::new(weir_bin())
}

/// A TCP port that was free a moment ago on every address, and never handed out before in
/// this process: two components of one test given the same port would fight over it.
pub fn free_port() -> u16 {
    free_ports_apart(&[])
}

/// A port `p` such that `p` and `p + offset`, for each offset, were free a moment ago and
/// none of them was handed out before in this process: for a component that listens on a
/// port and a port derived from it (a second gateway Envoy with `--gateway-port-offset`).
///
/// Ports come from outside the kernel's ephemeral range (`ip_local_port_range`): below it
/// (from 20000) or, where it starts too low, above it. Inside it, a port found free is soon
/// taken again by any process's outgoing connection or port-0 bind: CI once saw a gateway
/// Envoy fail to listen on `p + 7` because an outgoing connection held it. Outside it, only
/// listeners that ask for the port by number compete. (Where the range leaves no room,
/// ports come from 20000 up all the same.) Each test process starts its walk at a place
/// set by its pid, so consecutive test binaries do not reuse each other's ports while old
/// connections linger.
pub fn free_ports_apart(offsets: &[u16]) -> u16 {
    use std::sync::{Mutex, PoisonError};
    static GIVEN: Mutex<(Option<u32>, std::collections::BTreeSet<u16>)> =
        Mutex::new((None, std::collections::BTreeSet::new()));
    let (lowest, highest) = ports_outside_the_ephemeral_range();
    let span = highest - lowest + 1;
    let mut guard = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let (cursor, given) = &mut *guard;
    let start = *cursor.get_or_insert_with(|| std::process::id().wrapping_mul(193) % span);
    for step in 0..span {
        let port = u16::try_from(lowest + (start + step) % span).unwrap_or(u16::MAX);
        let ports: Option<Vec<u16>> = std::iter::once(Some(port))
            .chain(offsets.iter().map(|o| port.checked_add(*o)))
            .collect();
        let Some(ports) = ports else { continue };
        let free = ports
            .iter()
            .all(|p| !given.contains(p) && TcpListener::bind(("0.0.0.0", *p)).is_ok());
        if free {
            given.extend(&ports);
            *cursor = Some((u32::from(port) - lowest + 1) % span);
            return port;
        }
    }
    panic!("no free port between {lowest} and {highest}")
}

/// The ports [`free_ports_apart`] walks: (lowest, highest), inclusive; read once.
fn ports_outside_the_ephemeral_range() -> (u32, u32) {
    static RANGE: OnceLock<(u32, u32)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        ports_outside(
            &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default(),
        )
    })
}

/// The ports outside `ip_local_port_range` ("low high"): below it from 20000 when there
/// is room, else above it, else 20000 up anyway.
fn ports_outside(ip_local_port_range: &str) -> (u32, u32) {
    const LOWEST: u32 = 20_000;
    const ROOM: u32 = 2_000;
    let range: Vec<u32> = ip_local_port_range
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    match range[..] {
        [low, _] if low >= LOWEST + ROOM => (LOWEST, low - 1),
        [_, high] if high + ROOM <= 65_535 => (high + 1, 65_535),
        [_, _] => (LOWEST, 65_535),
        // Linux's default range when the file cannot be read.
        _ => (LOWEST, 32_767),
    }
}

/// Copies a directory tree (the examples, into a scratch directory tests may edit).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The value of one sample in OpenMetrics text, e.g. `weir_store_objects{kind="Service"}`.
pub fn metric_value(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `check` every 20 ms until it returns `Some`, or gives up after `timeout`.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `weir up`, killed when dropped.
#[derive(Debug)]
pub struct WeirUp {
    child: Option<Child>,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// The xds-server.
    pub xds: SocketAddr,
    /// The mesh CA's directory (`ca.crt` is what agents trust the xds-server with).
    pub ca_dir: PathBuf,
    /// Where it writes a token for every proxy (`<node id>.token`).
    pub token_dir: PathBuf,
    log: PathBuf,
    /// Its scratch directory (and, after restarts, the earlier instances'), holding the CA
    /// and the tokens.
    scratch: Vec<tempfile::TempDir>,
}

impl WeirUp {
    /// Starts `weir up --config <config> <extra args>` on a free admin port and waits until
    /// it is ready.
    pub fn start(config: &Path, extra: &[&str]) -> WeirUp {
        Self::start_with_xds(config, ([127, 0, 0, 1], free_port()).into(), extra)
    }

    /// Like [`WeirUp::start`], serving xDS on a given address (to restart a control plane
    /// in place).
    pub fn start_with_xds(config: &Path, xds: SocketAddr, extra: &[&str]) -> WeirUp {
        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let log = scratch.path().join("weir.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let rate_limit: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut command = weir();
        command
            .arg("up")
            .arg("--config")
            .arg(config)
            .arg("--admin-addr")
            .arg(admin.to_string())
            .arg("--xds-addr")
            .arg(xds.to_string());
        // Every instance gets its own rate-limit port unless the test chose one.
        if !extra.contains(&"--rate-limit-addr") {
            command.arg("--rate-limit-addr").arg(rate_limit.to_string());
        }
        // Tests start their own gateway Envoys unless they ask weir up to supervise them.
        if !extra.contains(&"--gateway-envoys") {
            command.arg("--gateway-envoys").arg("off");
        }
        // And its own mesh CA and proxy tokens, in its scratch directory.
        let flag_value = |flag: &str| {
            extra
                .iter()
                .position(|a| *a == flag)
                .and_then(|i| extra.get(i + 1))
                .map(PathBuf::from)
        };
        let ca_dir = flag_value("--ca-dir").unwrap_or_else(|| {
            command.arg("--ca-dir").arg(scratch.path().join("ca"));
            scratch.path().join("ca")
        });
        let token_dir = flag_value("--token-dir").unwrap_or_else(|| {
            command
                .arg("--token-dir")
                .arg(scratch.path().join("tokens"));
            scratch.path().join("tokens")
        });
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting weir up: {e}"));
        let mut up = WeirUp {
            child: Some(child),
            admin,
            xds,
            ca_dir,
            token_dir,
            log,
            scratch: vec![scratch],
        };
        let ready = eventually(Duration::from_secs(30), || {
            matches!(up.get("/readyz"), Ok((200, _))).then_some(())
        });
        if ready.is_none() {
            let exited = up.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "weir up did not become ready (exit: {exited:?}); log:\n{}",
                up.log()
            );
        }
        up
    }

    /// Starts `weir up` again, after [`WeirUp::terminate`], on the same xDS address, mesh
    /// CA and token directory, as a restarted control plane finds its CA again (in its
    /// Secret, in a cluster): proxies reconnect with the certificates they hold.
    pub fn restart(&mut self, config: &Path) {
        let (ca, tokens) = (self.ca_dir.clone(), self.token_dir.clone());
        let mut next = WeirUp::start_with_xds(
            config,
            self.xds,
            &[
                "--ca-dir",
                ca.to_str().unwrap_or_default(),
                "--token-dir",
                tokens.to_str().unwrap_or_default(),
            ],
        );
        next.scratch.append(&mut self.scratch);
        *self = next;
    }

    /// The token `weir up` minted for the proxy `node_id` (`sidecar~web-0.shop`).
    pub fn token_file(&self, node_id: &str) -> PathBuf {
        self.token_dir.join(format!("{node_id}.token"))
    }

    /// The mesh CA's certificate, which the xds-server's serving certificate chains to.
    pub fn ca_root(&self) -> PathBuf {
        self.ca_dir.join("ca.crt")
    }

    /// GET on the admin endpoint.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.admin, path)
    }

    /// The admin endpoint's metrics text.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// One metric sample's value.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        metric_value(&self.metrics(), sample)
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        // No signal crate needed: `kill` is on every machine these tests run on.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = eventually(timeout, || child.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for WeirUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `kubectl` with `args` (and `stdin`, if any): whether it succeeded, and its output.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes())
            .expect("writing to kubectl");
    }
    let output = child.wait_with_output().expect("kubectl finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range() {
        assert_eq!(ports_outside("32768\t60999\n"), (20_000, 32_767));
        assert_eq!(ports_outside("1024 40000"), (40_001, 65_535));
        assert_eq!(ports_outside("1024 65535"), (20_000, 65_535));
        assert_eq!(ports_outside(""), (20_000, 32_767));
    }

    #[test]
    fn ports_apart_are_free_and_never_handed_out_twice() {
        let (lowest, highest) = ports_outside_the_ephemeral_range();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let port = free_ports_apart(&[7]);
            assert!((lowest..=highest).contains(&u32::from(port)), "{port}");
            assert!(
                seen.insert(port) && seen.insert(port + 7),
                "{port} handed out again"
            );
            let single = free_port();
            assert!(seen.insert(single), "{single} handed out again");
        }
    }
}
