//! The names users and clusters see, pinned: every command and flag (with its `WEIR_*`
//! variable and default), the metric families Weir exports, the field managers its
//! status writes carry, the Leases it elects on and the reporters of its events. Scripts,
//! dashboards, alerts, RBAC and `kubectl` views depend on them, so a change here must be
//! deliberate: regenerate with `WEIR_BLESS=1 cargo test -p weir-tests --test contract`
//! and review the diff (adding is fine; renaming breaks users).

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{fmt::Write as _, path::PathBuf};

use clap::CommandFactory;
use prometheus_client::registry::Registry;

fn golden(name: &str) -> PathBuf {
    weir_tests::workspace_root().join("tests/golden").join(name)
}

/// Compares `actual` with the golden file, or rewrites it under `WEIR_BLESS=1`.
fn check(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let gone: Vec<&str> = expected
            .lines()
            .filter(|l| !actual.lines().any(|a| a == *l))
            .collect();
        let new: Vec<&str> = actual
            .lines()
            .filter(|l| !expected.lines().any(|e| e == *l))
            .collect();
        panic!(
            "{} changed.\nGone (breaks users):\n  {}\nNew:\n  {}\nIf deliberate: WEIR_BLESS=1 cargo test -p weir-tests --test contract",
            path.display(),
            gone.join("\n  "),
            new.join("\n  ")
        );
    }
}

/// One line per flag: `weir <command path> --flag [env NAME] [default VALUE]`.
fn describe(command: &clap::Command, path: &str, out: &mut String) {
    let path = if path.is_empty() {
        command.get_name().to_string()
    } else {
        format!("{path} {}", command.get_name())
    };
    writeln!(out, "{path}").unwrap();
    let mut flags: Vec<String> = command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let mut line = match (a.get_long(), a.get_short()) {
                (Some(long), Some(short)) => format!("{path} --{long} (-{short})"),
                (Some(long), None) => format!("{path} --{long}"),
                (None, _) => format!("{path} <{}>", a.get_id()),
            };
            if let Some(env) = a.get_env() {
                write!(line, " env {}", env.to_string_lossy()).unwrap();
            }
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                write!(line, " default {}", defaults.join(",")).unwrap();
            }
            line
        })
        .collect();
    flags.sort();
    for flag in flags {
        writeln!(out, "{flag}").unwrap();
    }
    for sub in command.get_subcommands() {
        describe(sub, &path, out);
    }
}

#[test]
fn commands_and_flags_stay() {
    let mut out = String::new();
    describe(&weir::cli::Cli::command(), "", &mut out);
    check("cli.txt", &out);
}

/// Every metric family any component registers, as `/metrics` names it.
fn metric_families() -> String {
    let mut registry = Registry::default();
    weir_runtime::metrics::SourceMetrics::register(&mut registry);
    weir_controllers::pod_autoscaler::run::AutoscalerMetrics::register(&mut registry);
    let (_state, rx) = tokio::sync::watch::channel(weir_store::ClusterState::default());
    weir_controllers::pod_autoscaler::simulated::LocalScaleApi::new(rx, &mut registry);
    weir_controllers::node_autoscaler::run::NodeMetrics::register(&mut registry);
    weir_controllers::mesh_tls::run::MeshMetrics::register(&mut registry);
    weir_xds::metrics::XdsMetrics::register(&mut registry);
    weir_xds::k8s::StatusMetrics::register(&mut registry);
    weir_xds::ratelimit::service::RateLimitMetrics::register(&mut registry);
    weir_xds::webhook::WebhookMetrics::register(&mut registry);
    weir_metrics_adapter::engine::EngineMetrics::register(&mut registry);
    weir_metrics_adapter::server::ServerMetrics::register(&mut registry);
    let mut names = registered_names(&format!("{registry:?}"));
    names.sort();
    names.dedup();
    names.join("\n") + "\n"
}

