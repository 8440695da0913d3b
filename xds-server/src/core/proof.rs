//! Who a proxy has proven to be, and whether that covers what it claims.
//!
//! A proof is either a ServiceAccount token (the pod's projected token, audience
//! [`AUDIENCE`], reviewed by the API server's TokenReview or, in local mode, by
//! [`crate::tokens::LocalTokens`]) or a workload certificate the mesh CA issued (presented
//! in the TLS handshake). Either way the identity comes from the proof: a namespace and a
//! ServiceAccount, and for a bound token the pod it was minted for. What the proxy claims
//! in its node id (`sidecar~<pod>.<namespace>`, `gateway~<gateway>.<namespace>`) is then
//! checked against it and the cluster state, never trusted on its own.

use std::{collections::BTreeMap, fmt};

use weir_store::ClusterState;

use crate::{
    ca::SpiffeId,
    gateway_infrastructure::infrastructure_name,
    translate::{ProxyId, Role},
};

/// The audience a proxy's token must be minted for.
pub const AUDIENCE: &str = "weir";
/// How a ServiceAccount's user name starts in a TokenReview.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// The TokenReview `extra` key of a bound token's pod name.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The TokenReview `extra` key of a bound token's pod UID.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// An identity established by a proof.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proven {
    /// The namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The pod a bound token names (none for a certificate or an unbound token).
    pub pod: Option<String>,
}

impl fmt::Display for Proven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ServiceAccount {}/{}",
            self.namespace, self.service_account
        )?;
        if let Some(pod) = &self.pod {
            write!(f, " (pod {pod})")?;
        }
        Ok(())
    }
}

impl Proven {
    /// The identity a workload certificate names.
    pub fn from_certificate(id: &SpiffeId) -> Self {
        Proven {
            namespace: id.namespace.clone(),
            service_account: id.service_account.clone(),
            pod: None,
        }
    }

    /// The SPIFFE id of this identity in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> SpiffeId {
        SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: self.namespace.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

/// Why a proof was not enough, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// No token, no client certificate.
    NoProof,
    /// A token the reviewer does not accept (forged, expired, wrong audience, its pod
    /// gone), or a certificate the CA did not issue.
    InvalidProof,
    /// A valid token, but not a ServiceAccount's.
    NotAServiceAccount,
    /// The claim is in another namespace than the proof.
    OtherNamespace,
    /// A bound token for another pod than the one claimed.
    OtherPod,
    /// The claimed pod or Gateway runs as another ServiceAccount.
    OtherServiceAccount,
    /// The claimed pod or Gateway does not exist.
    Unknown,
}

impl RefusalReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::NoProof => "no_proof",
            RefusalReason::InvalidProof => "invalid_proof",
            RefusalReason::NotAServiceAccount => "not_a_service_account",
            RefusalReason::OtherNamespace => "other_namespace",
            RefusalReason::OtherPod => "other_pod",
            RefusalReason::OtherServiceAccount => "other_service_account",
            RefusalReason::Unknown => "unknown_proxy",
        }
    }

    /// Every reason (metric families are registered for each).
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::NoProof,
        RefusalReason::InvalidProof,
        RefusalReason::NotAServiceAccount,
        RefusalReason::OtherNamespace,
        RefusalReason::OtherPod,
        RefusalReason::OtherServiceAccount,
        RefusalReason::Unknown,
    ];
}

/// A refusal: why, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The kind of refusal.
    pub reason: RefusalReason,
    /// What was wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal for `reason`.
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// The identity a reviewed token establishes: from the user name a TokenReview returns
/// (`system:serviceaccount:<namespace>:<name>`) and, for a bound token, the pod in its
/// `extra`.
pub fn from_review(
    username: &str,
    extra: &BTreeMap<String, Vec<String>>,
) -> Result<Proven, Refusal> {
    let not_sa = || {
        Refusal::new(
            RefusalReason::NotAServiceAccount,
            format!("the token is {username:?}'s, not a ServiceAccount's"),
        )
    };
    let rest = username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .ok_or_else(not_sa)?;
    let (namespace, service_account) = rest.split_once(':').ok_or_else(not_sa)?;
    if namespace.is_empty() || service_account.is_empty() || service_account.contains(':') {
        return Err(not_sa());
    }
    let pod = extra
        .get(POD_NAME_EXTRA)
        .and_then(|names| names.first())
        .filter(|name| !name.is_empty())
        .cloned();
    Ok(Proven {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod,
    })
}

/// The ServiceAccount a Gateway's Envoys run as: the one Weir provisions for it
/// (`<gateway>-<class>`), or, for a Gateway not in the state, none.
pub fn gateway_service_account(
    state: &ClusterState,
    namespace: &str,
    gateway: &str,
) -> Option<String> {
    state
        .gateways
        .get_namespaced(namespace, gateway)
        .map(|g| infrastructure_name(gateway, &g.spec.gateway_class_name))
}

