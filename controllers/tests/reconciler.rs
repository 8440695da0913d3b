//! The pod autoscaler's reconciler against a fake Kubernetes API: the scale patch, the
//! status it writes (checked against the ScalingPolicy CRD schema), events, and the memory
//! carried from sync to sync.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, sync::Mutex};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_controllers::pod_autoscaler::{
    ControllerSettings, MetricReading, Pod, PodReading,
    controller::{Event, Memory, Plan, PolicyInput, Reconciled, Scale, ScaleApi, apply, plan},
    state,
};
use weir_crds::{
    SchemaValidator,
    scaling_policy::{ScaleTargetRef, ScalingPolicy, ScalingPolicyStatus},
};

#[derive(Debug, PartialEq)]
enum Call {
    SetReplicas(String, String, i32),
    Status(String, String, Box<ScalingPolicyStatus>),
    Event(String, &'static str, String),
}

#[derive(Default)]
struct FakeApi {
    calls: Mutex<Vec<Call>>,
    fail_rescale: bool,
}

impl ScaleApi for FakeApi {
    async fn get_scale(&self, _: &str, _: &ScaleTargetRef) -> Result<Scale, String> {
        unreachable!("the tests pass the scale in")
    }
    async fn set_replicas(
        &self,
        ns: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), String> {
        if self.fail_rescale {
            return Err("deployments.apps \"web\" is forbidden".into());
        }
        self.calls.lock().unwrap().push(Call::SetReplicas(
            ns.into(),
            target.name.clone(),
            replicas,
        ));
        Ok(())
    }
    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        status: &ScalingPolicyStatus,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call::Status(
            ns.into(),
            name.into(),
            Box::new(status.clone()),
        ));
        Ok(())
    }
    async fn event(&self, policy: &ScalingPolicy, event: &Event) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call::Event(
            policy.metadata.name.clone().unwrap(),
            event.reason,
            event.message.clone(),
        ));
        Ok(())
    }
}

const POLICY: &str = r#"
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {name: web, namespace: shop, generation: 4}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#;

fn make_policy(extra_metadata: &str) -> ScalingPolicy {
    serde_yaml::from_str(&POLICY.replace(
        "generation: 4}",
        &format!("generation: 4{extra_metadata}}}"),
    ))
    .unwrap()
}

/// Three ready pods from the documented example, and their CPU readings scaled by `load`.
fn pods_and_readings(load: i64) -> (Vec<Pod>, Vec<MetricReading>) {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/recommend/cpu-scale-up.yaml"
    ))
    .unwrap();
    let parsed = state::parse(&example).unwrap();
    let pods: Vec<Pod> = parsed
        .pods
        .iter()
        .map(|p| Pod {
            name: p.name.clone(),
            phase: p.phase,
            deleting: p.deleting,
            ready: p.ready,
            start_time: p.start_time,
            ready_since: p.ready_since,
            containers: vec![weir_controllers::pod_autoscaler::Container {
                name: "app".into(),
                requests: BTreeMap::from([("cpu".to_string(), 500)]),
            }],
        })
        .collect();
    let readings = MetricReading::Pods(
        pods.iter()
            .map(|p| {
                (
                    p.name.clone(),
                    PodReading {
                        milli: load,
                        containers: BTreeMap::new(),
                        timestamp: parsed.now,
                        window: SignedDuration::from_secs(30),
                    },
                )
            })
            .collect(),
    );
    (pods, vec![readings])
}

/// The plan for `policy` with the controller's default settings.
fn plan_at(
    policy: &ScalingPolicy,
    scale: &Result<Scale, String>,
    pods: &[Pod],
    readings: &[MetricReading],
    memory: &Memory,
    now: Timestamp,
) -> Plan {
    plan(&PolicyInput {
        policy,
        scale,
        pods,
        readings,
        memory,
        settings: &ControllerSettings::default(),
        now,
    })
}

fn first_sample(readings: &[MetricReading]) -> &PodReading {
    match &readings[0] {
        MetricReading::Pods(r) => r.values().next().unwrap(),
        other => panic!("a per-pod reading, not {other:?}"),
    }
}

