//! Each CRD's schema accepts a realistic object and rejects invalid ones with an error that
//! names the field, the way an API server would (structural schema, strict unknown fields,
//! CEL rules).

use serde_json::Value;
use weir_crds::{FieldError, SchemaValidator};

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test YAML parses")
}

fn errors(validator: &SchemaValidator, text: &str) -> Vec<FieldError> {
    validator.validate(&yaml(text))
}

/// Asserts that `text` is rejected with an error on `field` whose message contains `needle`.
#[track_caller]
fn assert_rejected(validator: &SchemaValidator, text: &str, field: &str, needle: &str) {
    let errs = errors(validator, text);
    assert!(
        errs.iter()
            .any(|e| e.field == field && e.message.contains(needle)),
        "expected an error on {field} containing {needle:?}, got {errs:#?}"
    );
}

const SCALING_POLICY: &str = r#"
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 20
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Pods
    pods: {metric: {name: http_requests_per_second}, target: {type: AverageValue, averageValue: 100}}
  - type: Prometheus
    prometheus: {query: 'sum(rate(http_requests_total{app="web"}[1m]))', target: {type: Value, value: 2k}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies: [{type: Percent, value: 50, periodSeconds: 60}]
      tolerance: "0.05"
  fallback: {failureThreshold: 3, action: Replicas, replicas: 4}
"#;

#[test]
fn scaling_policy() {
    let v = SchemaValidator::for_weir_crds();
    assert_eq!(errors(&v, SCALING_POLICY), vec![]);
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("minReplicas: 2", "minReplicas: 50"),
        "spec.minReplicas",
        "less than or equal to maxReplicas",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("maxReplicas: 20", "maxReplicas: 0"),
        "spec.maxReplicas",
        "minimum",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("type: Utilization", "type: Percentage"),
        "spec.metrics[0].resource.target.type",
        "Percentage",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("averageUtilization: 60", "value: 60"),
        "spec.metrics[0].resource.target.averageUtilization",
        "required when type is Utilization",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("type: Pods\n", "type: External\n"),
        "spec.metrics[1]",
        "pods must be set when type is Pods",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("averageValue: 100", "averageValue: lots"),
        "spec.metrics[1].pods.target.averageValue",
        "lots",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("minReplicas: 2", "minReplica: 2"),
        "spec",
        "minReplica",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace("action: Replicas, replicas: 4", "action: Replicas"),
        "spec.fallback.replicas",
        "required when action is Replicas",
    );
    assert_rejected(
        &v,
        &SCALING_POLICY.replace(
            "  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n",
            "",
        ),
        "spec",
        "targetRef",
    );
}

#[test]
fn scale_to_zero_needs_a_metric_that_can_wake_the_target() {
    let v = SchemaValidator::for_weir_crds();
    let zero = SCALING_POLICY.replace("minReplicas: 2", "minReplicas: 0");
    assert_eq!(
        errors(&v, &zero),
        vec![],
        "a Prometheus metric can wake the target"
    );
    let cpu_only = r#"
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 0
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
"#;
    assert_rejected(&v, cpu_only, "spec.minReplicas", "scale to zero");
}

const NODE_POOL: &str = r#"
apiVersion: weir.io/v1alpha1
kind: NodePool
metadata: {name: general}
spec:
  template:
    capacity: {cpu: "4", memory: 16Gi, pods: 110, nvidia.com/gpu: 1}
    labels: {topology.kubernetes.io/zone: zone-a}
    taints: [{key: dedicated, value: batch, effect: NoSchedule}]
  minSize: 1
  maxSize: 10
  pricePerHour: 0.192
  priority: 10
  provider:
    simulated: {provisionDelay: 30s}
"#;

#[test]
fn node_pool() {
    let v = SchemaValidator::for_weir_crds();
    assert_eq!(errors(&v, NODE_POOL), vec![]);
    assert_rejected(
        &v,
        &NODE_POOL.replace("minSize: 1", "minSize: 11"),
        "spec.minSize",
        "less than or equal to maxSize",
    );
    assert_rejected(
        &v,
        &NODE_POOL.replace("cpu: \"4\", ", ""),
        "spec.template.capacity",
        "cpu and memory",
    );
    assert_rejected(
        &v,
        &NODE_POOL.replace("effect: NoSchedule", "effect: Never"),
        "spec.template.taints[0].effect",
        "Never",
    );
    assert_rejected(
        &v,
        &NODE_POOL.replace("provisionDelay: 30s", "provisionDelay: 30 seconds"),
        "spec.provider.simulated.provisionDelay",
        "30 seconds",
    );
    assert_rejected(
        &v,
        &NODE_POOL.replace("pricePerHour: 0.192", "pricePerHour: -1"),
        "spec.pricePerHour",
        "minimum",
    );
    assert_rejected(
        &v,
        &NODE_POOL.replace(
            "simulated: {provisionDelay: 30s}",
            "simulated: {}\n    clusterAPI: {namespace: capi, name: md-0}",
        ),
        "spec.provider",
        "exactly one provider",
    );
}

