//! `metricsQuery`, `containerQuery` and `nodeQuery` templates: Go's text/template with
//! `<<` `>>` delimiters, over the five values prometheus-adapter gives them (`.Series`,
//! `.LabelMatchers`, `.GroupBy`, and the raw forms `.GroupBySlice` and
//! `.LabelValuesByName`). Pure.
//!
//! Nearly every rule in the field uses only the first three, so those templates are split
//! once into text and holes and rendered by concatenation; any other template runs through
//! `gotmpl`, a port of Go's engine, so `range`, `index`, `if` and the built-in functions
//! behave as prometheus-adapter's do.

use std::{collections::BTreeMap, fmt, sync::Arc};

use gotmpl::{Template, TemplateError, Value};

use crate::promql::{self, Matcher};

/// What a query template is rendered with.
#[derive(Clone, Debug)]
pub struct QueryValues<'a> {
    /// The series name (empty for resource-metrics queries, which name their series).
    pub series: &'a str,
    /// The label matchers (`.LabelMatchers` joins them with `,`; `.LabelValuesByName`
    /// maps each label to the values it selects, computed only for templates that use it).
    pub matchers: &'a [Matcher],
    /// The grouping labels, in order.
    pub group_by: &'a [&'a str],
}

/// One piece of a simple template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Series,
    LabelMatchers,
    GroupBy,
}

#[derive(Clone)]
enum Form {
    /// Text and the three common holes.
    Simple(Vec<Piece>),
    /// Anything else Go's engine accepts.
    Go(Arc<Template>),
}

/// A parsed query template.
#[derive(Clone)]
pub struct QueryTemplate {
    source: String,
    form: Form,
}

impl fmt::Debug for QueryTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueryTemplate").field(&self.source).finish()
    }
}

impl PartialEq for QueryTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for QueryTemplate {}

/// Replaces every `<<action>>` in `template` with `f(action)` (trimmed); `None` when an
/// action is not known to `f`, with the action in the error.
pub(crate) fn replace_actions(
    template: &str,
    f: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("<<") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find(">>")
            .ok_or_else(|| format!("unclosed `<<` at {:?}", &rest[start..]))?;
        let action = after[..end].trim();
        out.push_str(
            &f(action).ok_or_else(|| format!("unsupported template action <<{action}>>"))?,
        );
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn simple(text: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<<") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find(">>")?;
        pieces.push(match after[..end].trim() {
            ".Series" => Piece::Series,
            ".LabelMatchers" => Piece::LabelMatchers,
            ".GroupBy" => Piece::GroupBy,
            _ => return None,
        });
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Some(pieces)
}

/// The fields a template's data has.
const FIELDS: &[&str] = &[
    "Series",
    "LabelMatchers",
    "GroupBy",
    "GroupBySlice",
    "LabelValuesByName",
];

/// Go reports a misspelt field of its data struct (`.LabelMatcher`) when the template
/// runs; the data here is a map, so check the fields read from dot when the rules load.
/// (Fields of `.LabelValuesByName` are labels, and free.)
fn check_fields(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('.') {
        let after_ident = i > 0
            && (bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b')' | b']'));
        let name: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if after_ident || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        if !FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "unknown field .{name}; templates get .{}",
                FIELDS.join(", .")
            ));
        }
    }
    Ok(())
}

/// Go's `index` on a `map[string]string` gives `""` for a missing key; gotmpl's maps hold
/// untyped values and would give nil (printed `<no value>`).
fn go_index(args: &[Value]) -> gotmpl::Result<Value> {
    if let [Value::Map(map), Value::String(key)] = args {
        return Ok(map.get(key).cloned().unwrap_or_else(|| Value::from("")));
    }
    let Some((first, keys)) = args.split_first().filter(|(_, k)| !k.is_empty()) else {
        return Err(TemplateError::Exec(
            "wrong number of args for index: want at least 2".into(),
        ));
    };
    keys.iter()
        .try_fold(first.clone(), |value, key| value.index(key))
}

