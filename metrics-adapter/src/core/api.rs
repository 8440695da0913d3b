//! The wire shapes of the metrics APIs: request paths, discovery documents, value lists
//! and `Status` errors, as the aggregation layer and clients expect them. Pure.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{discovery::MetricIndex, resource_metrics};

/// `custom.metrics.k8s.io`
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
/// `external.metrics.k8s.io`
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
/// Versions served of the custom metrics API, preferred first.
pub const CUSTOM_VERSIONS: &[&str] = &["v1beta2", "v1beta1"];
/// Versions served of the external metrics API.
pub const EXTERNAL_VERSIONS: &[&str] = &["v1beta1"];
/// `metrics.k8s.io`
pub const RESOURCE_GROUP: &str = resource_metrics::GROUP;
/// Versions served of the resource metrics API.
pub const RESOURCE_VERSIONS: &[&str] = &[resource_metrics::VERSION];

/// What a path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(&'static str),
    /// `/apis/<group>/<version>`
    Resources(&'static str, String),
    /// A custom metric of one object or of `*`.
    Custom(CustomPath),
    /// An external metric.
    External {
        /// Namespace.
        namespace: String,
        /// Metric name.
        metric: String,
    },
    /// `metrics.k8s.io`: node or pod metrics.
    Resource(ResourcePath),
}

/// A resource metrics request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// `nodes` or `pods`.
    pub pods: bool,
    /// The namespace (pods; `None` across namespaces).
    pub namespace: Option<String>,
    /// One object (get), or `None` (list).
    pub name: Option<String>,
}

impl ResourcePath {
    /// `nodes` or `pods`.
    pub fn resource(&self) -> &'static str {
        if self.pods { "pods" } else { "nodes" }
    }
}

/// A custom metrics request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomPath {
    /// `v1beta1` or `v1beta2`.
    pub version: String,
    /// The namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// The resource as written (`pods`, `deployments.apps`).
    pub resource: String,
    /// The object name, or `*`.
    pub name: String,
    /// The metric.
    pub metric: String,
}

/// A request the API refuses, as a `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `BadRequest`, ...
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// 400
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    /// 404
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: message.into(),
        }
    }

    /// 401
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: message.into(),
        }
    }

    /// 403
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
        }
    }

    /// 503
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: message.into(),
        }
    }

    /// 500
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 500,
            reason: "InternalError",
            message: message.into(),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// Routes a (percent-decoded) path.
pub fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let not_found = || {
        ApiError::not_found(format!(
            "the server could not find the requested resource ({path})"
        ))
    };
    let group = |g: &str| match g {
        CUSTOM_GROUP => Some(CUSTOM_GROUP),
        EXTERNAL_GROUP => Some(EXTERNAL_GROUP),
        RESOURCE_GROUP => Some(RESOURCE_GROUP),
        _ => None,
    };
    let resource = |pods: bool, namespace: Option<&str>, name: Option<&str>| {
        if let Some(ns) = namespace {
            validate_namespace(ns)?;
        }
        if let Some(name) = name {
            validate_name(name, "object name")?;
        }
        Ok(Route::Resource(ResourcePath {
            pods,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }))
    };
    match segments.as_slice() {
        ["apis"] => Ok(Route::Groups),
        ["apis", g] => group(g).map(Route::Group).ok_or_else(not_found),
        ["apis", g, v] => {
            let g = group(g).ok_or_else(not_found)?;
            versions(g)
                .contains(v)
                .then(|| Route::Resources(g, v.to_string()))
                .ok_or_else(not_found)
        }
        ["apis", CUSTOM_GROUP, v, rest @ ..] if CUSTOM_VERSIONS.contains(v) => {
            let custom = |namespace: Option<&str>, resource: &str, name: &str, metric: &str| {
                if let Some(ns) = namespace {
                    validate_namespace(ns)?;
                }
                validate_name(name, "object name")?;
                validate_name(metric, "metric name")?;
                Ok(Route::Custom(CustomPath {
                    version: v.to_string(),
                    namespace: namespace.map(str::to_string),
                    resource: resource.to_string(),
                    name: name.to_string(),
                    metric: metric.to_string(),
                }))
            };
            match rest {
                ["namespaces", ns, "metrics", metric] => custom(None, "namespaces", ns, metric),
                ["namespaces", ns, resource, name, metric] => {
                    custom(Some(ns), resource, name, metric)
                }
                [resource, name, metric] => custom(None, resource, name, metric),
                _ => Err(not_found()),
            }
        }
        ["apis", RESOURCE_GROUP, "v1beta1", rest @ ..] => match rest {
            ["nodes"] => resource(false, None, None),
            ["nodes", name] => resource(false, None, Some(name)),
            ["pods"] => resource(true, None, None),
            ["namespaces", ns, "pods"] => resource(true, Some(ns), None),
            ["namespaces", ns, "pods", name] => resource(true, Some(ns), Some(name)),
            _ => Err(not_found()),
        },
        ["apis", EXTERNAL_GROUP, "v1beta1", "namespaces", ns, metric] => {
            validate_namespace(ns)?;
            validate_name(metric, "metric name")?;
            Ok(Route::External {
                namespace: ns.to_string(),
                metric: metric.to_string(),
            })
        }
        _ => Err(not_found()),
    }
}

