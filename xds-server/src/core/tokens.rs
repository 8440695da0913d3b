//! ServiceAccount tokens in local mode, where there is no kubelet and no API server:
//! `weir up` mints for each proxy it knows a token shaped like the kubelet's projected
//! one (a JWT signed with ES256, audience [`AUDIENCE`], short-lived, bound to the pod), and
//! reviews them as a TokenReview would, so that proxies prove who they are in local mode
//! by the same path as in a cluster.
//!
//! The signing key lives in `weir up`'s memory only: tokens die with the process that
//! minted them. The JWT work is jsonwebtoken's; expiry is checked here against the `now`
//! passed in (the core has no clock).

use std::{collections::BTreeMap, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::proof::{AUDIENCE, POD_NAME_EXTRA, POD_UID_EXTRA, Refusal, RefusalReason};

/// The issuer of local tokens.
pub const ISSUER: &str = "weir-local";
/// How long a clock may be off.
const LEEWAY_SECONDS: i64 = 30;

/// Who a token is minted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    /// The namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The pod it is bound to (name, uid), as the kubelet's tokens are.
    pub pod: Option<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims,
}

#[derive(Debug, Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: NamedRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<NamedRef>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedRef {
    name: String,
    #[serde(default)]
    uid: String,
}

/// What a review of a valid token says: the user name and extras, as a TokenReview's
/// status has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewedUser {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    /// The bound pod's name and uid.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Mints and reviews local tokens.
pub struct LocalTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokens").finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(RefusalReason::InvalidProof, message)
}

impl LocalTokens {
    /// A new signing key (P-256).
    pub fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("token signing key: {e}"))?;
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .map_err(|e| format!("token signing key: {e}"))?;
        let decoding = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes())
            .map_err(|e| format!("token verifying key: {e}"))?;
        Ok(LocalTokens { encoding, decoding })
    }

    /// A token for `subject`, valid from `now` for `lifetime`, for `audience`.
    pub fn mint(
        &self,
        subject: &TokenSubject,
        audience: &str,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<String, String> {
        let now = now.as_second();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!(
                "system:serviceaccount:{}:{}",
                subject.namespace, subject.service_account
            ),
            aud: vec![audience.into()],
            iat: now,
            nbf: now,
            exp: now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2),
            kubernetes: KubernetesClaims {
                namespace: subject.namespace.clone(),
                serviceaccount: NamedRef {
                    name: subject.service_account.clone(),
                    uid: String::new(),
                },
                pod: subject.pod.as_ref().map(|(name, uid)| NamedRef {
                    name: name.clone(),
                    uid: uid.clone(),
                }),
            },
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| format!("minting a token: {e}"))
    }

    /// Reviews `token` for [`AUDIENCE`] at `now`: signed by this key, for the audience,
    /// not expired and not before its time; and, when bound to a pod, `pod_exists(namespace,
    /// name, uid)` (a token dies with its pod, as the API server's do).
    pub fn review(
        &self,
        token: &str,
        now: Timestamp,
        pod_exists: impl Fn(&str, &str, &str) -> bool,
    ) -> Result<ReviewedUser, Refusal> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        // Time is checked below against `now`, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                invalid(match e.kind() {
                    ErrorKind::InvalidAudience => {
                        format!("the token is not for audience {AUDIENCE:?}")
                    }
                    ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => {
                        "the token is not signed by this control plane".to_string()
                    }
                    ErrorKind::InvalidIssuer => "the token has another issuer".to_string(),
                    _ => format!("the token is not valid: {e}"),
                })
            })?
            .claims;
        let now = now.as_second();
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(invalid(format!(
                "the token expired {} s ago",
                now - claims.exp
            )));
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(invalid("the token is not valid yet"));
        }
        let expected_sub = format!(
            "system:serviceaccount:{}:{}",
            claims.kubernetes.namespace, claims.kubernetes.serviceaccount.name
        );
        if claims.sub != expected_sub {
            return Err(invalid("the token's subject and ServiceAccount disagree"));
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &claims.kubernetes.pod {
            if !pod_exists(&claims.kubernetes.namespace, &pod.name, &pod.uid) {
                return Err(invalid(format!(
                    "the token's pod {}/{} no longer exists",
                    claims.kubernetes.namespace, pod.name
                )));
            }
            extra.insert(POD_NAME_EXTRA.to_string(), vec![pod.name.clone()]);
            extra.insert(POD_UID_EXTRA.to_string(), vec![pod.uid.clone()]);
        }
        Ok(ReviewedUser {
            username: claims.sub,
            extra,
        })
    }
}

