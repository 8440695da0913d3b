//! Scale-up, as cluster-autoscaler decides it: pending pods that fit existing or upcoming
//! nodes trigger nothing; for the rest each pool's template node is simulated, the nodes an
//! option needs are estimated with first-fit decreasing, and the expanders choose.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
};

use k8s_openapi::jiff::Timestamp;

use super::{
    Settings,
    plan::{OptionScore, Placement, ScaleUp, ScaleUpPlan, Unschedulable},
    predicates::{Bin, Unfit, static_fit, template_bin},
    settings::Expander,
    snapshot::{PoolInfo, Snapshot},
};

const GIB: i64 = 1 << 30;
const ZONE_LABELS: &[&str] = &[
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
    "kubernetes.io/hostname",
    weir_crds::node_pool::NODE_POOL_LABEL,
];

/// The cluster's size against `--max-nodes-total`, `--cores-total`, `--memory-total`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Nodes, existing and upcoming.
    pub nodes: i64,
    /// Milli-cores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
}

impl Totals {
    /// How many more nodes of `pool` fit under the limits, and which limit binds when none.
    pub fn room_for(&self, pool: &PoolInfo, settings: &Settings) -> (i64, Option<&'static str>) {
        let mut room = i64::MAX;
        let mut binding = None;
        let mut limit = |n: i64, reason: &'static str| {
            let n = n.max(0);
            if n < room {
                room = n;
                binding = Some(reason);
            }
        };
        if settings.max_nodes_total > 0 {
            limit(
                settings.max_nodes_total - self.nodes,
                "MaxNodesTotalReached",
            );
        }
        if pool.allocatable.cpu > 0 {
            limit(
                (settings.cores_total.max.saturating_mul(1000) - self.cpu) / pool.allocatable.cpu,
                "MaxCoresTotalReached",
            );
        }
        if pool.allocatable.memory > 0 {
            limit(
                (settings.memory_total.max.saturating_mul(GIB) - self.memory)
                    / pool.allocatable.memory,
                "MaxMemoryTotalReached",
            );
        }
        (room, if room == 0 { binding } else { None })
    }

    fn add(&mut self, pool: &PoolInfo, nodes: i64) {
        self.nodes += nodes;
        self.cpu += pool.allocatable.cpu * nodes;
        self.memory += pool.allocatable.memory * nodes;
    }
}

/// The pool state scale-up works on.
#[derive(Clone, Debug)]
pub struct PoolState {
    /// Nodes wanted so far (status `targetSize`, raised by earlier rounds).
    pub target: i64,
    /// Requested nodes not registered yet that still count.
    pub upcoming: i64,
    /// Why the pool cannot grow, if it cannot.
    pub skip: Option<String>,
}

/// Per-pool state at `now`: upcoming nodes (unless past `--max-node-provision-time`),
/// backoff. Also returns the pools whose upcoming nodes timed out, with how many.
pub fn pool_states(
    snapshot: &Snapshot,
    settings: &Settings,
    now: Timestamp,
) -> (Vec<PoolState>, Vec<(usize, i64)>) {
    let mut timed_out = Vec::new();
    let states = snapshot
        .pools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            let mut upcoming = (pool.target - pool.current).max(0);
            if upcoming > 0
                && let Some(asked) = pool.last_scale_up
                && now.duration_since(asked).as_secs()
                    >= i64::try_from(settings.max_node_provision_time.as_secs()).unwrap_or(i64::MAX)
            {
                timed_out.push((i, upcoming));
                upcoming = 0;
            }
            let skip = if pool.backoff_until.is_some_and(|until| until > now) {
                Some(format!(
                    "Backoff: provisioning failed, no scale-up until {}",
                    pool.backoff_until
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ))
            } else if timed_out.last().is_some_and(|(p, _)| *p == i) {
                Some("Backoff: requested nodes did not register in time".into())
            } else {
                None
            };
            PoolState {
                // Nodes that timed out no longer count towards the target.
                target: pool.current + upcoming,
                upcoming,
                skip,
            }
        })
        .collect();
    (states, timed_out)
}

/// FFD order: cpu/allocatable + memory/allocatable of the reference node, largest first.
fn ffd_score(
    requests: &super::snapshot::Resources,
    allocatable: &super::snapshot::Resources,
) -> f64 {
    let ratio = |r: i64, a: i64| if a > 0 { r as f64 / a as f64 } else { 0.0 };
    ratio(requests.cpu, allocatable.cpu) + ratio(requests.memory, allocatable.memory)
}