fn versions(group: &str) -> &'static [&'static str] {
    match group {
        CUSTOM_GROUP => CUSTOM_VERSIONS,
        RESOURCE_GROUP => RESOURCE_VERSIONS,
        _ => EXTERNAL_VERSIONS,
    }
}

/// A namespace name: a DNS label.
pub fn validate_namespace(ns: &str) -> Result<(), ApiError> {
    weir_store::manifest::invalid_dns_label(ns)
        .map_or(Ok(()), |why| Err(ApiError::bad_request(why)))
}

/// An object or metric name: `*`, or at most 253 of `[A-Za-z0-9._:-]`.
pub fn validate_name(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = name == "*"
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')));
    ok.then_some(()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid {what} {name:?}: only letters, digits, '.', '-', '_' and ':' are allowed"
        ))
    })
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = versions(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

/// `/apis`: the custom and external metrics groups, and the resource metrics group when
/// it is served (`resource`).
pub fn group_list(resource: bool) -> Value {
    let mut groups = vec![group_json(CUSTOM_GROUP), group_json(EXTERNAL_GROUP)];
    if resource {
        groups.push(group_json(RESOURCE_GROUP));
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups,
    })
}

/// `/apis/<group>`
pub fn group(group: &str) -> Value {
    let mut g = group_json(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// `/apis/<group>/<version>`: the metrics currently available.
pub fn resource_list(group: &str, version: &str, index: &MetricIndex) -> Value {
    if group == RESOURCE_GROUP {
        return crate::resource_wire::resource_list();
    }
    let resources: Vec<Value> = if group == CUSTOM_GROUP {
        index
            .custom
            .iter()
            .map(|((resource, metric), m)| {
                json!({
                    "name": format!("{resource}/{metric}"),
                    "singularName": "",
                    "namespaced": m.namespaced(),
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                })
            })
            .collect()
    } else {
        index
            .external
            .keys()
            .map(|metric| {
                json!({
                    "name": metric,
                    "singularName": "",
                    "namespaced": true,
                    "kind": "ExternalMetricValueList",
                    "verbs": ["get"],
                })
            })
            .collect()
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    })
}

/// One value of a custom metric.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectValue {
    /// `describedObject`.
    pub kind: String,
    /// `describedObject.apiVersion`.
    pub api_version: String,
    /// `describedObject.namespace`.
    pub namespace: Option<String>,
    /// `describedObject.name`.
    pub name: String,
    /// When it was sampled (RFC 3339).
    pub timestamp: String,
    /// The quantity.
    pub value: String,
}

