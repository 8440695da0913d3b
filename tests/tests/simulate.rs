//! `weir simulate` as users run it: a small checked-in trace through the example policy
//! and HPA's replay, `summary.json` against a golden file (`WEIR_BLESS=1` rewrites it),
//! the timeline's shape, the SVG and PNG plots, and bad input refused with the file, line and field.

#![allow(clippy::unwrap_used)]

use weir_tests::{weir, workspace_root};

fn simulate(args: &[&str]) -> (Option<i32>, String) {
    let out: std::process::Output = weir().arg("simulate").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn summary_and_timeline_of_a_small_trace() {
    let root = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, stdout) = simulate(&[
        "--policy",
        root.join("examples/simulate/policy.yaml").to_str().unwrap(),
        "--trace",
        root.join("examples/simulate/small.csv").to_str().unwrap(),
        "--capacity-per-pod",
        "1",
        "--compare",
        "hpa",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Paths differ per checkout.
    summary["trace"] = "small.csv".into();
    summary["policy"] = "policy.yaml".into();
    let text = serde_json::to_string_pretty(&summary).unwrap() + "\n";
    let golden = root.join("tests/golden/simulate-summary.json");
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(&golden).unwrap(),
        "summary.json changed; if deliberate: WEIR_BLESS=1 cargo test -p weir-tests --test simulate"
    );
    let hpa = &summary["policies"]["hpa"];
    assert_eq!(hpa["decisions"], 1440, "6 hours at 15 s");
    assert!(hpa["replica_hours"].as_f64().unwrap() > 0.0);

    let timeline = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    let mut lines = timeline.lines();
    assert_eq!(
        lines.next().unwrap(),
        "time_seconds,offered_load,observed_load,policy_desired,policy_ready,policy_running,policy_capacity,policy_forecast_replicas,hpa_desired,hpa_ready,hpa_running,hpa_capacity,hpa_forecast_replicas"
    );
    assert_eq!(lines.clone().count(), 1440);
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first.len(), 13);
    assert_eq!(first[0], "0");
    // The forecast column is filled for the policy and empty for HPA.
    assert!(!first[7].is_empty() && first[12].is_empty(), "{first:?}");

    // The picture: an SVG that parses as XML, a panel per policy.
    let svg = out.join("plot.svg");
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
        ])
        .arg(&svg)
        .status()
        .unwrap();
    assert!(parsed.success(), "plot.svg is not well-formed XML");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("policy: ") && text.contains("hpa: "));

    // And as a PNG of the same size (the PNG signature, then IHDR's width and height),
    // with something drawn on it: a blank 1200×720 PNG compresses to a few kilobytes.
    let png = std::fs::read(out.join("plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    let (width, height) = (dimension(16), dimension(20));
    assert!(
        text.starts_with(&format!("<svg width=\"{width}\" height=\"{height}\"")),
        "{width}×{height}"
    );
    assert!(png.len() > 50_000, "plot.png is {} bytes", png.len());
}

#[test]
fn bad_input_names_the_file_line_and_field() {
    let root = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "timestamp_seconds,value\n0,10\n300,ten\n").unwrap();
    let policy = root.join("examples/simulate/policy.yaml");
    let (code, stdout) = simulate(&[
        "--policy",
        policy.to_str().unwrap(),
        "--trace",
        bad.to_str().unwrap(),
        "--capacity-per-pod",
        "1",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("bad.csv:3: value"), "{stdout}");
    assert!(
        !dir.path().join("out").exists(),
        "nothing written for bad input"
    );

    let cpu = dir.path().join("cpu.yaml");
    std::fs::write(
        &cpu,
        std::fs::read_to_string(&policy).unwrap().replace(
            "    - type: Pods\n      pods:\n        metric: {name: requests_per_second}\n        target: {type: AverageValue, averageValue: 700m}",
            "    - type: Resource\n      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}",
        ),
    )
    .unwrap();
    let (code, stdout) = simulate(&[
        "--policy",
        cpu.to_str().unwrap(),
        "--trace",
        root.join("examples/simulate/small.csv").to_str().unwrap(),
        "--capacity-per-pod",
        "1",
    ]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("spec.metrics[0].type"), "{stdout}");
}

/// HPA's replay decides as `weir recommend replicas` does, decision by decision: each
/// sync's inputs (pods, the reading, the remembered history) written as a STATE file.
#[test]
fn hpa_replay_matches_recommend_replicas_decision_by_decision() {
    use std::io::Write;

    use serde_json::{Value, json};
    use weir_controllers::{
        pod_autoscaler::MetricReading,
        simulate::{self, ModelOptions, Trace},
    };

    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("examples/simulate/policy.yaml")).unwrap();
    let hpa = simulate::as_hpa(&simulate::parse_policy(&text, "policy.yaml").unwrap());
    // Up, further up, down, and down again past the stabilization window, in 30 minutes.
    let trace = Trace::from_rates(
        vec![(0, 1.0), (240, 4.0), (480, 6.5), (720, 1.5), (1200, 0.5)],
        1800,
    );
    let options = ModelOptions {
        capacity_per_pod: 1.0,
        startup_seconds: 60,
        sync_seconds: 15,
        metric_window_seconds: 60,
        initial_replicas: None,
    };
    let mut states: Vec<(Value, i32)> = Vec::new();
    simulate::replay_observed(&hpa, &trace, &options, |_| {}, |d| {
        let pods: Vec<Value> = d
            .pods
            .iter()
            .map(|p| {
                let mut pod = json!({"name": p.name, "phase": "Running", "ready": p.ready == Some(true)});
                if let Some(t) = p.start_time {
                    pod["startTime"] = json!(t.to_string());
                }
                if let Some(t) = p.ready_since {
                    pod["readySince"] = json!(t.to_string());
                }
                pod
            })
            .collect();
        let MetricReading::Pods(readings) = &d.readings[0] else {
            panic!("a Pods metric")
        };
        let samples: serde_json::Map<String, Value> = readings
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    json!({"value": format!("{}m", r.milli), "timestamp": r.timestamp.to_string(), "window": "60s"}),
                )
            })
            .collect();
        let state = json!({
            "policy": serde_json::to_value(&d.policy.spec).unwrap(),
            "currentReplicas": d.current_replicas,
            "statusReplicas": d.status_replicas,
            "now": d.now.to_string(),
            "pods": pods,
            "samples": [{"pods": samples}],
            "history": {
                "recommendations": d.history.recommendations.iter().map(|(t, r)| json!({"time": t.to_string(), "replicas": r})).collect::<Vec<_>>(),
                "scaleEvents": d.history.scale_events.iter().map(|(t, c)| json!({"time": t.to_string(), "change": c})).collect::<Vec<_>>(),
                "consecutiveFailures": d.history.consecutive_failures,
            },
        });
        states.push((state, d.desired));
    })
    .unwrap();
    assert_eq!(states.len(), 120);
    let changes = states.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(
        changes >= 4,
        "the trace should move the replica count: {changes}"
    );
    for (i, (state, desired)) in states.iter().enumerate() {
        let mut child = weir()
            .args(["recommend", "replicas", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "sync {i}: {text}\n{state}");
        let decision: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            decision["desiredReplicas"], *desired,
            "sync {i} at {}: recommend says {}, the replay decided {desired}",
            state["now"], decision["desiredReplicas"]
        );
    }
}