/// One sync of a target whose Deployment followed the last scale: `pods` grown to
/// `replicas` (copies of the first), each reporting `sample`; planned and applied.
async fn sync_followed(
    api: &FakeApi,
    policy: &ScalingPolicy,
    memory: &Memory,
    replicas: i32,
    mut pods: Vec<Pod>,
    sample: PodReading,
    now: Timestamp,
) -> Reconciled {
    while pods.len() < replicas as usize {
        let mut extra = pods[0].clone();
        extra.name = format!("web-extra-{}", pods.len());
        pods.push(extra);
    }
    let readings = vec![MetricReading::Pods(
        pods.iter()
            .map(|p| (p.name.clone(), sample.clone()))
            .collect(),
    )];
    let scale = Ok(Scale {
        spec_replicas: replicas,
        status_replicas: replicas,
        selector: None,
    });
    let planned = plan_at(policy, &scale, &pods, &readings, memory, now);
    apply(api, policy, planned, Some(replicas), now).await
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_rescale_patches_the_scale_and_writes_hpa_shaped_status() {
    let api = FakeApi::default();
    let policy = make_policy("");
    let (pods, readings) = pods_and_readings(450);
    let scale = Ok(Scale {
        spec_replicas: 3,
        status_replicas: 3,
        selector: Some("app=web".into()),
    });
    let now = at("2026-11-22T10:00:00Z");
    let memory = Memory::default();
    let planned = plan_at(&policy, &scale, &pods, &readings, &memory, now);
    assert_eq!(planned.scale_to, Some(6));
    let done = apply(&api, &policy, planned, Some(3), now).await;
    assert_eq!(done.rescale_error, None);
    assert_eq!(done.plan.memory.history.scale_events, vec![(now, 3)]);
    assert_eq!(done.plan.memory.history.recommendations, vec![(now, 6)]);

    let calls = api.calls.into_inner().unwrap();
    assert_eq!(calls[0], Call::SetReplicas("shop".into(), "web".into(), 6));
    assert_eq!(
        calls[1],
        Call::Event(
            "web".into(),
            "SuccessfulRescale",
            "New size: 6; reason: cpu resource utilization (percentage of request) above target"
                .into()
        )
    );
    let Call::Status(ns, name, status) = &calls[2] else {
        panic!("{calls:?}")
    };
    assert_eq!((ns.as_str(), name.as_str()), ("shop", "web"));
    assert_eq!(status.desired_replicas, 6);
    assert_eq!(status.current_replicas, 3);
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.current_metrics[0].name, "cpu");
    assert_eq!(status.current_metrics[0].average_utilization, Some(90));
    let types: Vec<(&str, &str, &str)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("AbleToScale", "True", "ReadyForNewScale"),
            ("ScalingActive", "True", "ValidMetricFound"),
            ("ScalingLimited", "False", "DesiredWithinRange")
        ]
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );

    // The status is what the CRD accepts.
    let mut object = serde_json::to_value(&policy).unwrap();
    object["status"] = serde_json::to_value(status.as_ref()).unwrap();
    assert_eq!(SchemaValidator::for_weir_crds().validate(&object), vec![]);
}

#[tokio::test]
async fn a_failed_rescale_is_reported_and_not_remembered() {
    let api = FakeApi {
        fail_rescale: true,
        ..Default::default()
    };
    let policy = make_policy("");
    let (pods, readings) = pods_and_readings(450);
    let scale = Ok(Scale {
        spec_replicas: 3,
        status_replicas: 3,
        selector: None,
    });
    let now = at("2026-11-22T10:00:00Z");
    let memory = Memory::default();
    let planned = plan_at(&policy, &scale, &pods, &readings, &memory, now);
    let done = apply(&api, &policy, planned, Some(3), now).await;
    assert!(done.rescale_error.is_some());
    assert!(done.plan.memory.history.scale_events.is_empty());
    let calls = api.calls.into_inner().unwrap();
    assert!(
        matches!(&calls[0], Call::Event(_, "FailedRescale", m) if m.starts_with("New size: 6; error:"))
    );
    let Call::Status(_, _, status) = &calls[1] else {
        panic!("{calls:?}")
    };
    let able = status
        .conditions
        .iter()
        .find(|c| c.type_ == "AbleToScale")
        .unwrap();
    assert_eq!(
        (able.status.as_str(), able.reason.as_str()),
        ("False", "FailedUpdateScale")
    );
    assert_eq!(status.desired_replicas, 3);
}

