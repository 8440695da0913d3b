//! Logging: tracing to stderr, as text or JSON, filtered by `--log-level`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::{EnvFilter, fmt};

use crate::args::{LogFormat, TelemetryArgs};

/// Installs the global subscriber.
pub fn init(args: &TelemetryArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?} is not a valid filter", args.log_level))?;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr is gone (a closed pipe), tracing-subscriber would report the failed
        // write with `eprintln!`, which panics: the task that logged (the signal handler,
        // a controller loop) would die, and SIGTERM would no longer stop the process.
        // Dropping the lines instead keeps it working and stoppable.
        .log_internal_errors(false);
    let result = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
