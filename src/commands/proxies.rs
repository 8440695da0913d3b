//! `weir bootstrap` and `weir proxy-status`: the commands that deal with Envoy proxies.

use std::process::ExitCode;

use anyhow::{Context, bail};
use weir_xds::{
    bootstrap::{BootstrapSpec, bootstrap_yaml},
    registry::ProxyStatus,
    translate::{ProxyId, ProxyOptions, Role},
};

use crate::cli::{BootstrapArgs, ProxyRole, ProxyStatusArgs, XdsProtocol};

/// Prints the bootstrap.
pub fn print_bootstrap(args: &BootstrapArgs) -> anyhow::Result<()> {
    let spec = BootstrapSpec {
        proxy: ProxyId {
            role: match args.role {
                ProxyRole::Sidecar => Role::Sidecar,
                ProxyRole::Gateway => Role::Gateway,
            },
            name: args.name.clone(),
            namespace: args.namespace.clone(),
        },
        xds_addr: args.xds_addr.clone(),
        rate_limit_addr: args.rate_limit_addr.clone(),
        admin_port: args.admin_port,
        stats_port: args.stats_port,
        options: ProxyOptions {
            inbound_port: args.inbound_port,
            outbound_port: args.outbound_port,
            app_port: args.app_port,
            gateway_port_offset: args.gateway_port_offset,
            capture: args.capture,
            on_demand: args.on_demand
                && args.role == ProxyRole::Sidecar
                && args.xds_protocol == XdsProtocol::Delta,
        },
        delta: args.xds_protocol == XdsProtocol::Delta,
        health_port: args.health_port,
        agent_socket: args.agent_socket.clone(),
        app_probers: match args.app_probes.as_deref().map(str::trim) {
            None | Some("") => Default::default(),
            Some(text) => serde_json::from_str(text).context(
                "--app-probes (WEIR_APP_PROBES): not the injector's weir.io/original-probes JSON",
            )?,
        },
    };
    let yaml = bootstrap_yaml(&spec)?;
    match &args.output {
        None => print!("{yaml}"),
        Some(path) => std::fs::write(path, yaml)
            .with_context(|| format!("writing --output {}", path.display()))?,
    }
    Ok(())
}

/// Prints the connected proxies from a running Weir's admin endpoint.
pub fn proxy_status(args: &ProxyStatusArgs) -> anyhow::Result<ExitCode> {
    let (status, body) =
        weir_runtime::admin_client::get_blocking(args.admin_addr, "/debug/proxies").with_context(
            || {
                format!(
                    "asking Weir's admin endpoint at {} (--admin-addr)",
                    args.admin_addr
                )
            },
        )?;
    if status != 200 {
        bail!(
            "{} answered {status} for /debug/proxies: {}",
            args.admin_addr,
            body.trim()
        );
    }
    let value: serde_json::Value = serde_json::from_str(&body).context("reading /debug/proxies")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let proxies: Vec<ProxyStatus> =
        serde_json::from_value::<Vec<serde_json::Value>>(value["proxies"].clone())
            .context("reading /debug/proxies")?
            .into_iter()
            .filter_map(|p| parse_status(&p))
            .collect();
    println!(
        "{:<40} {:<10} {:<18} {:<18} LAST NACK",
        "PROXY", "TYPE", "SENT", "ACKED"
    );
    for proxy in &proxies {
        for (type_name, status) in &proxy.types {
            let nack = status
                .last_nack
                .as_ref()
                .map(|n| format!("{}: {}", n.version, n.message))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<40} {:<10} {:<18} {:<18} {}",
                proxy.node_id,
                type_name,
                status.sent.as_deref().unwrap_or("-"),
                status.acked.as_deref().unwrap_or("-"),
                nack
            );
        }
    }
    if proxies.is_empty() {
        eprintln!("no proxies connected");
    }
    // Callers refused for want of proof.
    let refused: Vec<weir_xds::registry::Refused> =
        serde_json::from_value(value["refused"].clone()).unwrap_or_default();
    if !refused.is_empty() {
        println!();
        println!(
            "{:<9} {:<40} {:<36} {:<22} {:<6} WHY",
            "REFUSED", "CLAIMED", "PROVED", "REASON", "TIMES"
        );
        for r in &refused {
            println!(
                "{:<9} {:<40} {:<36} {:<22} {:<6} {}",
                r.request,
                if r.claimed.is_empty() {
                    "-"
                } else {
                    &r.claimed
                },
                r.proven,
                r.reason,
                r.count,
                r.message
            );
        }
    }
    // Local mode: the gateway Envoys `weir up` runs.
    let envoys = value["gatewayEnvoys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !envoys.is_empty() {
        println!();
        println!(
            "{:<40} {:<11} {:<8} {:<6} {:<9} LAST EXIT",
            "GATEWAY ENVOY", "STATE", "PID", "ADMIN", "RESTARTS"
        );
        let field = |e: &serde_json::Value, k: &str| match &e[k] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for envoy in &envoys {
            println!(
                "{:<40} {:<11} {:<8} {:<6} {:<9} {}",
                field(envoy, "nodeId"),
                field(envoy, "state"),
                field(envoy, "pid"),
                field(envoy, "adminPort"),
                field(envoy, "restarts"),
                field(envoy, "lastExit"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_status(value: &serde_json::Value) -> Option<ProxyStatus> {
    let types = value.get("types")?.as_object()?;
    Some(ProxyStatus {
        stream: value.get("stream")?.as_u64()?,
        node_id: value.get("node_id")?.as_str()?.to_string(),
        admin_port: value
            .get("admin_port")
            .and_then(|p| p.as_u64())
            .and_then(|p| u16::try_from(p).ok()),
        protocol: if value.get("protocol")?.as_str()? == "delta" {
            "delta"
        } else {
            "sotw"
        },
        types: types
            .iter()
            .filter_map(|(name, status)| {
                let name: &'static str = match name.as_str() {
                    "clusters" => "clusters",
                    "endpoints" => "endpoints",
                    "listeners" => "listeners",
                    "secrets" => "secrets",
                    "routes" => "routes",
                    "virtualHosts" => "virtualHosts",
                    _ => return None,
                };
                Some((name, serde_json::from_value(status.clone()).ok()?))
            })
            .collect(),
    })
}
