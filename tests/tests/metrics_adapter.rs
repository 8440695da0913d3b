//! The metrics adapter end to end: a real Prometheus (backfilled with promtool), `weir up`
//! serving the custom and external metrics APIs, and the real kubectl (and curl) as
//! clients. Values must equal what the same PromQL returns from Prometheus directly.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use weir_tests::{adapter::Adapter, eventually, prometheus::Prometheus};

const RULES: &str = r#"
rules:
- seriesQuery: '{__name__=~"^http_requests_total$",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: '{namespace!="",pod!="",__name__!~".*_total$"}'
  resources:
    template: "<<.Resource>>"
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
  resources:
    overrides: { namespace: {resource: "namespace"} }
"#;

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {containers: [{name: app, image: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {containers: [{name: app, image: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec: {containers: [{name: app, image: api}]}
"#;

/// Ten minutes of data ending a second ago: counters rising at a fixed rate per pod,
/// gauges, queue depths, and cAdvisor-style CPU counters.
fn openmetrics() -> String {
    let now = weir_tests::prometheus::last_second();
    let mut om = String::from("# TYPE http_requests counter\n");
    let rates = [
        ("web-1", "200", 2.0),
        ("web-1", "500", 0.5),
        ("web-2", "200", 3.0),
        ("api-1", "200", 5.0),
    ];
    for (pod, code, rate) in rates {
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "http_requests_total{{namespace=\"shop\",pod=\"{pod}\",code=\"{code}\"}} {} {t}\n",
                rate * (step * 15) as f64
            ));
        }
    }
    let gauges = [
        ("inflight_requests", "web-1", 1.5),
        ("inflight_requests", "web-2", 2500.0),
        ("inflight_requests", "api-1", 0.25),
        ("doomed_gauge", "web-1", 3.0),
    ];
    for (name, pod, value) in gauges {
        om.push_str(&format!("# TYPE {name} gauge\n"));
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "{name}{{namespace=\"shop\",pod=\"{pod}\"}} {value} {t}\n"
            ));
        }
    }
    om.push_str("# TYPE queue_depth gauge\n");
    for (queue, depth) in [("orders", 42.0), ("emails", 7.0)] {
        for step in 0..=40 {
            let t = now - 600 + step * 15;
            om.push_str(&format!(
                "queue_depth{{namespace=\"shop\",queue=\"{queue}\"}} {depth} {t}\n"
            ));
        }
    }
    om.push_str("# TYPE container_cpu_usage_seconds counter\n");
    for step in 0..=40 {
        let t = now - 600 + step * 15;
        om.push_str(&format!(
            "container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"web-1\",container=\"app\"}} {} {t}\n",
            0.25 * (step * 15) as f64
        ));
    }
    om.push_str("# EOF\n");
    om
}

/// Per-object values of a MetricValueList, parsed from Kubernetes quantities.
fn values(list: &Value) -> BTreeMap<String, f64> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let q = item["value"].as_str().unwrap();
            (
                item["describedObject"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                weir_metrics_adapter::quantity::parse(q)
                    .unwrap_or_else(|| panic!("bad quantity {q}")),
            )
        })
        .collect()
}

fn assert_close(adapter: &BTreeMap<String, f64>, prometheus: &BTreeMap<String, f64>) {
    assert_eq!(
        adapter.keys().collect::<Vec<_>>(),
        prometheus.keys().collect::<Vec<_>>(),
        "adapter {adapter:?} vs Prometheus {prometheus:?}"
    );
    for (name, value) in adapter {
        // Quantities are in milli-units, truncated.
        assert!(
            (value - prometheus[name]).abs() <= 0.0011,
            "{name}: adapter {value} vs Prometheus {}",
            prometheus[name]
        );
    }
}

