//! The cluster's token reviewer against a stand-in API server: it asks TokenReview for
//! audience `weir`, takes the identity from the review (never from the token's text), and
//! tells a refused token from an API server it cannot reach.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::{Json, extract::State};
use serde_json::{Value, json};
use weir_xds::{
    identity::{KubeTokenReviewer, TokenReviewer},
    proof::{POD_NAME_EXTRA, RefusalReason, from_review},
};

type Reviews = Arc<Mutex<Vec<Value>>>;

/// Knows one token: pay-0's in `payments`, bound to its pod.
async fn token_reviews(State(reviews): State<Reviews>, Json(review): Json<Value>) -> Json<Value> {
    reviews.lock().unwrap().push(review.clone());
    let known =
        review["spec"]["token"] == "pay-0-token" && review["spec"]["audiences"] == json!(["weir"]);
    let status = if known {
        json!({"authenticated": true, "audiences": ["weir"], "user": {
            "username": "system:serviceaccount:payments:pay", "uid": "u-1",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:payments"],
            "extra": {POD_NAME_EXTRA: ["pay-0"], "authentication.kubernetes.io/pod-uid": ["p-1"]}}})
    } else {
        json!({"authenticated": false, "error": "invalid bearer token"})
    };
    Json(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {}, "spec": review["spec"], "status": status}),
    )
}

#[tokio::test]
async fn tokens_are_reviewed_by_the_api_server_for_audience_weir() {
    let reviews = Reviews::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(token_reviews),
        )
        .with_state(reviews.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();
    let reviewer = KubeTokenReviewer(client);

    let user = reviewer.review("pay-0-token").await.unwrap().unwrap();
    let proven = from_review(&user.username, &user.extra).unwrap();
    assert_eq!(
        (
            proven.namespace.as_str(),
            proven.service_account.as_str(),
            proven.pod.as_deref()
        ),
        ("payments", "pay", Some("pay-0"))
    );
    // Forged, expired or for another audience: the API server does not authenticate it.
    let refused = reviewer.review("forged").await.unwrap().unwrap_err();
    assert_eq!(refused.reason, RefusalReason::InvalidProof);
    assert_eq!(reviews.lock().unwrap().len(), 2);
    assert!(
        reviews
            .lock()
            .unwrap()
            .iter()
            .all(|r| r["spec"]["audiences"] == json!(["weir"]))
    );

    // An API server that cannot be reached is an error to retry, not a refusal.
    let gone = KubeTokenReviewer(
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap(),
    );
    assert!(gone.review("pay-0-token").await.is_err());
}
