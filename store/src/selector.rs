//! Kubernetes label selectors, evaluated against a set of labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector` (`matchLabels` and every `matchExpressions` term).
/// An empty selector matches everything; an unknown operator matches nothing.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let match_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let match_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    match_labels && match_expressions
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("team", "shop"), ("tier", "web")]);
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "shop")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["web", "api"]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(&selector, Some(&l)));
        let selector = LabelSelector {
            match_expressions: Some(vec![expr("tier", "NotIn", &["web"])]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&selector, Some(&l)));
        assert!(
            selector_matches(&LabelSelector::default(), None),
            "empty selects all"
        );
        let selector = LabelSelector {
            match_expressions: Some(vec![expr("tier", "Exists", &[])]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&selector, None));
    }
}
