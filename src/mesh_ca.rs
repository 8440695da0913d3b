//! The mesh CA at the edge: where its root is kept (a directory in local mode, a Secret in
//! a cluster), and the task that rotates workload certificates.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use k8s_openapi::{ByteString, api::core::v1::Secret, jiff::Timestamp};
use kube::{Api, api::PostParams};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;
use weir_xds::{
    ca::{self, CA_CERT_FILE, CA_CHAIN_FILE, CA_KEY_FILE, CertificateAuthority},
    cache::SnapshotCache,
    identities::MeshIdentities,
};

use crate::cli::MeshCaArgs;

/// The API calls the xds-server makes for its CA.
pub const API_CALLS: &[crate::ApiCall] = &[("", "secrets", "get"), ("", "secrets", "create")];

/// Checks the trust domain and lifetime flags.
fn check(args: &MeshCaArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        ca::valid_trust_domain(&args.trust_domain),
        "--trust-domain {:?}: not a valid trust domain (lowercase letters, digits, '-', '.', '_')",
        args.trust_domain
    );
    anyhow::ensure!(
        args.workload_cert_lifetime >= Duration::from_secs(2),
        "--workload-cert-lifetime: must be at least 2s"
    );
    Ok(())
}

/// The CA kept in `dir` (generated there on first start).
pub fn from_dir(args: &MeshCaArgs, dir: &Path) -> anyhow::Result<Arc<MeshIdentities>> {
    check(args)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--ca-dir {}: cannot create it", dir.display()))?;
    let ca = ca::load_or_create(dir, &args.trust_domain, Timestamp::now())
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--ca-dir {}", dir.display()))?;
    info!(dir = %dir.display(), trust_domain = %args.trust_domain, "mesh CA loaded");
    Ok(Arc::new(MeshIdentities::new(
        ca,
        args.workload_cert_lifetime,
    )))
}

/// The CA kept in the Secret `namespace/name`: loaded, or generated and created if the
/// Secret does not exist (if another replica created it meanwhile, that one is used).
pub async fn from_secret(
    client: &kube::Client,
    args: &MeshCaArgs,
    secret: &str,
) -> anyhow::Result<Arc<MeshIdentities>> {
    check(args)?;
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

/// How often certificates are checked for rotation: a twentieth of their lifetime,
/// between 1 s and 1 min.
pub fn rotation_check_interval(lifetime: Duration) -> Duration {
    (lifetime / 20).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Re-issues certificates due for rotation and republishes, so that proxies get them
/// over SDS; listeners, clusters and open connections are untouched.
pub fn spawn_rotation(
    identities: Arc<MeshIdentities>,
    cache: Arc<SnapshotCache>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let token = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(rotation_check_interval(identities.lifetime()));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let rotated = identities.rotate();
            if rotated > 0 {
                let generation = cache.republish();
                info!(
                    rotated,
                    generation, "workload certificates rotated; republished"
                );
            }
        }
    });
}
