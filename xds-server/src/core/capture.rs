//! Transparent capture: the iptables rules `weir capture` programs in a meshed pod's
//! network namespace, so the application's TCP goes through its sidecar without the
//! application knowing. Pure: the rules are text for `iptables-restore`; running it is the
//! command's job.
//!
//! In the `nat` table (IPv4):
//! - **inbound** (`PREROUTING`): TCP to the pod goes to the sidecar's inbound capture port,
//!   except the sidecar's own ports (health, statistics) and excluded ports; with
//!   `include_inbound_ports`, only those ports;
//! - **outbound** (`OUTPUT`): TCP the pod opens goes to the sidecar's outbound capture port,
//!   except the sidecar's own traffic (by uid and gid, so it can reach the real
//!   destination), loopback, excluded ports and excluded CIDRs.
//!
//! Every rule lives in chains of Weir's own (`WEIR_*`), jumped to from the built-in ones,
//! so the rules read as a unit and a second run replaces them rather than adding twice.

use std::{fmt::Write as _, net::Ipv4Addr};

/// The sidecar's ports that must never be captured.
pub mod ports {
    /// Envoy's admin (loopback only).
    pub const ADMIN: u16 = 15000;
    /// The outbound capture listener.
    pub const OUTBOUND: u16 = 15001;
    /// The inbound capture listener.
    pub const INBOUND: u16 = 15006;
    /// The plaintext health port: rewritten kubelet probes and the proxy's readiness.
    pub const HEALTH: u16 = 15021;
    /// `/stats/prometheus` for Prometheus.
    pub const STATS: u16 = 15090;
}

/// The uid (and gid) the sidecar runs as; its traffic is never captured.
pub const PROXY_UID: u32 = 1337;

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0–32.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let address: Ipv4Addr = address
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or CIDR (a.b.c.d/len)"))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0–32"))?;
        Ok(Cidr { address, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// The sidecar's inbound capture port.
    pub inbound_port: u16,
    /// The sidecar's outbound capture port.
    pub outbound_port: u16,
    /// The sidecar's uid and gid.
    pub proxy_uid: u32,
    /// Inbound ports left alone (the sidecar's health and statistics ports always are).
    pub exclude_inbound_ports: Vec<u16>,
    /// When not empty: capture inbound traffic to these ports only.
    pub include_inbound_ports: Vec<u16>,
    /// Outbound destination ports left alone.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations left alone.
    pub exclude_outbound_cidrs: Vec<Cidr>,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec {
            inbound_port: ports::INBOUND,
            outbound_port: ports::OUTBOUND,
            proxy_uid: PROXY_UID,
            exclude_inbound_ports: Vec::new(),
            include_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
        }
    }
}

/// Weir's chains, in the order they are declared.
pub const CHAINS: [&str; 4] = [
    "WEIR_INBOUND",
    "WEIR_IN_REDIRECT",
    "WEIR_OUTPUT",
    "WEIR_REDIRECT",
];

/// Ports a sidecar serves on the pod's address itself: never redirected inbound.
fn sidecar_ports(spec: &CaptureSpec) -> [u16; 4] {
    [
        ports::HEALTH,
        ports::STATS,
        spec.inbound_port,
        spec.outbound_port,
    ]
}

/// The `iptables-restore` input (`--noflush`, so other tables and chains are kept) that
/// installs the capture. Weir's chains are flushed first, so running it twice leaves one
/// copy; the jumps from the built-in chains are deleted by [`cleanup_rules`] only.
pub fn rules(spec: &CaptureSpec) -> String {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        // Declaring a chain in restore input creates it, or flushes it if it exists.
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let rule = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    rule(
        &mut out,
        format!(
            "-A WEIR_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
            spec.inbound_port
        ),
    );
    rule(
        &mut out,
        format!(
            "-A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports {}",
            spec.outbound_port
        ),
    );

    // Inbound.
    let mut excluded_in: Vec<u16> = sidecar_ports(spec).to_vec();
    excluded_in.extend(&spec.exclude_inbound_ports);
    excluded_in.sort_unstable();
    excluded_in.dedup();
    for port in &excluded_in {
        rule(
            &mut out,
            format!("-A WEIR_INBOUND -p tcp --dport {port} -j RETURN"),
        );
    }
    if spec.include_inbound_ports.is_empty() {
        rule(
            &mut out,
            "-A WEIR_INBOUND -p tcp -j WEIR_IN_REDIRECT".into(),
        );
    } else {
        for port in &spec.include_inbound_ports {
            rule(
                &mut out,
                format!("-A WEIR_INBOUND -p tcp --dport {port} -j WEIR_IN_REDIRECT"),
            );
        }
    }

    // Outbound: the sidecar's own connections first, then loopback, then exclusions.
    let uid = spec.proxy_uid;
    rule(
        &mut out,
        format!("-A WEIR_OUTPUT -m owner --uid-owner {uid} -j RETURN"),
    );
    rule(
        &mut out,
        format!("-A WEIR_OUTPUT -m owner --gid-owner {uid} -j RETURN"),
    );
    rule(&mut out, "-A WEIR_OUTPUT -o lo -j RETURN".into());
    rule(&mut out, "-A WEIR_OUTPUT -d 127.0.0.1/32 -j RETURN".into());
    for port in &spec.exclude_outbound_ports {
        rule(
            &mut out,
            format!("-A WEIR_OUTPUT -p tcp --dport {port} -j RETURN"),
        );
    }
    for cidr in &spec.exclude_outbound_cidrs {
        rule(&mut out, format!("-A WEIR_OUTPUT -d {cidr} -j RETURN"));
    }
    rule(&mut out, "-A WEIR_OUTPUT -j WEIR_REDIRECT".into());
    out.push_str("COMMIT\n");
    out
}

