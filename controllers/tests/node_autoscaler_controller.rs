//! The node autoscaler's pass against a recording API: what it calls, what status and
//! events it writes, and how it backs off.

#![allow(clippy::unwrap_used)]

mod node_fixtures;

use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use node_fixtures::*;
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::{
    Settings,
    controller::{Event, Memory, NodeApi, sync},
};
use weir_crds::{NodePool, node_pool::NodePoolStatus};
use weir_store::{ClusterState, Object};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    statuses: Mutex<Vec<(String, NodePoolStatus)>>,
    events: Mutex<Vec<(&'static str, String)>>,
    fail_scale: bool,
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn status(&self, pool: &str) -> NodePoolStatus {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _)| p == pool)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no status written for {pool}"))
    }
    fn events(&self) -> Vec<(&'static str, String)> {
        self.events.lock().unwrap().clone()
    }
}

impl NodeApi for Recorder {
    async fn set_size(&self, pool: &NodePool, target: i64) -> Result<(), String> {
        let name = pool.metadata.name.clone().unwrap();
        self.calls
            .lock()
            .unwrap()
            .push(format!("set_size {name} {target}"));
        if self.fail_scale {
            Err("quota exceeded".into())
        } else {
            Ok(())
        }
    }
    async fn remove_node(
        &self,
        pool: &NodePool,
        node: &str,
        evict: &[String],
        target: i64,
    ) -> Result<(), String> {
        let name = pool.metadata.name.clone().unwrap();
        self.calls.lock().unwrap().push(format!(
            "remove_node {name} {node} [{}] {target}",
            evict.join(",")
        ));
        Ok(())
    }
    async fn write_status(&self, pool: &str, status: &NodePoolStatus) -> Result<(), String> {
        self.statuses
            .lock()
            .unwrap()
            .push((pool.to_string(), status.clone()));
        Ok(())
    }
    async fn mark_unneeded(&self, node: &str, since: Option<Timestamp>) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!(
            "mark_unneeded {node} {}",
            since.map_or("-".to_string(), |t| t.to_string())
        ));
        Ok(())
    }
    async fn event(&self, _pool: &NodePool, event: &Event) -> Result<(), String> {
        self.events
            .lock()
            .unwrap()
            .push((event.reason, event.message.clone()));
        Ok(())
    }
}

