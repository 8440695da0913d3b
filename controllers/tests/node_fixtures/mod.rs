//! Objects for node autoscaler tests, as `kubectl get -o json` would give them.

#![allow(dead_code, clippy::unwrap_used)]

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::{Snapshot, SnapshotFile};

pub const NOW: &str = "2026-11-22T10:00:00Z";

pub fn now() -> Timestamp {
    NOW.parse().unwrap()
}

pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn with(mut v: Value, patch: Value) -> Value {
    merge(&mut v, patch);
    v
}

pub fn pool(name: &str, cpu: &str, memory: &str, min: i32, max: i32) -> Value {
    json!({
        "apiVersion": "weir.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"capacity": {"cpu": cpu, "memory": memory}},
            "minSize": min, "maxSize": max,
            "provider": {"simulated": {}}
        }
    })
}

pub fn node(name: &str, pool: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"weir.io/node-pool": pool, "kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

pub fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "labels": {"app": name.split('-').next().unwrap()},
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]
        },
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": "Pending"}
    })
}

pub fn on(p: Value, node: &str) -> Value {
    with(
        p,
        json!({"spec": {"nodeName": node}, "status": {"phase": "Running"}}),
    )
}

/// The planner's snapshot of `objects`; panics on any warning.
pub fn snapshot(objects: Vec<Value>) -> Snapshot {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let file = SnapshotFile::parse(&serde_json::to_string(&list).unwrap()).unwrap();
    let snapshot = Snapshot::build(&file.objects());
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
    snapshot
}
