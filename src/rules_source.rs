//! The pod autoscaler reading Pods, Object and External metrics through the metrics
//! adapter's rule engine, in-process: the same prometheus-adapter rules, discovery, query
//! cache and request collapsing that serve `custom.metrics.k8s.io`, without an HTTP hop.
//! Resource, ContainerResource and Prometheus metrics go straight to Prometheus, batched
//! ([`PrometheusSource`]).

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_controllers::pod_autoscaler::{
    MetricReading, Pod, PodReading, effective_metrics,
    prometheus::{self, Batch, PrometheusSource, Results},
    source::MetricSource,
};
use weir_crds::scaling_policy::{MetricSourceType, MetricSpec, ScalingPolicySpec};
use weir_metrics_adapter::{api::CustomPath, engine::Engine, resources, selector::Selector};

/// What one metric of one policy asks the engine for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Request {
    /// A custom metric: resource path name, object name (`*` for every pod).
    Custom {
        namespace: String,
        resource: String,
        name: String,
        metric: String,
        selector: String,
    },
    /// An external metric.
    External {
        namespace: String,
        metric: String,
        selector: String,
    },
}

/// Engine answers for one request: per object (custom) or per series (external), in
/// milli-units.
type Answer = Result<Vec<(String, i64)>, String>;

/// One sync's values.
#[derive(Debug)]
pub struct RulesBatch {
    direct: Results,
    answers: BTreeMap<Request, Answer>,
    at: Timestamp,
}

/// The rule engine for Pods/Object/External metrics, Prometheus for the rest.
#[derive(Debug)]
pub struct RulesSource {
    engine: Arc<Engine>,
    prometheus: PrometheusSource,
}

impl RulesSource {
    /// A source over `engine` (shared with the metrics adapter, when it runs) and
    /// `prometheus`.
    pub fn new(engine: Arc<Engine>, prometheus: PrometheusSource) -> RulesSource {
        RulesSource { engine, prometheus }
    }
}

fn via_engine(metric: &MetricSpec) -> bool {
    matches!(
        metric.type_,
        MetricSourceType::Pods | MetricSourceType::Object | MetricSourceType::External
    )
}

