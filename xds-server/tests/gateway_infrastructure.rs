//! Golden tests of what runs a Gateway in a cluster: GatewayClass, Gateway and
//! GatewayParameters in (`testdata/gateways/in/<case>.yaml`), ServiceAccount, Deployment,
//! Service, PodDisruptionBudget and ScalingPolicy out (`testdata/gateways/out/<case>.yaml`).
//! Every object must parse as its Kubernetes type (or pass the ScalingPolicy CRD's schema)
//! and meet the production checks the chart's own Deployments meet.
//! Regenerate with `WEIR_BLESS=1 cargo test -p weir-xds --test gateway_infrastructure`.

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

mod common;

use std::{fs, path::Path};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
};
use serde_json::Value;
use weir_crds::SchemaValidator;
use weir_store::{DirectoryIndex, Severity};
use weir_xds::gateway_infrastructure::{gateway_objects, parameters_for};

use common::inject_config as config;

fn state(case: &str) -> weir_store::ClusterState {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/testdata/gateways/in/{case}.yaml"));
    let mut index = DirectoryIndex::default();
    index.load_file(
        &path.display().to_string(),
        &fs::read_to_string(&path).unwrap(),
    );
    let (state, problems) = index.state();
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{case}: {errors:#?}");
    state
}

/// The objects for every Gateway of the case, as one YAML stream.
fn render(case: &str) -> (Vec<Value>, String) {
    let state = state(case);
    let mut objects = Vec::new();
    for (_, gateway) in state.gateways.iter() {
        let parameters = parameters_for(&state, gateway).unwrap();
        let rendered = gateway_objects(gateway, parameters.map(|p| &p.spec), &config()).unwrap();
        objects.extend(rendered.all().into_iter().cloned());
    }
    let mut yaml = String::new();
    for object in &objects {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(object).unwrap());
    }
    (objects, yaml)
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let parsed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", object["kind"]));
    // Nothing was dropped: a field the type does not know would be lost on the way back.
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(&back, object, "{} round trip", object["kind"]);
    parsed
}

/// The checks the chart test applies to Weir's own Deployments.
fn production_ready(deployment: &Deployment) {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    for container in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let c = container.security_context.as_ref().unwrap();
        assert_eq!(
            c.read_only_root_filesystem,
            Some(true),
            "{}",
            container.name
        );
        assert_eq!(
            c.allow_privilege_escalation,
            Some(false),
            "{}",
            container.name
        );
        assert_eq!(
            c.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert!(
            c.capabilities.as_ref().unwrap().add.is_none(),
            "{}",
            container.name
        );
        let resources = container.resources.as_ref().unwrap();
        assert!(
            resources.requests.is_some() && resources.limits.is_some(),
            "{}",
            container.name
        );
    }
    let envoy = &pod.containers[0];
    let readiness = envoy
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/healthz/ready"));
    assert!(envoy.liveness_probe.is_some());
}

fn check_case(case: &str) -> Vec<Value> {
    let (objects, yaml) = render(case);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/testdata/gateways/out/{case}.yaml"));
    if std::env::var_os("WEIR_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &yaml).unwrap();
    }
    assert!(
        fs::read_to_string(&path).unwrap_or_default() == yaml,
        "{} differs; run WEIR_BLESS=1 cargo test -p weir-xds --test gateway_infrastructure and review the diff",
        path.display()
    );
    let schemas = SchemaValidator::for_weir_crds();
    for object in &objects {
        match object["kind"].as_str().unwrap() {
            "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
            "Deployment" => production_ready(&typed::<Deployment>(object)),
            "Service" => drop(typed::<Service>(object)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
            "ScalingPolicy" => assert_eq!(schemas.validate(object), vec![]),
            other => panic!("unexpected {other}"),
        }
        // Owned by the Gateway, so deleting it deletes them.
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("Gateway"), Some(true))
        );
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn default_gateway() {
    let objects = check_case("default");
    let service = find(&objects, "Service").unwrap();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [80, 443], "one port per distinct listener port");
    let deployment = find(&objects, "Deployment").unwrap();
    assert_eq!(deployment["metadata"]["name"], "public-weir");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["initContainers"][0]["args"].to_string();
    assert!(
        args.contains("--role=gateway") && args.contains("--name=public"),
        "{args}"
    );
    assert!(find(&objects, "PodDisruptionBudget").is_some());
    assert!(find(&objects, "ScalingPolicy").is_none());
}

#[test]
fn parameters_from_the_class() {
    let objects = check_case("class-parameters");
    let deployment = find(&objects, "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["metadata"]["labels"]["team"], "shop");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["team"],
        "shop"
    );
    let envoy = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(envoy["image"], "registry.example.com/envoy:v1.40.0");
    assert_eq!(envoy["resources"]["requests"]["cpu"], "500m");
    let service = find(&objects, "Service").unwrap();
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(
        service["metadata"]["annotations"]["example.com/internal"],
        "true"
    );
    assert_eq!(
        service["metadata"]["annotations"]["example.com/owner"],
        "shop-team"
    );
}

#[test]
fn autoscaled_by_its_own_parameters() {
    let objects = check_case("autoscaling");
    let deployment = find(&objects, "Deployment").unwrap();
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "the ScalingPolicy owns the count"
    );
    let policy = find(&objects, "ScalingPolicy").unwrap();
    assert_eq!(policy["spec"]["targetRef"]["name"], "edge-weir");
    assert_eq!(policy["spec"]["minReplicas"], 2);
    assert_eq!(
        find(&objects, "Service").unwrap()["spec"]["type"],
        "ClusterIP"
    );
}

#[test]
fn bad_parameters_are_reported_not_guessed() {
    // The class points at GatewayParameters that do not exist.
    let mut state = state("autoscaling");
    let gateway = state.gateways.iter().next().unwrap().1.clone();
    let mut own_less = gateway.as_ref().clone();
    own_less.spec.infrastructure = None;
    let error = parameters_for(&state, &own_less).unwrap_err();
    assert_eq!(
        error,
        "GatewayClass spec.parametersRef: GatewayParameters weir-system/missing not found"
    );
    // A reference to another kind.
    let mut other = gateway.as_ref().clone();
    other
        .spec
        .infrastructure
        .as_mut()
        .unwrap()
        .parameters_ref
        .as_mut()
        .unwrap()
        .kind = "ConfigMap".into();
    let error = parameters_for(&state, &other).unwrap_err();
    assert!(
        error.starts_with("spec.infrastructure.parametersRef: weir.io/ConfigMap"),
        "{error}"
    );
    // No uid: not from an API server, nothing to own the objects.
    let mut local = gateway.as_ref().clone();
    local.metadata.uid = None;
    assert!(
        gateway_objects(&local, None, &config())
            .unwrap_err()
            .contains("uid")
    );
    state.gateways = Default::default();
}
