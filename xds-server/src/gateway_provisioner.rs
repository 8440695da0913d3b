//! In a cluster, the xds-server's leader runs every Gateway of Weir's class: the pure
//! [`plan`] says which objects to server-side apply and delete
//! ([`crate::gateway_infrastructure`] renders them); this adapter carries it out through
//! an [`InfrastructureApi`] (the Kubernetes API, or a recording stand-in in tests) after
//! store changes (coalesced over [`SETTLE`]) and every [`RESYNC`], re-applying everything
//! then (so an object someone edited by hand is put back; a deleted Deployment or Service
//! is put back at once, the plan sees it gone), and only while leading. Every call it can
//! make is in [`API_CALLS`] (the chart's RBAC is checked against them).

use std::{future::Future, sync::Arc, time::Duration};

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_runtime::{ApiCall, leader::Leadership};
use weir_store::ClusterState;

use crate::{
    gateway_plan::{Applied, ObjectRef, Operation, Plan, plan},
    inject::InjectConfig,
};

/// The field manager of the provisioner's server-side applies.
pub const FIELD_MANAGER: &str = "weir-gateway-provisioner";
/// How long store changes may keep coming before a round.
pub const SETTLE: Duration = Duration::from_millis(500);
/// A round at least this often, changes or not.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Every call the provisioner makes: server-side apply (authorized as `patch`, and as
/// `create` when the object is new) of each kind it runs, and deletes of the kinds a
/// Gateway can stop needing.
pub const API_CALLS: &[ApiCall] = &[
    ("", "serviceaccounts", "create"),
    ("", "serviceaccounts", "patch"),
    ("apps", "deployments", "create"),
    ("apps", "deployments", "patch"),
    ("", "services", "create"),
    ("", "services", "patch"),
    ("policy", "poddisruptionbudgets", "create"),
    ("policy", "poddisruptionbudgets", "patch"),
    ("policy", "poddisruptionbudgets", "delete"),
    ("weir.io", "scalingpolicies", "create"),
    ("weir.io", "scalingpolicies", "patch"),
    ("weir.io", "scalingpolicies", "delete"),
];

/// Where the provisioner's objects go.
pub trait InfrastructureApi: Sync {
    /// Server-side applies `object` (forcing ownership of its fields); returns the object
    /// as stored.
    fn apply(&self, object: &Value) -> impl Future<Output = Result<Value, String>> + Send;
    /// Deletes `target`; absent is success.
    fn delete(&self, target: &ObjectRef) -> impl Future<Output = Result<(), String>> + Send;
}

/// The Kubernetes API.
#[derive(Clone)]
pub struct KubeInfrastructure {
    client: Client,
}

impl std::fmt::Debug for KubeInfrastructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeInfrastructure").finish_non_exhaustive()
    }
}

impl KubeInfrastructure {
    /// On `client`.
    pub fn new(client: Client) -> Self {
        KubeInfrastructure { client }
    }

    fn api(&self, target: &ObjectRef) -> Api<DynamicObject> {
        let (group, version) = match target.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", target.api_version.as_str()),
        };
        let plural = match target.kind.as_str() {
            "PodDisruptionBudget" => "poddisruptionbudgets".to_string(),
            "ScalingPolicy" => "scalingpolicies".to_string(),
            kind => format!("{}s", kind.to_lowercase()),
        };
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &target.kind),
            &plural,
        );
        Api::namespaced_with(self.client.clone(), &target.namespace, &resource)
    }
}

impl InfrastructureApi for KubeInfrastructure {
    async fn apply(&self, object: &Value) -> Result<Value, String> {
        let target = ObjectRef::of(object);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let stored = self
            .api(&target)
            .patch(&target.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_value(stored).map_err(|e| e.to_string())
    }

    async fn delete(&self, target: &ObjectRef) -> Result<(), String> {
        match self
            .api(target)
            .delete(&target.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The provisioner's metrics.
#[derive(Clone, Debug, Default)]
pub struct ProvisionerMetrics {
    applies: Counter,
    deletes: Counter,
    failures: Counter,
}

impl ProvisionerMetrics {
    /// Creates and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ProvisionerMetrics::default();
        registry.register(
            "weir_gateway_provisioner_applies",
            "Objects the Gateway provisioner applied",
            metrics.applies.clone(),
        );
        registry.register(
            "weir_gateway_provisioner_deletes",
            "Objects the Gateway provisioner deleted",
            metrics.deletes.clone(),
        );
        registry.register(
            "weir_gateway_provisioner_failures",
            "Applies and deletes that failed (retried next round)",
            metrics.failures.clone(),
        );
        metrics
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    /// The plan it carried out.
    pub plan: Plan,
    /// Operations that failed, with the error.
    pub failures: Vec<(String, String)>,
}

/// One round: plans on `state`, applies and deletes through `api`, records what
/// succeeded in `applied` (a failure is retried next round).
pub async fn provision<A: InfrastructureApi>(
    api: &A,
    state: &ClusterState,
    config: &InjectConfig,
    applied: &mut Applied,
    metrics: &ProvisionerMetrics,
) -> Round {
    let plan = plan(state, config, applied);
    let mut failures = Vec::new();
    for operation in &plan.operations {
        match operation {
            Operation::Apply(object) => match api.apply(object).await {
                Ok(_) => {
                    metrics.applies.inc();
                    applied.applied(object);
                    info!(object = %ObjectRef::of(object), "gateway object applied");
                }
                Err(e) => {
                    metrics.failures.inc();
                    warn!(object = %ObjectRef::of(object), error = %e, "gateway object not applied; retrying next round");
                    failures.push((ObjectRef::of(object).to_string(), e));
                }
            },
            Operation::Delete(target) => match api.delete(target).await {
                Ok(()) => {
                    metrics.deletes.inc();
                    applied.deleted(target);
                }
                Err(e) => {
                    metrics.failures.inc();
                    warn!(object = %target, error = %e, "gateway object not deleted; retrying next round");
                    failures.push((target.to_string(), e));
                }
            },
        }
    }
    for (gateway, problem) in &plan.problems {
        warn!(%gateway, %problem, "Gateway not provisioned; what runs it stays as it was");
    }
    Round { plan, failures }
}

/// Runs rounds while leading until `shutdown`. A new term starts from nothing applied
/// (so it applies everything once: server-side apply makes that a no-op where nothing
/// changed).
pub async fn run_provisioner<A: InfrastructureApi + Send + 'static>(
    api: Arc<A>,
    mut state: watch::Receiver<ClusterState>,
    config: InjectConfig,
    mut leading: Leadership,
    metrics: ProvisionerMetrics,
    shutdown: CancellationToken,
) {
    let mut applied = Applied::default();
    let mut was_leading = false;
    let mut last_resync = tokio::time::Instant::now();
    loop {
        if leading.is_leading() {
            if !was_leading {
                applied = Applied::default();
                last_resync = tokio::time::Instant::now();
                info!("provisioning Gateways of Weir's class");
            } else if last_resync.elapsed() >= RESYNC {
                // Apply everything again: undoes edits by hand (a no-op where none).
                applied.forget_objects();
                last_resync = tokio::time::Instant::now();
            }
            let snapshot = state.borrow_and_update().clone();
            let round = leading
                .while_leading(provision(
                    api.as_ref(),
                    &snapshot,
                    &config,
                    &mut applied,
                    &metrics,
                ))
                .await;
            was_leading = round.is_some();
        } else {
            was_leading = false;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESYNC) => {}
            alive = leading.changed() => if !alive { return },
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
}
