//! The Helm chart (`charts/weir`), rendered by Helm's own library (`scripts/render-chart.py`,
//! helm-python-sdk in `.venv`) for the default values and each documented option, and
//! checked:
//! - every object parses as the Kubernetes type it claims, and loses nothing doing so (the
//!   typed object serializes back to the rendered one: a misspelt field fails);
//! - every flag and `WEIR_*` variable a Deployment passes is one `weir <subcommand> --help`
//!   lists, and the arguments parse as the binary would parse them;
//! - the RBAC rules bound to each component cover every API call it makes
//!   (`weir::components`), and grant nothing it does not make;
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
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};
use weir::components::Component;
use weir_tests::chart::{render, render_ok, root};

/// The documented options (docs/install.md), each rendered on its own.
fn options() -> Vec<(&'static str, Value)> {
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

fn id(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

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

fn deployments(objects: &[Value]) -> Vec<Deployment> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
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

/// A rule grants `(group, resource, verb)`.
fn grants(rule: &PolicyRule, call: (&str, &str, &str)) -> bool {
    let (group, resource, verb) = call;
    let any = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|g| g == "*" || g == want)
    };
    // A call on "whichever kind the user configures" is covered by any rule of that shape.
    let group_ok = group == "*" || any(&rule.api_groups, group);
    let resource_ok = match resource {
        "*/scale" => rule
            .resources
            .iter()
            .flatten()
            .any(|r| r.ends_with("/scale")),
        _ => any(&rule.resources, resource),
    };
    group_ok && resource_ok && rule.verbs.iter().any(|v| v == "*" || v == verb)
}

/// Built-in ClusterRoles and Roles the chart binds, as Kubernetes defines them.
fn builtin(kind: &str, name: &str) -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    match (kind, name) {
        ("ClusterRole", "system:auth-delegator") => vec![
            rule("authentication.k8s.io", "tokenreviews", &["create"]),
            rule("authorization.k8s.io", "subjectaccessreviews", &["create"]),
        ],
        ("Role", "extension-apiserver-authentication-reader") => {
            vec![rule("", "configmaps", &["get", "list", "watch"])]
        }
        _ => Vec::new(),
    }
}

/// Every rule bound to the ServiceAccount `account` in `namespace`.
fn rules_of(objects: &[Value], namespace: &str, account: &str) -> Vec<PolicyRule> {
    let bound = |binding: &Value| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            })
    };
    let mut rules = Vec::new();
    for binding in objects
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("ClusterRoleBinding" | "RoleBinding")
            )
        })
        .filter(|b| bound(b))
    {
        let (kind, name) = (
            binding["roleRef"]["kind"].as_str().unwrap(),
            binding["roleRef"]["name"].as_str().unwrap(),
        );
        let defined = objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && (kind == "ClusterRole"
                    || o["metadata"]["namespace"] == binding["metadata"]["namespace"])
        });
        match defined {
            Some(role) => rules
                .extend(serde_json::from_value::<Vec<PolicyRule>>(role["rules"].clone()).unwrap()),
            None => {
                let known = builtin(kind, name);
                assert!(
                    !known.is_empty(),
                    "{} binds an unknown {kind} {name}",
                    id(binding)
                );
                rules.extend(known);
            }
        }
    }
    rules
}

/// The calls a component makes with these values.
fn calls_for(component: Component, values: &Value) -> Vec<weir::ApiCall> {
    let leader = values["leaderElection"]["enabled"] != false;
    let write_status = values["xdsServer"]["writeStatus"] != false;
    let provision = values["xdsServer"]["gateways"]["provision"] != false;
    let injection = &values["xdsServer"]["injection"];
    // The xds-server keeps the webhook's caBundle unless cert-manager's certificate is used.
    let keep_bundle = injection["enabled"] != false
        && injection["certSecretName"]
            .as_str()
            .unwrap_or_default()
            .is_empty();
    let metrics_apis = values["controllers"]["metricsSource"] == "kubernetes";
    let mesh_tls = values["controllers"]["meshTls"]["enabled"] != false;
    // Secrets are watched only in the namespaces that hold Gateway certificates.
    let certificate_namespaces = values["xdsServer"]["gateways"]["certificateNamespaces"]
        .as_array()
        .is_some_and(|ns| !ns.is_empty());
    component
        .api_calls()
        .into_iter()
        .filter(|c| leader || !weir_runtime::leader::API_CALLS.contains(c))
        // The xds-server elects a leader only to write status, keep the caBundle and
        // provision Gateways.
        .filter(|c| {
            component != Component::XdsServer
                || (write_status || !weir_xds::k8s::API_CALLS.contains(c))
                    && (write_status
                        || keep_bundle
                        || provision
                        || !weir_runtime::leader::API_CALLS.contains(c))
                    && (keep_bundle || !weir_xds::k8s::WEBHOOK_API_CALLS.contains(c))
                    && (provision || !weir_xds::gateway_provisioner::API_CALLS.contains(c))
        })
        .filter(|c| {
            component != Component::Controllers
                || metrics_apis
                || !weir_controllers::pod_autoscaler::metrics_apis::API_CALLS.contains(c)
        })
        .filter(|c| mesh_tls || *c != ("weir.io", "meshpolicies/status", "patch"))
        .filter(|c| {
            certificate_namespaces || !(c.1 == "secrets" && matches!(c.2, "list" | "watch"))
        })
        .collect()
}

