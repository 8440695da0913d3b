//! The PromQL for one request: a rule's template rendered with matchers built only from
//! validated, escaped values. Pure.

use crate::{
    config::{QueryValues, Rule},
    discovery::{CustomMetric, ExternalMetric},
    promql::{MatchOp, Matcher},
    selector::Selector,
};

/// Which objects a custom-metrics request covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Objects {
    /// These names (one for a single-object request; the objects a selector picked).
    Named(Vec<String>),
    /// Every object the series mention (`*` on a resource Weir does not index).
    Any,
}

/// The query for a custom metric request.
pub fn custom(
    rule: &Rule,
    metric: &CustomMetric,
    namespace: Option<&str>,
    objects: &Objects,
    metric_selector: &Selector,
) -> Result<String, String> {
    let scope = match (metric.namespaced(), &metric.namespace_label, namespace) {
        (false, _, _) => None,
        (true, Some(label), Some(namespace)) => {
            Some(Matcher::new(label, MatchOp::Equal, namespace)?)
        }
        (true, _, _) => return Err(format!("{} metrics are namespaced", metric.resource)),
    };
    render_custom(
        rule,
        metric,
        scope,
        objects,
        metric_selector,
        &[&metric.label],
    )
}

/// The query for a namespaced custom metric in several `namespaces` at once, grouped by
/// namespace and object: one query where a batch of requests would send one per
/// namespace. The rule's `<<.GroupBy>>` becomes `<namespace label>,<object label>`.
pub fn custom_across(
    rule: &Rule,
    metric: &CustomMetric,
    namespaces: &[String],
    objects: &Objects,
    metric_selector: &Selector,
) -> Result<String, String> {
    let Some(namespace_label) = metric
        .namespace_label
        .as_deref()
        .filter(|_| metric.namespaced())
    else {
        return Err(format!("{} metrics are not namespaced", metric.resource));
    };
    if namespaces.is_empty() {
        return Err("no namespace asked for".into());
    }
    let scope = Matcher::names(namespace_label, namespaces)?;
    render_custom(
        rule,
        metric,
        Some(scope),
        objects,
        metric_selector,
        &[namespace_label, &metric.label],
    )
}

/// `rule`'s template with the namespace matcher (`scope`), the objects and the metric
/// selector as `<<.LabelMatchers>>`.
fn render_custom(
    rule: &Rule,
    metric: &CustomMetric,
    scope: Option<Matcher>,
    objects: &Objects,
    metric_selector: &Selector,
    group_by: &[&str],
) -> Result<String, String> {
    let mut matchers: Vec<Matcher> = scope.into_iter().collect();
    matchers.push(match objects {
        Objects::Named(names) => Matcher::names(&metric.label, names)?,
        Objects::Any => Matcher::new(&metric.label, MatchOp::NotEqual, "")?,
    });
    matchers.extend(metric_selector.matchers()?);
    rule.query.render(&QueryValues {
        series: &metric.series,
        matchers: &matchers,
        group_by,
    })
}

/// The query for an external metric request.
pub fn external(
    rule: &Rule,
    metric: &ExternalMetric,
    namespace: &str,
    selector: &Selector,
) -> Result<String, String> {
    let mut matchers = Vec::new();
    if let Some(label) = &metric.namespace_label {
        matchers.push(Matcher::new(label, MatchOp::Equal, namespace)?);
    }
    matchers.extend(selector.matchers()?);
    let group_by: Vec<&str> = metric.namespace_label.as_deref().into_iter().collect();
    rule.query.render(&QueryValues {
        series: &metric.series,
        matchers: &matchers,
        group_by: &group_by,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{config::Rules, discovery::MetricIndex};

    fn setup() -> (Rules, MetricIndex) {
        let rules = Rules::from_yaml(
            r#"
rules:
- seriesQuery: '{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_depth"}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#,
            "t",
        )
        .unwrap();
        let labels = |pairs: &[&str]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        let index = MetricIndex::build(
            &rules,
            &[
                vec![labels(&[
                    "__name__=inflight",
                    "namespace=shop",
                    "pod=web-1",
                ])],
                vec![labels(&[
                    "__name__=queue_depth",
                    "namespace=shop",
                    "queue=q",
                ])],
            ],
        );
        (rules, index)
    }

    #[test]
    fn custom_queries() {
        let (rules, index) = setup();
        let metric = &index.custom[&("pods".to_string(), "inflight".to_string())];
        let rule = &rules.rules[metric.rule];
        let q = custom(
            rule,
            metric,
            Some("shop"),
            &Objects::Named(vec!["web-1".into(), "web-2".into()]),
            &Selector::parse("code=200").unwrap(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(inflight{namespace="shop",pod=~"web-1|web-2",code="200"}) by (pod)"#
        );
        let any = custom(
            rule,
            metric,
            Some("shop"),
            &Objects::Any,
            &Selector::default(),
        )
        .unwrap();
        assert_eq!(any, r#"sum(inflight{namespace="shop",pod!=""}) by (pod)"#);
        assert!(custom(rule, metric, None, &Objects::Any, &Selector::default()).is_err());
    }

    #[test]
    fn one_query_across_namespaces() {
        let (rules, index) = setup();
        let metric = &index.custom[&("pods".to_string(), "inflight".to_string())];
        let q = custom_across(
            &rules.rules[metric.rule],
            metric,
            &["shop".into(), "web".into()],
            &Objects::Any,
            &Selector::default(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(inflight{namespace=~"shop|web",pod!=""}) by (namespace,pod)"#
        );
    }

    #[test]
    fn hostile_values_stay_inside_literals() {
        let (rules, index) = setup();
        let metric = &index.custom[&("pods".to_string(), "inflight".to_string())];
        let q = custom(
            &rules.rules[metric.rule],
            metric,
            Some(r#"shop"} or vector(1) or x{a=""#),
            &Objects::Named(vec![".*".into(), "a\nb".into()]),
            &Selector::default(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(inflight{namespace="shop\"} or vector(1) or x{a=\"",pod=~"\\.\\*|a\nb"}) by (pod)"#
        );
        let external_metric = &index.external["queue_depth"];
        let e = external(
            &rules.rules[external_metric.rule],
            external_metric,
            "shop",
            &Selector::parse("queue in (a,b)").unwrap(),
        )
        .unwrap();
        assert_eq!(
            e,
            r#"sum(queue_depth{namespace="shop",queue=~"a|b"}) by (queue)"#
        );
    }
}
