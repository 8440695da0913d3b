//! prometheus-adapter's configuration format (`rules`, `externalRules`), parsed and
//! compiled into [`Rules`]. Users bring their existing file.
//!
//! Every error names the field: `rules[2].name.matches: invalid regular expression ...`.
//! `resourceRules` (the resource metrics API, `metrics.k8s.io`) compile in
//! [`crate::resource_metrics`].

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

pub use crate::template::{QueryTemplate, QueryValues};
use crate::{
    promql,
    resources::{self, Resource},
    template::replace_actions,
};

/// The file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterConfig {
    /// Rules for `custom.metrics.k8s.io`.
    #[serde(default)]
    pub rules: Vec<DiscoveryRule>,
    /// Rules for `external.metrics.k8s.io`.
    #[serde(default)]
    pub external_rules: Vec<DiscoveryRule>,
    /// Rules for `metrics.k8s.io` (CPU and memory of pods, containers and nodes).
    #[serde(default)]
    pub resource_rules: Option<ResourceRulesConfig>,
}

/// `resourceRules` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRulesConfig {
    /// How CPU (cores) is queried.
    pub cpu: ResourceRuleConfig,
    /// How memory (bytes) is queried.
    pub memory: ResourceRuleConfig,
    /// The window the API reports (a Prometheus duration: `1m`, `5m`, `1m30s`); it should
    /// match the range of the queries' `rate`. Default `1m`.
    #[serde(default)]
    pub window: Option<String>,
}

/// One resource of `resourceRules`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRuleConfig {
    /// The query for containers (over `<<.LabelMatchers>>` and `<<.GroupBy>>`).
    pub container_query: String,
    /// The query for nodes.
    pub node_query: String,
    /// Which labels name namespaces, pods and nodes.
    #[serde(default)]
    pub resources: ResourceMapping,
    /// The label holding the container's name.
    #[serde(default)]
    pub container_label: String,
}

/// One rule as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryRule {
    /// The series selector run against Prometheus's series API.
    pub series_query: String,
    /// Filters on series names.
    #[serde(default)]
    pub series_filters: Vec<RegexFilter>,
    /// How series labels map to Kubernetes resources.
    #[serde(default)]
    pub resources: ResourceMapping,
    /// How series names become metric names.
    #[serde(default)]
    pub name: NameMapping,
    /// The query template.
    pub metrics_query: String,
}

/// `is` or `isNot`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexFilter {
    /// Keep series whose name matches.
    pub is: Option<String>,
    /// Drop series whose name matches.
    pub is_not: Option<String>,
}

/// `resources`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMapping {
    /// A label-name template over `<<.Group>>` and `<<.Resource>>`.
    pub template: Option<String>,
    /// Label name → resource.
    #[serde(default)]
    pub overrides: BTreeMap<String, GroupResource>,
    /// For external rules: `false` makes the metric ignore the request's namespace.
    pub namespaced: Option<bool>,
}

/// A group and resource.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResource {
    /// API group; empty for core.
    #[serde(default)]
    pub group: String,
    /// Resource, singular or plural.
    pub resource: String,
}

/// `name`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameMapping {
    /// A regular expression over the series name (default `.*`).
    #[serde(default)]
    pub matches: String,
    /// The metric name, with `$1`/`${name}` captures (default `$1` with one group, else
    /// `$0`).
    #[serde(default, rename = "as")]
    pub as_: String,
}

/// Which API a rule serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    /// `custom.metrics.k8s.io`
    Custom,
    /// `external.metrics.k8s.io`
    External,
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Which API it serves.
    pub api: Api,
    /// Where it is in the file (`rules[3]`), for logs and errors.
    pub origin: String,
    /// The series selector.
    pub series_query: String,
    filters: Vec<(Regex, bool)>,
    name_matches: Regex,
    name_as: String,
    /// Labels ↔ resources.
    pub resources: ResourceNamer,
    /// The query template.
    pub query: QueryTemplate,
    /// External rules: whether the request's namespace filters the series.
    pub namespaced: bool,
}

