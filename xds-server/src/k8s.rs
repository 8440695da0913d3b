//! The xds-server in a cluster: what it watches ([`KINDS`]), every API call it makes
//! ([`API_CALLS`], checked against the chart's RBAC), the Gateway API status it writes
//! while leading ([`write_gateway_status`]), and the mesh CA kept in a Secret
//! ([`ca_from_secret`]).
//!
//! Gateway API status: what to write is pure ([`crate::status_patch`]); this applies it.
//! It recomputes after store changes (coalesced over [`SETTLE`]) and every [`RECHECK`]
//! (proxies' NACKs change conditions without a store change). Writes are JSON merge
//! patches of the status subresource carrying the resourceVersion they were computed
//! from; a 409 means the object changed meanwhile, and the next round uses the new one.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
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
use weir_runtime::{ApiCall, leader::Leadership};
use weir_store::{ClusterState, Kind};

use crate::{
    args::MeshCaArgs,
    ca::{CA_CERT_FILE, CA_CHAIN_FILE, CA_KEY_FILE, CertificateAuthority},
    identities::MeshIdentities,
    registry::ProxyRegistry,
    status::{compute_status, current_rejections},
    status_patch::{StatusPatch, status_patches},
};

/// What the xds-server translates: policies, Services and their endpoints, pods (sidecar
/// identities), Secrets (Gateway certificates) and the Gateway API; and, for the Gateways
/// it runs, their GatewayParameters and Deployments (whether their Envoys are available).
pub const KINDS: &[Kind] = &[
    Kind::TrafficPolicy,
    Kind::MeshPolicy,
    Kind::Namespace,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Pod,
    Kind::Secret,
    Kind::Gateway,
    Kind::HTTPRoute,
    Kind::GatewayClass,
    Kind::ReferenceGrant,
    Kind::GatewayParameters,
    Kind::Deployment,
];

/// The Lease the xds-server elects its status writer on (unless `--leader-election-id`).
pub const LEASE_NAME: &str = "weir-xds-server";

/// The API calls the xds-server makes for its CA.
pub const CA_API_CALLS: &[ApiCall] = &[("", "secrets", "get"), ("", "secrets", "create")];

/// The API calls that keep the injection webhook's `caBundle` current (on the one
/// MutatingWebhookConfiguration named by `--webhook-config-name`; the chart grants them for
/// that name only).
pub const WEBHOOK_API_CALLS: &[ApiCall] = &[
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "get",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "patch",
    ),
];

/// How often the webhook configuration's `caBundle` is checked.
const CA_BUNDLE_RECHECK: Duration = Duration::from_secs(30);

/// While leading, keeps every webhook of the MutatingWebhookConfiguration `name` trusting
/// `bundle_pem` (the mesh CA's root, which issued the webhook's serving certificate), as
/// istiod does: checked at start and every 30 s, patched only when stale. A missing
/// configuration (not installed yet) is logged and retried.
pub async fn keep_ca_bundle(
    client: Client,
    name: String,
    bundle_pem: String,
    mut leading: Leadership,
    shutdown: CancellationToken,
) {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut tick = tokio::time::interval(CA_BUNDLE_RECHECK);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            changed = leading.changed() => if !changed { return },
        }
        if !leading.is_leading() {
            continue;
        }
        let current = match api.get_opt(&name).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                warn!(%name, "MutatingWebhookConfiguration not found; the injection webhook's caBundle cannot be set yet");
                continue;
            }
            Err(e) => {
                warn!(%name, error = %e, "reading the MutatingWebhookConfiguration failed");
                continue;
            }
        };
        let Ok(value) = serde_json::to_value(&current) else {
            continue;
        };
        let Some(patch) = crate::inject::ca_bundle_patch(&value, &bundle_pem) else {
            continue;
        };
        match api
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => info!(%name, "injection webhook caBundle set to the mesh CA's root"),
            Err(e) => warn!(%name, error = %e, "patching the webhook caBundle failed; retrying"),
        }
    }
}