const TRAFFIC_POLICY: &str = r#"
apiVersion: weir.io/v1alpha1
kind: TrafficPolicy
metadata: {name: checkout-limits, namespace: shop}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: checkout}
  rateLimit:
    local: {requests: 10, unit: Second, burst: 10}
    global:
      requests: 50
      unit: Minute
      descriptors:
      - type: RemoteAddress
      - type: RequestHeader
        requestHeader: {name: x-user-id}
  retries: {attempts: 2, perTryTimeout: 500ms, retryOn: [5xx, connect-failure]}
  timeout: 3s
"#;

#[test]
fn traffic_policy() {
    let v = SchemaValidator::for_weir_crds();
    assert_eq!(errors(&v, TRAFFIC_POLICY), vec![]);
    assert_rejected(
        &v,
        &TRAFFIC_POLICY.replace("unit: Second", "unit: Day"),
        "spec.rateLimit.local.unit",
        "Day",
    );
    assert_rejected(
        &v,
        &TRAFFIC_POLICY.replace("requests: 10,", "requests: 0,"),
        "spec.rateLimit.local.requests",
        "minimum",
    );
    assert_rejected(
        &v,
        &TRAFFIC_POLICY.replace("group: gateway.networking.k8s.io, ", ""),
        "spec.targetRef.group",
        "gateway.networking.k8s.io",
    );
    assert_rejected(
        &v,
        &TRAFFIC_POLICY.replace("requestHeader: {name: x-user-id}", "key: {value: a}"),
        "spec.rateLimit.global.descriptors[1]",
        "requestHeader must be set",
    );
    assert_rejected(
        &v,
        &TRAFFIC_POLICY.replace("[5xx, connect-failure]", "[teapot]"),
        "spec.retries.retryOn[0]",
        "teapot",
    );
    let empty = "apiVersion: weir.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: x}\nspec:\n  targetRef: {kind: Service, name: web}\n";
    assert_rejected(
        &v,
        empty,
        "spec",
        "at least one of rateLimit, retries, timeout",
    );
}

const MESH_POLICY: &str = r#"
apiVersion: weir.io/v1alpha1
kind: MeshPolicy
metadata: {name: default, namespace: shop}
spec:
  mtls:
    mode: Permissive
    promotion: {auto: true, plaintextWindow: 10m}
"#;

#[test]
fn mesh_policy() {
    let v = SchemaValidator::for_weir_crds();
    assert_eq!(errors(&v, MESH_POLICY), vec![]);
    assert_rejected(
        &v,
        &MESH_POLICY.replace("mode: Permissive", "mode: Loose"),
        "spec.mtls.mode",
        "Loose",
    );
    assert_rejected(
        &v,
        &MESH_POLICY.replace("mode: Permissive", "mode: Strict"),
        "spec.mtls.promotion.auto",
        "only to mode Permissive",
    );
    assert_rejected(
        &v,
        &MESH_POLICY.replace("auto: true", "auto: true, rollbackErrorRate: 2"),
        "spec.mtls.promotion.rollbackErrorRate",
        "maximum",
    );
    let egress = |hosts: &str| {
        MESH_POLICY.replace(
            "  mtls:\n",
            &format!("  egress: {{hosts: [{hosts}]}}\n  mtls:\n"),
        )
    };
    assert_eq!(
        errors(&v, &egress(r#"shop/cart, "./*", "*/dns", "*/*""#)),
        vec![]
    );
    for bad in ["cart", "shop/", "Shop/cart", "shop/a/b", r#""*.shop/cart""#] {
        assert_rejected(
            &v,
            &egress(bad),
            "spec.egress.hosts",
            "each host is <namespace>/<service>",
        );
    }
}

#[test]
fn other_kinds_are_not_checked() {
    let v = SchemaValidator::for_weir_crds();
    assert!(!v.knows("v1", "Service"));
    assert_eq!(
        errors(
            &v,
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1}\n"
        ),
        vec![]
    );
}
