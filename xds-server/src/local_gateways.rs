//! Local mode's gateway Envoys: `weir up` runs one Envoy per Gateway of Weir's class, as
//! a cluster runs a Deployment for it. The decisions (start, stop, restart after a
//! backoff) are the pure [`Supervisor`]'s; this adapter writes each Envoy's bootstrap,
//! spawns it on a free admin port, reaps it and reports its exit, sends SIGTERM to stop
//! it (SIGKILL after [`STOP_GRACE`]) and stops them all on shutdown.
//!
//! A `weir up` killed with SIGKILL cannot stop its Envoys; SIGTERM and SIGINT do.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_store::ClusterState;

use crate::{
    args::{GatewayEnvoys, LocalGatewayArgs},
    bootstrap::{BootstrapSpec, bootstrap_yaml},
    gateway_envoys::{Action, GatewayEnvoy, Supervisor, wanted_gateways},
    translate::{ProxyId, ProxyOptions},
};

/// How long an Envoy told to stop has before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The supervised Envoys as `/debug/proxies` shows them (empty when none are supervised).
pub type GatewayEnvoysView = Arc<Mutex<Vec<GatewayEnvoy>>>;

/// What every gateway Envoy is started with.
#[derive(Clone, Debug)]
struct Launch {
    envoy_bin: PathBuf,
    run_dir: PathBuf,
    xds_addr: SocketAddr,
    rate_limit_addr: SocketAddr,
    port_offset: u16,
    agent: AgentLaunch,
}

/// How each gateway's agent (`weir agent`, started next to its Envoy) proves the
/// gateway's identity: the token `weir up` mints for it, and the mesh's roots.
#[derive(Clone, Debug)]
pub struct AgentLaunch {
    /// The `weir` binary.
    pub weir_bin: PathBuf,
    /// `--token-dir`.
    pub token_dir: PathBuf,
    /// The mesh CA's root certificate.
    pub ca_root_file: PathBuf,
}

/// An Envoy's exit: the Gateway, its pid and how it ended.
type Exit = (ProxyId, u32, String);

/// Starts the supervisor (unless `--gateway-envoys off`) for the Gateways in `state`,
/// their Envoys connecting to `xds_addr` and `rate_limit_addr`. Returns the view for
/// `/debug/proxies`.
pub fn start_local_gateways(
    args: &LocalGatewayArgs,
    agent: AgentLaunch,
    xds_addr: SocketAddr,
    rate_limit_addr: SocketAddr,
    state: tokio::sync::watch::Receiver<ClusterState>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<GatewayEnvoysView> {
    let view = GatewayEnvoysView::default();
    if args.gateway_envoys == GatewayEnvoys::Off {
        info!("gateway Envoys are not supervised (--gateway-envoys off)");
        return Ok(view);
    }
    std::fs::create_dir_all(&args.gateway_run_dir).with_context(|| {
        format!(
            "cannot create --gateway-run-dir {}",
            args.gateway_run_dir.display()
        )
    })?;
    let launch = Launch {
        envoy_bin: args.envoy_bin.clone(),
        run_dir: args.gateway_run_dir.clone(),
        xds_addr: loopback_if_unspecified(xds_addr),
        rate_limit_addr: loopback_if_unspecified(rate_limit_addr),
        port_offset: args.gateway_port_offset,
        agent,
    };
    info!(envoy = %launch.envoy_bin.display(), run_dir = %launch.run_dir.display(), "supervising one Envoy per Gateway");
    tasks.spawn(supervise(launch, state, view.clone(), shutdown.clone()));
    Ok(view)
}

/// A listener on every address is reached on loopback from the same host.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

async fn supervise(
    launch: Launch,
    mut state: tokio::sync::watch::Receiver<ClusterState>,
    view: GatewayEnvoysView,
    shutdown: CancellationToken,
) {
    let began = Instant::now();
    let mut supervisor = Supervisor::default();
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<Exit>();
    loop {
        let wanted = wanted_gateways(&state.borrow_and_update());
        act(&launch, &mut supervisor, &wanted, began, &exits_tx);
        publish(&view, &supervisor);
        let restart_in = supervisor
            .next_restart()
            .map(|at| at.saturating_sub(began.elapsed()));
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = state.changed() => if changed.is_err() { break },
            Some((id, pid, how)) = exits.recv() => {
                match supervisor.exited(&id, pid, how.clone(), began.elapsed()) {
                    Some(wait) => warn!(gateway = %id, pid, exit = %how, restart_in = ?wait, log = %log_path(&launch.run_dir, &id).display(), "gateway Envoy exited; restarting it"),
                    None => info!(gateway = %id, pid, exit = %how, "gateway Envoy stopped"),
                }
            }
            () = tokio::time::sleep(restart_in.unwrap_or_default()), if restart_in.is_some() => {}
        }
    }
    // Shutdown: stop every Envoy, wait for them, kill those that outstay the grace.
    act(
        &launch,
        &mut supervisor,
        &Default::default(),
        began,
        &exits_tx,
    );
    let deadline = Instant::now() + STOP_GRACE;
    while !supervisor.pids().is_empty() {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some((id, pid, how))) => {
                supervisor.exited(&id, pid, how.clone(), began.elapsed());
                info!(gateway = %id, pid, exit = %how, "gateway Envoy stopped");
            }
            _ => {
                for pid in supervisor.pids() {
                    warn!(pid, "gateway Envoy did not stop in time; killing it");
                    signal(pid, Signal::KILL);
                }
                break;
            }
        }
    }
    publish(&view, &supervisor);
}

