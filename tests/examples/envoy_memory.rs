//! What a real Envoy sidecar whose workload calls 5 Services holds, in a mesh of 10
//! Services and in one of 1,000: Envoy's own `server.memory_allocated` after the five
//! calls, and the mesh clusters it holds.
//!
//! ```sh
//! cargo build --release --bin weir
//! WEIR_BIN=target/release/weir cargo run --release -p weir-tests --example envoy_memory -- [--scoping on-demand|egress|none]
//! ```
//!
//! `on-demand` (the default): delta xDS, the sidecar fetches what it calls. `egress`:
//! state of the world, the workload's MeshPolicy lists the five Services. `none`: state of
//! the world, every Service sent (what a mesh without scoping holds).

#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use weir_tests::{
    WeirUp,
    envoy::{Backend, CLIENT_POD, Envoy, request, service_manifest},
    eventually, free_port,
};

const CALLED: usize = 5;

fn mesh(services: usize, backend: &Backend, scoping: &str) -> String {
    let mut yaml = format!("{CLIENT_POD}---\n");
    for i in 0..services {
        yaml.push_str(&service_manifest("shop", &format!("svc-{i}"), backend));
    }
    if scoping == "egress" {
        let hosts: Vec<String> = (0..CALLED).map(|i| format!("shop/svc-{i}")).collect();
        yaml.push_str(&format!(
            "apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: shop}}\nspec: {{mtls: {{mode: Permissive}}, egress: {{hosts: [{}]}}}}\n",
            hosts.join(", ")
        ));
    }
    yaml
}

/// Envoy's allocated bytes and mesh clusters after calling `svc-0` … `svc-4`.
fn measure(services: usize, scoping: &str) -> (u64, usize) {
    let backend = Backend::start("b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(services, &backend, scoping),
    )
    .unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let outbound: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let protocol: &[&str] = if scoping == "on-demand" {
        &["--xds-protocol", "delta"]
    } else {
        &[]
    };
    let envoy = Envoy::client_sidecar(&weir, outbound, protocol);
    for i in 0..CALLED {
        let host = format!("svc-{i}.shop");
        let ok = eventually(Duration::from_secs(30), || {
            let response = request(outbound, "GET", "/", &host, &[]).ok()?;
            (response.status == 200).then_some(())
        });
        assert!(ok.is_some(), "{host} never answered; {}", envoy.log());
    }
    // Let Envoy settle (stats flush, deferred deletes) before reading.
    std::thread::sleep(Duration::from_secs(6));
    let clusters = envoy
        .admin_get("/clusters")
        .lines()
        .filter_map(|l| l.split("::").next())
        .filter(|n| n.starts_with("shop/"))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    (envoy.stat("server.memory_allocated").unwrap(), clusters)
}

fn main() {
    let mut scoping = "on-demand".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--scoping", Some(value)) if ["on-demand", "egress", "none"].contains(&&*value) => {
                scoping = value
            }
            _ => panic!("flags: --scoping on-demand|egress|none"),
        }
    }
    let (small, small_clusters) = measure(10, &scoping);
    let (large, large_clusters) = measure(1000, &scoping);
    println!(
        "scoping {scoping}: mesh of 10 Services: {:.2} MiB allocated, {small_clusters} mesh clusters; \
         mesh of 1,000: {:.2} MiB, {large_clusters} mesh clusters; 1,000 / 10 = {:.3}",
        small as f64 / 1048576.0,
        large as f64 / 1048576.0,
        large as f64 / small as f64
    );
}
