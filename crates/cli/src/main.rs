//! `polyrepl`: the one binary. Parses the command line and hands each command to its module.

mod apply_cmd;
mod bench;
mod check;
mod config;
mod config_keys;
mod demo;
mod generated;
mod http;
mod logging;
mod snapshot_cmd;
mod stack_cmd;
mod status_cmd;
mod verify;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

// The system allocator took about a third of the pipeline's CPU in a snapshot into Redis (malloc, free
// and their consolidation, per row and per value). jemalloc cut the process's CPU by ~28% for +10% RSS;
// mimalloc saved as much CPU but held ~60% more memory (A/B in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keeps MongoDB, Redis and Cassandra in step with MySQL/MariaDB tables, and stands up the whole
/// database stack for a developer.
///
/// Every flag can also be set with the POLYREPL_* environment variable shown in its help;
/// flags beat environment variables, which beat defaults.
#[derive(Parser)]
#[command(name = "polyrepl", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Which log lines to print: error, warn, info, debug, trace, or a tracing filter such as
    /// `info,polyrepl_engine=debug`. Without it (or POLYREPL_LOG), RUST_LOG is used when set
    /// [default: info,scylla=off,mongodb=warn]. `--log` is the older name.
    #[arg(long = "log-level", visible_alias = "log", value_name = "LEVEL", global = true, env = "POLYREPL_LOG",
          value_parser = logging::parse_filter)]
    log_level: Option<String>,
    /// Log lines as text, or as json: one JSON object per line (timestamp, level, target, message and
    /// the event's fields), for log collectors. Logs go to stderr (for `demo`, to a file unless --verbose).
    #[arg(long, value_name = "FORMAT", global = true, env = "POLYREPL_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start, initialise, inspect or stop the local database stack (MariaDB :5600, MongoDB-wire :1800,
    /// Redis :6379, Cassandra :9042).
    Stack(stack_cmd::StackArgs),
    /// Replicate: start-up checks, an initial snapshot where a sink has none, then binlog streaming
    /// into every --sink, with checkpoints stored in each sink. Ctrl-C stops cleanly.
    Run(config::RunArgs),
    /// Validate a configuration without writing anything: the same flags, environment and --config as
    /// `run`. Prints the effective settings (passwords hidden), then checks the config file (unknown keys,
    /// with the key meant), the source (reachable, credentials, binlog settings, privileges, every table
    /// replicable), every sink (reachable, credentials) and the pipeline's checkpoint in it; every
    /// problem is printed with its fix. Exit code 0 when all is well, 1 when problems were found, 2 when
    /// the check could not run.
    Check(config::RunArgs),
    /// The seed project's demo: stack up (if needed) + init + run into MongoDB + a writer inserting a
    /// timestamp + UUID row every --interval, printing both sides and whether they match.
    Demo(demo::DemoArgs),
    /// Measure the pipeline against each sink's own raw ingest limit on the running stack: raw bulk
    /// writes, run's snapshot and binlog streaming (cdc) per sink and into all at once, the binlog
    /// reader's decode rate, commit-to-sink lag at a steady rate and peak RSS; medians of --rounds
    /// rounds from a fixed --seed, in a throw-away polyrepl_bench_* database.
    Bench(bench::BenchArgs),
    /// Compare every selected table of the source with every --sink, chunk by chunk (checksums per
    /// primary-key chunk, row by row only where they differ), re-checking rows that change meanwhile
    /// once the sink has caught up; report missing, extra and different rows (--json for machines) and,
    /// with --repair, rewrite them from the source. Exit code 0 when consistent, 1 when not, 2 on error.
    Verify(verify::VerifyArgs),
    /// Ask a running `polyrepl run` (through its --http-addr) to copy tables again while it keeps
    /// streaming: each table's rows are re-read in primary-key chunks and rewritten in place, in order
    /// with the stream, in every sink. Exit code 0 when the copies started, 1 when refused, 2 on error.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Apply change events from Kafka (topics `polyrepl run --sink kafka://…` or Debezium writes) to
    /// every --sink, as one worker of a consumer group: start several with the same --group to share the
    /// partitions. Each sink stores the offsets it applied with the data, so a worker killed at any
    /// moment loses nothing and applies nothing twice. Ctrl-C stops cleanly.
    Apply(apply_cmd::ApplyArgs),
    /// Show a running `polyrepl run` (through its --http-addr): each sink's state, position, lag and
    /// changes per second, and the changes applied per table. Exit code 0 when every sink is ok, 1 when
    /// any is not (starting, retrying, failed), 2 when the pipeline cannot be reached.
    Status(status_cmd::StatusArgs),
    /// Print a shell completion script on stdout, e.g. `polyrepl completions bash > /etc/bash_completion.d/polyrepl`,
    /// or `polyrepl completions zsh > "${fpath[1]}/_polyrepl"`, or `polyrepl completions fish >
    /// ~/.config/fish/completions/polyrepl.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff, with every subcommand and its options) on stdout, e.g.
    /// `polyrepl man > polyrepl.1 && man ./polyrepl.1`.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // These two only print what clap knows: no logs, no runtime.
    match &cli.command {
        Command::Completions { shell } => return generated::completions(*shell, Cli::command()),
        Command::Man => return generated::man(Cli::command()),
        _ => {}
    }
    let log_file = match &cli.command {
        Command::Demo(args) => args.log_file(),
        _ => None,
    };
    if let Err(e) = logging::init(cli.log_level.as_deref(), cli.log_format, log_file.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Stack(args) => stack_cmd::run(args).await,
            Command::Run(args) => run_command(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Snapshot(args) => snapshot_cmd::run(args).await,
            Command::Apply(args) => apply_cmd::run(args, shutdown_signal()).await,
            Command::Status(args) => status_cmd::run(args).await,
            Command::Completions { .. } | Command::Man => unreachable!("handled before the runtime starts"),
        }
    });
    // Leave the runtime to the process exit instead of shutting it down: the MongoDB driver's background
    // tasks can panic ("SendError") when their runtime is torn down under them after an early error.
    std::mem::forget(runtime);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A watch that turns true on Ctrl-C or SIGTERM.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        tracing::info!("stopping: finishing the batches in flight");
        let _ = tx.send(true);
    });
    rx
}

async fn run_command(args: config::RunArgs) -> anyhow::Result<ExitCode> {
    let config::Resolved { run, http_addr } = args.resolve()?;
    let metrics = std::sync::Arc::new(polyrepl_engine::Metrics::default());
    let (controller, inbox) = polyrepl_engine::control::channel();
    if let Some(addr) = &http_addr {
        http::serve(addr, metrics.clone(), Some(controller)).await?;
    }
    // Listening from the start: start-up can take seconds (a Kafka sink waits for the broker to finish
    // what a killed process left open), and a SIGTERM meanwhile must stop cleanly too.
    let mut shutdown = shutdown_signal();
    let prepared = tokio::select! {
        prepared = polyrepl_engine::prepare(&run) => prepared?,
        _ = shutdown.wait_for(|stop| *stop) => {
            tracing::info!("stopped during start-up, before applying any change");
            return Ok(ExitCode::SUCCESS);
        }
    };
    polyrepl_engine::run(run, prepared, metrics, shutdown, inbox).await?;
    Ok(ExitCode::SUCCESS)
}
