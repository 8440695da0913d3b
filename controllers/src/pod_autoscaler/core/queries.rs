//! Prometheus as the pod autoscaler's metric source, batched per sync: what to ask
//! (templates and their PromQL) and how to read the answers. The client that asks is
//! [`crate::pod_autoscaler::prometheus::PrometheusSource`].
//!
//! A sync first collects what every ScalingPolicy needs ([`Batch`]), then issues one PromQL
//! query per distinct *template*, for all namespaces at once, grouped by namespace and pod
//! (or object); each policy then picks its own series from the shared results
//! ([`readings`]). 10,000 policies scaling on the same metric cost one query, not 10,000.
//!
//! Templates (prometheus-adapter's conventions for series labels):
//! - Pods metric `m` with selector `s`:
//!   `sum by (namespace, pod) (m{namespace=~"ns1|ns2", s})`
//! - Resource cpu: `sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{...}[5m]))`
//!   (cores); memory: `container_memory_working_set_bytes` (bytes); ContainerResource adds
//!   `container` to the grouping.
//! - Object metric `m` of kind `K`: `sum by (namespace, k) (m{namespace=~"..."})`, the
//!   object's name in the label named after its kind, lowercase.
//! - External metric `m` with selector `s`: `sum(m{s})`.
//! - Prometheus metric: the policy's own query, which must return one sample.
//!
//! Names, namespaces and selector values reach PromQL only validated (metric and label
//! names, DNS-label namespaces) and escaped (label values), so no policy can change a
//! query's shape.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_crds::scaling_policy::{MetricIdentifier, MetricSourceType, MetricSpec};
use weir_metrics_adapter::{
    promql::{self, quote},
    selector::Selector,
};
use weir_store::manifest::invalid_dns_label;

use super::{MetricReading, Pod, PodReading, effective_metrics};

/// One query template: everything but the namespaces it is asked for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Template {
    /// A per-pod custom metric.
    Pods {
        /// Metric name.
        metric: String,
        /// The metric's selector (matchLabels and matchExpressions).
        selector: Selector,
    },
    /// CPU (cores) or memory (bytes) of pods, or of one container in them.
    Resource {
        /// `cpu` or `memory`.
        resource: String,
        /// Group by container too.
        per_container: bool,
    },
    /// A metric describing objects of one kind.
    Object {
        /// Metric name.
        metric: String,
        /// The label holding the object's name (the kind, lowercase).
        label: String,
    },
    /// A metric from outside the cluster (not namespaced).
    External {
        /// Metric name.
        metric: String,
        /// The metric's selector.
        selector: Selector,
    },
    /// A user's query.
    Query(String),
}

impl Template {
    /// Whether results are per namespace (and so the query covers a set of namespaces).
    fn namespaced(&self) -> bool {
        matches!(
            self,
            Template::Pods { .. } | Template::Resource { .. } | Template::Object { .. }
        )
    }
}

/// What one sync needs: templates and, for namespaced ones, the namespaces.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    templates: BTreeMap<Template, BTreeSet<String>>,
}

impl Batch {
    /// Adds what the metrics of a policy in `namespace` need.
    pub fn add_policy(&mut self, namespace: &str, metrics: &[MetricSpec]) {
        for metric in metrics {
            if let Ok(template) = template(metric) {
                self.templates
                    .entry(template)
                    .or_default()
                    .insert(namespace.to_string());
            }
        }
    }

    /// The distinct templates.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether there is nothing to query.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The PromQL for each template (or why it cannot be built).
    pub fn queries(&self) -> Vec<(Template, Result<String, String>)> {
        self.templates
            .iter()
            .map(|(t, namespaces)| (t.clone(), promql(t, namespaces)))
            .collect()
    }
}