/// A `MetricValueList` in `version`'s shape.
pub fn metric_value_list(
    version: &str,
    metric: &str,
    selector: Option<&Value>,
    values: &[ObjectValue],
) -> Value {
    let items: Vec<Value> = values
        .iter()
        .map(|v| {
            let mut described = json!({
                "kind": v.kind,
                "name": v.name,
                "apiVersion": v.api_version,
            });
            if let Some(ns) = &v.namespace {
                described["namespace"] = json!(ns);
            }
            if version == "v1beta1" {
                json!({
                    "describedObject": described,
                    "metricName": metric,
                    "timestamp": v.timestamp,
                    "value": v.value,
                    "selector": selector,
                })
            } else {
                let mut id = json!({"name": metric});
                if let Some(s) = selector {
                    id["selector"] = s.clone();
                }
                json!({
                    "describedObject": described,
                    "metric": id,
                    "timestamp": v.timestamp,
                    "value": v.value,
                })
            }
        })
        .collect();
    json!({
        "kind": "MetricValueList",
        "apiVersion": format!("{CUSTOM_GROUP}/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// One value of an external metric.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalValue {
    /// The series' labels (without `__name__`).
    pub labels: BTreeMap<String, String>,
    /// When it was sampled (RFC 3339).
    pub timestamp: String,
    /// The quantity.
    pub value: String,
}

/// An `ExternalMetricValueList`.
pub fn external_value_list(metric: &str, values: &[ExternalValue]) -> Value {
    let items: Vec<Value> = values
        .iter()
        .map(|v| {
            json!({
                "metricName": metric,
                "metricLabels": v.labels,
                "timestamp": v.timestamp,
                "value": v.value,
            })
        })
        .collect();
    json!({
        "kind": "ExternalMetricValueList",
        "apiVersion": format!("{EXTERNAL_GROUP}/v1beta1"),
        "metadata": {},
        "items": items,
    })
}

/// `/openapi/v2`: a Swagger document naming the served paths and types, enough for
/// kubectl and the aggregator's merge.
pub fn openapi_v2() -> Value {
    let get = |kind: &str, gv: &str| {
        json!({"get": {
            "produces": ["application/json"],
            "schemes": ["https"],
            "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{gv}.{kind}")}}},
        }})
    };
    let mut paths = serde_json::Map::new();
    for v in CUSTOM_VERSIONS {
        let gv = format!("{CUSTOM_GROUP}/{v}");
        let def = format!("io.k8s.metrics.pkg.apis.custom_metrics.{v}");
        paths.insert(
            format!("/apis/{gv}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}"),
            get("MetricValueList", &def),
        );
        paths.insert(
            format!("/apis/{gv}/{{resource}}/{{name}}/{{metric}}"),
            get("MetricValueList", &def),
        );
    }
    paths.insert(
        format!("/apis/{EXTERNAL_GROUP}/v1beta1/namespaces/{{namespace}}/{{metric}}"),
        get(
            "ExternalMetricValueList",
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1",
        ),
    );
    let metrics = format!("/apis/{RESOURCE_GROUP}/v1beta1");
    let def = "io.k8s.metrics.pkg.apis.metrics.v1beta1";
    for (path, kind) in [
        ("nodes", "NodeMetricsList"),
        ("nodes/{name}", "NodeMetrics"),
        ("pods", "PodMetricsList"),
        ("namespaces/{namespace}/pods", "PodMetricsList"),
        ("namespaces/{namespace}/pods/{name}", "PodMetrics"),
    ] {
        paths.insert(format!("{metrics}/{path}"), get(kind, def));
    }
    let object = |kind: &str| {
        json!({"type": "object", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"}, "timestamp": {"type": "string"}, "window": {"type": "string"},
        }, "x-kubernetes-group-version-kind": [{"group": RESOURCE_GROUP, "version": "v1beta1", "kind": kind}]})
    };
    let list = |gvk: Vec<Value>| {
        json!({"type": "object", "required": ["items"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"}, "items": {"type": "array", "items": {"type": "object"}},
        }, "x-kubernetes-group-version-kind": gvk})
    };
    json!({
        "swagger": "2.0",
        "info": {"title": "Weir metrics adapter", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "definitions": {
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList": list(vec![json!({"group": CUSTOM_GROUP, "version": "v1beta2", "kind": "MetricValueList"})]),
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValueList": list(vec![json!({"group": CUSTOM_GROUP, "version": "v1beta1", "kind": "MetricValueList"})]),
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList": list(vec![json!({"group": EXTERNAL_GROUP, "version": "v1beta1", "kind": "ExternalMetricValueList"})]),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": object("NodeMetrics"),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics": object("PodMetrics"),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetricsList": list(vec![json!({"group": RESOURCE_GROUP, "version": "v1beta1", "kind": "NodeMetricsList"})]),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetricsList": list(vec![json!({"group": RESOURCE_GROUP, "version": "v1beta1", "kind": "PodMetricsList"})]),
        },
    })
}

