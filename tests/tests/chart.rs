//! The Helm chart (`charts/weir`), rendered by Helm's own library (`scripts/render-chart.py`,
//! helm-python-sdk in `.venv`) for the default values and each documented option, and
//! checked:
//! - every object parses as the Kubernetes type it claims, and loses nothing doing so (the
//!   typed object serializes back to the rendered one: a misspelt field fails);
//! - every flag and `WEIR_*` variable a Deployment passes is one `weir <subcommand> --help`
//!   lists, and the arguments parse as the binary would parse them;
//! - (RBAC: `chart_rbac.rs`);
//! - production settings: replicas, leader election, probes, resources, security context;
//! - the CRDs in the chart equal `crds/yaml/`; `values.schema.json` rejects bad values;
//! - the dashboard queries metrics Weir exports.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};
use weir_tests::chart::{render, render_ok, root};

mod chart_common;
use chart_common::{deployments, id, options};

/// Parses `object` as `T` and checks that serializing it back gives the same object.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let parsed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid {}: {e}", id(object), object["kind"]));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        &back,
        object,
        "{} loses or changes fields when read as its type (a misspelt field?)",
        id(object)
    );
    parsed
}

/// Checks an object against the type its apiVersion and kind claim.
fn check_type(object: &Value) {
    let api = object["apiVersion"].as_str().unwrap_or_default();
    match (api, object["kind"].as_str().unwrap_or_default()) {
        ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(object)),
        ("v1", "Service") => drop(typed::<Service>(object)),
        ("v1", "ConfigMap") => drop(typed::<ConfigMap>(object)),
        ("v1", "Secret") => drop(typed::<Secret>(object)),
        ("apps/v1", "Deployment") => drop(typed::<Deployment>(object)),
        ("policy/v1", "PodDisruptionBudget") => drop(typed::<PodDisruptionBudget>(object)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(typed::<ClusterRole>(object)),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            drop(typed::<ClusterRoleBinding>(object))
        }
        ("rbac.authorization.k8s.io/v1", "Role") => drop(typed::<Role>(object)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(typed::<RoleBinding>(object)),
        ("apiregistration.k8s.io/v1", "APIService") => drop(typed::<APIService>(object)),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            drop(typed::<
                k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            >(object))
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            // Not in k8s-openapi: the fields prometheus-operator defines that the chart uses.
            let spec = object["spec"].as_object().unwrap();
            for key in spec.keys() {
                assert!(
                    ["selector", "namespaceSelector", "endpoints"].contains(&key.as_str()),
                    "ServiceMonitor spec.{key}"
                );
            }
            for endpoint in object["spec"]["endpoints"].as_array().unwrap() {
                for key in endpoint.as_object().unwrap().keys() {
                    assert!(
                        ["port", "path", "interval"].contains(&key.as_str()),
                        "ServiceMonitor endpoint {key}"
                    );
                }
            }
        }
        (api, kind) => panic!("unexpected object {api} {kind}: {}", id(object)),
    }
}

#[test]
fn every_object_parses_as_the_type_it_claims_for_every_option() {
    for (name, values) in options() {
        let objects = render_ok(&values);
        assert!(!objects.is_empty(), "{name}: nothing rendered");
        for object in &objects {
            check_type(object);
        }
        let names: BTreeSet<String> = objects.iter().map(id).collect();
        assert_eq!(names.len(), objects.len(), "{name}: duplicate objects");
    }
}

/// Flags listed by `weir <subcommand> --help`, and its `[env: NAME=]` variables.
fn help(subcommand: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = weir_tests::weir()
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let flags = text
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect();
    let envs = text
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next().map(str::to_string))
        .collect();
    (flags, envs)
}

#[test]
fn every_flag_a_deployment_passes_is_one_weir_accepts() {
    let mut helps = BTreeMap::new();
    for (name, values) in options() {
        for deployment in deployments(&render_ok(&values)) {
            let pod = deployment.spec.template.spec.unwrap();
            let container = &pod.containers[0];
            let args = container.args.clone().unwrap();
            let subcommand = args[0].clone();
            let (flags, envs) = helps
                .entry(subcommand.clone())
                .or_insert_with(|| help(&subcommand));
            for arg in &args[1..] {
                let flag = arg.split('=').next().unwrap();
                assert!(
                    flags.contains(flag),
                    "{name}: `weir {subcommand}` has no {flag}"
                );
            }
            for env in container.env.iter().flatten() {
                assert!(
                    envs.contains(&env.name),
                    "{name}: `weir {subcommand}` reads no {}",
                    env.name
                );
            }
            // And the values parse as the binary parses them.
            let argv = std::iter::once("weir".to_string()).chain(args.iter().cloned());
            if let Err(e) = <weir::cli::Cli as clap::Parser>::try_parse_from(argv) {
                panic!("{name}: `weir {}` does not parse: {e}", args.join(" "));
            }
        }
    }
}

