//! Scale-down, as cluster-autoscaler decides it: underutilized nodes whose pods can all be
//! drained and moved elsewhere are unneeded; after `--scale-down-unneeded-time` they go,
//! empty ones in bulk and the others one drain at a time, never below a pool's minimum.

use std::collections::{HashMap, HashSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{
    Settings,
    plan::{Placement, Removal, ScaleDownPlan, Unneeded, Unremovable, Utilization},
    predicates::Bin,
    scale_up::{PoolState, Totals},
    snapshot::{PdbInfo, PodInfo, Snapshot},
};

const GIB: i64 = 1 << 30;
const KUBE_SYSTEM: &str = "kube-system";

/// Why a pod cannot be drained, in CA's order and with CA's names; `None` when it can.
pub fn drain_block(
    pod: &PodInfo,
    pdbs: &[PdbInfo],
    remaining: &[i32],
    settings: &Settings,
    now: Timestamp,
) -> Option<&'static str> {
    if pod.safe_to_evict != Some(true) {
        if pod.controller.is_none() {
            return Some("NotReplicated");
        }
        if settings.skip_nodes_with_system_pods
            && pod.namespace == KUBE_SYSTEM
            && !pdbs.iter().any(|b| b.covers(pod))
            && pod
                .created
                .is_none_or(|t| now.duration_since(t) < SignedDuration::from_hours(1))
        {
            return Some("UnmovableKubeSystemPod");
        }
        if pod.safe_to_evict == Some(false) {
            return Some("NotSafeToEvictAnnotation");
        }
        if settings.skip_nodes_with_local_storage && !pod.local_volumes.is_empty() {
            return Some("LocalStorageRequested");
        }
    }
    if pdbs
        .iter()
        .zip(remaining)
        .any(|(b, left)| *left < 1 && b.covers(pod))
    {
        return Some("NotEnoughPdb");
    }
    None
}

fn ratio(used: i64, total: i64) -> f64 {
    if total > 0 {
        used as f64 / total as f64
    } else {
        0.0
    }
}

fn movable(pod: &PodInfo) -> bool {
    !pod.daemonset && !pod.mirror
}

struct Candidate {
    node: usize,
    empty: bool,
    max: f64,
}