/// `/openapi/v3`: the discovery document listing one document per group-version.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in [
        (CUSTOM_GROUP, CUSTOM_VERSIONS),
        (EXTERNAL_GROUP, EXTERNAL_VERSIONS),
        (RESOURCE_GROUP, RESOURCE_VERSIONS),
    ] {
        for v in versions {
            paths.insert(
                format!("apis/{group}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{v}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/<group>/<version>`: an OpenAPI 3 document for one group-version.
pub fn openapi_v3(group: &str, version: &str) -> Option<Value> {
    let kind = match group {
        CUSTOM_GROUP => "MetricValueList",
        EXTERNAL_GROUP => "ExternalMetricValueList",
        RESOURCE_GROUP => "PodMetricsList",
        _ => return None,
    };
    if !versions(group).contains(&version) {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Weir metrics adapter", "version": env!("CARGO_PKG_VERSION")},
        "paths": {},
        "components": {"schemas": {
            kind: {"type": "object", "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}],
                   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                  "metadata": {"type": "object"}, "items": {"type": "array", "items": {"type": "object"}}}},
        }},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/apis").unwrap(), Route::Groups);
        assert_eq!(
            route("/apis/custom.metrics.k8s.io/").unwrap(),
            Route::Group(CUSTOM_GROUP)
        );
        assert_eq!(
            route("/apis/custom.metrics.k8s.io/v1beta1").unwrap(),
            Route::Resources(CUSTOM_GROUP, "v1beta1".into())
        );
        assert_eq!(
            route("/apis/custom.metrics.k8s.io/v1").unwrap_err().code,
            404
        );
        let Route::Custom(p) =
            route("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/rps").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_str(),
                p.metric.as_str()
            ),
            (Some("shop"), "pods", "*", "rps")
        );
        let Route::Custom(ns) =
            route("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/rps").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (ns.namespace, ns.resource.as_str(), ns.name.as_str()),
            (None, "namespaces", "shop")
        );
        let Route::Custom(node) =
            route("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (node.resource.as_str(), node.name.as_str()),
            ("nodes", "n1")
        );
        assert_eq!(
            route("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth").unwrap(),
            Route::External {
                namespace: "shop".into(),
                metric: "queue_depth".into()
            }
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1").unwrap(),
            Route::Resource(ResourcePath {
                pods: true,
                namespace: Some("shop".into()),
                name: Some("web-1".into())
            })
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/pods").unwrap(),
            Route::Resource(ResourcePath {
                pods: true,
                namespace: None,
                name: None
            })
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/nodes/n1").unwrap(),
            Route::Resource(ResourcePath {
                pods: false,
                namespace: None,
                name: Some("n1".into())
            })
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/namespaces/shop/nodes")
                .unwrap_err()
                .code,
            404
        );
        for bad in [
            "/apis/metrics.k8s.io/v1beta1/namespaces/Shop/pods",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/Shop/pods/*/rps",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/a\"b/rps",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/a/r{p}s",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q\nd",
        ] {
            assert_eq!(route(bad).unwrap_err().code, 400, "{bad}");
        }
    }

    #[test]
    fn list_shapes() {
        let v = ObjectValue {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: Some("shop".into()),
            name: "web-1".into(),
            timestamp: "2026-11-22T10:00:00Z".into(),
            value: "500m".into(),
        };
        let beta2 = metric_value_list("v1beta2", "rps", None, std::slice::from_ref(&v));
        assert_eq!(beta2["apiVersion"], "custom.metrics.k8s.io/v1beta2");
        assert_eq!(beta2["items"][0]["metric"]["name"], "rps");
        assert_eq!(beta2["items"][0]["describedObject"]["namespace"], "shop");
        let beta1 = metric_value_list("v1beta1", "rps", None, &[v]);
        assert_eq!(beta1["items"][0]["metricName"], "rps");
        assert!(beta1["items"][0]["selector"].is_null());
        assert_eq!(ApiError::not_found("x").to_status()["code"], 404);
    }
}