/// The tokens local mode keeps, by the node id of the proxy each is for: one per Pod
/// (bound to it, for its ServiceAccount) and one per Gateway (for the ServiceAccount its
/// Envoys run as, `<gateway>-<class>`), as a kubelet would mount into each.
pub fn wanted_tokens(state: &weir_store::ClusterState) -> BTreeMap<String, TokenSubject> {
    use crate::translate::{ProxyId, Role};
    let mut wanted = BTreeMap::new();
    for (key, pod) in state.pods.iter() {
        let Some(namespace) = key.namespace.clone() else {
            continue;
        };
        let id = ProxyId {
            role: Role::Sidecar,
            name: key.name.clone(),
            namespace: namespace.clone(),
        };
        wanted.insert(
            id.to_string(),
            TokenSubject {
                namespace,
                service_account: crate::translate::mesh::service_account(pod).to_string(),
                pod: Some((
                    key.name.clone(),
                    pod.metadata.uid.clone().unwrap_or_default(),
                )),
            },
        );
    }
    for (key, _) in state.gateways.iter() {
        let Some(namespace) = key.namespace.clone() else {
            continue;
        };
        let Some(service_account) =
            crate::proof::gateway_service_account(state, &namespace, &key.name)
        else {
            continue;
        };
        let id = ProxyId {
            role: Role::Gateway,
            name: key.name.clone(),
            namespace: namespace.clone(),
        };
        wanted.insert(
            id.to_string(),
            TokenSubject {
                namespace,
                service_account,
                pod: None,
            },
        );
    }
    wanted
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;
    use crate::proof::from_review;

    fn now() -> Timestamp {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn web() -> TokenSubject {
        TokenSubject {
            namespace: "shop".into(),
            service_account: "web".into(),
            pod: Some(("web-0".into(), "uid-1".into())),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_minted_token_reviews_as_its_pod_and_service_account() {
        let tokens = LocalTokens::generate().unwrap();
        let token = tokens.mint(&web(), AUDIENCE, HOUR, now()).unwrap();
        let user = tokens.review(&token, now(), |_, _, _| true).unwrap();
        assert_eq!(user.username, "system:serviceaccount:shop:web");
        let proven = from_review(&user.username, &user.extra).unwrap();
        assert_eq!(proven.pod.as_deref(), Some("web-0"));
        assert_eq!(proven.service_account, "web");
    }

    #[test]
    fn every_pod_and_gateway_gets_a_token_for_its_service_account() {
        let state = crate::test_support::state(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, uid: u1}\nspec: {serviceAccountName: web, containers: [{name: web, image: web}]}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\n\
             spec: {gatewayClassName: weir, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
        );
        let wanted = wanted_tokens(&state);
        assert_eq!(
            wanted.keys().collect::<Vec<_>>(),
            ["gateway~edge.shop", "sidecar~web-0.shop"]
        );
        assert_eq!(wanted["sidecar~web-0.shop"], web_with_uid("u1"));
        assert_eq!(wanted["gateway~edge.shop"].service_account, "edge-weir");
        assert_eq!(wanted["gateway~edge.shop"].pod, None);
    }

    fn web_with_uid(uid: &str) -> TokenSubject {
        TokenSubject {
            pod: Some(("web-0".into(), uid.into())),
            ..web()
        }
    }

    #[test]
    fn forged_expired_misaddressed_and_orphaned_tokens_are_refused() {
        let tokens = LocalTokens::generate().unwrap();
        let refused = |token: &str, at: Timestamp| {
            tokens
                .review(token, at, |_, name, _| name == "web-0")
                .unwrap_err()
        };
        // Signed by someone else.
        let stranger = LocalTokens::generate().unwrap();
        let forged = stranger.mint(&web(), AUDIENCE, HOUR, now()).unwrap();
        let refusal = refused(&forged, now());
        assert_eq!(refusal.reason, RefusalReason::InvalidProof);
        assert!(refusal.message.contains("not signed by"), "{refusal}");
        // For another audience.
        let other = tokens.mint(&web(), "kubernetes", HOUR, now()).unwrap();
        assert!(refused(&other, now()).message.contains("audience"));
        // Expired.
        let token = tokens.mint(&web(), AUDIENCE, HOUR, now()).unwrap();
        let later = now() + k8s_openapi::jiff::SignedDuration::from_secs(3600 + 31);
        assert!(refused(&token, later).message.contains("expired"));
        // Its pod is gone.
        let orphan = TokenSubject {
            pod: Some(("web-1".into(), "uid-2".into())),
            ..web()
        };
        let token = tokens.mint(&orphan, AUDIENCE, HOUR, now()).unwrap();
        assert!(refused(&token, now()).message.contains("no longer exists"));
        // Tampered claims (another ServiceAccount), signature kept.
        let token = tokens.mint(&web(), AUDIENCE, HOUR, now()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
            .unwrap()
            .replace("\"web\"", "\"admin\"");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            parts[2]
        );
        assert_eq!(
            refused(&tampered, now()).reason,
            RefusalReason::InvalidProof
        );
        // Not a token at all.
        assert!(refused("not-a-token", now()).message.contains("not valid"));
    }
}
