//! Kubelet probes under capture. The kubelet probes from the node, in plaintext, so a
//! Strict sidecar would refuse its HTTP, TCP and gRPC probes. The injector rewrites each to
//! an HTTP GET on the sidecar's plaintext health port, `/app-health/<container>/<kind>`,
//! and keeps the original in the `weir.io/original-probes` annotation; the sidecar's
//! bootstrap turns that annotation into routes that probe the application on loopback
//! (see `bootstrap::health_listener`), as Istio's `/app-health/<container>/<probe>` does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::capture::ports;

/// The original probes of a pod, by health path (`/app-health/web/readyz`).
pub type AppProbers = BTreeMap<String, AppProber>;

/// What one rewritten probe checked, with its port resolved to a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProber {
    /// An HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpProbe>,
    /// A TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<PortProbe>,
    /// A gRPC health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcProbe>,
    /// The probe's timeout (kubelet's default 1).
    #[serde(default = "one")]
    pub timeout_seconds: u32,
}

fn one() -> u32 {
    1
}

/// An HTTP GET probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Path (and query).
    pub path: String,
    /// The application port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub scheme: String,
    /// Extra request headers (name, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<(String, String)>,
}

/// A TCP probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortProbe {
    /// The application port.
    pub port: u16,
}

/// A gRPC probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcProbe {
    /// The application port.
    pub port: u16,
    /// The health service name (empty: the server as a whole).
    #[serde(default)]
    pub service: String,
}

/// Probe fields of a container, with the short kind used in health paths.
pub const PROBE_KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// The health path of a container's probe.
pub fn health_path(container: &str, kind: &str) -> String {
    format!("/app-health/{container}/{kind}")
}

/// A probe port: a number, or the name of one of the container's ports.
fn resolve_port(port: &Value, container: &Value) -> Option<u16> {
    match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => container["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// What `probe` (a container's probe, JSON) checks, if it is one the sidecar must stand in
/// for; `None` for exec probes and probes whose port cannot be resolved (those are left
/// alone).
pub fn original(probe: &Value, container: &Value) -> Option<AppProber> {
    let timeout_seconds = probe["timeoutSeconds"]
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .unwrap_or(1);
    let mut prober = AppProber {
        http_get: None,
        tcp_socket: None,
        grpc: None,
        timeout_seconds,
    };
    if let Some(http) = probe.get("httpGet") {
        let headers = http["httpHeaders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h["name"].as_str()?.into(), h["value"].as_str()?.into())))
            .collect();
        prober.http_get = Some(HttpProbe {
            path: http["path"].as_str().unwrap_or("/").to_string(),
            port: resolve_port(&http["port"], container)?,
            scheme: http["scheme"].as_str().unwrap_or("HTTP").to_uppercase(),
            http_headers: headers,
        });
    } else if let Some(tcp) = probe.get("tcpSocket") {
        prober.tcp_socket = Some(PortProbe {
            port: resolve_port(&tcp["port"], container)?,
        });
    } else if let Some(grpc) = probe.get("grpc") {
        prober.grpc = Some(GrpcProbe {
            port: resolve_port(&grpc["port"], container)?,
            service: grpc["service"].as_str().unwrap_or_default().to_string(),
        });
    } else {
        return None;
    }
    Some(prober)
}

/// `probe` with its handler replaced by a GET of `path` on the health port; timings kept.
pub fn rewritten(probe: &Value, path: &str) -> Value {
    let mut out = probe.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("httpGet");
        map.remove("tcpSocket");
        map.remove("grpc");
        map.insert(
            "httpGet".into(),
            json!({"path": path, "port": ports::HEALTH, "scheme": "HTTP"}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_resolve_named_ports_and_keep_their_settings() {
        let container = json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]});
        let http = json!({"httpGet": {"path": "/ready", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "periodSeconds": 5, "timeoutSeconds": 3});
        let p = original(&http, &container).unwrap();
        assert_eq!(
            p.http_get,
            Some(HttpProbe {
                path: "/ready".into(),
                port: 8080,
                scheme: "HTTP".into(),
                http_headers: vec![("X-Probe".into(), "1".into())]
            })
        );
        assert_eq!(p.timeout_seconds, 3);
        let r = rewritten(&http, &health_path("web", "readyz"));
        assert_eq!(
            r,
            json!({"httpGet": {"path": "/app-health/web/readyz", "port": 15021, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 3})
        );
        let tcp = json!({"tcpSocket": {"port": 9000}});
        assert_eq!(
            original(&tcp, &container).unwrap().tcp_socket,
            Some(PortProbe { port: 9000 })
        );
        let grpc = json!({"grpc": {"port": 9090, "service": "live"}});
        assert_eq!(
            original(&grpc, &container).unwrap().grpc.unwrap().port,
            9090
        );
        assert!(original(&json!({"exec": {"command": ["true"]}}), &container).is_none());
        assert!(original(&json!({"httpGet": {"port": "nope"}}), &container).is_none());
    }
}
