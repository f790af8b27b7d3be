//! The `skiff` binary: parses flags, builds each component's `Config`, starts
//! the components in order (store → API → scheduler and controllers →
//! agents) and handles signals. It holds no cluster logic of its own.

mod cli;
mod cluster;
mod components;
mod image;
mod join;
mod manifests;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the API server, scheduler and
/// controllers allocate many short-lived JSON values on every request and
/// watch event, and under glibc malloc a third of the CPU time of the
/// scheduler benchmark went to malloc/free, with the RSS fragmenting to
/// several times the live data (BENCHMARKS.md, scheduler throughput). Built
/// with `no_thp`: with transparent huge pages each purged block touched
/// again faulted in and zeroed a whole 2 MiB page.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return cli::report_parse_error(e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,kube_client::client::tls=error")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cluster::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the problem and, where we know it, the fix.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
