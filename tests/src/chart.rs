//! The Helm chart rendered by Helm's own library (`scripts/render-chart.py`, with
//! helm-python-sdk in `.venv`), for the chart tests.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

pub use crate::workspace_root as root;

/// The virtualenv's Python (with helm-python-sdk), as scripts/setup.sh leaves it.
pub fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs helm-python-sdk)",
        venv.display()
    );
    venv
}

/// Renders the chart with `values`; Helm's message on failure.
pub fn render(values: &Value) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().expect("rendering the chart");
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).expect("rendering the chart");
    let out = Command::new(python())
        .arg(root().join("scripts/render-chart.py"))
        .arg("--values")
        .arg(&file)
        .output()
        .expect("rendering the chart");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("rendering the chart");
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"));
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// [`render`], panicking with Helm's message when the chart does not render.
pub fn render_ok(values: &Value) -> Vec<Value> {
    render(values).unwrap_or_else(|e| panic!("{values} does not render: {e}"))
}
