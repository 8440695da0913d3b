//! The in-cluster components, what each watches and every Kubernetes API call it makes:
//! the source of truth the Helm chart's RBAC is checked against (`tests/tests/chart.rs`).

use weir_store::Kind;

use weir_runtime::{ApiCall, sources::kube::watch_calls};

/// An in-cluster component (a `weir` subcommand, one Deployment in the chart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `weir xds-server`.
    XdsServer,
    /// `weir controllers`.
    Controllers,
    /// `weir metrics-adapter`.
    MetricsAdapter,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 3] = [
        Component::XdsServer,
        Component::Controllers,
        Component::MetricsAdapter,
    ];

    /// Its `weir` subcommand.
    pub fn subcommand(self) -> &'static str {
        match self {
            Component::XdsServer => "xds-server",
            Component::Controllers => "controllers",
            Component::MetricsAdapter => "metrics-adapter",
        }
    }

    /// The kinds it watches.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Component::XdsServer => weir_xds::k8s::KINDS,
            Component::Controllers => weir_controllers::KINDS,
            Component::MetricsAdapter => weir_metrics_adapter::run::KINDS,
        }
    }

    /// Every API call it can make, with every option on: `(group, resource, verb)`. A
    /// group or resource `*` means "whichever the user points it at" (scale subresources
    /// of any workload kind, any metric).
    pub fn api_calls(self) -> Vec<ApiCall> {
        let mut calls = watch_calls(self.kinds());
        let modules: &[&[ApiCall]] = match self {
            Component::XdsServer => &[
                weir_runtime::leader::API_CALLS,
                weir_xds::k8s::API_CALLS,
                weir_xds::k8s::CA_API_CALLS,
                weir_xds::k8s::WEBHOOK_API_CALLS,
                weir_xds::gateway_provisioner::API_CALLS,
                // Proxies' agents prove their pod's identity with its token.
                weir_runtime::token_review::API_CALLS,
            ],
            Component::Controllers => &[
                weir_runtime::leader::API_CALLS,
                weir_controllers::pod_autoscaler::k8s::API_CALLS,
                weir_controllers::pod_autoscaler::metrics_apis::API_CALLS,
                weir_controllers::node_autoscaler::k8s::API_CALLS,
                weir_controllers::mesh_tls::k8s::API_CALLS,
            ],
            Component::MetricsAdapter => &[
                weir_runtime::token_review::API_CALLS,
                weir_metrics_adapter::auth::API_CALLS,
            ],
        };
        calls.extend(modules.iter().flat_map(|m| m.iter().copied()));
        calls.sort_unstable();
        calls.dedup();
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_leases_only_if_it_elects_and_lists_what_it_watches() {
        let xds = Component::XdsServer.api_calls();
        assert!(xds.contains(&("", "secrets", "watch")));
        assert!(xds.contains(&("coordination.k8s.io", "leases", "update")));
        let controllers = Component::Controllers.api_calls();
        assert!(!controllers.iter().any(|c| c.1 == "secrets"));
        assert!(controllers.contains(&("weir.io", "meshpolicies/status", "patch")));
        let adapter = Component::MetricsAdapter.api_calls();
        assert!(!adapter.iter().any(|c| c.1 == "leases"));
        assert!(adapter.contains(&("authentication.k8s.io", "tokenreviews", "create")));
    }
}