impl QueryTemplate {
    /// Parses a template. `needs_series`: the template must use `<<.Series>>` (discovery
    /// rules, whose series the adapter finds; resource rules name their own).
    ///
    /// A template using more than the three common holes is parsed by Go's grammar and
    /// executed once with sample values, so a misspelt field fails here, not per request.
    pub fn parse(text: &str, needs_series: bool) -> Result<QueryTemplate, String> {
        let form = match simple(text) {
            Some(pieces) => {
                if needs_series && !pieces.contains(&Piece::Series) {
                    return Err("the template never uses <<.Series>>".into());
                }
                Form::Simple(pieces)
            }
            None => {
                check_fields(text)?;
                let template = Template::new("metricsQuery")
                    .delims("<<", ">>")
                    .func("index", go_index)
                    .parse(text)
                    .map_err(|e| format!("not a valid template: {e}"))?;
                if needs_series && !text.contains(".Series") {
                    return Err("the template never uses .Series".into());
                }
                Form::Go(Arc::new(template))
            }
        };
        let template = QueryTemplate {
            source: text.to_string(),
            form,
        };
        let sample = [Matcher::names("pod", &["a".into(), "b".into()])?];
        let rendered = template.render(&QueryValues {
            series: "series",
            matchers: &sample,
            group_by: &["pod"],
        })?;
        if rendered.trim().is_empty() {
            return Err("the template renders an empty query".into());
        }
        Ok(template)
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The query for `values`.
    pub fn render(&self, values: &QueryValues<'_>) -> Result<String, String> {
        match &self.form {
            Form::Simple(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Series => out.push_str(values.series),
                        Piece::LabelMatchers => promql::write_joined(&mut out, values.matchers),
                        Piece::GroupBy => {
                            for (i, label) in values.group_by.iter().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                out.push_str(label);
                            }
                        }
                    }
                }
                Ok(out)
            }
            Form::Go(template) => {
                let by_name: BTreeMap<String, Value> = promql::values_by_name(values.matchers)
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect();
                let data: BTreeMap<String, Value> = BTreeMap::from([
                    ("Series".to_string(), Value::from(values.series)),
                    (
                        "LabelMatchers".to_string(),
                        Value::from(promql::join(values.matchers)),
                    ),
                    (
                        "GroupBy".to_string(),
                        Value::from(values.group_by.join(",")),
                    ),
                    (
                        "GroupBySlice".to_string(),
                        Value::from(
                            values
                                .group_by
                                .iter()
                                .map(|l| Value::from(*l))
                                .collect::<Vec<_>>(),
                        ),
                    ),
                    ("LabelValuesByName".to_string(), Value::from(by_name)),
                ]);
                template
                    .execute_to_string(&Value::from(data))
                    .map_err(|e| format!("executing the template: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, group_by: &[&str]) -> Result<String, String> {
        let matchers = [
            Matcher::names("namespace", &["shop".into()])?,
            Matcher::names("pod", &["web-1".into(), "web-2".into()])?,
        ];
        QueryTemplate::parse(template, true)?.render(&QueryValues {
            series: "http_requests_total",
            matchers: &matchers,
            group_by,
        })
    }

    #[test]
    fn the_common_holes_render_by_concatenation() {
        let t = QueryTemplate::parse(
            "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<< .GroupBy >>)",
            true,
        )
        .unwrap();
        assert!(matches!(t.form, Form::Simple(_)));
        assert_eq!(
            render(
                "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<< .GroupBy >>)",
                &["namespace", "pod"]
            )
            .unwrap(),
            r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2"}[2m])) by (namespace,pod)"#
        );
    }

    #[test]
    fn group_by_slice_and_label_values_by_name_as_go_evaluates_them() {
        // A range with a separator, the way prometheus-adapter users join the slice.
        assert_eq!(
            render(
                r#"sum by (<<range $i, $l := .GroupBySlice>><<if $i>>, <<end>><<$l>><<end>>) (<<.Series>>{namespace="<<index .LabelValuesByName "namespace">>"})"#,
                &["namespace", "pod"]
            )
            .unwrap(),
            r#"sum by (namespace, pod) (http_requests_total{namespace="shop"})"#
        );
        // Field access on the map, and Go's own formatting of a slice.
        assert_eq!(
            render(
                r#"max(<<.Series>>{pod=~"<<.LabelValuesByName.pod>>"}) # <<.GroupBySlice>>"#,
                &["pod"]
            )
            .unwrap(),
            r#"max(http_requests_total{pod=~"web-1|web-2"}) # [pod]"#
        );
        // A label no matcher constrains: Go's `index` gives the empty string.
        assert_eq!(
            render(
                r#"<<.Series>>{x="<<index .LabelValuesByName "node">>"}"#,
                &["pod"]
            )
            .unwrap(),
            r#"http_requests_total{x=""}"#
        );
    }

    #[test]
    fn mistakes_fail_when_the_rules_load() {
        for (bad, why) in [
            ("<<.Series>>{<<.LabelMatcher>>}", "LabelMatcher"),
            ("<<.Series>> <<if>>x<<end>>", "not a valid template"),
            ("<<.Series>>{<<.LabelMatchers}", "not a valid template"),
            ("up", "never uses <<.Series>>"),
        ] {
            let err = QueryTemplate::parse(bad, true).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(QueryTemplate::parse("sum(x{<<.LabelMatchers>>})", false).is_ok());
    }
}
