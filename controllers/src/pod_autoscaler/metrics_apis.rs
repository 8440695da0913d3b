//! The Kubernetes metrics APIs as the pod autoscaler's metric source, for clusters that run
//! another adapter (prometheus-adapter, KEDA, the cloud's): resource metrics from
//! `metrics.k8s.io`, Pods and Object metrics from `custom.metrics.k8s.io/v1beta2`, External
//! metrics from `external.metrics.k8s.io/v1beta1`.
//!
//! Batched per sync like the Prometheus source: one request per distinct path (one
//! `metrics.k8s.io` list per namespace, one custom-metrics list per namespace and metric),
//! shared by every policy that needs it. `Prometheus` metrics need the Prometheus source.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::pod_autoscaler::{
    MetricReading, Pod, PodReading, effective_metrics, source::MetricSource,
};
use futures::{StreamExt, stream};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::Value;
use weir_crds::{
    Quantity,
    scaling_policy::{MetricIdentifier, MetricSourceType, MetricSpec, ScalingPolicySpec},
};

/// The API calls this source makes.
pub const API_CALLS: &[weir_runtime::ApiCall] = &[
    ("metrics.k8s.io", "pods", "list"),
    ("custom.metrics.k8s.io", "*", "get"),
    ("external.metrics.k8s.io", "*", "get"),
];

/// The metrics APIs through the cluster's API server.
pub struct MetricsApiSource {
    client: Client,
    requests: AtomicU64,
}

impl std::fmt::Debug for MetricsApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsApiSource")
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish()
    }
}

impl MetricsApiSource {
    /// A source using `client`.
    pub fn new(client: Client) -> Self {
        MetricsApiSource {
            client,
            requests: AtomicU64::new(0),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        self.client
            .request::<Value>(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    }
}

/// Responses of one sync, by request path.
pub type Responses = HashMap<String, Result<Value, String>>;

fn selector_query(metric: &MetricIdentifier) -> String {
    let Some(selector) = &metric.selector else {
        return String::new();
    };
    // Kubernetes' label selector syntax, as HPA sends it.
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "DoesNotExist" => format!("!{}", e.key),
            _ => e.key.clone(),
        });
    }
    if terms.is_empty() {
        String::new()
    } else {
        format!("?labelSelector={}", encode(&terms.join(",")))
    }
}

/// Percent-encodes a query or path value (unreserved characters stay).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The resource (plural) of a kind, as the API names it.
fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The request path a metric of a policy in `namespace` is read from.
fn path(namespace: &str, metric: &MetricSpec) -> Result<String, String> {
    let ns = encode(namespace);
    match metric.type_ {
        MetricSourceType::Resource | MetricSourceType::ContainerResource => {
            Ok(format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))
        }
        MetricSourceType::Pods => {
            let pods = metric.pods.as_ref().ok_or("pods is required")?;
            Ok(format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{}{}",
                encode(&pods.metric.name),
                selector_query(&pods.metric)
            ))
        }
        MetricSourceType::Object => {
            let object = metric.object.as_ref().ok_or("object is required")?;
            Ok(format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{}/{}/{}{}",
                plural(&object.described_object.kind),
                encode(&object.described_object.name),
                encode(&object.metric.name),
                selector_query(&object.metric)
            ))
        }
        MetricSourceType::External => {
            let external = metric.external.as_ref().ok_or("external is required")?;
            Ok(format!(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{}{}",
                encode(&external.metric.name.to_lowercase()),
                selector_query(&external.metric)
            ))
        }
        MetricSourceType::Prometheus => Err(
            "Prometheus metrics need the Prometheus source (--metrics-source prometheus)".into(),
        ),
    }
}

fn milli(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    let q: Quantity = text.parse().ok()?;
    q.to_milli_i64().ok()
}

fn timestamp(item: &Value) -> Option<Timestamp> {
    item.get("timestamp")?.as_str()?.parse().ok()
}

fn window(item: &Value) -> SignedDuration {
    item.get("windowSeconds")
        .and_then(Value::as_i64)
        .map(SignedDuration::from_secs)
        .or_else(|| {
            // metrics.k8s.io writes the window as a duration string ("30s").
            let text = item.get("window")?.as_str()?;
            text.parse::<weir_crds::Duration>()
                .ok()
                .and_then(|d| SignedDuration::try_from(d.get()).ok())
        })
        .unwrap_or(SignedDuration::from_secs(30))
}

impl MetricSource for MetricsApiSource {
    type Batch = Responses;

