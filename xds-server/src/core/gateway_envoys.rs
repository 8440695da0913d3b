//! Which gateway Envoys local mode runs, and when it (re)starts them: one Envoy per
//! Gateway of Weir's class, started when the Gateway appears, stopped when it goes,
//! restarted with backoff when it exits on its own. The state machine is pure (time is a
//! [`Duration`] since the supervisor began, processes are pids it is told about); the
//! local-mode adapter (`gateway_envoys` in the runtime) spawns, signals and reaps the
//! processes and feeds their exits back.
//!
//! In a cluster the same Gateways get a Deployment instead, and Kubernetes restarts them.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::Serialize;
use weir_store::ClusterState;

use crate::translate::{ProxyId, Role, gateway::is_weirs};

/// The first restart waits this long; each further one twice as long as the last.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An Envoy that ran this long before it exited starts again at [`FIRST_BACKOFF`].
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The Gateways that should have an Envoy: those of Weir's class with a listener.
pub fn wanted_gateways(state: &ClusterState) -> BTreeSet<ProxyId> {
    state
        .gateways
        .iter()
        .filter(|(_, gateway)| is_weirs(state, gateway) && !gateway.spec.listeners.is_empty())
        .map(|(key, _)| ProxyId {
            role: Role::Gateway,
            name: key.name.clone(),
            namespace: key.namespace.clone().unwrap_or_else(|| "default".into()),
        })
        .collect()
}

/// What the adapter should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start an Envoy for this Gateway.
    Start(ProxyId),
    /// Stop (SIGTERM) the Envoy with this pid, serving this Gateway.
    Stop(ProxyId, u32),
}

/// One gateway Envoy as `/debug/proxies` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayEnvoy {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// The node id it connects with.
    pub node_id: String,
    /// `running`, `stopping` or `restarting` (waiting for its backoff).
    pub state: &'static str,
    /// Its pid while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its Envoy admin port on 127.0.0.1 (the last one, while it waits to restart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    /// Times it was restarted after exiting on its own.
    pub restarts: u32,
    /// How it last ended, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Running {
        pid: u32,
        since: Duration,
    },
    /// Told to stop; its exit is not a crash.
    Stopping {
        pid: u32,
    },
    /// Exited (or failed to start): starts again at `at`.
    Waiting {
        at: Duration,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    phase: Phase,
    admin_port: Option<u16>,
    restarts: u32,
    /// Exits in a row that came sooner than [`HEALTHY_RUN`] after the start.
    failures: u32,
    last_exit: Option<String>,
}

/// The supervisor's record of gateway Envoys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Supervisor {
    entries: BTreeMap<ProxyId, Entry>,
}

