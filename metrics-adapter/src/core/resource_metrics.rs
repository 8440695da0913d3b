//! The resource metrics API (`metrics.k8s.io/v1beta1`: what `kubectl top` and every
//! Resource-metric HPA read) from prometheus-adapter's `resourceRules`. Pure: the rules
//! compiled, the PromQL of a request, the answers assembled into `PodMetrics` and
//! `NodeMetrics`, field selectors, and the wire shapes.
//!
//! Semantics follow prometheus-adapter's resource provider (which follows metrics-server):
//! a pod is listed only when both its CPU and its memory have samples; a container with
//! one of the two gets 0 for the other; the timestamp is the earliest sample's; the window
//! is the configured one. Where prometheus-adapter sends one query per namespace, Weir
//! sends one per resource for the whole request, grouped by namespace too, so `kubectl top
//! pods -A` costs two queries, not two per namespace.

use std::collections::{BTreeMap, HashMap};

use crate::{
    config::{ResourceNamer, ResourceRuleConfig, ResourceRulesConfig},
    promql::{self, MatchOp, Matcher},
    resources::{self, Resource},
    template::{QueryTemplate, QueryValues},
};

/// `metrics.k8s.io`
pub const GROUP: &str = "metrics.k8s.io";
/// The version served.
pub const VERSION: &str = "v1beta1";

/// CPU or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Usage {
    /// Cores.
    Cpu,
    /// Bytes.
    Memory,
}

impl Usage {
    /// Both, in the order answers list them.
    pub const ALL: [Usage; 2] = [Usage::Cpu, Usage::Memory];

    /// `cpu` or `memory`, as Kubernetes names the resource.
    pub fn name(self) -> &'static str {
        match self {
            Usage::Cpu => "cpu",
            Usage::Memory => "memory",
        }
    }

    /// The usage a Kubernetes resource name means.
    pub fn from_name(name: &str) -> Option<Usage> {
        match name {
            "cpu" => Some(Usage::Cpu),
            "memory" => Some(Usage::Memory),
            _ => None,
        }
    }
}

/// One compiled resource rule.
#[derive(Clone, Debug)]
pub struct ResourceRule {
    container_query: QueryTemplate,
    node_query: QueryTemplate,
    /// The label naming the container.
    pub container_label: String,
    /// The label naming the pod.
    pub pod_label: String,
    /// The label naming the namespace.
    pub namespace_label: String,
    /// The label naming the node.
    pub node_label: String,
}

/// The compiled `resourceRules`.
#[derive(Clone, Debug)]
pub struct ResourceRules {
    /// CPU.
    pub cpu: ResourceRule,
    /// Memory.
    pub memory: ResourceRule,
    /// The window reported, in milliseconds.
    pub window_ms: u64,
}

fn compile_rule(rule: &ResourceRuleConfig, origin: &str) -> Result<ResourceRule, String> {
    let namer = ResourceNamer::compile(&rule.resources, origin)?;
    let label = |plural: &str| -> Result<String, String> {
        resources::lookup("", plural)
            .and_then(|r: Resource| namer.label_for(&r))
            .ok_or_else(|| {
                format!(
                    "{origin}.resources: no label names {plural} (add an override such as \
                     `{}: {{resource: {}}}`)",
                    if plural == "nodes" {
                        "node"
                    } else {
                        &plural[..plural.len() - 1]
                    },
                    &plural[..plural.len() - 1]
                )
            })
    };
    if !promql::valid_label_name(&rule.container_label) {
        return Err(format!(
            "{origin}.containerLabel: {:?} is not a valid Prometheus label name (the label \
             holding the container's name, usually `container`)",
            rule.container_label
        ));
    }
    let template = |field: &str, text: &str| {
        QueryTemplate::parse(text, false).map_err(|e| format!("{origin}.{field}: {e}"))
    };
    Ok(ResourceRule {
        container_query: template("containerQuery", &rule.container_query)?,
        node_query: template("nodeQuery", &rule.node_query)?,
        container_label: rule.container_label.clone(),
        pod_label: label("pods")?,
        namespace_label: label("namespaces")?,
        node_label: label("nodes")?,
    })
}

