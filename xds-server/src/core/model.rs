//! What one Envoy proxy is told, in Weir's terms.
//!
//! The translator produces a [`ProxyConfig`] from the stores; `crate::envoy` turns it into
//! Envoy's protobuf resources in one place. Keeping this model small and serializable makes
//! the translator testable with golden files (YAML in, this model as JSON out) and keeps
//! Envoy's API surface out of the translation logic.

use serde::Serialize;
use weir_crds::mesh_policy::MtlsMode;

/// Everything one proxy receives: the four resource types of an HTTP data plane.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// Upstream clusters (CDS), one per Service port, all discovered over EDS.
    pub clusters: Vec<Cluster>,
    /// Endpoints per cluster (EDS).
    pub load_assignments: Vec<LoadAssignment>,
    /// Listeners (LDS).
    pub listeners: Vec<Listener>,
    /// Route tables (RDS), referenced by listeners by name.
    pub route_tables: Vec<RouteTable>,
}

/// An upstream cluster whose endpoints come over EDS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// `<namespace>/<service>/<port>`, or `inbound/<port>` for a sidecar's own workload.
    pub name: String,
    /// Timeout for new connections.
    pub connect_timeout_ms: u64,
    /// Endpoints are static (the sidecar's own workload) rather than from EDS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_endpoint: Option<Endpoint>,
    /// Some endpoints run sidecars that take mTLS: connections to those (and only those)
    /// originate mTLS with the proxy's workload certificate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
    /// No endpoints of its own: connections go where they were originally addressed (a
    /// captured sidecar's passthrough clusters).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub original_destination: bool,
}

/// What a captured sidecar's listener does with the original destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Outbound: HTTP to these Service addresses is routed; other destinations pass
    /// through to where they were addressed (`passthrough`), or are refused.
    Outbound {
        /// Service ClusterIPs.
        service_addresses: Vec<String>,
        /// Unknown destinations pass through (allow-any); else refused (registry-only).
        passthrough: bool,
    },
    /// Inbound: requests go to the port the caller addressed.
    Inbound,
}

/// The endpoints of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadAssignment {
    /// The cluster.
    pub cluster: String,
    /// Ready endpoints only.
    pub endpoints: Vec<Endpoint>,
}

/// An IP address and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Endpoint {
    /// The address.
    pub address: String,
    /// The port.
    pub port: u16,
    /// The endpoint runs a sidecar that takes mTLS (and is not Disable).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
}

/// An HTTP listener: an address and the route table requests are matched against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listener {
    /// Unique per proxy, e.g. `outbound`, `inbound`, `gateway/http`.
    pub name: String,
    /// The address to bind.
    pub address: String,
    /// The port to bind.
    pub port: u16,
    /// The route table (RDS name).
    pub route_table: String,
    /// Prefix of the listener's HTTP statistics.
    pub stat_prefix: String,
    /// Ignore the port in the authority when matching virtual hosts (gateways, whose
    /// hostnames carry no port); sidecars keep it to tell a Service's ports apart.
    pub strip_host_port: bool,
    /// A rate limit over every request the listener takes (a TrafficPolicy on a Gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<TokenBucket>,
    /// Whether some route of the listener's table is under a global rate limit: the
    /// listener then calls Weir's rate-limit service.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub global_rate_limit: bool,
    /// TLS termination, one entry per certificate chosen by SNI; empty for plaintext.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsTermination>,
    /// A sidecar's inbound listener: the workload's mTLS mode (Strict: mTLS with a mesh
    /// certificate only; Permissive: mTLS or plaintext; Disable: plaintext only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_tls: Option<MtlsMode>,
    /// A captured sidecar's listener: it recovers the original destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
    /// Connections to these (original destination) ports use their own route table
    /// instead of `route_table`: a Service's limits enforced on the port it sends to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_route_tables: Vec<(u16, String)>,
    /// Virtual hosts and clusters this listener's routes need are fetched when the first
    /// request needs them (Envoy's on-demand filter: VHDS and on-demand CDS).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub on_demand: bool,
}

/// Terminating TLS for some server names with one certificate.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct TlsTermination {
    /// SNI names this certificate serves; empty for any.
    pub server_names: Vec<String>,
    /// The Secret the certificate came from, `namespace/name`.
    pub secret: String,
    /// PEM certificate chain (never serialized: golden files and debug views hold no keys).
    #[serde(skip)]
    pub certificate_pem: String,
    /// PEM private key (never serialized).
    #[serde(skip)]
    pub private_key_pem: String,
}

