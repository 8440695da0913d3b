//! What of an HTTPRoute Envoy would refuse, found before anything is pushed: regular
//! expressions RE2 would not compile (or not within the program size Weir's bootstraps
//! allow), and header modifications Envoy forbids (`Host`, `:`-pseudo-headers) or cannot
//! send (control characters). The API server and the Gateway API schemas accept all of
//! these, so without this check one such route would make Envoy reject the whole route
//! table it is in, freezing every other route with it.
//!
//! The translator leaves out what these problems touch, and only that: a match with a bad
//! regular expression is not routed; a rule with a forbidden header modification answers
//! 500, as the Gateway API asks of a rule it cannot honour (Envoy Gateway does the same).
//! The route's status says which field and why (`Accepted=False`, `UnsupportedValue`).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use weir_crds::gateway_api::{HTTPHeaderFilter, HTTPRoute, HTTPRouteRule};

/// The compiled size (in the `regex` crate's measure) above which Weir refuses a pattern.
/// It keeps every accepted pattern far inside the RE2 program size Weir's bootstraps allow
/// ([`crate::bootstrap::RE2_MAX_PROGRAM_SIZE`]); real route patterns are a few KiB.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One part of a route Envoy would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteProblem {
    /// The rule it is in.
    pub rule: usize,
    /// The match it is in, for problems in a match (the match is left out); `None` for
    /// problems in the rule's filters (the rule answers 500).
    pub matcher: Option<usize>,
    /// The field, as a path in the HTTPRoute (`spec.rules[0].matches[1].path.value`).
    pub field: String,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Whether RE2, as Envoy runs it, accepts `pattern`. The `regex` crate follows RE2's syntax
/// and guarantees (no backreferences, no look-around), so what it refuses RE2 refuses too;
/// the few things it adds to RE2's syntax are refused here first ([`beyond_re2`]).
pub fn check_regex(pattern: &str) -> Result<(), String> {
    // Translation checks the same patterns for every view and every status computation;
    // compiling one costs far more than the lookup, and the verdict never changes.
    static VERDICTS: LazyLock<Mutex<HashMap<String, Result<(), String>>>> =
        LazyLock::new(Default::default);
    if let Some(verdict) = VERDICTS.lock().ok().and_then(|v| v.get(pattern).cloned()) {
        return verdict;
    }
    let verdict = compile_check(pattern);
    if let Ok(mut verdicts) = VERDICTS.lock() {
        // Bounded: patterns come from the cluster's routes, which change over time.
        if verdicts.len() >= VERDICT_CACHE_SIZE {
            verdicts.clear();
        }
        verdicts.insert(pattern.to_string(), verdict.clone());
    }
    verdict
}

/// How many regex verdicts are kept between translations.
const VERDICT_CACHE_SIZE: usize = 10_000;

