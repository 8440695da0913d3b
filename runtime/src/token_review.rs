//! Who a bearer token belongs to, asked of the API server with a TokenReview: the metrics
//! adapter checks its callers this way, and proxies proving their ServiceAccount will.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

/// The API call a TokenReview is.
pub const API_CALLS: &[crate::ApiCall] = &[("authentication.k8s.io", "tokenreviews", "create")];

/// An authenticated user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID, when known.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (for a bound ServiceAccount token, the pod's name and uid).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Reviews `token`: the user it belongs to, or `None` when the API server does not
/// accept it (or not for one of `audiences`, when given). An error only when the review
/// itself failed; the token is never part of it.
pub async fn review_token(
    client: &kube::Client,
    token: &str,
    audiences: Option<Vec<String>>,
) -> Result<Option<UserInfo>, String> {
    let api: kube::Api<TokenReview> = kube::Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences,
        },
        ..Default::default()
    };
    let result = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .map_err(|e| format!("TokenReview failed: {e}"))?;
    let Some(status) = result.status else {
        return Ok(None);
    };
    if status.authenticated != Some(true) {
        return Ok(None);
    }
    let user = status.user.unwrap_or_default();
    Ok(Some(UserInfo {
        name: user.username.unwrap_or_default(),
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    }))
}
