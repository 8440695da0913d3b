//! The certificate API between an in-pod agent and the xds-server: one unary gRPC method,
//! `weir.identity.v1.Identity/Certify`. The agent sends a signing request for a key it
//! generated (and keeps), with its proof in the `authorization` metadata (`Bearer
//! <ServiceAccount token>`); the xds-server answers with a chain for the identity the proof
//! establishes, the roots to validate peers with, and the trust domain.
//!
//! The messages are declared here with prost's derive, as a `.proto` would generate them:
//!
//! ```proto
//! service Identity { rpc Certify(CertifyRequest) returns (CertifyResponse); }
//! message CertifyRequest { string csr = 1; string proxy = 2; }
//! message CertifyResponse { string certificate_chain = 1; string roots = 2;
//!                           string trust_domain = 3; int64 not_after = 4; string spiffe_id = 5; }
//! ```

/// The gRPC service.
pub const SERVICE: &str = "weir.identity.v1.Identity";
/// The method's path.
pub const CERTIFY_PATH: &str = "/weir.identity.v1.Identity/Certify";
/// The largest request accepted.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// A request to certify a key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CertifyRequest {
    /// PEM certificate signing request (PKCS#10) for the agent's key.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// The node id of the proxy the agent serves (`sidecar~<pod>.<namespace>`), checked
    /// against the proof when given.
    #[prost(string, tag = "2")]
    pub proxy: String,
}

/// The certificate.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CertifyResponse {
    /// PEM chain, leaf first, without the root.
    #[prost(string, tag = "1")]
    pub certificate_chain: String,
    /// PEM roots of the mesh.
    #[prost(string, tag = "2")]
    pub roots: String,
    /// The mesh's trust domain.
    #[prost(string, tag = "3")]
    pub trust_domain: String,
    /// When the certificate expires (Unix seconds).
    #[prost(int64, tag = "4")]
    pub not_after: i64,
    /// The identity certified.
    #[prost(string, tag = "5")]
    pub spiffe_id: String,
}
