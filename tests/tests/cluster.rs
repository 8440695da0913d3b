//! The cluster source against a real API server. Run where KUBECONFIG points at a cluster
//! (kind, k3d): `cargo test -p weir-tests --test cluster -- --ignored`.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_store::{Kind, ObjectKey, StateWriter};

/// Starts `weir controllers` as a single replica (no election) on a free admin port, with
/// `extra` flags; returns the process and its admin address.
fn start_controllers(extra: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], weir_tests::free_port()).into();
    let child = weir_tests::weir()
        .args(["controllers", "--leader-elect=false"])
        .arg(format!("--admin-addr={admin}"))
        .args(extra)
        .spawn()
        .expect("weir controllers starts");
    (child, admin)
}

/// Applies Weir's CRDs (`weir crds`) to the cluster.
fn install_crds() {
    let crds = weir_tests::weir().arg("crds").output().expect("weir crds");
    let (ok, out) = weir_tests::kubectl(
        &["apply", "-f", "-"],
        Some(&String::from_utf8_lossy(&crds.stdout)),
    );
    assert!(ok, "kubectl apply of the CRDs failed: {out}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cluster"]
async fn reflectors_fill_the_stores_from_the_cluster() {
    let client = kube::Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG");
    let writer = Arc::new(StateWriter::default());
    let (synced_tx, mut synced) = watch::channel(BTreeSet::new());
    let shutdown = CancellationToken::new();
    let mut tasks = weir_runtime::sources::kube::spawn_reflectors(
        client,
        writer.clone(),
        synced_tx,
        shutdown.clone(),
        weir_store::Kind::ALL,
        &Default::default(),
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        synced.wait_for(|kinds| kinds.contains(&Kind::Namespace) && kinds.contains(&Kind::Service)),
    )
    .await
    .expect("Namespaces and Services list within a minute")
    .expect("the reflectors are running");
    let state = writer.current();
    assert!(
        state
            .namespaces
            .get(&ObjectKey::cluster("kube-system"))
            .is_some()
    );
    assert!(
        state
            .services
            .get_namespaced("default", "kubernetes")
            .is_some()
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

#[test]
#[ignore = "needs cluster"]
fn xds_server_mirrors_the_cluster_into_its_stores() {
    use weir_tests::{eventually, free_port, http_get, weir};
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let xds = format!("127.0.0.1:{}", free_port());
    let mut child = weir()
        .args([
            "xds-server",
            "--admin-addr",
            &admin.to_string(),
            "--xds-addr",
            &xds,
        ])
        .spawn()
        .expect("weir xds-server starts");
    let namespaces = eventually(Duration::from_secs(60), || {
        let (status, body) = http_get(admin, "/debug/objects").ok()?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        let count = value["objects"]["Namespace"].as_u64()?;
        (status == 200 && count > 0).then_some(count)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        namespaces.is_some(),
        "the cluster's Namespaces never reached the stores"
    );
}

/// Applies a GatewayClass, Gateway, Service and HTTPRoute (the Gateway API CRDs must be
/// installed) and waits for `weir xds-server` to write their status; cleans up after.
#[test]
#[ignore = "needs cluster"]
fn xds_server_writes_gateway_api_status() {
    use weir_tests::{eventually, free_port, kubectl, weir};

    let ns = format!("weir-status-{}", std::process::id());
    let manifests = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {ns}}}\n\
         spec: {{controllerName: weir.io/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: {ns}}}\n\
         spec: {{gatewayClassName: {ns}, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: {ns}}}\n\
         spec: {{parentRefs: [{{name: edge}}], rules: [{{backendRefs: [{{name: app, port: 80}}]}}]}}\n"
    );
    assert!(
        kubectl(&["apply", "-f", "-"], Some(&manifests)).0,
        "kubectl apply"
    );

    let admin = format!("127.0.0.1:{}", free_port());
    let xds = format!("127.0.0.1:{}", free_port());
    let mut child = weir()
        .args(["xds-server", "--admin-addr", &admin, "--xds-addr", &xds])
        .args(["--leader-elect=false"])
        .spawn()
        .expect("weir xds-server starts");
    let route = eventually(Duration::from_secs(60), || {
        let (_, out) = kubectl(
            &[
                "get",
                "httproute",
                "app",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.parents[?(@.controllerName==\"weir.io/gateway-controller\")].conditions[?(@.type==\"Accepted\")].status}",
            ],
            None,
        );
        (out == "True").then_some(out)
    });
    let gateway = eventually(Duration::from_secs(30), || {
        let (_, out) = kubectl(
            &[
                "get",
                "gateway",
                "edge",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.listeners[0].attachedRoutes}",
            ],
            None,
        );
        (out == "1").then_some(out)
    });
    let _ = child.kill();
    let _ = child.wait();
    kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
    kubectl(&["delete", "gatewayclass", &ns], None);
    assert!(
        route.is_some(),
        "the HTTPRoute never got Accepted=True from Weir"
    );
    assert!(
        gateway.is_some(),
        "the Gateway's listener never showed attachedRoutes 1"
    );
}

/// `weir controllers` scales a Deployment on a Prometheus metric: Weir's CRDs are applied,
/// a Deployment of one pause pod and a ScalingPolicy on `vector(35)` against a target of
/// 10 (ratio 3.5 × 1 ready pod → 4, within HPA's scale-up limit of 4).
#[test]
#[ignore = "needs cluster"]
fn controllers_scale_a_deployment_on_a_prometheus_metric() {
    use weir_tests::eventually;

    let kubectl = |args: &[&str], input: Option<&str>| weir_tests::kubectl(args, input).1;
    install_crds();
    let ns = format!("weir-scale-{}", std::process::id());
    kubectl(&["create", "namespace", &ns], None);
    let manifests = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: app, image: registry.k8s.io/pause:3.9}}]}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: web, namespace: {ns}}}\n\
         spec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: 1\n  maxReplicas: 10\n  metrics:\n  - type: Prometheus\n    prometheus: {{query: 'vector(35)', target: {{type: Value, value: \"10\"}}}}\n"
    );
    kubectl(&["apply", "-f", "-"], Some(&manifests));

    let prometheus = weir_tests::prometheus::Prometheus::start("");
    let (mut controllers, _) = start_controllers(&[
        "--sync-period-seconds=2",
        &format!("--prometheus-url={}", prometheus.url()),
    ]);
    let scaled = eventually(Duration::from_secs(120), || {
        let out = kubectl(
            &[
                "get",
                "deployment",
                "web",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            None,
        );
        (out == "4").then_some(out)
    });
    let status = kubectl(
        &[
            "get",
            "scalingpolicy",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.desiredReplicas}",
        ],
        None,
    );
    let _ = controllers.kill();
    let _ = controllers.wait();
    drop(prometheus);
    kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
    assert!(scaled.is_some(), "the Deployment was never scaled to 4");
    assert_eq!(status, "4");
}

/// `weir metrics-adapter` in a cluster: it reads the front-proxy and client CAs from
/// kube-system/extension-apiserver-authentication, indexes the cluster's pods, and serves
/// kubectl (authenticated by the kubeconfig's own client certificate or token, authorized
/// with a SubjectAccessReview against the cluster).
#[test]
#[ignore = "needs cluster"]
fn metrics_adapter_serves_the_cluster_with_delegated_auth() {
    use weir_tests::{eventually, free_port, kubectl, prometheus::Prometheus, weir};
    let prometheus = Prometheus::start("");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let admin = format!("127.0.0.1:{}", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let certs = dir.path().join("certs");
    let mut child = weir()
        .args([
            "metrics-adapter",
            "--admin-addr",
            &admin,
            "--metrics-adapter-addr",
            &addr,
        ])
        .args(["--prometheus-url", &prometheus.url(), "--cert-dir"])
        .arg(&certs)
        .spawn()
        .expect("weir metrics-adapter starts");
    let ca = certs.join("apiserver.crt");
    let server = format!("https://{addr}");
    let served = eventually(Duration::from_secs(60), || {
        let (ok, out) = kubectl(
            &[
                "get",
                "--raw",
                "/apis/custom.metrics.k8s.io/v1beta2",
                "--server",
                &server,
                "--certificate-authority",
                ca.to_str()?,
            ],
            None,
        );
        ok.then_some(out)
    });
    let _ = child.kill();
    let _ = child.wait();
    let served = served.expect("kubectl was not served by the adapter");
    assert!(served.contains("APIResourceList"), "{served}");
}

/// `weir controllers` runs the node autoscaler against a cluster: a NodePool that owns no
/// nodes and is needed by no pending pod gets its status written (sizes and conditions),
/// and a node labelled into it is reported on `/debug/nodes`.
#[test]
#[ignore = "needs cluster"]
fn controllers_write_node_pool_status() {
    use weir_tests::{eventually, http_get};

    let kubectl = |args: &[&str], input: Option<&str>| weir_tests::kubectl(args, input).1;
    install_crds();
    let pool = format!("weir-pool-{}", std::process::id());
    let manifest = format!(
        "apiVersion: weir.io/v1alpha1\nkind: NodePool\nmetadata: {{name: {pool}}}\n\
         spec:\n  template: {{capacity: {{cpu: '4', memory: 16Gi}}}}\n  minSize: 0\n  maxSize: 3\n  provider: {{clusterAPI: {{namespace: default, name: {pool}}}}}\n"
    );
    kubectl(&["apply", "-f", "-"], Some(&manifest));
    let (mut controllers, admin) = start_controllers(&["--scan-interval=2s"]);
    let status = eventually(Duration::from_secs(60), || {
        let out = kubectl(
            &[
                "get",
                "nodepool",
                &pool,
                "-o",
                "jsonpath={.status.targetSize}/{.status.conditions[?(@.type=='ScaledUp')].reason}",
            ],
            None,
        );
        (out == "0/NoScaleUpNeeded").then_some(out)
    });
    let plan = http_get(admin, "/debug/nodes").map(|(_, body)| body);
    let _ = controllers.kill();
    let _ = controllers.wait();
    kubectl(&["delete", "nodepool", &pool, "--wait=false"], None);
    assert!(status.is_some(), "NodePool status never written");
    let plan = plan.expect("/debug/nodes");
    assert!(plan.contains("\"scaleDown\""), "{plan}");
}

/// `weir controllers` runs the mesh-TLS controller against a cluster: a Permissive
/// MeshPolicy with auto promotion over one ready pod, whose sidecar Prometheus reports
/// connected with no plaintext connection, is promoted to Strict; the status (mode,
/// coverage, phase) is written to the API server and a `Promoted` event recorded.
#[test]
#[ignore = "needs cluster"]
fn controllers_promote_a_mesh_policy_from_prometheus() {
    use weir_tests::{
        eventually,
        prometheus::{Prometheus, last_second},
    };

    let kubectl = |args: &[&str], input: Option<&str>| weir_tests::kubectl(args, input).1;
    install_crds();
    let ns = format!("weir-mesh-{}", std::process::id());
    kubectl(&["create", "namespace", &ns], None);
    let manifests = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pay-0, namespace: {ns}, labels: {{app: pay, weir.io/sidecar: 'true'}}}}\n\
         spec: {{containers: [{{name: app, image: registry.k8s.io/pause:3.9, ports: [{{containerPort: 8080}}]}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: pay, namespace: {ns}}}\nspec: {{selector: {{app: pay}}, ports: [{{port: 80, targetPort: 8080}}]}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: {ns}}}\n\
         spec: {{mtls: {{mode: Permissive, promotion: {{auto: true, plaintextWindow: 2s}}}}}}\n"
    );
    kubectl(&["apply", "-f", "-"], Some(&manifests));
    // The sidecar, as Prometheus would have scraped it: connected, no plaintext.
    let t = last_second();
    let prometheus = Prometheus::start(&format!(
        "# TYPE envoy_control_plane_connected_state gauge\n\
         envoy_control_plane_connected_state{{namespace=\"{ns}\",pod=\"pay-0\"}} 1 {t}\n\
         # TYPE envoy_http_downstream_cx counter\n\
         envoy_http_downstream_cx_total{{namespace=\"{ns}\",pod=\"pay-0\",envoy_http_conn_manager_prefix=\"inbound_plaintext\"}} 0 {t}\n\
         # EOF\n"
    ));
    let (mut controllers, _) = start_controllers(&[
        "--mesh-tls-interval=1s",
        &format!("--prometheus-url={}", prometheus.url()),
    ]);
    let promoted = eventually(Duration::from_secs(120), || {
        let out = kubectl(
            &[
                "get",
                "meshpolicy",
                "default",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.effectiveMode}/{.status.phase}/{.status.sidecarCoverage}",
            ],
            None,
        );
        (out == "Strict/Promoted/1/1").then_some(out)
    });
    let events = kubectl(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "reason=Promoted",
            "-o",
            "name",
        ],
        None,
    );
    let _ = controllers.kill();
    let _ = controllers.wait();
    drop(prometheus);
    kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
    assert!(promoted.is_some(), "the MeshPolicy was never promoted");
    assert!(!events.trim().is_empty(), "no Promoted event");
}

