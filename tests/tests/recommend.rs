//! `weir recommend replicas` on the documented examples (golden: `examples/recommend/*.yaml`
//! → the `.json` beside each; `WEIR_BLESS=1` rewrites them), and its errors.

#![allow(clippy::unwrap_used)]

use std::fs;

use weir_tests::{weir, workspace_root};

#[test]
fn documented_examples_give_their_recorded_decisions() {
    let dir = workspace_root().join("examples/recommend");
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let output = weir()
            .args(["recommend", "replicas", "-f"])
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
            assert_eq!(stdout, expected, "{} changed its decision", path.display());
        }
        checked += 1;
    }
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