/// The jumps from the built-in `nat` chains to Weir's (built-in chain, Weir's chain), for
/// TCP. The command checks each with `iptables -C` and adds it when missing, so the
/// capture is installed once however often it runs.
pub const JUMPS: [(&str, &str); 2] = [("PREROUTING", "WEIR_INBOUND"), ("OUTPUT", "WEIR_OUTPUT")];

/// Parses a comma-separated port list (`"8080, 9090"`); empty gives none. `what` names the
/// setting in the error.
pub fn parse_ports(what: &str, text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{what}: {s:?} is not a port number (1–65535)"))
        })
        .collect()
}

/// Parses a comma-separated CIDR list; empty gives none.
pub fn parse_cidrs(what: &str, text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// The rules that undo [`rules`]: Weir's chains flushed (the jumps are deleted by the
/// command, which knows whether they exist).
pub fn cleanup_rules() -> String {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capture_redirects_everything_but_the_sidecar() {
        let text = rules(&CaptureSpec::default());
        let expected = "\
*nat
:WEIR_INBOUND - [0:0]
:WEIR_IN_REDIRECT - [0:0]
:WEIR_OUTPUT - [0:0]
:WEIR_REDIRECT - [0:0]
-A WEIR_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A WEIR_INBOUND -p tcp --dport 15001 -j RETURN
-A WEIR_INBOUND -p tcp --dport 15006 -j RETURN
-A WEIR_INBOUND -p tcp --dport 15021 -j RETURN
-A WEIR_INBOUND -p tcp --dport 15090 -j RETURN
-A WEIR_INBOUND -p tcp -j WEIR_IN_REDIRECT
-A WEIR_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A WEIR_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A WEIR_OUTPUT -o lo -j RETURN
-A WEIR_OUTPUT -d 127.0.0.1/32 -j RETURN
-A WEIR_OUTPUT -j WEIR_REDIRECT
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn exclusions_and_inclusions_become_returns_and_port_jumps() {
        let spec = CaptureSpec {
            exclude_inbound_ports: vec![9000, 15021],
            include_inbound_ports: vec![8080],
            exclude_outbound_ports: vec![5432],
            exclude_outbound_cidrs: parse_cidrs("x", "10.0.0.0/8, 169.254.169.254").unwrap(),
            ..CaptureSpec::default()
        };
        let text = rules(&spec);
        assert!(text.contains("-A WEIR_INBOUND -p tcp --dport 9000 -j RETURN\n"));
        assert_eq!(text.matches("--dport 15021 -j RETURN").count(), 1);
        assert!(text.contains("-A WEIR_INBOUND -p tcp --dport 8080 -j WEIR_IN_REDIRECT\n"));
        assert!(!text.contains("-A WEIR_INBOUND -p tcp -j WEIR_IN_REDIRECT"));
        assert!(text.contains("-A WEIR_OUTPUT -p tcp --dport 5432 -j RETURN\n"));
        assert!(text.contains("-A WEIR_OUTPUT -d 10.0.0.0/8 -j RETURN\n"));
        assert!(text.contains("-A WEIR_OUTPUT -d 169.254.169.254/32 -j RETURN\n"));
        // Exclusions come before the catch-all jump.
        let last = text.find("-A WEIR_OUTPUT -j WEIR_REDIRECT").unwrap();
        assert!(text.find("169.254.169.254").unwrap() < last);
    }

    #[test]
    fn bad_lists_name_the_setting() {
        assert_eq!(parse_ports("p", " 80 ,443,").unwrap(), vec![80, 443]);
        assert!(parse_ports("p", "").unwrap().is_empty());
        let e = parse_ports("weir.io/exclude-inbound-ports", "80,http").unwrap_err();
        assert!(e.contains("weir.io/exclude-inbound-ports") && e.contains("\"http\""));
        assert!(parse_ports("p", "0").is_err() && parse_ports("p", "70000").is_err());
        let e = parse_cidrs("weir.io/exclude-outbound-cidrs", "10.0.0.0/33").unwrap_err();
        assert!(e.contains("weir.io/exclude-outbound-cidrs") && e.contains("0–32"));
        assert!(parse_cidrs("c", "fd00::/8").is_err());
    }
}
