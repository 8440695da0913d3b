//! `weir simulate` as users run it: a small checked-in trace through the example policy
//! and HPA's replay, `summary.json` against a golden file (`WEIR_BLESS=1` rewrites it),
//! the timeline's shape, and bad input refused with the file, line and field.

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
