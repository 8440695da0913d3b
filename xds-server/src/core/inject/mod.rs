//! Sidecar injection: a Pod (as the API server sends it in an AdmissionReview) → the
//! JSONPatch that meshes it. Pure: the webhook server and `weir up` call [`review`].
//!
//! Which pods: the webhook configuration's selectors send the pods of namespaces labelled
//! `weir.io/inject=enabled` and pods labelled `weir.io/inject: "true"`; here a pod is
//! skipped when its label says `"false"`, when it uses the host's network (capture would
//! rewrite the node's iptables), or when it already has Weir's sidecar (so a second pass,
//! `reinvocationPolicy: IfNeeded`, changes nothing).
//!
//! What a meshed pod gets, all prepended so they run first:
//! - `weir-capture`, an init container running `weir capture` with NET_ADMIN and NET_RAW
//!   only, which steers the pod's TCP through the sidecar (see [`crate::capture`]);
//! - `weir-bootstrap`, an init container running `weir bootstrap` unprivileged, which
//!   writes the Envoy bootstrap for this pod into an in-memory volume;
//! - `weir-agent`, the identity agent (`weir agent`) as a native sidecar: it generates the
//!   pod's key, has it certified with the pod's projected ServiceAccount token (audience
//!   `weir`, mounted into it alone) and serves it to Envoy over a Unix socket in an
//!   in-memory volume; the key never leaves the pod;
//! - `weir-proxy`, Envoy as a native sidecar (an init container with
//!   `restartPolicy: Always`: it starts before the application and does not keep a Job's
//!   pod alive), as uid [`crate::capture::PROXY_UID`], with a readiness probe on the health
//!   port and `/stats/prometheus` on the statistics port;
//! - the label `weir.io/sidecar: "true"`, Prometheus scrape annotations, and the
//!   application's HTTP, TCP and gRPC probes rewritten to the sidecar's health port
//!   ([`probes`]).

pub mod probes;
pub mod review;

use serde_json::{Map, Value, json};

use crate::capture::{self, CaptureSpec, PROXY_UID, ports};
use crate::translate::mesh::SIDECAR_LABEL;

/// The pod label that opts a pod in (`"true"`) or out (`"false"`), whatever its namespace.
pub const INJECT_LABEL: &str = "weir.io/inject";
/// The Envoy sidecar's container name.
pub const PROXY_CONTAINER: &str = "weir-proxy";
/// The init container that installs the capture rules.
pub const CAPTURE_CONTAINER: &str = "weir-capture";
/// The init container that writes the Envoy bootstrap.
pub const BOOTSTRAP_CONTAINER: &str = "weir-bootstrap";
/// The in-memory volume holding the bootstrap.
pub const BOOTSTRAP_VOLUME: &str = "weir-envoy";
/// Where the bootstrap volume is mounted.
pub const BOOTSTRAP_DIR: &str = "/etc/weir";
/// The identity agent's container name.
pub const AGENT_CONTAINER: &str = "weir-agent";
/// The in-memory volume holding the agent's socket.
pub const AGENT_VOLUME: &str = "weir-agent";
/// Where the agent's volume is mounted (the socket is `agent.sock` there).
pub const AGENT_DIR: &str = "/var/run/weir";
/// The projected token volume.
pub const TOKEN_VOLUME: &str = "weir-token";
/// Where the token volume is mounted (the token is the file `token`).
pub const TOKEN_DIR: &str = "/var/run/secrets/weir/tokens";
/// The audience of the projected ServiceAccount token.
pub const TOKEN_AUDIENCE: &str = "weir";

