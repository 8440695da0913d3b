//! The pod autoscaler in local mode (`weir up --prometheus-url URL`): the same sync as in a
//! cluster, on simulated Deployments. A Deployment's replica count starts at its
//! `spec.replicas` and then follows the autoscaler; each replica is simulated as a Running,
//! Ready pod with the template's labels and requests, so pod-based rules apply as in a
//! cluster. Decisions show in the log and in `weir_autoscaler_desired_replicas`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::pod_autoscaler::{
    ControllerSettings,
    controller::{Event, Memory, Scale, ScaleApi},
    source::MetricSource,
    sync::{is_due, sync_due},
};
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::{SignedDuration, Timestamp},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_crds::scaling_policy::{ScaleTargetRef, ScalingPolicy, ScalingPolicyStatus};
use weir_store::{ClusterState, Object, ObjectKey};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    namespace: String,
    policy: String,
}

/// Simulated Deployments: their replica counts, as the autoscaler set them.
#[derive(Debug)]
pub struct LocalScaleApi {
    state: watch::Receiver<ClusterState>,
    replicas: Mutex<HashMap<ObjectKey, i32>>,
    desired: Family<PolicyLabels, Gauge>,
}

impl LocalScaleApi {
    /// Simulates the Deployments in `state`; registers `weir_autoscaler_desired_replicas`.
    pub fn new(state: watch::Receiver<ClusterState>, registry: &mut Registry) -> Self {
        let api = LocalScaleApi {
            state,
            replicas: Mutex::new(HashMap::new()),
            desired: Family::default(),
        };
        registry.register(
            "weir_autoscaler_desired_replicas",
            "Replicas each ScalingPolicy asks for (local mode)",
            api.desired.clone(),
        );
        api
    }

    fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.state
            .borrow()
            .deployments
            .get_namespaced(namespace, name)
            .cloned()
    }

    fn current(&self, key: &ObjectKey, deployment: &Deployment) -> i32 {
        let declared = deployment.spec.replicas.unwrap_or(1);
        self.replicas
            .lock()
            .map(|r| r.get(key).copied().unwrap_or(declared))
            .unwrap_or(declared)
    }

    /// The store's state with each Deployment's simulated pods added.
    pub fn with_simulated_pods(&self, state: &ClusterState) -> ClusterState {
        let mut state = state.clone();
        let deployments: Vec<(ObjectKey, Arc<Deployment>)> = state
            .deployments
            .iter()
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        for (key, deployment) in deployments {
            let replicas = self.current(&key, &deployment);
            let template = Some(deployment.spec.template.clone());
            for i in 0..replicas {
                let mut pod = Pod {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{i}", key.name)),
                        namespace: key.namespace.clone(),
                        labels: template
                            .as_ref()
                            .and_then(|t| t.metadata.as_ref())
                            .and_then(|m| m.labels.clone()),
                        ..Default::default()
                    },
                    spec: template.as_ref().and_then(|t| t.spec.clone()),
                    ..Default::default()
                };
                pod.status = Some(running_and_ready());
                state.apply(Object::Pod(Arc::new(pod)));
            }
        }
        state
    }
}

fn running_and_ready() -> k8s_openapi::api::core::v1::PodStatus {
    // Started and Ready long ago: past the CPU initialization period.
    let long_ago = Time(Timestamp::UNIX_EPOCH);
    k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        start_time: Some(long_ago.clone()),
        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(long_ago),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn selector(deployment: &Deployment) -> Option<String> {
    let labels: BTreeMap<String, String> = deployment.spec.selector.match_labels.clone()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl ScaleApi for LocalScaleApi {
    async fn get_scale(&self, namespace: &str, target: &ScaleTargetRef) -> Result<Scale, String> {
        if target.kind != "Deployment" {
            return Err(format!(
                "local mode simulates Deployments only, not {}",
                target.kind
            ));
        }
        let deployment = self
            .deployment(namespace, &target.name)
            .ok_or_else(|| format!("Deployment {namespace}/{} does not exist", target.name))?;
        let replicas = self.current(&ObjectKey::namespaced(namespace, &target.name), &deployment);
        Ok(Scale {
            spec_replicas: replicas,
            status_replicas: replicas,
            selector: selector(&deployment),
        })
    }

    async fn set_replicas(
        &self,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), String> {
        let mut all = self.replicas.lock().map_err(|_| "poisoned")?;
        all.insert(ObjectKey::namespaced(namespace, &target.name), replicas);
        info!(deployment = %format!("{namespace}/{}", target.name), replicas, "scaled (simulated)");
        Ok(())
    }

    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> Result<(), String> {
        self.desired
            .get_or_create(&PolicyLabels {
                namespace: namespace.into(),
                policy: name.into(),
            })
            .set(i64::from(status.desired_replicas));
        Ok(())
    }

    async fn event(&self, policy: &ScalingPolicy, event: &Event) -> Result<(), String> {
        let name = format!(
            "{}/{}",
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name.as_deref().unwrap_or_default()
        );
        if event.type_ == "Warning" {
            warn!(policy = %name, reason = event.reason, "{}", event.message);
        } else {
            info!(policy = %name, reason = event.reason, "{}", event.message);
        }
        Ok(())
    }
}

/// Syncs every `period` until `shutdown`.
pub async fn run<S: MetricSource + Send + 'static>(
    api: Arc<LocalScaleApi>,
    source: S,
    period: Duration,
    shutdown: CancellationToken,
) {
    let settings = ControllerSettings::default();
    let mut memory: HashMap<ObjectKey, Memory> = HashMap::new();
    // Ticks every second; each policy syncs when its period has passed.
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let period = SignedDuration::try_from(period).unwrap_or(SignedDuration::from_secs(15));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Timestamp::now();
        let current = api.state.borrow().clone();
        // Pods are simulated only when some policy is due, not on every tick.
        let due = current.scaling_policies.iter().any(|(key, policy)| {
            is_due(
                &policy.spec,
                memory.get(key).and_then(|m| m.last_synced),
                period,
                now,
            )
        });
        if !due {
            continue;
        }
        let state = api.with_simulated_pods(&current);
        let stats = sync_due(
            api.as_ref(),
            &state,
            &source,
            &mut memory,
            &settings,
            now,
            Some(period),
        )
        .await;
        if stats.policies == 0 {
            continue;
        }
        info!(policies = stats.policies, rescaled = stats.rescaled, errors = stats.errors, requests = stats.queries, took = ?stats.duration, "autoscaler sync (local)");
    }
}
