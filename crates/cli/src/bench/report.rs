//! The bench's result: medians of the rounds, ratios, targets with ✔/✘, as a table or one JSON document.

use super::data::Generated;
use super::lag::{BesideSlow, LagFigures};
use super::phases::DecodeRounds;
use super::raw::Rounds;
use super::rss::{own_peak_rss, ChildRun, StreamingRss};
use super::{Bench, SinkKind};
use serde::Serialize;
use std::fmt::Write;

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A figure: the median and every round it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub median: f64,
    pub rounds: Vec<f64>,
}

impl From<Rounds> for Measured {
    fn from(rounds: Rounds) -> Self {
        Measured { median: median(&rounds), rounds }
    }
}

/// `measured` over `raw`: the median of the ratios of rounds of the same number when both have as
/// many rounds (the bench runs each snapshot or cdc round right after the raw round of its number, so
/// a slower spell of a shared machine weighs on both sides of a ratio), else the ratio of the medians.
pub fn paired_ratio(measured: &Measured, raw: &Measured) -> f64 {
    if measured.rounds.len() != raw.rounds.len() || measured.rounds.is_empty() {
        return measured.median / raw.median;
    }
    let ratios: Vec<f64> = measured.rounds.iter().zip(&raw.rounds).map(|(m, r)| m / r).collect();
    median(&ratios)
}

/// The figures of one sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkFigures {
    pub sink: SinkKind,
    /// Rows/s written straight to the sink with its best bulk path.
    pub raw_rows_per_s: Measured,
    /// Rows/s of `run`'s snapshot into this sink alone.
    pub snapshot_rows_per_s: Measured,
    pub snapshot_over_raw: f64,
    /// Changes/s of the cdc range's own changes written straight to the sink with its best bulk path
    /// (`None` on FerretDB, where cdc is compared with the raw insert rate).
    pub raw_cdc_changes_per_s: Option<Measured>,
    /// Changes/s of `run` streaming the pre-generated binlog into this sink alone.
    pub cdc_changes_per_s: Measured,
    pub cdc_over_raw: f64,
    pub lag: Option<LagFigures>,
}

impl SinkFigures {
    pub fn new(kind: SinkKind, raw: Rounds, snapshot: Rounds, raw_cdc: Option<Rounds>, cdc: Rounds) -> SinkFigures {
        let (raw, snapshot, cdc) = (Measured::from(raw), Measured::from(snapshot), Measured::from(cdc));
        let raw_cdc = raw_cdc.map(Measured::from);
        SinkFigures {
            sink: kind,
            snapshot_over_raw: paired_ratio(&snapshot, &raw),
            // FerretDB: over the raw insert rate, its rounds not paired with the cdc rounds.
            cdc_over_raw: raw_cdc.as_ref().map_or(cdc.median / raw.median, |r| paired_ratio(&cdc, r)),
            raw_rows_per_s: raw,
            raw_cdc_changes_per_s: raw_cdc,
            snapshot_rows_per_s: snapshot,
            cdc_changes_per_s: cdc,
            lag: None,
        }
    }

    pub fn set_lag(&mut self, lag: LagFigures) {
        self.lag = Some(lag);
    }
}

/// The decode phase's figures alone (what `polyrepl bench --decode-only` prints).
#[derive(Debug, Clone, Serialize)]
pub struct DecodeFigures {
    /// Row changes/s of the binlog reader over the range, end to end (server + network + decode).
    pub end_to_end_changes_per_s: Measured,
    pub end_to_end_transactions_per_s: Measured,
    /// Row changes/s decoding the range's raw events from memory with the same code: the reader's
    /// own ceiling on one core, without the server and the network.
    pub cpu_only_changes_per_s: Measured,
    /// Events and bytes of the range held in memory.
    pub recorded_events: usize,
    pub recorded_bytes: usize,
}

