//! The mesh-TLS controller's sidecars read from Prometheus: which are connected and what
//! their inbound listeners counted.
//!
//! - [`PrometheusSidecars`] (a cluster, or `weir up --mesh-tls-source prometheus`):
//!   Prometheus scraping the sidecars' `/stats/prometheus` (`weir bootstrap --stats-port`),
//!   their series labelled `namespace` and `pod` (the usual Kubernetes service-discovery
//!   relabelling, and prometheus-adapter's convention). A sidecar is connected when its
//!   `envoy_control_plane_connected_state` is 1; the counters are the same Envoy
//!   statistics the admin source reads.

use std::collections::HashMap;

use weir_runtime::prometheus::{Prometheus, Sample};
use weir_xds::envoy::{INBOUND_STAT_PREFIX, PLAINTEXT_STAT_SUFFIX};

use super::{InboundCounters, Sidecar, SidecarReading, SidecarSource};

/// The PromQL queries, grouped by the sidecar's `namespace` and `pod`.
#[derive(Clone, Debug)]
pub struct SidecarQueries {
    /// Connected sidecars: value 1.
    pub connected: String,
    /// [`InboundCounters::plaintext_connections`].
    pub plaintext_connections: String,
    /// [`InboundCounters::requests`].
    pub requests: String,
    /// [`InboundCounters::errors_5xx`].
    pub errors_5xx: String,
    /// [`InboundCounters::tls_errors`].
    pub tls_errors: String,
}

impl Default for SidecarQueries {
    fn default() -> Self {
        let by = "by (namespace, pod)";
        let hcm = format!(
            r#"envoy_http_conn_manager_prefix=~"{INBOUND_STAT_PREFIX}|{INBOUND_STAT_PREFIX}{PLAINTEXT_STAT_SUFFIX}""#
        );
        SidecarQueries {
            connected: format!("max {by} (envoy_control_plane_connected_state)"),
            plaintext_connections: format!(
                r#"sum {by} (envoy_http_downstream_cx_total{{envoy_http_conn_manager_prefix="{INBOUND_STAT_PREFIX}{PLAINTEXT_STAT_SUFFIX}"}})"#
            ),
            requests: format!("sum {by} (envoy_http_downstream_rq_completed{{{hcm}}})"),
            errors_5xx: format!(
                r#"sum {by} (envoy_http_downstream_rq_xx{{envoy_response_code_class="5",{hcm}}})"#
            ),
            tls_errors: format!(
                r#"sum {by} (envoy_listener_ssl_connection_error{{envoy_listener_address="{INBOUND_STAT_PREFIX}"}})"#
            ),
        }
    }
}

/// A cluster: Prometheus scraping the sidecars.
#[derive(Debug, Clone)]
pub struct PrometheusSidecars {
    prometheus: Prometheus,
}

impl PrometheusSidecars {
    /// Reads from the Prometheus at `url`.
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(PrometheusSidecars {
            prometheus: Prometheus::new(url)?,
        })
    }
}

/// The (namespace, pod) of a sample grouped by them.
fn pod_of(sample: &Sample) -> Option<Sidecar> {
    Some(Sidecar {
        namespace: sample.labels.get("namespace")?.clone(),
        pod: sample.labels.get("pod")?.clone(),
    })
}

/// Readings from the five queries' results: every sidecar whose connected state is 1,
/// with its counters (a series that does not exist counts 0: a Strict listener has no
/// plaintext chain). Pure, for tests.
pub fn readings_from(
    connected: &[Sample],
    plaintext_connections: &[Sample],
    requests: &[Sample],
    errors_5xx: &[Sample],
    tls_errors: &[Sample],
) -> Vec<SidecarReading> {
    let mut counters: HashMap<Sidecar, InboundCounters> = connected
        .iter()
        .filter(|s| s.value >= 1.0)
        .filter_map(pod_of)
        .map(|sidecar| (sidecar, InboundCounters::default()))
        .collect();
    type Field = fn(&mut InboundCounters) -> &mut u64;
    let fields: [(&[Sample], Field); 4] = [
        (plaintext_connections, |c| &mut c.plaintext_connections),
        (requests, |c| &mut c.requests),
        (errors_5xx, |c| &mut c.errors_5xx),
        (tls_errors, |c| &mut c.tls_errors),
    ];
    for (samples, field) in fields {
        for sample in samples {
            if let Some(c) = pod_of(sample).and_then(|p| counters.get_mut(&p))
                && sample.value.is_finite()
                && sample.value >= 0.0
            {
                *field(c) = sample.value as u64;
            }
        }
    }
    let mut readings: Vec<SidecarReading> = counters
        .into_iter()
        .map(|(sidecar, c)| SidecarReading {
            sidecar,
            counters: Some(c),
        })
        .collect();
    readings.sort_by(|a, b| a.sidecar.cmp(&b.sidecar));
    readings
}

impl SidecarSource for PrometheusSidecars {
    async fn read(&self) -> Result<Vec<SidecarReading>, String> {
        let q = SidecarQueries::default();
        let (connected, plaintext, requests, errors, tls) = futures::try_join!(
            self.prometheus.query(&q.connected),
            self.prometheus.query(&q.plaintext_connections),
            self.prometheus.query(&q.requests),
            self.prometheus.query(&q.errors_5xx),
            self.prometheus.query(&q.tls_errors),
        )?;
        Ok(readings_from(
            &connected, &plaintext, &requests, &errors, &tls,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pod: &str, value: f64) -> Sample {
        Sample {
            labels: [("namespace", "payments"), ("pod", pod)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp: 0.0,
        }
    }

    #[test]
    fn only_connected_sidecars_count_and_missing_series_are_zero() {
        let readings = readings_from(
            &[
                sample("pay-0", 1.0),
                sample("pay-1", 1.0),
                sample("old", 0.0),
            ],
            &[sample("pay-0", 4.0), sample("old", 9.0)],
            &[sample("pay-0", 20.0), sample("pay-1", 7.0)],
            &[sample("pay-1", 2.0)],
            &[],
        );
        let pods: Vec<&str> = readings.iter().map(|r| r.sidecar.pod.as_str()).collect();
        assert_eq!(pods, ["pay-0", "pay-1"]);
        assert_eq!(
            readings[0].counters,
            Some(InboundCounters {
                plaintext_connections: 4,
                requests: 20,
                errors_5xx: 0,
                tls_errors: 0
            })
        );
        assert_eq!(readings[1].counters.map(|c| c.errors_5xx), Some(2));
    }

    #[test]
    fn queries_name_the_inbound_statistics_weir_configures() {
        let q = SidecarQueries::default();
        assert!(
            q.plaintext_connections
                .contains(r#"envoy_http_conn_manager_prefix="inbound_plaintext""#)
        );
        assert!(q.tls_errors.contains(r#"envoy_listener_address="inbound""#));
        assert!(q.requests.contains(r#"=~"inbound|inbound_plaintext""#));
    }
}
