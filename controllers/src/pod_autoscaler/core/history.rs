//! Where a forecast's history comes from in a cluster: one Prometheus range query per
//! metric of a policy, over its `forecast.historySeconds`, whose single series divided by
//! what one replica takes at the target is the metric's **demand** (replicas at its
//! target, the unit [`super::forecast`] learns). The controller asks it once, when a
//! policy's forecasters start (a new policy, a restart, a changed `forecast`), and keeps
//! the model between syncs; each sync then adds its own reading.
//!
//! The queries follow the direct source's conventions ([`super::queries`]), summed over
//! the target's pods. Which pods were the target's in the past: Prometheus knows pods by
//! name, not by the target's label selector (kube-state-metrics may not run), so they are
//! matched by the names their controller gives them: Deployment `web` →
//! `web-<template hash>-<suffix>`, ReplicaSet `web` → `web-<suffix>`, StatefulSet `web` →
//! `web-<ordinal>`; for other kinds, the pods the target has now.
//!
//! Not seeded (their forecast learns from syncs alone, as it would without Prometheus):
//! `Value` targets, whose demand is the ratio × the pods ready *at the time*, which the
//! metric alone does not give; and `Utilization` targets when no pod states a request.
//! Pure: the query and the arithmetic; the client runs it.

use std::collections::BTreeSet;

use weir_crds::scaling_policy::{
    MetricSourceType, MetricSpec, MetricTarget, MetricTargetType, ScaleTargetRef,
};
use weir_metrics_adapter::{
    promql::{quote, regex_escape},
    selector::Selector,
};

use super::{
    Pod,
    queries::{matchers, selector_of, valid_name},
};

/// A metric's history query: the PromQL of its total for the target, and what one replica
/// takes at the target in that series' unit.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryQuery {
    /// PromQL returning one series (the metric's total for the target).
    pub query: String,
    /// The total one replica takes at the target: demand = total ÷ this.
    pub per_replica: f64,
}

impl HistoryQuery {
    /// The demand at each of the series' points; points that are not finite or are
    /// negative (a counter reset seen by `rate`, a bad sample) are dropped.
    pub fn demand(&self, points: &[(i64, f64)]) -> Vec<(i64, f64)> {
        points
            .iter()
            .map(|&(time, total)| (time, total / self.per_replica))
            .filter(|(_, demand)| demand.is_finite() && *demand >= 0.0)
            .collect()
    }
}

/// The history query of `metric` for a policy in `namespace` scaling `target`, whose pods
/// are now `pods`; `Err` says why the metric's history is not read.
pub fn history_query(
    namespace: &str,
    target: &ScaleTargetRef,
    metric: &MetricSpec,
    pods: &[Pod],
) -> Result<HistoryQuery, String> {
    let missing = || format!("a {:?} metric needs its source field", metric.type_);
    let namespaces = BTreeSet::from([namespace.to_string()]);
    // Only per-pod metrics need to know the target's pods.
    let pod_matcher =
        || Ok::<_, String>(format!("pod=~{}", quote(&target_pods_regex(target, pods)?)));
    let none = Selector::default();
    match metric.type_ {
        MetricSourceType::Pods => {
            let source = metric.pods.as_ref().ok_or_else(missing)?;
            let selector = selector_of(&source.metric)?;
            summed(
                &source.metric.name,
                Some(&namespaces),
                &selector,
                &[&pod_matcher()?],
                &source.target,
            )
        }
        MetricSourceType::Resource | MetricSourceType::ContainerResource => {
            let (resource, container, target) = match (&metric.resource, &metric.container_resource)
            {
                (Some(r), _) if metric.type_ == MetricSourceType::Resource => {
                    (&r.name, None, &r.target)
                }
                (_, Some(r)) if metric.type_ == MetricSourceType::ContainerResource => {
                    (&r.name, Some(r.container.as_str()), &r.target)
                }
                _ => return Err(missing()),
            };
            let container_matcher = container.map(|c| format!("container={}", quote(c)));
            let pod_matcher = pod_matcher()?;
            let mut extra = vec![
                pod_matcher.as_str(),
                r#"container!="""#,
                r#"container!="POD""#,
            ];
            extra.extend(container_matcher.as_deref());
            let selected = matchers(None, Some(&namespaces), &none, &extra)?;
            let query = match resource.as_str() {
                "cpu" => format!("sum(rate(container_cpu_usage_seconds_total{selected}[5m]))"),
                "memory" => format!("sum(container_memory_working_set_bytes{selected})"),
                other => {
                    return Err(format!(
                        "resource {other} cannot be read from Prometheus (cpu and memory can)"
                    ));
                }
            };
            let per_replica = match target.type_ {
                MetricTargetType::Utilization => {
                    let utilization = target
                        .average_utilization
                        .filter(|u| *u > 0)
                        .ok_or("target.averageUtilization must be positive")?;
                    average_request(pods, resource, container)? * f64::from(utilization) / 100.0
                }
                _ => average_value(target)?,
            };
            Ok(HistoryQuery { query, per_replica })
        }
        MetricSourceType::Object => {
            let source = metric.object.as_ref().ok_or_else(missing)?;
            let label = source.described_object.kind.to_lowercase();
            valid_name(&label, "label")?;
            let object = format!("{label}={}", quote(&source.described_object.name));
            summed(
                &source.metric.name,
                Some(&namespaces),
                &none,
                &[&object],
                &source.target,
            )
        }
        MetricSourceType::External => {
            let source = metric.external.as_ref().ok_or_else(missing)?;
            let selector = selector_of(&source.metric)?;
            summed(&source.metric.name, None, &selector, &[], &source.target)
        }
        MetricSourceType::Prometheus => {
            let source = metric.prometheus.as_ref().ok_or_else(missing)?;
            Ok(HistoryQuery {
                query: source.query.clone(),
                per_replica: average_value(&source.target)?,
            })
        }
    }
}

