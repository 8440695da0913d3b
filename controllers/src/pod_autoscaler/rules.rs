//! The pod autoscaler reading Pods, Object and External metrics through the metrics
//! adapter's rule engine, in-process: the same prometheus-adapter rules, discovery, query
//! cache and request collapsing that serve `custom.metrics.k8s.io`, without an HTTP hop.
//!
//! Batched like the direct source: per sync, one query per (metric, selector) for Pods
//! metrics and per (resource, metric, selector) for Object metrics, covering every
//! namespace that needs it (grouped by namespace and object); External metrics one query
//! per (namespace, metric, selector). Resource and ContainerResource metrics (CPU,
//! memory) go through the rules' `resourceRules`, as `metrics.k8s.io` answers them: one
//! query per resource per sync, every namespace at once, per container. Prometheus
//! metrics, and Resource metrics when the rules have no `resourceRules`, go straight to
//! Prometheus, batched ([`PrometheusSource`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use crate::pod_autoscaler::{
    MetricReading, Pod, PodReading, effective_metrics,
    prometheus::{self, Batch, PrometheusSource, Results},
    source::MetricSource,
};
use futures::StreamExt;
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::LabelSelector,
    jiff::{SignedDuration, Timestamp},
};
use weir_crds::scaling_policy::{MetricSourceType, MetricSpec, ScalingPolicySpec};
use weir_metrics_adapter::{
    engine::Engine, resource_metrics::Usage, resources, selector::Selector,
};

/// What a metric of a policy asks the engine for, less the namespace and object that
/// batching gathers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// A custom metric of `resource` (path name, `pods` for Pods metrics).
    Custom {
        resource: String,
        metric: String,
        selector: Selector,
    },
    /// An external metric in one namespace.
    External {
        namespace: String,
        metric: String,
        selector: Selector,
    },
    /// CPU or memory of pods, per container (Resource and ContainerResource metrics).
    Resource(Usage),
}

/// Which objects a custom metric's key is asked for.
#[derive(Debug, Default)]
struct Wanted {
    namespaces: BTreeSet<String>,
    /// Object names; `None` for every pod (Pods metrics).
    names: Option<BTreeSet<String>>,
}

/// Values by (namespace, object) for custom keys, per series for external ones, per
/// (namespace, pod) and container for resources, in milli-units.
#[derive(Debug)]
enum Answer {
    Custom(BTreeMap<(String, String), i64>),
    External(Vec<i64>),
    Resource(BTreeMap<(String, String), PodReading>),
}

