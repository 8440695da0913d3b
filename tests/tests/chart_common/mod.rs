//! What the chart tests share: the documented options and helpers to read what renders.

#![allow(dead_code)] // each test file uses its part

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

/// The documented options (docs/install.md), each rendered on its own.
pub fn options() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "single replica, no leader election",
            json!({
                "leaderElection": {"enabled": false},
                "xdsServer": {"replicas": 1}, "controllers": {"replicas": 1}, "metricsAdapter": {"replicas": 1},
            }),
        ),
        (
            "controllers on the Kubernetes metrics APIs",
            json!({"controllers": {"metricsSource": "kubernetes"}}),
        ),
        (
            "prometheus-adapter rules, shared with the autoscaler",
            json!({
                "controllers": {"metricsSource": "rules"},
                "metricsAdapter": {"rules": {"rules": [{"seriesQuery": "http_requests_total", "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"}]}},
            }),
        ),
        (
            "resource metrics API from the adapter",
            json!({"metricsAdapter": {"resourceMetrics": {"apiService": true}}}),
        ),
        (
            "adapter serving certificate",
            json!({"metricsAdapter": {"tlsSecretName": "adapter-tls", "caBundle": "Y2E="}}),
        ),
        (
            "Redis for global limits",
            json!({"xdsServer": {"rateLimit": {"redisUrl": "redis://redis.weir-system:6379/0", "failureMode": "deny", "redisTimeout": "250ms"}}}),
        ),
        (
            "Redis URL from a Secret",
            json!({"xdsServer": {"rateLimit": {"redisUrlSecret": {"name": "redis", "key": "url"}}}}),
        ),
        (
            "your own mesh CA",
            json!({"xdsServer": {"mesh": {"trustDomain": "prod.example", "workloadCertLifetime": "12h", "ca": {
            "secretName": "mesh-ca", "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}}}}),
        ),
        (
            "no Gateway API status",
            json!({"xdsServer": {"writeStatus": false}}),
        ),
        (
            "no Gateway provisioning, no status, no injection (no leader)",
            json!({"xdsServer": {"gateways": {"provision": false}, "writeStatus": false, "injection": {"enabled": false}}}),
        ),
        (
            "mesh-TLS controller off",
            json!({"controllers": {"meshTls": {"enabled": false}}}),
        ),
        (
            "node autoscaler settings",
            json!({"controllers": {"nodeAutoscaler": {"expander": "least-waste,price", "maxNodesTotal": 50, "balanceSimilarNodeGroups": true, "scaleDownUtilizationThreshold": 0.6}}}),
        ),
        (
            "ServiceMonitor, no dashboard",
            json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}, "dashboard": {"enabled": false}}),
        ),
        (
            "only the xds-server",
            json!({"controllers": {"enabled": false}, "metricsAdapter": {"enabled": false}}),
        ),
        (
            "no sidecar injection",
            json!({"xdsServer": {"injection": {"enabled": false}}}),
        ),
        (
            "injection with cert-manager's certificate, failing open",
            json!({"xdsServer": {"injection": {"certSecretName": "weir-webhook-tls", "certManagerCertificate": "weir-system/weir-webhook", "failurePolicy": "Ignore", "timeoutSeconds": 5,
                   "proxyResources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}}}}),
        ),
        (
            "Gateway certificates in two namespaces",
            json!({"xdsServer": {"gateways": {"certificateNamespaces": ["shop", "edge-certs"]}}}),
        ),
        (
            "placement and pull secrets",
            json!({"imagePullSecrets": [{"name": "regcred"}], "xdsServer": {"nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}),
        ),
    ]
}

pub fn id(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The Deployments among `objects`.
pub fn deployments(objects: &[Value]) -> Vec<Deployment> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}