/// `sum(metric{...})` over the series `matchers` selects, per replica at `target`.
fn summed(
    metric: &str,
    namespaces: Option<&BTreeSet<String>>,
    selector: &Selector,
    extra: &[&str],
    target: &MetricTarget,
) -> Result<HistoryQuery, String> {
    Ok(HistoryQuery {
        query: format!(
            "sum({})",
            matchers(Some(metric), namespaces, selector, extra)?
        ),
        per_replica: average_value(target)?,
    })
}

/// The per-pod target of an `AverageValue` target, in the metric's unit.
fn average_value(target: &MetricTarget) -> Result<f64, String> {
    match target.type_ {
        MetricTargetType::AverageValue => {
            Ok(super::milli(target.average_value.as_ref(), "averageValue")? as f64 / 1000.0)
        }
        MetricTargetType::Value => Err(
            "a Value target's demand depends on the pods ready at the time; its forecast learns from syncs"
                .into(),
        ),
        MetricTargetType::Utilization => {
            Err("a Utilization target needs a Resource metric".into())
        }
    }
}

/// The average request for `resource` (of `container`, or of the whole pod) over the pods
/// that state one, in the resource's unit (cores, bytes).
fn average_request(pods: &[Pod], resource: &str, container: Option<&str>) -> Result<f64, String> {
    let requests: Vec<i64> = pods
        .iter()
        .filter_map(|pod| {
            let stated = pod
                .containers
                .iter()
                .filter(|c| container.is_none_or(|name| c.name == name))
                .filter_map(|c| c.requests.get(resource));
            let mut any = false;
            let total: i64 = stated.inspect(|_| any = true).sum();
            (any && total > 0).then_some(total)
        })
        .collect();
    if requests.is_empty() {
        return Err(format!(
            "no pod of the target states a {resource} request, which a Utilization target needs"
        ));
    }
    Ok(requests.iter().sum::<i64>() as f64 / requests.len() as f64 / 1000.0)
}