#[tokio::test]
async fn an_unreadable_scale_and_a_paused_policy_do_not_scale() {
    let api = FakeApi::default();
    let policy = make_policy("");
    let (pods, readings) = pods_and_readings(450);
    let now = at("2026-11-22T10:00:00Z");
    let memory = Memory::default();
    let scale = Err("deployments.apps \"web\" not found".to_string());
    let planned = plan_at(&policy, &scale, &pods, &readings, &memory, now);
    assert_eq!(planned.scale_to, None);
    assert_eq!(planned.events[0].reason, "FailedGetScale");
    assert_eq!(planned.status.conditions[0].reason, "FailedGetScale");

    let paused = make_policy(", annotations: {weir.io/paused: \"true\"}");
    let scale = Ok(Scale {
        spec_replicas: 3,
        status_replicas: 3,
        selector: None,
    });
    let planned = plan_at(&paused, &scale, &pods, &readings, &memory, now);
    assert_eq!(planned.scale_to, None);
    apply(&api, &paused, planned, Some(3), now).await;
    assert!(
        api.calls
            .lock()
            .unwrap()
            .iter()
            .all(|c| !matches!(c, Call::SetReplicas(..)))
    );
}

#[tokio::test]
async fn memory_carries_stabilization_across_syncs() {
    let api = FakeApi::default();
    let policy = make_policy("");
    let mut memory = Memory::default();
    let mut replicas = 3;
    // Load at 90 %, then it drops to 10 % (ceil(0.2 × 6) = 2): the scale-down waits out
    // the 5-minute window that holds the recommendation of 6.
    let script = [
        ("2026-11-22T10:00:00Z", 450, 6),
        ("2026-11-22T10:01:00Z", 50, 6),
        ("2026-11-22T10:06:30Z", 50, 2),
    ];
    for (time, load, expected) in script {
        let now = at(time);
        let (pods, readings) = pods_and_readings(load);
        let sample = first_sample(&readings).clone();
        let done = sync_followed(&api, &policy, &memory, replicas, pods, sample, now).await;
        memory = done.plan.memory;
        replicas = done.plan.status.desired_replicas;
        assert_eq!(replicas, expected, "at {time}");
    }
}

#[tokio::test]
async fn with_the_forecast_status_shows_it_and_pods_are_released_before_five_minutes() {
    let api = FakeApi::default();
    let policy: ScalingPolicy = serde_yaml::from_str(&format!(
        "{POLICY}  forecast: {{enabled: true, historySeconds: 3600}}\n"
    ))
    .unwrap();
    let mut memory = Memory::default();
    let mut replicas = 3;
    let start = at("2026-11-22T10:00:00Z");
    let mut released_after = None;
    let mut last_status = None;
    // 1350m of CPU in all (5.4 pods at 50 % of 500m) for ten minutes, then 150m.
    for sync in 0..80 {
        let now = start + SignedDuration::from_secs(15 * sync);
        let total = if sync < 40 { 1350 } else { 150 };
        let (mut pods, readings) = pods_and_readings(0);
        pods.truncate(1);
        let mut sample = first_sample(&readings).clone();
        sample.milli = total / i64::from(replicas);
        sample.timestamp = now;
        let done = sync_followed(&api, &policy, &memory, replicas, pods, sample, now).await;
        memory = done.plan.memory;
        let desired = done.plan.status.desired_replicas;
        if sync >= 40 && desired < replicas && released_after.is_none() {
            released_after = Some(15 * (sync - 40));
        }
        replicas = desired;
        last_status = Some(done.plan.status);
    }
    let status = last_status.unwrap();
    let forecast = status.forecast.expect("status.forecast");
    assert!(forecast.enabled);
    assert!(forecast.lead_seconds >= 120, "{forecast:?}");
    assert_eq!(forecast.metrics.len(), 1, "{forecast:?}");
    assert_eq!(forecast.metrics[0].name, "cpu");
    assert_eq!(replicas, 1, "{forecast:?}");
    // HPA's look back holds the 6 for five minutes after the drop; the forecast, whose
    // hold looks ahead instead, lets them go within the lead time.
    let released = released_after.expect("released");
    assert!(released <= 150, "released {released} s after the drop");
}