/// The template a metric is read with.
pub fn template(metric: &MetricSpec) -> Result<Template, String> {
    let missing = || format!("a {:?} metric needs its source field", metric.type_);
    match metric.type_ {
        MetricSourceType::Pods => {
            let pods = metric.pods.as_ref().ok_or_else(missing)?;
            Ok(Template::Pods {
                metric: pods.metric.name.clone(),
                selector: selector_of(&pods.metric)?,
            })
        }
        MetricSourceType::Resource => Ok(Template::Resource {
            resource: metric.resource.as_ref().ok_or_else(missing)?.name.clone(),
            per_container: false,
        }),
        MetricSourceType::ContainerResource => Ok(Template::Resource {
            resource: metric
                .container_resource
                .as_ref()
                .ok_or_else(missing)?
                .name
                .clone(),
            per_container: true,
        }),
        MetricSourceType::Object => {
            let object = metric.object.as_ref().ok_or_else(missing)?;
            Ok(Template::Object {
                metric: object.metric.name.clone(),
                label: object.described_object.kind.to_lowercase(),
            })
        }
        MetricSourceType::External => {
            let external = metric.external.as_ref().ok_or_else(missing)?;
            Ok(Template::External {
                metric: external.metric.name.clone(),
                selector: selector_of(&external.metric)?,
            })
        }
        MetricSourceType::Prometheus => Ok(Template::Query(
            metric
                .prometheus
                .as_ref()
                .ok_or_else(missing)?
                .query
                .clone(),
        )),
    }
}

/// The metric's selector, checked as the metrics APIs check it: Kubernetes label keys and
/// values, and keys that are Prometheus label names.
pub(super) fn selector_of(metric: &MetricIdentifier) -> Result<Selector, String> {
    let selector = match &metric.selector {
        Some(selector) => Selector::from_label_selector(selector),
        None => Ok(Selector::default()),
    };
    selector
        .and_then(|s| s.matchers().map(|_| s))
        .map_err(|e| format!("metric {}: selector: {e}", metric.name))
}

pub(super) fn valid_name(name: &str, what: &str) -> Result<(), String> {
    let ok = if what == "metric" {
        promql::valid_metric_name(name)
    } else {
        promql::valid_label_name(name)
    };
    ok.then_some(())
        .ok_or_else(|| format!("{name:?} is not a valid Prometheus {what} name"))
}

fn valid_namespace(namespace: &str) -> Result<(), String> {
    invalid_dns_label(namespace).map_or(Ok(()), Err)
}

pub(super) fn matchers(
    metric: Option<&str>,
    namespaces: Option<&BTreeSet<String>>,
    selector: &Selector,
    extra: &[&str],
) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(metric) = metric {
        valid_name(metric, "metric")?;
        parts.push(format!("__name__={}", quote(metric)));
    }
    if let Some(namespaces) = namespaces {
        for ns in namespaces {
            valid_namespace(ns)?;
        }
        let alternatives: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        parts.push(format!("namespace=~{}", quote(&alternatives.join("|"))));
    }
    // The metrics adapter's own translation: `In`/`NotIn` as anchored regular expressions
    // over escaped values, `Exists`/`DoesNotExist` as (non-)empty matches.
    parts.extend(selector.matchers()?.iter().map(ToString::to_string));
    parts.extend(extra.iter().map(|s| s.to_string()));
    Ok(format!("{{{}}}", parts.join(", ")))
}

