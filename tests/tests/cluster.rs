//! The cluster source against a real API server. Run where KUBECONFIG points at a cluster
//! (kind, k3d): `cargo test -p weir-tests --test cluster -- --ignored`.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_store::{Kind, ObjectKey, StateWriter};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cluster"]
async fn reflectors_fill_the_stores_from_the_cluster() {
    let client = kube::Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG");
    let writer = Arc::new(StateWriter::default());
    let (synced_tx, mut synced) = watch::channel(BTreeSet::new());
    let shutdown = CancellationToken::new();
    let mut tasks =
        weir::sources::kube::spawn_reflectors(client, writer.clone(), synced_tx, shutdown.clone());
    tokio::time::timeout(
        Duration::from_secs(60),
        synced.wait_for(|kinds| kinds.contains(&Kind::Namespace) && kinds.contains(&Kind::Service)),
    )
    .await
    .expect("Namespaces and Services list within a minute")
    .expect("the reflectors are running");
    let state = writer.current();
    assert!(
        state
            .namespaces
            .get(&ObjectKey::cluster("kube-system"))
            .is_some()
    );
    assert!(
        state
            .services
            .get_namespaced("default", "kubernetes")
            .is_some()
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

#[test]
#[ignore = "needs cluster"]
fn xds_server_mirrors_the_cluster_into_its_stores() {
    use weir_tests::{eventually, free_port, http_get, weir};
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let xds = format!("127.0.0.1:{}", free_port());
    let mut child = weir()
        .args([
            "xds-server",
            "--admin-addr",
            &admin.to_string(),
            "--xds-addr",
            &xds,
        ])
        .spawn()
        .expect("weir xds-server starts");
    let namespaces = eventually(Duration::from_secs(60), || {
        let (status, body) = http_get(admin, "/debug/objects").ok()?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        let count = value["objects"]["Namespace"].as_u64()?;
        (status == 200 && count > 0).then_some(count)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        namespaces.is_some(),
        "the cluster's Namespaces never reached the stores"
    );
}
