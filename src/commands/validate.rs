//! `weir validate DIR`: every problem `weir up` would find, one line each, exit 1 if any.

use std::process::ExitCode;

use anyhow::Context;
use weir_store::{DirectoryIndex, Kind};

use weir_runtime::sources::files::walk_manifests;

use crate::cli::ValidateArgs;

/// Runs the command.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files =
        walk_manifests(&args.dir).with_context(|| format!("cannot read {}", args.dir.display()))?;
    if files.is_empty() {
        println!(
            "{}: no manifests (*.yaml, *.yml, *.json) found",
            args.dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut index = DirectoryIndex::default();
    let mut unreadable = Vec::new();
    for (name, path) in &files {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                index.load_file(name, &text);
            }
            Err(e) => unreadable.push(format!("{name}: cannot read: {e}")),
        }
    }
    let (state, problems) = index.state();
    for line in &unreadable {
        println!("{line}");
    }
    for problem in &problems {
        println!("{problem}");
    }
    // Local mode's MetricSamples, read as `weir up` reads them.
    let samples = weir_controllers::pod_autoscaler::samples::read_samples(&args.dir).err();
    if let Some(problem) = &samples {
        println!("{problem}");
    }
    let total = problems.len() + unreadable.len() + usize::from(samples.is_some());
    let objects: usize = Kind::ALL.iter().map(|k| state.count(*k)).sum();
    if total == 0 {
        eprintln!("ok: {objects} objects in {} files", files.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{total} problem(s) in {} files", files.len());
        Ok(ExitCode::FAILURE)
    }
}
