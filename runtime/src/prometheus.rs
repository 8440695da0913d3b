//! A client of the Prometheus HTTP API: instant and range queries and series lookups. The pod
//! autoscaler, the mesh-TLS controller and the metrics adapter all read Prometheus through
//! it; prometheus-http-query does the HTTP and the response decoding.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use prometheus_http_query::{Client, response::Data};

/// One sample of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
    /// Its time (Unix seconds).
    pub timestamp: f64,
}

/// One series of a range query: its labels and its (Unix seconds, value) points.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its points, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// Prometheus refuses range queries of more than this many points per series.
pub const MAX_RANGE_POINTS: i64 = 11_000;

/// The Prometheus HTTP API.
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.client.base_url().as_str())
            .finish()
    }
}

impl Prometheus {
    /// A client for `url` (e.g. `http://prometheus.monitoring:9090`).
    pub fn new(url: &str) -> Result<Prometheus, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client: Client = url
            .parse()
            .map_err(|e| format!("Prometheus URL {url:?}: {e}"))?;
        Ok(Prometheus { client })
    }

    /// Label sets of the series matching `selector` seen since `start`.
    pub async fn series(
        &self,
        selector: &str,
        start: Timestamp,
    ) -> Result<Vec<BTreeMap<String, String>>, String> {
        #[derive(serde::Deserialize)]
        struct Response {
            status: String,
            #[serde(default)]
            data: Vec<BTreeMap<String, String>>,
            #[serde(default)]
            error: Option<String>,
        }
        let mut url = self.client.base_url().clone();
        url.path_segments_mut()
            .map_err(|()| "the Prometheus URL cannot be a base".to_string())?
            .pop_if_empty()
            .extend(["api", "v1", "series"]);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("match[]", selector)
            .append_pair("start", &start.as_second().to_string())
            .finish();
        let response = self
            .client
            .inner()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("Prometheus series request failed: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("Prometheus series response: {e}"))?;
        let parsed: Response = serde_json::from_slice(&bytes)
            .map_err(|e| format!("Prometheus series response ({status}): {e}"))?;
        if parsed.status != "success" {
            return Err(format!(
                "Prometheus rejected series query {selector:?}: {}",
                parsed.error.unwrap_or_default()
            ));
        }
        Ok(parsed.data)
    }

    /// The instant vector (or scalar) `query` evaluates to now.
    pub async fn query(&self, query: &str) -> Result<Vec<Sample>, String> {
        self.query_at(query, None).await
    }

    /// The instant vector (or scalar) `query` evaluates to at `at` (Prometheus's now when
    /// `None`).
    pub async fn query_at(
        &self,
        query: &str,
        at: Option<Timestamp>,
    ) -> Result<Vec<Sample>, String> {
        let mut request = self.client.query(query);
        if let Some(at) = at {
            request = request.at(at.as_second());
        }
        let result = request
            .post()
            .await
            .map_err(|e| format!("Prometheus query failed: {e}"))?;
        match result.data() {
            Data::Vector(vector) => Ok(vector
                .iter()
                .map(|s| Sample {
                    labels: s.metric().clone().into_iter().collect(),
                    value: s.sample().value(),
                    timestamp: s.sample().timestamp(),
                })
                .collect()),
            Data::Scalar(s) => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: s.value(),
                timestamp: s.timestamp(),
            }]),
            Data::Matrix(_) => {
                Err("the query returned a range vector; use an instant query".into())
            }
        }
    }

    /// The range vector `query` evaluates to from `start` to `end`, every `step_seconds`
    /// (at most [`MAX_RANGE_POINTS`] points, as Prometheus allows).
    pub async fn query_range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step_seconds: i64,
    ) -> Result<Vec<RangeSeries>, String> {
        let (start, end) = (start.as_second(), end.as_second());
        let step = step_seconds.max(1);
        if (end - start) / step >= MAX_RANGE_POINTS {
            return Err(format!(
                "a range of {} s at {step} s steps is more than Prometheus's {MAX_RANGE_POINTS} points",
                end - start
            ));
        }
        let result = self
            .client
            .query_range(query, start, end, step as f64)
            .post()
            .await
            .map_err(|e| format!("Prometheus range query failed: {e}"))?;
        match result.data() {
            Data::Matrix(series) => Ok(series
                .iter()
                .map(|s| RangeSeries {
                    labels: s.metric().clone().into_iter().collect(),
                    points: s
                        .samples()
                        .iter()
                        .map(|p| (p.timestamp().round() as i64, p.value()))
                        .collect(),
                })
                .collect()),
            _ => Err("a range query returned no range vector".into()),
        }
    }
}
