//! The node autoscaler's settings, with cluster-autoscaler's flag names and defaults, so an
//! operator's CA flags carry over unchanged.

use std::{fmt, str::FromStr, time::Duration};

use serde::Serialize;

/// One expander: how to choose between scale-up options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expander {
    /// Lowest idle cpu fraction + idle memory fraction over the option's new nodes.
    LeastWaste,
    /// The option that schedules the most pods.
    MostPods,
    /// The option that adds the fewest nodes.
    LeastNodes,
    /// The cheapest option per scheduled pod (`pricePerHour`).
    Price,
    /// The pool with the highest `priority`.
    Priority,
    /// Any option, chosen pseudo-randomly (reproducibly for a given `now`).
    Random,
}

impl Expander {
    /// The expander's name, as `--expander` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Expander::LeastWaste => "least-waste",
            Expander::MostPods => "most-pods",
            Expander::LeastNodes => "least-nodes",
            Expander::Price => "price",
            Expander::Priority => "priority",
            Expander::Random => "random",
        }
    }
}

impl FromStr for Expander {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "least-waste" => Expander::LeastWaste,
            "most-pods" => Expander::MostPods,
            "least-nodes" => Expander::LeastNodes,
            "price" => Expander::Price,
            "priority" => Expander::Priority,
            "random" => Expander::Random,
            other => {
                return Err(format!(
                    "unknown expander {other:?}; use least-waste, most-pods, least-nodes, price, priority or random"
                ));
            }
        })
    }
}

/// A chain of expanders, applied left to right (`least-waste,price`): each keeps the
/// options it scores best, and the next breaks the ties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExpanderChain(pub Vec<Expander>);

impl FromStr for ExpanderChain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chain = s
            .split(',')
            .map(Expander::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err("--expander needs at least one expander".into());
        }
        Ok(ExpanderChain(chain))
    }
}

impl fmt::Display for ExpanderChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|e| e.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// A `min:max` range, as `--cores-total` and `--memory-total` take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// The cluster never shrinks below this.
    pub min: i64,
    /// The cluster never grows beyond this.
    pub max: i64,
}

impl FromStr for Range {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (min, max) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not a range; write MIN:MAX, e.g. 0:320000"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{s:?}: {v:?} is not a whole number"))
        };
        let (min, max) = (parse(min)?, parse(max)?);
        if min < 0 || max < min {
            return Err(format!("{s:?}: need 0 <= MIN <= MAX"));
        }
        Ok(Range { min, max })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.min, self.max)
    }
}

