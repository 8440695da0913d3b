//! The sidecar injection webhook's server: `POST /inject` answers AdmissionReviews over
//! TLS with the pure injector ([`crate::inject::review`]). The serving certificate comes
//! from files (cert-manager; reloaded when they change) or from the mesh CA (issued for
//! `--webhook-names`, renewed at half-life); handshakes always see the current one.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router, body::Bytes, extract::State, http::header, response::IntoResponse, routing::post,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_runtime::tls::{CertificateSlot, read_pem_files};

use crate::{
    args::WebhookArgs,
    identities::MeshIdentities,
    inject::{
        InjectConfig,
        review::{Verdict, review},
    },
};

/// Lifetime of a CA-issued webhook certificate (renewed at half).
const CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// How often the certificate files or the renewal time are checked.
const CERT_CHECK: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// The webhook's metrics.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    reviews: Family<VerdictLabels, Counter>,
}

impl WebhookMetrics {
    /// Registers `weir_injection_reviews_total{verdict}`.
    pub fn register(registry: &mut Registry) -> Self {
        let reviews = Family::default();
        registry.register(
            "weir_injection_reviews",
            "AdmissionReviews answered by the sidecar injector, by verdict (injected, skipped, refused, ignored, malformed)",
            reviews.clone(),
        );
        WebhookMetrics { reviews }
    }
}

#[derive(Clone)]
struct Webhook {
    config: Arc<InjectConfig>,
    metrics: WebhookMetrics,
}

async fn inject(State(webhook): State<Webhook>, body: Bytes) -> impl IntoResponse {
    let (reply, verdict) = review(&body, &webhook.config);
    webhook
        .metrics
        .reviews
        .get_or_create(&VerdictLabels {
            verdict: verdict.label(),
        })
        .inc();
    let uid = reply["response"]["uid"].as_str().unwrap_or_default();
    match &verdict {
        Verdict::Injected => info!(uid, "sidecar injected"),
        Verdict::Skipped(reason) => info!(uid, reason, "injection skipped"),
        Verdict::Refused(message) => warn!(uid, %message, "pod refused"),
        Verdict::Malformed(message) => warn!(%message, "malformed AdmissionReview"),
        Verdict::Ignored => {}
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
}

/// The webhook's routes.
pub fn router(config: InjectConfig, metrics: WebhookMetrics) -> Router {
    Router::new()
        .route("/inject", post(inject))
        .with_state(Webhook {
            config: Arc::new(config),
            metrics,
        })
}

/// Starts the webhook when `--webhook-addr` is set; returns the address it serves on.
pub async fn start_webhook(
    args: &WebhookArgs,
    config: InjectConfig,
    identities: Arc<MeshIdentities>,
    registry: &mut Registry,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = args.webhook_addr else {
        return Ok(None);
    };
    let slot = match (&args.webhook_cert_file, &args.webhook_key_file) {
        (Some(cert), Some(key)) => {
            let slot = CertificateSlot::new(
                read_pem_files(cert, key)
                    .map_err(anyhow::Error::msg)
                    .context("--webhook-cert-file / --webhook-key-file")?,
            );
            tasks.spawn(slot.clone().reload_from_files(
                cert.clone(),
                key.clone(),
                CERT_CHECK,
                shutdown.clone(),
            ));
            slot
        }
        _ => crate::secure::ca_serving_certificate(
            identities,
            args.webhook_names.clone(),
            CERT_LIFETIME,
            "webhook",
            tasks,
            shutdown,
        )?,
    };
    let tls = slot.server_config(None).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --webhook-addr {addr}"))?;
    let local = listener.local_addr()?;
    let app = router(config, WebhookMetrics::register(registry));
    tasks.spawn(weir_runtime::tls::serve_router(
        listener,
        tls,
        app,
        shutdown.clone(),
    ));
    info!(addr = %local, "sidecar injection webhook listening (POST /inject)");
    Ok(Some(local))
}
