//! Who is asking, and may they: authentication and authorization as an aggregated API
//! server does them.
//!
//! - Front-proxy client certificates: a certificate signed by the request-header client
//!   CA (with a common name among the allowed names, when any are configured) vouches for
//!   the user named in `X-Remote-User`, groups in `X-Remote-Group`, extras in
//!   `X-Remote-Extra-*`. This is how the API server's aggregation layer calls.
//! - Client certificates signed by the client CA: the common name is the user,
//!   organizations are groups.
//! - Bearer tokens, checked with a TokenReview.
//!
//! Then a SubjectAccessReview decides. Both reviews are cached briefly (10 s, like the
//! API server's delegating authenticator and authorizer). Settings come from flags or,
//! in a cluster, from the `kube-system/extension-apiserver-authentication` ConfigMap.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http::HeaderMap;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::api::ApiError;

pub use weir_runtime::token_review::UserInfo;

/// What a request does, for authorization.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A metrics read: `get` on `<resource>/<metric>` (custom), or `list` on the metric
    /// (external), in the API group of the request.
    Resource {
        /// API group.
        group: String,
        /// Version.
        version: String,
        /// Resource.
        resource: String,
        /// Subresource (the metric, for custom metrics).
        subresource: String,
        /// Namespace.
        namespace: String,
        /// Object name (`*` for all).
        name: String,
        /// `get` or `list`.
        verb: String,
    },
    /// Discovery and OpenAPI documents.
    NonResource {
        /// The path.
        path: String,
    },
}

/// What the client presented at the TLS handshake, once per connection.
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity {
    /// The certificate is a front proxy's (request-header CA, allowed name).
    pub front_proxy: bool,
    /// The user a client-CA certificate names.
    pub certificate_user: Option<UserInfo>,
}

/// TokenReview and SubjectAccessReview, against the Kubernetes API (or a stand-in).
pub trait Reviewer: Send + Sync {
    /// The user a bearer token belongs to; `None` when it is not valid.
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, String>>;
    /// Whether `user` may do `attributes`, with the reason when not.
    fn review_access<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<(bool, String), String>>;
}

/// Reviews through the Kubernetes API.
#[derive(Clone)]
pub struct KubeReviewer {
    client: kube::Client,
}

impl std::fmt::Debug for KubeReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeReviewer")
    }
}

impl KubeReviewer {
    /// Reviews with `client`.
    pub fn new(client: kube::Client) -> KubeReviewer {
        KubeReviewer { client }
    }
}

/// The API calls the metrics adapter makes for authorization and its settings, for RBAC:
/// `(group, resource, verb)`; its TokenReviews are `weir_runtime::token_review::API_CALLS`.
pub const API_CALLS: &[(&str, &str, &str)] = &[
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ("", "configmaps", "get"),
];

impl Reviewer for KubeReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        Box::pin(weir_runtime::token_review::review_token(
            &self.client,
            token,
            None,
        ))
    }

    fn review_access<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<(bool, String), String>> {
        Box::pin(async move {
            let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
            let review = SubjectAccessReview {
                spec: access_review_spec(user, attributes),
                ..Default::default()
            };
            let result = api
                .create(&kube::api::PostParams::default(), &review)
                .await
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
            let status = result.status.unwrap_or_default();
            Ok((
                status.allowed && status.denied != Some(true),
                status.reason.unwrap_or_default(),
            ))
        })
    }
}

/// The SubjectAccessReview spec for `user` doing `attributes`.
pub fn access_review_spec(user: &UserInfo, attributes: &Attributes) -> SubjectAccessReviewSpec {
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
        groups: Some(user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
        ..Default::default()
    };
    match attributes {
        Attributes::Resource {
            group,
            version,
            resource,
            subresource,
            namespace,
            name,
            verb,
        } => {
            let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
            spec.resource_attributes = Some(ResourceAttributes {
                group: Some(group.clone()),
                version: Some(version.clone()),
                resource: Some(resource.clone()),
                subresource: non_empty(subresource),
                namespace: non_empty(namespace),
                name: non_empty(name),
                verb: Some(verb.clone()),
                ..Default::default()
            });
        }
        Attributes::NonResource { path } => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some("get".into()),
            });
        }
    }
    spec
}

/// The front-proxy (request-header) settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Common names a front-proxy certificate may carry; empty allows any.
    pub allowed_names: Vec<String>,
    /// Headers holding the user name, first non-empty wins.
    pub username_headers: Vec<String>,
    /// Headers holding groups.
    pub group_headers: Vec<String>,
    /// Prefixes of headers holding extras.
    pub extra_prefixes: Vec<String>,
}

impl Default for RequestHeader {
    fn default() -> Self {
        RequestHeader {
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }
}

/// What the `extension-apiserver-authentication` ConfigMap says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelegatedSettings {
    /// `client-ca-file` (PEM).
    pub client_ca: Option<String>,
    /// `requestheader-client-ca-file` (PEM).
    pub requestheader_ca: Option<String>,
    /// The request-header settings.
    pub requestheader: RequestHeader,
}

