//! The Cluster API provider against a stand-in API server: the calls it makes to remove a
//! node (Machine annotated, node cordoned and tainted, pods evicted, replicas lowered), to
//! grow a pool, and what it does when an eviction is refused by a PodDisruptionBudget.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    response::IntoResponse,
    routing::any,
};
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::controller::NodeApi;
use weir_controllers::node_autoscaler::k8s::KubeNodeApi;
use weir_crds::NodePool;

#[derive(Clone, Default)]
struct Api {
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
    refuse_eviction: bool,
}

async fn handle(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    api.calls
        .lock()
        .unwrap()
        .push((method.to_string(), uri.to_string(), body.clone()));
    let ok = |v: Value| (StatusCode::OK, Json(v)).into_response();
    match (method.as_str(), path.as_str()) {
        ("GET", "/apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machines") => ok(json!({
            "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineList", "metadata": {},
            "items": [
                {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine", "metadata": {"name": "general-m1", "namespace": "capi"}, "status": {"nodeRef": {"name": "n1"}}},
                {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine", "metadata": {"name": "general-m2", "namespace": "capi"}, "status": {"nodeRef": {"name": "n2"}}}
            ]
        })),
        ("GET", "/api/v1/nodes/n2") => ok(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
            "spec": {"taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}]}
        })),
        ("POST", p) if p.ends_with("/eviction") => {
            if api.refuse_eviction {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "TooManyRequests", "code": 429,
                                "message": "Cannot evict pod as it would violate the pod's disruption budget."})),
                )
                    .into_response()
            } else {
                (
                    StatusCode::CREATED,
                    Json(json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})),
                )
                    .into_response()
            }
        }
        ("PATCH", p) if p.ends_with("/scale") => ok(json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "general", "namespace": "capi"},
            "spec": {"replicas": body["spec"]["replicas"]}
        })),
        ("PATCH", _) => {
            let mut v = body.clone();
            v["apiVersion"] = json!("v1");
            v["kind"] = json!(if path.contains("/machines/") {
                "Machine"
            } else {
                "Node"
            });
            v["metadata"]["name"] = json!(path.rsplit('/').next().unwrap());
            ok(v)
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"kind": "Status", "code": 404})),
        )
            .into_response(),
    }
}

fn start(api: Api) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let app = Router::new().route("/{*path}", any(handle)).with_state(api);
                axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                    .await
                    .unwrap();
            });
    });
    addr
}

fn pool() -> NodePool {
    serde_json::from_value(json!({
        "apiVersion": "weir.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": "general"},
        "spec": {"template": {"capacity": {"cpu": "4", "memory": "16Gi"}}, "minSize": 1, "maxSize": 10,
                 "provider": {"clusterAPI": {"namespace": "capi", "name": "general"}}}
    }))
    .unwrap()
}

/// The provider as `weir controllers` builds it, against the stand-in.
fn provider(addr: SocketAddr) -> KubeNodeApi {
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    KubeNodeApi::from_config(config, "test".into()).unwrap()
}

#[tokio::test]
async fn removing_a_node_marks_its_machine_cordons_evicts_then_lowers_the_replicas() {
    let api = Api::default();
    let addr = start(api.clone());
    let provider = provider(addr);
    provider
        .remove_node(&pool(), "n2", &["shop/light-0".into()], 2)
        .await
        .unwrap();
    let calls = api.calls.lock().unwrap().clone();
    let summary: Vec<String> = calls
        .iter()
        .map(|(m, u, _)| format!("{m} {}", u.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "GET /apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machines",
            "PATCH /apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machines/general-m2",
            "GET /api/v1/nodes/n2",
            "PATCH /api/v1/nodes/n2",
            "POST /api/v1/namespaces/shop/pods/light-0/eviction",
            "PATCH /apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machinedeployments/general/scale",
        ]
    );
    assert!(
        calls[0]
            .1
            .contains("labelSelector=cluster.x-k8s.io%2Fdeployment-name%3Dgeneral"),
        "{}",
        calls[0].1
    );
    assert_eq!(
        calls[1].2["metadata"]["annotations"]["cluster.x-k8s.io/delete-machine"],
        "true"
    );
    let cordon = &calls[3].2["spec"];
    assert_eq!(cordon["unschedulable"], true);
    let taints: Vec<&str> = cordon["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(taints, vec!["dedicated", "ToBeDeletedByClusterAutoscaler"]);
    assert_eq!(calls[5].2["spec"]["replicas"], 2);
}

#[tokio::test]
async fn a_refused_eviction_uncordons_the_node_and_keeps_the_replicas() {
    let api = Api {
        refuse_eviction: true,
        ..Api::default()
    };
    let addr = start(api.clone());
    let provider = provider(addr);
    let e = provider
        .remove_node(&pool(), "n2", &["shop/light-0".into()], 2)
        .await
        .unwrap_err();
    assert!(e.contains("evicting shop/light-0"), "{e}");
    assert!(e.contains("disruption budget"), "{e}");
    let calls = api.calls.lock().unwrap().clone();
    let last = calls.last().unwrap();
    assert_eq!(last.0, "PATCH");
    assert_eq!(last.2["spec"]["unschedulable"], false);
    assert!(!calls.iter().any(|(_, u, _)| u.contains("/scale")));
}

#[tokio::test]
async fn growing_sets_the_machine_deployment_replicas_and_simulated_pools_are_refused() {
    let api = Api::default();
    let addr = start(api.clone());
    let provider = provider(addr);
    provider.set_size(&pool(), 5).await.unwrap();
    let calls = api.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].2["spec"]["replicas"], 5);
    let mut simulated = pool();
    simulated.spec.provider = serde_json::from_value(json!({"simulated": {}})).unwrap();
    let e = provider.set_size(&simulated, 5).await.unwrap_err();
    assert!(e.contains("only clusterAPI pools"), "{e}");
}
