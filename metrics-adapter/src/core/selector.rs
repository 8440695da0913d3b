//! Kubernetes label selectors in their string form (`app=web,tier in (a,b),!canary`), as
//! the metrics APIs receive them in `labelSelector` and `metricLabelSelector`.
//!
//! Keys and values are validated with Kubernetes's own rules, so a selector that parses
//! holds only what a Kubernetes label can hold; turning it into PromQL matchers also
//! requires keys to be Prometheus label names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::promql::{MatchOp, Matcher, any_of};

/// A requirement's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `k=v` or `k==v`
    Equals,
    /// `k!=v`
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub op: Op,
    /// The values (one for `=`/`!=`, none for existence).
    pub values: Vec<String>,
}

/// A parsed selector: every requirement must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// The requirements, in the order given.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses the string form; the error says which requirement is wrong and why.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!("empty requirement in selector {text:?}"));
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Selector { requirements })
    }

    /// The selector a `metav1.LabelSelector` describes (as autoscaling/v2 metrics carry
    /// them), validated like the string form.
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(parse_requirement(&format!("{key}={value}"))?);
        }
        for e in selector.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("{}: unknown operator {other:?}", e.key)),
            };
            validate_key(&e.key)?;
            for v in &values {
                validate_value(v)?;
            }
            requirements.push(Requirement {
                key: e.key.clone(),
                op,
                values,
            });
        }
        Ok(Selector { requirements })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.op {
                Op::Equals | Op::In => value.is_some_and(|v| r.values.contains(v)),
                Op::NotEquals | Op::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }

    /// The same selector as a `metav1.LabelSelector` (as the metrics APIs echo it back).
    pub fn to_label_selector(&self) -> LabelSelector {
        let mut match_labels = BTreeMap::new();
        let mut expressions = Vec::new();
        for r in &self.requirements {
            let (operator, values) = match r.op {
                Op::Equals => {
                    match_labels.insert(r.key.clone(), r.values[0].clone());
                    continue;
                }
                Op::NotEquals | Op::NotIn => ("NotIn", Some(r.values.clone())),
                Op::In => ("In", Some(r.values.clone())),
                Op::Exists => ("Exists", None),
                Op::DoesNotExist => ("DoesNotExist", None),
            };
            expressions.push(LabelSelectorRequirement {
                key: r.key.clone(),
                operator: operator.into(),
                values,
            });
        }
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then_some(match_labels),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    }

    /// PromQL matchers with the same meaning over series labels. Fails when a key is not a
    /// Prometheus label name.
    pub fn matchers(&self) -> Result<Vec<Matcher>, String> {
        self.requirements
            .iter()
            .map(|r| {
                let values = || any_of(r.values.iter().map(String::as_str));
                let (op, value) = match r.op {
                    Op::Equals => (MatchOp::Equal, r.values[0].clone()),
                    Op::NotEquals => (MatchOp::NotEqual, r.values[0].clone()),
                    Op::In => (MatchOp::Regex, values()),
                    Op::NotIn => (MatchOp::NotRegex, values()),
                    Op::Exists => (MatchOp::NotEqual, String::new()),
                    Op::DoesNotExist => (MatchOp::Equal, String::new()),
                };
                Matcher::new(&r.key, op, value)
                    .map(|m| m.selecting(r.values.iter().map(String::as_str)))
                    .map_err(|e| format!("label {:?} cannot select series: {e}", r.key))
            })
            .collect()
    }
}

fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' in selector {text:?}"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '(' in selector {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let requirement = |key: &str, op, values: Vec<String>| -> Result<Requirement, String> {
        validate_key(key)?;
        for v in &values {
            validate_value(v)?;
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        })
    };
    if let Some(key) = part.strip_prefix('!') {
        return requirement(key.trim(), Op::DoesNotExist, vec![]);
    }
    for (token, op) in [("!=", Op::NotEquals), ("==", Op::Equals), ("=", Op::Equals)] {
        if let Some((key, value)) = part.split_once(token) {
            return requirement(key.trim(), op, vec![value.trim().to_string()]);
        }
    }
    if let Some(open) = part.find('(') {
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        let op = match head.as_slice() {
            [_, "in"] => Op::In,
            [_, "notin"] => Op::NotIn,
            _ => {
                return Err(format!(
                    "{part:?}: expected `key in (...)` or `key notin (...)`"
                ));
            }
        };
        let inner = part[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("{part:?}: expected ')' at the end"))?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        return requirement(head[0], op, values);
    }
    if part.contains(['<', '>']) {
        return Err(format!("{part:?}: the operators < and > are not supported"));
    }
    if part.split_whitespace().count() != 1 {
        return Err(format!("{part:?}: expected one of =, ==, !=, in, notin"));
    }
    requirement(part, Op::Exists, vec![])
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters: alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(why) = prefix.and_then(weir_store::manifest::invalid_dns_subdomain) {
        return Err(format!("invalid label key {key:?}: bad prefix: {why}"));
    }
    if name.is_empty() || !valid_name_part(name) {
        return Err(format!(
            "invalid label key {key:?}: a name is at most 63 alphanumerics, '-', '_' or '.', \
             starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || valid_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: at most 63 alphanumerics, '-', '_' or '.', \
             starting and ending with an alphanumeric"
        ))
    }
}

fn valid_name_part(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = Selector::parse("app=web, tier in (a, b),env!=dev,!canary,team,x==y,z notin (q)")
            .unwrap();
        let ops: Vec<Op> = s.requirements.iter().map(|r| r.op).collect();
        assert_eq!(
            ops,
            [
                Op::Equals,
                Op::In,
                Op::NotEquals,
                Op::DoesNotExist,
                Op::Exists,
                Op::Equals,
                Op::NotIn
            ]
        );
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("team", "t"),
            ("x", "y")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "t")])));
        assert!(Selector::parse("").unwrap().is_empty());
        let m = s.matchers().unwrap();
        let text: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"app="web""#,
                r#"tier=~"a|b""#,
                r#"env!="dev""#,
                r#"canary="""#,
                r#"team!="""#,
                r#"x="y""#,
                r#"z!~"q""#
            ]
        );
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            r#"app="}"#,
            "app=web\"} or up{",
            "app=a b",
            "app in (a|b)",
            "app=.*",
            "app=x\ny",
            "a/b/c=d",
            "app in (a",
            "app)",
            "x > 3",
            "app==",
            "a,,b",
        ] {
            let result = Selector::parse(bad);
            // "app==" parses as app == "" (empty value is valid); everything else fails.
            if bad == "app==" {
                assert!(result.is_ok());
                continue;
            }
            assert!(result.is_err(), "{bad:?} parsed as {result:?}");
        }
        // Valid Kubernetes keys that are not Prometheus label names fail only as matchers.
        let s = Selector::parse("app.kubernetes.io/name=web").unwrap();
        assert!(s.matchers().unwrap_err().contains("app.kubernetes.io/name"));
    }
}