/// Parses a Go-style duration flag (`10m`, `10m0s`, `1.5h`, `500ms`).
pub use weir_crds::parse_flag_duration as parse_duration;

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// A duration the way Go prints it (`10m0s`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let ms = d.subsec_millis();
    match (h, m) {
        (0, 0) if ms > 0 => format!("{}ms", secs * 1000 + u64::from(ms)),
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The node autoscaler's settings. Names and defaults are cluster-autoscaler's.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// How often the node autoscaler plans and acts.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SCAN_INTERVAL", default_value = "10s", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub scan_interval: Duration,
    /// Expanders, left to right, choosing between scale-up options.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_EXPANDER", default_value = "random")
    )]
    pub expander: ExpanderChain,
    /// A node is a scale-down candidate when the larger of its cpu and memory requests
    /// over allocatable is at most this.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "WEIR_SCALE_DOWN_UTILIZATION_THRESHOLD",
            default_value_t = 0.5
        )
    )]
    pub scale_down_utilization_threshold: f64,
    /// How long a node must be unneeded before it is removed.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SCALE_DOWN_UNNEEDED_TIME", default_value = "10m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub scale_down_unneeded_time: Duration,
    /// How long an unready node must be unneeded before it is removed.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SCALE_DOWN_UNREADY_TIME", default_value = "20m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub scale_down_unready_time: Duration,
    /// No scale-down until this long after the last scale-up.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SCALE_DOWN_DELAY_AFTER_ADD", default_value = "10m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub scale_down_delay_after_add: Duration,
    /// Whether the autoscaler removes nodes at all.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SCALE_DOWN_ENABLED", default_value_t = true, action = clap::ArgAction::Set))]
    pub scale_down_enabled: bool,
    /// Most nodes in the cluster, all pools together (0: no limit).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_MAX_NODES_TOTAL", default_value_t = 0)
    )]
    pub max_nodes_total: i64,
    /// Cores in the cluster, MIN:MAX.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_CORES_TOTAL", default_value = "0:320000")
    )]
    pub cores_total: Range,
    /// Memory in the cluster in GiB, MIN:MAX.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_MEMORY_TOTAL", default_value = "0:6400000")
    )]
    pub memory_total: Range,
    /// Spread a scale-up over pools of the same shape and labels (zone aside).
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_BALANCE_SIMILAR_NODE_GROUPS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true"))]
    pub balance_similar_node_groups: bool,
    /// A requested node that has not registered after this long no longer counts as
    /// upcoming, and its pool backs off.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_MAX_NODE_PROVISION_TIME", default_value = "15m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub max_node_provision_time: Duration,
    /// Non-empty nodes drained at once.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_MAX_DRAIN_PARALLELISM", default_value_t = 1)
    )]
    pub max_drain_parallelism: usize,
    /// Nodes removed at once (empty and non-empty together).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_MAX_SCALE_DOWN_PARALLELISM", default_value_t = 10)
    )]
    pub max_scale_down_parallelism: usize,
    /// Empty nodes removed at once.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "WEIR_MAX_EMPTY_BULK_DELETE", default_value_t = 10)
    )]
    pub max_empty_bulk_delete: usize,
    /// First backoff of a pool whose nodes failed to provision; doubles on each failure.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_INITIAL_NODE_GROUP_BACKOFF_DURATION", default_value = "5m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub initial_node_group_backoff_duration: Duration,
    /// Longest backoff.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_MAX_NODE_GROUP_BACKOFF_DURATION", default_value = "30m", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub max_node_group_backoff_duration: Duration,
    /// The backoff starts over after this long without a failure.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_NODE_GROUP_BACKOFF_RESET_TIMEOUT", default_value = "3h", value_parser = parse_duration))]
    #[serde(serialize_with = "ser_duration")]
    pub node_group_backoff_reset_timeout: Duration,
    /// Skip nodes that run kube-system pods without a PodDisruptionBudget.
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SKIP_NODES_WITH_SYSTEM_PODS", default_value_t = true, action = clap::ArgAction::Set))]
    pub skip_nodes_with_system_pods: bool,
    /// Skip nodes whose pods use local storage (emptyDir, hostPath).
    #[cfg_attr(feature = "clap", arg(long, env = "WEIR_SKIP_NODES_WITH_LOCAL_STORAGE", default_value_t = true, action = clap::ArgAction::Set))]
    pub skip_nodes_with_local_storage: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scan_interval: Duration::from_secs(10),
            expander: ExpanderChain(vec![Expander::Random]),
            scale_down_utilization_threshold: 0.5,
            scale_down_unneeded_time: Duration::from_secs(600),
            scale_down_unready_time: Duration::from_secs(1200),
            scale_down_delay_after_add: Duration::from_secs(600),
            scale_down_enabled: true,
            max_nodes_total: 0,
            cores_total: Range {
                min: 0,
                max: 320_000,
            },
            memory_total: Range {
                min: 0,
                max: 6_400_000,
            },
            balance_similar_node_groups: false,
            max_node_provision_time: Duration::from_secs(900),
            max_drain_parallelism: 1,
            max_scale_down_parallelism: 10,
            max_empty_bulk_delete: 10,
            initial_node_group_backoff_duration: Duration::from_secs(300),
            max_node_group_backoff_duration: Duration::from_secs(1800),
            node_group_backoff_reset_timeout: Duration::from_secs(3 * 3600),
            skip_nodes_with_system_pods: true,
            skip_nodes_with_local_storage: true,
        }
    }
}

impl Settings {
    /// Checks values clap cannot: the threshold is a fraction.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.scale_down_utilization_threshold) {
            return Err(format!(
                "--scale-down-utilization-threshold: {} is not between 0 and 1",
                self.scale_down_utilization_threshold
            ));
        }
        if self.max_nodes_total < 0 {
            return Err("--max-nodes-total: must be 0 (no limit) or more".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chains_ranges_and_durations() {
        let chain: ExpanderChain = "least-waste,price".parse().expect("chain");
        assert_eq!(chain.0, vec![Expander::LeastWaste, Expander::Price]);
        assert_eq!(chain.to_string(), "least-waste,price");
        assert!(
            "least-waste,cheapest"
                .parse::<ExpanderChain>()
                .unwrap_err()
                .contains("cheapest")
        );
        assert_eq!(
            "0:320000".parse::<Range>(),
            Ok(Range {
                min: 0,
                max: 320_000
            })
        );
        assert!("5:1".parse::<Range>().is_err());
        assert_eq!(parse_duration("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(format_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(format_duration(Duration::from_secs(3 * 3600)), "3h0m0s");
    }
}