#[test]
fn deployments_are_production_ready_by_default() {
    let objects = render_ok(&json!({}));
    let deployments = deployments(&objects);
    let subcommands: BTreeSet<String> = deployments
        .iter()
        .map(|d| {
            d.spec.template.spec.as_ref().unwrap().containers[0]
                .args
                .as_ref()
                .unwrap()[0]
                .clone()
        })
        .collect();
    assert_eq!(
        subcommands,
        ["controllers", "metrics-adapter", "xds-server"]
            .map(String::from)
            .into()
    );
    for deployment in &deployments {
        let name = deployment.metadata.name.clone().unwrap();
        let spec = &deployment.spec;
        assert_eq!(spec.replicas, Some(2), "{name}");
        let pod = spec.template.spec.as_ref().unwrap();
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true), "{name}");
        assert_eq!(
            pod_security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let container = &pod.containers[0];
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(security.allow_privilege_escalation, Some(false), "{name}");
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()]),
            "{name}"
        );
        let resources = container.resources.as_ref().unwrap();
        assert!(
            resources.requests.is_some() && resources.limits.is_some(),
            "{name}"
        );
        let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(
            probe_path(&container.readiness_probe).as_deref(),
            Some("/readyz")
        );
        assert_eq!(
            probe_path(&container.liveness_probe).as_deref(),
            Some("/healthz")
        );
        let args = container.args.as_ref().unwrap();
        if args[0] != "metrics-adapter" {
            assert!(
                args.contains(&"--leader-elect=true".to_string()),
                "{name}: {args:?}"
            );
        }
        // A PodDisruptionBudget selects exactly these pods.
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        let pdb = objects
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .find(|o| {
                o["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            });
        assert!(pdb.is_some(), "{name}: no PodDisruptionBudget");
    }
    // The Services: xDS and rate limits (gRPC), the adapter behind its APIServices.
    let service_ports: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Service")
        .flat_map(|o| o["spec"]["ports"].as_array().unwrap().clone())
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    for port in ["grpc-xds", "grpc-ratelimit", "https", "admin"] {
        assert!(service_ports.contains(port), "no {port} Service port");
    }
    let api_services: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "APIService")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        api_services,
        [
            "v1beta1.custom.metrics.k8s.io",
            "v1beta2.custom.metrics.k8s.io",
            "v1beta1.external.metrics.k8s.io"
        ]
        .into()
    );
}

