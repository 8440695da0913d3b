//! `weir recommend replicas -f STATE`: the pod autoscaler's decision on a captured state,
//! printed as JSON. Exit 0 with the decision; 1 when the STATE file is invalid (one line
//! naming the field); 2 when it cannot be read.

use std::{io::Read, process::ExitCode};

use anyhow::Context;
use serde_json::json;
use weir_controllers::pod_autoscaler::state;
use weir_crds::SchemaValidator;

use crate::cli::RecommendReplicasArgs;

/// Runs `weir recommend replicas`.
pub fn replicas(args: &RecommendReplicasArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the STATE from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?
    };
    let parsed = match state::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            println!("{name}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // The policy is checked as the API server would check a ScalingPolicy.
    let object = json!({
        "apiVersion": "weir.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "recommend", "namespace": "default"},
        "spec": serde_json::to_value(&parsed.policy)?,
    });
    let problems = SchemaValidator::for_weir_crds().validate(&object);
    if let Some(problem) = problems.first() {
        let field = problem.field.strip_prefix("spec").unwrap_or(&problem.field);
        println!("{name}: policy{field}: {}", problem.message);
        return Ok(ExitCode::FAILURE);
    }
    match parsed.recommend() {
        Ok(decision) => {
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{name}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
