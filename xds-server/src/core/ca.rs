//! The mesh's certificate authority: workload certificates with SPIFFE identities
//! (`spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`), short-lived and
//! rotated at half their lifetime, issued by a root Weir generates and keeps, or by a root
//! or intermediate the operator provides.
//!
//! Keys are ECDSA P-256; everything is PEM, as rustls and Envoy read it. Issuing is pure
//! apart from key generation: `now` comes in. [`load_or_create`] keeps the root in a
//! directory (local mode); in a cluster the same two PEM files live in a Secret.

use std::{fmt, path::Path, str::FromStr, time::Duration};

use k8s_openapi::jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

/// The trust domain when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// A workload certificate's lifetime when none is configured.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The file names of a CA kept in a directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The key's file name (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Optional: the chain above a provided intermediate, up to the root.
pub const CA_CHAIN_FILE: &str = "ca-chain.crt";

/// Why a CA or a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CaError(String);

fn err(context: &str, e: impl fmt::Display) -> CaError {
    CaError(format!("{context}: {e}"))
}

/// A workload identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// The workload's namespace.
    pub namespace: String,
    /// Its ServiceAccount.
    pub service_account: String,
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            CaError(format!(
                "{s:?} is not spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>"
            ))
        };
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
                Ok(SpiffeId {
                    trust_domain: td.to_string(),
                    namespace: ns.to_string(),
                    service_account: sa.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A trust domain is a DNS-like name: lowercase letters, digits, `-`, `.`, `_`.
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
}

/// How far before issue a certificate is valid, for peers whose clocks are behind.
const CLOCK_SKEW: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(60);

/// When a certificate valid from `not_before` (the clock-skew allowance before its issue
/// included) to `not_after` is due for renewal: half its lifetime since issue, so a failed
/// renewal has the other half to succeed. The allowance does not count: with a lifetime
/// shorter than twice it, counting it would make the certificate due the moment it is
/// issued.
fn renew_at(not_before: Timestamp, not_after: Timestamp) -> Timestamp {
    let issued = not_before + CLOCK_SKEW;
    issued + not_after.duration_since(issued) / 2
}

/// A certificate a workload presents, with its key.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCertificate {
    /// The identity in its URI SAN.
    pub id: SpiffeId,
    /// PEM: the leaf, then the issuing chain up to (not including) the root.
    pub chain_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
}

impl fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("id", &self.id.to_string())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCertificate {
    /// Due for rotation: half its lifetime since issue is gone (so a failed renewal has
    /// the other half to succeed). The clock-skew allowance before issue does not count.
    pub fn rotation_due(&self, now: Timestamp) -> bool {
        now >= renew_at(self.not_before, self.not_after)
    }
}

/// The certificate authority.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate (root, or the provided intermediate).
    cert_pem: String,
    key_pem: String,
    /// Above an intermediate: the rest of the chain, up to and including the root.
    chain_pem: String,
    /// What peers trust: the root (the last certificate of the chain).
    root_pem: String,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn offset(t: Timestamp) -> Result<time::OffsetDateTime, CaError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|e| err("time", e))
}

/// The certificates in PEM text, in order, read with rustls-pki-types' PEM parser (which
/// skips anything between blocks, as `openssl` does).
fn certificates(text: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError(format!("{what}: not PEM certificates: {e}")))
}

