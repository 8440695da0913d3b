//! Building blocks of PromQL that carry values from outside: validated names, quoted
//! strings, escaped regular expressions and label matchers.
//!
//! Everything a request (or a policy) contributes to a query passes through here, so no
//! value can change a query's shape: label and metric names are checked against
//! Prometheus's grammar, values become string literals with `\`, `"` and newlines escaped,
//! and values used inside `=~` are regex-escaped first.

use std::fmt;

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A PromQL string literal holding `value`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as a regular expression (RE2, as Prometheus uses) that matches exactly it.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A regular expression matching exactly one of `values`.
pub fn any_of<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(regex_escape)
        .collect::<Vec<_>>()
        .join("|")
}

/// A label matcher's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher, e.g. `pod=~"web-1|web-2"`. Build it with [`Matcher::new`], which
/// checks the label name; the value is quoted when displayed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
    /// The values selected, unescaped and joined by `|` (prometheus-adapter's
    /// `LabelValuesByName`); `None` when that is `value` itself.
    plain: Option<String>,
}

impl Matcher {
    /// A matcher on `label`, or an error when the label name is not valid PromQL.
    pub fn new(label: &str, op: MatchOp, value: impl Into<String>) -> Result<Matcher, String> {
        if !valid_label_name(label) {
            return Err(format!(
                "{label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.into(),
            plain: None,
        })
    }

    /// The same matcher, remembering the unescaped `values` it selects.
    pub fn selecting<'a>(mut self, values: impl IntoIterator<Item = &'a str>) -> Matcher {
        self.plain = Some(values.into_iter().collect::<Vec<_>>().join("|"));
        self
    }

    /// A matcher for objects named `names`: `=` for one, `=~` over the escaped names for
    /// several.
    pub fn names(label: &str, names: &[String]) -> Result<Matcher, String> {
        match names {
            [one] => Matcher::new(label, MatchOp::Equal, one.clone()),
            many => Ok(Matcher::new(
                label,
                MatchOp::Regex,
                any_of(many.iter().map(String::as_str)),
            )?
            .selecting(many.iter().map(String::as_str))),
        }
    }

    /// The label it matches on.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.label,
            self.op.as_str(),
            quote(&self.value)
        )
    }
}

/// prometheus-adapter's `LabelValuesByName`: each matcher's label → the values it selects,
/// joined by `|`. Values are escaped as inside a string literal, so a template that puts
/// them between quotes cannot be broken out of.
pub fn values_by_name(matchers: &[Matcher]) -> std::collections::BTreeMap<String, String> {
    matchers
        .iter()
        .map(|m| {
            let quoted = quote(m.plain.as_deref().unwrap_or(&m.value));
            (m.label.clone(), quoted[1..quoted.len() - 1].to_string())
        })
        .collect()
}

/// Matchers joined with `,` (what prometheus-adapter's `<<.LabelMatchers>>` expands to).
pub fn join(matchers: &[Matcher]) -> String {
    let mut out = String::new();
    write_joined(&mut out, matchers);
    out
}

/// [`join`], appended to `out`.
pub fn write_joined(out: &mut String, matchers: &[Matcher]) {
    use std::fmt::Write;
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{m}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_label_name("pod"));
        assert!(valid_label_name("_x1"));
        assert!(!valid_label_name("1x"));
        assert!(!valid_label_name("app.kubernetes.io/name"));
        assert!(!valid_label_name(""));
        assert!(valid_metric_name("job:rate5m"));
        assert!(!valid_metric_name("a-b"));
    }

    #[test]
    fn values_cannot_escape_their_literal() {
        assert_eq!(quote(r#"a"} or up{x=""#), r#""a\"} or up{x=\"""#);
        assert_eq!(quote("a\\\nb"), r#""a\\\nb""#);
        assert_eq!(regex_escape("a.b|c*"), r"a\.b\|c\*");
        let m = Matcher::names("pod", &["web-1".into(), "web.2".into()]).unwrap();
        assert_eq!(m.to_string(), r#"pod=~"web-1|web\\.2""#);
        let one = Matcher::names("pod", &["web-1".into()]).unwrap();
        assert_eq!(one.to_string(), r#"pod="web-1""#);
        assert!(Matcher::new("a\"b", MatchOp::Equal, "x").is_err());
        let by_name = values_by_name(&[m, Matcher::new("q", MatchOp::Equal, "a\"b").unwrap()]);
        assert_eq!(by_name["pod"], "web-1|web.2");
        assert_eq!(by_name["q"], r#"a\"b"#);
    }
}
