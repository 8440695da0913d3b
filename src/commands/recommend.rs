//! `weir recommend replicas -f STATE` and `weir recommend nodes -f SNAPSHOT`: the
//! autoscalers' decisions on a captured state, printed as JSON. Exit 0 with the decision;
//! 1 when the file is invalid (one line naming the field); 2 when it cannot be read.

use std::{io::Read, process::ExitCode};

use anyhow::Context;
use serde_json::json;
use weir_controllers::pod_autoscaler::state;
use weir_crds::SchemaValidator;

use crate::cli::{RecommendNodesArgs, RecommendReplicasArgs};

/// The file's name as given, and its text (`-`: standard input).
fn read_input(file: &std::path::Path, what: &str) -> anyhow::Result<(String, String)> {
    let name = file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading the {what} from standard input"))?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?
    };
    Ok((name, text))
}

/// The first problem the API server would find in a ScalingPolicy with this spec, as
/// `<field under spec>: <message>` (e.g. `.maxReplicas: ...`).
pub fn policy_problem(
    spec: &weir_crds::scaling_policy::ScalingPolicySpec,
) -> anyhow::Result<Option<String>> {
    let object = json!({
        "apiVersion": "weir.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "recommend", "namespace": "default"},
        "spec": serde_json::to_value(spec)?,
    });
    let problems = SchemaValidator::for_weir_crds().validate(&object);
    Ok(problems.first().map(|problem| {
        let field = problem.field.strip_prefix("spec").unwrap_or(&problem.field);
        format!("{field}: {}", problem.message)
    }))
}

/// Runs `weir recommend replicas`.
pub fn replicas(args: &RecommendReplicasArgs) -> anyhow::Result<ExitCode> {
    let (name, text) = read_input(&args.file, "STATE")?;
    let parsed = match state::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            println!("{name}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(problem) = policy_problem(&parsed.policy)? {
        println!("{name}: policy{problem}");
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

/// Runs `weir recommend nodes`.
pub fn nodes(args: &RecommendNodesArgs) -> anyhow::Result<ExitCode> {
    use weir_controllers::node_autoscaler::{self, Snapshot, SnapshotFile};

    if let Err(e) = args.settings.validate() {
        println!("{e}");
        return Ok(ExitCode::FAILURE);
    }
    let now = match &args.now {
        Some(text) => match text.parse::<k8s_openapi::jiff::Timestamp>() {
            Ok(now) => now,
            Err(e) => {
                println!("--now: {text:?} is not an RFC 3339 time: {e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => k8s_openapi::jiff::Timestamp::now(),
    };
    let (name, text) = read_input(&args.file, "SNAPSHOT")?;
    let file = match SnapshotFile::parse(&text) {
        Ok(file) => file,
        Err(e) => {
            println!("{name}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // NodePools are checked as the API server would check them.
    let validator = SchemaValidator::for_weir_crds();
    for pool in &file.pools {
        let object = serde_json::to_value(pool)?;
        if let Some(problem) = validator.validate(&object).first() {
            println!(
                "{name}: NodePool {}: {}: {}",
                pool.metadata.name.as_deref().unwrap_or_default(),
                problem.field,
                problem.message
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let snapshot = Snapshot::build(&file.objects());
    // A dry run plans on all of the snapshot or not at all.
    if let Some(warning) = snapshot.warnings.first() {
        println!("{name}: {warning}");
        return Ok(ExitCode::FAILURE);
    }
    let plan = node_autoscaler::plan(&snapshot, &args.settings, now);
    println!("{}", serde_json::to_string_pretty(&plan)?);
    Ok(ExitCode::SUCCESS)
}