impl DelegatedSettings {
    /// Reads the ConfigMap's data; list values are JSON arrays, as the API server writes
    /// them.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<DelegatedSettings, String> {
        let list = |key: &str, default: Vec<String>| -> Result<Vec<String>, String> {
            match data.get(key) {
                None => Ok(default),
                Some(v) if v.trim().is_empty() => Ok(default),
                Some(v) => serde_json::from_str(v)
                    .map_err(|e| format!("extension-apiserver-authentication: {key}: {e}")),
            }
        };
        let defaults = RequestHeader::default();
        Ok(DelegatedSettings {
            client_ca: data.get("client-ca-file").cloned(),
            requestheader_ca: data.get("requestheader-client-ca-file").cloned(),
            requestheader: RequestHeader {
                allowed_names: list("requestheader-allowed-names", vec![])?,
                username_headers: list(
                    "requestheader-username-headers",
                    defaults.username_headers,
                )?,
                group_headers: list("requestheader-group-headers", defaults.group_headers)?,
                extra_prefixes: list(
                    "requestheader-extra-headers-prefix",
                    defaults.extra_prefixes,
                )?,
            },
        })
    }

    /// Reads the ConfigMap from the cluster.
    pub async fn from_cluster(client: &kube::Client) -> Result<DelegatedSettings, String> {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), "kube-system");
        let cm = api
            .get("extension-apiserver-authentication")
            .await
            .map_err(|e| format!("reading kube-system/extension-apiserver-authentication: {e}"))?;
        DelegatedSettings::from_configmap(&cm.data.unwrap_or_default())
    }
}

/// Reads PEM certificates.
pub fn parse_certificates(pem: &str, source: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{source}: not PEM certificates: {e:?}"))?;
    if certs.is_empty() {
        return Err(format!("{source}: no certificate found"));
    }
    Ok(certs)
}

/// A verifier accepting certificates issued by `roots` (and connections without one).
pub fn verifier(roots: &[CertificateDer<'static>]) -> Result<Arc<dyn ClientCertVerifier>, String> {
    weir_runtime::tls::client_verifier(roots, true)
}

/// The common name and organizations of a certificate.
pub fn subject(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// Review results kept for a short time (10 s), like the API server's delegating
/// authenticator and authorizer caches.
struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        entries.retain(|_, (_, at)| at.elapsed() < ttl);
        entries.insert(key, (value, Instant::now()));
    }
}

/// Authentication and authorization for the secured mode.
pub struct Authenticator {
    requestheader: RequestHeader,
    requestheader_verifier: Option<Arc<dyn ClientCertVerifier>>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    roots: Vec<CertificateDer<'static>>,
    reviewer: Option<Arc<dyn Reviewer>>,
    tokens: TtlCache<String, Option<UserInfo>>,
    decisions: TtlCache<(UserInfo, Attributes), (bool, String)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("requestheader", &self.requestheader)
            .field("front_proxy_ca", &self.requestheader_verifier.is_some())
            .field("client_ca", &self.client_verifier.is_some())
            .field("reviews", &self.reviewer.is_some())
            .finish()
    }
}

impl Authenticator {
    /// An authenticator from PEM CAs, request-header settings and a reviewer (for tokens
    /// and authorization; without one, only certificates authenticate and nothing is
    /// authorized).
    pub fn new(
        settings: &DelegatedSettings,
        reviewer: Option<Arc<dyn Reviewer>>,
    ) -> Result<Authenticator, String> {
        let mut roots = Vec::new();
        let requestheader_verifier = match &settings.requestheader_ca {
            Some(pem) => {
                let certs = parse_certificates(pem, "requestheader client CA")?;
                roots.extend(certs.iter().cloned());
                Some(verifier(&certs)?)
            }
            None => None,
        };
        let client_verifier = match &settings.client_ca {
            Some(pem) => {
                let certs = parse_certificates(pem, "client CA")?;
                roots.extend(certs.iter().cloned());
                Some(verifier(&certs)?)
            }
            None => None,
        };
        Ok(Authenticator {
            requestheader: settings.requestheader.clone(),
            requestheader_verifier,
            client_verifier,
            roots,
            reviewer,
            tokens: TtlCache::new(Duration::from_secs(10)),
            decisions: TtlCache::new(Duration::from_secs(10)),
        })
    }

