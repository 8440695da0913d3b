//! The mesh CA as the xds-server holds it: the authority, and how long the workload
//! certificates it certifies for agents are valid (agents renew them at half of it).

use std::{fmt, time::Duration};

use crate::ca::CertificateAuthority;

/// The mesh CA and the lifetime of the workload certificates it issues.
pub struct MeshIdentities {
    ca: CertificateAuthority,
    lifetime: Duration,
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
    /// Certificates from `ca`, valid for `lifetime`.
    pub fn new(ca: CertificateAuthority, lifetime: Duration) -> Self {
        MeshIdentities { ca, lifetime }
    }

    /// The CA itself.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The lifetime of the certificates issued.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}
