//! `polyrepl bench --snapshot-parallelism 1,2,4`: the snapshot phase alone, once per parallelism —
//! `run`'s own code (prepare untimed, then run with `--stop-at-end`, timed) copying `snap` into each
//! sink from an emptied sink, `--rounds` times, the median reported with its ratio to the first
//! parallelism of the list.

use super::report::Measured;
use super::{Bench, SinkKind};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write;

/// The snapshot's rows/s into one sink at one parallelism.
#[derive(Debug, Clone, Serialize)]
pub struct ParallelSnapshot {
    pub sink: SinkKind,
    pub parallelism: usize,
    pub rows_per_s: Measured,
}

/// The data phase, then the snapshot into each sink at each parallelism of `--snapshot-parallelism`.
pub async fn measure(bench: &Bench) -> Result<Vec<ParallelSnapshot>> {
    super::data::generate(bench).await.context("generating the bench data")?;
    let mut out = Vec::new();
    for &sink in &bench.args.sinks {
        for &parallelism in &bench.args.snapshot_parallelism {
            let rows_per_s = super::phases::snapshot(bench, sink, Some(parallelism))
                .await
                .with_context(|| format!("snapshot into {} at parallelism {parallelism}", sink.label()))?;
            out.push(ParallelSnapshot { sink, parallelism, rows_per_s: Measured::from(rows_per_s) });
        }
    }
    Ok(out)
}

/// The human-readable lines.
pub fn table(figures: &[ParallelSnapshot], rows: usize, rounds: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\npolyrepl bench --snapshot-parallelism: snapshot of {rows} rows, median of {rounds} round(s)\n"
    );
    let _ = writeln!(out, "{:<10} {:>11} {:>12} {:>8}", "sink", "parallelism", "rows/s", "speed-up");
    for f in figures {
        let base = figures.iter().find(|b| b.sink == f.sink).map_or(f64::NAN, |b| b.rows_per_s.median);
        let _ = writeln!(
            out,
            "{:<10} {:>11} {:>12.0} {:>8.2}",
            f.sink.label(),
            f.parallelism,
            f.rows_per_s.median,
            f.rows_per_s.median / base
        );
    }
    out
}
