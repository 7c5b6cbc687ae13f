//! `polyrepl verify [--repair]`: proves that every sink holds exactly the source's rows, table by table,
//! and optionally fixes the rows that differ.
//!
//! Steps: start-up checks and schema discovery as `run` does → per table, a first pass over source
//! chunks (by primary key) against every sink and over each sink's own keys ([`compare`]) → a live
//! re-check of the suspects once each sink has caught up past them ([`recheck`]) → `--repair`
//! ([`repair`]) and a re-check of the repaired keys → the report ([`report`]).
//!
//! Invariants:
//! - Read-only unless `--repair`; a repair writes only the divergent rows, under the pipeline name
//!   `<name>-repair`, never the running pipeline's checkpoint.
//! - Exit code: 0 when everything is consistent at the end (also after a successful repair), 1 when
//!   differences remain, 2 on an error (connection, bad flags, a failing sink) — with a message, never a
//!   password ([`polyrepl_engine::registry::redact`]).

mod compare;
mod progress;
mod recheck;
mod repair;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use polyrepl_core::{Sink, SinkError, TableFilter};
use polyrepl_engine::EngineError;
use polyrepl_mysql::{SourceReader, SourceUrl};

use crate::config::{PipelineArgs, RunArgs};
use recheck::{PairSuspects, Waiter};
use report::PairReport;

/// Flags of `polyrepl verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Rows per compared chunk (primary-key range), and keys per page of a sink's key scan.
    #[arg(long, env = "POLYREPL_VERIFY_CHUNK_ROWS", default_value_t = 1000)]
    pub chunk_rows: usize,
    /// Keys listed per kind of difference (counts are never capped).
    #[arg(long, env = "POLYREPL_VERIFY_SHOW_KEYS", default_value_t = 10)]
    pub show_keys: usize,
    /// Seconds to wait for a sink's checkpoint to pass the source position before re-checking a row.
    #[arg(long, env = "POLYREPL_VERIFY_RECHECK_TIMEOUT", default_value_t = 30)]
    pub recheck_timeout: u64,
    /// Print one JSON document on stdout instead of the human report.
    #[arg(long, env = "POLYREPL_VERIFY_JSON")]
    pub json: bool,
    /// Rewrite the divergent rows of each sink from the source, then check them again.
    #[arg(long, env = "POLYREPL_VERIFY_REPAIR")]
    pub repair: bool,
}

/// Runs the command; `Err` is reported by `main` with exit code 2.
pub async fn run(args: VerifyArgs) -> Result<ExitCode> {
    let cfg = RunArgs { pipeline: args.pipeline.clone(), ..Default::default() }.resolve()?.run;
    if args.chunk_rows == 0 {
        anyhow::bail!("--chunk-rows must be at least 1");
    }
    let url = SourceUrl::parse(&cfg.source).map_err(|e| anyhow!("{e}"))?;
    let filter = TableFilter::new(&cfg.tables, &cfg.exclude).map_err(|e| anyhow!("{e}"))?;
    let report = polyrepl_mysql::checks::run_startup_checks(&url, &filter).await?;
    let tables = report.tables;
    // Repair writes under its own pipeline name, so its checkpoints never replace the pipeline's.
    let connect_as = if args.repair { format!("{}-repair", cfg.name) } else { cfg.name.clone() };
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for sink_url in &cfg.sinks {
        let sink = polyrepl_engine::open_sink(sink_url, &connect_as).await.map_err(|e| sink_error(sink_url, e))?;
        sinks.push(sink);
    }
    let mut reader = SourceReader::connect(&url).await.context("connecting to the source")?;

    // First pass.
    let mut estimate = 0;
    for t in &tables {
        estimate += reader.estimated_rows(t).await.unwrap_or(0);
    }
    let mut progress = progress::Progress::new("verify", estimate);
    let mut compared = vec![vec![0u64; sinks.len()]; tables.len()];
    let mut pairs: Vec<PairSuspects> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        progress.set_phase(&format!("verify {}", table.id));
        let passes = compare::first_pass(&mut reader, &mut sinks, table, args.chunk_rows, &mut progress).await?;
        for (s, pass) in passes.into_iter().enumerate() {
            compared[t][s] = pass.compared;
            pairs.push(PairSuspects { table: t, sink: s, suspects: pass.suspects });
        }
    }
    progress.finish();

    // Live re-check.
    let suspects: usize = pairs.iter().map(|p| p.suspects.len()).sum();
    if suspects > 0 {
        tracing::info!(suspects, "first pass done: re-checking the divergent rows once each sink has caught up");
    }
    let mut waiter = Waiter::new(&cfg.name, Duration::from_secs(args.recheck_timeout), sinks.len());
    let found = recheck::settle(&mut reader, &mut sinks, &tables, &pairs, &mut waiter).await?;

    // Repair, then re-check what was repaired.
    let mut repaired = vec![None; pairs.len()];
    let mut remaining = found.clone();
    let total: usize = found.iter().map(Vec::len).sum();
    if args.repair && total > 0 {
        let to_fix: Vec<PairSuspects> = pairs
            .iter()
            .zip(&found)
            .map(|(p, diffs)| PairSuspects {
                table: p.table,
                sink: p.sink,
                suspects: diffs.iter().map(|d| (polyrepl_core::rowhash::row_bytes(&d.key), d.key.clone())).collect(),
            })
            .collect();
        let mut progress = progress::Progress::new("repair", total as u64);
        let written = repair::repair(&mut reader, &mut sinks, &tables, &to_fix, &mut progress).await?;
        progress.finish();
        for (i, w) in written.into_iter().enumerate() {
            repaired[i] = Some(w);
        }
        remaining = recheck::settle(&mut reader, &mut sinks, &tables, &to_fix, &mut waiter).await?;
    } else if args.repair {
        repaired = vec![Some(report::Repaired::default()); pairs.len()];
    }
    reader.close().await;

    let reports: Vec<PairReport> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| PairReport {
            table: tables[p.table].id.clone(),
            sink: sinks[p.sink].name().to_string(),
            compared: compared[p.table][p.sink],
            found: found[i].clone(),
            repaired: repaired[i],
            remaining: remaining[i].clone(),
            notes: if found[i].is_empty() {
                vec![]
            } else {
                waiter.note(p.sink).map(|n| vec![n.to_string()]).unwrap_or_default()
            },
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::json(&reports, args.show_keys))?);
    } else {
        print!("{}", report::human(&reports, args.show_keys));
    }
    Ok(if report::remaining_total(&reports) == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A sink that cannot be opened, said plainly (no "will retry": verify does not retry). Sink names
/// never carry credentials; anything else falls back to the URL with its password redacted.
fn sink_error(url: &str, e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Sink(SinkError::Transient { sink, message }) => anyhow!("cannot reach the sink {sink}: {message}"),
        EngineError::Sink(SinkError::Definite { sink, message }) => anyhow!("cannot use the sink {sink}: {message}"),
        other => anyhow::Error::new(other)
            .context(format!("cannot open the sink {}", polyrepl_engine::registry::redact(url))),
    }
}