/// The Helm chart installs into a kind/k3d cluster: every Deployment becomes ready and the
/// metrics APIServices are Available. The cluster must be able to run the image in
/// `WEIR_IMAGE` (e.g. `docker build -t weir:dev . && kind load docker-image weir:dev`, then
/// `WEIR_IMAGE=weir:dev`). Uses Helm's library from `.venv` (scripts/setup.sh).
#[test]
#[ignore = "needs cluster"]
fn the_chart_installs_and_everything_becomes_ready() {
    let namespace = format!("weir-chart-{}", std::process::id());
    let release = Release::new(namespace.clone(), "weir-test", serde_json::json!({}));
    let helm = |action: &str| release.helm(action);
    let installed = helm("install");
    let kubectl = |args: &[&str]| weir_tests::kubectl(args, None);
    let mut failures = Vec::new();
    if !installed.status.success() {
        failures.push(format!(
            "install: {}",
            String::from_utf8_lossy(&installed.stderr)
        ));
    }
    for deployment in ["xds-server", "controllers", "metrics-adapter"] {
        let name = format!("deployment/weir-test-{deployment}");
        let (ok, out) = kubectl(&[
            "rollout",
            "status",
            &name,
            "-n",
            &namespace,
            "--timeout=180s",
        ]);
        if !ok {
            failures.push(format!("{name}: {out}"));
        }
    }
    for api in [
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    ] {
        let (ok, out) = kubectl(&[
            "wait",
            "--for=condition=Available",
            &format!("apiservice/{api}"),
            "--timeout=120s",
        ]);
        if !ok {
            failures.push(format!("{api}: {out}"));
        }
    }
    let _ = helm("uninstall");
    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One label meshes a namespace: with the chart installed (as in the test above; the
/// cluster must run `WEIR_IMAGE` and its `-init` image, e.g. built with
/// `docker build --target init`), a Deployment in a namespace labelled
/// `weir.io/inject=enabled` runs with Weir's sidecar (a native sidecar init container), its
/// readiness probe passes through the rewritten health port, and the namespace's
/// MeshPolicy reports `sidecarCoverage` n/n.
#[test]
#[ignore = "needs cluster"]
fn a_labelled_namespace_gets_sidecars_and_full_coverage() {
    let image = std::env::var("WEIR_IMAGE").expect("WEIR_IMAGE: an image the cluster can run");
    let system = format!("weir-mesh-{}", std::process::id());
    let app = format!("meshed-{}", std::process::id());
    let release = Release::new(
        system.clone(),
        "weir",
        serde_json::json!({"metricsAdapter": {"enabled": false}}),
    );
    let helm = |action: &str| release.helm(action);
    let kubectl = |args: &[&str], stdin: Option<&str>| weir_tests::kubectl(args, stdin);
    assert!(helm("install").status.success());
    let (ok, out) = kubectl(
        &[
            "rollout",
            "status",
            "deployment/weir-xds-server",
            "-n",
            &system,
            "--timeout=180s",
        ],
        None,
    );
    assert!(ok, "{out}");
    let manifests = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app}, labels: {{weir.io/inject: enabled}}}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: {app}}}\nspec: {{mtls: {{mode: Permissive}}}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {app}}}\n\
         spec: {{replicas: 2, selector: {{matchLabels: {{app: web}}}}, template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [\
         {{name: web, image: {image}, args: [up, --config, /tmp, --ca-dir, /tmp/ca, --admin-addr, '0.0.0.0:8080'], ports: [{{containerPort: 8080}}], \
         readinessProbe: {{httpGet: {{path: /readyz, port: 8080}}}}}}]}}}}}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {app}}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests));
    assert!(ok, "{out}");
    // Ready means the rewritten readiness probe went through the sidecar's health port.
    let (ok, out) = kubectl(
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            &app,
            "--timeout=180s",
        ],
        None,
    );
    assert!(ok, "{out}");
    let (_, pods) = kubectl(
        &["get", "pods", "-n", &app, "-l", "app=web", "-o", "json"],
        None,
    );
    let pods: serde_json::Value = serde_json::from_str(&pods).unwrap_or_default();
    for pod in pods["items"].as_array().into_iter().flatten() {
        assert_eq!(
            pod["metadata"]["labels"]["weir.io/sidecar"], "true",
            "{pod}"
        );
        let init: Vec<&str> = pod["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            &init[..4],
            ["weir-capture", "weir-bootstrap", "weir-agent", "weir-proxy"]
        );
        // The pod proved its identity: its agent holds a certificate for its ServiceAccount.
        let name = pod["metadata"]["name"].as_str().unwrap();
        let (_, agent_log) = kubectl(&["logs", name, "-n", &app, "-c", "weir-agent"], None);
        assert!(
            agent_log.contains("workload certificate obtained")
                && agent_log.contains(&format!("spiffe://cluster.local/ns/{app}/sa/default")),
            "{agent_log}"
        );
    }
    let covered = weir_tests::eventually(std::time::Duration::from_secs(180), || {
        let (_, coverage) = kubectl(
            &[
                "get",
                "meshpolicy",
                "default",
                "-n",
                &app,
                "-o",
                "jsonpath={.status.sidecarCoverage}",
            ],
            None,
        );
        (coverage.trim() == "2/2").then_some(())
    });
    kubectl(&["delete", "namespace", &app, "--wait=false"], None);
    let _ = helm("uninstall");
    kubectl(&["delete", "namespace", &system, "--wait=false"], None);
    assert!(covered.is_some(), "sidecarCoverage never reached 2/2");
}