/// One sync's values.
#[derive(Debug)]
pub struct RulesBatch {
    direct: Results,
    answers: BTreeMap<Key, Result<Answer, String>>,
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

/// The resource a Resource or ContainerResource metric names, when it is one the
/// resource rules answer.
fn usage(metric: &MetricSpec) -> Option<Usage> {
    let name = match metric.type_ {
        MetricSourceType::Resource => &metric.resource.as_ref()?.name,
        MetricSourceType::ContainerResource => &metric.container_resource.as_ref()?.name,
        _ => return None,
    };
    Usage::from_name(name)
}

impl RulesSource {
    /// Whether the engine answers `metric` (else Prometheus directly does).
    fn via_engine(&self, metric: &MetricSpec) -> bool {
        match metric.type_ {
            MetricSourceType::Pods | MetricSourceType::Object | MetricSourceType::External => true,
            MetricSourceType::Resource | MetricSourceType::ContainerResource => {
                self.engine.resource_rules().is_some() && usage(metric).is_some()
            }
            MetricSourceType::Prometheus => false,
        }
    }
}

/// The selector, validated (a bad one fails here, naming the label).
fn selector(selector: Option<&LabelSelector>) -> Result<Selector, String> {
    selector.map_or(Ok(Selector::default()), Selector::from_label_selector)
}

/// The key of `metric` for a policy in `namespace`, and the object it names (Object
/// metrics).
fn key(namespace: &str, metric: &MetricSpec) -> Result<(Key, Option<String>), String> {
    match metric.type_ {
        MetricSourceType::Pods => {
            let pods = metric.pods.as_ref().ok_or("pods: missing")?;
            Ok((
                Key::Custom {
                    resource: "pods".into(),
                    metric: pods.metric.name.clone(),
                    selector: selector(pods.metric.selector.as_ref())?,
                },
                None,
            ))
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
            Ok((
                Key::Custom {
                    resource: resource.path_name(),
                    metric: object.metric.name.clone(),
                    selector: selector(object.metric.selector.as_ref())?,
                },
                Some(reference.name.clone()),
            ))
        }
        MetricSourceType::External => {
            let external = metric.external.as_ref().ok_or("external: missing")?;
            Ok((
                Key::External {
                    namespace: namespace.into(),
                    metric: external.metric.name.clone(),
                    selector: selector(external.metric.selector.as_ref())?,
                },
                None,
            ))
        }
        MetricSourceType::Resource | MetricSourceType::ContainerResource => usage(metric)
            .map(|u| (Key::Resource(u), None))
            .ok_or_else(|| "only cpu and memory are read through resourceRules".into()),
        MetricSourceType::Prometheus => Err("not an engine metric".into()),
    }
}

fn milli(value: f64) -> i64 {
    (value * 1000.0) as i64
}

impl RulesSource {
    async fn answer(&self, key: &Key, wanted: &Wanted) -> Result<Answer, String> {
        match key {
            Key::Custom {
                resource,
                metric,
                selector,
            } => {
                let namespaces: Vec<String> = wanted.namespaces.iter().cloned().collect();
                let names: Option<Vec<String>> =
                    wanted.names.as_ref().map(|n| n.iter().cloned().collect());
                let values = self
                    .engine
                    .values_across(resource, metric, &namespaces, names.as_deref(), selector)
                    .await
                    .map_err(|e| e.message)?;
                Ok(Answer::Custom(
                    values
                        .into_iter()
                        .map(|(ns, v)| ((ns, v.name), milli(v.value)))
                        .collect(),
                ))
            }
            Key::Resource(usage) => {
                let namespaces: Vec<String> = wanted.namespaces.iter().cloned().collect();
                let (samples, window) = self
                    .engine
                    .container_usage(*usage, &namespaces)
                    .await
                    .map_err(|e| e.message)?;
                let mut pods: BTreeMap<(String, String), PodReading> = BTreeMap::new();
                for sample in samples {
                    let at = Timestamp::from_millisecond((sample.timestamp * 1000.0) as i64)
                        .unwrap_or(Timestamp::UNIX_EPOCH);
                    let reading = pods
                        .entry((sample.namespace, sample.pod))
                        .or_insert_with(|| PodReading {
                            milli: 0,
                            containers: BTreeMap::new(),
                            timestamp: at,
                            window: SignedDuration::from_millis(window as i64),
                        });
                    let value = milli(sample.value);
                    reading.milli = reading.milli.saturating_add(value);
                    reading.timestamp = reading.timestamp.min(at);
                    let container = reading.containers.entry(sample.container).or_default();
                    *container = container.saturating_add(value);
                }
                Ok(Answer::Resource(pods))
            }
            Key::External {
                namespace,
                metric,
                selector,
            } => {
                let samples = self
                    .engine
                    .external_samples(namespace, metric, selector)
                    .await
                    .map_err(|e| e.message)?;
                Ok(Answer::External(
                    samples
                        .iter()
                        .filter(|s| s.value.is_finite())
                        .map(|s| milli(s.value))
                        .collect(),
                ))
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
        let mut wanted: BTreeMap<Key, Wanted> = BTreeMap::new();
        for (namespace, spec) in policies {
            let (engine, rest): (Vec<MetricSpec>, Vec<MetricSpec>) = effective_metrics(spec)
                .into_iter()
                .partition(|m| self.via_engine(m));
            direct.add_policy(namespace, &rest);
            for metric in &engine {
                // A metric whose key fails is reported by `readings`.
                let Ok((key, object)) = key(namespace, metric) else {
                    continue;
                };
                let entry = wanted.entry(key).or_default();
                entry.namespaces.insert(namespace.to_string());
                if let Some(object) = object {
                    entry.names.get_or_insert_with(BTreeSet::new).insert(object);
                }
            }
        }
        let futures: Vec<_> = wanted
            .into_iter()
            .map(|(key, wanted)| async move {
                let answer = self.answer(&key, &wanted).await;
                (key, answer)
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
                if !self.via_engine(metric) {
                    return prometheus::readings(
                        namespace,
                        std::slice::from_ref(metric),
                        pods,
                        &batch.direct,
                    )
                    .pop()
                    .unwrap_or_else(|| MetricReading::Failed("no reading".into()));
                }
                let (key, object) = match key(namespace, metric) {
                    Ok(k) => k,
                    Err(e) => return MetricReading::Failed(e),
                };
                let answer = match batch.answers.get(&key) {
                    Some(Ok(answer)) => answer,
                    Some(Err(e)) => return MetricReading::Failed(e.clone()),
                    None => return MetricReading::Failed("the metric was not fetched".into()),
                };
                match (answer, object) {
                    (Answer::Custom(values), None) => MetricReading::Pods(
                        pods.iter()
                            .filter_map(|p| {
                                let milli = values.get(&(namespace.to_string(), p.name.clone()))?;
                                Some((
                                    p.name.clone(),
                                    PodReading {
                                        milli: *milli,
                                        containers: BTreeMap::new(),
                                        timestamp: batch.at,
                                        window: SignedDuration::from_mins(5),
                                    },
                                ))
                            })
                            .collect(),
                    ),
                    (Answer::Custom(values), Some(object)) => values
                        .get(&(namespace.to_string(), object.clone()))
                        .map_or_else(
                            || MetricReading::Failed(format!("no value for {object}")),
                            |v| MetricReading::Value(*v),
                        ),
                    (Answer::External(values), _) if values.is_empty() => {
                        MetricReading::Failed("the external metric has no series".into())
                    }
                    // HPA sums an external metric's series.
                    (Answer::External(values), _) => MetricReading::Value(values.iter().sum()),
                    (Answer::Resource(values), _) => MetricReading::Pods(
                        pods.iter()
                            .filter_map(|p| {
                                let reading =
                                    values.get(&(namespace.to_string(), p.name.clone()))?;
                                Some((p.name.clone(), reading.clone()))
                            })
                            .collect(),
                    ),
                }
            })
            .collect()
    }

    fn requests_issued(&self) -> u64 {
        self.prometheus.queries_issued() + self.engine.queries_sent()
    }

    /// Metrics read straight from Prometheus have their history read the same way; those
    /// read through the rules do not yet (their series names and aggregations are the
    /// rules', which the history query would have to follow): their forecast learns from
    /// syncs.
    async fn demand_history(
        &self,
        namespace: &str,
        target: &weir_crds::scaling_policy::ScaleTargetRef,
        metric: &MetricSpec,
        pods: &[Pod],
        range: crate::pod_autoscaler::source::HistoryRange,
    ) -> Result<Vec<(i64, f64)>, crate::pod_autoscaler::source::NoHistory> {
        if self.via_engine(metric) {
            return Err(crate::pod_autoscaler::source::NoHistory::Unsupported(
                "the history of metrics read through the adapter's rules is not read".into(),
            ));
        }
        self.prometheus
            .demand_history(namespace, target, metric, pods, range)
            .await
    }
}
