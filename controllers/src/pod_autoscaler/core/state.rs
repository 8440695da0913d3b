//! The STATE file of `weir recommend replicas -f STATE.yaml`: everything one decision looks
//! at, written by hand or captured from a cluster. `docs/recommend-replicas.md` documents
//! it with an example.
//!
//! Quantities are Kubernetes quantities (`250m`, `1.5`, `256Mi`), times RFC 3339, durations
//! Gateway API durations (`30s`, `5m`). A problem names the field it is in.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use weir_crds::{Duration, Quantity, scaling_policy::ScalingPolicySpec};

use super::{
    Container, ControllerSettings, History, Input, MetricReading, Pod, PodPhase, PodReading,
    Recommendation, forecast::Forecaster, forecast_tuning, recommend,
};

/// The STATE file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    /// The ScalingPolicy's spec.
    pub policy: ScalingPolicySpec,
    /// The target's `spec.replicas`.
    pub current_replicas: i32,
    /// The target's `status.replicas` (default: `currentReplicas`).
    #[serde(default)]
    pub status_replicas: Option<i32>,
    /// The time of the decision.
    pub now: Timestamp,
    /// The policy is paused.
    #[serde(default)]
    pub paused: bool,
    /// The target's pods.
    #[serde(default)]
    pub pods: Vec<PodState>,
    /// One entry per metric, in spec order.
    #[serde(default)]
    pub samples: Vec<SampleState>,
    /// Past decisions.
    #[serde(default)]
    pub history: HistoryState,
    /// Controller settings (kube-controller-manager's defaults otherwise).
    #[serde(default)]
    pub controller: ControllerState,
}

/// A pod.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodState {
    /// Its name.
    pub name: String,
    /// Its phase (default Running).
    #[serde(default = "running")]
    pub phase: PodPhase,
    /// Being deleted.
    #[serde(default)]
    pub deleting: bool,
    /// The Ready condition's status; absent: the pod has no Ready condition.
    #[serde(default)]
    pub ready: Option<bool>,
    /// When it started.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// The Ready condition's last transition.
    #[serde(default)]
    pub ready_since: Option<Timestamp>,
    /// Containers and their requests.
    #[serde(default)]
    pub containers: Vec<ContainerState>,
}

fn running() -> PodPhase {
    PodPhase::Running
}

/// A container.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerState {
    /// Its name.
    pub name: String,
    /// Requests by resource.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
}

/// The reading of one metric: per pod, one value, or an error.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleState {
    /// Per pod (Resource, ContainerResource, Pods).
    #[serde(default)]
    pub pods: Option<BTreeMap<String, PodSampleState>>,
    /// One value (Object, External, Prometheus).
    #[serde(default)]
    pub value: Option<Quantity>,
    /// The source failed with this error.
    #[serde(default)]
    pub error: Option<String>,
    /// The metric's recent demand, for `forecast` (any order).
    #[serde(default)]
    pub history: Vec<RatioPoint>,
}

/// One past value of a metric, for the forecast: its demand, or (as recorded before
/// demand was reported) its ratio to target.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioPoint {
    /// When.
    pub time: Timestamp,
    /// The replicas the metric needed then (`metrics[].demand` in the output).
    #[serde(default)]
    pub demand: Option<f64>,
    /// The metric's value over its target then (`metrics[].ratio`); taken as a demand of
    /// ratio × `currentReplicas`.
    #[serde(default)]
    pub ratio: Option<f64>,
}

/// One pod's sample.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSampleState {
    /// The pod's value (for ContainerResource, give `containers`).
    #[serde(default)]
    pub value: Option<Quantity>,
    /// Per container.
    #[serde(default)]
    pub containers: BTreeMap<String, Quantity>,
    /// When it was taken (default: `now`).
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// The window it averages (default 30s).
    #[serde(default)]
    pub window: Option<Duration>,
}

/// Past decisions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryState {
    /// Past recommendations.
    #[serde(default)]
    pub recommendations: Vec<RecommendationState>,
    /// Past scale events.
    #[serde(default)]
    pub scale_events: Vec<ScaleEventState>,
    /// Syncs in a row whose metrics all failed, before this one.
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// A past recommendation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationState {
    /// When.
    pub time: Timestamp,
    /// The recommended count.
    pub replicas: i32,
}

/// A past scale event.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleEventState {
    /// When.
    pub time: Timestamp,
    /// Replicas added (positive) or removed (negative).
    pub change: i32,
}

/// Controller settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerState {
    /// Default 5m.
    #[serde(default)]
    pub cpu_initialization_period: Option<Duration>,
    /// Default 30s.
    #[serde(default)]
    pub initial_readiness_delay: Option<Duration>,
    /// Default 5m.
    #[serde(default)]
    pub downscale_stabilization: Option<Duration>,
    /// Default 0.1.
    #[serde(default)]
    pub tolerance: Option<f64>,
}

/// A problem with a STATE file, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StateError {
    /// The field, as a path (`pods[1].containers[0].requests.cpu`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> StateError {
    StateError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses a STATE file.
pub fn parse(yaml: &str) -> Result<State, StateError> {
    let deserializer = serde_yaml::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_yaml's message may start with the path too.
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(message);
        err(
            if path == "." {
                "(document)".into()
            } else {
                path
            },
            message,
        )
    })
}

fn to_milli(q: &Quantity, field: &str) -> Result<i64, StateError> {
    q.to_milli_i64().map_err(|e| err(field, e.to_string()))
}

fn signed(d: &Duration) -> SignedDuration {
    SignedDuration::try_from(d.get()).unwrap_or(SignedDuration::MAX)
}