/// The wait before restart number `failures` (1 for the first): 1 s, 2 s, 4 s, … up to
/// [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl Supervisor {
    /// What to do at `now` for the `wanted` Gateways: start those without an Envoy (and
    /// those whose backoff is over), stop those no longer wanted.
    pub fn plan(&mut self, wanted: &BTreeSet<ProxyId>, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.entries.retain(|id, entry| {
            if wanted.contains(id) {
                return true;
            }
            match entry.phase {
                Phase::Running { pid, .. } => {
                    entry.phase = Phase::Stopping { pid };
                    actions.push(Action::Stop(id.clone(), pid));
                    true
                }
                Phase::Stopping { .. } => true,
                Phase::Waiting { .. } => false,
            }
        });
        for id in wanted {
            match self.entries.get(id).map(|e| &e.phase) {
                None => actions.push(Action::Start(id.clone())),
                Some(Phase::Waiting { at }) if *at <= now => {
                    actions.push(Action::Start(id.clone()))
                }
                _ => {}
            }
        }
        actions
    }

    /// The record of `id`, new (as if waiting since `now`) when there is none.
    fn entry(&mut self, id: &ProxyId, now: Duration) -> &mut Entry {
        self.entries.entry(id.clone()).or_insert(Entry {
            phase: Phase::Waiting { at: now },
            admin_port: None,
            restarts: 0,
            failures: 0,
            last_exit: None,
        })
    }

    /// The Envoy for `id` started as `pid`, its admin on `admin_port`.
    pub fn started(&mut self, id: &ProxyId, pid: u32, admin_port: u16, now: Duration) {
        let entry = self.entry(id, now);
        if matches!(entry.phase, Phase::Waiting { .. }) && entry.last_exit.is_some() {
            entry.restarts += 1;
        }
        entry.phase = Phase::Running { pid, since: now };
        entry.admin_port = Some(admin_port);
    }

    /// Starting the Envoy for `id` failed (`why`): it is tried again after a backoff.
    pub fn start_failed(&mut self, id: &ProxyId, why: String, now: Duration) {
        let entry = self.entry(id, now);
        entry.failures += 1;
        entry.phase = Phase::Waiting {
            at: now + backoff(entry.failures),
        };
        entry.last_exit = Some(why);
    }

    /// The process `pid` for `id` exited (`how`, e.g. "exit status: 1"). Returns the
    /// wait before it is restarted; `None` when it was told to stop (or is not known).
    pub fn exited(
        &mut self,
        id: &ProxyId,
        pid: u32,
        how: String,
        now: Duration,
    ) -> Option<Duration> {
        let entry = self.entries.get_mut(id)?;
        match entry.phase {
            Phase::Stopping { pid: stopping } if stopping == pid => {
                self.entries.remove(id);
                None
            }
            Phase::Running {
                pid: running,
                since,
            } if running == pid => {
                entry.failures = if now.saturating_sub(since) >= HEALTHY_RUN {
                    1
                } else {
                    entry.failures + 1
                };
                let wait = backoff(entry.failures);
                entry.phase = Phase::Waiting { at: now + wait };
                entry.last_exit = Some(how);
                Some(wait)
            }
            _ => None,
        }
    }

    /// The pids of every Envoy still running or stopping.
    pub fn pids(&self) -> Vec<u32> {
        self.entries
            .values()
            .filter_map(|e| match e.phase {
                Phase::Running { pid, .. } | Phase::Stopping { pid } => Some(pid),
                Phase::Waiting { .. } => None,
            })
            .collect()
    }

    /// When the next backoff ends, if any Envoy is waiting.
    pub fn next_restart(&self) -> Option<Duration> {
        self.entries
            .values()
            .filter_map(|e| match e.phase {
                Phase::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Every gateway Envoy, for `/debug/proxies`.
    pub fn view(&self) -> Vec<GatewayEnvoy> {
        self.entries
            .iter()
            .map(|(id, e)| {
                let (state, pid) = match e.phase {
                    Phase::Running { pid, .. } => ("running", Some(pid)),
                    Phase::Stopping { pid } => ("stopping", Some(pid)),
                    Phase::Waiting { .. } => ("restarting", None),
                };
                GatewayEnvoy {
                    gateway: format!("{}/{}", id.namespace, id.name),
                    node_id: id.to_string(),
                    state,
                    pid,
                    admin_port: e.admin_port,
                    restarts: e.restarts,
                    last_exit: e.last_exit.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
        metadata: {name: weir}\nspec: {controllerName: weir.io/gateway-controller}\n---\n\
        apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
        metadata: {name: other}\nspec: {controllerName: example.com/other}\n";

    fn gateway(name: &str, class: &str) -> String {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {{name: {name}, namespace: ingress}}\n\
             spec: {{gatewayClassName: {class}, listeners: [{{name: http, port: 8080, protocol: HTTP}}]}}\n"
        )
    }

    fn id(name: &str) -> ProxyId {
        ProxyId {
            role: Role::Gateway,
            name: name.into(),
            namespace: "ingress".into(),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn only_gateways_of_weirs_class_get_an_envoy() {
        let state = crate::test_support::state(&format!(
            "{CLASS}{}{}",
            gateway("public", "weir"),
            gateway("theirs", "other")
        ));
        assert_eq!(wanted_gateways(&state), BTreeSet::from([id("public")]));
    }

    #[test]
    fn start_crash_backoff_restart_and_stop() {
        let mut s = Supervisor::default();
        let wanted = BTreeSet::from([id("public")]);
        assert_eq!(s.plan(&wanted, secs(0)), [Action::Start(id("public"))]);
        s.started(&id("public"), 100, 19001, secs(0));
        assert_eq!(s.plan(&wanted, secs(1)), [], "running: nothing to do");

        // It crashes after 5 s: restarted after 1 s, then 2 s, 4 s while it keeps crashing.
        assert_eq!(
            s.exited(&id("public"), 100, "signal: 9".into(), secs(5)),
            Some(secs(1))
        );
        assert_eq!(s.plan(&wanted, secs(5)), [], "backing off");
        assert_eq!(s.next_restart(), Some(secs(6)));
        assert_eq!(s.plan(&wanted, secs(6)), [Action::Start(id("public"))]);
        s.started(&id("public"), 101, 19002, secs(6));
        assert_eq!(
            s.exited(&id("public"), 101, "exit status: 1".into(), secs(7)),
            Some(secs(2))
        );
        s.started(&id("public"), 102, 19003, secs(9));
        assert_eq!(
            s.exited(&id("public"), 102, "exit status: 1".into(), secs(10)),
            Some(secs(4))
        );
        // A run longer than HEALTHY_RUN starts the backoff over.
        s.started(&id("public"), 103, 19004, secs(14));
        assert_eq!(
            s.exited(&id("public"), 103, "exit status: 1".into(), secs(100)),
            Some(secs(1))
        );
        s.started(&id("public"), 104, 19005, secs(101));
        let view = s.view();
        assert_eq!(view.len(), 1);
        assert_eq!(
            (
                view[0].state,
                view[0].pid,
                view[0].admin_port,
                view[0].restarts
            ),
            ("running", Some(104), Some(19005), 4)
        );
        assert_eq!(view[0].node_id, "gateway~public.ingress");

        // The Gateway is deleted: stopped, and its exit is no crash.
        assert_eq!(
            s.plan(&BTreeSet::new(), secs(102)),
            [Action::Stop(id("public"), 104)]
        );
        assert_eq!(s.plan(&BTreeSet::new(), secs(103)), [], "asked once");
        assert_eq!(s.pids(), [104]);
        assert_eq!(
            s.exited(&id("public"), 104, "exit status: 0".into(), secs(103)),
            None
        );
        assert_eq!(s.view(), []);
        assert_eq!(s.pids(), Vec::<u32>::new());
    }

    #[test]
    fn a_failed_start_is_retried_and_a_stale_exit_is_ignored() {
        let mut s = Supervisor::default();
        let wanted = BTreeSet::from([id("public")]);
        s.plan(&wanted, secs(0));
        s.start_failed(&id("public"), "envoy: not found".into(), secs(0));
        assert_eq!(s.plan(&wanted, secs(0)), []);
        assert_eq!(s.plan(&wanted, secs(1)), [Action::Start(id("public"))]);
        s.started(&id("public"), 7, 19001, secs(1));
        // An exit of a pid it no longer runs changes nothing.
        assert_eq!(
            s.exited(&id("public"), 6, "exit status: 1".into(), secs(2)),
            None
        );
        assert_eq!(s.view()[0].state, "running");
        // Deleted while waiting: forgotten at once.
        assert_eq!(
            s.exited(&id("public"), 7, "exit status: 1".into(), secs(3)),
            Some(secs(2))
        );
        assert_eq!(s.plan(&BTreeSet::new(), secs(3)), []);
        assert_eq!(s.view(), []);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
