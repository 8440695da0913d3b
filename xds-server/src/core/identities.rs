//! Workload certificates for SDS: one per identity (`namespace`, ServiceAccount), issued
//! by the mesh CA on first use and re-issued at half their lifetime.
//!
//! The snapshot cache asks for the certificate of each view's identity when it computes
//! the view; [`MeshIdentities::rotate`] re-issues the certificates that are due, and its
//! caller republishes so that the proxies get the new ones (only the secrets change).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use crate::ca::{CertificateAuthority, SpiffeId, WorkloadCertificate};

/// What the snapshot cache needs to fill in the SDS secrets of a view.
pub trait IdentityIssuer: Send + Sync + fmt::Debug {
    /// The current certificate of `namespace`/`service_account`; `None` if it cannot be
    /// issued (logged).
    fn certificate(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<Arc<WorkloadCertificate>>;
    /// The roots peers are validated against (PEM).
    fn roots_pem(&self) -> &str;
    /// The trust domain peers' SPIFFE ids must be in.
    fn trust_domain(&self) -> &str;
}

/// The mesh CA and the certificates it has issued, by identity.
pub struct MeshIdentities {
    ca: CertificateAuthority,
    lifetime: Duration,
    clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
    issued: Mutex<HashMap<SpiffeId, Arc<WorkloadCertificate>>>,
}

impl fmt::Debug for MeshIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshIdentities")
            .field("trust_domain", &self.ca.trust_domain())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl MeshIdentities {
    /// Certificates from `ca`, valid for `lifetime`, on the system clock.
    pub fn new(ca: CertificateAuthority, lifetime: Duration) -> Self {
        Self::with_clock(ca, lifetime, Box::new(Timestamp::now))
    }

    /// The same, on a given clock (tests).
    pub fn with_clock(
        ca: CertificateAuthority,
        lifetime: Duration,
        clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> Self {
        MeshIdentities {
            ca,
            lifetime,
            clock,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// The CA itself (for the injection webhook's serving certificate).
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The lifetime of the certificates issued.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Arc<WorkloadCertificate>>> {
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn issue(&self, id: &SpiffeId, now: Timestamp) -> Option<Arc<WorkloadCertificate>> {
        match self.ca.issue(id, self.lifetime, now) {
            Ok(cert) => Some(Arc::new(cert)),
            Err(e) => {
                warn!(identity = %id, error = %e, "cannot issue a workload certificate");
                None
            }
        }
    }

    /// Re-issues every certificate due for rotation (half its lifetime gone); returns how
    /// many were.
    pub fn rotate(&self) -> usize {
        let now = (self.clock)();
        let due: Vec<SpiffeId> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.rotation_due(now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut rotated = 0;
        for id in due {
            if let Some(cert) = self.issue(&id, now) {
                info!(identity = %id, not_after = %cert.not_after, "workload certificate rotated");
                self.lock().insert(id, cert);
                rotated += 1;
            }
        }
        rotated
    }

    /// How many identities hold a certificate.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl IdentityIssuer for MeshIdentities {
    fn certificate(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<Arc<WorkloadCertificate>> {
        let id = SpiffeId {
            trust_domain: self.ca.trust_domain().to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        if let Some(cert) = self.lock().get(&id) {
            return Some(cert.clone());
        }
        let cert = self.issue(&id, (self.clock)())?;
        // Two views asking at once: the first one in wins, so both present the same.
        Some(self.lock().entry(id).or_insert(cert).clone())
    }

    fn roots_pem(&self) -> &str {
        self.ca.root_pem()
    }

    fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// Identities from a fresh CA on a test clock: seconds past a fixed start, moved by
    /// storing into the returned offset.
    pub(crate) fn on_test_clock(lifetime: Duration) -> (MeshIdentities, Arc<AtomicI64>) {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let ca = CertificateAuthority::generate("cluster.local", start).unwrap();
        let offset = Arc::new(AtomicI64::new(0));
        let clock = {
            let offset = offset.clone();
            Box::new(move || {
                start + k8s_openapi::jiff::SignedDuration::from_secs(offset.load(Ordering::SeqCst))
            })
        };
        (MeshIdentities::with_clock(ca, lifetime, clock), offset)
    }

    #[test]
    fn one_certificate_per_identity_until_rotation_is_due() {
        let (identities, offset) = on_test_clock(Duration::from_secs(100));
        let web = identities.certificate("shop", "web").unwrap();
        assert!(Arc::ptr_eq(
            &web,
            &identities.certificate("shop", "web").unwrap()
        ));
        let api = identities.certificate("shop", "api").unwrap();
        assert_ne!(web.key_pem, api.key_pem);
        assert_eq!(identities.len(), 2);

        offset.store(49, Ordering::SeqCst);
        assert_eq!(identities.rotate(), 0);
        offset.store(50, Ordering::SeqCst);
        assert_eq!(identities.rotate(), 2);
        let renewed = identities.certificate("shop", "web").unwrap();
        assert_ne!(renewed.key_pem, web.key_pem);
        assert!(renewed.not_after > web.not_after);
        assert_eq!(identities.rotate(), 0);
    }
}