/// Plans the scale-down. `scaled_up`: this pass plans a scale-up (no removal then).
pub fn plan(
    snapshot: &Snapshot,
    settings: &Settings,
    now: Timestamp,
    states: &[PoolState],
    totals: &Totals,
    scaled_up: bool,
) -> ScaleDownPlan {
    let pods = &snapshot.pods;
    let mut out = ScaleDownPlan::default();
    let mut candidates = Vec::new();
    for (i, node) in snapshot.nodes.iter().enumerate() {
        let cpu = ratio(node.requested.cpu, node.allocatable.cpu);
        let memory = ratio(node.requested.memory, node.allocatable.memory);
        let max = cpu.max(memory);
        out.utilization
            .insert(node.name.clone(), Utilization { cpu, memory, max });
        let reason = if node.pool.is_none() {
            Some(("NotAutoscaled", None))
        } else if node.deleting {
            Some(("CurrentlyBeingDeleted", None))
        } else if node.scale_down_disabled {
            Some(("ScaleDownDisabledAnnotation", None))
        } else if node.ready && max > settings.scale_down_utilization_threshold {
            Some((
                "NotUnderutilized",
                Some(format!(
                    "utilization {max:.3} > --scale-down-utilization-threshold {}",
                    settings.scale_down_utilization_threshold
                )),
            ))
        } else {
            None
        };
        match reason {
            Some((reason, detail)) => out.unremovable.push(Unremovable {
                node: node.name.clone(),
                reason: reason.into(),
                detail,
            }),
            None => candidates.push(Candidate {
                node: i,
                empty: node.pods.iter().all(|p| !movable(&pods[*p])),
                max,
            }),
        }
    }
    // Empty nodes first, then the least utilized.
    candidates.sort_by(|a, b| {
        (!a.empty, a.max)
            .partial_cmp(&(!b.empty, b.max))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.node.cmp(&b.node))
    });

    // Destinations: every Ready, schedulable node.
    let mut bins: Vec<Bin> = Vec::new();
    let mut bin_of: HashMap<usize, usize> = HashMap::new();
    for (i, node) in snapshot.nodes.iter().enumerate() {
        if node.ready && !node.unschedulable && !node.deleting {
            bin_of.insert(i, bins.len());
            bins.push(Bin::of_node(node, pods));
        }
    }
    let mut removed: HashSet<usize> = HashSet::new();
    let mut remaining: Vec<i32> = snapshot
        .pdbs
        .iter()
        .map(|b| b.disruptions_allowed)
        .collect();
    let mut hint: HashMap<u64, usize> = HashMap::new();
    let mut unneeded: Vec<(usize, bool, Vec<usize>)> = Vec::new();
    for candidate in &candidates {
        let node = &snapshot.nodes[candidate.node];
        let own = bin_of.get(&candidate.node).copied();
        let on_node: Vec<usize> = match own {
            Some(b) => bins[b].pods.clone(),
            None => node.pods.clone(),
        };
        let mut to_move: Vec<usize> = on_node.into_iter().filter(|p| movable(&pods[*p])).collect();
        if let Some((reason, pod)) = to_move.iter().find_map(|p| {
            drain_block(&pods[*p], &snapshot.pdbs, &remaining, settings, now).map(|r| (r, p))
        }) {
            out.unremovable.push(Unremovable {
                node: node.name.clone(),
                reason: format!("BlockedByPod:{reason}"),
                detail: Some(pods[*pod].key()),
            });
            continue;
        }
        to_move.sort_by(|a, b| {
            let (ra, rb) = (&pods[*a].requests, &pods[*b].requests);
            (rb.cpu, rb.memory, *a).cmp(&(ra.cpu, ra.memory, *b))
        });
        let mut moves: Vec<(usize, usize)> = Vec::new();
        let mut stuck = None;
        for &p in &to_move {
            let pod = &pods[p];
            let start = hint.get(&pod.class).copied().unwrap_or(0);
            let found = (start..bins.len()).find(|b| {
                Some(*b) != own && !removed.contains(b) && bins[*b].fit(pod, pods).is_ok()
            });
            match found {
                Some(b) => {
                    bins[b].place(p, pod);
                    hint.insert(pod.class, b);
                    moves.push((p, b));
                }
                None => {
                    stuck = Some(p);
                    break;
                }
            }
        }
        if let Some(p) = stuck {
            for (p, b) in moves.into_iter().rev() {
                bins[b].unplace(p, &pods[p]);
            }
            // Bins emptied again: the first-fit hints no longer hold.
            hint.clear();
            out.unremovable.push(Unremovable {
                node: node.name.clone(),
                reason: "NoPlaceToMovePods".into(),
                detail: Some(pods[p].key()),
            });
            continue;
        }
        if let Some(b) = own {
            removed.insert(b);
        }
        for p in &to_move {
            for (b, left) in snapshot.pdbs.iter().zip(remaining.iter_mut()) {
                if b.covers(&pods[*p]) {
                    *left -= 1;
                }
            }
        }
        let moves_out: Vec<usize> = moves.iter().map(|(_, b)| *b).collect();
        unneeded.push((candidate.node, candidate.empty, moves_out));
        let since = node.unneeded_since.unwrap_or(now);
        let wait = if node.ready {
            settings.scale_down_unneeded_time
        } else {
            settings.scale_down_unready_time
        };
        let removable_at = since + SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
        out.unneeded.push(Unneeded {
            node: node.name.clone(),
            pool: node
                .pool
                .map(|p| snapshot.pools[p].name.clone())
                .unwrap_or_default(),
            empty: candidate.empty,
            since: since.to_string(),
            removable_at: removable_at.to_string(),
            moves: moves
                .iter()
                .map(|(p, b)| Placement {
                    pod: pods[*p].key(),
                    node: bins[*b].shape.name.clone().unwrap_or_default(),
                })
                .collect(),
        });
    }

    // What goes now.
    let last_scale_up = snapshot.pools.iter().filter_map(|p| p.last_scale_up).max();
    let cooldown = SignedDuration::try_from(settings.scale_down_delay_after_add)
        .unwrap_or(SignedDuration::MAX);
    out.blocked = if !settings.scale_down_enabled {
        Some("ScaleDownDisabled: --scale-down-enabled=false".into())
    } else if scaled_up {
        Some("ScaleUpInProgress: this pass adds nodes".into())
    } else {
        last_scale_up.filter(|t| now < *t + cooldown).map(|t| {
            format!(
                "ScaleDownInCooldown: until {} (--scale-down-delay-after-add after the scale-up at {t})",
                t + cooldown
            )
        })
    };
    if out.blocked.is_some() {
        return out;
    }
    let mut sizes: Vec<i64> = states.iter().map(|s| s.target).collect();
    let (mut cpu, mut memory) = (totals.cpu, totals.memory);
    let (mut empty_count, mut drain_count) = (0usize, 0usize);
    for (entry, (node, empty, _)) in out.unneeded.iter().zip(&unneeded) {
        let info = &snapshot.nodes[*node];
        let Some(pool) = info.pool else { continue };
        if entry
            .removable_at
            .parse::<Timestamp>()
            .is_ok_and(|at| now < at)
        {
            continue;
        }
        let limit_reached = if *empty {
            empty_count
                >= settings
                    .max_empty_bulk_delete
                    .min(settings.max_scale_down_parallelism)
        } else {
            drain_count >= settings.max_drain_parallelism
        };
        if limit_reached || empty_count + drain_count >= settings.max_scale_down_parallelism {
            continue;
        }
        let pool_info = &snapshot.pools[pool];
        if sizes[pool] - 1 < pool_info.min_size {
            out.unremovable.push(Unremovable {
                node: info.name.clone(),
                reason: "NodeGroupMinSizeReached".into(),
                detail: Some(format!(
                    "{} has {} node(s), minSize {}",
                    pool_info.name, sizes[pool], pool_info.min_size
                )),
            });
            continue;
        }
        if cpu - info.allocatable.cpu < settings.cores_total.min.saturating_mul(1000)
            || memory - info.allocatable.memory < settings.memory_total.min.saturating_mul(GIB)
        {
            out.unremovable.push(Unremovable {
                node: info.name.clone(),
                reason: "MinimalResourceLimitExceeded".into(),
                detail: Some("--cores-total or --memory-total minimum".into()),
            });
            continue;
        }
        sizes[pool] -= 1;
        cpu -= info.allocatable.cpu;
        memory -= info.allocatable.memory;
        if *empty {
            empty_count += 1;
        } else {
            drain_count += 1;
        }
        out.remove.push(Removal {
            node: info.name.clone(),
            pool: pool_info.name.clone(),
            empty: *empty,
            target_size: sizes[pool],
            evict: entry.moves.iter().map(|m| m.pod.clone()).collect(),
        });
    }
    out
}