fn state(objects: Vec<Value>) -> ClusterState {
    let mut state = ClusterState::default();
    for o in objects {
        let object = match o["kind"].as_str().unwrap() {
            "Node" => Object::Node(Arc::new(serde_json::from_value(o).unwrap())),
            "Pod" => Object::Pod(Arc::new(serde_json::from_value(o).unwrap())),
            "NodePool" => Object::NodePool(Arc::new(serde_json::from_value(o).unwrap())),
            other => panic!("{other}"),
        };
        state.apply(object);
    }
    state
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_scale_up_sets_the_size_and_records_status_and_an_event() {
    let api = Recorder::default();
    let s = state(vec![
        pool("general", "4", "16Gi", 1, 10),
        node("n1", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
        pod("web-0", "2", "1Gi"),
    ]);
    let outcome = block_on(sync(
        &api,
        &s,
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    assert_eq!(outcome.scaled_up, 1);
    assert_eq!(api.calls(), vec!["set_size general 2"]);
    let status = api.status("general");
    assert_eq!(status.target_size, Some(2));
    assert_eq!(status.current_size, 1);
    assert_eq!(status.ready_nodes, 1);
    assert_eq!(status.last_scale_up_time.as_ref().unwrap().0, now());
    let scaled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ScaledUp")
        .unwrap();
    assert_eq!(
        (scaled.status.as_str(), scaled.reason.as_str()),
        ("True", "ScaledUp")
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "NodesProvisioning");
    let events = api.events();
    assert_eq!(events[0].0, "ScaledUpGroup");
    assert!(
        events[0]
            .1
            .contains("general to 2 nodes (+1) for 1 pending pod(s): shop/web-0"),
        "{events:?}"
    );
}

#[test]
fn a_failed_scale_up_backs_off_doubling() {
    let api = Recorder {
        fail_scale: true,
        ..Recorder::default()
    };
    let objects = vec![
        pool("general", "4", "16Gi", 0, 10),
        pod("web-0", "2", "1Gi"),
    ];
    let mut memory = Memory::default();
    let outcome = block_on(sync(
        &api,
        &state(objects.clone()),
        &Settings::default(),
        &mut memory,
        now(),
    ));
    assert_eq!(outcome.errors, 1);
    let status = api.status("general");
    assert_eq!(
        status.backoff_until.as_ref().unwrap().0.to_string(),
        "2026-11-22T10:05:00Z"
    );
    assert_eq!(api.events()[0].0, "FailedToScaleUpGroup");
    assert!(api.events()[0].1.contains("quota exceeded"));
    // After the backoff, it tries again, fails again, and waits twice as long.
    let later: Timestamp = "2026-11-22T10:06:00Z".parse().unwrap();
    let mut objects = objects;
    merge(
        &mut objects[0],
        json!({"status": serde_json::to_value(&status).unwrap()}),
    );
    block_on(sync(
        &api,
        &state(objects.clone()),
        &Settings::default(),
        &mut memory,
        later,
    ));
    let status = api.status("general");
    assert_eq!(
        status.backoff_until.as_ref().unwrap().0.to_string(),
        "2026-11-22T10:16:00Z"
    );
    let backoff = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Backoff")
        .unwrap();
    assert_eq!(backoff.status, "True");
    // While backing off, nothing is asked of the provider.
    merge(
        &mut objects[0],
        json!({"status": serde_json::to_value(&status).unwrap()}),
    );
    let calls = api.calls().len();
    let soon: Timestamp = "2026-11-22T10:07:00Z".parse().unwrap();
    block_on(sync(
        &api,
        &state(objects),
        &Settings::default(),
        &mut memory,
        soon,
    ));
    assert_eq!(api.calls().len(), calls);
}

#[test]
fn unneeded_nodes_are_marked_and_removed_after_the_unneeded_time() {
    let api = Recorder::default();
    let objects = vec![
        pool("general", "4", "16Gi", 1, 10),
        node("n1", "general", "4", "16Gi"),
        node("n2", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
        on(pod("light-0", "1", "1Gi"), "n2"),
    ];
    block_on(sync(
        &api,
        &state(objects.clone()),
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    assert_eq!(api.calls(), vec![format!("mark_unneeded n2 {NOW}")]);

    let api = Recorder::default();
    let mut objects = objects;
    merge(
        &mut objects[2],
        json!({"metadata": {"annotations": {"weir.io/unneeded-since": "2026-11-22T09:45:00Z"}}}),
    );
    // n1 is marked but is needed now: the mark goes.
    merge(
        &mut objects[1],
        json!({"metadata": {"annotations": {"weir.io/unneeded-since": "2026-11-22T09:45:00Z"}}}),
    );
    let outcome = block_on(sync(
        &api,
        &state(objects),
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    assert_eq!(outcome.removed, 1);
    assert_eq!(
        api.calls(),
        vec![
            "mark_unneeded n1 -".to_string(),
            "remove_node general n2 [shop/light-0] 1".to_string()
        ]
    );
    let status = api.status("general");
    assert_eq!(status.target_size, Some(1));
    assert_eq!(status.last_scale_down_time.unwrap().0, now());
    assert!(
        api.events()
            .iter()
            .any(|(r, m)| *r == "ScaleDown" && m.contains("evicting 1 pod(s): shop/light-0"))
    );
}

#[test]
fn nodes_that_never_come_are_given_up_and_the_pool_backs_off() {
    let api = Recorder::default();
    let objects = vec![
        with(
            pool("general", "4", "16Gi", 0, 10),
            json!({"status": {"targetSize": 3, "lastScaleUpTime": "2026-11-22T09:40:00Z"}}),
        ),
        node("n1", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
        pod("web-0", "2", "1Gi"),
    ];
    block_on(sync(
        &api,
        &state(objects),
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    assert_eq!(api.calls(), vec!["set_size general 1"]);
    let status = api.status("general");
    assert_eq!(status.target_size, Some(1));
    assert!(status.backoff_until.is_some());
    assert_eq!(api.events()[0].0, "ScaleUpTimedOut");
    assert!(
        api.events()[0].1.contains("2 node(s)"),
        "{:?}",
        api.events()
    );
}

#[test]
fn an_unchanged_status_is_not_written_again() {
    let api = Recorder::default();
    let mut objects = vec![
        pool("general", "4", "16Gi", 1, 10),
        node("n1", "general", "4", "16Gi"),
        on(pod("busy-0", "3", "1Gi"), "n1"),
    ];
    block_on(sync(
        &api,
        &state(objects.clone()),
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    let status = api.status("general");
    merge(
        &mut objects[0],
        json!({"status": serde_json::to_value(&status).unwrap()}),
    );
    let api = Recorder::default();
    block_on(sync(
        &api,
        &state(objects),
        &Settings::default(),
        &mut Memory::default(),
        now(),
    ));
    assert!(api.statuses.lock().unwrap().is_empty());
}