/// Per-pod annotations (Istio's equivalents in brackets).
pub mod annotations {
    /// Inbound ports not captured (`traffic.sidecar.istio.io/excludeInboundPorts`).
    pub const EXCLUDE_INBOUND_PORTS: &str = "weir.io/exclude-inbound-ports";
    /// Capture only these inbound ports (`traffic.sidecar.istio.io/includeInboundPorts`).
    pub const INCLUDE_INBOUND_PORTS: &str = "weir.io/include-inbound-ports";
    /// Outbound ports not captured (`traffic.sidecar.istio.io/excludeOutboundPorts`).
    pub const EXCLUDE_OUTBOUND_PORTS: &str = "weir.io/exclude-outbound-ports";
    /// Outbound CIDRs not captured (`traffic.sidecar.istio.io/excludeOutboundIPRanges`).
    pub const EXCLUDE_OUTBOUND_CIDRS: &str = "weir.io/exclude-outbound-cidrs";
    /// The sidecar's CPU request (`sidecar.istio.io/proxyCPU`).
    pub const PROXY_CPU: &str = "weir.io/proxy-cpu";
    /// The sidecar's memory request (`sidecar.istio.io/proxyMemory`).
    pub const PROXY_MEMORY: &str = "weir.io/proxy-memory";
    /// The sidecar's CPU limit (`sidecar.istio.io/proxyCPULimit`).
    pub const PROXY_CPU_LIMIT: &str = "weir.io/proxy-cpu-limit";
    /// The sidecar's memory limit (`sidecar.istio.io/proxyMemoryLimit`).
    pub const PROXY_MEMORY_LIMIT: &str = "weir.io/proxy-memory-limit";
    /// Set by the injector: the probes it rewrote, as JSON by health path.
    pub const ORIGINAL_PROBES: &str = "weir.io/original-probes";
}

/// The sidecar's CPU and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyResources {
    /// CPU request, e.g. `100m`.
    pub cpu: Option<String>,
    /// Memory request, e.g. `128Mi`.
    pub memory: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// Memory limit.
    pub memory_limit: Option<String>,
}

/// How pods are injected: the same for every pod (per-pod settings are annotations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectConfig {
    /// Envoy's image.
    pub proxy_image: String,
    /// Weir's image, for `weir capture` and `weir bootstrap`.
    pub init_image: String,
    /// Image pull policy of the injected containers.
    pub image_pull_policy: String,
    /// The xds-server as sidecars reach it, `host:port`.
    pub xds_addr: String,
    /// The rate-limit service as sidecars reach it, `host:port`.
    pub rate_limit_addr: String,
    /// Default sidecar resources (annotations override each).
    pub resources: ProxyResources,
    /// The mesh's roots (PEM), which agents trust the xds-server by: given inline, as
    /// they are public and change only with the CA (pods injected before a root change
    /// get the new roots from the xds-server with their next certificate).
    pub ca_root_pem: String,
}

/// Why a pod was left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `weir.io/inject: "false"`.
    OptedOut,
    /// `hostNetwork: true`.
    HostNetwork,
    /// The sidecar is already there.
    AlreadyInjected,
}

impl Skip {
    /// A short reason, for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::OptedOut => "opted-out",
            Skip::HostNetwork => "host-network",
            Skip::AlreadyInjected => "already-injected",
        }
    }
}

/// The injector's answer for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Left alone.
    Skipped(Skip),
    /// Meshed: the patch, and the pod it gives.
    Injected {
        /// RFC 6902 operations on the pod as sent.
        patch: json_patch::Patch,
        /// The pod after the patch.
        pod: Value,
    },
}

/// A pod the injector refuses, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pod {pod}: {message}")]
pub struct InjectError {
    /// `namespace/name` (or `namespace/generateName*`).
    pub pod: String,
    /// What is wrong, naming the annotation or field.
    pub message: String,
}

fn pod_name(pod: &Value, namespace: &str) -> String {
    let meta = &pod["metadata"];
    let name = meta["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| meta["generateName"].as_str().map(|g| format!("{g}*")))
        .unwrap_or_else(|| "<unnamed>".into());
    let namespace = meta["namespace"].as_str().unwrap_or(namespace);
    format!("{namespace}/{name}")
}

/// Whether `pod` already runs Weir's sidecar.
fn injected(pod: &Value) -> bool {
    ["initContainers", "containers"].iter().any(|list| {
        pod["spec"][list]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == PROXY_CONTAINER))
    })
}

