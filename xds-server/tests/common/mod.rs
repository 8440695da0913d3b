//! What the xds-server's integration tests share.

use weir_xds::inject::{InjectConfig, ProxyResources};

/// What injected sidecars and provisioned gateway Envoys are built from, as the chart
/// sets it by default for a release `weir` in `weir-system`.
pub fn inject_config() -> InjectConfig {
    InjectConfig {
        proxy_image: "envoyproxy/envoy:v1.40.0".into(),
        init_image: "ghcr.io/weir-io/weir:0.1.0".into(),
        image_pull_policy: "IfNotPresent".into(),
        xds_addr: "weir-xds-server.weir-system.svc:18000".into(),
        rate_limit_addr: "weir-xds-server.weir-system.svc:18081".into(),
        ca_root_pem: "-----BEGIN CERTIFICATE-----\nMESHROOT\n-----END CERTIFICATE-----\n".into(),
        resources: ProxyResources {
            cpu: Some("100m".into()),
            memory: Some("128Mi".into()),
            cpu_limit: None,
            memory_limit: Some("1Gi".into()),
        },
    }
}
