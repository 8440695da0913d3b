//! Series discovery: which metrics the rules make available, from the series Prometheus
//! holds. Pure: the adapter lists series per rule and hands them here.

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};

use crate::{
    config::{Api, Rule, Rules},
    resources::Resource,
};

/// A custom metric for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomMetric {
    /// The rule that exposes it (index into [`Rules::rules`]).
    pub rule: usize,
    /// The series name (`<<.Series>>`).
    pub series: String,
    /// The resource it describes.
    pub resource: Resource,
    /// The label naming the described object.
    pub label: String,
    /// The label holding the namespace, for namespaced resources.
    pub namespace_label: Option<String>,
}

impl CustomMetric {
    /// Whether requests name a namespace (the resource is namespaced).
    pub fn namespaced(&self) -> bool {
        self.namespace_label.is_some() && !self.resource.is_namespace()
    }
}

/// An external metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalMetric {
    /// The rule that exposes it.
    pub rule: usize,
    /// The series name.
    pub series: String,
    /// The label holding the namespace, when the rule filters by namespace.
    pub namespace_label: Option<String>,
}

/// Every metric available, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricIndex {
    /// Custom metrics by (resource path name, metric name).
    pub custom: BTreeMap<(String, String), CustomMetric>,
    /// External metrics by name.
    pub external: BTreeMap<String, ExternalMetric>,
    /// Series whose metric name another series had already claimed (first one wins).
    pub conflicts: usize,
}

impl MetricIndex {
    /// The index for `series[i]`, the label sets `rules.rules[i].series_query` returned
    /// (each with `__name__`).
    pub fn build(rules: &Rules, series: &[Vec<BTreeMap<String, String>>]) -> MetricIndex {
        let mut index = MetricIndex::default();
        for (i, (rule, sets)) in rules.rules.iter().zip(series).enumerate() {
            // Label names seen per series name: all that matters for discovery.
            let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for labels in sets {
                let Some(name) = labels.get("__name__") else {
                    continue;
                };
                by_name
                    .entry(name)
                    .or_default()
                    .extend(labels.keys().map(String::as_str));
            }
            for (series_name, labels) in by_name {
                let Some(metric) = rule.metric_name(series_name) else {
                    continue;
                };
                match rule.api {
                    Api::Custom => index.add_custom(i, rule, series_name, &metric, &labels),
                    Api::External => {
                        let entry = ExternalMetric {
                            rule: i,
                            series: series_name.to_string(),
                            namespace_label: rule
                                .namespaced
                                .then(|| rule.resources.namespace_label())
                                .flatten()
                                .filter(|l| labels.contains(l.as_str())),
                        };
                        match index.external.entry(metric) {
                            Entry::Occupied(_) => index.conflicts += 1,
                            Entry::Vacant(slot) => {
                                slot.insert(entry);
                            }
                        }
                    }
                }
            }
        }
        index
    }

    fn add_custom(
        &mut self,
        rule_index: usize,
        rule: &Rule,
        series: &str,
        metric: &str,
        labels: &BTreeSet<&str>,
    ) {
        let namespace_label = rule
            .resources
            .namespace_label()
            .filter(|l| labels.contains(l.as_str()));
        for label in labels {
            let Some(resource) = rule.resources.resource_for(label) else {
                continue;
            };
            // A namespaced resource needs the namespace on its series to be addressable.
            if resource.namespaced && namespace_label.is_none() {
                continue;
            }
            match self
                .custom
                .entry((resource.path_name(), metric.to_string()))
            {
                Entry::Occupied(_) => self.conflicts += 1,
                Entry::Vacant(slot) => {
                    slot.insert(CustomMetric {
                        rule: rule_index,
                        series: series.to_string(),
                        namespace_label: namespace_label.clone(),
                        resource,
                        label: label.to_string(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[&str]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> =
            labels.iter().map(|l| (l.to_string(), "x".into())).collect();
        m.insert("__name__".into(), name.into());
        m
    }

    #[test]
    fn discovers_per_resource_and_api() {
        let rules = Rules::from_yaml(
            r#"
rules:
- seriesQuery: '{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_depth"}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
"#,
            "t",
        )
        .unwrap();
        let index = MetricIndex::build(
            &rules,
            &[
                vec![
                    series("http_requests_total", &["namespace", "pod", "method"]),
                    series("http_requests_total", &["namespace", "pod", "service"]),
                    series("node_cpu_total", &["node"]),
                    series("orphan_total", &["pod"]),
                    series("gauge", &["namespace", "pod"]),
                ],
                vec![series("queue_depth", &["queue"])],
            ],
        );
        let names: Vec<String> = index
            .custom
            .keys()
            .map(|(r, m)| format!("{r}/{m}"))
            .collect();
        assert_eq!(
            names,
            [
                "namespaces/http_requests_per_second",
                "nodes/node_cpu_per_second",
                "pods/http_requests_per_second",
                "services/http_requests_per_second",
            ]
        );
        let pods = &index.custom[&("pods".to_string(), "http_requests_per_second".to_string())];
        assert!(pods.namespaced());
        assert_eq!(pods.label, "pod");
        let ns = &index.custom[&(
            "namespaces".to_string(),
            "http_requests_per_second".to_string(),
        )];
        assert!(!ns.namespaced());
        assert!(
            !index.custom[&("nodes".to_string(), "node_cpu_per_second".to_string())].namespaced()
        );
        // The queue series has no namespace label, so the request's namespace cannot apply.
        assert_eq!(index.external["queue_depth"].namespace_label, None);
    }
}