/// The PromQL of `template` for `namespaces`.
pub fn promql(template: &Template, namespaces: &BTreeSet<String>) -> Result<String, String> {
    let none = Selector::default();
    match template {
        Template::Pods { metric, selector } => Ok(format!(
            "sum by (namespace, pod) ({})",
            matchers(Some(metric), Some(namespaces), selector, &[])?
        )),
        Template::Resource {
            resource,
            per_container,
        } => {
            let by = if *per_container {
                "namespace, pod, container"
            } else {
                "namespace, pod"
            };
            let containers = [r#"container!="""#, r#"container!="POD""#];
            match resource.as_str() {
                "cpu" => Ok(format!(
                    "sum by ({by}) (rate(container_cpu_usage_seconds_total{}[5m]))",
                    matchers(None, Some(namespaces), &none, &containers)?
                )),
                "memory" => Ok(format!(
                    "sum by ({by}) (container_memory_working_set_bytes{})",
                    matchers(None, Some(namespaces), &none, &containers)?
                )),
                other => Err(format!(
                    "resource {other} cannot be read from Prometheus (cpu and memory can)"
                )),
            }
        }
        Template::Object { metric, label } => {
            valid_name(label, "label")?;
            Ok(format!(
                "sum by (namespace, {label}) ({})",
                matchers(Some(metric), Some(namespaces), &none, &[])?
            ))
        }
        Template::External { metric, selector } => Ok(format!(
            "sum({})",
            matchers(Some(metric), None, selector, &[])?
        )),
        Template::Query(query) => Ok(query.clone()),
    }
}

/// One series: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// One template's result: series labels → value, or why it failed.
pub type Series = Result<Vec<Sample>, String>;

/// One template's series, indexed by namespace for namespaced templates, so each policy
/// looks only at its own namespace's series.
#[derive(Clone, Debug, Default)]
pub struct Indexed {
    by_namespace: std::collections::HashMap<String, Vec<Sample>>,
    all: Vec<Sample>,
}

impl Indexed {
    /// Indexes the series a template returned.
    pub fn new(template: &Template, series: Vec<Sample>) -> Self {
        if !template.namespaced() {
            return Indexed {
                by_namespace: Default::default(),
                all: series,
            };
        }
        let mut by_namespace: std::collections::HashMap<String, Vec<Sample>> = Default::default();
        for sample in series {
            if let Some(ns) = sample.0.get("namespace") {
                by_namespace.entry(ns.clone()).or_default().push(sample);
            }
        }
        Indexed {
            by_namespace,
            all: Vec::new(),
        }
    }

    /// The series a policy in `namespace` sees.
    fn for_namespace(&self, template: &Template, namespace: &str) -> &[Sample] {
        if template.namespaced() {
            self.by_namespace
                .get(namespace)
                .map(Vec::as_slice)
                .unwrap_or_default()
        } else {
            &self.all
        }
    }
}

/// The results of a batch, by template.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// Per template.
    pub by_template: BTreeMap<Template, Result<Indexed, String>>,
    /// When the queries were evaluated.
    pub at: Option<Timestamp>,
}

/// Prometheus values (cores, bytes, requests per second) in milli-units, as
/// prometheus-adapter converts them.
fn milli(value: f64) -> i64 {
    (value * 1000.0) as i64
}

/// The readings for one policy's metrics (in [`effective_metrics`] order) from shared
/// results: its namespace's series, its pods' values.
pub fn readings(
    namespace: &str,
    metrics: &[MetricSpec],
    pods: &[Pod],
    results: &Results,
) -> Vec<MetricReading> {
    let at = results.at.unwrap_or(Timestamp::UNIX_EPOCH);
    metrics
        .iter()
        .map(|metric| {
            let template = match template(metric) {
                Ok(t) => t,
                Err(e) => return MetricReading::Failed(e),
            };
            let series = match results.by_template.get(&template) {
                Some(Ok(indexed)) => indexed.for_namespace(&template, namespace),
                Some(Err(e)) => return MetricReading::Failed(e.clone()),
                None => return MetricReading::Failed("the metric was not queried".into()),
            };
            match &template {
                Template::Pods { .. } | Template::Resource { .. } => {
                    let names: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
                    let mut per_pod: BTreeMap<String, PodReading> = BTreeMap::new();
                    for (labels, value) in series.iter() {
                        let Some(pod) = labels.get("pod").filter(|p| names.contains(p.as_str()))
                        else {
                            continue;
                        };
                        let reading = per_pod.entry(pod.clone()).or_insert_with(|| PodReading {
                            milli: 0,
                            containers: BTreeMap::new(),
                            timestamp: at,
                            window: SignedDuration::from_mins(5),
                        });
                        // Cores, bytes or the metric's unit, in milli-units.
                        let value = milli(*value);
                        reading.milli += value;
                        if let Some(container) = labels.get("container") {
                            *reading.containers.entry(container.clone()).or_default() += value;
                        }
                    }
                    MetricReading::Pods(per_pod)
                }
                Template::Object { label, .. } => {
                    let Some(object) = &metric.object else {
                        return MetricReading::Failed("no object".into());
                    };
                    series
                        .iter()
                        .find(|(labels, _)| {
                            labels.get(label) == Some(&object.described_object.name)
                        })
                        .map_or_else(
                            || {
                                MetricReading::Failed(format!(
                                    "no series of {} for {} {}",
                                    object.metric.name,
                                    object.described_object.kind,
                                    object.described_object.name
                                ))
                            },
                            |(_, v)| MetricReading::Value(milli(*v)),
                        )
                }
                Template::External { .. } | Template::Query(_) => match series {
                    [(_, value)] => MetricReading::Value(milli(*value)),
                    [] => MetricReading::Failed("the query returned no samples".into()),
                    many => MetricReading::Failed(format!(
                        "the query returned {} series; aggregate it to one (e.g. sum(...))",
                        many.len()
                    )),
                },
            }
        })
        .collect()
}