/// A Gateway runs itself: with the chart installed (`WEIR_IMAGE` and its `-init` image
/// runnable by the cluster), a Gateway of Weir's class gets an Envoy Deployment and a
/// ClusterIP Service (GatewayParameters), `status.addresses` and `Programmed=True`, and a
/// request through it from inside the cluster reaches the backend of its HTTPRoute.
#[test]
#[ignore = "needs cluster"]
fn a_gateway_gets_envoys_an_address_and_serves() {
    let image = std::env::var("WEIR_IMAGE").expect("WEIR_IMAGE: an image the cluster can run");
    let system = format!("weir-gw-{}", std::process::id());
    let app = format!("gw-app-{}", std::process::id());
    let release = Release::new(
        system.clone(),
        "weir",
        serde_json::json!({"metricsAdapter": {"enabled": false}, "controllers": {"enabled": false}}),
    );
    let helm = |action: &str| release.helm(action);
    let kubectl = |args: &[&str], stdin: Option<&str>| weir_tests::kubectl(args, stdin);
    assert!(helm("install").status.success());
    let manifests = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app}}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir-{app}}}\n\
         spec: {{controllerName: weir.io/gateway-controller}}\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {{name: internal, namespace: {app}}}\n\
         spec: {{replicas: 1, service: {{type: ClusterIP}}}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: {app}}}\n\
         spec: {{gatewayClassName: weir-{app}, infrastructure: {{parametersRef: {{group: weir.io, kind: GatewayParameters, name: internal}}}}, \
         listeners: [{{name: http, port: 8080, protocol: HTTP}}]}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {app}}}\n\
         spec: {{replicas: 1, selector: {{matchLabels: {{app: web}}}}, template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [\
         {{name: web, image: {image}, args: [up, --config, /tmp, --ca-dir, /tmp/ca, --gateway-envoys, 'off', --admin-addr, '0.0.0.0:8080'], ports: [{{containerPort: 8080}}]}}]}}}}}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {app}}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: {app}}}\n\
         spec: {{parentRefs: [{{name: edge}}], rules: [{{backendRefs: [{{name: web, port: 80}}]}}]}}\n"
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifests));
    assert!(ok, "{out}");
    let programmed = weir_tests::eventually(std::time::Duration::from_secs(240), || {
        let (_, status) = kubectl(&["get", "gateway", "edge", "-n", &app, "-o", "json"], None);
        let status: serde_json::Value = serde_json::from_str(&status).ok()?;
        let ok = status["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Programmed" && c["status"] == "True");
        let address = status["status"]["addresses"][0]["value"]
            .as_str()?
            .to_string();
        ok.then_some(address)
    });
    let reached = programmed.as_ref().and_then(|address| {
        weir_tests::eventually(std::time::Duration::from_secs(60), || {
            let (ok, out) = kubectl(
                &[
                    "run",
                    "probe",
                    "-n",
                    &app,
                    "--rm",
                    "-i",
                    "--restart=Never",
                    // Weir's image is distroless: a shell and wget from busybox.
                    "--image",
                    "busybox:1.36",
                    "--command",
                    "--",
                    "sh",
                    "-c",
                    &format!("wget -qO- http://{address}:8080/readyz"),
                ],
                None,
            );
            ok.then_some(out)
        })
    });
    kubectl(&["delete", "namespace", &app, "--wait=false"], None);
    kubectl(&["delete", "gatewayclass", &format!("weir-{app}")], None);
    let _ = helm("uninstall");
    kubectl(&["delete", "namespace", &system, "--wait=false"], None);
    assert!(
        programmed.is_some(),
        "the Gateway never became Programmed with an address"
    );
    assert!(reached.is_some(), "no answer through the Gateway");
}

