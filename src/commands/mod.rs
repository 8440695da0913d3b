//! One wiring module per subcommand: each parses nothing and owns nothing, it starts what
//! the components provide. The long-running in-cluster commands are one call each into
//! their component's `run_in_cluster`; `weir up` wires every component into one process.

pub mod proxies;
pub mod recommend;
pub mod simulate;
pub mod up;
pub mod validate;

/// Runs a long-running mode on a multi-threaded runtime.
pub fn block_on(
    mode: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(mode)
        .map(|()| std::process::ExitCode::SUCCESS)
}
