//! Verification: proves that every sink holds exactly the source's rows, table by table, and
//! optionally repairs the rows that differ.
//!
//! Steps: start-up checks and schema discovery as a run does → per table, a first pass over source
//! chunks (by primary key) against every sink and over each sink's own keys ([`compare`]) → a live
//! re-check of the suspects once each sink has caught up past them ([`recheck`]) → the repair
//! ([`repair`]) and a re-check of the repaired keys → one [`PairReport`] per table × sink.
//!
//! Invariants:
//! - Read-only unless repairing; a repair writes only the divergent rows, under the pipeline name
//!   `<name>-repair`, never the running pipeline's checkpoint — or, with a route, asks the running
//!   pipeline to rewrite them in order with its stream, so a repair never overwrites a newer change.

pub mod compare;
pub mod outcome;
pub mod recheck;
pub mod repair;

use std::sync::Arc;
use std::time::Duration;

use polyrepl_core::rowhash::row_bytes;
use polyrepl_core::{Sink, TableFilter, TableSchema};
use polyrepl_mysql::{SourceReader, SourceUrl};

use crate::error::{EngineError, Result};
use crate::registry::open_sink;
use crate::settings::RunConfig;
use outcome::{PairReport, Repaired};
use recheck::{PairSuspects, Waiter};

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Rows per compared chunk, and keys per page of a sink's key scan.
    pub chunk_rows: usize,
    /// Longest wait for a sink's checkpoint to pass a source position before re-checking a row.
    pub recheck_timeout: Duration,
    /// Rewrite the divergent rows from the source, then check them again.
    pub repair: bool,
    /// Send the repairs to a running pipeline instead of writing them into the sinks
    /// ([`repair::RepairRoute`]).
    pub route: Option<Arc<dyn repair::RepairRoute>>,
}

/// Where long work reports how far it got; the binary draws it (a bar, or lines in a log).
pub trait Progress {
    /// A new phase (`verify`, `repair`) of about `total` rows.
    fn start(&mut self, phase: &str, total: u64);
    /// Names what is being worked on within the phase (e.g. the table).
    fn set_phase(&mut self, phase: &str);
    /// Counts `rows` more rows done.
    fn add(&mut self, rows: u64);
    /// Ends the phase.
    fn finish(&mut self);
}

/// Compares every selected table of the source with every sink of `cfg` (and repairs when asked).
pub async fn verify(cfg: &RunConfig, opts: &VerifyOptions, progress: &mut dyn Progress) -> Result<Vec<PairReport>> {
    if opts.chunk_rows == 0 {
        return Err(EngineError::Settings("--chunk-rows must be at least 1".into()));
    }
    let url = SourceUrl::parse(&cfg.source)?;
    let filter = TableFilter::new(&cfg.tables, &cfg.exclude).map_err(EngineError::Settings)?;
    let tables: Vec<Arc<TableSchema>> = polyrepl_mysql::checks::run_startup_checks(&url, &filter).await?.tables;
    // Repair writes under its own pipeline name, so its checkpoints never replace the pipeline's.
    let connect_as = if opts.repair { format!("{}-repair", cfg.name) } else { cfg.name.clone() };
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for sink_url in &cfg.sinks {
        sinks.push(open_sink(sink_url, &connect_as).await?);
    }
    let mut reader = SourceReader::connect(&url).await.map_err(EngineError::source_step("connecting to the source"))?;

    // First pass.
    let mut estimate = 0;
    for t in &tables {
        estimate += reader.estimated_rows(t).await.unwrap_or(0);
    }
    progress.start("verify", estimate);
    let mut compared = vec![vec![0u64; sinks.len()]; tables.len()];
    let mut pairs: Vec<PairSuspects> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        progress.set_phase(&format!("verify {}", table.id));
        let passes = compare::first_pass(&mut reader, &mut sinks, table, opts.chunk_rows, progress).await?;
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
    let mut waiter = Waiter::new(&cfg.name, opts.recheck_timeout, sinks.len());
    let found = recheck::settle(&mut reader, &mut sinks, &tables, &pairs, &mut waiter).await?;

    // Repair, then re-check what was repaired.
    let mut repaired = vec![None; pairs.len()];
    let mut remaining = found.clone();
    let total: usize = found.iter().map(Vec::len).sum();
    if opts.repair && total > 0 {
        let to_fix: Vec<PairSuspects> = pairs
            .iter()
            .zip(&found)
            .map(|(p, diffs)| PairSuspects {
                table: p.table,
                sink: p.sink,
                suspects: diffs.iter().map(|d| (row_bytes(&d.key), d.key.clone())).collect(),
            })
            .collect();
        progress.start("repair", total as u64);
        let written = match &opts.route {
            Some(route) => repair::through(route.as_ref(), &tables, &to_fix).await?,
            None => repair::repair(&mut reader, &mut sinks, &tables, &to_fix, progress).await?,
        };
        progress.finish();
        for (i, w) in written.into_iter().enumerate() {
            repaired[i] = Some(w);
        }
        remaining = recheck::settle(&mut reader, &mut sinks, &tables, &to_fix, &mut waiter).await?;
    } else if opts.repair {
        repaired = vec![Some(Repaired::default()); pairs.len()];
    }
    reader.close().await;

    Ok(pairs
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
        .collect())
}
