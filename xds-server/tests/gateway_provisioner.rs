//! The Gateway provisioner against a recording API: what it applies and deletes when a
//! Gateway appears, changes, stays the same, gets bad parameters, loses a replica or goes;
//! and that a failed call is retried.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;

use serde_json::Value;
use weir_store::{ClusterState, DirectoryIndex};
use weir_xds::{
    gateway_plan::{Applied, ObjectRef},
    gateway_provisioner::{InfrastructureApi, ProvisionerMetrics, provision},
};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    applied: Mutex<Vec<Value>>,
    /// Kinds whose applies fail.
    failing: Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl InfrastructureApi for Recorder {
    async fn apply(&self, object: &Value) -> Result<Value, String> {
        let target = ObjectRef::of(object);
        self.calls.lock().unwrap().push(format!("apply {target}"));
        if self.failing.lock().unwrap().contains(&target.kind.as_str()) {
            return Err(format!("services \"{}\" is forbidden", target.name));
        }
        self.applied.lock().unwrap().push(object.clone());
        Ok(object.clone())
    }

    async fn delete(&self, target: &ObjectRef) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("delete {target}"));
        Ok(())
    }
}

use common::inject_config as config;

fn state(gateway_listeners: &str, parameters: &str) -> ClusterState {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\n\
         spec: {{controllerName: weir.io/gateway-controller, parametersRef: {{group: weir.io, kind: GatewayParameters, name: defaults, namespace: weir-system}}}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: public, namespace: ingress, uid: 3d5e-1}}\n\
         spec: {{gatewayClassName: weir, listeners: [{gateway_listeners}]}}\n---\n{parameters}"
    );
    let mut index = DirectoryIndex::default();
    index.load_file("state.yaml", &yaml);
    index.state().0
}

/// `state` as the watches would show it: with the Deployments and Services applied so far.
fn seen(mut state: ClusterState, api: &Recorder) -> ClusterState {
    for object in api.applied.lock().unwrap().iter() {
        let kind = match object["kind"].as_str() {
            Some("Deployment") => weir_store::Kind::Deployment,
            Some("Service") => weir_store::Kind::Service,
            _ => continue,
        };
        state.apply(weir_store::Object::decode(kind, object.clone()).unwrap());
    }
    state
}

const HTTP: &str = "{name: http, port: 80, protocol: HTTP}";
const TWO: &str = "apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {name: defaults, namespace: weir-system}\nspec: {replicas: 2}\n";
const ONE: &str = "apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {name: defaults, namespace: weir-system}\nspec: {replicas: 1}\n";

#[tokio::test]
async fn create_update_nothing_retry_and_delete() {
    let api = Recorder::default();
    let metrics = ProvisionerMetrics::default();
    let mut applied = Applied::default();

    // Created: everything that runs it; a ScalingPolicy it may have had before is deleted.
    let round = provision(&api, &state(HTTP, TWO), &config(), &mut applied, &metrics).await;
    assert_eq!(
        api.take(),
        [
            "apply ServiceAccount ingress/public-weir",
            "apply Deployment ingress/public-weir",
            "apply Service ingress/public-weir",
            "apply PodDisruptionBudget ingress/public-weir",
            "delete ScalingPolicy ingress/public-weir",
        ]
    );
    assert!(round.failures.is_empty() && round.plan.problems.is_empty());
    for object in api.applied.lock().unwrap().iter() {
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Gateway");
        assert_eq!(owner["name"], "public");
        assert_eq!(owner["uid"], "3d5e-1");
    }

    // Nothing changed: no call at all.
    provision(
        &api,
        &seen(state(HTTP, TWO), &api),
        &config(),
        &mut applied,
        &metrics,
    )
    .await;
    assert_eq!(api.take(), Vec::<String>::new());

    // A listener added: the Deployment (container port) and the Service change, and the
    // Service's apply fails: recorded, and retried next round.
    let https = format!(
        "{HTTP}, {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls}}]}}}}"
    );
    api.failing.lock().unwrap().push("Service");
    let round = provision(
        &api,
        &seen(state(&https, TWO), &api),
        &config(),
        &mut applied,
        &metrics,
    )
    .await;
    assert_eq!(
        api.take(),
        [
            "apply Deployment ingress/public-weir",
            "apply Service ingress/public-weir"
        ]
    );
    assert_eq!(round.failures.len(), 1, "{round:?}");
    assert!(round.failures[0].1.contains("forbidden"));
    api.failing.lock().unwrap().clear();
    provision(
        &api,
        &seen(state(&https, TWO), &api),
        &config(),
        &mut applied,
        &metrics,
    )
    .await;
    assert_eq!(api.take(), ["apply Service ingress/public-weir"]);
    let service = api.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 2);

    // Down to one replica: the PDB goes.
    provision(
        &api,
        &seen(state(&https, ONE), &api),
        &config(),
        &mut applied,
        &metrics,
    )
    .await;
    assert_eq!(
        api.take(),
        [
            "apply Deployment ingress/public-weir",
            "delete PodDisruptionBudget ingress/public-weir"
        ]
    );

    // Its parameters deleted: a problem, and what runs it is left alone.
    let round = provision(
        &api,
        &seen(state(&https, ""), &api),
        &config(),
        &mut applied,
        &metrics,
    )
    .await;
    assert_eq!(api.take(), Vec::<String>::new());
    assert_eq!(
        round.plan.problems["ingress/public"],
        "GatewayClass spec.parametersRef: GatewayParameters weir-system/defaults not found"
    );

    // The Gateway deleted: its objects go through their owner references, no call.
    let mut index = DirectoryIndex::default();
    index.load_file(
        "state.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ingress}\n",
    );
    provision(&api, &index.state().0, &config(), &mut applied, &metrics).await;
    assert_eq!(api.take(), Vec::<String>::new());
    assert!(applied.is_empty());
}
