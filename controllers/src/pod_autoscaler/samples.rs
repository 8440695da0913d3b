//! Metric samples written in the configuration directory, for local mode without a
//! Prometheus: `weir up` scales the simulated Deployments on them, and picks up edits at
//! the next sync.
//!
//! ```yaml
//! apiVersion: weir.io/v1alpha1
//! kind: MetricSamples          # local mode only; a cluster ignores the kind
//! metadata: {name: load, namespace: shop}
//! samples:
//!   http_requests_per_second: {total: "120"}   # spread evenly over the target's pods
//!   cpu: {perPod: 300m}                         # every pod the same
//!   queue_length: {value: "42"}                 # Object, External, Prometheus metrics
//! ```
//!
//! Samples are keyed by the metric's name (Pods, Object, External), its resource name
//! (Resource, ContainerResource: `cpu`, `memory`) or its query (Prometheus). A `total`
//! divided over the pods makes scaling visible: with `total: 120` and a target of 10 per
//! pod, the autoscaler settles at 12 replicas. A bad document is reported in the log and
//! the samples read before stay in force.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::pod_autoscaler::{MetricReading, Pod, PodReading, source::MetricSource};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use tracing::warn;
use weir_crds::{
    Quantity,
    scaling_policy::{MetricSourceType, MetricSpec, ScalingPolicySpec},
};

/// One sample, as written.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sample {
    /// Spread evenly over the pods (Pods-like metrics).
    pub total: Option<Quantity>,
    /// The same for every pod.
    pub per_pod: Option<Quantity>,
    /// One value (Object, External, Prometheus).
    pub value: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: Metadata,
    #[serde(default)]
    samples: BTreeMap<String, Sample>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Samples by namespace, then metric key.
pub type Samples = BTreeMap<String, BTreeMap<String, Sample>>;

/// Reads every `MetricSamples` document under `root`. Errors name the file, document and
/// field.
pub fn read_samples(root: &Path) -> Result<Samples, String> {
    let files = weir_runtime::sources::files::walk_manifests(root)
        .map_err(|e| format!("reading {}: {e}", root.display()))?;
    let mut samples = Samples::new();
    for (name, path) in files {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            // The directory source reports syntax errors; the rest of a file after one
            // cannot be read (and the iterator would not move past it).
            let Ok(value) = serde_yaml::Value::deserialize(document) else {
                break;
            };
            if value.get("kind").and_then(|k| k.as_str()) != Some("MetricSamples") {
                continue;
            }
            let doc: Document = serde_path_to_error::deserialize(value).map_err(|e| {
                format!(
                    "{name}: document {}: MetricSamples: {}: {}",
                    i + 1,
                    e.path(),
                    e.inner()
                )
            })?;
            let namespace = doc.metadata.namespace.unwrap_or_else(|| "default".into());
            for (key, sample) in doc.samples {
                let set = [&sample.total, &sample.per_pod, &sample.value]
                    .iter()
                    .filter(|q| q.is_some())
                    .count();
                if set != 1 {
                    return Err(format!(
                        "{name}: document {}: MetricSamples {namespace}/{}: samples.{key}: exactly one of total, perPod and value is required",
                        i + 1,
                        doc.metadata.name
                    ));
                }
                for q in [&sample.total, &sample.per_pod, &sample.value]
                    .into_iter()
                    .flatten()
                {
                    q.to_milli()
                        .map_err(|e| format!("{name}: document {}: samples.{key}: {e}", i + 1))?;
                }
                samples
                    .entry(namespace.clone())
                    .or_default()
                    .insert(key, sample);
            }
        }
    }
    Ok(samples)
}

/// The key a metric's sample is written under.
fn key(metric: &MetricSpec) -> Option<&str> {
    Some(match metric.type_ {
        MetricSourceType::Resource => &metric.resource.as_ref()?.name,
        MetricSourceType::ContainerResource => &metric.container_resource.as_ref()?.name,
        MetricSourceType::Pods => &metric.pods.as_ref()?.metric.name,
        MetricSourceType::Object => &metric.object.as_ref()?.metric.name,
        MetricSourceType::External => &metric.external.as_ref()?.metric.name,
        MetricSourceType::Prometheus => &metric.prometheus.as_ref()?.query,
    })
}

fn milli(q: &Quantity) -> i64 {
    q.to_milli_i64().unwrap_or(0)
}

/// The directory's samples as the pod autoscaler's metric source.
#[derive(Debug)]
pub struct SamplesSource {
    root: PathBuf,
    last_good: Mutex<Samples>,
}

impl SamplesSource {
    /// Samples from the directory `root`, re-read at every sync.
    pub fn new(root: &Path) -> SamplesSource {
        SamplesSource {
            root: root.to_path_buf(),
            last_good: Mutex::new(Samples::new()),
        }
    }
}