#[test]
fn kubectl_reads_the_values_prometheus_computes() {
    let prometheus = Prometheus::start(&openmetrics());
    let adapter = Adapter::start(&prometheus, PODS, RULES, &[]);

    // Discovery lists what the rules produce.
    let discovery = eventually(Duration::from_secs(20), || {
        adapter
            .raw("/apis/custom.metrics.k8s.io/v1beta2", None)
            .filter(|d| d["resources"].as_array().is_some_and(|r| !r.is_empty()))
    })
    .expect("discovery");
    let names: Vec<&str> = discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for expected in [
        "pods/http_requests_per_second",
        "namespaces/http_requests_per_second",
        "pods/inflight_requests",
        "pods/doomed_gauge",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let groups = adapter.raw("/apis", None).unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    let external = adapter
        .raw("/apis/external.metrics.k8s.io/v1beta1", None)
        .unwrap();
    assert_eq!(external["resources"][0]["name"], "queue_depth");
    assert!(adapter.raw("/openapi/v2", None).unwrap()["paths"].is_object());
    assert!(adapter.raw("/openapi/v3", None).unwrap()["paths"].is_object());

    // pods/* with a label selector: the web pods only, as Prometheus computes them.
    let list = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second?labelSelector=app%3Dweb",
            None,
        )
        .unwrap();
    assert_eq!(list["kind"], "MetricValueList");
    assert_eq!(
        list["items"][0]["metric"]["name"],
        "http_requests_per_second"
    );
    assert_eq!(list["items"][0]["describedObject"]["kind"], "Pod");
    let from_prometheus = prometheus.values_by(
        r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2"}[2m])) by (pod)"#,
        "pod",
    );
    assert_eq!(from_prometheus.len(), 2);
    assert_close(&values(&list), &from_prometheus);
    // The adapter sent exactly that query.
    assert!(
        prometheus.logged_queries().iter().any(|q| q
            == r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2"}[2m])) by (pod)"#),
        "{:?}",
        prometheus.logged_queries()
    );

    // With metricLabelSelector, and in the v1beta1 shape.
    let errors = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/*/http_requests_per_second?labelSelector=app%3Dweb&metricLabelSelector=code%3D500",
            None,
        )
        .unwrap();
    assert_eq!(errors["items"][0]["metricName"], "http_requests_per_second");
    assert_eq!(errors["items"][0]["selector"]["matchLabels"]["code"], "500");
    assert_close(
        &values(&errors),
        &prometheus.values_by(
            r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2",code="500"}[2m])) by (pod)"#,
            "pod",
        ),
    );

    // One object, and quantities as Kubernetes prints them.
    let one = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-2/inflight_requests",
            None,
        )
        .unwrap();
    assert_eq!(one["items"][0]["value"], "2500");
    let all = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/inflight_requests",
            None,
        )
        .unwrap();
    let printed: BTreeMap<&str, &str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["describedObject"]["name"].as_str().unwrap(),
                i["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        printed,
        BTreeMap::from([("api-1", "250m"), ("web-1", "1500m"), ("web-2", "2500")])
    );

    // The namespace itself (root-scoped).
    let ns = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/http_requests_per_second",
            None,
        )
        .unwrap();
    assert_eq!(ns["items"][0]["describedObject"]["kind"], "Namespace");
    assert_close(
        &values(&ns),
        &prometheus.values_by(
            r#"sum(rate(http_requests_total{namespace="shop"}[2m])) by (namespace)"#,
            "namespace",
        ),
    );

    // External metrics, per namespace, with a selector.
    let queues = adapter
        .raw(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth?labelSelector=queue%3Dorders",
            None,
        )
        .unwrap();
    assert_eq!(queues["kind"], "ExternalMetricValueList");
    assert_eq!(queues["items"].as_array().unwrap().len(), 1);
    assert_eq!(queues["items"][0]["metricLabels"]["queue"], "orders");
    assert_eq!(queues["items"][0]["value"], "42");

    // Errors are Kubernetes Status objects.
    let (code, body) = adapter
        .curl(
            &["/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/no_such_metric"],
            &[],
        )
        .unwrap();
    assert_eq!(code, 404, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    let (code, body) = adapter
        .curl(
            &[
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/inflight_requests",
                "-G",
                "--data-urlencode",
                "labelSelector=app in (web",
            ],
            &[],
        )
        .unwrap();
    assert_eq!(code, 400, "{body}");

    // A metric that disappears from Prometheus disappears from discovery after a relist.
    prometheus.delete_series("doomed_gauge");
    let gone = eventually(Duration::from_secs(20), || {
        let d = adapter.raw("/apis/custom.metrics.k8s.io/v1beta2", None)?;
        let names: Vec<String> = d["resources"]
            .as_array()?
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect();
        (!names.contains(&"pods/doomed_gauge".to_string())
            && names.contains(&"pods/inflight_requests".to_string()))
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "pods/doomed_gauge still listed after relists"
    );
}

#[test]
fn requests_cannot_change_the_query() {
    let prometheus = Prometheus::start(&openmetrics());
    let adapter = Adapter::start(&prometheus, PODS, RULES, &["--cache-max-age", "0s"]);
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces";
    let hostile: &[(String, Option<(&str, &str)>)] = &[
        (
            format!(
                "{base}/shop/pods/web-1%22%7D%20or%20vector(1)%20or%20x%7Ba%3D%22/inflight_requests"
            ),
            None,
        ),
        (format!("{base}/shop%22%7D/pods/*/inflight_requests"), None),
        (
            format!("{base}/shop/pods/web-1%7Cweb-2/inflight_requests"),
            None,
        ),
        (format!("{base}/shop/pods/.*/inflight_requests"), None),
        (
            format!("{base}/shop/pods/web-1%0Aor/inflight_requests"),
            None,
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("labelSelector", "app=web\"} or vector(1)")),
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("labelSelector", "app=~.*")),
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("metricLabelSelector", "code=~\".*\"")),
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("metricLabelSelector", "code in (a|b)")),
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("metricLabelSelector", "code=5\nor")),
        ),
        (
            format!("{base}/shop/pods/*/inflight_requests"),
            Some(("metricLabelSelector", "app.kubernetes.io/name=x")),
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth".to_string(),
            Some(("labelSelector", "queue=orders\"} or up{")),
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth%7Bx%3D%22%22%7D"
                .to_string(),
            None,
        ),
    ];
    let before = prometheus.logged_queries().len();
    for (path, param) in hostile {
        let mut args: Vec<String> = vec![path.clone()];
        if let Some((name, value)) = param {
            args.extend([
                "-G".into(),
                "--data-urlencode".into(),
                format!("{name}={value}"),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = adapter.curl(&args, &[]).unwrap();
        assert_eq!(code, 400, "{path} {param:?} answered {code}: {body}");
    }
    // None of them reached Prometheus.
    let after = prometheus.logged_queries();
    assert_eq!(after.len(), before, "queries sent: {:?}", &after[before..]);

    // Valid values with regex metacharacters reach PromQL escaped, as exact matches.
    let (code, _) = adapter
        .curl(&[&format!("{base}/shop/pods/web.1/inflight_requests")], &[])
        .unwrap();
    assert_eq!(code, 404);
    let (code, body) = adapter
        .curl(
            &[
                &format!("{base}/shop/pods/*/inflight_requests"),
                "-G",
                "--data-urlencode",
                "metricLabelSelector=code in (2.0,a_b)",
            ],
            &[],
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let sent = prometheus.logged_queries()[before..].to_vec();
    assert_eq!(
        sent,
        [
            r#"sum(inflight_requests{namespace="shop",pod="web.1"}) by (pod)"#,
            r#"sum(inflight_requests{namespace="shop",pod=~"api-1|web-1|web-2",code=~"2\\.0|a_b"}) by (pod)"#,
        ]
    );
}

/// The example configuration from prometheus-adapter's documentation (docs/config.md and
/// the walkthrough), unchanged, loads and answers.
#[test]
fn prometheus_adapter_documentation_config_answers() {
    const DOCS: &str = r#"
rules:
# this rule matches cumulative cAdvisor metrics measured in seconds
- seriesQuery: '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}'
  resources:
    # skip specifying generic resource<->label mappings, and just
    # attach only pod and namespace resources by mapping label names to group-resources
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  # specify that the `container_` and `_seconds_total` suffixes should be removed.
  # this also introduces an implicit filter on metric family names
  name:
    # we use the value of the capture group implicitly as the API name
    # we could also explicitly write `as: "$1"`
    matches: "^container_(.*)_seconds_total$"
  # specify how to construct a query to fetch samples for a given series
  # This is a Go template where the `.Series` and `.LabelMatchers` string values
  # are available, and the delimiters are `<<` and `>>` to avoid conflicts with
  # the prometheus query language
  metricsQuery: "sum(rate(<<.Series>>{<<.LabelMatchers>>,container!=\"POD\"}[2m])) by (<<.GroupBy>>)"
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
  resources:
    overrides: { namespace: {resource: "namespace"} }
"#;
    let prometheus = Prometheus::start(&openmetrics());
    let adapter = Adapter::start(&prometheus, PODS, DOCS, &[]);
    let cpu = eventually(Duration::from_secs(20), || {
        adapter.raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/cpu_usage",
            None,
        )
    })
    .expect("cpu_usage of web-1");
    // 0.25 cores, as Prometheus computes it (rate() may land a hair under; quantities
    // truncate to milli-units, as prometheus-adapter's do).
    assert_close(
        &values(&cpu),
        &prometheus.values_by(
            r#"sum(rate(container_cpu_usage_seconds_total{namespace="shop",pod="web-1",container!="POD"}[2m])) by (pod)"#,
            "pod",
        ),
    );
    let requests = adapter
        .raw(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second",
            None,
        )
        .unwrap();
    assert_close(
        &values(&requests),
        &prometheus.values_by(
            r#"sum(rate(http_requests_total{namespace="shop",pod=~"api-1|web-1|web-2"}[2m])) by (pod)"#,
            "pod",
        ),
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

mod secured {
    //! A stand-in API server answers TokenReview and SubjectAccessReview, so the adapter's
    //! secured mode runs without a cluster.

    use std::sync::{Arc, Mutex};

    use axum::{Json, Router, routing::post};
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };

    use super::*;

    type Reviews = Arc<Mutex<Vec<Value>>>;

    /// Starts the stand-in on a free port; returns its address and the SubjectAccessReviews
    /// it received.
    fn fake_api_server() -> (SocketAddr, Reviews) {
        let reviews: Reviews = Arc::default();
        let recorded = reviews.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = Router::new()
                    .route(
                        "/apis/authentication.k8s.io/v1/tokenreviews",
                        post(|Json(mut review): Json<Value>| async move {
                            let user = match review["spec"]["token"].as_str() {
                                Some("alice-token") => Some("alice"),
                                Some("bob-token") => Some("bob"),
                                _ => None,
                            };
                            review["status"] = match user {
                                Some(u) => serde_json::json!({"authenticated": true, "user": {"username": u, "groups": ["system:authenticated"]}}),
                                None => serde_json::json!({"authenticated": false}),
                            };
                            Json(review)
                        }),
                    )
                    .route(
                        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                        post(move |Json(mut review): Json<Value>| {
                            let recorded = recorded.clone();
                            async move {
                                recorded.lock().unwrap().push(review.clone());
                                let allowed = review["spec"]["user"] == "alice";
                                review["status"] = serde_json::json!({"allowed": allowed, "reason": if allowed { "" } else { "no RBAC rule allows it" }});
                                Json(review)
                            }
                        }),
                    );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        (addr, reviews)
    }

    struct Ca {
        name: String,
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            Ca {
                name: name.to_string(),
                issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
            }
        }

        /// A client certificate and key (PEM) for `cn`.
        fn client(&self, cn: &str) -> (String, String) {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        /// curl's `--cert`/`--key` arguments for a client certificate for `cn`, written
        /// to `dir`.
        fn curl_args(&self, dir: &Path, cn: &str) -> Vec<String> {
            let (cert, key) = self.client(cn);
            let cert = write(dir, &format!("{}-{cn}.crt", self.name), &cert);
            let key = write(dir, &format!("{}-{cn}.key", self.name), &key);
            vec![
                "--cert".into(),
                cert.display().to_string(),
                "--key".into(),
                key.display().to_string(),
            ]
        }
    }

    #[test]
    fn unauthenticated_and_unauthorized_requests_are_refused() {
        let (api, reviews) = fake_api_server();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write(
            dir.path(),
            "api.kubeconfig",
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: api\n  cluster: {{server: 'http://{api}'}}\nusers:\n- name: adapter\n  user: {{token: adapter-sa}}\ncontexts:\n- name: c\n  context: {{cluster: api, user: adapter}}\ncurrent-context: c\n"
            ),
        );
        let front_proxy_ca = Ca::new("front-proxy-ca");
        let ca_file = write(
            dir.path(),
            "front-proxy-ca.crt",
            &front_proxy_ca.issuer.pem(),
        );
        let prometheus = Prometheus::start(&openmetrics());
        let adapter = Adapter::start(
            &prometheus,
            PODS,
            RULES,
            &[
                "--authentication-kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--requestheader-client-ca-file",
                ca_file.to_str().unwrap(),
                "--requestheader-allowed-names",
                "front-proxy-client",
            ],
        );
        let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/inflight_requests?labelSelector=app%3Dweb";

        // kubectl with a token the API server accepts and authorizes.
        let list = eventually(Duration::from_secs(20), || {
            adapter
                .raw(path, Some("alice-token"))
                .filter(|l| l["items"].as_array().is_some_and(|i| i.len() == 2))
        });
        assert!(
            list.is_some(),
            "alice was not served:\n{}",
            adapter.weir.log()
        );
        let review = reviews.lock().unwrap().last().cloned().unwrap();
        let attrs = &review["spec"]["resourceAttributes"];
        assert_eq!(
            (
                attrs["group"].as_str(),
                attrs["resource"].as_str(),
                attrs["subresource"].as_str(),
                attrs["namespace"].as_str(),
                attrs["verb"].as_str()
            ),
            (
                Some("custom.metrics.k8s.io"),
                Some("pods"),
                Some("inflight_requests"),
                Some("shop"),
                Some("get")
            )
        );

        // No credentials: 401. A token the API server rejects: 401. A valid user without
        // permission: 403.
        assert_eq!(adapter.curl(&[path], &[]).unwrap().0, 401);
        assert_eq!(
            adapter
                .curl(&[path], &["-H", "Authorization: Bearer forged"])
                .unwrap()
                .0,
            401
        );
        let (code, body) = adapter
            .curl(&[path], &["-H", "Authorization: Bearer bob-token"])
            .unwrap();
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("no RBAC rule allows it"), "{body}");
        assert!(adapter.raw(path, Some("bob-token")).is_none());
        // Discovery is authorized too.
        assert_eq!(
            adapter
                .curl(&["/apis/custom.metrics.k8s.io/v1beta2"], &[])
                .unwrap()
                .0,
            401
        );

        // The aggregation layer's front-proxy certificate vouches for the header's user.
        let curl = |certificate: &[String], headers: &[&str]| {
            let args: Vec<&str> = certificate
                .iter()
                .map(String::as_str)
                .chain(headers.iter().copied())
                .collect();
            adapter.curl(&[path], &args).map(|(code, _)| code)
        };
        let proxy = front_proxy_ca.curl_args(dir.path(), "front-proxy-client");
        let alice = ["-H", "X-Remote-User: alice"];
        assert_eq!(
            curl(
                &proxy,
                &[
                    alice[0],
                    alice[1],
                    "-H",
                    "X-Remote-Group: system:authenticated"
                ]
            ),
            Some(200)
        );
        assert_eq!(curl(&proxy, &["-H", "X-Remote-User: bob"]), Some(403));
        assert_eq!(curl(&proxy, &[]), Some(401));
        // The same CA, a name that is not allowed: the headers are not believed.
        let intruder = front_proxy_ca.curl_args(dir.path(), "intruder");
        assert_eq!(curl(&intruder, &alice), Some(401));
        // A certificate from another CA does not get past the handshake.
        let other = Ca::new("other-ca").curl_args(dir.path(), "front-proxy-client");
        assert!(curl(&other, &alice).is_none_or(|code| code != 200));
        // Health probes need no credentials.
        assert_eq!(adapter.curl(&["/healthz"], &[]).unwrap().0, 200);
    }
}
