//! The pod autoscaler in a cluster: [`KubeScaleApi`], the thin adapter to the Kubernetes
//! API that the sync ([`super::sync::sync_due`]) drives: scale subresources of any kind,
//! ScalingPolicy status by server-side apply, and events.

use std::{collections::HashMap, sync::Mutex};

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::events::Recorder,
};
use serde_json::json;
use weir_crds::scaling_policy::{ScaleTargetRef, ScalingPolicy, ScalingPolicyStatus};
use weir_runtime::{ApiCall, events::publish_event, status::apply_status};

use super::controller::{Event, Scale, ScaleApi};

/// The event reporter (`reportingController`) of the pod autoscaler's events.
pub const REPORTER: &str = "weir-pod-autoscaler";

/// The field manager of the autoscaler's status writes (server-side apply).
pub const FIELD_MANAGER: &str = "weir-pod-autoscaler";

/// The API calls the pod autoscaler makes (beyond listing and watching what it reads).
pub const API_CALLS: &[ApiCall] = &[
    ("*", "*/scale", "get"),
    ("*", "*/scale", "patch"),
    ("weir.io", "scalingpolicies/status", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// The Kubernetes API for the reconciler: scale subresources of any kind (resolved once
/// per kind through discovery), ScalingPolicy status by server-side apply, and events.
pub struct KubeScaleApi {
    client: Client,
    recorder: Recorder,
    kinds: Mutex<HashMap<(String, String), ApiResource>>,
}

impl std::fmt::Debug for KubeScaleApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeScaleApi").finish_non_exhaustive()
    }
}

impl KubeScaleApi {
    /// An adapter reporting events as `controller`/`instance`.
    pub fn new(client: Client, instance: String) -> Self {
        let recorder = weir_runtime::events::recorder(client.clone(), REPORTER, instance);
        KubeScaleApi {
            client,
            recorder,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    async fn scale_api(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<Api<DynamicObject>, String> {
        let key = (target.api_version.clone(), target.kind.clone());
        let cached = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned());
        let resource = match cached {
            Some(resource) => resource,
            None => {
                let (group, version) = match target.api_version.split_once('/') {
                    Some((g, v)) => (g.to_string(), v.to_string()),
                    None => (String::new(), target.api_version.clone()),
                };
                let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
                let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                    .await
                    .map_err(|e| format!("{} {}: {e}", target.api_version, target.kind))?;
                if let Ok(mut kinds) = self.kinds.lock() {
                    kinds.insert(key, resource.clone());
                }
                resource
            }
        };
        Ok(Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource,
        ))
    }
}

impl ScaleApi for KubeScaleApi {
    async fn get_scale(&self, namespace: &str, target: &ScaleTargetRef) -> Result<Scale, String> {
        let api = self.scale_api(namespace, target).await?;
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Scale {
            spec_replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
            selector: scale.status.and_then(|s| s.selector),
        })
    }

    async fn set_replicas(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), String> {
        let api = self.scale_api(namespace, target).await?;
        api.patch_scale(
            &target.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }

    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> Result<(), String> {
        let api: Api<ScalingPolicy> = Api::namespaced(self.client.clone(), namespace);
        apply_status(&api, name, FIELD_MANAGER, status).await
    }

    async fn event(&self, policy: &ScalingPolicy, event: &Event) -> Result<(), String> {
        publish_event(
            &self.recorder,
            &policy.object_ref(&()),
            event.type_ == "Warning",
            event.reason,
            &event.message,
            "Scale",
        )
        .await
    }
}
