//! What runs a Gateway in a cluster: for each Gateway of Weir's class, a ServiceAccount,
//! a Deployment of Envoy, a Service exposing its listeners, a PodDisruptionBudget when
//! more than one Envoy runs, and a ScalingPolicy when its parameters ask for autoscaling.
//! Pure: Gateway (+ its [`GatewayParameters`]) in, the objects out, as JSON ready for
//! server-side apply; the reconciler applies them.
//!
//! The objects are named `<gateway>-<class>` (GEP-1762's convention, shortened with a
//! hash past 63 characters), labelled `gateway.networking.k8s.io/gateway-name`, carry
//! `spec.infrastructure`'s labels and annotations, and are owned by the Gateway, so
//! deleting it deletes them. The Envoy pods are built like injected sidecars: `weir
//! bootstrap` writes the bootstrap in an init container (node id
//! `gateway~<gateway>.<namespace>`), Envoy runs unprivileged with a read-only root, every
//! capability dropped, readiness on Envoy's own `/healthz/ready`, ports below 1024 opened
//! by the `net.ipv4.ip_unprivileged_port_start` sysctl rather than a capability.
//!
//! Parameters: `spec.infrastructure.parametersRef` of the Gateway (in its namespace), else
//! `spec.parametersRef` of its GatewayClass; a reference to something missing or of
//! another kind is an error the Gateway's status reports (`InvalidParameters`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weir_crds::{
    GatewayParameters,
    gateway_api::{Gateway, ParametersReference},
    gateway_parameters::{ExternalTrafficPolicy, GatewayParametersSpec, GatewayServiceType},
};
use weir_store::{ClusterState, ObjectKey};

use crate::{
    capture::{PROXY_UID, ports},
    inject::{
        AGENT_DIR, BOOTSTRAP_DIR, BOOTSTRAP_VOLUME, InjectConfig, agent_container, init_resources,
        proxy_mounts, proxy_resources, proxy_volumes, security_context,
    },
};

/// GEP-1762's label naming the Gateway on what runs it.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Envoy replicas when the parameters say nothing.
pub const DEFAULT_REPLICAS: i32 = 2;
/// Envoy's container in the gateway pods.
pub const ENVOY_CONTAINER: &str = "envoy";

/// Everything that runs one Gateway, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayObjects {
    /// The pods' ServiceAccount (no API token mounted).
    pub service_account: Value,
    /// Envoy.
    pub deployment: Value,
    /// The listeners' ports.
    pub service: Value,
    /// With more than one Envoy: at most one unavailable at a time.
    pub pod_disruption_budget: Option<Value>,
    /// With `autoscaling` in the parameters.
    pub scaling_policy: Option<Value>,
}

impl GatewayObjects {
    /// The objects, in apply order.
    pub fn all(&self) -> Vec<&Value> {
        let mut all = vec![&self.service_account, &self.deployment, &self.service];
        all.extend(self.pod_disruption_budget.as_ref());
        all.extend(self.scaling_policy.as_ref());
        all
    }
}

/// The name of what runs `gateway` of `class`: `<gateway>-<class>`, or past 63
/// characters its first 54 and a hash of the whole.
pub fn infrastructure_name(gateway: &str, class: &str) -> String {
    let full = format!("{gateway}-{class}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across releases and platforms, which std's hasher is not.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head = full[..54].trim_end_matches('-');
    format!("{head}-{:08x}", hash as u32)
}

/// The parameters that apply to `gateway`: its own `infrastructure.parametersRef`, else
/// its class's `parametersRef`; `Ok(None)` when neither is set.
pub fn parameters_for<'a>(
    state: &'a ClusterState,
    gateway: &Gateway,
) -> Result<Option<&'a GatewayParameters>, String> {
    let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let own = gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
        .map(|r| ("spec.infrastructure.parametersRef", r, Some(namespace)));
    let class = state
        .gateway_classes
        .get(&ObjectKey::cluster(
            gateway.spec.gateway_class_name.as_str(),
        ))
        .and_then(|c| c.spec.parameters_ref.as_ref())
        .map(|r| ("GatewayClass spec.parametersRef", r, r.namespace.as_deref()));
    let Some((field, reference, namespace)) = own.or(class) else {
        return Ok(None);
    };
    lookup(state, field, reference, namespace).map(Some)
}

fn lookup<'a>(
    state: &'a ClusterState,
    field: &str,
    reference: &ParametersReference,
    namespace: Option<&str>,
) -> Result<&'a GatewayParameters, String> {
    if reference.group != weir_crds::GROUP || reference.kind != "GatewayParameters" {
        return Err(format!(
            "{field}: {}/{} is not a {}/GatewayParameters",
            reference.group,
            reference.kind,
            weir_crds::GROUP
        ));
    }
    let namespace = namespace.ok_or_else(|| format!("{field}: namespace is required"))?;
    state
        .gateway_parameters
        .get(&ObjectKey::namespaced(namespace, &reference.name))
        .map(AsRef::as_ref)
        .ok_or_else(|| {
            format!(
                "{field}: GatewayParameters {namespace}/{} not found",
                reference.name
            )
        })
}

