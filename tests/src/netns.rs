//! Test hosts in network namespaces the test creates (`ip netns`), joined by veth pairs
//! to a bridge in a namespace of their own, with one address in the test's namespace so
//! the control plane there can be reached. Everything is removed on drop; no traffic
//! leaves the namespaces and the one veth. Needs root (CI runs as root).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Command, Output, Stdio},
};

/// Runs `ip <args>`, panicking with its error.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A set of namespaces on one /24: `10.<subnet>.0.<n>`; the test's own namespace holds
/// `.254`.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// The hosts' namespaces, in creation order.
    hosts: Vec<String>,
    subnet: u8,
}

impl Lab {
    /// A bridge and the test-side address `10.<subnet>.0.254`. Names carry the process id
    /// so parallel test binaries do not collide.
    pub fn new(subnet: u8) -> Lab {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test creates network namespaces and needs root (CI runs as root)"
        );
        let prefix = format!("w{}{}", subnet, std::process::id() % 100_000);
        let lab = Lab {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            subnet,
        };
        let hub = lab.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        // The test's end.
        let outer = format!("{prefix}t");
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ]);
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.test_address()),
            "dev",
            &outer,
        ]);
        ip(&["link", "set", &outer, "up"]);
        lab
    }

    fn hub(&self) -> String {
        format!("{}h", self.prefix)
    }

    /// The test's address on the lab network.
    pub fn test_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 254)
    }

    /// Adds a host `name` at `10.<subnet>.0.<n>` (interface `eth0`, loopback up); returns
    /// its namespace name.
    pub fn host(&mut self, name: &str, n: u8) -> String {
        let ns = format!("{}{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let hub = self.hub();
        let port = format!("p{n}");
        ip(&[
            "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.{}.0.{n}/24", self.subnet),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Binds a TCP listener inside `ns` (from a thread that enters it; the socket stays
    /// in that namespace).
    pub fn bind(&self, ns: &str, addr: SocketAddr) -> TcpListener {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("entering {path}: {e}"));
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {path}: {e}"))
        })
        .join()
        .unwrap_or_else(|_| panic!("binding in {ns}"))
    }

    /// A command run inside `ns` (`ip netns exec`).
    pub fn command(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, program])
            .stdin(Stdio::null());
        command
    }

    /// Runs a command inside `ns` and returns its output.
    pub fn run(ns: &str, program: &str, args: &[&str]) -> Output {
        Self::command(ns, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} in {ns}: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and with them their peers.
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub())) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}t", self.prefix)])
            .output();
    }
}
