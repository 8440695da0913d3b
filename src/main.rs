use std::process::ExitCode;

use clap::Parser;
use weir::cli::{Cli, Command};

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
        Command::Up(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(weir::local::run(args)))
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}