/// Carries out the supervisor's plan for `wanted`.
fn act(
    launch: &Launch,
    supervisor: &mut Supervisor,
    wanted: &std::collections::BTreeSet<ProxyId>,
    began: Instant,
    exits: &mpsc::UnboundedSender<Exit>,
) {
    for action in supervisor.plan(wanted, began.elapsed()) {
        match action {
            Action::Start(id) => match spawn(launch, &id, exits.clone()) {
                Ok((pid, admin_port)) => {
                    info!(gateway = %id, pid, admin_port, log = %log_path(&launch.run_dir, &id).display(), "gateway Envoy started");
                    supervisor.started(&id, pid, admin_port, began.elapsed());
                }
                Err(e) => {
                    warn!(gateway = %id, error = format!("{e:#}"), "gateway Envoy did not start; retrying after a backoff");
                    supervisor.start_failed(&id, format!("{e:#}"), began.elapsed());
                }
            },
            Action::Stop(id, pid) => {
                info!(gateway = %id, pid, "stopping gateway Envoy");
                signal(pid, Signal::TERM);
            }
        }
    }
}

fn publish(view: &GatewayEnvoysView, supervisor: &Supervisor) {
    *view.lock().unwrap_or_else(|e| e.into_inner()) = supervisor.view();
}

fn signal(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(e) = kill_process(pid, signal) {
        warn!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot signal gateway Envoy");
    }
}

fn file_stem(id: &ProxyId) -> String {
    format!("{}.{}", id.namespace, id.name)
}

fn log_path(run_dir: &Path, id: &ProxyId) -> PathBuf {
    run_dir.join(format!("{}.log", file_stem(id)))
}

/// Starts `id`'s agent: it proves the gateway's identity with the token `weir up` mints
/// and serves the certificate on `socket`.
fn spawn_agent(
    launch: &Launch,
    id: &ProxyId,
    socket: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.run_dir.join(format!("{}.agent.log", file_stem(id))))
        .context("the agent's log file")?;
    tokio::process::Command::new(&launch.agent.weir_bin)
        .arg("agent")
        .arg("--token-file")
        .arg(crate::local_tokens::token_path(
            &launch.agent.token_dir,
            &id.to_string(),
        ))
        .arg("--xds-addr")
        .arg(launch.xds_addr.to_string())
        .arg("--ca-root-file")
        .arg(&launch.agent.ca_root_file)
        .arg("--agent-socket")
        .arg(socket)
        .arg("--proxy")
        .arg(id.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {} agent", launch.agent.weir_bin.display()))
}

/// Writes the bootstrap and starts Envoy for `id` on a free admin port, with its agent; a
/// task reaps it (stopping the agent with it) and reports its exit on `exits`. Returns its
/// pid and admin port.
fn spawn(
    launch: &Launch,
    id: &ProxyId,
    exits: mpsc::UnboundedSender<Exit>,
) -> anyhow::Result<(u32, u16)> {
    // A port the kernel just handed out and gave back: free unless taken in between.
    let admin_port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free admin port")?
        .port();
    let socket = std::path::absolute(launch.run_dir.join(format!("{}.sock", file_stem(id))))
        .context("the agent's socket path")?;
    let mut agent = spawn_agent(launch, id, &socket)?;
    let yaml = bootstrap_yaml(&BootstrapSpec {
        proxy: id.clone(),
        xds_addr: launch.xds_addr.to_string(),
        rate_limit_addr: launch.rate_limit_addr.to_string(),
        admin_port,
        stats_port: None,
        options: ProxyOptions {
            gateway_port_offset: launch.port_offset,
            ..ProxyOptions::default()
        },
        delta: false,
        health_port: None,
        app_probers: Default::default(),
        agent_socket: socket.display().to_string(),
    })
    .context("rendering the bootstrap")?;
    let bootstrap = launch.run_dir.join(format!("{}.yaml", file_stem(id)));
    std::fs::write(&bootstrap, yaml).with_context(|| format!("writing {}", bootstrap.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&launch.run_dir, id))
        .with_context(|| format!("opening {}", log_path(&launch.run_dir, id).display()))?;
    let mut child = tokio::process::Command::new(&launch.envoy_bin)
        .arg("-c")
        .arg(&bootstrap)
        .args(["--disable-hot-restart", "-l", "warn"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", launch.envoy_bin.display()))?;
    let pid = child.id().context("the Envoy exited at once")?;
    let id = id.clone();
    tokio::spawn(async move {
        let how = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        let _ = agent.kill().await;
        let _ = exits.send((id, pid, how));
    });
    Ok((pid, admin_port))
}