impl ResourceRules {
    /// Compiles `resourceRules`; errors name the field (`resourceRules.cpu.nodeQuery: ...`).
    pub fn compile(config: &ResourceRulesConfig) -> Result<ResourceRules, String> {
        let window_ms = match config.window.as_deref() {
            None => 60_000,
            Some(text) => parse_duration(text).filter(|ms| *ms > 0).ok_or_else(|| {
                format!(
                    "resourceRules.window: {text:?} is not a positive Prometheus duration \
                         (e.g. 1m, 5m, 1m30s)"
                )
            })?,
        };
        Ok(ResourceRules {
            cpu: compile_rule(&config.cpu, "resourceRules.cpu")?,
            memory: compile_rule(&config.memory, "resourceRules.memory")?,
            window_ms,
        })
    }

    /// The rule for `usage`.
    pub fn rule(&self, usage: Usage) -> &ResourceRule {
        match usage {
            Usage::Cpu => &self.cpu,
            Usage::Memory => &self.memory,
        }
    }

    /// The window as Kubernetes prints a duration (`5m0s`).
    pub fn window(&self) -> String {
        go_duration(self.window_ms)
    }
}

/// A Prometheus duration (`90s`, `1m30s`, `5m`, `1h`, `500ms`) in milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(scale)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Milliseconds as Go's `time.Duration` prints them (`metav1.Duration` on the wire).
pub fn go_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, minutes) = (ms / 3_600_000, ms / 60_000 % 60);
    let seconds = match ms % 60_000 {
        s if s % 1000 == 0 => format!("{}s", s / 1000),
        s => format!(
            "{}.{}s",
            s / 1000,
            format!("{:03}", s % 1000).trim_end_matches('0')
        ),
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

fn render(
    template: &QueryTemplate,
    matchers: &[Matcher],
    group_by: &[&str],
) -> Result<String, String> {
    template.render(&QueryValues {
        series: "",
        matchers,
        group_by,
    })
}

/// The containers query of `rule` for pods in `namespaces` (every namespace when `None`)
/// named `names` (every pod when `None`), grouped by namespace, pod and container.
pub fn pod_query(
    rule: &ResourceRule,
    namespaces: Option<&[String]>,
    names: Option<&[String]>,
) -> Result<String, String> {
    let mut matchers = Vec::new();
    if let Some(namespaces) = namespaces {
        matchers.push(Matcher::names(&rule.namespace_label, namespaces)?);
    }
    matchers.push(match names {
        Some(names) => Matcher::names(&rule.pod_label, names)?,
        None => Matcher::new(&rule.pod_label, MatchOp::NotEqual, "")?,
    });
    render(
        &rule.container_query,
        &matchers,
        &[
            &rule.namespace_label,
            &rule.pod_label,
            &rule.container_label,
        ],
    )
}

/// The node query of `rule` for nodes named `names` (every node when `None`).
pub fn node_query(rule: &ResourceRule, names: Option<&[String]>) -> Result<String, String> {
    let matcher = match names {
        Some(names) => Matcher::names(&rule.node_label, names)?,
        None => Matcher::new(&rule.node_label, MatchOp::NotEqual, "")?,
    };
    render(&rule.node_query, &[matcher], &[&rule.node_label])
}

/// One sample of a query's answer: labels, value, Unix time.
pub type Point<'a> = (&'a BTreeMap<String, String>, f64, f64);

/// An object the API lists: its namespace (empty for nodes), name and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// Namespace; empty for nodes.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels, echoed in the answer's metadata.
    pub labels: BTreeMap<String, String>,
}

