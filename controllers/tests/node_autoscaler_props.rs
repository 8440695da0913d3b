//! Properties of the node autoscaler's planner on generated clusters: never beyond a
//! pool's max or the cluster limits, never below a pool's min; never plans to remove a
//! node that holds a blocking pod; every pending pod is placed or has a reason.

#![allow(clippy::unwrap_used)]

mod node_fixtures;

use std::collections::{BTreeMap, HashSet};

use node_fixtures::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::{
    Settings, plan,
    settings::{Expander, ExpanderChain},
};

#[derive(Clone, Debug)]
struct Gen {
    pools: Vec<(u32, u32, i32, i32, i32, Option<u32>)>, // cpu, mem GiB, min, max, extra target, price
    nodes: Vec<(usize, bool)>,                          // pool, ready
    pods: Vec<(u32, u32, Option<usize>, u8)>,           // cpu milli, mem MiB, node, flavour
    pdb_zero: bool,
    max_nodes_total: i64,
    expander: usize,
    balance: bool,
    recent_scale_up: bool,
}

fn gen_cluster() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec(
            (
                1u32..=8,
                1u32..=32,
                0i32..=2,
                0i32..=6,
                0i32..=2,
                prop::option::of(1u32..=50),
            ),
            1..4,
        ),
        prop::collection::vec((0usize..4, prop::bool::weighted(0.9)), 0..8),
        prop::collection::vec(
            (
                50u32..=4000,
                16u32..=8192,
                prop::option::of(0usize..8),
                0u8..10,
            ),
            0..24,
        ),
        any::<bool>(),
        prop_oneof![Just(0i64), 1i64..12],
        0usize..6,
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(
                pools,
                nodes,
                pods,
                pdb_zero,
                max_nodes_total,
                expander,
                balance,
                recent_scale_up,
            )| Gen {
                pools,
                nodes,
                pods,
                pdb_zero,
                max_nodes_total,
                expander,
                balance,
                recent_scale_up,
            },
        )
}

