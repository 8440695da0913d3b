//! `weir recommend replicas` on the documented examples (golden: `examples/recommend/*.yaml`
//! → the `.json` beside each; `WEIR_BLESS=1` rewrites them), and its errors.

#![allow(clippy::unwrap_used)]

use std::fs;

use weir_tests::{weir, workspace_root};

/// Runs `weir recommend <what>` on every `dir/*.yaml` (with the flags `flags` reads from
/// the file) and compares its output with the `.json` beside it; `WEIR_BLESS=1` rewrites
/// them. Returns how many it checked.
fn check_goldens(dir: &str, what: &str, flags: impl Fn(&str) -> Vec<String>) -> usize {
    let dir = workspace_root().join(dir);
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let output = weir()
            .args(["recommend", what])
            .args(flags(&fs::read_to_string(&path).unwrap()))
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "{}: {stdout}{}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let golden = path.with_extension("json");
        if bless {
            fs::write(&golden, &stdout).unwrap();
        } else {
            let expected = fs::read_to_string(&golden)
                .unwrap_or_else(|_| panic!("{} missing; run with WEIR_BLESS=1", golden.display()));
            assert_eq!(stdout, expected, "{} changed its output", path.display());
        }
        checked += 1;
    }
    checked
}

#[test]
fn documented_examples_give_their_recorded_decisions() {
    let checked = check_goldens("examples/recommend", "replicas", |_| Vec::new());
    assert!(checked >= 5, "only {checked} examples");
}

#[test]
fn a_bad_state_gets_one_line_naming_the_field_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        fs::read_to_string(workspace_root().join("examples/recommend/cpu-scale-up.yaml")).unwrap();
    let cases = [
        (
            example.replace("cpu: 500m", "cpu: plenty"),
            "pods[0].containers[0].requests.cpu",
        ),
        (
            example.replace("maxReplicas: 10", "maxReplicas: 0"),
            "policy.maxReplicas",
        ),
        (
            example.replace("minReplicas: 1", "minReplicas: 12"),
            "policy.minReplicas",
        ),
        (
            example.replace("currentReplicas", "replicas"),
            "replicas: unknown field",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("state-{i}.yaml"));
        fs::write(&path, text).unwrap();
        let output = weir()
            .args(["recommend", "replicas", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.starts_with(&format!("{}: {field}", path.display())),
            "expected {field}: {stdout}"
        );
    }
}

/// The flags on an example's first line: `# weir recommend nodes FLAGS -f FILE`.
fn example_flags(text: &str) -> Vec<String> {
    let first = text.lines().next().unwrap();
    let flags = first
        .strip_prefix("# weir recommend nodes ")
        .and_then(|rest| rest.split(" -f ").next())
        .unwrap_or_else(|| {
            panic!("first line must be `# weir recommend nodes FLAGS -f FILE`: {first}")
        });
    flags.split_whitespace().map(String::from).collect()
}

#[test]
fn node_examples_give_their_recorded_plans() {
    let checked = check_goldens("examples/recommend-nodes", "nodes", example_flags);
    assert!(checked >= 3, "only {checked} examples");
}

#[test]
fn a_bad_snapshot_or_flag_gets_one_line_naming_it_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        fs::read_to_string(workspace_root().join("examples/recommend-nodes/scale-up.yaml"))
            .unwrap();
    let cases: [(String, &[&str], &str); 5] = [
        (
            example.replace("cpu: \"1500m\"", "cpu: lots"),
            &[],
            "Pod shop/web-1: spec.containers[0].resources.requests.cpu",
        ),
        (
            example.replace("    maxSize: 5\n", "    maxSize: -1\n"),
            &[],
            "NodePool highmem: spec.maxSize",
        ),
        (
            example.replace("kind: Node\n", "kind: Node\n  spec: {taints: 3}\n"),
            &[],
            "items[4] (Node general-1): spec.taints",
        ),
        (
            example.clone(),
            &["--expander", "cheapest"],
            "error: invalid value 'cheapest'",
        ),
        (
            example.clone(),
            &["--scale-down-utilization-threshold", "1.5"],
            "--scale-down-utilization-threshold: 1.5 is not between 0 and 1",
        ),
    ];
    for (i, (text, flags, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("snapshot-{i}.yaml"));
        fs::write(&path, text).unwrap();
        let output = weir()
            .args(["recommend", "nodes", "--now", "2026-11-22T10:00:00Z"])
            .args(*flags)
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_ne!(output.status.code(), Some(0), "{out}");
        assert!(
            out.contains(expected),
            "case {i}: expected {expected}: {out}"
        );
        if output.status.code() == Some(1) {
            assert_eq!(out.lines().count(), 1, "{out}");
        }
    }
}