/// First fit of `order` over `bins`, skipping for each pod class the bins a pod of that
/// class already failed on (bins only fill up, so they stay failed). Returns each pod's
/// bin index, or `None`. `open` may add a bin when none fits (returns false when it
/// cannot).
fn first_fit(
    snapshot: &Snapshot,
    order: &[usize],
    bins: &mut Vec<Bin>,
    mut open: impl FnMut(&mut Vec<Bin>) -> bool,
    static_ok: &mut dyn FnMut(usize, &Bin) -> bool,
) -> Vec<(usize, Option<usize>)> {
    let pods = &snapshot.pods;
    let mut hint: HashMap<u64, usize> = HashMap::new();
    let mut out = Vec::with_capacity(order.len());
    for &p in order {
        let pod = &pods[p];
        let start = hint.get(&pod.class).copied().unwrap_or(0);
        let mut placed = None;
        let mut i = start;
        while i < bins.len() {
            if static_ok(p, &bins[i]) && bins[i].dynamic_fit(pod, pods).is_ok() {
                placed = Some(i);
                break;
            }
            i += 1;
        }
        if placed.is_none() && open(bins) {
            let last = bins.len() - 1;
            if bins[last].dynamic_fit(pod, pods).is_ok() {
                placed = Some(last);
            }
        }
        match placed {
            Some(b) => {
                bins[b].place(p, pod);
                hint.insert(pod.class, b);
            }
            None => {
                hint.insert(pod.class, bins.len());
            }
        }
        out.push((p, placed));
    }
    out
}

/// Pending pods, largest first (so big pods get the room).
fn pending_largest_first(snapshot: &Snapshot) -> Vec<usize> {
    let pods = &snapshot.pods;
    let mut pending = snapshot.pending();
    pending.sort_by(|a, b| {
        let (ra, rb) = (&pods[*a].requests, &pods[*b].requests);
        (rb.cpu, rb.memory, pods[*a].class, *a).cmp(&(ra.cpu, ra.memory, pods[*b].class, *b))
    });
    pending
}

/// A bin per Ready, schedulable node that is not being deleted, with the node's index.
fn node_bins(snapshot: &Snapshot) -> (Vec<Bin>, Vec<usize>) {
    snapshot
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.ready && !n.unschedulable && !n.deleting)
        .map(|(i, n)| (Bin::of_node(n, &snapshot.pods), i))
        .unzip()
}

/// First fit of `order` onto `bins` under every predicate.
fn fit_onto(
    snapshot: &Snapshot,
    order: &[usize],
    bins: &mut Vec<Bin>,
) -> Vec<(usize, Option<usize>)> {
    let pods = &snapshot.pods;
    let mut shape_cache: HashMap<(u64, usize), bool> = HashMap::new();
    first_fit(snapshot, order, bins, |_| false, &mut |p, bin| {
        // Bins cloned from one template share a shape; nodes each have their own.
        let key = (pods[p].class, std::sync::Arc::as_ptr(&bin.shape) as usize);
        *shape_cache
            .entry(key)
            .or_insert_with(|| static_fit(&pods[p], &bin.shape).is_ok())
    })
}

/// The scheduler, simulated (local mode): each pending pod, largest first, onto the first
/// Ready, schedulable node where it fits. Returns (pod, node) indexes; `None` for a pod
/// that stays pending.
pub fn schedule(snapshot: &Snapshot) -> Vec<(usize, Option<usize>)> {
    let pending = pending_largest_first(snapshot);
    let (mut bins, nodes) = node_bins(snapshot);
    fit_onto(snapshot, &pending, &mut bins)
        .into_iter()
        .map(|(p, b)| (p, b.map(|b| nodes[b])))
        .collect()
}

#[derive(Clone)]
struct ScaleOption {
    pool: usize,
    nodes: i64,
    pods: Vec<usize>,
}

