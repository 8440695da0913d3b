//! The Helm chart's RBAC, for the default values and each documented option: the rules
//! bound to each component cover every API call it makes (`weir::components`) and grant
//! nothing it does not make; no ClusterRole reads Secrets, and the xds-server reads them
//! only in the namespaces that hold Gateway certificates.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};
use weir::components::Component;
use weir_tests::chart::render_ok;

mod chart_common;
use chart_common::{deployments, id, options};

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
