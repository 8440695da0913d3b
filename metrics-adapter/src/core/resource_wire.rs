//! The wire shapes of `metrics.k8s.io/v1beta1`: `PodMetrics`, `NodeMetrics` and their lists
//! (serialized straight from borrowed data), quantities as Kubernetes prints them, the
//! discovery document, and field selectors. Pure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    quantity,
    resource_metrics::{Described, GROUP, NodeUsage, PodUsage, VERSION},
};

/// A field selector on `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`),
/// as the API server's generic field selectors for metrics objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(bool, String, String)>,
}

impl FieldSelector {
    /// Parses `text`; an unsupported field is an error naming it.
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(format!(
                    "field label not supported: {field} (metadata.name and metadata.namespace are)"
                ));
            }
            terms.push((equal, field.to_string(), value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object in `namespace` named `name` is selected.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.terms.iter().all(|(equal, field, value)| {
            let actual = if field == "metadata.name" {
                name
            } else {
                namespace
            };
            (actual == value) == *equal
        })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Memory as Kubernetes prints a binary-SI quantity: `Ki`/`Mi`/... when the bytes divide
/// exactly, else the decimal form.
pub fn format_memory(milli: i64) -> String {
    if milli % 1000 == 0 && milli != 0 {
        let bytes = milli / 1000;
        let mut value = bytes;
        let mut exponent = 0;
        while value % 1024 == 0 && exponent < 6 {
            value /= 1024;
            exponent += 1;
        }
        if exponent > 0 {
            return format!(
                "{value}{}",
                ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exponent]
            );
        }
    }
    quantity::format_milli(milli)
}

/// `usage`: CPU and memory as quantities.
#[derive(Debug, Serialize)]
struct UsageOut {
    cpu: String,
    memory: String,
}

impl UsageOut {
    fn new(cpu: i64, memory: i64) -> UsageOut {
        UsageOut {
            cpu: quantity::format_milli(cpu),
            memory: format_memory(memory),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetaOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    creation_timestamp: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

impl<'a> MetaOut<'a> {
    fn new(object: &'a Described, now: &'a str) -> MetaOut<'a> {
        MetaOut {
            name: &object.name,
            namespace: &object.namespace,
            creation_timestamp: now,
            labels: &object.labels,
        }
    }
}

#[derive(Debug, Serialize)]
struct ContainerOut<'a> {
    name: &'a str,
    usage: UsageOut,
}

/// A `PodMetrics` or `NodeMetrics` object, serialized straight from borrowed data (no
/// JSON tree: a list of thousands of pods is one pass).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsOut<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: MetaOut<'a>,
    timestamp: String,
    window: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    containers: Option<Vec<ContainerOut<'a>>>,
}

const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// A `PodMetrics` object. `now` (RFC 3339) is its creation time, as metrics-server sets it.
pub fn pod_out<'a>(
    usage: &'a PodUsage<'_>,
    window: &'a str,
    now: &'a str,
    timestamp: String,
) -> MetricsOut<'a> {
    MetricsOut {
        kind: "PodMetrics",
        api_version: API_VERSION,
        metadata: MetaOut::new(usage.pod, now),
        timestamp,
        window,
        usage: None,
        containers: Some(
            usage
                .containers
                .iter()
                .map(|c| ContainerOut {
                    name: &c.name,
                    usage: UsageOut::new(c.cpu, c.memory),
                })
                .collect(),
        ),
    }
}

/// A `NodeMetrics` object.
pub fn node_out<'a>(
    usage: &'a NodeUsage<'_>,
    window: &'a str,
    now: &'a str,
    timestamp: String,
) -> MetricsOut<'a> {
    MetricsOut {
        kind: "NodeMetrics",
        api_version: API_VERSION,
        metadata: MetaOut::new(usage.node, now),
        timestamp,
        window,
        usage: Some(UsageOut::new(usage.cpu, usage.memory)),
        containers: None,
    }
}

#[derive(Debug, Serialize)]
struct Empty {}

/// A `PodMetricsList` or `NodeMetricsList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOut<'a> {
    kind: String,
    api_version: &'static str,
    metadata: Empty,
    items: Vec<MetricsOut<'a>>,
}

/// A list of `kind` (`PodMetrics`, `NodeMetrics`) holding `items`.
pub fn list_out<'a>(kind: &str, items: Vec<MetricsOut<'a>>) -> ListOut<'a> {
    ListOut {
        kind: format!("{kind}List"),
        api_version: API_VERSION,
        metadata: Empty {},
        items,
    }
}

/// `/apis/metrics.k8s.io/v1beta1`
pub fn resource_list() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["get", "list"]})
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("metadata.namespace=shop,metadata.name!=web-1").unwrap();
        assert!(s.matches("shop", "web-2"));
        assert!(!s.matches("shop", "web-1"));
        assert!(!s.matches("bank", "web-2"));
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap_err()
                .contains("spec.nodeName")
        );
        assert_eq!(format_memory(1536 * 1000), "1536");
        assert_eq!(format_memory(2048 * 1000), "2Ki");
        assert_eq!(format_memory(1500), "1500m");
    }
}
