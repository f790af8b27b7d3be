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

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in mimalloc
/// v3's `mimalloc.h`; `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc give freed memory back to the kernel at once instead of
/// after its default purge delay (1 s, ten times that inside arenas). The
/// node agent is idle most of the time, with a burst of allocations every
/// sync; holding those pages costs it about 5 MiB of RSS for nothing
/// (BENCHMARKS.md, idle node agent memory). The API server keeps the delay:
/// it allocates all the time, and an immediate purge would only turn into
/// page faults.
#[allow(unsafe_code)]
fn purge_freed_memory_at_once() {
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table. It
    // is called from `main` before any other thread exists (the async runtime
    // is built afterwards), so nothing reads the option concurrently; the
    // index is a valid `mi_option_e` of the linked mimalloc v3.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return cli::report_parse_error(e),
    };
    if matches!(cli.command, cli::Command::Agent(_)) {
        purge_freed_memory_at_once();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_index_names_mimallocs_purge_delay() {
        // mimalloc v3 defaults the purge delay to 1000 ms and the options
        // around it to other values, so a wrong index shows here. (Run
        // without MIMALLOC_PURGE_DELAY in the environment.)
        // SAFETY: reading an option of the linked mimalloc by a valid index.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
