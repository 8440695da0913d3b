//! Planner latency on generated clusters (docs/benchmarks.md):
//!
//! - scale-up: 10,000 pending pods from 50 workloads, 100 NodePools of varied shapes
//!   (some with GPUs, taints or zone labels), 200 full nodes;
//! - scale-down: 5,000 nodes × 30 pods in 10 pools, a third of the nodes lightly used.
//!
//! Prints, per scenario, the snapshot build time and the planning time (median and max
//! over `--runs`). Run it pinned to one core: `taskset -c 0 ./node_planner_bench`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::core::v1::{Node, Pod},
    jiff::Timestamp,
};
use serde_json::{Value, json};
use weir_controllers::node_autoscaler::{
    Objects, Settings, Snapshot, plan, settings::ExpanderChain,
};
use weir_crds::NodePool;

fn pool(
    name: &str,
    cpu: u32,
    mem_gi: u32,
    gpu: u32,
    tainted: bool,
    zone: &str,
    max: i32,
) -> NodePool {
    let mut capacity = json!({"cpu": cpu.to_string(), "memory": format!("{mem_gi}Gi")});
    if gpu > 0 {
        capacity["nvidia.com/gpu"] = json!(gpu.to_string());
    }
    let taints = if tainted {
        json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "apiVersion": "weir.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"capacity": capacity, "labels": {"topology.kubernetes.io/zone": zone}, "taints": taints},
            "minSize": 0, "maxSize": max, "pricePerHour": f64::from(cpu) * 0.04 + f64::from(gpu),
            "provider": {"simulated": {}}
        }
    }))
    .unwrap()
}

fn node(name: &str, pool: &str, cpu: u32, mem_gi: u32, zone: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"weir.io/node-pool": pool, "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
        "status": {"allocatable": {"cpu": cpu.to_string(), "memory": format!("{mem_gi}Gi"), "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

fn pod(
    ns: &str,
    name: &str,
    app: &str,
    cpu_m: u32,
    mem_mi: u32,
    node: Option<&str>,
    extra: Value,
) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": app, "controller": true}]},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": format!("{cpu_m}m"), "memory": format!("{mem_mi}Mi")}}}]},
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }}
    });
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    if let Value::Object(extra) = extra {
        for (k, val) in extra {
            if let Value::Object(fields) = val {
                for (f, x) in fields {
                    v[&k][&f] = x;
                }
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

struct Cluster {
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pools: Vec<NodePool>,
}

impl Cluster {
    fn objects(&self) -> Objects<'_> {
        Objects {
            nodes: self.nodes.iter().collect(),
            pods: self.pods.iter().collect(),
            pdbs: Vec::new(),
            daemonsets: Vec::new(),
            pools: self.pools.iter().collect(),
        }
    }
}

const ZONES: [&str; 3] = ["eu-1a", "eu-1b", "eu-1c"];

fn scale_up_cluster() -> Cluster {
    let mut pools = Vec::new();
    for i in 0..100u32 {
        let cpu = [2, 4, 8, 16, 32, 64][(i % 6) as usize];
        let mem = cpu * [2, 4, 8][(i % 3) as usize];
        let gpu = if i % 10 == 9 { 4 } else { 0 };
        pools.push(pool(
            &format!("pool-{i:03}"),
            cpu,
            mem,
            gpu,
            i % 7 == 6,
            ZONES[(i % 3) as usize],
            200,
        ));
    }
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for n in 0..200u32 {
        let name = format!("node-{n:04}");
        nodes.push(node(&name, "pool-001", 4, 16, ZONES[(n % 3) as usize]));
        pods.push(pod(
            "base",
            &format!("base-{n}"),
            "base",
            3900,
            15000,
            Some(&name),
            json!({}),
        ));
    }
    for w in 0..50u32 {
        let cpu = [100, 250, 500, 1000, 2000, 3500][(w % 6) as usize];
        let mem = [128, 512, 1024, 2048, 4096, 8192][((w / 6) % 6) as usize];
        let extra = match w % 10 {
            // A GPU workload that tolerates nothing else.
            3 => {
                json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"}}}]}})
            }
            5 => json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "eu-1b"}}}),
            7 => {
                json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]}})
            }
            _ => json!({}),
        };
        for r in 0..200u32 {
            pods.push(pod(
                "apps",
                &format!("w{w}-{r}"),
                &format!("w{w}"),
                cpu,
                mem,
                None,
                extra.clone(),
            ));
        }
    }
    Cluster { nodes, pods, pools }
}

fn scale_down_cluster() -> Cluster {
    let mut pools = Vec::new();
    for i in 0..10u32 {
        pools.push(pool(
            &format!("pool-{i:02}"),
            16,
            64,
            0,
            false,
            ZONES[(i % 3) as usize],
            1000,
        ));
    }
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for n in 0..5000u32 {
        let p = n % 10;
        let name = format!("node-{n:04}");
        nodes.push(node(
            &name,
            &format!("pool-{p:02}"),
            16,
            64,
            ZONES[(p % 3) as usize],
        ));
        // Two thirds busy (30 × 400m = 12 cpu, 75%); a third light (30 × 150m = 4.5 cpu).
        let light = n % 3 == 0;
        for k in 0..30u32 {
            let app = format!("app{}", k % 12);
            let (cpu, mem) = if light { (150, 512) } else { (400, 1024) };
            pods.push(pod(
                "apps",
                &format!("{name}-{k}"),
                &app,
                cpu,
                mem,
                Some(&name),
                json!({}),
            ));
        }
    }
    Cluster { nodes, pods, pools }
}

fn measure(label: &str, cluster: &Cluster, settings: &Settings, runs: usize) {
    let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    let mut builds = Vec::new();
    let mut plans = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let snapshot = Snapshot::build(&cluster.objects());
        builds.push(t.elapsed());
        let t = Instant::now();
        let plan = plan(&snapshot, settings, now);
        plans.push(t.elapsed());
        last = Some(plan);
    }
    let plan = last.unwrap();
    let stat = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (b50, bmax) = stat(&mut builds);
    let (p50, pmax) = stat(&mut plans);
    let added: i64 = plan.scale_up.scale_ups.iter().map(|u| u.delta).sum();
    println!(
        "{label}: nodes={} pods={} pools={} | build p50 {:.0} ms max {:.0} ms | plan p50 {:.0} ms max {:.0} ms | pending={} fit-existing={} scale-ups={} (+{added} nodes) unschedulable={} unneeded={} unremovable={} remove={}",
        cluster.nodes.len(),
        cluster.pods.len(),
        cluster.pools.len(),
        b50.as_secs_f64() * 1e3,
        bmax.as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        pmax.as_secs_f64() * 1e3,
        plan.scale_up.pending_pods,
        plan.scale_up.fit_existing.len(),
        plan.scale_up.scale_ups.len(),
        plan.scale_up.unschedulable.len(),
        plan.scale_down.unneeded.len(),
        plan.scale_down.unremovable.len(),
        plan.scale_down.remove.len(),
    );
}

fn main() {
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs);
        }
    }
    let settings = Settings {
        expander: "least-waste,price".parse::<ExpanderChain>().unwrap(),
        ..Settings::default()
    };
    measure("scale-up", &scale_up_cluster(), &settings, runs);
    measure("scale-down", &scale_down_cluster(), &settings, runs);
}