/// The readings `samples` give for `metrics` of a policy in `namespace` with `pods`.
pub fn readings(
    samples: &Samples,
    namespace: &str,
    metrics: &[MetricSpec],
    pods: &[Pod],
    at: Timestamp,
) -> Vec<MetricReading> {
    metrics
        .iter()
        .map(|metric| {
            let Some(key) = key(metric) else {
                return MetricReading::Failed("the metric has no source".into());
            };
            let Some(sample) = samples.get(namespace).and_then(|s| s.get(key)) else {
                return MetricReading::Failed(format!(
                    "no sample for {key:?} in namespace {namespace} (MetricSamples)"
                ));
            };
            let per_pod_metric = matches!(
                metric.type_,
                MetricSourceType::Resource
                    | MetricSourceType::ContainerResource
                    | MetricSourceType::Pods
            );
            if !per_pod_metric {
                return match &sample.value {
                    Some(v) => MetricReading::Value(milli(v)),
                    None => MetricReading::Failed(format!(
                        "samples.{key}: a {:?} metric needs `value`",
                        metric.type_
                    )),
                };
            }
            let each = match (&sample.total, &sample.per_pod) {
                (Some(total), _) if !pods.is_empty() => milli(total) / pods.len() as i64,
                (_, Some(per_pod)) => milli(per_pod),
                (Some(_), _) => 0,
                _ => {
                    return MetricReading::Failed(format!(
                        "samples.{key}: a per-pod metric needs `total` or `perPod`"
                    ));
                }
            };
            let container = metric
                .container_resource
                .as_ref()
                .map(|c| c.container.clone());
            MetricReading::Pods(
                pods.iter()
                    .map(|p| {
                        (
                            p.name.clone(),
                            PodReading {
                                milli: each,
                                containers: container.iter().map(|c| (c.clone(), each)).collect(),
                                timestamp: at,
                                window: SignedDuration::from_mins(1),
                            },
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

impl MetricSource for SamplesSource {
    type Batch = (Samples, Timestamp);

    async fn fetch(&self, _: &[(&str, &ScalingPolicySpec)], at: Timestamp) -> (Samples, Timestamp) {
        let mut last_good = self.last_good.lock().unwrap_or_else(|e| e.into_inner());
        match read_samples(&self.root) {
            Ok(samples) => *last_good = samples,
            Err(e) => warn!(error = %e, "metric samples not read; the previous ones stay in force"),
        }
        (last_good.clone(), at)
    }

    fn readings(
        &self,
        (samples, at): &(Samples, Timestamp),
        namespace: &str,
        metrics: &[MetricSpec],
        pods: &[Pod],
    ) -> Vec<MetricReading> {
        readings(samples, namespace, metrics, pods, *at)
    }

    fn requests_issued(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use crate::pod_autoscaler::{Container, PodPhase};

    use super::*;

    fn pod(name: &str) -> Pod {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(true),
            start_time: None,
            ready_since: None,
            containers: vec![Container::default()],
        }
    }

    fn metrics(yaml: &str) -> Vec<MetricSpec> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn totals_spread_over_pods_and_values_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.yaml"),
            "apiVersion: weir.io/v1alpha1\nkind: MetricSamples\nmetadata: {name: a, namespace: shop}\nsamples:\n  rps: {total: \"90\"}\n  cpu: {perPod: 200m}\n  lag: {value: \"7\"}\n",
        )
        .unwrap();
        let samples = read_samples(dir.path()).unwrap();
        let specs = metrics(
            "- {type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: '10'}}}\n\
             - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}\n\
             - {type: External, external: {metric: {name: lag}, target: {type: Value, value: '1'}}}\n\
             - {type: External, external: {metric: {name: missing}, target: {type: Value, value: '1'}}}\n",
        );
        let pods = [pod("a"), pod("b"), pod("c")];
        let r = readings(&samples, "shop", &specs, &pods, Timestamp::UNIX_EPOCH);
        let MetricReading::Pods(rps) = &r[0] else {
            panic!("{:?}", r[0])
        };
        assert_eq!(rps["b"].milli, 30_000);
        let MetricReading::Pods(cpu) = &r[1] else {
            panic!("{:?}", r[1])
        };
        assert_eq!(cpu["c"].milli, 200);
        assert_eq!(r[2], MetricReading::Value(7000));
        assert!(matches!(&r[3], MetricReading::Failed(why) if why.contains("missing")));
        // Another namespace has no samples.
        assert!(matches!(
            &readings(&samples, "web", &specs, &pods, Timestamp::UNIX_EPOCH)[0],
            MetricReading::Failed(_)
        ));
    }

    #[test]
    fn a_syntax_error_ends_the_file_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("broken.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web\n  ports: [\n",
        )
        .unwrap();
        assert_eq!(read_samples(dir.path()).unwrap(), Samples::new());
    }

    #[test]
    fn errors_name_file_object_and_field() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("samples:\n  rps: {total: lots}\n", "samples.rps"),
            (
                "samples:\n  rps: {total: \"1\", value: \"2\"}\n",
                "samples.rps: exactly one",
            ),
            ("samples:\n  rps: {totl: \"1\"}\n", "samples.rps"),
        ] {
            std::fs::write(
                dir.path().join("s.yaml"),
                format!("apiVersion: weir.io/v1alpha1\nkind: MetricSamples\nmetadata: {{name: a, namespace: shop}}\n{text}"),
            )
            .unwrap();
            let err = read_samples(dir.path()).unwrap_err();
            assert!(err.contains("s.yaml: document 1"), "{err}");
            assert!(err.contains(expected), "{err}");
        }
    }
}