#[test]
fn rbac_covers_every_call_each_component_makes_and_nothing_more() {
    for (name, values) in options() {
        let objects = render_ok(&values);
        for deployment in deployments(&objects) {
            let namespace = deployment.metadata.namespace.clone().unwrap();
            let pod = deployment.spec.template.spec.unwrap();
            let subcommand = pod.containers[0].args.as_ref().unwrap()[0].clone();
            let component = Component::ALL
                .into_iter()
                .find(|c| c.subcommand() == subcommand)
                .unwrap();
            let account = pod.service_account_name.unwrap();
            let rules = rules_of(&objects, &namespace, &account);
            let calls = calls_for(component, &values);
            for call in &calls {
                assert!(
                    rules.iter().any(|r| grants(r, *call)),
                    "{name}: {subcommand} calls {call:?}, which no rule bound to {account} allows"
                );
            }
            // Least privilege: everything granted is something the component does.
            for rule in &rules {
                for group in rule.api_groups.iter().flatten() {
                    for resource in rule.resources.iter().flatten() {
                        for verb in &rule.verbs {
                            let used = calls.iter().any(|(g, r, v)| {
                                (*g == group || *g == "*")
                                    && (*r == resource
                                        || (*r == "*/scale" && resource.ends_with("/scale")))
                                    && v == verb
                            });
                            // The built-in extension-apiserver-authentication-reader also
                            // grants list and watch; Weir only gets the ConfigMap.
                            let builtin_extra = resource == "configmaps" && verb != "get";
                            assert!(
                                used || builtin_extra,
                                "{name}: {account} may {verb} {group}/{resource}, which {subcommand} never does"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Whether `rule` lets its holder read Secrets (get, list or watch).
fn reads_secrets(rule: &Value) -> bool {
    let has = |field: &str, wanted: &[&str]| {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| wanted.contains(&v.as_str().unwrap_or_default()) || v == "*")
    };
    has("apiGroups", &[""])
        && has("resources", &["secrets"])
        && has("verbs", &["get", "list", "watch"])
}

#[test]
fn no_one_reads_secrets_cluster_wide_and_the_xds_server_only_where_certificates_are() {
    for (name, values) in options() {
        let objects = render_ok(&values);
        for role in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
            for rule in role["rules"].as_array().into_iter().flatten() {
                assert!(
                    !reads_secrets(rule),
                    "{name}: {} may read Secrets in every namespace: {rule}",
                    id(role)
                );
            }
        }
        let wanted: BTreeSet<String> = values["xdsServer"]["gateways"]["certificateNamespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let mut listed = BTreeSet::new();
        for role in objects.iter().filter(|o| o["kind"] == "Role") {
            let namespace = role["metadata"]["namespace"].as_str().unwrap().to_string();
            for rule in role["rules"].as_array().into_iter().flatten() {
                if !reads_secrets(rule) {
                    continue;
                }
                if rule["verbs"] == json!(["get"]) && namespace == "weir-system" {
                    // The mesh CA: by name only.
                    let ca = values["xdsServer"]["mesh"]["ca"]["secretName"]
                        .as_str()
                        .unwrap_or("weir-ca");
                    assert_eq!(rule["resourceNames"], json!([ca]), "{name}: {}", id(role));
                    continue;
                }
                assert_eq!(
                    rule["verbs"],
                    json!(["list", "watch"]),
                    "{name}: {}",
                    id(role)
                );
                listed.insert(namespace.clone());
            }
        }
        assert_eq!(
            listed, wanted,
            "{name}: namespaces whose Secrets are listed"
        );
        let xds = deployments(&objects)
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some("weir-xds-server"))
            .unwrap();
        let args = xds.spec.template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        let given: BTreeSet<String> = args
            .iter()
            .find_map(|a| a.strip_prefix("--secret-namespaces="))
            .unwrap_or_else(|| panic!("{name}: no --secret-namespaces"))
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(given, wanted, "{name}");
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
