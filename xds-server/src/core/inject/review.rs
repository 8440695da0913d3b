//! The webhook's protocol: an `admission.k8s.io/v1` AdmissionReview in, an AdmissionReview
//! with the response out. Pure, so the servers only move bytes.

use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::Value;

use super::{InjectConfig, Outcome, inject};

/// What happened to one review, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The body was not an AdmissionReview with a request; answered with an error.
    Malformed(String),
    /// Not a pod being created; allowed unchanged.
    Ignored,
    /// Allowed unchanged (the reason, e.g. `opted-out`).
    Skipped(&'static str),
    /// Allowed with the sidecar patch.
    Injected,
    /// Refused (bad annotations), with the message the user sees.
    Refused(String),
}

impl Verdict {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Malformed(_) => "malformed",
            Verdict::Ignored => "ignored",
            Verdict::Skipped(_) => "skipped",
            Verdict::Injected => "injected",
            Verdict::Refused(_) => "refused",
        }
    }
}

/// Answers one AdmissionReview body. Never panics on bad input: a body that is not an
/// AdmissionReview gets a review whose response says why (and the API server applies the
/// webhook's `failurePolicy`).
pub fn review(body: &[u8], config: &InjectConfig) -> (Value, Verdict) {
    let parsed: Result<AdmissionReview<DynamicObject>, _> = serde_json::from_slice(body);
    let request: AdmissionRequest<DynamicObject> = match parsed
        .map_err(|e| format!("not an admission.k8s.io/v1 AdmissionReview: {e}"))
        .and_then(|r| {
            r.try_into()
                .map_err(|_| "the AdmissionReview has no request".to_string())
        }) {
        Ok(request) => request,
        Err(message) => {
            let response = AdmissionResponse::invalid(&message).into_review();
            return (to_value(&response), Verdict::Malformed(message));
        }
    };
    let response = AdmissionResponse::from(&request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    let object = match (&request.operation, is_pod, &request.object) {
        (Operation::Create, true, Some(object)) => object,
        _ => return (to_value(&response.into_review()), Verdict::Ignored),
    };
    let pod = to_value(object);
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let (response, verdict) = match inject(&pod, namespace, config) {
        Ok(Outcome::Skipped(skip)) => (response, Verdict::Skipped(skip.reason())),
        Ok(Outcome::Injected { patch, .. }) => match response.clone().with_patch(patch) {
            Ok(patched) => (patched, Verdict::Injected),
            Err(e) => {
                let message = format!("encoding the patch: {e}");
                (response.deny(&message), Verdict::Refused(message))
            }
        },
        Err(e) => {
            let message = format!("weir sidecar injection: {e}");
            (response.deny(&message), Verdict::Refused(message))
        }
    };
    let mut reply = to_value(&response.into_review());
    base64_patch(&mut reply);
    (reply, verdict)
}

/// The API server reads `response.patch` as Go `[]byte`, which JSON carries as a base64
/// string (as the Kubernetes documentation shows it); kube's type serializes the bytes as
/// a number array, so it is re-encoded here.
fn base64_patch(reply: &mut Value) {
    let patch = &mut reply["response"]["patch"];
    if let Some(items) = patch.as_array() {
        let bytes: Vec<u8> = items
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        *patch = to_value(&k8s_openapi::ByteString(bytes));
    }
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