/// Whether `proven` may be served as `claimed`: the same namespace; for a sidecar, a pod
/// that exists, runs as the proven ServiceAccount and, with a bound token, is the token's
/// pod; for a gateway, a Gateway that exists and whose Envoys run as the proven
/// ServiceAccount.
pub fn check_claim(
    state: &ClusterState,
    proven: &Proven,
    claimed: &ProxyId,
) -> Result<(), Refusal> {
    if claimed.namespace != proven.namespace {
        return Err(Refusal::new(
            RefusalReason::OtherNamespace,
            format!("claims {claimed} but proved {proven}"),
        ));
    }
    let expected = match claimed.role {
        Role::Sidecar => {
            if let Some(pod) = &proven.pod
                && *pod != claimed.name
            {
                return Err(Refusal::new(
                    RefusalReason::OtherPod,
                    format!("claims {claimed} but holds the token of pod {pod}"),
                ));
            }
            let pod = state
                .pods
                .get_namespaced(&claimed.namespace, &claimed.name)
                .ok_or_else(|| {
                    Refusal::new(
                        RefusalReason::Unknown,
                        format!(
                            "claims {claimed}, but there is no pod {}/{}",
                            claimed.namespace, claimed.name
                        ),
                    )
                })?;
            crate::translate::mesh::service_account(pod).to_string()
        }
        Role::Gateway => gateway_service_account(state, &claimed.namespace, &claimed.name)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalReason::Unknown,
                    format!(
                        "claims {claimed}, but there is no Gateway {}/{}",
                        claimed.namespace, claimed.name
                    ),
                )
            })?,
    };
    if expected != proven.service_account {
        return Err(Refusal::new(
            RefusalReason::OtherServiceAccount,
            format!(
                "claims {claimed}, which runs as ServiceAccount {expected}, but proved {proven}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_store::DirectoryIndex;

    use super::*;

    fn state() -> ClusterState {
        let mut index = DirectoryIndex::default();
        index.load_file(
            "state.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop}\nspec: {serviceAccountName: web, containers: [{name: web, image: web}]}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: db-0, namespace: shop}\nspec: {containers: [{name: db, image: db}]}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\n\
             spec: {gatewayClassName: weir, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
        );
        index.state().0
    }

    fn bound(pod: &str) -> BTreeMap<String, Vec<String>> {
        [(POD_NAME_EXTRA.to_string(), vec![pod.to_string()])].into()
    }

    #[test]
    fn a_token_proves_its_service_account_and_pod() {
        let proven = from_review("system:serviceaccount:shop:web", &bound("web-0")).unwrap();
        assert_eq!(
            proven,
            Proven {
                namespace: "shop".into(),
                service_account: "web".into(),
                pod: Some("web-0".into()),
            }
        );
        for user in [
            "alice",
            "system:serviceaccount:shop",
            "system:serviceaccount::web",
        ] {
            let refused = from_review(user, &BTreeMap::new()).unwrap_err();
            assert_eq!(refused.reason, RefusalReason::NotAServiceAccount, "{user}");
        }
    }

    #[test]
    fn claims_are_checked_against_the_proof_and_the_state() {
        let state = state();
        let web = from_review("system:serviceaccount:shop:web", &bound("web-0")).unwrap();
        let claim = |id: &str| id.parse::<ProxyId>().unwrap();
        assert_eq!(
            check_claim(&state, &web, &claim("sidecar~web-0.shop")),
            Ok(())
        );
        let refused =
            |proven: &Proven, id: &str| check_claim(&state, proven, &claim(id)).unwrap_err();
        // Another pod with the token of web-0; another namespace; a pod that is not there.
        assert_eq!(
            refused(&web, "sidecar~db-0.shop").reason,
            RefusalReason::OtherPod
        );
        assert_eq!(
            refused(&web, "sidecar~web-0.bank").reason,
            RefusalReason::OtherNamespace
        );
        let unbound = Proven {
            pod: None,
            ..web.clone()
        };
        assert_eq!(
            refused(&unbound, "sidecar~ghost.shop").reason,
            RefusalReason::Unknown
        );
        // A certificate for `web` claiming db-0, which runs as `default`.
        let refusal = refused(&unbound, "sidecar~db-0.shop");
        assert_eq!(refusal.reason, RefusalReason::OtherServiceAccount);
        assert_eq!(
            refusal.message,
            "claims sidecar~db-0.shop, which runs as ServiceAccount default, but proved ServiceAccount shop/web"
        );
        // A gateway's Envoys run as <gateway>-<class>.
        let edge = Proven {
            namespace: "shop".into(),
            service_account: "edge-weir".into(),
            pod: None,
        };
        assert_eq!(
            check_claim(&state, &edge, &claim("gateway~edge.shop")),
            Ok(())
        );
        assert_eq!(
            refused(&web, "gateway~edge.shop").reason,
            RefusalReason::OtherServiceAccount
        );
        assert_eq!(
            refused(&edge, "gateway~other.shop").reason,
            RefusalReason::Unknown
        );
    }
}