/// One container's usage, in milli-units (millicores, millibytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// CPU, millicores.
    pub cpu: i64,
    /// Memory, thousandths of a byte.
    pub memory: i64,
}

/// One pod's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage<'a> {
    /// The pod.
    pub pod: &'a Described,
    /// When the oldest sample was taken (Unix seconds).
    pub timestamp: f64,
    /// Per container, sorted by name.
    pub containers: Vec<ContainerUsage>,
}

/// One node's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeUsage<'a> {
    /// The node.
    pub node: &'a Described,
    /// When the oldest sample was taken (Unix seconds).
    pub timestamp: f64,
    /// CPU, millicores.
    pub cpu: i64,
    /// Memory, thousandths of a byte.
    pub memory: i64,
}

/// Milli-units as prometheus-adapter converts them (`int64(v*1000)`, saturating);
/// `None` for NaN.
fn milli(value: f64) -> Option<i64> {
    (!value.is_nan()).then_some((value * 1000.0) as i64)
}

type PerContainer<'a> = BTreeMap<&'a str, (Option<i64>, Option<i64>)>;

/// Per (namespace, pod): per container (cpu, memory), the oldest timestamp, and whether
/// CPU and memory were seen. Keys borrow from the samples.
type PodIndex<'a> = HashMap<(&'a str, &'a str), (PerContainer<'a>, f64, [bool; 2])>;

fn index_pods<'a>(
    rules: &'a ResourceRules,
    cpu: &[Point<'a>],
    memory: &[Point<'a>],
) -> PodIndex<'a> {
    let mut index = PodIndex::with_capacity(cpu.len());
    for (usage, points) in [(Usage::Cpu, cpu), (Usage::Memory, memory)] {
        let rule = rules.rule(usage);
        for (labels, value, timestamp) in points {
            let (Some(ns), Some(pod), Some(value)) = (
                labels.get(&rule.namespace_label),
                labels.get(&rule.pod_label),
                milli(*value),
            ) else {
                continue;
            };
            let container = labels.get(&rule.container_label).map_or("", String::as_str);
            let entry = index
                .entry((ns.as_str(), pod.as_str()))
                .or_insert_with(|| (BTreeMap::new(), f64::INFINITY, [false; 2]));
            let slot = entry.0.entry(container).or_default();
            let field = if usage == Usage::Cpu {
                &mut slot.0
            } else {
                &mut slot.1
            };
            *field = Some(field.unwrap_or(0).saturating_add(value));
            entry.1 = entry.1.min(*timestamp);
            entry.2[usage as usize] = true;
        }
    }
    index
}