impl Rule {
    /// The API metric name for series `series`, if the rule exposes it.
    pub fn metric_name(&self, series: &str) -> Option<String> {
        for (filter, keep) in &self.filters {
            if filter.is_match(series) != *keep {
                return None;
            }
        }
        let captures = self.name_matches.captures(series)?;
        let mut out = String::new();
        captures.expand(&self.name_as, &mut out);
        (!out.is_empty()).then_some(out)
    }
}

/// Maps series labels to resources and back.
#[derive(Clone, Debug, Default)]
pub struct ResourceNamer {
    overrides: BTreeMap<String, Resource>,
    template: Option<String>,
}

impl ResourceNamer {
    /// Compiles `resources` of the rule at `origin`.
    pub fn compile(mapping: &ResourceMapping, origin: &str) -> Result<ResourceNamer, String> {
        let mut overrides = BTreeMap::new();
        for (label, gr) in &mapping.overrides {
            if !promql::valid_label_name(label) {
                return Err(format!(
                    "{origin}.resources.overrides.{label}: not a valid Prometheus label name"
                ));
            }
            let resource = resources::lookup(&gr.group, &gr.resource)
                .unwrap_or_else(|| resources::custom(&gr.group, &gr.resource));
            overrides.insert(label.clone(), resource);
        }
        if let Some(template) = &mapping.template {
            replace_actions(template, |a| {
                matches!(a, ".Resource" | ".Group").then(String::new)
            })
            .map_err(|e| {
                format!("{origin}.resources.template: {e}; supported: <<.Group>>, <<.Resource>>")
            })?;
        }
        Ok(ResourceNamer {
            overrides,
            template: mapping.template.clone(),
        })
    }

    /// The resource a label names, if any.
    pub fn resource_for(&self, label: &str) -> Option<Resource> {
        if let Some(r) = self.overrides.get(label) {
            return Some(r.clone());
        }
        let template = self.template.as_deref()?;
        resources::built_in().find(|r| render_label(template, r) == label)
    }

    /// The label naming objects of `resource`, if any.
    pub fn label_for(&self, resource: &Resource) -> Option<String> {
        if let Some((label, _)) = self.overrides.iter().find(|(_, r)| *r == resource) {
            return Some(label.clone());
        }
        let label = render_label(self.template.as_deref()?, resource);
        promql::valid_label_name(&label).then_some(label)
    }

    /// The label holding the namespace, if the rule has one.
    pub fn namespace_label(&self) -> Option<String> {
        resources::lookup("", "namespaces").and_then(|ns| self.label_for(&ns))
    }
}

fn render_label(template: &str, resource: &Resource) -> String {
    let group = resource.group.replace(['.', '-'], "_");
    replace_actions(template, |action| match action {
        ".Resource" => Some(resource.singular.clone()),
        ".Group" => Some(group.clone()),
        _ => None,
    })
    .unwrap_or_default()
}

/// Every compiled rule.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Custom rules, then external rules.
    pub rules: Vec<Rule>,
    /// The resource metrics rules, when the file has them (`metrics.k8s.io` is served
    /// only then).
    pub resource: Option<crate::resource_metrics::ResourceRules>,
}

impl Rules {
    /// Parses and compiles a configuration file's text. `source` names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<Rules, String> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let config: AdapterConfig = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| format!("{source}: {}: {}", e.path(), e.inner()))?;
        Rules::compile(&config).map_err(|e| format!("{source}: {e}"))
    }

    /// Compiles a parsed configuration.
    pub fn compile(config: &AdapterConfig) -> Result<Rules, String> {
        let custom = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(r, Api::Custom, format!("rules[{i}]")));
        let external = config
            .external_rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(r, Api::External, format!("externalRules[{i}]")));
        Ok(Rules {
            rules: custom.chain(external).collect::<Result<_, _>>()?,
            resource: config
                .resource_rules
                .as_ref()
                .map(crate::resource_metrics::ResourceRules::compile)
                .transpose()?,
        })
    }

    /// Weir's defaults when no file is given: prometheus-adapter's default rules for
    /// container metrics and for any namespaced series with a `pod` label, and resource
    /// rules over cAdvisor and node-exporter as kube-prometheus scrapes them.
    pub fn defaults() -> Rules {
        Rules::from_yaml(DEFAULT_CONFIG, "built-in rules").unwrap_or_default()
    }
}

