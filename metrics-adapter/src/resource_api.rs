//! The engine serving `metrics.k8s.io`: which pods or nodes a request covers (from the
//! object index, with label and field selectors), two queries (CPU and memory) through
//! the shared cache, and the answer in the API's shape. Also the per-container usage the
//! pod autoscaler reads in-process for Resource and ContainerResource metrics.

use k8s_openapi::jiff::Timestamp;

use crate::{
    api::{ApiError, ResourcePath},
    engine::{Engine, Sample, timestamp},
    resource_metrics::{self, Point, ResourceRules, Usage},
    resource_wire::{self, FieldSelector},
    resources,
    selector::Selector,
};

/// Above this many selected objects a query matches every object of the scope and the
/// answer is filtered here, rather than sending a regular expression of every name.
const MAX_NAMES_IN_QUERY: usize = 500;

/// One container's usage of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSample {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// Cores or bytes.
    pub value: f64,
    /// When (Unix seconds).
    pub timestamp: f64,
}

fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))
}

fn points(samples: &[Sample]) -> Vec<Point<'_>> {
    samples
        .iter()
        .map(|s| (&s.labels, s.value, s.timestamp))
        .collect()
}

impl Engine {
    /// The resource rules, when `metrics.k8s.io` is served.
    pub fn resource_rules(&self) -> Option<&ResourceRules> {
        self.rules().resource.as_ref()
    }

    fn require_resource_rules(&self) -> Result<&ResourceRules, ApiError> {
        self.resource_rules().ok_or_else(|| {
            ApiError::not_found(
                "the resource metrics API is not served: the adapter's rules have no \
                 resourceRules",
            )
        })
    }

    /// Answers a `metrics.k8s.io` request: a `PodMetrics`/`NodeMetrics` object, or a list,
    /// as JSON bytes.
    pub async fn resource_metrics(
        &self,
        path: &ResourcePath,
        labels: &Selector,
        fields: &FieldSelector,
    ) -> Result<Vec<u8>, ApiError> {
        let rules = self.require_resource_rules()?;
        let resource = resources::lookup("", path.resource())
            .ok_or_else(|| ApiError::internal("no built-in resource"))?;
        let mut objects = self
            .objects()
            .described(&resource, path.namespace.as_deref(), labels)
            .ok_or_else(|| {
                ApiError::unavailable(format!("the {} index is not available", path.resource()))
            })?;
        objects.retain(|o| {
            fields.matches(&o.namespace, &o.name)
                && path.name.as_ref().is_none_or(|name| *name == o.name)
        });
        let not_found = || {
            let (kind, key) = if path.pods {
                (
                    "podmetrics",
                    format!(
                        "{}/{}",
                        path.namespace.as_deref().unwrap_or_default(),
                        path.name.as_deref().unwrap_or_default()
                    ),
                )
            } else {
                ("nodemetrics", path.name.clone().unwrap_or_default())
            };
            ApiError::not_found(format!("{kind}.metrics.k8s.io \"{key}\" not found"))
        };
        let kind = if path.pods {
            "PodMetrics"
        } else {
            "NodeMetrics"
        };
        if objects.is_empty() {
            return match path.name {
                Some(_) => Err(not_found()),
                None => encode(&resource_wire::list_out(kind, Vec::new())),
            };
        }
        // Name the objects in the query when a selection narrowed them; otherwise the
        // query covers the whole scope, so it stays the same (and cached) as pods come
        // and go.
        let narrowed = path.name.is_some() || !labels.is_empty() || !fields.is_empty();
        let names: Option<Vec<String>> = (narrowed && objects.len() <= MAX_NAMES_IN_QUERY)
            .then(|| objects.iter().map(|o| o.name.clone()).collect());
        let namespaces: Option<Vec<String>> = path.namespace.clone().map(|ns| vec![ns]);
        let query = |usage: Usage| {
            let rule = rules.rule(usage);
            if path.pods {
                resource_metrics::pod_query(rule, namespaces.as_deref(), names.as_deref())
            } else {
                resource_metrics::node_query(rule, names.as_deref())
            }
            .map_err(ApiError::bad_request)
        };
        let (cpu_query, memory_query) = (query(Usage::Cpu)?, query(Usage::Memory)?);
        let (cpu, memory) = futures::join!(
            self.fetch_for_api(&cpu_query),
            self.fetch_for_api(&memory_query)
        );
        let (cpu, memory) = (cpu?, memory?);
        let (cpu, memory) = (points(&cpu), points(&memory));
        let window = rules.window();
        let now = Timestamp::now().to_string();
        let (pods, nodes) = if path.pods {
            (
                resource_metrics::pods(rules, &objects, &cpu, &memory),
                Vec::new(),
            )
        } else {
            (
                Vec::new(),
                resource_metrics::nodes(rules, &objects, &cpu, &memory),
            )
        };
        let items: Vec<_> = pods
            .iter()
            .map(|u| resource_wire::pod_out(u, &window, &now, timestamp(u.timestamp)))
            .chain(
                nodes
                    .iter()
                    .map(|u| resource_wire::node_out(u, &window, &now, timestamp(u.timestamp))),
            )
            .collect();
        match path.name {
            Some(_) => encode(&items.into_iter().next().ok_or_else(not_found)?),
            None => encode(&resource_wire::list_out(kind, items)),
        }
    }

    /// Per-container usage of `usage` for every pod in `namespaces`, with one query
    /// through the resource rules: what the pod autoscaler reads for Resource and
    /// ContainerResource metrics with `--metrics-source rules`. Also the rules' window
    /// (milliseconds), which the samples average over.
    pub async fn container_usage(
        &self,
        usage: Usage,
        namespaces: &[String],
    ) -> Result<(Vec<ContainerSample>, u64), ApiError> {
        let rules = self.require_resource_rules()?;
        let rule = rules.rule(usage);
        let query = resource_metrics::pod_query(rule, Some(namespaces), None)
            .map_err(ApiError::bad_request)?;
        let samples = self.fetch_for_api(&query).await?;
        let samples = samples
            .iter()
            .filter(|s| s.value.is_finite())
            .filter_map(|s| {
                Some(ContainerSample {
                    namespace: s.labels.get(&rule.namespace_label)?.clone(),
                    pod: s.labels.get(&rule.pod_label)?.clone(),
                    container: s
                        .labels
                        .get(&rule.container_label)
                        .cloned()
                        .unwrap_or_default(),
                    value: s.value,
                    timestamp: s.timestamp,
                })
            })
            .collect();
        Ok((samples, rules.window_ms))
    }
}