/// The usage of each of `pods` that has both CPU and memory samples, in `pods`' order.
pub fn pods<'a>(
    rules: &ResourceRules,
    pods: &'a [Described],
    cpu: &[Point<'_>],
    memory: &[Point<'_>],
) -> Vec<PodUsage<'a>> {
    let index = index_pods(rules, cpu, memory);
    pods.iter()
        .filter_map(|pod| {
            let (containers, timestamp, [has_cpu, has_memory]) =
                index.get(&(pod.namespace.as_str(), pod.name.as_str()))?;
            (*has_cpu && *has_memory).then(|| PodUsage {
                pod,
                timestamp: *timestamp,
                containers: containers
                    .iter()
                    .map(|(name, (cpu, memory))| ContainerUsage {
                        name: name.to_string(),
                        cpu: cpu.unwrap_or(0),
                        memory: memory.unwrap_or(0),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The usage of each of `nodes` that has both CPU and memory samples, in `nodes`' order.
pub fn nodes<'a>(
    rules: &ResourceRules,
    nodes: &'a [Described],
    cpu: &[Point<'_>],
    memory: &[Point<'_>],
) -> Vec<NodeUsage<'a>> {
    let mut index: HashMap<&str, ([Option<i64>; 2], f64)> = HashMap::new();
    for (usage, points) in [(Usage::Cpu, cpu), (Usage::Memory, memory)] {
        let label = &rules.rule(usage).node_label;
        for (labels, value, timestamp) in points {
            let (Some(node), Some(value)) = (labels.get(label), milli(*value)) else {
                continue;
            };
            let entry = index
                .entry(node.as_str())
                .or_insert(([None; 2], f64::INFINITY));
            let slot = &mut entry.0[usage as usize];
            *slot = Some(slot.unwrap_or(0).saturating_add(value));
            entry.1 = entry.1.min(*timestamp);
        }
    }
    nodes
        .iter()
        .filter_map(|node| {
            let ([Some(cpu), Some(memory)], timestamp) = index.get(node.name.as_str())? else {
                return None;
            };
            Some(NodeUsage {
                node,
                timestamp: *timestamp,
                cpu: *cpu,
                memory: *memory,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Rules, resource_wire::*};
    use serde_json::json;

    /// prometheus-adapter's own deployment manifest (deploy/manifests/config-map.yaml),
    /// unchanged.
    pub(crate) const UPSTREAM: &str =
        include_str!("../../testdata/prometheus-adapter-resource-rules.yaml");

    fn rules() -> ResourceRules {
        Rules::from_yaml(UPSTREAM, "config.yaml")
            .unwrap()
            .resource
            .unwrap()
    }

    #[test]
    fn upstream_rules_compile_and_render() {
        let rules = rules();
        assert_eq!(rules.window(), "5m0s");
        let q = pod_query(&rules.cpu, Some(&["shop".into()]), None).unwrap();
        assert!(
            q.contains(r#"sum by (namespace,pod,container)"#)
                && q.contains(r#"container_cpu_usage_seconds_total{namespace="shop",pod!="",container!="",pod!=""}[4m]"#),
            "{q}"
        );
        let q = pod_query(
            &rules.memory,
            Some(&["a".into(), "b".into()]),
            Some(&["web-1".into(), "web.2".into()]),
        )
        .unwrap();
        assert!(
            q.contains(r#"{namespace=~"a|b",pod=~"web-1|web\\.2",container!="""#),
            "{q}"
        );
        let q = node_query(&rules.cpu, Some(&["n1".into()])).unwrap();
        assert!(
            q.contains(r#"sum by (node)"#)
                && q.contains(r#"node_cpu_usage_seconds_total{node="n1"}[4m]"#),
            "{q}"
        );
        assert!(
            node_query(&rules.memory, None)
                .unwrap()
                .contains(r#"{node!=""}"#)
        );
    }

    #[test]
    fn defaults_serve_resource_metrics() {
        let defaults = Rules::defaults().resource.expect("default resourceRules");
        assert_eq!(defaults.cpu.node_label, "instance");
        assert!(
            node_query(&defaults.memory, Some(&["n1".into()]))
                .unwrap()
                .contains(r#"instance="n1""#)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let broken = [
            (
                UPSTREAM.replace(r#""window": "5m""#, r#""window": "soon""#),
                "resourceRules.window",
            ),
            (
                UPSTREAM.replacen(
                    r#""containerLabel": "container""#,
                    r#""containerLabel": "a-b""#,
                    1,
                ),
                "resourceRules.cpu.containerLabel",
            ),
            (
                UPSTREAM.replacen(
                    r#""node":
          "resource": "node""#,
                    r#""host":
          "resource": "service""#,
                    1,
                ),
                "resourceRules.cpu.resources: no label names nodes",
            ),
            (
                UPSTREAM.replacen("<<.GroupBy>>", "<<.Groups>>", 1),
                "resourceRules.cpu.containerQuery",
            ),
        ];
        for (text, field) in broken {
            let err = Rules::from_yaml(&text, "f.yaml").unwrap_err();
            assert!(err.starts_with(&format!("f.yaml: {field}")), "{err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(90_000), "1m30s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(30_000), "30s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(500), "500ms");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn described(namespace: &str, name: &str) -> Described {
        Described {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels(&[("app", "web")]),
        }
    }

    #[test]
    fn pods_need_cpu_and_memory_and_keep_the_oldest_timestamp() {
        let rules = rules();
        let c = |ns: &str, pod: &str, container: &str| {
            labels(&[("namespace", ns), ("pod", pod), ("container", container)])
        };
        let (web_app, web_sidecar, api_app, other_ns) = (
            c("shop", "web-1", "app"),
            c("shop", "web-1", "sidecar"),
            c("shop", "api-1", "app"),
            c("bank", "web-1", "app"),
        );
        let cpu: Vec<Point<'_>> = vec![
            (&web_app, 0.25, 100.0),
            (&web_sidecar, 0.0105, 90.0),
            (&api_app, 1.0, 100.0),
            (&other_ns, 2.0, 100.0),
        ];
        let memory: Vec<Point<'_>> = vec![(&web_app, 64.0 * 1024.0 * 1024.0, 95.0)];
        let asked = [
            described("shop", "web-1"),
            described("shop", "api-1"),
            described("shop", "gone"),
        ];
        let usage = pods(&rules, &asked, &cpu, &memory);
        // api-1 has no memory sample: left out, as prometheus-adapter does.
        assert_eq!(usage.len(), 1);
        let web = &usage[0];
        assert_eq!(web.pod.name, "web-1");
        assert_eq!(web.timestamp, 90.0);
        assert_eq!(
            web.containers,
            vec![
                ContainerUsage {
                    name: "app".into(),
                    cpu: 250,
                    memory: 64 * 1024 * 1024 * 1000
                },
                // A container with only CPU gets 0 memory.
                ContainerUsage {
                    name: "sidecar".into(),
                    cpu: 10,
                    memory: 0
                },
            ]
        );
        let window = rules.window();
        let json = serde_json::to_value(pod_out(
            web,
            &window,
            "2026-11-30T00:00:00Z",
            "1970-01-01T00:01:30Z".into(),
        ))
        .unwrap();
        assert_eq!(json["kind"], "PodMetrics");
        assert_eq!(json["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(
            json["metadata"]["creationTimestamp"],
            "2026-11-30T00:00:00Z"
        );
        assert_eq!(json["timestamp"], "1970-01-01T00:01:30Z");
        assert!(json.get("usage").is_none());
        assert_eq!(json["containers"][0]["usage"]["cpu"], "250m");
        assert_eq!(json["containers"][0]["usage"]["memory"], "64Mi");
        assert_eq!(json["metadata"]["namespace"], "shop");
        assert_eq!(json["metadata"]["labels"]["app"], "web");
        assert_eq!(json["window"], "5m0s");
    }

    #[test]
    fn nodes_need_cpu_and_memory() {
        let rules = rules();
        let (n1, n2) = (labels(&[("node", "n1")]), labels(&[("node", "n2")]));
        let cpu: Vec<Point<'_>> = vec![(&n1, 1.5, 10.0), (&n2, 0.5, 10.0)];
        let memory: Vec<Point<'_>> = vec![(&n1, 2e9, 9.0)];
        let asked = [described("", "n1"), described("", "n2")];
        let usage = nodes(&rules, &asked, &cpu, &memory);
        assert_eq!(usage.len(), 1);
        assert_eq!(
            (usage[0].cpu, usage[0].memory, usage[0].timestamp),
            (1500, 2_000_000_000_000, 9.0)
        );
        let json = serde_json::to_value(node_out(&usage[0], "5m0s", "now", "then".into())).unwrap();
        assert_eq!(
            json["usage"],
            json!({"cpu": "1500m", "memory": "1953125Ki"})
        );
        assert!(json["metadata"].get("namespace").is_none());
        assert!(json.get("containers").is_none());
        let list = serde_json::to_value(list_out("NodeMetrics", Vec::new())).unwrap();
        assert_eq!(
            list,
            json!({"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": []})
        );
    }
}