/// Decides and, when the pod is meshed, builds the patch. `namespace` is the request's
/// (a pod being created may not carry its own yet).
pub fn inject(pod: &Value, namespace: &str, config: &InjectConfig) -> Result<Outcome, InjectError> {
    let labels = &pod["metadata"]["labels"];
    if labels[INJECT_LABEL] == "false" {
        return Ok(Outcome::Skipped(Skip::OptedOut));
    }
    if pod["spec"]["hostNetwork"] == true {
        return Ok(Outcome::Skipped(Skip::HostNetwork));
    }
    if injected(pod) {
        return Ok(Outcome::Skipped(Skip::AlreadyInjected));
    }
    let fail = |message: String| InjectError {
        pod: pod_name(pod, namespace),
        message,
    };
    if !pod["spec"]["containers"].is_array() {
        return Err(fail("spec.containers: missing".into()));
    }
    let annotations = &pod["metadata"]["annotations"];
    let annotation = |key: &str| annotations[key].as_str().unwrap_or_default();
    let capture_spec = CaptureSpec {
        exclude_inbound_ports: capture::parse_ports(
            annotations::EXCLUDE_INBOUND_PORTS,
            annotation(annotations::EXCLUDE_INBOUND_PORTS),
        )
        .map_err(fail)?,
        include_inbound_ports: capture::parse_ports(
            annotations::INCLUDE_INBOUND_PORTS,
            annotation(annotations::INCLUDE_INBOUND_PORTS),
        )
        .map_err(fail)?,
        exclude_outbound_ports: capture::parse_ports(
            annotations::EXCLUDE_OUTBOUND_PORTS,
            annotation(annotations::EXCLUDE_OUTBOUND_PORTS),
        )
        .map_err(fail)?,
        exclude_outbound_cidrs: capture::parse_cidrs(
            annotations::EXCLUDE_OUTBOUND_CIDRS,
            annotation(annotations::EXCLUDE_OUTBOUND_CIDRS),
        )
        .map_err(fail)?,
        ..CaptureSpec::default()
    };
    let resources = proxy_resources(config, &|key| annotations[key].as_str().map(str::to_string))
        .map_err(fail)?;

    let mut out = pod.clone();
    let probers = rewrite_probes(&mut out);
    let spec = out["spec"]
        .as_object_mut()
        .ok_or_else(|| fail("spec: not an object".into()))?;

    let mut init = vec![
        capture_container(config, &capture_spec),
        bootstrap_container(config, !probers.is_empty()),
        agent_container(config, "sidecar~$(POD_NAME).$(POD_NAMESPACE)"),
        proxy_container(config, resources),
    ];
    if let Some(existing) = spec.get("initContainers").and_then(Value::as_array) {
        init.extend(existing.iter().cloned());
    }
    spec.insert("initContainers".into(), Value::Array(init));
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.extend(proxy_volumes());
    }

    let first_app = pod["spec"]["containers"][0]["name"]
        .as_str()
        .map(str::to_string);
    let meta = out["metadata"]
        .as_object_mut()
        .ok_or_else(|| fail("metadata: not an object".into()))?;
    let labels = object_entry(meta, "labels");
    labels.insert(SIDECAR_LABEL.into(), json!("true"));
    let annotations = object_entry(meta, "annotations");
    // The application's own scrape settings win; the sidecar's statistics are then
    // scraped through a PodMonitor (docs/install.md).
    if !annotations.contains_key("prometheus.io/scrape") {
        annotations.insert("prometheus.io/scrape".into(), json!("true"));
        annotations.insert("prometheus.io/port".into(), json!(ports::STATS.to_string()));
        annotations.insert("prometheus.io/path".into(), json!("/stats/prometheus"));
    }
    if let Some(app) = first_app {
        // `kubectl logs` and `exec` pick the application, not the proxy.
        annotations
            .entry("kubectl.kubernetes.io/default-container")
            .or_insert(json!(app));
    }
    if !probers.is_empty() {
        let text = serde_json::to_string(&probers).unwrap_or_default();
        annotations.insert(annotations::ORIGINAL_PROBES.into(), json!(text));
    }
    let patch = region_patch(pod, &out);
    Ok(Outcome::Injected { patch, pod: out })
}

