//! `polyrepl`: the one binary. Parses the command line and hands each command to its module.

mod apply_cmd;
mod bench;
mod config;
mod demo;
mod http;
mod snapshot_cmd;
mod stack_cmd;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keeps MongoDB, Redis and Cassandra in step with MySQL/MariaDB tables, and stands up the whole
/// database stack for a developer.
///
/// Every flag can also be set with the POLYREPL_* environment variable shown in its help;
/// flags beat environment variables, which beat defaults.
#[derive(Parser)]
#[command(name = "polyrepl", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Log level filter (error, warn, info, debug, trace, or a tracing filter such as polyrepl=debug).
    #[arg(long, global = true, env = "POLYREPL_LOG", default_value = "info,scylla=off,mongodb=warn")]
    log: String,

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
    /// Ask a running `polyrepl run` (through its --metrics-addr) to copy tables again while it keeps
    /// streaming: each table's rows are re-read in primary-key chunks and rewritten in place, in order
    /// with the stream, in every sink. Exit code 0 when the copies started, 1 when refused, 2 on error.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Apply change events from Kafka (topics `polyrepl run --sink kafka://…` or Debezium writes) to
    /// every --sink, as one worker of a consumer group: start several with the same --group to share the
    /// partitions. Each sink stores the offsets it applied with the data, so a worker killed at any
    /// moment loses nothing and applies nothing twice. Ctrl-C stops cleanly.
    Apply(apply_cmd::ApplyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Stack(args) => stack_cmd::run(args).await,
            Command::Run(args) => run_command(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Snapshot(args) => snapshot_cmd::run(args).await,
            Command::Apply(args) => apply_cmd::run(args, shutdown_signal()).await,
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
    let config::Resolved { run, metrics_addr } = args.resolve()?;
    let metrics = std::sync::Arc::new(polyrepl_engine::Metrics::default());
    let (controller, inbox) = polyrepl_engine::control::channel();
    if let Some(addr) = &metrics_addr {
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