fn selector_text(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<String, String> {
    // Round-trip through the validated form, so a bad selector fails here, by field.
    let parsed = match selector {
        Some(s) => Selector::from_label_selector(s)?,
        None => Selector::default(),
    };
    Ok(serde_json::to_string(&parsed.to_label_selector()).unwrap_or_default())
}

/// The engine request for `metric` of a policy in `namespace`.
fn request(namespace: &str, metric: &MetricSpec) -> Result<Request, String> {
    match metric.type_ {
        MetricSourceType::Pods => {
            let pods = metric.pods.as_ref().ok_or("pods: missing")?;
            Ok(Request::Custom {
                namespace: namespace.into(),
                resource: "pods".into(),
                name: "*".into(),
                metric: pods.metric.name.clone(),
                selector: selector_text(pods.metric.selector.as_ref())?,
            })
        }
        MetricSourceType::Object => {
            let object = metric.object.as_ref().ok_or("object: missing")?;
            let reference = &object.described_object;
            let group = reference
                .api_version
                .as_deref()
                .and_then(|v| v.rsplit_once('/').map(|(g, _)| g))
                .unwrap_or_default();
            let resource = resources::lookup(group, &reference.kind)
                .unwrap_or_else(|| resources::custom(group, &reference.kind));
            Ok(Request::Custom {
                namespace: namespace.into(),
                resource: resource.path_name(),
                name: reference.name.clone(),
                metric: object.metric.name.clone(),
                selector: selector_text(object.metric.selector.as_ref())?,
            })
        }
        MetricSourceType::External => {
            let external = metric.external.as_ref().ok_or("external: missing")?;
            Ok(Request::External {
                namespace: namespace.into(),
                metric: external.metric.name.clone(),
                selector: selector_text(external.metric.selector.as_ref())?,
            })
        }
        _ => Err("not an engine metric".into()),
    }
}

fn milli(value: f64) -> i64 {
    (value * 1000.0) as i64
}

impl RulesSource {
    async fn answer(&self, request: &Request) -> Answer {
        let parse = |text: &str| -> Result<Selector, String> {
            let selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_str(text).map_err(|e| e.to_string())?;
            Selector::from_label_selector(&selector)
        };
        match request {
            Request::Custom {
                namespace,
                resource,
                name,
                metric,
                selector,
            } => {
                let path = CustomPath {
                    version: "v1beta2".into(),
                    namespace: Some(namespace.clone()),
                    resource: resource.clone(),
                    name: name.clone(),
                    metric: metric.clone(),
                };
                // Every pod the series mention; each policy then picks its own.
                let (_, values) = self
                    .engine
                    .every_object_values(&path, &parse(selector)?)
                    .await
                    .map_err(|e| e.message)?;
                Ok(values
                    .into_iter()
                    .map(|v| (v.name, milli(v.value)))
                    .collect())
            }
            Request::External {
                namespace,
                metric,
                selector,
            } => {
                let samples = self
                    .engine
                    .external_samples(namespace, metric, &parse(selector)?)
                    .await
                    .map_err(|e| e.message)?;
                Ok(samples
                    .iter()
                    .filter(|s| s.value.is_finite())
                    .map(|s| (String::new(), milli(s.value)))
                    .collect())
            }
        }
    }
}

impl MetricSource for RulesSource {
    type Batch = RulesBatch;

    async fn fetch(&self, policies: &[(&str, &ScalingPolicySpec)], at: Timestamp) -> RulesBatch {
        if !self.engine.discovered() {
            // The first sync may come before the first relist: discover now.
            let _ = self.engine.relist().await;
        }
        let mut direct = Batch::default();
        let mut requests = BTreeMap::new();
        for (namespace, spec) in policies {
            let metrics = effective_metrics(spec);
            let (engine, rest): (Vec<MetricSpec>, Vec<MetricSpec>) =
                metrics.into_iter().partition(via_engine);
            direct.add_policy(namespace, &rest);
            for metric in &engine {
                if let Ok(r) = request(namespace, metric) {
                    requests.insert(r, ());
                }
            }
        }
        let futures: Vec<_> = requests
            .into_keys()
            .map(|r| async move {
                let answer = self.answer(&r).await;
                (r, answer)
            })
            .collect();
        let answers = futures::stream::iter(futures)
            .buffer_unordered(8)
            .collect::<BTreeMap<_, _>>()
            .await;
        RulesBatch {
            direct: self.prometheus.fetch(&direct, at).await,
            answers,
            at,
        }
    }

    fn readings(
        &self,
        batch: &RulesBatch,
        namespace: &str,
        metrics: &[MetricSpec],
        pods: &[Pod],
    ) -> Vec<MetricReading> {
        metrics
            .iter()
            .map(|metric| {
                if !via_engine(metric) {
                    return prometheus::readings(
                        namespace,
                        std::slice::from_ref(metric),
                        pods,
                        &batch.direct,
                    )
                    .pop()
                    .unwrap_or_else(|| MetricReading::Failed("no reading".into()));
                }
                let request = match request(namespace, metric) {
                    Ok(r) => r,
                    Err(e) => return MetricReading::Failed(e),
                };
                let values = match batch.answers.get(&request) {
                    Some(Ok(values)) => values,
                    Some(Err(e)) => return MetricReading::Failed(e.clone()),
                    None => return MetricReading::Failed("the metric was not fetched".into()),
                };
                match (&request, metric.type_) {
                    (_, MetricSourceType::Pods) => {
                        let wanted: std::collections::BTreeSet<&str> =
                            pods.iter().map(|p| p.name.as_str()).collect();
                        MetricReading::Pods(
                            values
                                .iter()
                                .filter(|(name, _)| wanted.contains(name.as_str()))
                                .map(|(name, milli)| {
                                    (
                                        name.clone(),
                                        PodReading {
                                            milli: *milli,
                                            containers: BTreeMap::new(),
                                            timestamp: batch.at,
                                            window: SignedDuration::from_mins(5),
                                        },
                                    )
                                })
                                .collect(),
                        )
                    }
                    (Request::Custom { name, .. }, _) => {
                        values.iter().find(|(n, _)| n == name).map_or_else(
                            || MetricReading::Failed(format!("no value for {name}")),
                            |(_, v)| MetricReading::Value(*v),
                        )
                    }
                    // HPA sums an external metric's series.
                    (Request::External { .. }, _) if values.is_empty() => {
                        MetricReading::Failed("the external metric has no series".into())
                    }
                    (Request::External { .. }, _) => {
                        MetricReading::Value(values.iter().map(|(_, v)| v).sum())
                    }
                }
            })
            .collect()
    }

    fn requests_issued(&self) -> u64 {
        self.prometheus.queries_issued() + self.engine.queries_sent()
    }
}