fn compile_check(pattern: &str) -> Result<(), String> {
    if let Some(what) = beyond_re2(pattern) {
        return Err(format!("not a regular expression RE2 accepts: {what}"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(drop)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!(
                "regular expression is too large once compiled (limit {REGEX_SIZE_LIMIT} bytes)"
            ),
            // The parser's message points at the pattern over several lines; its last
            // line says what is wrong.
            other => format!(
                "not a regular expression RE2 accepts: {}",
                other.to_string().lines().last().unwrap_or_default().trim()
            ),
        })
}

/// Syntax the `regex` crate accepts and RE2 does not: flags other than `i`, `m`, `s`, `U`
/// (`(?x)` verbose mode, `(?u)`, `(?R)`), and the word-boundary forms `\<`, `\>`, `\b{...}`.
fn beyond_re2(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                match chars.get(i + 1) {
                    Some('<' | '>') if !in_class => {
                        return Some(format!("word boundary \\{}", chars[i + 1]));
                    }
                    Some('b') if chars.get(i + 2) == Some(&'{') => {
                        return Some("word boundary \\b{...}".into());
                    }
                    _ => {}
                }
                i += 2;
                continue;
            }
            '[' => in_class = true,
            ']' => in_class = false,
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                let flags: String = chars[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic() || **c == '-')
                    .collect();
                let next = chars.get(i + 2 + flags.chars().count());
                if matches!(next, Some(':' | ')'))
                    && let Some(flag) = flags.chars().find(|c| !"imsU-".contains(*c))
                {
                    return Some(format!("flag {flag:?} (RE2 has i, m, s and U)"));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Everything in `route` Envoy would refuse, in the order of the spec.
pub fn route_problems(route: &HTTPRoute) -> Vec<RouteProblem> {
    route
        .spec
        .rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| rule_problems(i, rule))
        .collect()
}

/// The problems of one rule.
pub fn rule_problems(i: usize, rule: &HTTPRouteRule) -> Vec<RouteProblem> {
    let mut problems = Vec::new();
    let regex = |t: &Option<String>| t.as_deref() == Some("RegularExpression");
    for (j, m) in rule.matches.iter().enumerate() {
        let mut check = |field: String, pattern: &str| {
            if let Err(message) = check_regex(pattern) {
                problems.push(RouteProblem {
                    rule: i,
                    matcher: Some(j),
                    field,
                    message,
                });
            }
        };
        if let Some(path) = &m.path
            && regex(&path.type_)
        {
            let pattern = path.value.as_deref().unwrap_or("/");
            check(format!("spec.rules[{i}].matches[{j}].path.value"), pattern);
        }
        for (k, h) in m.headers.iter().enumerate() {
            if regex(&h.type_) {
                check(
                    format!("spec.rules[{i}].matches[{j}].headers[{k}].value"),
                    &h.value,
                );
            }
        }
        for (k, q) in m.query_params.iter().enumerate() {
            if regex(&q.type_) {
                check(
                    format!("spec.rules[{i}].matches[{j}].queryParams[{k}].value"),
                    &q.value,
                );
            }
        }
    }
    for (f, filter) in rule.filters.iter().enumerate() {
        let modifiers = [
            ("requestHeaderModifier", &filter.request_header_modifier),
            ("responseHeaderModifier", &filter.response_header_modifier),
        ];
        for (name, modifier) in modifiers {
            if let Some(modifier) = modifier {
                let at = format!("spec.rules[{i}].filters[{f}].{name}");
                problems.extend(header_filter_problems(&at, modifier).into_iter().map(
                    |(field, message)| RouteProblem {
                        rule: i,
                        matcher: None,
                        field,
                        message,
                    },
                ));
            }
        }
    }
    problems
}

/// Header modifications Envoy refuses: `Host` and `:`-pseudo-headers may not be set, added
/// or removed by a route; values may not hold NUL, CR or LF.
fn header_filter_problems(at: &str, filter: &HTTPHeaderFilter) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let forbidden = |name: &str| name.eq_ignore_ascii_case("host") || name.starts_with(':');
    let named = [("set", &filter.set), ("add", &filter.add)];
    for (list, headers) in named {
        for (k, header) in headers.iter().enumerate() {
            if forbidden(&header.name) {
                problems.push((
                    format!("{at}.{list}[{k}].name"),
                    format!("the {:?} header cannot be modified by a route", header.name),
                ));
            }
            if header.value.contains(['\0', '\r', '\n']) {
                problems.push((
                    format!("{at}.{list}[{k}].value"),
                    "a header value cannot hold NUL, CR or LF".to_string(),
                ));
            }
        }
    }
    for (k, name) in filter.remove.iter().enumerate() {
        if forbidden(name) {
            problems.push((
                format!("{at}.remove[{k}]"),
                format!("the {name:?} header cannot be removed by a route"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> HTTPRoute {
        serde_yaml::from_str(yaml).expect("route")
    }

    #[test]
    fn patterns_gateway_api_users_write_pass_and_what_re2_refuses_is_named() {
        // Size 341 in RE2: Envoy's default limit (100) refused it.
        assert_eq!(
            check_regex(r"^/files/[a-zA-Z0-9_-]{1,64}\.(png|jpe?g|gif|webp)$"),
            Ok(())
        );
        assert!(
            check_regex(r"^/(a|b")
                .unwrap_err()
                .contains("not a regular expression")
        );
        // Backreferences and look-around: RE2 has neither.
        assert!(check_regex(r"^/(\w+)/\1$").is_err());
        assert!(check_regex(r"^/(?!admin)").is_err());
        // What the regex crate adds to RE2's syntax.
        assert!(check_regex(r"(?x) ^/a b").unwrap_err().contains("flag 'x'"));
        assert!(check_regex(r"\<word\>").is_err());
        assert!(check_regex(r"\b{start}x").is_err());
        // RE2's own flags, escapes and classes stay accepted.
        assert_eq!(
            check_regex(r"(?i)^/a(?-s:.)\<[<>]\(\?x"),
            Err("not a regular expression RE2 accepts: word boundary \\<".into())
        );
        assert_eq!(check_regex(r"(?iU)^/a(?-s:.)[<>]\(\?x\d"), Ok(()));
        // Counted repetition that explodes once compiled.
        assert!(
            check_regex(r"(\w{1000}){1000}")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn each_problem_names_its_field_and_where_it_is() {
        let r = route(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  rules:
  - matches:
    - path: {type: PathPrefix, value: /ok}
    - path: {type: RegularExpression, value: "^/(a|b"}
      headers: [{name: x-v, type: RegularExpression, value: "(?=x)"}]
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: Host, value: other}, {name: x-fine, value: "50% off"}]
        remove: [":path"]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-bad, value: "a\r\nb"}]
"#,
        );
        let fields: Vec<(usize, Option<usize>, String)> = route_problems(&r)
            .into_iter()
            .map(|p| (p.rule, p.matcher, p.field))
            .collect();
        assert_eq!(
            fields,
            vec![
                (0, Some(1), "spec.rules[0].matches[1].path.value".into()),
                (
                    0,
                    Some(1),
                    "spec.rules[0].matches[1].headers[0].value".into()
                ),
                (
                    1,
                    None,
                    "spec.rules[1].filters[0].requestHeaderModifier.set[0].name".into()
                ),
                (
                    1,
                    None,
                    "spec.rules[1].filters[0].requestHeaderModifier.remove[0]".into()
                ),
                (
                    1,
                    None,
                    "spec.rules[1].filters[1].responseHeaderModifier.add[0].value".into()
                ),
            ]
        );
    }
}