/// The API calls the status writer makes.
pub const API_CALLS: &[ApiCall] = &[
    (
        "gateway.networking.k8s.io",
        "gatewayclasses/status",
        "patch",
    ),
    ("gateway.networking.k8s.io", "gateways/status", "patch"),
    ("gateway.networking.k8s.io", "httproutes/status", "patch"),
    ("weir.io", "gatewayparameters/status", "patch"),
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

/// Writes Gateway API status until `shutdown`, while this replica leads.
pub async fn write_gateway_status(
    client: Client,
    mut state: watch::Receiver<ClusterState>,
    proxies: Arc<ProxyRegistry>,
    mut leading: Leadership,
    metrics: StatusMetrics,
    provisioning: bool,
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
            changed = leading.changed() => if !changed { return },
            _ = recheck.tick() => {}
        }
        if !leading.is_leading() {
            continue;
        }
        let snapshot = state.borrow_and_update().clone();
        let connected = proxies.list();
        let mut report = compute_status(&snapshot, &current_rejections(&connected));
        if provisioning {
            // Weir runs the Gateways: their addresses, and Programmed only once they run.
            crate::gateway_readiness::provisioned_status(
                &mut report,
                &snapshot,
                &crate::gateway_readiness::acked_gateways(&connected),
            );
        }
        let patches = status_patches(&snapshot, &report, &Time(Timestamp::now()));
        if !patches.is_empty() {
            debug!(count = patches.len(), "writing status");
        }
        for patch in patches {
            if shutdown.is_cancelled() {
                return;
            }
            // Abandoned at the end of the term: a follower writes nothing.
            if leading
                .while_leading(write(&client, &patch, &metrics))
                .await
                .is_none()
            {
                break;
            }
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
        Kind::GatewayParameters => {
            Api::<weir_crds::GatewayParameters>::namespaced(client.clone(), namespace)
                .patch_status(name, &params, &body)
                .await
                .map(drop)
        }
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

/// The CA kept in the Secret `namespace/name`: loaded, or generated and created if the
/// Secret does not exist (if another replica created it meanwhile, that one is used).
pub async fn ca_from_secret(
    client: &kube::Client,
    args: &MeshCaArgs,
    secret: &str,
) -> anyhow::Result<Arc<MeshIdentities>> {
    args.check()?;
    let (namespace, name) = secret
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .with_context(|| format!("--ca-secret {secret:?}: expected namespace/name"))?;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let load = |s: &Secret| -> anyhow::Result<CertificateAuthority> {
        let data = s.data.clone().unwrap_or_default();
        let text = |key: &str| -> anyhow::Result<Option<String>> {
            data.get(key)
                .map(|b| String::from_utf8(b.0.clone()))
                .transpose()
                .with_context(|| format!("Secret {secret}: data.{key} is not UTF-8 PEM"))
        };
        let cert = text(CA_CERT_FILE)?
            .with_context(|| format!("Secret {secret}: data.{CA_CERT_FILE} missing"))?;
        let key = text(CA_KEY_FILE)?
            .with_context(|| format!("Secret {secret}: data.{CA_KEY_FILE} missing"))?;
        let chain = text(CA_CHAIN_FILE)?;
        CertificateAuthority::from_pem(&args.trust_domain, &cert, &key, chain.as_deref())
            .map_err(|e| anyhow::anyhow!("Secret {secret}: {e}"))
    };
    let ca = match api
        .get_opt(name)
        .await
        .with_context(|| format!("reading Secret {secret}"))?
    {
        Some(existing) => load(&existing)?,
        None => {
            let ca = CertificateAuthority::generate(&args.trust_domain, Timestamp::now())
                .map_err(anyhow::Error::msg)?;
            let (cert, key) = ca.to_pem();
            let object = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/part-of".to_string(),
                        "weir".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    (
                        CA_CERT_FILE.to_string(),
                        ByteString(cert.as_bytes().to_vec()),
                    ),
                    (CA_KEY_FILE.to_string(), ByteString(key.as_bytes().to_vec())),
                ])),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    info!(secret, "mesh CA generated and stored");
                    ca
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let existing = api
                        .get(name)
                        .await
                        .with_context(|| format!("reading Secret {secret}"))?;
                    load(&existing)?
                }
                Err(e) => return Err(e).with_context(|| format!("creating Secret {secret}")),
            }
        }
    };
    info!(secret, trust_domain = %args.trust_domain, "mesh CA loaded");
    Ok(Arc::new(MeshIdentities::new(
        ca,
        args.workload_cert_lifetime,
    )))
}