#[test]
fn options_change_what_they_say() {
    let find = |objects: &[Value], kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
    };
    let args = |objects: &[Value], deployment: &str| -> Vec<String> {
        let d = find(objects, "Deployment", deployment).unwrap();
        serde_json::from_value(d["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap()
    };
    let single =
        render_ok(&json!({"leaderElection": {"enabled": false}, "xdsServer": {"replicas": 1}}));
    assert!(args(&single, "weir-xds-server").contains(&"--leader-elect=false".into()));
    assert!(find(&single, "Role", "weir-xds-server-leader").is_none());
    assert!(find(&single, "PodDisruptionBudget", "weir-xds-server").is_none());

    let redis = render_ok(&json!({"xdsServer": {"rateLimit": {"redisUrl": "redis://r:6379/0"}}}));
    assert!(
        args(&redis, "weir-xds-server").contains(&"--rate-limit-redis-url=redis://r:6379/0".into())
    );
    assert!(
        !args(&render_ok(&json!({})), "weir-xds-server")
            .iter()
            .any(|a| a.starts_with("--rate-limit-redis-url"))
    );

    let ca = render_ok(
        &json!({"xdsServer": {"mesh": {"ca": {"secretName": "mesh-ca", "certificate": "C", "key": "K"}}}}),
    );
    let secret = find(&ca, "Secret", "mesh-ca").unwrap();
    assert_eq!(secret["data"]["ca.crt"], "Qw==");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(args(&ca, "weir-xds-server").contains(&"--ca-secret=weir-system/mesh-ca".into()));
    assert!(
        find(&render_ok(&json!({})), "Secret", "weir-ca").is_none(),
        "the xds-server creates it"
    );
    let missing_key = render(&json!({"xdsServer": {"mesh": {"ca": {"certificate": "C"}}}}));
    assert!(
        missing_key
            .unwrap_err()
            .contains("xdsServer.mesh.ca.key is required")
    );

    let monitored =
        render_ok(&json!({"serviceMonitor": {"enabled": true}, "dashboard": {"enabled": false}}));
    assert!(find(&monitored, "ServiceMonitor", "weir").is_some());
    assert!(find(&monitored, "ConfigMap", "weir-dashboard").is_none());

    let tls =
        render_ok(&json!({"metricsAdapter": {"tlsSecretName": "adapter-tls", "caBundle": "Y2E="}}));
    let api_service = find(&tls, "APIService", "v1beta2.custom.metrics.k8s.io").unwrap();
    assert_eq!(api_service["spec"]["caBundle"], "Y2E=");
    assert!(api_service["spec"].get("insecureSkipTLSVerify").is_none());

    // metrics.k8s.io only when asked for (metrics-server may own it), with the role that
    // lets viewers run `kubectl top`.
    let resource = render_ok(&json!({"metricsAdapter": {"resourceMetrics": {"apiService": true}}}));
    let metrics = find(&resource, "APIService", "v1beta1.metrics.k8s.io").unwrap();
    assert_eq!(metrics["spec"]["service"]["name"], "weir-metrics-adapter");
    let reader = find(
        &resource,
        "ClusterRole",
        "weir-metrics-adapter-resource-metrics-reader",
    )
    .unwrap();
    assert_eq!(
        reader["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert_eq!(reader["rules"][0]["apiGroups"][0], "metrics.k8s.io");
    let plain = render_ok(&json!({}));
    assert!(find(&plain, "APIService", "v1beta1.metrics.k8s.io").is_none());
    assert!(
        find(
            &plain,
            "ClusterRole",
            "weir-metrics-adapter-resource-metrics-reader"
        )
        .is_none()
    );
}

#[test]
fn the_schema_rejects_bad_values() {
    for (bad, field) in [
        (
            json!({"controllers": {"replicas": 0}}),
            "/controllers/replicas",
        ),
        (
            json!({"xdsServer": {"rateLimit": {"failureMode": "maybe"}}}),
            "/xdsServer/rateLimit/failureMode",
        ),
        (
            json!({"xdsServer": {"rateLimit": {"redisUrl": "http://redis"}}}),
            "/xdsServer/rateLimit/redisUrl",
        ),
        (
            json!({"controllers": {"meshTls": {"interval": "10 seconds"}}}),
            "/controllers/meshTls/interval",
        ),
        (
            json!({"controllers": {"metricsSource": "graphite"}}),
            "/controllers/metricsSource",
        ),
        (
            json!({"controllers": {"nodeAutoscaler": {"expander": "cheapest"}}}),
            "/controllers/nodeAutoscaler/expander",
        ),
        (
            json!({"prometheus": {"url": "prometheus:9090"}}),
            "/prometheus/url",
        ),
        (json!({"xdsServer": {"replica": 3}}), "/xdsServer"),
    ] {
        let error = render(&bad).expect_err(&format!("{bad} was accepted"));
        assert!(error.contains(field), "{bad}: {error}");
    }
}

#[test]
fn the_chart_crds_are_the_generated_ones() {
    let list = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    };
    let generated = list(&root().join("crds/yaml"));
    assert!(!generated.is_empty());
    assert_eq!(
        list(&root().join("charts/weir/crds")),
        generated,
        "charts/weir/crds differs from crds/yaml: cp crds/yaml/*.yaml charts/weir/crds/"
    );
}

#[test]
fn the_dashboard_queries_metrics_weir_exports() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/weir/dashboards/weir.json")).unwrap(),
    )
    .unwrap();
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("weir_") {
                    names.insert(word.to_string());
                }
            }
        }
    }
    assert!(names.len() > 10, "{names:?}");
    // Every family Weir registers, by its TYPE line, as the components export it.
    let sources: String = weir_tests::workspace_members()
        .iter()
        .map(|member| root().join(member).join("src"))
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| rust_files(&dir))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for name in names {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        // Registered as "weir_x", or as "x" under a "weir_<prefix>" sub-registry.
        let registered = sources.contains(&format!("\"{family}\""))
            || family.split_once('_').is_some_and(|(_, rest)| {
                rest.split_once('_').is_some_and(|(prefix, short)| {
                    sources.contains(&format!("\"weir_{prefix}\""))
                        && sources.contains(&format!("\"{short}\""))
                })
            });
        assert!(
            registered,
            "the dashboard queries {name}, which Weir does not export"
        );
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_injection_webhook_is_scoped_and_its_pods_get_least_privilege() {
    use clap::Parser;
    #[derive(Parser)]
    struct XdsServer {
        #[command(flatten)]
        telemetry: weir_runtime::args::TelemetryArgs,
        #[command(flatten)]
        args: weir_xds::args::XdsServerArgs,
    }
    for (name, values) in options() {
        let objects = render_ok(&values);
        let configs: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "MutatingWebhookConfiguration")
            .collect();
        let enabled = values["xdsServer"]["injection"]["enabled"] != false;
        assert_eq!(configs.len(), usize::from(enabled), "{name}");
        let Some(config) = configs.first() else {
            continue;
        };
        assert_eq!(
            config["metadata"]["name"], "weir-sidecar-injector",
            "{name}"
        );
        let webhooks = config["webhooks"].as_array().unwrap();
        assert_eq!(webhooks.len(), 2, "{name}");
        let failure = values["xdsServer"]["injection"]["failurePolicy"]
            .as_str()
            .unwrap_or("Fail");
        for hook in webhooks {
            assert_eq!(hook["sideEffects"], "None", "{name}");
            assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "{name}");
            assert_eq!(hook["failurePolicy"], failure, "{name}");
            assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 30, "{name}");
            assert_eq!(hook["clientConfig"]["service"]["path"], "/inject");
            assert_eq!(hook["rules"][0]["resources"], json!(["pods"]));
            assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
            // Never the control plane's own namespaces.
            let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
            assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
            assert_eq!(excluded["operator"], "NotIn");
            for ns in ["kube-system", "weir-system"] {
                assert!(
                    excluded["values"].as_array().unwrap().contains(&json!(ns)),
                    "{name}: {ns}"
                );
            }
        }
        // RBAC: the webhook configuration only by its name, only get and patch.
        let role = objects
            .iter()
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "weir-xds-server")
            .unwrap();
        let keep_bundle = values["xdsServer"]["injection"]["certSecretName"].is_null();
        let webhook_rules: Vec<&Value> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["resources"]
                    .to_string()
                    .contains("mutatingwebhookconfigurations")
            })
            .collect();
        assert_eq!(webhook_rules.len(), usize::from(keep_bundle), "{name}");
        if let Some(rule) = webhook_rules.first() {
            assert_eq!(
                rule["resourceNames"],
                json!(["weir-sidecar-injector"]),
                "{name}"
            );
            assert_eq!(rule["verbs"], json!(["get", "patch"]), "{name}");
        }
        // The injector, configured by the chart's flags, gives pods containers that hold
        // the same line as Weir's own: capture with NET_ADMIN and NET_RAW only.
        let xds = deployments(&objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some("weir-xds-server"))
            .unwrap();
        let container = &xds.spec.template.spec.unwrap().containers[0];
        let args = container.args.clone().unwrap();
        let parsed = XdsServer::try_parse_from(
            std::iter::once("weir".to_string()).chain(args[1..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = parsed.args.inject.config();
        let pod = json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {"containers": [{"name": "web", "image": "web"}]}});
        let weir_xds::inject::Outcome::Injected { pod, .. } =
            weir_xds::inject::inject(&pod, "shop", &config).unwrap()
        else {
            panic!("{name}: not injected");
        };
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
        // Only the agent holds the pod's token; Envoy reads its certificate from the agent.
        let init = pod.spec.as_ref().unwrap().init_containers.clone().unwrap();
        let mounts_token = |name: &str| {
            init.iter()
                .find(|c| c.name == name)
                .unwrap()
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == weir_xds::inject::TOKEN_VOLUME)
        };
        assert!(mounts_token(weir_xds::inject::AGENT_CONTAINER), "{name}");
        assert!(!mounts_token(weir_xds::inject::PROXY_CONTAINER), "{name}");
        for c in pod.spec.unwrap().init_containers.unwrap().iter().take(3) {
            let security = c.security_context.as_ref().unwrap();
            let caps = security.capabilities.as_ref().unwrap();
            assert_eq!(
                caps.drop,
                Some(vec!["ALL".to_string()]),
                "{name}: {}",
                c.name
            );
            let added = caps.add.clone().unwrap_or_default();
            if c.name == "weir-capture" {
                assert_eq!(added, ["NET_ADMIN", "NET_RAW"], "{name}");
            } else {
                assert!(
                    added.is_empty() && security.run_as_non_root == Some(true),
                    "{name}: {}",
                    c.name
                );
            }
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert!(
                c.resources
                    .as_ref()
                    .unwrap()
                    .limits
                    .as_ref()
                    .unwrap()
                    .contains_key("memory"),
                "{name}: {}",
                c.name
            );
            assert_eq!(
                c.image
                    .as_deref()
                    .map(|i| i.starts_with("ghcr.io/weir-io/weir-init")
                        || i.starts_with("envoyproxy/envoy")),
                Some(true),
                "{name}"
            );
        }
    }
}