/// The core's inputs from a STATE file.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Per sample, its history as (seconds, demand).
    demand_history: Vec<Vec<(i64, f64)>>,
    pods: Vec<Pod>,
    readings: Vec<MetricReading>,
    history: History,
    settings: ControllerSettings,
}

impl State {
    /// Converts quantities and defaults; the first problem, by field.
    pub fn prepare(&self) -> Result<Prepared, StateError> {
        let mut pods = Vec::new();
        for (p, pod) in self.pods.iter().enumerate() {
            let mut containers = Vec::new();
            for (c, container) in pod.containers.iter().enumerate() {
                let mut requests = BTreeMap::new();
                for (resource, q) in &container.requests {
                    let field = format!("pods[{p}].containers[{c}].requests.{resource}");
                    requests.insert(resource.clone(), to_milli(q, &field)?);
                }
                containers.push(Container {
                    name: container.name.clone(),
                    requests,
                });
            }
            pods.push(Pod {
                name: pod.name.clone(),
                phase: pod.phase,
                deleting: pod.deleting,
                ready: pod.ready,
                start_time: pod.start_time,
                ready_since: pod.ready_since,
                containers,
            });
        }
        let mut readings = Vec::new();
        for (s, sample) in self.samples.iter().enumerate() {
            let given = [
                sample.pods.is_some(),
                sample.value.is_some(),
                sample.error.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(err(
                    format!("samples[{s}]"),
                    "give exactly one of pods, value or error",
                ));
            }
            let reading = if let Some(error) = &sample.error {
                MetricReading::Failed(error.clone())
            } else if let Some(value) = &sample.value {
                MetricReading::Value(to_milli(value, &format!("samples[{s}].value"))?)
            } else {
                let mut readings = BTreeMap::new();
                for (name, pod) in sample.pods.iter().flatten() {
                    let field = format!("samples[{s}].pods.{name}");
                    let mut containers = BTreeMap::new();
                    for (container, q) in &pod.containers {
                        containers.insert(
                            container.clone(),
                            to_milli(q, &format!("{field}.containers.{container}"))?,
                        );
                    }
                    let milli = match &pod.value {
                        Some(q) => to_milli(q, &format!("{field}.value"))?,
                        None if !containers.is_empty() => containers.values().sum(),
                        None => return Err(err(field, "give value or containers")),
                    };
                    readings.insert(
                        name.clone(),
                        PodReading {
                            milli,
                            containers,
                            timestamp: pod.timestamp.unwrap_or(self.now),
                            window: pod
                                .window
                                .as_ref()
                                .map_or(SignedDuration::from_secs(30), signed),
                        },
                    );
                }
                MetricReading::Pods(readings)
            };
            readings.push(reading);
        }
        let defaults = ControllerSettings::default();
        let settings = ControllerSettings {
            cpu_initialization_period: self
                .controller
                .cpu_initialization_period
                .as_ref()
                .map_or(defaults.cpu_initialization_period, signed),
            initial_readiness_delay: self
                .controller
                .initial_readiness_delay
                .as_ref()
                .map_or(defaults.initial_readiness_delay, signed),
            downscale_stabilization: self
                .controller
                .downscale_stabilization
                .as_ref()
                .map_or(defaults.downscale_stabilization, signed),
            tolerance: match self.controller.tolerance {
                Some(t) if !(0.0..1.0).contains(&t) => {
                    return Err(err(
                        "controller.tolerance",
                        "must be at least 0 and below 1",
                    ));
                }
                Some(t) => t,
                None => defaults.tolerance,
            },
        };
        let history = History {
            recommendations: self
                .history
                .recommendations
                .iter()
                .map(|r| (r.time, r.replicas))
                .collect(),
            scale_events: self
                .history
                .scale_events
                .iter()
                .map(|e| (e.time, e.change))
                .collect(),
            consecutive_failures: self.history.consecutive_failures,
        };
        let mut demand_history = Vec::new();
        for (s, sample) in self.samples.iter().enumerate() {
            let mut points = Vec::new();
            for (h, point) in sample.history.iter().enumerate() {
                let demand = match (point.demand, point.ratio) {
                    (Some(demand), None) => demand,
                    (None, Some(ratio)) => ratio * f64::from(self.current_replicas),
                    _ => {
                        return Err(err(
                            format!("samples[{s}].history[{h}]"),
                            "give exactly one of demand or ratio",
                        ));
                    }
                };
                if !(demand.is_finite() && demand >= 0.0) {
                    return Err(err(
                        format!("samples[{s}].history[{h}]"),
                        "must be a non-negative number",
                    ));
                }
                points.push((point.time.as_second(), demand));
            }
            demand_history.push(points);
        }
        Ok(Prepared {
            demand_history,
            pods,
            readings,
            history,
            settings,
        })
    }

    /// Decides on this state.
    pub fn recommend(&self) -> Result<Recommendation, StateError> {
        let prepared = self.prepare()?;
        let forecasts: Vec<Forecaster> = match &self.policy.forecast {
            Some(settings) => {
                let tuning = forecast_tuning(settings, &prepared.pods, &prepared.readings);
                prepared
                    .demand_history
                    .iter()
                    .map(|points| {
                        let mut f = Forecaster::new(i64::from(settings.history_seconds));
                        f.seed(points, tuning);
                        f
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(recommend(&Input {
            spec: &self.policy,
            current_replicas: self.current_replicas,
            status_replicas: self.status_replicas.unwrap_or(self.current_replicas),
            now: self.now,
            pods: &prepared.pods,
            readings: &prepared.readings,
            history: &prepared.history,
            settings: &prepared.settings,
            paused: self.paused,
            forecasts: &forecasts,
        }))
    }
}