impl DecodeFigures {
    /// Medians of the decode phase's rounds.
    pub fn new(decode: DecodeRounds) -> DecodeFigures {
        DecodeFigures {
            end_to_end_changes_per_s: Measured::from(decode.changes_per_s),
            end_to_end_transactions_per_s: Measured::from(decode.transactions_per_s),
            cpu_only_changes_per_s: Measured::from(decode.cpu_changes_per_s),
            recorded_events: decode.recorded_events,
            recorded_bytes: decode.recorded_bytes,
        }
    }

    /// The human-readable lines.
    pub fn table(&self, generated: &Generated, rounds: usize) -> String {
        let (ins, upd, del) = generated.mix;
        let mut out = String::new();
        let _ = writeln!(out, "\npolyrepl bench --decode-only: {} cdc changes ({ins} inserts, {upd} updates, {del} deletes), median of {rounds} round(s)\n", generated.cdc_changes);
        let _ = writeln!(out, "decode, end to end (server + network + decode): {:>10.0} row changes/s  {:>8.0} transactions/s  rounds {:?}", self.end_to_end_changes_per_s.median, self.end_to_end_transactions_per_s.median, rounded(&self.end_to_end_changes_per_s.rounds));
        let _ = writeln!(
            out,
            "decode, CPU only ({} events, {:.1} MiB from memory, same code, one core): {:>10.0} row changes/s  rounds {:?}",
            self.recorded_events,
            self.recorded_bytes as f64 / (1 << 20) as f64,
            self.cpu_only_changes_per_s.median,
            rounded(&self.cpu_only_changes_per_s.rounds)
        );
        out
    }
}

/// Rounds, as whole numbers for the table.
fn rounded(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.round() as u64).collect()
}

/// One target of the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub value: f64,
    pub met: bool,
}

/// Everything the bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub database: String,
    pub source: String,
    pub rows: usize,
    pub cdc_changes: u64,
    /// Inserts, updates, deletes of the cdc workload.
    pub cdc_mix: (u64, u64, u64),
    pub rounds: usize,
    pub seed: u64,
    pub lag_rate: u32,
    pub sinks: Vec<SinkFigures>,
    /// Changes/s of `run` streaming the cdc range into every selected sink at once.
    pub cdc_all_changes_per_s: Option<Measured>,
    /// Row changes/s the binlog reader decodes with no sink, end to end (server + network + decode).
    pub decode_changes_per_s: Measured,
    pub decode_transactions_per_s: Measured,
    /// Row changes/s decoded from the range's raw events in memory, same code, one core: the
    /// reader's own ceiling without the server and the network.
    pub decode_cpu_changes_per_s: Measured,
    /// The `polyrepl run` child that snapshotted `snap` into every selected sink at once.
    pub snapshot_child: ChildRun,
    /// The `polyrepl run` child that streamed the lag writer's changes into every selected sink.
    pub streaming_child: StreamingRss,
    /// The bench process's own peak RSS (it holds pre-converted rows; not the pipeline's figure).
    pub bench_peak_rss_bytes: u64,
    /// The other sinks' lag while one was slowed on purpose (`--slow-sink`).
    pub beside_slow: Option<BesideSlow>,
    pub targets: Vec<Target>,
    pub seconds: f64,
}

impl Report {
    /// Adds what `--slow-sink` measured, with a target per other sink.
    pub fn set_beside_slow(&mut self, beside: BesideSlow) {
        for (label, lag) in &beside.others {
            let (goal, limit) =
                if matches!(*label, "mongodb" | "mongo-java") { ("< 1 s", 1.0) } else { ("< 0.1 s", 0.1) };
            self.targets.push(Target {
                what: format!("{label} lag p99 beside a slowed {} (s)", beside.slow),
                goal: goal.into(),
                value: lag.p99_s,
                met: lag.p99_s < limit,
            });
        }
        self.beside_slow = Some(beside);
    }