/// Plans the scale-up. `states` and `totals` are updated with the increases.
pub fn plan(
    snapshot: &Snapshot,
    settings: &Settings,
    now: Timestamp,
    states: &mut [PoolState],
    totals: &mut Totals,
) -> ScaleUpPlan {
    let pods = &snapshot.pods;
    let mut out = ScaleUpPlan::default();
    let pending = pending_largest_first(snapshot);
    out.pending_pods = pending.len();
    if pending.is_empty() {
        return out;
    }

    // 1. Existing nodes' free room, then nodes already being provisioned.
    let (mut bins, _) = node_bins(snapshot);
    let existing = bins.len();
    let mut upcoming_pool = Vec::new();
    for (i, state) in states.iter().enumerate() {
        for _ in 0..state.upcoming {
            bins.push(template_bin(&snapshot.pools[i]));
            upcoming_pool.push(i);
        }
    }
    let placed = fit_onto(snapshot, &pending, &mut bins);
    let mut remaining = Vec::new();
    for (p, bin) in placed {
        match bin {
            Some(b) if b < existing => out.fit_existing.push(Placement {
                pod: pods[p].key(),
                node: bins[b].shape.name.clone().unwrap_or_default(),
            }),
            Some(b) => out.fit_existing.push(Placement {
                pod: pods[p].key(),
                node: format!(
                    "upcoming:{}",
                    snapshot.pools[upcoming_pool[b - existing]].name
                ),
            }),
            None => remaining.push(p),
        }
    }
    if remaining.is_empty() {
        return out;
    }

    // 2. Each pool's template node: which pods could ever run there. Pods of one class
    // schedule identically, so this is decided once per (pool, class).
    let templates: Vec<Bin> = snapshot.pools.iter().map(template_bin).collect();
    let mut eligibility: HashMap<(usize, u64), Result<(), Unfit>> = HashMap::new();
    let mut eligible = |pool: usize, p: usize| -> Result<(), Unfit> {
        eligibility
            .entry((pool, pods[p].class))
            .or_insert_with(|| templates[pool].fit(&pods[p], pods))
            .clone()
    };
    // Why a class of pods has no place (predicates, or the pool's cap), per pool.
    let mut class_reasons: HashMap<u64, BTreeMap<String, String>> = HashMap::new();
    // Each pool's option, kept across rounds while its cap and its pods stay the same.
    let mut cached: HashMap<usize, (i64, Vec<u64>, Option<ScaleOption>)> = HashMap::new();

    // 3. Rounds: choose one option per round, until no option schedules anything.
    let mut round = 0;
    loop {
        round += 1;
        let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<u64, usize> = HashMap::new();
        for &p in &remaining {
            let g = *group_of.entry(pods[p].class).or_insert_with(|| {
                groups.push((pods[p].class, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(p);
        }
        let mut options = Vec::new();
        for (i, pool) in snapshot.pools.iter().enumerate() {
            let state = &states[i];
            let skip = state.skip.clone().or_else(|| {
                if state.target >= pool.max_size {
                    return Some(format!(
                        "NodeGroupMaxSizeReached: {} of {}",
                        state.target, pool.max_size
                    ));
                }
                let (room, binding) = totals.room_for(pool, settings);
                (room == 0).then(|| binding.unwrap_or("LimitReached").to_string())
            });
            if let Some(reason) = skip {
                out.skipped_pools.insert(pool.name.clone(), reason);
                continue;
            }
            out.skipped_pools.remove(&pool.name);
            let cap = (pool.max_size - state.target).min(totals.room_for(pool, settings).0);
            if let Some((cached_cap, _, option)) = cached.get(&i)
                && *cached_cap == cap
            {
                if let Some(option) = option {
                    options.push(option.clone());
                }
                continue;
            }
            let mut candidate_groups: Vec<&(u64, Vec<usize>)> = Vec::new();
            for group in &groups {
                match eligible(i, group.1[0]) {
                    Ok(()) => candidate_groups.push(group),
                    Err(why) => {
                        class_reasons
                            .entry(group.0)
                            .or_default()
                            .insert(pool.name.clone(), why.to_string());
                    }
                }
            }
            let classes: Vec<u64> = candidate_groups.iter().map(|g| g.0).collect();
            if candidate_groups.is_empty() {
                cached.insert(i, (cap, classes, None));
                continue;
            }
            candidate_groups.sort_by(|a, b| {
                let (sa, sb) = (
                    ffd_score(&pods[a.1[0]].requests, &pool.allocatable),
                    ffd_score(&pods[b.1[0]].requests, &pool.allocatable),
                );
                sb.total_cmp(&sa).then(a.0.cmp(&b.0))
            });
            let candidates: Vec<usize> = candidate_groups
                .iter()
                .flat_map(|g| g.1.iter().copied())
                .collect();
            let mut bins = Vec::new();
            let template = &templates[i];
            let result = first_fit(
                snapshot,
                &candidates,
                &mut bins,
                |bins| {
                    if (bins.len() as i64) < cap {
                        bins.push(template.clone());
                        true
                    } else {
                        false
                    }
                },
                &mut |_, _| true,
            );
            let mut scheduled = Vec::new();
            let mut last_unplaced = None;
            for (p, bin) in result {
                match bin {
                    Some(_) => scheduled.push(p),
                    None if last_unplaced != Some(pods[p].class) => {
                        last_unplaced = Some(pods[p].class);
                        class_reasons.entry(pods[p].class).or_default().insert(
                            pool.name.clone(),
                            format!(
                                "fits a new node, but only {cap} more node(s) fit under the pool's maxSize ({}) and the cluster limits",
                                pool.max_size
                            ),
                        );
                    }
                    None => {}
                }
            }
            let option = (!scheduled.is_empty()).then_some(ScaleOption {
                pool: i,
                nodes: bins.len() as i64,
                pods: scheduled,
            });
            if let Some(option) = &option {
                options.push(option.clone());
            }
            cached.insert(i, (cap, classes, option));
        }
        if options.is_empty() {
            break;
        }
        let scores: Vec<BTreeMap<String, f64>> =
            options.iter().map(|o| scores(snapshot, o)).collect();
        let chosen = choose(&options, &scores, &settings.expander.0, snapshot, now);
        let option = &options[chosen];
        let mut increases = vec![(option.pool, option.nodes)];
        if settings.balance_similar_node_groups {
            increases = balance(snapshot, settings, states, totals, &options, chosen);
        }
        let option_scores: Vec<OptionScore> = options
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(i, (o, scores))| OptionScore {
                pool: snapshot.pools[o.pool].name.clone(),
                nodes: o.nodes,
                pods: o.pods.len(),
                scores,
                chosen: i == chosen,
            })
            .collect();
        let chain = settings.expander.to_string();
        let chosen_name = snapshot.pools[option.pool].name.clone();
        for (k, (pool, delta)) in increases.into_iter().enumerate() {
            states[pool].target += delta;
            totals.add(&snapshot.pools[pool], delta);
            out.scale_ups.push(ScaleUp {
                round,
                pool: snapshot.pools[pool].name.clone(),
                delta,
                target_size: states[pool].target,
                pods: if k == 0 {
                    option.pods.iter().map(|p| pods[*p].key()).collect()
                } else {
                    Vec::new()
                },
                reason: if k == 0 {
                    format!(
                        "chosen by expanders {chain} among {} option(s)",
                        option_scores.len()
                    )
                } else {
                    format!("balanced with {chosen_name}")
                },
                options: if k == 0 {
                    option_scores.clone()
                } else {
                    Vec::new()
                },
            });
        }
        let done: std::collections::HashSet<usize> = option.pods.iter().copied().collect();
        remaining.retain(|p| !done.contains(p));
        // Options that counted on the pods just placed are planned again.
        let touched: std::collections::HashSet<u64> = done.iter().map(|p| pods[*p].class).collect();
        cached.retain(|_, (_, classes, _)| !classes.iter().any(|c| touched.contains(c)));
        if remaining.is_empty() {
            break;
        }
    }

    for p in remaining {
        let mut per_pool = class_reasons
            .get(&pods[p].class)
            .cloned()
            .unwrap_or_default();
        // Where a pool ended up skipped, that is the reason that holds now, unless the
        // pod could never run there anyway.
        for (i, pool) in snapshot.pools.iter().enumerate() {
            if let Some(why) = out.skipped_pools.get(&pool.name) {
                let reason = match eligible(i, p) {
                    Ok(()) => why.clone(),
                    Err(unfit) => unfit.to_string(),
                };
                per_pool.insert(pool.name.clone(), reason);
            }
        }
        let out_of_room = |r: &String| {
            r.starts_with("fits a new node")
                || r.starts_with("Backoff")
                || r.starts_with("NodeGroupMaxSizeReached")
                || r.ends_with("TotalReached")
        };
        let reason = if snapshot.pools.is_empty() {
            "no NodePools".to_string()
        } else if per_pool.values().any(out_of_room) {
            "pools that could run it are at their maxSize, the cluster limits or in backoff"
                .to_string()
        } else {
            format!(
                "no pool can run it ({} pool(s) checked)",
                snapshot.pools.len()
            )
        };
        out.unschedulable.push(Unschedulable {
            pod: pods[p].key(),
            reason,
            pools: per_pool,
        });
    }
    out.unschedulable.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

fn scores(snapshot: &Snapshot, option: &ScaleOption) -> BTreeMap<String, f64> {
    let pool = &snapshot.pools[option.pool];
    let mut requested = super::snapshot::Resources::default();
    for p in &option.pods {
        requested.add(&snapshot.pods[*p].requests);
    }
    let nodes = option.nodes as f64;
    let idle = |available: i64, used: i64| {
        let available = available as f64 * nodes;
        if available > 0.0 {
            (available - used as f64) / available
        } else {
            0.0
        }
    };
    let mut s = BTreeMap::new();
    s.insert(
        Expander::LeastWaste.name().into(),
        idle(pool.allocatable.cpu, requested.cpu) + idle(pool.allocatable.memory, requested.memory),
    );
    s.insert(Expander::MostPods.name().into(), option.pods.len() as f64);
    s.insert(Expander::LeastNodes.name().into(), nodes);
    if let Some(price) = pool.price {
        s.insert(
            Expander::Price.name().into(),
            price * nodes / option.pods.len() as f64,
        );
    }
    s.insert(Expander::Priority.name().into(), f64::from(pool.priority));
    s
}

/// Applies the chain: each expander keeps its best options; the first left wins (options
/// are in pool-name order).
fn choose(
    options: &[ScaleOption],
    scores: &[BTreeMap<String, f64>],
    chain: &[Expander],
    snapshot: &Snapshot,
    now: Timestamp,
) -> usize {
    let mut alive: Vec<usize> = (0..options.len()).collect();
    for expander in chain {
        if alive.len() <= 1 {
            break;
        }
        let score = |i: usize| -> Option<f64> {
            let key = expander.name();
            let v = scores[i].get(key).copied();
            match expander {
                // Lower is better: negate so that the maximum wins throughout.
                Expander::LeastWaste | Expander::LeastNodes | Expander::Price => v.map(|v| -v),
                Expander::MostPods | Expander::Priority => v,
                Expander::Random => None,
            }
        };
        if *expander == Expander::Random {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            now.as_second().hash(&mut h);
            for i in &alive {
                snapshot.pools[options[*i].pool].name.hash(&mut h);
            }
            let pick = alive[(h.finish() % alive.len() as u64) as usize];
            alive = vec![pick];
            break;
        }
        let best = alive
            .iter()
            .filter_map(|i| score(*i))
            .fold(f64::NEG_INFINITY, f64::max);
        if best == f64::NEG_INFINITY {
            continue; // no option has this score (e.g. no prices): the expander abstains
        }
        alive.retain(|i| score(*i).is_some_and(|s| (s - best).abs() <= 1e-9 * best.abs().max(1.0)));
    }
    alive[0]
}

/// Whether two pools are similar enough to balance: same allocatable (memory within
/// 1.5%), taints and labels, zone and hostname labels aside.
pub fn similar(a: &PoolInfo, b: &PoolInfo) -> bool {
    let strip = |p: &PoolInfo| -> BTreeMap<String, String> {
        p.labels
            .iter()
            .filter(|(k, _)| !ZONE_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (ma, mb) = (a.allocatable.memory as f64, b.allocatable.memory as f64);
    a.allocatable.cpu == b.allocatable.cpu
        && (ma - mb).abs() <= 0.015 * ma.max(mb)
        && a.allocatable.extended == b.allocatable.extended
        && a.allocatable.pods == b.allocatable.pods
        && a.taints == b.taints
        && strip(a) == strip(b)
}

/// Spreads the chosen option's nodes over it and the similar pools that could also take
/// the pods: one node at a time to the smallest pool below its max.
fn balance(
    snapshot: &Snapshot,
    settings: &Settings,
    states: &[PoolState],
    totals: &Totals,
    options: &[ScaleOption],
    chosen: usize,
) -> Vec<(usize, i64)> {
    let base = &snapshot.pools[options[chosen].pool];
    let mut group: Vec<usize> = options
        .iter()
        .map(|o| o.pool)
        .filter(|p| *p == options[chosen].pool || similar(base, &snapshot.pools[*p]))
        .collect();
    group.sort_by_key(|p| (*p != options[chosen].pool, *p));
    let mut added: BTreeMap<usize, i64> = BTreeMap::new();
    let mut totals = *totals;
    for _ in 0..options[chosen].nodes {
        let next = group
            .iter()
            .copied()
            .filter(|p| {
                let pool = &snapshot.pools[*p];
                states[*p].target + added.get(p).copied().unwrap_or(0) < pool.max_size
                    && totals.room_for(pool, settings).0 > 0
            })
            .min_by_key(|p| {
                (
                    states[*p].target + added.get(p).copied().unwrap_or(0),
                    *p != options[chosen].pool,
                    *p,
                )
            });
        let Some(next) = next else { break };
        *added.entry(next).or_default() += 1;
        totals.add(&snapshot.pools[next], 1);
    }
    let mut out: Vec<(usize, i64)> = added.into_iter().collect();
    out.sort_by_key(|(p, _)| (*p != options[chosen].pool, *p));
    if out.first().is_none_or(|(p, _)| *p != options[chosen].pool) {
        // The chosen pool leads the list even when balancing gave it nothing.
        out.insert(0, (options[chosen].pool, 0));
    }
    out
}