    async fn fetch(&self, policies: &[(&str, &ScalingPolicySpec)], _at: Timestamp) -> Responses {
        let paths: BTreeSet<String> = policies
            .iter()
            .flat_map(|(ns, spec)| {
                effective_metrics(spec)
                    .iter()
                    .filter_map(|m| path(ns, m).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        stream::iter(paths)
            .map(|path| async move {
                let response = self.get(&path).await;
                (path, response)
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    fn readings(
        &self,
        batch: &Responses,
        namespace: &str,
        metrics: &[MetricSpec],
        pods: &[Pod],
    ) -> Vec<MetricReading> {
        metrics
            .iter()
            .map(|metric| {
                let path = match path(namespace, metric) {
                    Ok(p) => p,
                    Err(e) => return MetricReading::Failed(e),
                };
                let body = match batch.get(&path) {
                    Some(Ok(body)) => body,
                    Some(Err(e)) => return MetricReading::Failed(e.clone()),
                    None => return MetricReading::Failed("not fetched".into()),
                };
                let items = body
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                reading(metric, &items, pods)
            })
            .collect()
    }

    fn requests_issued(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

fn reading(metric: &MetricSpec, items: &[Value], pods: &[Pod]) -> MetricReading {
    let names: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    match metric.type_ {
        MetricSourceType::Resource | MetricSourceType::ContainerResource => {
            let resource = metric
                .resource
                .as_ref()
                .map(|r| r.name.as_str())
                .or(metric.container_resource.as_ref().map(|r| r.name.as_str()))
                .unwrap_or("cpu");
            let mut readings = BTreeMap::new();
            for item in items {
                let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
                    continue;
                };
                if !names.contains(name) {
                    continue;
                }
                let mut containers = BTreeMap::new();
                for c in item
                    .get("containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(cname), Some(usage)) = (
                        c.get("name").and_then(Value::as_str),
                        c.pointer(&format!("/usage/{resource}")).and_then(milli),
                    ) else {
                        continue;
                    };
                    containers.insert(cname.to_string(), usage);
                }
                readings.insert(
                    name.to_string(),
                    PodReading {
                        milli: containers.values().sum(),
                        containers,
                        timestamp: timestamp(item).unwrap_or(Timestamp::UNIX_EPOCH),
                        window: window(item),
                    },
                );
            }
            MetricReading::Pods(readings)
        }
        MetricSourceType::Pods => {
            let mut readings = BTreeMap::new();
            for item in items {
                let (Some(name), Some(value)) = (
                    item.pointer("/describedObject/name")
                        .and_then(Value::as_str),
                    item.get("value").and_then(milli),
                ) else {
                    continue;
                };
                if names.contains(name) {
                    readings.insert(
                        name.to_string(),
                        PodReading {
                            milli: value,
                            containers: BTreeMap::new(),
                            timestamp: timestamp(item).unwrap_or(Timestamp::UNIX_EPOCH),
                            window: window(item),
                        },
                    );
                }
            }
            MetricReading::Pods(readings)
        }
        MetricSourceType::Object => {
            match items.first().and_then(|i| i.get("value")).and_then(milli) {
                Some(v) => MetricReading::Value(v),
                None => MetricReading::Failed("the custom metrics API returned no value".into()),
            }
        }
        MetricSourceType::External => {
            // HPA sums the values of every series the selector matches.
            let values: Vec<i64> = items
                .iter()
                .filter_map(|i| i.get("value").and_then(milli))
                .collect();
            if values.is_empty() {
                MetricReading::Failed("the external metrics API returned no values".into())
            } else {
                MetricReading::Value(values.iter().sum())
            }
        }
        MetricSourceType::Prometheus => MetricReading::Failed(
            "Prometheus metrics need the Prometheus source (--metrics-source prometheus)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(yaml: &str) -> MetricSpec {
        serde_yaml::from_str(yaml).expect("metric")
    }

    #[test]
    fn paths_follow_the_metrics_apis() {
        let pods = metric(
            "type: Pods\npods: {metric: {name: rps, selector: {matchLabels: {verb: GET}}}, target: {type: AverageValue, averageValue: \"1\"}}",
        );
        assert_eq!(
            path("shop", &pods).expect("path"),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/rps?labelSelector=verb%3DGET"
        );
        let external = metric(
            "type: External\nexternal: {metric: {name: queue, selector: {matchExpressions: [{key: q, operator: In, values: [a, b]}]}}, target: {type: Value, value: \"1\"}}",
        );
        assert_eq!(
            path("shop", &external).expect("path"),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue?labelSelector=q%20in%20%28a%2Cb%29"
        );
        let object = metric(
            "type: Object\nobject: {describedObject: {kind: Ingress, name: main}, metric: {name: hits}, target: {type: Value, value: \"1\"}}",
        );
        assert_eq!(
            path("shop", &object).expect("path"),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/ingresses/main/hits"
        );
        let cpu = metric(
            "type: Resource\nresource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}",
        );
        assert_eq!(
            path("shop", &cpu).expect("path"),
            "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"
        );
    }

    #[test]
    fn responses_become_readings() {
        let pod = |name: &str| Pod {
            name: name.into(),
            phase: crate::pod_autoscaler::PodPhase::Running,
            deleting: false,
            ready: Some(true),
            start_time: None,
            ready_since: None,
            containers: vec![],
        };
        let pods = [pod("web-1")];
        let cpu = metric(
            "type: Resource\nresource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}",
        );
        let items = [
            json!({
                "metadata": {"name": "web-1"}, "timestamp": "2026-11-22T10:00:00Z", "window": "30s",
                "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "10Mi"}}, {"name": "proxy", "usage": {"cpu": "50m"}}]
            }),
            json!({"metadata": {"name": "other"}, "containers": []}),
        ];
        let MetricReading::Pods(r) = reading(&cpu, &items, &pods) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(r["web-1"].milli, 300);
        assert_eq!(r["web-1"].containers["app"], 250);
        let external = metric(
            "type: External\nexternal: {metric: {name: queue}, target: {type: Value, value: \"1\"}}",
        );
        let items = [json!({"value": "20"}), json!({"value": "500m"})];
        assert_eq!(
            reading(&external, &items, &pods),
            MetricReading::Value(20_500)
        );
    }
}