/// One certificate as PEM text (LF line endings, as rcgen writes them).
fn certificate_pem(der: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

impl CertificateAuthority {
    /// A new self-signed root for `trust_domain`, valid for ten years from `now`.
    pub fn generate(trust_domain: &str, now: Timestamp) -> Result<Self, CaError> {
        if !valid_trust_domain(trust_domain) {
            return Err(CaError(format!(
                "trust domain {trust_domain:?}: use lowercase letters, digits, '-', '.', '_'"
            )));
        }
        let key = KeyPair::generate().map_err(|e| err("generating the CA key", e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Weir");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Weir mesh CA {trust_domain}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(now - jiff_hours(1))?;
        params.not_after = offset(now + jiff_hours(24 * 3650))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| err("signing the CA certificate", e))?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Self::from_pem(trust_domain, &cert_pem, &key_pem, None)
    }

    /// A CA from PEM: a root, or an intermediate with `chain_pem` (the certificates above
    /// it, up to the root). The key must be the certificate's.
    pub fn from_pem(
        trust_domain: &str,
        cert_pem: &str,
        key_pem: &str,
        chain_pem: Option<&str>,
    ) -> Result<Self, CaError> {
        if !valid_trust_domain(trust_domain) {
            return Err(CaError(format!(
                "trust domain {trust_domain:?} is not valid"
            )));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| err("CA key", e))?;
        let certs = certificates(cert_pem, "CA certificate")?;
        let first = certs
            .first()
            .ok_or_else(|| CaError("CA certificate: no PEM CERTIFICATE block".into()))?;
        // The key must match the certificate's public key.
        let (_, x509) =
            x509_parser::parse_x509_certificate(first).map_err(|e| err("CA certificate", e))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError(
                "CA key: it is not the key of the CA certificate".into(),
            ));
        }
        if !x509.is_ca() {
            return Err(CaError(
                "CA certificate: not a CA (basicConstraints CA:TRUE is missing)".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(first, key).map_err(|e| err("CA certificate", e))?;
        let chain_pem = chain_pem.unwrap_or_default().to_string();
        let root_pem = certificates(&chain_pem, "CA chain")?
            .last()
            .map_or_else(|| certificate_pem(first), certificate_pem);
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            issuer,
            cert_pem: certificate_pem(first),
            key_pem: key_pem.to_string(),
            chain_pem,
            root_pem,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root peers validate against (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues a certificate for `id`, valid from `now` (minus a minute of clock skew) for
    /// `lifetime`, for both TLS client and server use.
    pub fn issue(
        &self,
        id: &SpiffeId,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<WorkloadCertificate, CaError> {
        let signed = self.sign(workload_sans(self, id)?, WORKLOAD_USAGES, lifetime, now)?;
        Ok(WorkloadCertificate {
            id: id.clone(),
            chain_pem: signed.chain_pem,
            key_pem: signed.key_pem,
            not_before: signed.not_before,
            not_after: signed.not_after,
        })
    }

    /// Issues a TLS server certificate for DNS names and IP addresses (the injection
    /// webhook's Service names), valid from `now` for `lifetime`.
    pub fn issue_server(
        &self,
        names: &[String],
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<ServerCertificate, CaError> {
        let sans = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => rcgen::string::Ia5String::try_from(name.as_str())
                    .map(SanType::DnsName)
                    .map_err(|e| err(&format!("DNS name {name:?}"), e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sans.is_empty() {
            return Err(CaError(
                "a server certificate needs at least one name".into(),
            ));
        }
        self.sign(sans, &[ExtendedKeyUsagePurpose::ServerAuth], lifetime, now)
    }

    /// Certifies the key of a certificate signing request as `id`: the CSR's signature
    /// must verify (its holder has the private key), and nothing else of it is used, so the
    /// identity comes from the caller's proof, never from what the CSR asks for. Returns the
    /// chain (leaf first, without the root); the key never leaves its holder.
    pub fn certify(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<CertifiedChain, CaError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| err("certificate signing request", e))?;
        let (chain_pem, not_before, not_after) = self.sign_key(
            workload_sans(self, id)?,
            WORKLOAD_USAGES,
            lifetime,
            now,
            &csr.public_key,
        )?;
        Ok(CertifiedChain {
            chain_pem,
            not_before,
            not_after,
        })
    }

    fn sign(
        &self,
        sans: Vec<SanType>,
        usages: &[ExtendedKeyUsagePurpose],
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<ServerCertificate, CaError> {
        let key = KeyPair::generate().map_err(|e| err("generating a key", e))?;
        let (chain_pem, not_before, not_after) =
            self.sign_key(sans, usages, lifetime, now, &key)?;
        Ok(ServerCertificate {
            chain_pem,
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
        })
    }

    /// Signs `subject_key` with these names and usages: the chain (leaf first, then what
    /// is above an intermediate but the root), and the validity.
    fn sign_key(
        &self,
        sans: Vec<SanType>,
        usages: &[ExtendedKeyUsagePurpose],
        lifetime: Duration,
        now: Timestamp,
        subject_key: &impl rcgen::PublicKeyData,
    ) -> Result<(String, Timestamp, Timestamp), CaError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| err("certificate parameters", e))?;
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Weir");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let lifetime = k8s_openapi::jiff::SignedDuration::try_from(lifetime)
            .map_err(|e| err("lifetime", e))?;
        let not_before = now - CLOCK_SKEW;
        let not_after = now + lifetime;
        params.not_before = offset(not_before)?;
        params.not_after = offset(not_after)?;
        let cert = params
            .signed_by(subject_key, &self.issuer)
            .map_err(|e| err("signing the certificate", e))?;
        let mut chain_pem = cert.pem();
        if !self.chain_pem.is_empty() {
            // An intermediate: the leaf, the intermediate, and what is above it but the root.
            chain_pem.push_str(&self.cert_pem);
            // Read back from what was validated at load, so it parses.
            let above = certificates(&self.chain_pem, "CA chain").unwrap_or_default();
            for c in above.iter().take(above.len().saturating_sub(1)) {
                chain_pem.push_str(&certificate_pem(c));
            }
        }
        Ok((
            chain_pem,
            Timestamp::from_second(not_before.as_second()).unwrap_or(not_before),
            Timestamp::from_second(not_after.as_second()).unwrap_or(not_after),
        ))
    }

    /// The CA's certificate and key (PEM), to keep.
    pub fn to_pem(&self) -> (&str, &str) {
        (&self.cert_pem, &self.key_pem)
    }
}

/// A new private key and a request to certify it (PEM both): what an agent generates in
/// its pod. The request names nothing; the CA decides the identity from the proof.
pub fn key_and_request() -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(|e| err("generating a key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("request parameters", e))?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Weir");
    let request = params
        .serialize_request(&key)
        .map_err(|e| err("signing the request", e))?;
    let request_pem = request.pem().map_err(|e| err("encoding the request", e))?;
    Ok((key.serialize_pem(), request_pem))
}

/// A workload certificate serves both ends of mutual TLS.
const WORKLOAD_USAGES: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];

/// The one name of a workload certificate: its SPIFFE id, in the CA's trust domain.
fn workload_sans(ca: &CertificateAuthority, id: &SpiffeId) -> Result<Vec<SanType>, CaError> {
    if id.trust_domain != ca.trust_domain {
        return Err(CaError(format!(
            "{id}: trust domain is not the CA's {:?}",
            ca.trust_domain
        )));
    }
    let uri =
        rcgen::string::Ia5String::try_from(id.to_string()).map_err(|e| err("SPIFFE id", e))?;
    Ok(vec![SanType::URI(uri)])
}

/// A certificate the CA signed for a key it never saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedChain {
    /// PEM chain, leaf first (without the root).
    pub chain_pem: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
}

fn jiff_hours(h: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_hours(h)
}

/// A TLS server certificate the CA issued.
#[derive(Clone)]
pub struct ServerCertificate {
    /// PEM chain, leaf first (without the root).
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ServerCertificate {
    /// Whether it is past half its lifetime since issue at `now`, and due for renewal.
    pub fn renewal_due(&self, now: Timestamp) -> bool {
        now >= renew_at(self.not_before, self.not_after)
    }

    /// How long from `now` until it is due for renewal (zero once it is).
    pub fn until_renewal(&self, now: Timestamp) -> Duration {
        Duration::try_from(renew_at(self.not_before, self.not_after).duration_since(now))
            .unwrap_or(Duration::ZERO)
    }
}

/// The CA kept in `dir` (`ca.crt`, `ca.key`, optionally `ca-chain.crt`): loaded if there,
/// else generated and written (the key with mode 0600). A provided root or intermediate is
/// used by placing its files there.
pub fn load_or_create(
    dir: &Path,
    trust_domain: &str,
    now: Timestamp,
) -> Result<CertificateAuthority, CaError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if cert_path.exists() || key_path.exists() {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| err(&p.display().to_string(), e));
        let chain_path = dir.join(CA_CHAIN_FILE);
        let chain = if chain_path.exists() {
            Some(read(&chain_path)?)
        } else {
            None
        };
        return CertificateAuthority::from_pem(
            trust_domain,
            &read(&cert_path)?,
            &read(&key_path)?,
            chain.as_deref(),
        )
        .map_err(|e| CaError(format!("{}: {e}", dir.display())));
    }
    let ca = CertificateAuthority::generate(trust_domain, now)?;
    std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
    let (cert, key) = ca.to_pem();
    write_private(&key_path, key)?;
    std::fs::write(&cert_path, cert).map_err(|e| err(&cert_path.display().to_string(), e))?;
    Ok(ca)
}

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| err(&path.display().to_string(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| err(&path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use x509_parser::{extensions::GeneralName, parse_x509_certificate};

    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn id(td: &str) -> SpiffeId {
        SpiffeId {
            trust_domain: td.into(),
            namespace: "shop".into(),
            service_account: "web".into(),
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        certificates(pem, "test").unwrap()[0].to_vec()
    }

    #[test]
    fn spiffe_ids_round_trip_and_reject_other_shapes() {
        let parsed: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
        assert_eq!(parsed, id("cluster.local"));
        assert_eq!(parsed.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        for bad in [
            "spiffe://cluster.local/ns/shop",
            "https://x/ns/a/sa/b",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn issued_certificates_carry_the_identity_and_verify_against_the_root() {
        let ca = CertificateAuthority::generate("cluster.local", now()).unwrap();
        let cert = ca
            .issue(&id("cluster.local"), DEFAULT_LIFETIME, now())
            .unwrap();
        let leaf_der = der(&cert.chain_pem);
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        let uris: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(uris, vec!["spiffe://cluster.local/ns/shop/sa/web"]);
        let root_der = der(ca.root_pem());
        let (_, root) = parse_x509_certificate(&root_der).unwrap();
        leaf.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(
            leaf.validity().not_after.timestamp(),
            (now() + jiff_hours(24)).as_second()
        );
        // Another CA's root does not verify it.
        let other = CertificateAuthority::generate("cluster.local", now()).unwrap();
        let other_der = der(other.root_pem());
        let (_, other_root) = parse_x509_certificate(&other_der).unwrap();
        assert!(
            leaf.verify_signature(Some(other_root.public_key()))
                .is_err()
        );
        // Not for another trust domain.
        assert!(
            ca.issue(&id("other.domain"), DEFAULT_LIFETIME, now())
                .is_err()
        );
    }

    fn uri_sans(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
        leaf.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => u.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_request_is_certified_as_the_proven_identity_whatever_it_asks_for() {
        let ca = CertificateAuthority::generate("cluster.local", now()).unwrap();
        // A request that asks for another identity and a DNS name.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["admin.example".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://cluster.local/ns/kube-system/sa/admin")
                .unwrap(),
        ));
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let chain = ca
            .certify(&csr, &id("cluster.local"), DEFAULT_LIFETIME, now())
            .unwrap();
        let leaf_der = der(&chain.chain_pem);
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(uri_sans(&leaf), ["spiffe://cluster.local/ns/shop/sa/web"]);
        // For the requester's key, which the CA never saw.
        assert_eq!(
            leaf.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let root_der = der(ca.root_pem());
        let (_, root) = parse_x509_certificate(&root_der).unwrap();
        leaf.verify_signature(Some(root.public_key())).unwrap();

        // What an agent sends is accepted; garbage and a tampered request are not.
        let (_, request) = key_and_request().unwrap();
        assert!(
            ca.certify(&request, &id("cluster.local"), DEFAULT_LIFETIME, now())
                .is_ok()
        );
        let bad = ca
            .certify(
                "not a request",
                &id("cluster.local"),
                DEFAULT_LIFETIME,
                now(),
            )
            .unwrap_err();
        assert!(
            bad.to_string().contains("certificate signing request"),
            "{bad}"
        );
        let mut der_bytes = pem::parse(&request).unwrap().contents().to_vec();
        let last = der_bytes.len() - 1;
        der_bytes[last] ^= 0x01; // the signature's last byte
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der_bytes));
        assert!(
            ca.certify(&tampered, &id("cluster.local"), DEFAULT_LIFETIME, now())
                .is_err()
        );
        assert!(
            ca.certify(&request, &id("other.domain"), DEFAULT_LIFETIME, now())
                .is_err()
        );
    }

    #[test]
    fn rotation_is_due_at_half_the_lifetime() {
        let ca = CertificateAuthority::generate("cluster.local", now()).unwrap();
        let cert = ca
            .issue(&id("cluster.local"), Duration::from_secs(3600), now())
            .unwrap();
        assert!(!cert.rotation_due(now() + jiff_hours(0)));
        // 30 minutes after issue, not counting the skew allowance.
        let half = now() + k8s_openapi::jiff::SignedDuration::from_mins(30);
        assert!(cert.rotation_due(half));
        assert!(!cert.rotation_due(half - k8s_openapi::jiff::SignedDuration::from_secs(1)));
    }

    #[test]
    fn a_short_lived_serving_certificate_is_renewed_at_half_its_lifetime_not_at_once() {
        // 6 s: shorter than twice the clock-skew allowance, which must not count, or the
        // certificate would be due the moment it is issued.
        let ca = CertificateAuthority::generate("cluster.local", now()).unwrap();
        let names = ["xds.weir".to_string()];
        let cert = ca
            .issue_server(&names, Duration::from_secs(6), now())
            .unwrap();
        assert!(!cert.renewal_due(now()));
        assert_eq!(cert.until_renewal(now()), Duration::from_secs(3));
        let half = now() + k8s_openapi::jiff::SignedDuration::from_secs(3);
        assert!(cert.renewal_due(half));
        assert_eq!(cert.until_renewal(half), Duration::ZERO);
        assert_eq!(
            cert.until_renewal(half + jiff_hours(1)),
            Duration::ZERO,
            "past due is zero, not negative"
        );
    }

    #[test]
    fn a_provided_intermediate_issues_with_the_chain_and_a_mismatched_key_is_refused() {
        let root = CertificateAuthority::generate("cluster.local", now()).unwrap();
        // An intermediate signed by the root.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "intermediate");
        let intermediate = params.signed_by(&key, &root.issuer).unwrap();
        let ca = CertificateAuthority::from_pem(
            "cluster.local",
            &intermediate.pem(),
            &key.serialize_pem(),
            Some(root.root_pem()),
        )
        .unwrap();
        assert_eq!(ca.root_pem(), root.root_pem());
        let cert = ca
            .issue(&id("cluster.local"), DEFAULT_LIFETIME, now())
            .unwrap();
        assert_eq!(
            certificates(&cert.chain_pem, "chain").unwrap().len(),
            2,
            "leaf + intermediate"
        );
        let wrong = KeyPair::generate().unwrap();
        let e = CertificateAuthority::from_pem(
            "cluster.local",
            &intermediate.pem(),
            &wrong.serialize_pem(),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("not the key of the CA certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_keeps_the_root_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), "cluster.local", now()).unwrap();
        let again = load_or_create(dir.path(), "cluster.local", now()).unwrap();
        assert_eq!(first.root_pem(), again.root_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
