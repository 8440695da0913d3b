use super::*;

const SERVICE_AND_DEPLOYMENT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored, namespace: shop}
"#;

fn policy(min: i32, max: i32) -> String {
    format!(
        r#"
apiVersion: weir.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: web, namespace: shop}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  minReplicas: {min}
  maxReplicas: {max}
"#
    )
}

fn web_policy_max(state: &ClusterState) -> Option<i32> {
    state
        .scaling_policies
        .get_namespaced("shop", "web")
        .map(|p| p.spec.max_replicas)
}

#[test]
fn loads_every_kind_weir_reads_and_skips_the_rest() {
    let mut index = DirectoryIndex::default();
    let outcome = index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    assert_eq!(
        outcome,
        FileOutcome {
            objects: 2,
            problems: 0,
            kept_last_good: false
        }
    );
    let (state, problems) = index.state();
    assert_eq!(problems, vec![]);
    assert_eq!(state.count(Kind::Service), 1);
    assert_eq!(state.count(Kind::Deployment), 1);
}

#[test]
fn namespaced_objects_without_a_namespace_go_to_default() {
    let mut index = DirectoryIndex::default();
    index.load_file(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
    );
    let (state, _) = index.state();
    assert!(state.services.get_namespaced("default", "web").is_some());
}

#[test]
fn a_yaml_syntax_error_keeps_the_files_last_good_objects() {
    let mut index = DirectoryIndex::default();
    index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    let outcome = index.load_file(
        "apps.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web\n  bad: [\n",
    );
    assert!(outcome.kept_last_good);
    let (state, problems) = index.state();
    assert_eq!(state.count(Kind::Service), 1, "the last good Service stays");
    assert_eq!(state.count(Kind::Deployment), 1);
    assert_eq!(problems.len(), 1);
    let line = problems[0].to_string();
    assert!(line.starts_with("apps.yaml: YAML syntax error"), "{line}");
    assert!(line.contains("line"), "the error says where: {line}");
}

#[test]
fn an_invalid_edit_keeps_the_objects_last_good_version_and_applies_the_rest() {
    let mut index = DirectoryIndex::default();
    index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    index.load_file("policy.yaml", &policy(2, 10));
    // The policy becomes invalid, and a new valid object arrives in the same file.
    let edited = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: shop}}\n",
        policy(5, 2)
    );
    let outcome = index.load_file("policy.yaml", &edited);
    assert!(outcome.kept_last_good);
    let (state, problems) = index.state();
    assert_eq!(
        web_policy_max(&state),
        Some(10),
        "the last good version stays in force"
    );
    assert!(
        state.services.get_namespaced("shop", "api").is_some(),
        "valid objects still apply"
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0].to_string(),
        "policy.yaml: document 1: ScalingPolicy shop/web: spec.minReplicas: minReplicas must be less than or equal to maxReplicas"
    );
    assert_eq!(problems[0].severity, Severity::Error);

    // Fixing it applies the new version and clears the problem.
    index.load_file("policy.yaml", &policy(2, 20));
    let (state, problems) = index.state();
    assert_eq!(web_policy_max(&state), Some(20));
    assert_eq!(problems, vec![]);
}

#[test]
fn an_invalid_new_object_is_not_applied() {
    let mut index = DirectoryIndex::default();
    index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    let outcome = index.load_file("policy.yaml", &policy(5, 2));
    assert_eq!(outcome.objects, 0);
    assert!(!outcome.kept_last_good);
    let (state, _) = index.state();
    assert_eq!(web_policy_max(&state), None);
}

#[test]
fn objects_removed_from_a_file_or_with_their_file_are_deleted() {
    let mut index = DirectoryIndex::default();
    index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    index.load_file(
        "apps.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n",
    );
    let (state, _) = index.state();
    assert_eq!(state.count(Kind::Deployment), 0);
    assert_eq!(state.count(Kind::Service), 1);
    assert!(index.remove_file("apps.yaml"));
    let (state, _) = index.state();
    assert_eq!(state, ClusterState::default());
}

#[test]
fn decoding_errors_name_the_field() {
    let mut index = DirectoryIndex::default();
    index.load_file(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: eighty}]\n",
    );
    let (_, problems) = index.state();
    assert_eq!(problems.len(), 1);
    let line = problems[0].to_string();
    assert!(
        line.starts_with(
            "svc.yaml: document 1: Service default/web: spec.ports[0].port: invalid type"
        ),
        "{line}"
    );
}

#[test]
fn objects_must_be_identifiable() {
    let mut index = DirectoryIndex::default();
    index.load_file("x.yaml", "kind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\n");
    let (_, problems) = index.state();
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("x.yaml: document 1: apiVersion: required"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("x.yaml: document 2: metadata.name: required"),
        "{lines:#?}"
    );
    assert!(lines[2].starts_with("x.yaml: document 3: Service default/Bad_Name: metadata.name: \"Bad_Name\" is not a valid name"), "{lines:#?}");
}

#[test]
fn a_wrong_api_version_is_reported() {
    let mut index = DirectoryIndex::default();
    index.load_file(
        "p.yaml",
        &policy(1, 2).replace("weir.io/v1alpha1", "weir.io/v9"),
    );
    let (_, problems) = index.state();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .to_string()
            .ends_with("apiVersion: ScalingPolicy is read at weir.io/v1alpha1, not weir.io/v9")
    );
}

#[test]
fn duplicates_across_files_keep_the_first_definition() {
    let mut index = DirectoryIndex::default();
    index.load_file("a.yaml", &policy(1, 3));
    index.load_file("b.yaml", &policy(1, 9));
    let (state, problems) = index.state();
    assert_eq!(web_policy_max(&state), Some(3));
    assert_eq!(
        problems.len(),
        2,
        "a duplicate, and a missing target: {problems:#?}"
    );
    assert!(problems.iter().any(|p| {
        p.to_string()
            .starts_with("b.yaml: document 1: ScalingPolicy shop/web: also defined in a.yaml")
    }));
}

#[test]
fn dangling_references_are_warnings_on_applied_objects() {
    let mut index = DirectoryIndex::default();
    index.load_file("apps.yaml", SERVICE_AND_DEPLOYMENT);
    index.load_file(
        "route.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - {name: web, port: 80, weight: 90}
    - {name: web-canary, port: 80, weight: 10}
    - {name: web, port: 81}
"#,
    );
    let (state, problems) = index.state();
    assert_eq!(state.count(Kind::HTTPRoute), 1, "the route is applied");
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "route.yaml: document 1: HTTPRoute shop/web: spec.rules[0].backendRefs[1]: backend Service shop/web-canary does not exist",
            "route.yaml: document 1: HTTPRoute shop/web: spec.rules[0].backendRefs[2].port: Service shop/web has no port 81",
        ]
    );
    assert!(problems.iter().all(|p| p.severity == Severity::Warning));
}

#[test]
fn lists_are_unpacked() {
    let mut index = DirectoryIndex::default();
    index.load_file(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n- {apiVersion: v1, kind: Node, metadata: {name: n2}}\n",
    );
    let (state, problems) = index.state();
    assert_eq!(problems, vec![]);
    assert_eq!(state.count(Kind::Node), 2);
}
