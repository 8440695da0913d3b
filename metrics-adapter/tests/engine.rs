//! The engine against a stand-in Prometheus that counts what it is asked: identical
//! requests in flight share one query, fresh results are reused, failures are not cached,
//! and a failed relist keeps the metrics found before.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, response::IntoResponse, routing::post};
use weir_metrics_adapter::{
    config::Rules,
    engine::{Engine, EngineMetrics, EngineSettings, ObjectSource, Prometheus},
    resources::Resource,
    selector::Selector,
};

#[derive(Default)]
struct Fake {
    queries: AtomicUsize,
    series_down: AtomicBool,
}

async fn query(State(fake): State<Arc<Fake>>, body: String) -> impl IntoResponse {
    fake.queries.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let json = [(http::header::CONTENT_TYPE, "application/json")];
    if body.contains("broken") {
        return (
            http::StatusCode::BAD_REQUEST,
            json,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        );
    }
    (
        http::StatusCode::OK,
        json,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-1"},"value":[1700000000,"1.5"]}]}}"#,
    )
}

async fn series(State(fake): State<Arc<Fake>>) -> impl IntoResponse {
    if fake.series_down.load(Ordering::SeqCst) {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "down".to_string());
    }
    (
        http::StatusCode::OK,
        r#"{"status":"success","data":[{"__name__":"inflight","namespace":"shop","pod":"web-1"}]}"#
            .to_string(),
    )
}

struct NoObjects;

impl ObjectSource for NoObjects {
    fn names(&self, _: &Resource, _: Option<&str>, _: &Selector) -> Option<Vec<String>> {
        None
    }
}

async fn setup(cache: Duration) -> (Arc<Fake>, Arc<Engine>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/api/v1/query", post(query))
        .route("/api/v1/series", post(series))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let rules = Rules::from_yaml(
        r#"
rules:
- seriesQuery: '{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#,
        "test",
    )
    .unwrap();
    let engine = Engine::new(
        rules,
        Prometheus::new(&format!("http://{addr}")).unwrap(),
        Arc::new(NoObjects),
        EngineSettings {
            cache_max_age: cache,
            series_max_age: Duration::from_secs(600),
        },
        EngineMetrics::default(),
    );
    (fake, Arc::new(engine))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_share_one_query_and_fresh_results_are_reused() {
    let (fake, engine) = setup(Duration::from_millis(500)).await;
    let q = r#"sum(inflight{namespace="shop",pod!=""}) by (pod)"#;
    let results = futures::future::join_all((0..20).map(|_| engine.fetch(q))).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap()[0].value == 1.5));
    assert_eq!(fake.queries.load(Ordering::SeqCst), 1);
    engine.fetch(q).await.unwrap();
    assert_eq!(
        fake.queries.load(Ordering::SeqCst),
        1,
        "a fresh result is reused"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    engine.fetch(q).await.unwrap();
    assert_eq!(
        fake.queries.load(Ordering::SeqCst),
        2,
        "a stale result is refetched"
    );

    // Failures are shared by those waiting, never kept.
    let broken = "broken";
    let failed = futures::future::join_all((0..5).map(|_| engine.fetch(broken))).await;
    assert!(failed.iter().all(Result::is_err));
    assert_eq!(fake.queries.load(Ordering::SeqCst), 3);
    assert!(engine.fetch(broken).await.is_err());
    assert_eq!(fake.queries.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_relist_keeps_the_metrics_found_before() {
    let (fake, engine) = setup(Duration::ZERO).await;
    assert!(!engine.discovered());
    engine.relist().await.unwrap();
    assert!(engine.discovered());
    let before = engine.index();
    assert!(
        before
            .custom
            .contains_key(&("pods".to_string(), "inflight".to_string()))
    );
    fake.series_down.store(true, Ordering::SeqCst);
    let error = engine.relist().await.unwrap_err();
    assert!(error.contains("rules[0]"), "{error}");
    assert_eq!(*engine.index(), *before);
}