    pub fn new(
        bench: &Bench,
        generated: &Generated,
        decode: DecodeRounds,
        sinks: Vec<SinkFigures>,
        cdc_all: Option<Rounds>,
        child: ChildRun,
        streaming: StreamingRss,
    ) -> Report {
        let decode = DecodeFigures::new(decode);
        let decode_changes = decode.end_to_end_changes_per_s.clone();
        let mut targets = Vec::new();
        let mut target = |what: String, goal: &str, value: f64, met: bool| {
            targets.push(Target { what, goal: goal.into(), value, met })
        };
        for s in &sinks {
            let l = s.sink.label();
            target(format!("{l} snapshot/raw"), "≥ 0.8", s.snapshot_over_raw, s.snapshot_over_raw >= 0.8);
            target(format!("{l} cdc/raw"), "≥ 0.8", s.cdc_over_raw, s.cdc_over_raw >= 0.8);
            if let Some(lag) = &s.lag {
                // FerretDB's writes scan its collection; the 100 ms goal is Redis's and Cassandra's.
                let (goal, limit) = if matches!(s.sink, SinkKind::Mongodb | SinkKind::MongoJava) {
                    ("< 1 s", 1.0)
                } else {
                    ("< 0.1 s", 0.1)
                };
                target(
                    format!("{l} lag p99 at {} changes/s (s)", bench.args.lag_rate),
                    goal,
                    lag.p99_s,
                    lag.p99_s < limit,
                );
            }
        }
        target(
            "decode, end to end (row changes/s)".into(),
            "≥ 500000",
            decode_changes.median,
            decode_changes.median >= 500_000.0,
        );
        let cpu = decode.cpu_only_changes_per_s.median;
        target("decode, CPU only, in memory (row changes/s)".into(), "≥ 500000", cpu, cpu >= 500_000.0);
        let mib = child.peak_rss_bytes as f64 / (1 << 20) as f64;
        target(
            format!("peak RSS of run, {}-row snapshot (MiB)", bench.args.rows),
            "< 128 MiB (at 1M rows)",
            mib,
            mib < 128.0,
        );
        let streaming_mib = streaming.max_rss_bytes as f64 / (1 << 20) as f64;
        target(
            format!("RSS of run streaming {} changes/s into {} sink(s) (MiB)", bench.args.lag_rate, sinks.len()),
            "≤ 64 MiB",
            streaming_mib,
            streaming_mib <= 64.0,
        );
        Report {
            database: bench.db.clone(),
            source: bench.url.redacted(),
            rows: bench.args.rows,
            cdc_changes: generated.cdc_changes,
            cdc_mix: generated.mix,
            rounds: bench.args.rounds,
            seed: bench.args.seed,
            lag_rate: bench.args.lag_rate,
            sinks,
            cdc_all_changes_per_s: cdc_all.map(Measured::from),
            decode_changes_per_s: decode_changes,
            decode_transactions_per_s: decode.end_to_end_transactions_per_s.clone(),
            decode_cpu_changes_per_s: decode.cpu_only_changes_per_s.clone(),
            snapshot_child: child,
            streaming_child: streaming,
            bench_peak_rss_bytes: own_peak_rss(),
            beside_slow: None,
            targets,
            seconds: bench.started.elapsed().as_secs_f64(),
        }
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let (ins, upd, del) = self.cdc_mix;
        let _ = writeln!(
            out,
            "\npolyrepl bench: {} snapshot rows, {} cdc changes ({ins} inserts, {upd} updates, {del} deletes), median of {} round(s), seed {}\n",
            self.rows, self.cdc_changes, self.rounds, self.seed
        );
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7} {:>9} {:>9}",
            "sink", "raw rows/s", "snapshot/s", "ratio", "raw cdc/s", "cdc/s", "ratio", "lag p50", "lag p99"
        );
        for s in &self.sinks {
            let (p50, p99) = s
                .lag
                .as_ref()
                .map_or(("-".into(), "-".into()), |l| (format!("{:.3} s", l.p50_s), format!("{:.3} s", l.p99_s)));
            let _ = writeln!(
                out,
                "{:<10} {:>12.0} {:>12.0} {:>7.2} {:>12.0} {:>12.0} {:>7.2} {:>9} {:>9}",
                s.sink.label(),
                s.raw_rows_per_s.median,
                s.snapshot_rows_per_s.median,
                s.snapshot_over_raw,
                s.raw_cdc_changes_per_s.as_ref().map_or(f64::NAN, |r| r.median),
                s.cdc_changes_per_s.median,
                s.cdc_over_raw,
                p50,
                p99
            );
        }
        let _ = writeln!(out);
        if let Some(all) = &self.cdc_all_changes_per_s {
            let _ = writeln!(out, "cdc into all {} sinks at once: {:.0} changes/s", self.sinks.len(), all.median);
        }
        let _ = writeln!(out, "decode (binlog reader, no sink), end to end (server + network + decode): {:.0} row changes/s, {:.0} transactions/s", self.decode_changes_per_s.median, self.decode_transactions_per_s.median);
        let _ = writeln!(
            out,
            "decode, CPU only (same range's raw events from memory, same code, one core): {:.0} row changes/s",
            self.decode_cpu_changes_per_s.median
        );
        let c = &self.snapshot_child;
        let _ = writeln!(
            out,
            "`polyrepl run` child, snapshot of {} rows into all {} sinks: {:.1} s ({:.0} rows/s, start-up included), peak RSS {:.0} MiB",
            c.rows,
            self.sinks.len(),
            c.seconds,
            c.rows_per_s,
            c.peak_rss_bytes as f64 / (1 << 20) as f64
        );
        let m = &self.streaming_child;
        let _ = writeln!(
            out,
            "`polyrepl run` child streaming {} changes in {:.1} s into all {} sinks: RSS at most {:.0} MiB while streaming (peak {:.0} MiB with start-up)",
            m.changes,
            m.seconds,
            self.sinks.len(),
            m.max_rss_bytes as f64 / (1 << 20) as f64,
            m.peak_rss_bytes as f64 / (1 << 20) as f64
        );
        let _ = writeln!(
            out,
            "bench process peak RSS (holds pre-converted rows; not the pipeline's): {:.0} MiB",
            self.bench_peak_rss_bytes as f64 / (1 << 20) as f64
        );
        if let Some(b) = &self.beside_slow {
            let others: Vec<String> = b
                .others
                .iter()
                .map(|(label, lag)| format!("{label} p50 {:.3} s / p99 {:.3} s", lag.p50_s, lag.p99_s))
                .collect();
            let _ = writeln!(
                out,
                "lag beside a slowed {} (up to {:.1} s behind, {} batches spilled): {}",
                b.slow,
                b.slow_max_lag_s,
                b.slow_batches_spilled,
                others.join(", ")
            );
        }
        let _ = writeln!(out, "\ntargets:");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  {} {:<48} {:>12.3}  (goal {})",
                if t.met { "✔" } else { "✘" },
                t.what,
                t.value,
                t.goal
            );
        }
        let _ = writeln!(out, "\n{:.0} s in total", self.seconds);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_rounds_of_the_same_number() {
        let raw = Measured::from(vec![100.0, 200.0, 150.0]);
        let measured = Measured::from(vec![90.0, 170.0, 120.0]);
        // Pairs: 0.9, 0.85, 0.8 → 0.85; the ratio of the medians would be 120 / 150 = 0.8.
        assert!((paired_ratio(&measured, &raw) - 0.85).abs() < 1e-9);
        let fewer = Measured::from(vec![90.0]);
        assert!((paired_ratio(&fewer, &raw) - 0.6).abs() < 1e-9, "unpaired: ratio of the medians");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