/// A Helm release of the chart (through Helm's library in `.venv`, scripts/setup.sh) with
/// the image in `WEIR_IMAGE` and `extra` values merged over one replica per component.
struct Release {
    namespace: String,
    name: &'static str,
    _dir: tempfile::TempDir,
    values: std::path::PathBuf,
}

impl Release {
    fn new(namespace: String, name: &'static str, extra: serde_json::Value) -> Release {
        let image = std::env::var("WEIR_IMAGE").expect("WEIR_IMAGE: an image the cluster can run");
        let (repository, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));
        let mut values = serde_json::json!({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            "xdsServer": {"replicas": 1}, "controllers": {"replicas": 1}, "metricsAdapter": {"replicas": 1},
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            match (values.get_mut(key), value) {
                (Some(serde_json::Value::Object(base)), serde_json::Value::Object(more)) => {
                    base.extend(more.clone())
                }
                _ => values[key] = value.clone(),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("values.json");
        std::fs::write(&path, values.to_string()).expect("values");
        Release {
            namespace,
            name,
            _dir: dir,
            values: path,
        }
    }

    /// `install`, `upgrade` or `uninstall`.
    fn helm(&self, action: &str) -> std::process::Output {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("scripts/helm-release.py"))
            .args([
                action,
                "--namespace",
                &self.namespace,
                "--release",
                self.name,
            ])
            .args(if action == "uninstall" {
                vec![]
            } else {
                vec!["--values".to_string(), self.values.display().to_string()]
            })
            .output()
            .expect("helm-release.py")
    }
}