/// The built-in rules (prometheus-adapter's chart defaults, in spirit).
pub const DEFAULT_CONFIG: &str = r#"
rules:
  - seriesQuery: '{__name__=~"^container_.*_seconds_total$",container!="POD",namespace!="",pod!=""}'
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
    name:
      matches: "^container_(.*)_seconds_total$"
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m])) by (<<.GroupBy>>)'
  - seriesQuery: '{__name__=~"^.*_total$",__name__!~"^container_.*",namespace!="",pod!=""}'
    resources:
      template: "<<.Resource>>"
    name:
      matches: "^(.*)_total$"
      as: "${1}_per_second"
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
  - seriesQuery: '{__name__!~"^container_.*",namespace!="",pod!=""}'
    seriesFilters:
      - isNot: ".*_(total|bucket|sum|count|created)$"
    resources:
      template: "<<.Resource>>"
    metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# metrics.k8s.io from cAdvisor (containers, as the kubelet exposes them) and node-exporter
# (nodes; kube-prometheus sets its `instance` label to the node's name).
resourceRules:
  cpu:
    containerQuery: 'sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!="",container!="POD"}[2m]))'
    nodeQuery: 'sum by (<<.GroupBy>>) (1 - rate(node_cpu_seconds_total{<<.LabelMatchers>>,mode="idle"}[2m]))'
    resources: &kube-prometheus
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
        instance: {resource: node}
    containerLabel: container
  memory:
    containerQuery: 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!="",container!="POD"})'
    nodeQuery: 'sum by (<<.GroupBy>>) (node_memory_MemTotal_bytes{<<.LabelMatchers>>} - node_memory_MemAvailable_bytes{<<.LabelMatchers>>})'
    resources: *kube-prometheus
    containerLabel: container
  window: 2m
"#;