/// The JSONPatch that sets every webhook's `clientConfig.caBundle` in a
/// MutatingWebhookConfiguration (`config`, JSON) to `bundle_pem`; `None` when all already
/// hold it. Each replacement is guarded by a `test` of the webhook's name, so a
/// configuration reordered in between fails the patch instead of changing the wrong entry.
pub fn ca_bundle_patch(config: &Value, bundle_pem: &str) -> Option<json_patch::Patch> {
    // k8s-openapi's byte strings serialize as base64, as the API holds `caBundle`.
    let encoded = serde_json::to_value(k8s_openapi::ByteString(bundle_pem.as_bytes().to_vec()))
        .ok()?
        .as_str()?
        .to_string();
    let mut ops = Vec::new();
    for (i, webhook) in config["webhooks"].as_array()?.iter().enumerate() {
        if webhook["clientConfig"]["caBundle"].as_str() == Some(encoded.as_str()) {
            continue;
        }
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook["name"]}),
        );
        let op = if webhook["clientConfig"].get("caBundle").is_some() {
            "replace"
        } else {
            "add"
        };
        ops.push(json!({"op": op, "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

/// The patch from `original` to `patched`, one operation per changed region (labels,
/// annotations, init containers, volumes, each application container) rather than a
/// field-by-field diff, so an operator reading it sees the sidecar added whole and the
/// application containers replaced only where their probes changed.
fn region_patch(original: &Value, patched: &Value) -> json_patch::Patch {
    let mut regions: Vec<String> = [
        "/metadata/labels",
        "/metadata/annotations",
        "/spec/initContainers",
        "/spec/volumes",
    ]
    .map(String::from)
    .into();
    let containers = patched["spec"]["containers"].as_array().map_or(0, Vec::len);
    regions.extend((0..containers).map(|i| format!("/spec/containers/{i}")));
    let ops: Vec<Value> = regions
        .iter()
        .filter_map(
            |path| match (original.pointer(path), patched.pointer(path)) {
                (None, Some(after)) => Some(json!({"op": "add", "path": path, "value": after})),
                (Some(before), Some(after)) if before != after => {
                    Some(json!({"op": "replace", "path": path, "value": after}))
                }
                _ => None,
            },
        )
        .collect();
    serde_json::from_value(Value::Array(ops)).unwrap_or_default()
}

fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("just made an object")
}

/// Rewrites the application containers' probes in place; returns the originals.
fn rewrite_probes(pod: &mut Value) -> probes::AppProbers {
    let mut probers = probes::AppProbers::new();
    let Some(containers) = pod["spec"]["containers"].as_array_mut() else {
        return probers;
    };
    for container in containers {
        let name = container["name"].as_str().unwrap_or_default().to_string();
        for (field, kind) in probes::PROBE_KINDS {
            let Some(probe) = container.get(field) else {
                continue;
            };
            let Some(original) = probes::original(probe, container) else {
                continue;
            };
            let path = probes::health_path(&name, kind);
            let rewritten = probes::rewritten(probe, &path);
            container[field] = rewritten;
            probers.insert(path, original);
        }
    }
    probers
}

/// The sidecar's resources: each annotation overrides the configured default; quantities
/// are checked, so a typo is refused at admission rather than failing the pod later.
pub(crate) fn proxy_resources(
    config: &InjectConfig,
    annotation: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    let pick = |key: &str, default: &Option<String>| -> Result<Option<String>, String> {
        match annotation(key) {
            Some(value) => value
                .parse::<weir_crds::Quantity>()
                .map(|_| Some(value.clone()))
                .map_err(|e| format!("annotation {key}: {e}")),
            None => Ok(default.clone()),
        }
    };
    let r = &config.resources;
    let mut requests = Map::new();
    let mut limits = Map::new();
    for (limit, name, key, default) in [
        (false, "cpu", annotations::PROXY_CPU, &r.cpu),
        (false, "memory", annotations::PROXY_MEMORY, &r.memory),
        (true, "cpu", annotations::PROXY_CPU_LIMIT, &r.cpu_limit),
        (
            true,
            "memory",
            annotations::PROXY_MEMORY_LIMIT,
            &r.memory_limit,
        ),
    ] {
        if let Some(value) = pick(key, default)? {
            let map = if limit { &mut limits } else { &mut requests };
            map.insert(name.into(), json!(value));
        }
    }
    let mut out = Map::new();
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    if !limits.is_empty() {
        out.insert("limits".into(), Value::Object(limits));
    }
    Ok(Value::Object(out))
}

/// Least privilege for every injected container: no escalation, read-only root, all
/// capabilities dropped (`add` lists the exceptions).
pub(crate) fn security_context(uid: u32, add: &[&str]) -> Value {
    let mut capabilities = json!({"drop": ["ALL"]});
    if !add.is_empty() {
        capabilities["add"] = json!(add);
    }
    json!({
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": uid != 0,
        "allowPrivilegeEscalation": false,
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "capabilities": capabilities,
    })
}

pub(crate) fn init_resources() -> Value {
    json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}})
}