/// An anchored regular expression (PromQL's `=~` is anchored) for the names of the
/// target's pods, past and present.
fn target_pods_regex(target: &ScaleTargetRef, pods: &[Pod]) -> Result<String, String> {
    let name = regex_escape(&target.name);
    // Pod names are DNS labels; the generated parts are lowercase alphanumerics: a
    // pod-template-hash of up to 10 characters and a 5-character suffix.
    match (target.api_version.split('/').next(), target.kind.as_str()) {
        (Some("apps"), "Deployment") => Ok(format!("{name}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}")),
        (Some("apps"), "ReplicaSet") => Ok(format!("{name}-[a-z0-9]{{5}}")),
        (Some("apps"), "StatefulSet") => Ok(format!("{name}-[0-9]+")),
        _ if pods.is_empty() => Err(format!(
            "the pods of {} {} cannot be told by name and it has none now",
            target.kind, target.name
        )),
        _ => {
            let names: Vec<String> = pods.iter().map(|p| regex_escape(&p.name)).collect();
            Ok(names.join("|"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_autoscaler::{Container, PodPhase};

    fn metric(yaml: &str) -> MetricSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn target(kind: &str) -> ScaleTargetRef {
        ScaleTargetRef {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: "web".into(),
        }
    }

    fn pod(name: &str, container: &str, cpu_milli: i64) -> Pod {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(true),
            start_time: None,
            ready_since: None,
            containers: vec![Container {
                name: container.into(),
                requests: [("cpu".to_string(), cpu_milli)].into(),
            }],
        }
    }

    #[test]
    fn a_pods_metric_sums_the_targets_pods_by_their_generated_names() {
        let m = metric(
            "type: Pods\npods: {metric: {name: http_requests_per_second, selector: {matchLabels: {verb: GET}}}, \
             target: {type: AverageValue, averageValue: 500m}}",
        );
        let q = history_query("shop", &target("Deployment"), &m, &[]).unwrap();
        assert_eq!(
            q.query,
            r#"sum({__name__="http_requests_per_second", namespace=~"shop", verb="GET", pod=~"web-[a-z0-9]{1,10}-[a-z0-9]{5}"})"#
        );
        assert_eq!(q.per_replica, 0.5);
        assert_eq!(
            q.demand(&[(0, 2.0), (60, -1.0), (120, f64::NAN)]),
            [(0, 4.0)]
        );
        let sts = history_query("shop", &target("StatefulSet"), &m, &[]).unwrap();
        assert!(sts.query.contains(r#"pod=~"web-[0-9]+""#), "{}", sts.query);
        // Another kind: the pods it has now, escaped; none → no history.
        let custom = ScaleTargetRef {
            api_version: "example.com/v1".into(),
            kind: "Worker".into(),
            name: "w".into(),
        };
        let q = history_query("shop", &custom, &m, &[pod("w.0", "app", 0)]).unwrap();
        assert!(q.query.contains(r#"pod=~"w\\.0""#), "{}", q.query);
        let none = history_query("shop", &custom, &m, &[]).unwrap_err();
        assert!(none.contains("Worker w"), "{none}");
    }

    #[test]
    fn utilization_divides_by_the_request_at_the_target() {
        let m = metric(
            "type: ContainerResource\ncontainerResource: {name: cpu, container: app, \
             target: {type: Utilization, averageUtilization: 50}}",
        );
        let pods = [
            pod("web-abc12-xyz12", "app", 400),
            pod("web-abc12-xyz34", "app", 200),
        ];
        let q = history_query("shop", &target("Deployment"), &m, &pods).unwrap();
        assert!(
            q.query
                .starts_with("sum(rate(container_cpu_usage_seconds_total{"),
            "{}",
            q.query
        );
        assert!(q.query.contains(r#"container="app""#), "{}", q.query);
        // Average request 300m at 50 %: one replica takes 0.15 cores.
        assert!((q.per_replica - 0.15).abs() < 1e-12, "{q:?}");
        let other = [pod("web-abc12-xyz12", "sidecar", 400)];
        let e = history_query("shop", &target("Deployment"), &m, &other).unwrap_err();
        assert!(e.contains("cpu request"), "{e}");
    }

    #[test]
    fn object_external_and_value_targets() {
        let object = metric(
            "type: Object\nobject: {describedObject: {apiVersion: v1, kind: Service, name: front}, \
             metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: \"10\"}}",
        );
        let q = history_query("shop", &target("Deployment"), &object, &[]).unwrap();
        assert_eq!(
            q.query,
            r#"sum({__name__="requests_per_second", namespace=~"shop", service="front"})"#
        );
        assert_eq!(q.per_replica, 10.0);
        let external = metric(
            "type: External\nexternal: {metric: {name: queue_messages_ready}, \
             target: {type: AverageValue, averageValue: \"30\"}}",
        );
        let q = history_query("shop", &target("Deployment"), &external, &[]).unwrap();
        assert_eq!(q.query, r#"sum({__name__="queue_messages_ready"})"#);
        // Not per pod: the target's pods do not matter, even when they cannot be told.
        let custom = ScaleTargetRef {
            api_version: "example.com/v1".into(),
            kind: "Worker".into(),
            name: "w".into(),
        };
        assert!(history_query("shop", &custom, &external, &[]).is_ok());
        let value = metric(
            "type: External\nexternal: {metric: {name: queue_messages_ready}, \
             target: {type: Value, value: \"30\"}}",
        );
        let e = history_query("shop", &target("Deployment"), &value, &[]).unwrap_err();
        assert!(e.contains("Value target"), "{e}");
    }
}
