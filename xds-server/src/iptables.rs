//! `weir capture`: installs (or removes) the capture rules of [`crate::capture`] in the
//! current network namespace with `iptables-restore`, then checks the jumps into Weir's
//! chains are there exactly once.
//!
//! The rules are the pure core's; this module only picks the iptables backend and runs
//! the binaries (Debian's `iptables` package: `iptables-nft`, `iptables-legacy`, and their
//! `-restore`/`-save`). Shelling out is deliberate: the iptables binaries are the stable
//! interface to both kernel backends, and what Istio's and Linkerd's init containers use.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::capture::{self, CaptureSpec, JUMPS};
use anyhow::{Context, bail};

use crate::args::{CaptureArgs, IptablesBackend};

/// The spec from the flags; a bad list names its flag.
pub fn spec(args: &CaptureArgs) -> anyhow::Result<CaptureSpec> {
    let ports =
        |flag: &str, text: &str| capture::parse_ports(flag, text).map_err(anyhow::Error::msg);
    Ok(CaptureSpec {
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        proxy_uid: args.proxy_uid,
        exclude_inbound_ports: ports("--exclude-inbound-ports", &args.exclude_inbound_ports)?,
        include_inbound_ports: ports("--include-inbound-ports", &args.include_inbound_ports)?,
        exclude_outbound_ports: ports("--exclude-outbound-ports", &args.exclude_outbound_ports)?,
        exclude_outbound_cidrs: capture::parse_cidrs(
            "--exclude-outbound-cidrs",
            &args.exclude_outbound_cidrs,
        )
        .map_err(anyhow::Error::msg)?,
    })
}

/// Runs `weir capture`.
pub fn run(args: &CaptureArgs) -> anyhow::Result<()> {
    let spec = spec(args)?;
    if args.dry_run {
        print!("{}", capture::rules(&spec));
        return Ok(());
    }
    let backend = backend(args.iptables_backend)?;
    if args.cleanup {
        for (builtin, chain) in JUMPS {
            // Delete every copy; `-D` fails once none is left.
            while iptables(
                backend,
                &["-t", "nat", "-D", builtin, "-p", "tcp", "-j", chain],
            )
            .is_ok()
            {}
        }
        restore(backend, &capture::cleanup_rules())?;
        for chain in capture::CHAINS {
            let _ = iptables(backend, &["-t", "nat", "-X", chain]);
        }
        eprintln!("weir capture: removed Weir's rules ({backend})");
        return Ok(());
    }
    restore(backend, &capture::rules(&spec))?;
    for (builtin, chain) in JUMPS {
        let rule = ["-p", "tcp", "-j", chain];
        let check: Vec<&str> = ["-t", "nat", "-C", builtin]
            .iter()
            .chain(&rule)
            .copied()
            .collect();
        if iptables(backend, &check).is_err() {
            let add: Vec<&str> = ["-t", "nat", "-A", builtin]
                .iter()
                .chain(&rule)
                .copied()
                .collect();
            iptables(backend, &add)?;
        }
    }
    eprintln!(
        "weir capture: inbound TCP → :{}, outbound TCP → :{}, except uid {} ({backend})",
        spec.inbound_port, spec.outbound_port, spec.proxy_uid
    );
    Ok(())
}

/// The binaries' name suffix: `nft` or `legacy`.
fn backend(choice: IptablesBackend) -> anyhow::Result<&'static str> {
    match choice {
        IptablesBackend::Nft => return Ok("nft"),
        IptablesBackend::Legacy => return Ok("legacy"),
        IptablesBackend::Auto => {}
    }
    // The backend that already holds rules here is the one the node uses; mixing the two
    // would split the rules between tables that do not see each other.
    let rule_count = |name: &str| -> Option<usize> {
        let out = Command::new(format!("iptables-{name}-save"))
            .output()
            .ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("-A "))
                .count()
        })
    };
    match (rule_count("nft"), rule_count("legacy")) {
        (Some(n), _) if n > 0 => Ok("nft"),
        (_, Some(n)) if n > 0 => Ok("legacy"),
        (Some(_), _) => Ok("nft"),
        (None, Some(_)) => Ok("legacy"),
        (None, None) => bail!(
            "neither iptables-nft-save nor iptables-legacy-save runs here: install iptables \
             (Debian's `iptables` package), or pass --iptables-backend"
        ),
    }
}

fn iptables(backend: &str, args: &[&str]) -> anyhow::Result<()> {
    let binary = format!("iptables-{backend}");
    let out = Command::new(&binary)
        .args(args)
        .output()
        .with_context(|| format!("running {binary}"))?;
    if !out.status.success() {
        bail!(
            "{binary} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn restore(backend: &str, rules: &str) -> anyhow::Result<()> {
    let binary = format!("iptables-{backend}-restore");
    let mut child = Command::new(&binary)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {binary} (install Debian's `iptables` package)"))?;
    child
        .stdin
        .take()
        .context("iptables-restore's input")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{binary} refused the rules: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