/// `weir capture`, as root with NET_ADMIN and NET_RAW only.
fn capture_container(config: &InjectConfig, spec: &CaptureSpec) -> Value {
    let mut args = vec![
        "capture".to_string(),
        format!("--inbound-port={}", spec.inbound_port),
        format!("--outbound-port={}", spec.outbound_port),
        format!("--proxy-uid={}", spec.proxy_uid),
    ];
    let list = |values: &mut dyn Iterator<Item = String>| values.collect::<Vec<_>>().join(",");
    for (flag, value) in [
        (
            "--exclude-inbound-ports",
            list(&mut spec.exclude_inbound_ports.iter().map(u16::to_string)),
        ),
        (
            "--include-inbound-ports",
            list(&mut spec.include_inbound_ports.iter().map(u16::to_string)),
        ),
        (
            "--exclude-outbound-ports",
            list(&mut spec.exclude_outbound_ports.iter().map(u16::to_string)),
        ),
        (
            "--exclude-outbound-cidrs",
            list(&mut spec.exclude_outbound_cidrs.iter().map(ToString::to_string)),
        ),
    ] {
        if !value.is_empty() {
            args.push(format!("{flag}={value}"));
        }
    }
    json!({
        "name": CAPTURE_CONTAINER,
        "image": config.init_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["weir"],
        "args": args,
        // iptables takes a lock file; the root filesystem is read-only.
        "env": [{"name": "XTABLES_LOCKFILE", "value": format!("{BOOTSTRAP_DIR}/xtables.lock")}],
        "volumeMounts": [{"name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR}],
        "resources": init_resources(),
        "securityContext": security_context(0, &["NET_ADMIN", "NET_RAW"]),
    })
}

/// `weir bootstrap`, unprivileged, writing the proxy's bootstrap for this pod.
fn bootstrap_container(config: &InjectConfig, with_probes: bool) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
    ];
    if with_probes {
        env.push(field(
            "WEIR_APP_PROBES",
            &format!("metadata.annotations['{}']", annotations::ORIGINAL_PROBES),
        ));
    }
    json!({
        "name": BOOTSTRAP_CONTAINER,
        "image": config.init_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["weir"],
        "args": [
            "bootstrap", "--role=sidecar", "--name=$(POD_NAME)", "--namespace=$(POD_NAMESPACE)",
            format!("--xds-addr={}", config.xds_addr),
            format!("--rate-limit-addr={}", config.rate_limit_addr),
            format!("--admin-port={}", ports::ADMIN),
            format!("--stats-port={}", ports::STATS),
            format!("--health-port={}", ports::HEALTH),
            format!("--inbound-port={}", ports::INBOUND),
            format!("--outbound-port={}", ports::OUTBOUND),
            "--capture",
            // Delta xDS: the sidecar fetches the Services its workload calls on demand
            // rather than being sent the whole mesh (docs/xds.md, "Scoping").
            "--xds-protocol=delta",
            format!("--agent-socket={AGENT_DIR}/agent.sock"),
            format!("--output={BOOTSTRAP_DIR}/envoy.yaml"),
        ],
        "env": env,
        "volumeMounts": [{"name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR}],
        "resources": init_resources(),
        "securityContext": security_context(PROXY_UID, &[]),
    })
}

/// Envoy as a native sidecar.
fn proxy_container(config: &InjectConfig, resources: Value) -> Value {
    json!({
        "name": PROXY_CONTAINER,
        "image": config.proxy_image,
        "imagePullPolicy": config.image_pull_policy,
        "restartPolicy": "Always",
        "command": ["envoy"],
        "args": ["-c", format!("{BOOTSTRAP_DIR}/envoy.yaml"), "--log-level", "warn", "--disable-hot-restart"],
        "ports": [{"name": "weir-stats", "containerPort": ports::STATS, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": ports::HEALTH, "scheme": "HTTP"},
            "periodSeconds": 2, "failureThreshold": 30,
        },
        "volumeMounts": proxy_mounts(),
        "resources": resources,
        "securityContext": security_context(PROXY_UID, &[]),
    })
}

/// What Envoy mounts: its bootstrap and the agent's socket (not the token: only the agent
/// proves who the pod is).
pub(crate) fn proxy_mounts() -> Value {
    json!([
        {"name": BOOTSTRAP_VOLUME, "mountPath": BOOTSTRAP_DIR, "readOnly": true},
        {"name": AGENT_VOLUME, "mountPath": AGENT_DIR},
    ])
}

/// The volumes a proxy's pod gets: the bootstrap, the agent's socket (both in memory) and
/// the projected ServiceAccount token for audience `weir`, rotated by the kubelet.
pub(crate) fn proxy_volumes() -> Vec<Value> {
    vec![
        json!({"name": BOOTSTRAP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}),
        json!({"name": AGENT_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}),
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}}),
    ]
}