/// What the schema cannot say about GatewayParameters: `Err` names the field.
pub fn check_parameters(spec: &GatewayParametersSpec) -> Result<(), String> {
    if let Some(a) = &spec.autoscaling
        && a.max_replicas < a.min_replicas
    {
        return Err("autoscaling.maxReplicas must be at least minReplicas".into());
    }
    if let Some(service) = &spec.service
        && service.external_traffic_policy.is_some()
        && service.type_ == Some(GatewayServiceType::ClusterIP)
    {
        return Err(
            "service.externalTrafficPolicy needs a NodePort or LoadBalancer Service".into(),
        );
    }
    Ok(())
}

/// The objects that run `gateway` with `parameters`, the pods built from `config` (the
/// same images, addresses and default resources as injected sidecars).
pub fn gateway_objects(
    gateway: &Gateway,
    parameters: Option<&GatewayParametersSpec>,
    config: &InjectConfig,
) -> Result<GatewayObjects, String> {
    let gateway_name = gateway
        .metadata
        .name
        .as_deref()
        .ok_or("the Gateway has no name")?;
    let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let uid = gateway
        .metadata
        .uid
        .as_deref()
        .ok_or("the Gateway has no uid (not read from an API server)")?;
    let default_parameters = GatewayParametersSpec::default();
    let parameters = parameters.unwrap_or(&default_parameters);
    check_parameters(parameters)?;
    let name = infrastructure_name(gateway_name, &gateway.spec.gateway_class_name);
    let selector = json!({
        GATEWAY_NAME_LABEL: gateway_name,
        "app.kubernetes.io/name": "weir-gateway",
        "app.kubernetes.io/instance": name,
    });
    let infrastructure = gateway.spec.infrastructure.clone().unwrap_or_default();
    let mut labels: Map<String, Value> = infrastructure
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.extend(selector.as_object().cloned().unwrap_or_default());
    labels.insert("app.kubernetes.io/managed-by".into(), json!("weir"));
    let annotations = &infrastructure.annotations;
    let metadata = |extra_annotations: &BTreeMap<String, String>| {
        let mut all = annotations.clone();
        all.extend(extra_annotations.clone());
        let mut metadata = json!({
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "name": gateway_name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        });
        if !all.is_empty() {
            metadata["annotations"] = json!(all);
        }
        metadata
    };

    // One container and Service port per distinct listener port.
    let mut listener_ports: BTreeMap<u16, String> = BTreeMap::new();
    for listener in &gateway.spec.listeners {
        listener_ports
            .entry(listener.port)
            .or_insert_with(|| format!("{}-{}", listener.protocol.to_lowercase(), listener.port));
    }
    if listener_ports.is_empty() {
        return Err("the Gateway has no listeners".into());
    }

    let autoscaling = parameters.autoscaling.as_ref();
    let replicas = match autoscaling {
        Some(a) => a.min_replicas.max(parameters.replicas.unwrap_or(0)),
        None => parameters.replicas.unwrap_or(DEFAULT_REPLICAS),
    };
    let resources = match &parameters.resources {
        Some(r) => serde_json::to_value(r).map_err(|e| format!("resources: {e}"))?,
        None => proxy_resources(config, &|_| None)?,
    };
    let mut container_ports: Vec<Value> = listener_ports
        .iter()
        .map(|(port, name)| json!({"name": name, "containerPort": port, "protocol": "TCP"}))
        .collect();
    container_ports
        .push(json!({"name": "weir-stats", "containerPort": ports::STATS, "protocol": "TCP"}));
    container_ports
        .push(json!({"name": "weir-health", "containerPort": ports::HEALTH, "protocol": "TCP"}));
    let field = |env: &str, path: &str| json!({"name": env, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let bootstrap = json!({
        "name": "weir-bootstrap",
        "image": config.init_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["weir"],
        "args": [
            "bootstrap", "--role=gateway", format!("--name={gateway_name}"), "--namespace=$(POD_NAMESPACE)",
            format!("--xds-addr={}", config.xds_addr),
            format!("--rate-limit-addr={}", config.rate_limit_addr),
            format!("--admin-port={}", ports::ADMIN),
            format!("--stats-port={}", ports::STATS),
            format!("--health-port={}", ports::HEALTH),
            format!("--agent-socket={AGENT_DIR}/agent.sock"),
            format!("--output={BOOTSTRAP_DIR}/envoy.yaml"),
        ],
        "env": [field("POD_NAMESPACE", "metadata.namespace")],
        "volumeMounts": [{"name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR}],
        "resources": init_resources(),
        "securityContext": security_context(PROXY_UID, &[]),
    });
    let envoy = json!({
        "name": ENVOY_CONTAINER,
        "image": parameters.image.as_deref().unwrap_or(&config.proxy_image),
        "imagePullPolicy": config.image_pull_policy,
        "command": ["envoy"],
        "args": ["-c", format!("{BOOTSTRAP_DIR}/envoy.yaml"), "--log-level", "warn", "--disable-hot-restart"],
        "ports": container_ports,
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": ports::HEALTH, "scheme": "HTTP"},
            "periodSeconds": 2, "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": ports::HEALTH},
            "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 3,
        },
        "volumeMounts": proxy_mounts(),
        "resources": resources,
        "securityContext": security_context(PROXY_UID, &[]),
    });
    let spread = |key: &str| {
        json!({
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        })
    };
    let mut pod_annotations = annotations.clone();
    pod_annotations.extend([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), ports::STATS.to_string()),
        (
            "prometheus.io/path".to_string(),
            "/stats/prometheus".to_string(),
        ),
    ]);
    let mut deployment_spec = json!({
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": labels, "annotations": pod_annotations},
            "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": PROXY_UID,
                    "runAsGroup": PROXY_UID,
                    "fsGroup": PROXY_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                    // Listeners on ports below 1024 without NET_BIND_SERVICE.
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                },
                "initContainers": [
                    bootstrap,
                    agent_container(config, &format!("gateway~{gateway_name}.$(POD_NAMESPACE)")),
                ],
                "containers": [envoy],
                "terminationGracePeriodSeconds": 30,
                "topologySpreadConstraints": [
                    spread("kubernetes.io/hostname"),
                    spread("topology.kubernetes.io/zone"),
                ],
                "volumes": proxy_volumes(),
            },
        },
    });
    // With autoscaling the ScalingPolicy owns the count: applying one here would undo it.
    if autoscaling.is_none() {
        deployment_spec["replicas"] = json!(replicas);
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(&BTreeMap::new()),
        "spec": deployment_spec,
    });

    let service_parameters = parameters.service.clone().unwrap_or_default();
    let service_type = service_parameters
        .type_
        .unwrap_or(GatewayServiceType::LoadBalancer);
    let mut service_spec = json!({
        "type": match service_type {
            GatewayServiceType::ClusterIP => "ClusterIP",
            GatewayServiceType::NodePort => "NodePort",
            GatewayServiceType::LoadBalancer => "LoadBalancer",
        },
        "selector": selector,
        "ports": listener_ports.iter().map(|(port, name)| json!({
            "name": name, "port": port, "targetPort": port, "protocol": "TCP",
        })).collect::<Vec<_>>(),
    });
    if let Some(policy) = service_parameters.external_traffic_policy {
        service_spec["externalTrafficPolicy"] = json!(match policy {
            ExternalTrafficPolicy::Cluster => "Cluster",
            ExternalTrafficPolicy::Local => "Local",
        });
    }
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&service_parameters.annotations),
        "spec": service_spec,
    });
    let service_account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(&BTreeMap::new()),
        "automountServiceAccountToken": false,
    });
    let pod_disruption_budget = (replicas > 1).then(|| {
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(&BTreeMap::new()),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        })
    });
    let scaling_policy = match autoscaling {
        None => None,
        Some(a) => {
            // Requests the Envoys served, by pod name (the Deployment's pods), as
            // Prometheus scraping their stats port labels them.
            let query = format!(
                "sum(rate(envoy_http_downstream_rq_total{{namespace=\"{namespace}\", pod=~\"{}-[a-z0-9]+-[a-z0-9]+\"}}[1m]))",
                name.replace('.', "\\\\.")
            );
            Some(json!({
                "apiVersion": "weir.io/v1alpha1",
                "kind": "ScalingPolicy",
                "metadata": metadata(&BTreeMap::new()),
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": a.min_replicas,
                    "maxReplicas": a.max_replicas,
                    "metrics": [{"type": "Prometheus", "prometheus": {
                        "query": query,
                        "target": {"type": "AverageValue", "averageValue": a.target_requests_per_second.to_string()},
                    }}],
                },
            }))
        }
    };
    Ok(GatewayObjects {
        service_account,
        deployment,
        service,
        pod_disruption_budget,
        scaling_policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_with_a_hash() {
        assert_eq!(infrastructure_name("public", "weir"), "public-weir");
        let long = "g".repeat(70);
        let a = infrastructure_name(&long, "weir");
        let b = infrastructure_name(&format!("{long}x"), "weir");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, infrastructure_name(&long, "weir"), "stable");
    }
}
