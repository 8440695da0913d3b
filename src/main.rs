use std::process::ExitCode;

use clap::Parser;
use weir::cli::{Cli, Command, RecommendCommand};

/// Runs a long-running mode on a multi-threaded runtime.
fn block_on(
    mode: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(mode).map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = weir::telemetry::init(&cli.telemetry) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Crds => weir_crds::crds_yaml()
            .map(|yaml| {
                print!("{yaml}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Command::Validate(args) => weir::validate::run(&args),
        Command::Bootstrap(args) => {
            weir::proxies::print_bootstrap(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::ProxyStatus(args) => weir::proxies::proxy_status(&args),
        Command::Up(args) => block_on(weir::local::run(*args)),
        Command::XdsServer(args) => block_on(weir::cluster::run_xds_server(*args)),
        Command::Controllers(args) => block_on(weir::autoscaler::run_controllers(*args)),
        Command::Recommend(RecommendCommand::Replicas(args)) => weir::recommend::replicas(&args),
        Command::Recommend(RecommendCommand::Nodes(args)) => weir::recommend::nodes(&args),
        Command::MetricsAdapter(args) => block_on(weir::metrics_adapter::run(*args)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}
