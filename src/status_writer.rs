//! Writes Gateway API status (GatewayClass, Gateway, HTTPRoute) to the cluster while this
//! replica leads. What to write is pure ([`weir_xds::status_patch`]); this applies it.
//!
//! It recomputes after store changes (coalesced over [`SETTLE`]) and every [`RECHECK`]
//! (proxies' NACKs change conditions without a store change). Writes are JSON merge
//! patches of the status subresource carrying the resourceVersion they were computed
//! from; a 409 means the object changed meanwhile, and the next round uses the new one.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weir_crds::gateway_api::{Gateway, GatewayClass, HTTPRoute};
use weir_store::{ClusterState, Kind};
use weir_xds::{
    registry::ProxyRegistry,
    status::{compute_status, current_rejections},
    status_patch::{StatusPatch, status_patches},
};

/// The API calls the status writer makes.
pub const API_CALLS: &[crate::ApiCall] = &[
    (
        "gateway.networking.k8s.io",
        "gatewayclasses/status",
        "patch",
    ),
    ("gateway.networking.k8s.io", "gateways/status", "patch"),
    ("gateway.networking.k8s.io", "httproutes/status", "patch"),
];

/// How long store changes may keep coming before status is recomputed.
pub const SETTLE: Duration = Duration::from_millis(500);
/// How often status is recomputed without a store change.
pub const RECHECK: Duration = Duration::from_secs(10);

/// The field manager Weir's status writes are recorded under.
pub const FIELD_MANAGER: &str = "weir-xds-server";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: &'static str,
    result: &'static str,
}

/// Counts status writes by kind and result.
#[derive(Clone, Debug, Default)]
pub struct StatusMetrics {
    writes: Family<WriteLabels, Counter>,
}

impl StatusMetrics {
    /// Registers `weir_status_writes_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = StatusMetrics::default();
        registry.register(
            "weir_status_writes",
            "Status writes to Gateway API objects, by kind and result (ok, conflict, error)",
            metrics.writes.clone(),
        );
        metrics
    }
}

/// Runs until `shutdown`, writing while `leading` is true.
pub async fn run(
    client: Client,
    mut state: watch::Receiver<ClusterState>,
    proxies: Arc<ProxyRegistry>,
    mut leading: watch::Receiver<bool>,
    metrics: StatusMetrics,
    shutdown: CancellationToken,
) {
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = state.changed() => {
                if changed.is_err() { return }
                tokio::time::sleep(SETTLE).await;
            }
            changed = leading.changed() => if changed.is_err() { return },
            _ = recheck.tick() => {}
        }
        if !*leading.borrow_and_update() {
            continue;
        }
        let snapshot = state.borrow_and_update().clone();
        let report = compute_status(&snapshot, &current_rejections(&proxies.list()));
        let patches = status_patches(&snapshot, &report, &Time(Timestamp::now()));
        if !patches.is_empty() {
            debug!(count = patches.len(), "writing status");
        }
        for patch in patches {
            if shutdown.is_cancelled() {
                return;
            }
            write(&client, &patch, &metrics).await;
        }
    }
}

async fn write(client: &Client, patch: &StatusPatch, metrics: &StatusMetrics) {
    let name = patch.key.name.as_str();
    let namespace = patch.key.namespace.as_deref().unwrap_or("default");
    let params = PatchParams::apply(FIELD_MANAGER);
    let body = Patch::Merge(&patch.patch);
    let result = match patch.kind {
        Kind::GatewayClass => Api::<GatewayClass>::all(client.clone())
            .patch_status(name, &params, &body)
            .await
            .map(drop),
        Kind::Gateway => Api::<Gateway>::namespaced(client.clone(), namespace)
            .patch_status(name, &params, &body)
            .await
            .map(drop),
        Kind::HTTPRoute => Api::<HTTPRoute>::namespaced(client.clone(), namespace)
            .patch_status(name, &params, &body)
            .await
            .map(drop),
        other => {
            warn!(kind = %other.name(), "no status writer for this kind");
            return;
        }
    };
    let outcome = match &result {
        Ok(()) => {
            info!(kind = %patch.kind.name(), object = %patch.key, "status written");
            "ok"
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            debug!(kind = %patch.kind.name(), object = %patch.key, "status write conflicted; retrying with the newer object");
            "conflict"
        }
        Err(e) => {
            warn!(kind = %patch.kind.name(), object = %patch.key, error = %e, "status write failed");
            "error"
        }
    };
    metrics
        .writes
        .get_or_create(&WriteLabels {
            kind: patch.kind.name(),
            result: outcome,
        })
        .inc();
}
