//! The rule engine at work: series discovery against Prometheus (re-listed periodically),
//! and values for requests, fetched with one query per (rule, namespace, objects,
//! selector) and cached for a short max age, with concurrent identical requests collapsed
//! into one query.
//!
//! The engine is what both the API server and, in-process, other components use.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use futures::future::join_all;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::{OnceCell, watch};
use tracing::{info, warn};
use weir_store::ClusterState;

use crate::{
    api::{ApiError, CustomPath, ExternalValue, ObjectValue},
    config::Rules,
    discovery::{CustomMetric, MetricIndex},
    quantity,
    query::{self, Objects},
    resources::{self, Resource},
    selector::Selector,
};

pub use weir_runtime::prometheus::{Prometheus, Sample};

type Fetched = Result<Arc<Vec<Sample>>, String>;

/// One object's value.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedValue {
    /// The object's name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// When it was sampled (Unix seconds).
    pub timestamp: f64,
}

/// Which objects exist, with their labels: what `*` with a `labelSelector` selects.
pub trait ObjectSource: Send + Sync {
    /// Names of the objects of `resource` (in `namespace`) matching `selector`, sorted;
    /// `None` when this source does not know `resource`.
    fn names(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Option<Vec<String>>;

    /// The pods (in `namespace`, or in every namespace when `None`) or nodes matching
    /// `selector`, with their labels, sorted by namespace and name: what the resource
    /// metrics API lists. `None` when this source does not index `resource`.
    fn described(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Option<Vec<crate::resource_metrics::Described>> {
        let _ = (resource, namespace, selector);
        None
    }
}

/// Objects from Weir's stores: the YAML directory in local mode, reflectors in a cluster.
/// Pods, namespaces, nodes, services, deployments and daemon sets are indexed.
#[derive(Debug, Clone)]
pub struct StoreObjects(pub watch::Receiver<ClusterState>);

fn select<'a, K: kube::Resource + 'a>(
    objects: impl Iterator<Item = &'a Arc<K>>,
    selector: &Selector,
) -> Vec<String> {
    let mut names: Vec<String> = objects
        .filter(|o| selector.matches(o.labels()))
        .map(|o| o.name_any())
        .collect();
    names.sort();
    names
}

impl ObjectSource for StoreObjects {
    fn names(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Option<Vec<String>> {
        let state = self.0.borrow();
        let ns = namespace.unwrap_or_default();
        Some(match (resource.group.as_str(), resource.plural.as_str()) {
            ("", "pods") => select(state.pods.in_namespace(ns), selector),
            ("", "services") => select(state.services.in_namespace(ns), selector),
            ("apps", "deployments") => select(state.deployments.in_namespace(ns), selector),
            ("apps", "daemonsets") => select(state.daemon_sets.in_namespace(ns), selector),
            ("", "nodes") => select(state.nodes.iter().map(|(_, o)| o), selector),
            ("", "namespaces") => select(state.namespaces.iter().map(|(_, o)| o), selector),
            _ => return None,
        })
    }

    fn described(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Option<Vec<crate::resource_metrics::Described>> {
        let state = self.0.borrow();
        Some(
            match (resource.group.as_str(), resource.plural.as_str(), namespace) {
                ("", "pods", Some(ns)) => described(state.pods.in_namespace(ns), selector),
                ("", "pods", None) => described(state.pods.iter().map(|(_, o)| o), selector),
                ("", "nodes", _) => described(state.nodes.iter().map(|(_, o)| o), selector),
                _ => return None,
            },
        )
    }
}

/// The pods or nodes of a store, as the resource metrics API lists them.
fn described<'a, K: kube::Resource + 'a>(
    objects: impl Iterator<Item = &'a std::sync::Arc<K>>,
    selector: &Selector,
) -> Vec<crate::resource_metrics::Described> {
    let mut out: Vec<crate::resource_metrics::Described> = objects
        .filter(|o| selector.matches(o.labels()))
        .map(|o| crate::resource_metrics::Described {
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
            labels: o.labels().clone(),
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// Labels of a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum CacheResult {
    /// A fresh stored result.
    hit,
    /// Joined a query already in flight.
    shared,
    /// Sent a query.
    miss,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    ok,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

/// The engine's metrics.
#[derive(Clone, Debug, Default)]
pub struct EngineMetrics {
    cache: Family<CacheLabels, Counter>,
    queries: Family<ResultLabels, Counter>,
    relists: Family<ResultLabels, Counter>,
    discovered: Family<ApiLabels, Gauge>,
}

impl EngineMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &mut Registry) -> EngineMetrics {
        let m = EngineMetrics::default();
        registry.register(
            "weir_metrics_adapter_cache_lookups",
            "Value lookups by outcome: hit (fresh cached result), shared (joined an identical query in flight), miss (sent a query)",
            m.cache.clone(),
        );
        registry.register(
            "weir_metrics_adapter_prometheus_queries",
            "Instant queries sent to Prometheus, by result",
            m.queries.clone(),
        );
        registry.register(
            "weir_metrics_adapter_relists",
            "Series discovery rounds, by result",
            m.relists.clone(),
        );
        registry.register(
            "weir_metrics_adapter_metrics_available",
            "Metrics the rules currently expose, by API (custom counts resource/metric pairs)",
            m.discovered.clone(),
        );
        m
    }
}

struct Slot {
    cell: Arc<OnceCell<Fetched>>,
    created: Instant,
}

/// Query results by query text, kept for `max_age`; identical queries in flight share one
/// request.
struct QueryCache {
    max_age: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl QueryCache {
    fn slot(&self, query: &str) -> (Arc<OnceCell<Fetched>>, CacheResult) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(query) {
            match slot.cell.get() {
                None => return (slot.cell.clone(), CacheResult::shared),
                Some(Ok(_)) if slot.created.elapsed() < self.max_age => {
                    return (slot.cell.clone(), CacheResult::hit);
                }
                _ => {}
            }
        }
        if slots.len() >= 4096 {
            let max_age = self.max_age;
            slots.retain(|_, s| s.cell.get().is_none() || s.created.elapsed() < max_age);
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(
            query.to_string(),
            Slot {
                cell: cell.clone(),
                created: Instant::now(),
            },
        );
        (cell, CacheResult::miss)
    }

    fn forget(&self, query: &str, cell: &Arc<OnceCell<Fetched>>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.get(query).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            slots.remove(query);
        }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// How long a value stays cached (0: only concurrent identical requests share).
    pub cache_max_age: Duration,
    /// How far back discovery looks for series.
    pub series_max_age: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            cache_max_age: Duration::from_secs(5),
            series_max_age: Duration::from_secs(600),
        }
    }
}

/// The rules, the metrics they currently expose, and the way to their values.
pub struct Engine {
    rules: Rules,
    index: ArcSwap<MetricIndex>,
    prometheus: Prometheus,
    objects: Arc<dyn ObjectSource>,
    cache: QueryCache,
    settings: EngineSettings,
    metrics: EngineMetrics,
    discovered: AtomicBool,
    queries_sent: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.rules.len())
            .field("prometheus", &self.prometheus)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Engine {
    /// An engine with no metrics discovered yet.
    pub fn new(
        rules: Rules,
        prometheus: Prometheus,
        objects: Arc<dyn ObjectSource>,
        settings: EngineSettings,
        metrics: EngineMetrics,
    ) -> Engine {
        Engine {
            rules,
            index: ArcSwap::from_pointee(MetricIndex::default()),
            prometheus,
            objects,
            cache: QueryCache {
                max_age: settings.cache_max_age,
                slots: Mutex::new(HashMap::new()),
            },
            settings,
            metrics,
            discovered: AtomicBool::new(false),
            queries_sent: AtomicU64::new(0),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Which objects exist.
    pub(crate) fn objects(&self) -> &dyn ObjectSource {
        self.objects.as_ref()
    }

    /// The metrics available now.
    pub fn index(&self) -> Arc<MetricIndex> {
        self.index.load_full()
    }

    /// Queries sent to Prometheus so far.
    pub fn queries_sent(&self) -> u64 {
        self.queries_sent.load(Ordering::Relaxed)
    }

    /// Whether discovery has completed at least once.
    pub fn discovered(&self) -> bool {
        self.discovered.load(Ordering::Relaxed)
    }

    /// Lists series for every rule and replaces the index. A rule whose listing fails
    /// keeps the metrics it exposed before (the last good discovery stays in force).
    pub async fn relist(&self) -> Result<(), String> {
        let start = Timestamp::now() - self.settings.series_max_age;
        let listings = join_all(
            self.rules
                .rules
                .iter()
                .map(|r| self.prometheus.series(&r.series_query, start)),
        )
        .await;
        let mut errors = Vec::new();
        let mut failed = BTreeSet::new();
        let series: Vec<Vec<BTreeMap<String, String>>> = listings
            .into_iter()
            .zip(&self.rules.rules)
            .enumerate()
            .map(|(i, (listing, rule))| {
                listing.unwrap_or_else(|e| {
                    errors.push(format!("{}: {e}", rule.origin));
                    failed.insert(i);
                    Vec::new()
                })
            })
            .collect();
        let mut next = MetricIndex::build(&self.rules, &series);
        if !failed.is_empty() {
            // Keep what failed rules exposed before.
            let previous = self.index.load();
            for (k, v) in &previous.custom {
                if failed.contains(&v.rule) {
                    next.custom.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            for (k, v) in &previous.external {
                if failed.contains(&v.rule) {
                    next.external.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        self.metrics
            .discovered
            .get_or_create(&ApiLabels { api: "custom" })
            .set(next.custom.len() as i64);
        self.metrics
            .discovered
            .get_or_create(&ApiLabels { api: "external" })
            .set(next.external.len() as i64);
        let changed = **self.index.load() != next;
        if changed {
            info!(
                custom = next.custom.len(),
                external = next.external.len(),
                conflicts = next.conflicts,
                "metrics discovered"
            );
        }
        self.index.store(Arc::new(next));
        let outcome = if errors.is_empty() {
            self.discovered.store(true, Ordering::Relaxed);
            Outcome::ok
        } else {
            Outcome::error
        };
        self.metrics
            .relists
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Re-lists every `interval` until `shutdown`.
    pub async fn relist_every(
        &self,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            if let Err(e) = self.relist().await {
                warn!(error = %e, "series discovery failed; the metrics found before stay available");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Runs `query`, from the cache when a fresh result is there.
    pub async fn fetch(&self, query: &str) -> Fetched {
        let (cell, outcome) = self.cache.slot(query);
        self.metrics
            .cache
            .get_or_create(&CacheLabels { result: outcome })
            .inc();
        let result = cell
            .get_or_init(|| async {
                self.queries_sent.fetch_add(1, Ordering::Relaxed);
                let result = self.prometheus.query(query).await;
                let outcome = if result.is_ok() {
                    Outcome::ok
                } else {
                    Outcome::error
                };
                self.metrics
                    .queries
                    .get_or_create(&ResultLabels { result: outcome })
                    .inc();
                result.map(Arc::new)
            })
            .await
            .clone();
        if result.is_err() {
            self.cache.forget(query, &cell);
        }
        result
    }

    /// Values of a custom metric, as the API serves them.
    pub async fn custom(
        &self,
        path: &CustomPath,
        selector: &Selector,
        metric_selector: &Selector,
    ) -> Result<Vec<ObjectValue>, ApiError> {
        let (resource, values) = self.custom_values(path, selector, metric_selector).await?;
        Ok(values
            .into_iter()
            .filter_map(|v| {
                Some(ObjectValue {
                    kind: resource.kind.clone(),
                    api_version: resource.api_version(),
                    namespace: if resource.is_namespace() {
                        None
                    } else {
                        path.namespace.clone()
                    },
                    timestamp: timestamp(v.timestamp),
                    value: quantity::format(v.value)?,
                    name: v.name,
                })
            })
            .collect())
    }

    /// Values of a custom metric per object, sorted by name, with the resource they
    /// describe: what [`Engine::custom`] serves, for in-process readers.
    pub async fn custom_values(
        &self,
        path: &CustomPath,
        selector: &Selector,
        metric_selector: &Selector,
    ) -> Result<(Resource, Vec<NamedValue>), ApiError> {
        let index = self.index();
        let metric = custom_metric(&index, &path.resource, &path.metric)?;
        let resource = &metric.resource;
        if metric.namespaced() != path.namespace.is_some() {
            return Err(ApiError::not_found(if metric.namespaced() {
                format!(
                    "{} is namespaced: ask under /namespaces/<namespace>/",
                    resource
                )
            } else {
                format!("{} is not namespaced", resource)
            }));
        }
        let namespace = path.namespace.as_deref();
        let objects = if path.name != "*" {
            Objects::Named(vec![path.name.clone()])
        } else {
            match self.objects.names(resource, namespace, selector) {
                Some(names) if names.is_empty() => return Ok((resource.clone(), Vec::new())),
                Some(names) => Objects::Named(names),
                None if selector.is_empty() => Objects::Any,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "labelSelector is not supported for {resource}: Weir indexes the labels of \
                         pods, services, deployments, daemonsets, nodes and namespaces"
                    )));
                }
            }
        };
        let rule = &self.rules.rules[metric.rule];
        let promql = query::custom(rule, metric, namespace, &objects, metric_selector)
            .map_err(|e| ApiError::bad_request(format!("metricLabelSelector: {e}")))?;
        let samples = self.fetch_for_api(&promql).await?;
        let wanted: Option<BTreeSet<&str>> = match &objects {
            Objects::Named(names) => Some(names.iter().map(String::as_str).collect()),
            Objects::Any => None,
        };
        let mut values: Vec<NamedValue> = samples
            .iter()
            .filter_map(|s| {
                let name = s.labels.get(&metric.label)?;
                if wanted.as_ref().is_some_and(|w| !w.contains(name.as_str())) {
                    return None;
                }
                Some(NamedValue {
                    name: name.clone(),
                    value: s.value,
                    timestamp: s.timestamp,
                })
            })
            .collect();
        values.sort_by(|a, b| a.name.cmp(&b.name));
        values.dedup_by(|a, b| a.name == b.name);
        values.retain(|v| v.value.is_finite());
        if path.name != "*" && values.is_empty() {
            return Err(ApiError::not_found(format!(
                "the server could not find the metric {} for {} {}",
                path.metric, resource, path.name
            )));
        }
        Ok((resource.clone(), values))
    }

    /// Values of a namespaced custom metric in several namespaces, with one query
    /// ([`query::custom_across`]): `(namespace, value)` pairs. `names` limits the objects
    /// (all the series mention when `None`).
    pub async fn values_across(
        &self,
        resource: &str,
        metric_name: &str,
        namespaces: &[String],
        names: Option<&[String]>,
        metric_selector: &Selector,
    ) -> Result<Vec<(String, NamedValue)>, ApiError> {
        let index = self.index();
        let metric = custom_metric(&index, resource, metric_name)?;
        let objects = match names {
            Some(names) => Objects::Named(names.to_vec()),
            None => Objects::Any,
        };
        let rule = &self.rules.rules[metric.rule];
        let promql = query::custom_across(rule, metric, namespaces, &objects, metric_selector)
            .map_err(ApiError::bad_request)?;
        let samples = self.fetch_for_api(&promql).await?;
        let namespace_label = metric.namespace_label.as_deref().unwrap_or_default();
        Ok(samples
            .iter()
            .filter(|s| s.value.is_finite())
            .filter_map(|s| {
                Some((
                    s.labels.get(namespace_label)?.clone(),
                    NamedValue {
                        name: s.labels.get(&metric.label)?.clone(),
                        value: s.value,
                        timestamp: s.timestamp,
                    },
                ))
            })
            .collect())
    }

    /// Values of an external metric, as the API serves them.
    pub async fn external(
        &self,
        namespace: &str,
        metric_name: &str,
        selector: &Selector,
    ) -> Result<Vec<ExternalValue>, ApiError> {
        let samples = self
            .external_samples(namespace, metric_name, selector)
            .await?;
        Ok(samples
            .iter()
            .filter_map(|s| {
                let mut labels = s.labels.clone();
                labels.remove("__name__");
                Some(ExternalValue {
                    labels,
                    timestamp: timestamp(s.timestamp),
                    value: quantity::format(s.value)?,
                })
            })
            .collect())
    }

    /// The samples of an external metric, for in-process readers.
    pub async fn external_samples(
        &self,
        namespace: &str,
        metric_name: &str,
        selector: &Selector,
    ) -> Result<Arc<Vec<Sample>>, ApiError> {
        let index = self.index();
        let metric = index.external.get(metric_name).ok_or_else(|| {
            ApiError::not_found(format!(
                "the server could not find the external metric {metric_name}"
            ))
        })?;
        let rule = &self.rules.rules[metric.rule];
        let promql = query::external(rule, metric, namespace, selector)
            .map_err(|e| ApiError::bad_request(format!("labelSelector: {e}")))?;
        self.fetch_for_api(&promql).await
    }

    /// [`Engine::fetch`], failing as the API answers a Prometheus failure.
    pub(crate) async fn fetch_for_api(&self, promql: &str) -> Result<Arc<Vec<Sample>>, ApiError> {
        self.fetch(promql)
            .await
            .map_err(|e| ApiError::internal(format!("unable to fetch metrics: {e}")))
    }
}

/// The custom metric `metric` of the resource a path names (`pods`, `deployments`,
/// `deployments.apps`): the index's key directly, else the resource resolved among those
/// with metrics.
fn custom_metric<'a>(
    index: &'a MetricIndex,
    resource: &str,
    metric: &str,
) -> Result<&'a CustomMetric, ApiError> {
    let key = (resource.to_string(), metric.to_string());
    if let Some(found) = index.custom.get(&key) {
        return Ok(found);
    }
    let known: BTreeSet<&Resource> = index.custom.values().map(|m| &m.resource).collect();
    resources::from_path(known, resource)
        .and_then(|r| index.custom.get(&(r.path_name(), key.1)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "the server could not find the metric {metric} for {resource}"
            ))
        })
}

/// Unix seconds as RFC 3339, to the second.
pub(crate) fn timestamp(unix_seconds: f64) -> String {
    Timestamp::from_second(unix_seconds.floor() as i64)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}
