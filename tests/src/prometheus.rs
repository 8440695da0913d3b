//! A real Prometheus (Debian's `prometheus`, with `promtool` to backfill data) for tests.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{eventually, free_port, http_get};

/// The last whole second before now (Unix seconds): where backfilled data ends, so that a
/// query evaluated at "now" finds it.
pub fn last_second() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - 1
}

/// A Prometheus on a free loopback port, stopped and reaped on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with no scrape targets, its TSDB backfilled from `openmetrics`
    /// (OpenMetrics text ending in `# EOF`; empty for none).
    pub fn start(openmetrics: &str) -> Prometheus {
        Self::launch(openmetrics, "")
    }

    /// Starts Prometheus scraping `path` on each target every second, each target's
    /// series carrying its labels (as Kubernetes service discovery's relabelling would
    /// give them `namespace` and `pod`).
    pub fn scraping(path: &str, targets: &[(SocketAddr, &[(&str, &str)])]) -> Prometheus {
        let mut config = format!(
            "  scrape_interval: 1s\nscrape_configs:\n- job_name: targets\n  metrics_path: {path}\n  static_configs:\n"
        );
        for (addr, labels) in targets {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            config.push_str(&format!(
                "  - targets: ['{addr}']\n    labels: {{{}}}\n",
                labels.join(", ")
            ));
        }
        Self::launch("", &config)
    }

    /// Starts Prometheus with `config` appended after its `global:` settings.
    fn launch(openmetrics: &str, config_tail: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        if !openmetrics.is_empty() {
            let input = dir.path().join("input.om");
            std::fs::write(&input, openmetrics).expect("writing the backfill");
            let status = Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&input)
                .arg(&data)
                .stdout(Stdio::null())
                .status()
                .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
            assert!(status.success(), "promtool failed to backfill");
        }
        let config = dir.path().join("prometheus.yml");
        let query_log = dir.path().join("queries.log");
        std::fs::write(
            &config,
            format!(
                "global:\n  query_log_file: {}\n{config_tail}",
                query_log.display()
            ),
        )
        .expect("config");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-admin-api")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        // Owned from here on: dropping it (also on a panic) stops and reaps the process.
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(30), || {
            http_get(addr, "/-/ready").ok().filter(|(s, _)| *s == 200)
        });
        assert!(up.is_some(), "Prometheus did not become ready");
        prometheus
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What an instant query returns, as `label`'s value → sample value (series without
    /// `label` are left out).
    pub fn values_by(&self, query: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
        let out = Command::new("curl")
            .args(["-sf", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(format!("{}/api/v1/query", self.url()))
            .output()
            .expect("curl");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("Prometheus answered {query:?} with no JSON: {e}"));
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("Prometheus failed {query:?}: {body}"))
            .iter()
            .filter_map(|s| {
                Some((
                    s["metric"][label].as_str()?.to_string(),
                    s["value"][1].as_str()?.parse::<f64>().ok()?,
                ))
            })
            .collect()
    }

    /// The text of every query it has evaluated, in order, from its query log.
    pub fn logged_queries(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self._dir.path().join("queries.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|entry| entry["params"]["query"].as_str().map(str::to_string))
            .collect()
    }

    /// Deletes the series `selector` matches, and their tombstones (the admin API).
    pub fn delete_series(&self, selector: &str) {
        for (path, data) in [
            ("/api/v1/admin/tsdb/delete_series", Some(selector)),
            ("/api/v1/admin/tsdb/clean_tombstones", None),
        ] {
            let mut curl = Command::new("curl");
            curl.args(["-sf", "-X", "POST"]);
            if let Some(selector) = data {
                curl.args(["-G", "--data-urlencode"])
                    .arg(format!("match[]={selector}"));
            }
            let status = curl
                .arg(format!("{}{path}", self.url()))
                .stdout(Stdio::null())
                .status()
                .expect("curl");
            assert!(status.success(), "Prometheus {path} failed");
        }
    }

    /// Instant queries it has answered, from its own /metrics.
    pub fn queries_answered(&self) -> u64 {
        let (_, metrics) = http_get(self.addr, "/metrics").expect("Prometheus /metrics");
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains(r#"handler="/api/v1/query""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}