    /// The CAs whose client certificates the TLS layer asks for.
    pub fn client_roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// What a verified chain (`chain[0]` the client's) vouches for.
    pub fn peer(&self, chain: &[CertificateDer<'static>]) -> PeerIdentity {
        let Some((end, intermediates)) = chain.split_first() else {
            return PeerIdentity::default();
        };
        let verified = |v: &Option<Arc<dyn ClientCertVerifier>>| {
            v.as_ref().is_some_and(|v| {
                v.verify_client_cert(end, intermediates, UnixTime::now())
                    .is_ok()
            })
        };
        let subject = subject(end);
        let front_proxy = verified(&self.requestheader_verifier)
            && subject.as_ref().is_some_and(|(cn, _)| {
                self.requestheader.allowed_names.is_empty()
                    || self.requestheader.allowed_names.contains(cn)
            });
        let certificate_user = (verified(&self.client_verifier))
            .then_some(subject)
            .flatten()
            .map(|(name, groups)| UserInfo {
                name,
                groups,
                ..Default::default()
            });
        PeerIdentity {
            front_proxy,
            certificate_user,
        }
    }

    /// The user a request comes from, or 401.
    pub async fn authenticate(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        if peer.front_proxy
            && let Some(user) = self.user_from_headers(headers)
        {
            return Ok(user);
        }
        if let Some(user) = &peer.certificate_user {
            return Ok(user.clone());
        }
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let (Some(token), Some(reviewer)) = (token, &self.reviewer) else {
            return Err(ApiError::unauthorized("Unauthorized"));
        };
        let user = match self.tokens.get(&token.to_string()) {
            Some(user) => user,
            None => {
                let user = reviewer
                    .review_token(token)
                    .await
                    .map_err(ApiError::internal)?;
                self.tokens.put(token.to_string(), user.clone());
                user
            }
        };
        user.ok_or_else(|| ApiError::unauthorized("Unauthorized"))
    }

    fn user_from_headers(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let name = self.requestheader.username_headers.iter().find_map(|h| {
            headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        })?;
        let groups = self
            .requestheader
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()))
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in headers {
            for prefix in &self.requestheader.extra_prefixes {
                let key = key.as_str();
                if key.len() > prefix.len() && key[..prefix.len()].eq_ignore_ascii_case(prefix) {
                    let name = percent_encoding::percent_decode_str(&key[prefix.len()..])
                        .decode_utf8_lossy()
                        .to_lowercase();
                    if let Ok(v) = value.to_str() {
                        extra.entry(name).or_default().push(v.to_string());
                    }
                }
            }
        }
        Some(UserInfo {
            name: name.to_string(),
            groups,
            extra,
            uid: String::new(),
        })
    }

    /// Whether `user` may do `attributes`, or 403.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
    ) -> Result<(), ApiError> {
        let describe = || match attributes {
            Attributes::Resource {
                group,
                resource,
                subresource,
                namespace,
                verb,
                ..
            } => {
                let what = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace \"{namespace}\"")
                };
                format!(
                    "user \"{}\" cannot {verb} resource \"{what}\" in API group \"{group}\" {scope}",
                    user.name
                )
            }
            Attributes::NonResource { path } => {
                format!("user \"{}\" cannot get path \"{path}\"", user.name)
            }
        };
        let Some(reviewer) = &self.reviewer else {
            return Err(ApiError::forbidden(format!(
                "{}: no authorizer configured",
                describe()
            )));
        };
        let key = (user.clone(), attributes.clone());
        let (allowed, reason) = match self.decisions.get(&key) {
            Some(decision) => decision,
            None => {
                let decision = reviewer
                    .review_access(user, attributes)
                    .await
                    .map_err(ApiError::internal)?;
                self.decisions.put(key, decision.clone());
                decision
            }
        };
        if allowed {
            Ok(())
        } else if reason.is_empty() {
            Err(ApiError::forbidden(describe()))
        } else {
            Err(ApiError::forbidden(format!("{}: {reason}", describe())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_settings() {
        let data: BTreeMap<String, String> = [
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = DelegatedSettings::from_configmap(&data).unwrap();
        assert_eq!(s.requestheader.allowed_names, ["front-proxy-client"]);
        assert_eq!(s.requestheader_ca, None);
        let mut bad = data.clone();
        bad.insert("requestheader-allowed-names".into(), "front-proxy".into());
        assert!(
            DelegatedSettings::from_configmap(&bad)
                .unwrap_err()
                .contains("requestheader-allowed-names")
        );
    }

    #[test]
    fn review_specs() {
        let user = UserInfo {
            name: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into(),
            groups: vec!["system:serviceaccounts".into()],
            ..Default::default()
        };
        let spec = access_review_spec(
            &user,
            &Attributes::Resource {
                group: "custom.metrics.k8s.io".into(),
                version: "v1beta2".into(),
                resource: "pods".into(),
                subresource: "rps".into(),
                namespace: "shop".into(),
                name: "*".into(),
                verb: "get".into(),
            },
        );
        let attrs = spec.resource_attributes.unwrap();
        assert_eq!(attrs.resource.as_deref(), Some("pods"));
        assert_eq!(attrs.subresource.as_deref(), Some("rps"));
        assert_eq!(spec.user.as_deref(), Some(user.name.as_str()));
    }
}