fn compile_rule(rule: &DiscoveryRule, api: Api, origin: String) -> Result<Rule, String> {
    let regex = |field: &str, pattern: &str| {
        Regex::new(pattern)
            .map_err(|e| format!("{origin}.{field}: invalid regular expression {pattern:?}: {e}"))
    };
    if rule.series_query.trim().is_empty() {
        return Err(format!("{origin}.seriesQuery: must not be empty"));
    }
    let mut filters = Vec::new();
    for (i, f) in rule.series_filters.iter().enumerate() {
        match (&f.is, &f.is_not) {
            (Some(p), None) => filters.push((regex(&format!("seriesFilters[{i}].is"), p)?, true)),
            (None, Some(p)) => {
                filters.push((regex(&format!("seriesFilters[{i}].isNot"), p)?, false))
            }
            _ => {
                return Err(format!(
                    "{origin}.seriesFilters[{i}]: exactly one of `is` and `isNot` is required"
                ));
            }
        }
    }
    let matches = if rule.name.matches.is_empty() {
        ".*"
    } else {
        &rule.name.matches
    };
    let name_matches = regex("name.matches", matches)?;
    let name_as = if rule.name.as_.is_empty() {
        match name_matches.captures_len() {
            1 => "$0".to_string(),
            2 => "$1".to_string(),
            _ => {
                return Err(format!(
                    "{origin}.name.as: required when name.matches has more than one capture group"
                ));
            }
        }
    } else {
        rule.name.as_.clone()
    };
    let query = QueryTemplate::parse(&rule.metrics_query, true)
        .map_err(|e| format!("{origin}.metricsQuery: {e}"))?;
    let resources = ResourceNamer::compile(&rule.resources, &origin)?;
    let namespaced = rule.resources.namespaced.unwrap_or(true);
    Ok(Rule {
        api,
        origin,
        series_query: rule.series_query.clone(),
        filters,
        name_matches,
        name_as,
        resources,
        query,
        namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from prometheus-adapter's docs/config.md, and the walkthrough's.
    const DOCS: &str = r#"
rules:
# this rule matches cumulative cAdvisor metrics measured in seconds
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^container_(.*)_seconds_total$"
  metricsQuery: "sum(rate(<<.Series>>{<<.LabelMatchers>>,container!=\"POD\"}[2m])) by (<<.GroupBy>>)"
- seriesQuery: 'http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}'
  resources:
    overrides:
      kubernetes_namespace: {resource: "namespace"}
      kubernetes_pod_name: {resource: "pod"}
  name:
    matches: "^(.*)_total"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_consumer_lag",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    overrides: { namespace: {resource: "namespace"} }
"#;

    #[test]
    fn docs_examples_compile() {
        let rules = Rules::from_yaml(DOCS, "docs.yaml").unwrap();
        assert_eq!(rules.rules.len(), 3);
        let cadvisor = &rules.rules[0];
        assert_eq!(
            cadvisor
                .metric_name("container_cpu_usage_seconds_total")
                .as_deref(),
            Some("cpu_usage")
        );
        assert_eq!(cadvisor.metric_name("container_memory_bytes"), None);
        let http = &rules.rules[1];
        assert_eq!(
            http.metric_name("http_requests_total").as_deref(),
            Some("http_requests_per_second")
        );
        let pod = resources::lookup("", "pod").unwrap();
        assert_eq!(
            http.resources.label_for(&pod).as_deref(),
            Some("kubernetes_pod_name")
        );
        assert_eq!(
            http.resources.namespace_label().as_deref(),
            Some("kubernetes_namespace")
        );
        assert_eq!(
            http.resources.resource_for("kubernetes_pod_name"),
            Some(pod)
        );
        assert_eq!(
            http.query
                .render(&QueryValues {
                    series: "http_requests_total",
                    matchers: &[
                        promql::Matcher::names("kubernetes_pod_name", &["a".into()]).unwrap()
                    ],
                    group_by: &["kubernetes_pod_name"],
                })
                .unwrap(),
            r#"sum(rate(http_requests_total{kubernetes_pod_name="a"}[2m])) by (kubernetes_pod_name)"#
        );
        let external = &rules.rules[2];
        assert_eq!(external.api, Api::External);
        assert_eq!(
            external.metric_name("queue_consumer_lag").as_deref(),
            Some("queue_consumer_lag")
        );
        assert!(Rules::defaults().rules.len() == 3);
    }

    #[test]
    fn template_maps_labels_both_ways() {
        let namer = ResourceNamer {
            overrides: BTreeMap::new(),
            template: Some("kube_<<.Group>>_<<.Resource>>".into()),
        };
        let deployment = resources::lookup("apps", "deployments").unwrap();
        assert_eq!(
            namer.label_for(&deployment).as_deref(),
            Some("kube_apps_deployment")
        );
        assert_eq!(namer.resource_for("kube_apps_deployment"), Some(deployment));
        assert_eq!(namer.resource_for("kube_apps_widget"), None);
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            (
                "rules: [{seriesQuery: 'x', metricsQuery: '<<.Series>>', name: {matches: '('}}]",
                "rules[0].name.matches",
            ),
            (
                "rules: [{seriesQuery: 'x', metricsQuery: '<<.Nope>>'}]",
                "rules[0].metricsQuery",
            ),
            (
                "rules: [{seriesQuery: 'x', metricsQuery: 'up'}]",
                "rules[0].metricsQuery",
            ),
            (
                "externalRules: [{seriesQuery: 'x', metricsQuery: '<<.Series>>', seriesFilters: [{}]}]",
                "externalRules[0].seriesFilters[0]",
            ),
            (
                "rules: [{seriesQuery: 'x', metricsQuery: '<<.Series>>', name: {matches: '(a)(b)'}}]",
                "rules[0].name.as",
            ),
            (
                "rules: [{seriesQuery: 'x', metricsQuery: '<<.Series>>', resources: {template: '<<.Kind>>'}}]",
                "rules[0].resources.template",
            ),
            (
                "rules: [{seriesQuery: 'x', metricsQuery: '<<.Series>>', typo: 1}]",
                "rules[0]",
            ),
        ] {
            let err = Rules::from_yaml(text, "f.yaml").unwrap_err();
            assert!(err.starts_with(&format!("f.yaml: {field}")), "{err}");
        }
    }
}
