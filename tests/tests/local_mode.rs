//! `weir up` on a directory of manifests: readiness, metrics, live edits, broken files,
//! graceful shutdown.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use weir_tests::{WeirUp, copy_dir, eventually, weir, workspace_root};

/// A scratch copy of the quickstart that the test may edit.
fn quickstart_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a scratch directory");
    copy_dir(&workspace_root().join("examples/quickstart"), dir.path())
        .expect("copying the quickstart");
    dir
}

/// Replaces a file atomically, as editors and `kubectl`-style tools do.
fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, text).expect("writing the new version");
    fs::rename(&tmp, path).expect("replacing the file");
}

#[test]
fn serves_health_readiness_and_metrics_for_the_quickstart() {
    let config = quickstart_copy();
    let up = WeirUp::start(config.path(), &[]);
    assert_eq!(up.get("/healthz").unwrap(), (200, "ok\n".into()));
    assert_eq!(up.get("/readyz").unwrap().0, 200);
    let metrics = up.metrics();
    let objects = |kind: &str| {
        weir_tests::metric_value(&metrics, &format!("weir_store_objects{{kind=\"{kind}\"}}"))
    };
    assert_eq!(objects("ScalingPolicy"), Some(3.0));
    assert_eq!(objects("HTTPRoute"), Some(3.0));
    assert_eq!(objects("NodePool"), Some(2.0));
    assert_eq!(objects("EndpointSlice"), Some(5.0));
    assert_eq!(
        weir_tests::metric_value(&metrics, "weir_config_problems{severity=\"error\"}"),
        Some(0.0)
    );
    assert!(
        metrics.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let (status, problems) = up.get("/debug/problems").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&problems).unwrap()["problems"],
        serde_json::json!([])
    );
}

#[test]
fn an_edited_file_is_applied_live() {
    let config = quickstart_copy();
    let up = WeirUp::start(config.path(), &[]);
    let reloads_before = up
        .metric("weir_config_reloads_total{result=\"clean\"}")
        .unwrap();

    // Add a Service to an existing file.
    let payments = config.path().join("payments.yaml");
    let text = fs::read_to_string(&payments).unwrap()
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: refunds, namespace: payments}\nspec:\n  ports: [{port: 80}]\n";
    let edited_at = Instant::now();
    write_file(&payments, &text);
    let applied = eventually(Duration::from_secs(10), || {
        (up.metric("weir_store_objects{kind=\"Service\"}") == Some(6.0))
            .then(|| edited_at.elapsed())
    });
    let latency = applied.unwrap_or_else(|| panic!("the edit was not applied; log:\n{}", up.log()));
    eprintln!("edit applied after {latency:?}");
    assert!(
        up.metric("weir_config_reloads_total{result=\"clean\"}")
            .unwrap()
            > reloads_before
    );
    assert!(
        up.log().contains("file loaded") && up.log().contains("payments.yaml"),
        "the log names the file"
    );

    // Delete a file: its objects go.
    fs::remove_file(config.path().join("node-pools.yaml")).unwrap();
    let removed = eventually(Duration::from_secs(10), || {
        (up.metric("weir_store_objects{kind=\"NodePool\"}") == Some(0.0)).then_some(())
    });
    assert!(
        removed.is_some(),
        "deleting a file deletes its objects; log:\n{}",
        up.log()
    );
}

#[test]
fn a_broken_file_is_reported_and_the_last_good_configuration_stays() {
    let config = quickstart_copy();
    let up = WeirUp::start(config.path(), &[]);
    let policies = config.path().join("scaling-policies.yaml");
    let good = fs::read_to_string(&policies).unwrap();

    // A YAML syntax error: nothing of the file is lost.
    write_file(&policies, &format!("{good}\n---\nkind: [unclosed\n"));
    let reported = eventually(Duration::from_secs(10), || {
        (up.metric("weir_config_problems{severity=\"error\"}") == Some(1.0)).then_some(())
    });
    assert!(reported.is_some(), "log:\n{}", up.log());
    assert_eq!(
        up.metric("weir_store_objects{kind=\"ScalingPolicy\"}"),
        Some(3.0)
    );
    assert_eq!(up.get("/healthz").unwrap().0, 200, "still serving");
    let (_, problems) = up.get("/debug/problems").unwrap();
    assert!(
        problems.contains("scaling-policies.yaml: YAML syntax error"),
        "{problems}"
    );
    assert!(
        up.log().contains("configuration rejected"),
        "logged at warn"
    );

    // An invalid object: its last good version stays, the problem names the field.
    write_file(
        &policies,
        &good.replacen("maxReplicas: 20", "maxReplicas: 1", 1),
    );
    let field_reported = eventually(Duration::from_secs(10), || {
        let (_, problems) = up.get("/debug/problems").ok()?;
        problems.contains("ScalingPolicy shop/storefront: spec.minReplicas: minReplicas must be less than or equal to maxReplicas").then_some(())
    });
    assert!(field_reported.is_some(), "log:\n{}", up.log());
    assert_eq!(
        up.metric("weir_store_objects{kind=\"ScalingPolicy\"}"),
        Some(3.0)
    );

    // Fixed again: the problem clears.
    write_file(&policies, &good);
    let cleared = eventually(Duration::from_secs(10), || {
        (up.metric("weir_config_problems{severity=\"error\"}") == Some(0.0)).then_some(())
    });
    assert!(cleared.is_some(), "log:\n{}", up.log());
    assert!(up.log().contains("problem resolved"));
}

#[test]
fn sigterm_stops_cleanly() {
    let config = quickstart_copy();
    let mut up = WeirUp::start(config.path(), &[]);
    let status = up
        .terminate(Duration::from_secs(15))
        .expect("weir up exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        up.log()
    );
    let log = up.log();
    assert!(
        log.contains("shutting down") && log.contains("stopped cleanly"),
        "{log}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let config = quickstart_copy();
    let mut up = WeirUp::start(config.path(), &["--log-format", "json"]);
    up.terminate(Duration::from_secs(15));
    let log = up.log();
    assert!(!log.is_empty());
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value.get("level").is_some() && value.get("message").is_some(),
            "{line}"
        );
    }
}

#[test]
fn a_missing_config_directory_fails_at_start_with_a_clear_error() {
    let output = weir()
        .args(["up", "--config", "/nonexistent/weir-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("config directory /nonexistent/weir-config"),
        "{stderr}"
    );
}