/// The names registered in a registry, sub-registry prefixes applied, read from its
/// `Debug` form: prometheus-client encodes a labelled family only once it has a sample,
/// and offers no other way to list what was registered. Names are as registered: a
/// counter `x` is exported as `x_total`.
fn registered_names(debug: &str) -> Vec<String> {
    let mut names = Vec::new();
    // (brace depth of the registry, its prefix)
    let mut prefixes: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut rest = debug;
    while let Some(c) = rest.chars().next() {
        // The quoted text after `opening` (which opens a brace), and what follows it.
        let quoted = |opening: &str| {
            let after = rest.strip_prefix(opening)?;
            let end = after.find('"')?;
            Some((&after[..end], &after[end + 1..]))
        };
        if let Some((prefix, after)) = quoted("Registry { prefix: Some(Prefix(\"") {
            depth += 1;
            prefixes.push((depth, prefix.to_string()));
            rest = after;
            continue;
        }
        if let Some((short, after)) = quoted("Descriptor { name: \"") {
            let mut name: Vec<&str> = prefixes.iter().map(|(_, p)| p.as_str()).collect();
            name.push(short);
            names.push(name.join("_"));
            depth += 1;
            rest = after;
            continue;
        }
        match c {
            '"' => {
                // Skip a string literal (help texts), escapes included.
                let mut chars = rest.char_indices().skip(1);
                let mut end = rest.len();
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
                continue;
            }
            '{' => depth += 1,
            '}' => {
                if prefixes.last().is_some_and(|(d, _)| *d == depth) {
                    prefixes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    names
}

#[test]
fn metric_families_stay() {
    check("metrics.txt", &metric_families());
}

#[test]
fn field_managers_leases_and_event_reporters_stay() {
    use weir_controllers::{mesh_tls, node_autoscaler, pod_autoscaler};
    let names = [
        (
            "field manager",
            "pod autoscaler",
            pod_autoscaler::k8s::FIELD_MANAGER,
        ),
        (
            "field manager",
            "node autoscaler",
            node_autoscaler::k8s::FIELD_MANAGER,
        ),
        (
            "field manager",
            "mesh-TLS controller",
            mesh_tls::k8s::FIELD_MANAGER,
        ),
        ("field manager", "xds-server", weir_xds::k8s::FIELD_MANAGER),
        ("lease", "controllers", weir_controllers::LEASE_NAME),
        ("lease", "xds-server", weir_xds::k8s::LEASE_NAME),
        (
            "event reporter",
            "pod autoscaler",
            pod_autoscaler::k8s::REPORTER,
        ),
        (
            "event reporter",
            "node autoscaler",
            node_autoscaler::k8s::REPORTER,
        ),
        (
            "event reporter",
            "mesh-TLS controller",
            mesh_tls::k8s::REPORTER,
        ),
    ];
    let text: String = names
        .iter()
        .map(|(what, whose, name)| format!("{what} of the {whose}: {name}\n"))
        .collect();
    check("names.txt", &text);
}

/// `--log-level info,weir=debug` (the documented filter) must keep reaching every
/// component: their log targets are their module paths, all under a `weir` crate.
#[test]
fn every_component_logs_under_weir() {
    let root = weir_tests::workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for member in weir_tests::workspace_members() {
        let text = std::fs::read_to_string(root.join(&member).join("Cargo.toml")).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .unwrap();
        assert!(
            name.starts_with("weir"),
            "{member}: crate {name} logs outside weir="
        );
    }
    assert!(manifest.contains("members"));
}

/// Duration flags take Go's spelling (what cluster-autoscaler and client-go flags take),
/// so values copied from those components work.
#[test]
fn duration_flags_take_go_durations() {
    use clap::Parser;
    use weir::cli::{Cli, Command};
    let cli = Cli::try_parse_from([
        "weir",
        "controllers",
        "--mesh-tls-interval",
        "1.5m",
        "--scale-down-unneeded-time",
        "1h30m",
        "--scan-interval",
        "90s",
    ])
    .unwrap();
    let Command::Controllers(args) = cli.command else {
        panic!("not controllers");
    };
    assert_eq!(args.mesh_tls_interval.as_secs(), 90);
    assert_eq!(args.nodes.scale_down_unneeded_time.as_secs(), 5400);
    assert_eq!(args.nodes.scan_interval.as_secs(), 90);
    let error = Cli::try_parse_from(["weir", "controllers", "--mesh-tls-interval=-5s"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("negative"), "{error}");
}