/// The batch for a set of policies: `(namespace, spec)` pairs.
pub fn batch_for<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a weir_crds::scaling_policy::ScalingPolicySpec)>,
) -> Batch {
    let mut batch = Batch::default();
    for (namespace, spec) in policies {
        batch.add_policy(namespace, &effective_metrics(spec));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods_metric(name: &str, selector: &[(&str, &str)]) -> MetricSpec {
        let labels: serde_json::Map<String, serde_json::Value> = selector
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "type": "Pods",
            "pods": {
                "metric": {"name": name, "selector": {"matchLabels": labels}},
                "target": {"type": "AverageValue", "averageValue": "1"}
            }
        }))
        .expect("metric")
    }

    #[test]
    fn one_query_per_template_across_namespaces() {
        let mut batch = Batch::default();
        for ns in ["shop", "payments", "shop"] {
            batch.add_policy(ns, &[pods_metric("http_requests_per_second", &[])]);
        }
        batch.add_policy("shop", &[pods_metric("queue_depth", &[])]);
        assert_eq!(batch.len(), 2);
        let queries = batch.queries();
        assert_eq!(
            queries[0].1.as_deref(),
            Ok(
                r#"sum by (namespace, pod) ({__name__="http_requests_per_second", namespace=~"payments|shop"})"#
            )
        );
    }

    #[test]
    fn values_from_policies_cannot_change_the_query() {
        // A value no Kubernetes label can hold is refused with the metric named, before
        // any PromQL is built.
        let error = template(&pods_metric("rps", &[("route", "a\"}) or vector(1) #")]))
            .expect_err("not a label value");
        assert!(error.contains("metric rps: selector"), "{error}");
        // Names that are not metric or label names are refused, not escaped.
        let mut bad = Batch::default();
        bad.add_policy("shop", &[pods_metric("rps{x=\"1\"}", &[])]);
        assert!(bad.queries()[0].1.is_err());
        let mut bad_ns = Batch::default();
        bad_ns.add_policy("shop|.*", &[pods_metric("rps", &[])]);
        assert!(bad_ns.queries()[0].1.is_err());
    }

    #[test]
    fn match_expressions_select_series_as_the_metrics_adapter_does() {
        let metric: MetricSpec = serde_json::from_value(serde_json::json!({
            "type": "External",
            "external": {
                "metric": {"name": "queue_messages", "selector": {
                    "matchLabels": {"queue": "orders"},
                    "matchExpressions": [
                        {"key": "region", "operator": "In", "values": ["eu.west", "us"]},
                        {"key": "tier", "operator": "NotIn", "values": ["test"]},
                        {"key": "canary", "operator": "DoesNotExist"},
                    ],
                }},
                "target": {"type": "Value", "value": "30"}
            }
        }))
        .expect("metric");
        let mut batch = Batch::default();
        batch.add_policy("shop", &[metric]);
        assert_eq!(
            batch.queries()[0].1.as_deref(),
            Ok(
                r#"sum({__name__="queue_messages", queue="orders", region=~"eu\\.west|us", tier!~"test", canary=""})"#
            )
        );
    }
}
