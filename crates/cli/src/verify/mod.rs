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
//!   password.

mod progress;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Args;
use polyrepl_core::{SinkError, TableId, Value};
use polyrepl_engine::verify::{outcome, VerifyOptions};
use polyrepl_engine::EngineError;

use crate::config::{PipelineArgs, RunArgs};

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
    /// Rewrite the divergent rows of each sink from the source, then check them again. While a pipeline
    /// runs, give --through as well: written on its own, a repair can land after a newer change the
    /// pipeline applied meanwhile (MongoDB, Redis) and undo it.
    #[arg(long, env = "POLYREPL_VERIFY_REPAIR")]
    pub repair: bool,
    /// With --repair: the running pipeline's HTTP address (its --http-addr). The repairs are sent to
    /// it: it reads the rows in a consistent snapshot and applies them in order with its stream, so a
    /// repair never overwrites a newer change.
    #[arg(long, env = "POLYREPL_VERIFY_THROUGH", requires = "repair")]
    pub through: Option<String>,
}

/// Repairs sent to a running pipeline's `POST /repair`.
#[derive(Debug)]
struct ThroughPipeline {
    addr: String,
}

#[async_trait::async_trait]
impl polyrepl_engine::verify::repair::RepairRoute for ThroughPipeline {
    async fn repair(&self, table: &TableId, keys: Vec<Vec<Value>>) -> Result<Vec<bool>, String> {
        let body = serde_json::to_string(&crate::http::RepairRequest { table: table.to_string(), keys })
            .map_err(|e| e.to_string())?;
        let (status, answer) =
            crate::http::client::post(&self.addr, "/repair", &body).await.map_err(|e| format!("{e:#}"))?;
        let answer: serde_json::Value =
            serde_json::from_str(&answer).map_err(|_| format!("{} answered {status}: {answer}", self.addr))?;
        if status != 200 {
            return Err(answer["error"].as_str().unwrap_or("no reason given").to_string());
        }
        serde_json::from_value(answer["present"].clone()).map_err(|e| format!("{} answered {answer}: {e}", self.addr))
    }
}

/// Runs the command; `Err` is reported by `main` with exit code 2.
pub async fn run(args: VerifyArgs) -> Result<ExitCode> {
    let cfg = RunArgs { pipeline: args.pipeline.clone(), ..Default::default() }.resolve()?.run;
    let opts = VerifyOptions {
        chunk_rows: args.chunk_rows,
        recheck_timeout: Duration::from_secs(args.recheck_timeout),
        repair: args.repair,
        route: args.through.clone().map(|addr| {
            std::sync::Arc::new(ThroughPipeline { addr })
                as std::sync::Arc<dyn polyrepl_engine::verify::repair::RepairRoute>
        }),
    };
    let mut progress = progress::Progress::default();
    let reports = polyrepl_engine::verify::verify(&cfg, &opts, &mut progress).await.map_err(said_plainly)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::json(&reports, args.show_keys))?);
    } else {
        print!("{}", report::human(&reports, args.show_keys));
    }
    Ok(if outcome::remaining_total(&reports) == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A sink that cannot be opened, said plainly (no "will retry": verify does not retry). Sink names
/// never carry credentials.
fn said_plainly(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Sink(SinkError::Transient { sink, message }) => anyhow!("cannot reach the sink {sink}: {message}"),
        EngineError::Sink(SinkError::Definite { sink, message }) => anyhow!("cannot use the sink {sink}: {message}"),
        other => other.into(),
    }
}
