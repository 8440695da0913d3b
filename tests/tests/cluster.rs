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