impl std::fmt::Debug for TlsTermination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTermination")
            .field("server_names", &self.server_names)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// A named set of virtual hosts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteTable {
    /// The RDS name.
    pub name: String,
    /// Virtual hosts, matched by the request's authority.
    pub virtual_hosts: Vec<VirtualHost>,
    /// More virtual hosts are fetched on demand (VHDS), by the authority of the first
    /// request for one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub on_demand: bool,
}

/// Routes for a set of domains.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHost {
    /// Unique within the table.
    pub name: String,
    /// Authorities that select this host (`*` for any).
    pub domains: Vec<String>,
    /// Routes, in match order.
    pub routes: Vec<Route>,
    /// A rate limit over every request to this host (a TrafficPolicy on a Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<TokenBucket>,
    /// A global rate limit over every request to this host (a TrafficPolicy on a Service
    /// or a Gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<GlobalLimit>,
    /// Retries for every route of this host (a TrafficPolicy on a Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// One route: a match and what to do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    /// Where the route came from, e.g. `shop/storefront/rule/0/match/0`, so status and
    /// NACKs can be traced back to the object.
    pub name: String,
    /// What requests it takes.
    pub matcher: RouteMatch,
    /// What happens to them.
    pub action: RouteAction,
    /// Header changes on the request.
    #[serde(skip_serializing_if = "HeaderChanges::is_empty")]
    pub request_headers: HeaderChanges,
    /// Header changes on the response.
    #[serde(skip_serializing_if = "HeaderChanges::is_empty")]
    pub response_headers: HeaderChanges,
    /// Timeout for the whole request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// A rate limit on this route (a TrafficPolicy on its HTTPRoute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<TokenBucket>,
    /// A global rate limit on this route (a TrafficPolicy on its HTTPRoute); the virtual
    /// host's applies too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<GlobalLimit>,
}

/// A request match; every given part must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteMatch {
    /// The path.
    pub path: PathMatch,
    /// Header matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// The HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A path match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A path prefix, on `/`-separated segments (`/api` takes `/api` and `/api/x`, not
    /// `/apix`).
    Prefix(String),
    /// A regular expression (RE2) over the whole path.
    Regex(String),
}

/// A header or query parameter match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueMatch {
    /// The name.
    pub name: String,
    /// The value, or an RE2 expression if `regex`.
    pub value: String,
    /// Whether `value` is a regular expression.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub regex: bool,
}

/// What a route does with a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// Send it upstream, split by weight.
    Forward {
        /// Clusters and their weights.
        backends: Vec<WeightedBackend>,
        /// Changes to host and path before forwarding.
        #[serde(skip_serializing_if = "Option::is_none")]
        rewrite: Option<Rewrite>,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly (e.g. 500 when no backend is valid, as the Gateway API requires).
    DirectResponse {
        /// Status code.
        status: u16,
        /// Body.
        body: String,
    },
}

/// A cluster and its share of traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WeightedBackend {
    /// The cluster.
    pub cluster: String,
    /// Relative weight.
    pub weight: u32,
}

/// Host and path rewrites.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// New Host header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// New path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

/// A path rewrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(String),
    /// Replace the matched prefix.
    Prefix(String),
}

/// A redirect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// New scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// New port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// New path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// 301 or 302.
    pub status: u16,
}

/// Header changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeaderChanges {
    /// Headers set, replacing any value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Headers added, keeping existing values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    /// Headers removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderChanges {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A token bucket: `tokens_per_fill` every `fill_interval_ms`, at most `max_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenBucket {
    /// The bucket's size (the burst).
    pub max_tokens: u32,
    /// Tokens added per interval.
    pub tokens_per_fill: u32,
    /// The interval.
    pub fill_interval_ms: u64,
}

/// A global rate limit: the descriptor Envoy sends Weir's rate-limit service. Its first
/// entry is always `weir.policy = <policy>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GlobalLimit {
    /// The TrafficPolicy, `namespace/name`.
    pub policy: String,
    /// What else the request is counted by, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<DescriptorAction>,
}

/// One descriptor entry Envoy fills in from the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DescriptorAction {
    /// The client's address (`remote_address`).
    RemoteAddress,
    /// A request header's value (`header.<name>`); a request without it is not limited.
    RequestHeader(String),
    /// A fixed value (`key`).
    Key(String),
}

/// Retries of failed requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Envoy's `retry_on` conditions, comma-separated.
    pub retry_on: String,
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Timeout per attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
}