fn objects(g: &Gen) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (cpu, mem, min, max, extra, price)) in g.pools.iter().enumerate() {
        let max = (*max).max(*min);
        let mut p = pool(
            &format!("p{i}"),
            &cpu.to_string(),
            &format!("{mem}Gi"),
            *min,
            max,
        );
        if let Some(price) = price {
            merge(
                &mut p,
                json!({"spec": {"pricePerHour": f64::from(*price) / 10.0}}),
            );
        }
        let members = g
            .nodes
            .iter()
            .filter(|(n, _)| n % g.pools.len() == i)
            .count() as i32;
        merge(
            &mut p,
            json!({"status": {"targetSize": (members + extra).min(max.max(members)), "lastScaleUpTime": if g.recent_scale_up { "2026-11-22T09:58:00Z" } else { "2026-11-22T08:00:00Z" }}}),
        );
        if i % 2 == 1 {
            merge(
                &mut p,
                json!({"spec": {"template": {"labels": {"tier": "b"}}}}),
            );
        }
        out.push(p);
    }
    let names: Vec<String> = (0..g.nodes.len()).map(|i| format!("n{i}")).collect();
    for (i, (p, ready)) in g.nodes.iter().enumerate() {
        let pool = p % g.pools.len();
        let (cpu, mem, ..) = g.pools[pool];
        let mut n = node(
            &names[i],
            &format!("p{pool}"),
            &cpu.to_string(),
            &format!("{mem}Gi"),
        );
        if pool % 2 == 1 {
            merge(&mut n, json!({"metadata": {"labels": {"tier": "b"}}}));
        }
        if !ready {
            merge(
                &mut n,
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            );
        }
        n = with(
            n,
            json!({"metadata": {"annotations": {"weir.io/unneeded-since": "2026-11-22T09:00:00Z"}}}),
        );
        out.push(n);
    }
    for (i, (cpu, mem, node, flavour)) in g.pods.iter().enumerate() {
        let app = if *flavour < 5 { "web" } else { "db" };
        let mut p = pod(
            &format!("{app}-{i}"),
            &format!("{cpu}m"),
            &format!("{mem}Mi"),
        );
        match flavour {
            5 => merge(&mut p, json!({"metadata": {"ownerReferences": null}})),
            6 => merge(
                &mut p,
                json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}}),
            ),
            7 => merge(
                &mut p,
                json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/data"}}]}}),
            ),
            8 => merge(&mut p, json!({"spec": {"nodeSelector": {"tier": "b"}}})),
            _ => {}
        }
        if let Some(n) = node.filter(|n| *n < names.len()) {
            p = on(p, &names[n]);
        }
        out.push(p);
    }
    out.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": if g.pdb_zero { 0 } else { 100 }, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}
    }));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn plans_stay_within_bounds_and_explain_every_pod(g in gen_cluster()) {
        let objects = objects(&g);
        let snapshot = snapshot(objects);
        let expanders = [Expander::LeastWaste, Expander::MostPods, Expander::LeastNodes, Expander::Price, Expander::Priority, Expander::Random];
        let settings = Settings {
            max_nodes_total: g.max_nodes_total,
            expander: ExpanderChain(vec![expanders[g.expander], Expander::Random]),
            balance_similar_node_groups: g.balance,
            ..Settings::default()
        };
        let plan = plan(&snapshot, &settings, now());

        // Never beyond a pool's max; never below its min.
        let mut targets: BTreeMap<&str, i64> = snapshot.pools.iter().map(|p| (p.name.as_str(), p.target.max(p.current))).collect();
        for up in &plan.scale_up.scale_ups {
            let pool = snapshot.pools.iter().find(|p| p.name == up.pool).unwrap();
            prop_assert!(up.target_size <= pool.max_size, "{} to {} > max {}", up.pool, up.target_size, pool.max_size);
            prop_assert!(up.delta >= 0);
            targets.insert(pool.name.as_str(), up.target_size);
        }
        for r in &plan.scale_down.remove {
            let pool = snapshot.pools.iter().find(|p| p.name == r.pool).unwrap();
            prop_assert!(r.target_size >= pool.min_size, "{} to {} < min {}", r.pool, r.target_size, pool.min_size);
        }
        // Never beyond --max-nodes-total when the cluster started within it.
        let added: i64 = plan.scale_up.scale_ups.iter().map(|u| u.delta).sum();
        let timed_out: i64 = plan.provisioning_timed_out.iter().map(|t| t.missing).sum();
        let upcoming: i64 = snapshot.pools.iter().map(|p| (p.target - p.current).max(0)).sum::<i64>() - timed_out;
        let before = snapshot.nodes.len() as i64 + upcoming;
        if g.max_nodes_total > 0 && before <= g.max_nodes_total {
            prop_assert!(before + added <= g.max_nodes_total, "{before} + {added} > {}", g.max_nodes_total);
        }
        // Never remove a node that holds a blocking pod; removals are unneeded nodes.
        let unneeded: HashSet<&str> = plan.scale_down.unneeded.iter().map(|u| u.node.as_str()).collect();
        for r in &plan.scale_down.remove {
            prop_assert!(unneeded.contains(r.node.as_str()));
            let node = snapshot.nodes.iter().find(|n| n.name == r.node).unwrap();
            for p in &node.pods {
                let pod = &snapshot.pods[*p];
                if pod.daemonset || pod.mirror { continue; }
                let blocking = pod.controller.is_none()
                    || pod.safe_to_evict == Some(false)
                    || !pod.local_volumes.is_empty()
                    || (g.pdb_zero && pod.labels.get("app").map(String::as_str) == Some("web"));
                prop_assert!(!blocking, "removes {} holding {}", r.node, pod.key());
            }
        }
        // Every pending pod is placed or has a reason.
        let mut explained: HashSet<String> = plan.scale_up.fit_existing.iter().map(|p| p.pod.clone()).collect();
        for up in &plan.scale_up.scale_ups {
            explained.extend(up.pods.iter().cloned());
        }
        for u in &plan.scale_up.unschedulable {
            prop_assert!(!u.reason.is_empty());
            prop_assert!(explained.insert(u.pod.clone()), "{} twice", u.pod);
        }
        for p in snapshot.pending() {
            let key = snapshot.pods[p].key();
            prop_assert!(explained.contains(&key), "{key} neither placed nor explained");
        }
        prop_assert_eq!(plan.scale_up.pending_pods, snapshot.pending().len());
    }
}
