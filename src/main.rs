use std::process::ExitCode;

use clap::Parser;
use weir::{
    cli::{Cli, Command, RecommendCommand},
    commands::{self, block_on},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = weir_runtime::telemetry::init(&cli.telemetry) {
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
        Command::Validate(args) => commands::validate::run(&args),
        Command::Bootstrap(args) => {
            commands::proxies::print_bootstrap(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Capture(args) => weir_xds::iptables::run(&args).map(|()| ExitCode::SUCCESS),
        Command::ProxyStatus(args) => commands::proxies::proxy_status(&args),
        Command::Agent(args) => block_on(weir_xds::agent::run(args)),
        Command::Up(args) => block_on(commands::up::run(*args)),
        Command::XdsServer(args) => block_on(weir_xds::run::run_in_cluster(*args)),
        Command::Controllers(args) => block_on(weir_controllers::run::run_in_cluster(*args)),
        Command::Recommend(RecommendCommand::Replicas(args)) => {
            commands::recommend::replicas(&args)
        }
        Command::Recommend(RecommendCommand::Nodes(args)) => commands::recommend::nodes(&args),
        Command::Simulate(args) => commands::simulate::run(&args),
        Command::MetricsAdapter(args) => block_on(weir_metrics_adapter::run::run_in_cluster(*args)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}