/// `weir agent` as a native sidecar, started before Envoy: it proves the pod's identity
/// for the proxy `proxy_id` with the projected token and serves the certificate to Envoy.
pub(crate) fn agent_container(config: &InjectConfig, proxy_id: &str) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    json!({
        "name": AGENT_CONTAINER,
        "image": config.init_image,
        "imagePullPolicy": config.image_pull_policy,
        "restartPolicy": "Always",
        "command": ["weir"],
        "args": [
            "agent",
            format!("--token-file={TOKEN_DIR}/token"),
            format!("--xds-addr={}", config.xds_addr),
            format!("--agent-socket={AGENT_DIR}/agent.sock"),
            format!("--proxy={proxy_id}"),
        ],
        "env": [
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            {"name": "WEIR_CA_ROOT", "value": config.ca_root_pem},
        ],
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true},
            {"name": AGENT_VOLUME, "mountPath": AGENT_DIR},
        ],
        "resources": init_resources(),
        "securityContext": security_context(PROXY_UID, &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundle_patch_sets_each_stale_bundle_and_nothing_when_current() {
        let config = json!({"webhooks": [
            {"name": "namespace.inject.weir.io", "clientConfig": {"service": {"name": "x"}}},
            {"name": "object.inject.weir.io", "clientConfig": {"caBundle": "b2xk"}},
        ]});
        let patch = ca_bundle_patch(&config, "PEM").unwrap();
        let ops = serde_json::to_value(&patch).unwrap();
        assert_eq!(ops.as_array().unwrap().len(), 4);
        assert_eq!(
            ops[1],
            json!({"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "UEVN"})
        );
        assert_eq!(ops[3]["op"], "replace");
        let mut patched = config.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert!(ca_bundle_patch(&patched, "PEM").is_none());
    }
}
