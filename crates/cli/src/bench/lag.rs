//! The lag phase: seconds from source commit to sink visibility at a steady `--lag-rate`.
//!
//! A writer commits small transactions on the `lag` table at a fixed schedule, each row carrying in
//! `written_us` the writer's clock just before its statement (so the figure includes the commit itself).
//! `run` streams into one sink through [`LagProbe`], a [`Sink`] decorator that, after each successful
//! apply of the real sink, records now − `written_us` for every row of the batch. The first second is
//! warm-up and not counted.

use super::{phases, Bench, SinkKind};
use anyhow::{Context, Result};
use async_trait::async_trait;
use mysql_async::prelude::*;
use polyrepl_core::{Batch, Checkpoint, Row, Sink, SinkError, StagedBatch, TableId, TableSchema, Value};
use polyrepl_engine::pipeline::SinkSlot;
use polyrepl_mysql::binlog::current_position;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Keys the writer cycles over (small: FerretDB scans the collection for every update).
const LAG_KEYS: u64 = 2_000;
/// Seconds of samples at the start that are not counted.
const WARM_UP_SECONDS: f64 = 1.0;
/// Longest time the writer runs on while an online copy goes on.
const LONGEST_WRITER: Duration = Duration::from_secs(1800);
/// Longest wait for the sink to catch up after the writer stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// (written_us, lag in seconds) of every applied row.
type Samples = Arc<Mutex<Vec<(i64, f64)>>>;

/// Lag figures of one sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LagFigures {
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
    /// Rows measured (after the warm-up).
    pub samples: usize,
    /// Changes per second the writer achieved.
    pub achieved_rate: f64,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Each batch send of the sink slowed on purpose waits this long first (while the writer runs).
const SLOW_SEND: Duration = Duration::from_millis(100);

/// A sink that forwards to the real one and timestamps every applied `lag` row.
struct LagProbe {
    inner: Box<dyn Sink>,
    samples: Samples,
    /// Rows written before this (µs) belong to an earlier phase and are not recorded.
    since_us: i64,
    /// Slowed on purpose: every send waits [`SLOW_SEND`] while the flag is set.
    slowed: Option<Arc<AtomicBool>>,
}

/// A batch staged by the real sink, whose rows' lag is taken when its send ends.
struct TimedSend {
    inner: Box<dyn StagedBatch>,
    written: Vec<i64>,
    samples: Samples,
    slowed: Option<Arc<AtomicBool>>,
}

#[async_trait]
impl StagedBatch for TimedSend {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        if self.slowed.as_ref().is_some_and(|on| on.load(Relaxed)) {
            tokio::time::sleep(SLOW_SEND).await;
        }
        self.inner.send().await?;
        let now = now_us();
        let mut samples = self.samples.lock().unwrap();
        samples.extend(self.written.iter().map(|&written| (written, (now - written) as f64 / 1e6)));
        Ok(())
    }
}

#[async_trait]
impl Sink for LagProbe {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        self.inner.prepare(tables).await
    }

    fn merges_waiting_batches(&self) -> bool {
        self.inner.merges_waiting_batches()
    }

    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        // The `written_us` of every row of the phase; their lag is taken once the batch is stored.
        let written = batch
            .changes
            .iter()
            .filter_map(|change| {
                let i = change.table.column_index("written_us")?;
                match change.after.as_ref()?.get(i)? {
                    Value::Int(w) if *w >= self.since_us => Some(*w),
                    _ => None,
                }
            })
            .collect();
        let inner = self.inner.stage(batch).await?;
        Ok(Box::new(TimedSend { inner, written, samples: self.samples.clone(), slowed: self.slowed.clone() }))
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        self.inner.load_checkpoint(pipeline).await
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        self.inner.read_rows(table, keys).await
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        self.inner.scan_keys(table, cursor, limit).await
    }

    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        self.inner.truncate_table(table).await
    }

    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        self.inner.drop_table(table).await
    }

    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &polyrepl_core::LeaseRequest,
    ) -> Result<Vec<polyrepl_core::Lease>, SinkError> {
        self.inner.acquire_leases(tables, request).await
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        self.inner.release_leases(tables, owner).await
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<polyrepl_core::Lease>, SinkError> {
        self.inner.read_leases(tables).await
    }

    fn row_policy(&self) -> &polyrepl_core::RowPolicy {
        self.inner.row_policy()
    }

    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<polyrepl_core::DeadLetter>, SinkError> {
        self.inner.read_dead_letters(pipeline).await
    }
}

/// The value at quantile `q` (0..=1) of sorted `values` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Streams into `kind` while the writer runs at `--lag-rate` for `--lag-seconds`.
pub async fn measure(bench: &Bench, kind: SinkKind) -> Result<LagFigures> {
    Ok(measure_during_copy(bench, kind, None).await?.0)
}

/// What an online copy measured during the lag phase cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyFigures {
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// This process's peak RSS (`VmHWM`) at the end of the phase.
    pub peak_rss_bytes: u64,
}

/// [`measure`], while the pipeline copies `copy` (a table of the bench database) online: the copy is
/// asked for as `polyrepl snapshot` asks a running pipeline, and the writer runs on until it is done.
pub async fn measure_during_copy(
    bench: &Bench,
    kind: SinkKind,
    copy: Option<&str>,
) -> Result<(LagFigures, Option<CopyFigures>)> {
    let writing =
        format!("lag {}: writing {} changes/s for {} s", kind.label(), bench.args.lag_rate, bench.args.lag_seconds);
    let run = run_under_writer(bench, &[kind], None, copy, writing).await?;
    let figures = lag_figures(&run.samples[0], run.written, run.writer_seconds, run.started_us);
    bench.note(format!(
        "lag {}: p50 {:.3} s, p99 {:.3} s over {} rows at {:.0} changes/s",
        kind.label(),
        figures.p50_s,
        figures.p99_s,
        figures.samples,
        figures.achieved_rate
    ));
    let copy_figures = copy.map(|_| {
        let rows = run.metrics.source.snapshot_rows.load(Relaxed);
        let seconds = run.copy_seconds.unwrap_or(f64::NAN);
        CopyFigures { rows, seconds, rows_per_s: rows as f64 / seconds, peak_rss_bytes: super::rss::own_peak_rss() }
    });
    if let Some(c) = &copy_figures {
        bench.note(format!(
            "online copy into {}: {} rows in {:.1} s ({:.0} rows/s) while streaming; peak RSS {:.0} MiB",
            kind.label(),
            c.rows,
            c.seconds,
            c.rows_per_s,
            c.peak_rss_bytes as f64 / (1 << 20) as f64
        ));
    }
    Ok((figures, copy_figures))
}

/// What one `run` under the lag writer gave ([`run_under_writer`]).
struct WriterRun {
    /// Per sink, in the order asked for: (written_us, lag) of every applied row.
    samples: Vec<Vec<(i64, f64)>>,
    written: u64,
    writer_seconds: f64,
    started_us: i64,
    metrics: Arc<polyrepl_engine::Metrics>,
    /// Seconds the online copy took, when one was asked for and finished.
    copy_seconds: Option<f64>,
}

/// One `run` of the `lag` table (and `copy`, copied online) into every sink of `kinds`, `slow` among
/// them slowed on purpose (each batch send waits [`SLOW_SEND`] while the writer runs), while the
/// writer runs at `--lag-rate` for `--lag-seconds` (and on until the copy is done); then until every
/// sink applied every row, at most [`DRAIN_TIMEOUT`]. `writing` is the note said when the writer starts.
async fn run_under_writer(
    bench: &Bench,
    kinds: &[SinkKind],
    slow: Option<SinkKind>,
    copy: Option<&str>,
    writing: String,
) -> Result<WriterRun> {
    for &kind in kinds {
        phases::reset_sink(bench, kind, "lag").await?;
    }
    let name = bench.pipeline("lag");
    phases::prestore_checkpoint(bench, kinds, &name, &current_position(&bench.url).await?).await?;
    let tables = copy.map_or("lag".to_string(), |t| format!("lag,{t}"));
    let cfg = phases::run_config(bench, &tables, kinds, &name, false)?;
    let mut prepared = polyrepl_engine::prepare(&cfg).await?;
    let since_us = now_us();
    let slowed = Arc::new(AtomicBool::new(true));
    // The slots are in the order of the sink URLs, which is the order of `kinds`.
    let samples: Vec<Samples> = kinds.iter().map(|_| Samples::default()).collect();
    prepared.slots = prepared
        .slots
        .into_iter()
        .zip(kinds.iter().zip(&samples))
        .map(|(slot, (&kind, samples))| SinkSlot {
            sink: Box::new(LagProbe {
                inner: slot.sink,
                samples: samples.clone(),
                since_us,
                slowed: (Some(kind) == slow).then(|| slowed.clone()),
            }),
            resume_from: slot.resume_from,
        })
        .collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(polyrepl_engine::Metrics::default());
    let (controller, inbox) = polyrepl_engine::control::channel();
    let pipeline = tokio::spawn(polyrepl_engine::run(cfg, prepared, metrics.clone(), stopped, inbox));
    let copied_in: Arc<Mutex<Option<f64>>> = Default::default();
    if let Some(table) = copy {
        let table = TableId::new(&bench.db, table);
        let into = kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join("+");
        bench.note(format!("lag {into}: copying {table} online meanwhile"));
        controller.copy(vec![table]).await.map_err(|e| anyhow::anyhow!("asking for the online copy: {e}"))?;
        let copy_started = Instant::now();
        let (metrics, copied_in) = (metrics.clone(), copied_in.clone());
        tokio::spawn(async move {
            while metrics.source.copies_completed.load(Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            *copied_in.lock().unwrap() = Some(copy_started.elapsed().as_secs_f64());
        });
    }

    bench.note(writing);
    let copying = || copy.is_some() && copied_in.lock().unwrap().is_none();
    let writer = write_steadily(bench, copying).await;
    // A slowed sink catches up at its own speed from here.
    slowed.store(false, Relaxed);
    let (written, writer_seconds, started_us) = match writer {
        Ok(w) => w,
        Err(e) => {
            let _ = stop.send(true);
            let _ = pipeline.await;
            return Err(e);
        }
    };
    let drain_started = Instant::now();
    while samples.iter().any(|s| s.lock().unwrap().len() < written as usize)
        && drain_started.elapsed() < DRAIN_TIMEOUT
        && !pipeline.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    pipeline.await.context("lag pipeline task")?.context("lag pipeline")?;
    let mut all = Vec::new();
    for (&kind, samples) in kinds.iter().zip(&samples) {
        let samples = samples.lock().unwrap().clone();
        if samples.len() < written as usize {
            anyhow::bail!(
                "{} applied {} of {written} lag rows within {} s of the writer's end",
                kind.label(),
                samples.len(),
                DRAIN_TIMEOUT.as_secs()
            );
        }
        all.push(samples);
    }
    let copy_seconds = *copied_in.lock().unwrap();
    Ok(WriterRun { samples: all, written, writer_seconds, started_us, metrics, copy_seconds })
}

/// The lag figures of `samples` (the warm-up left out) of a writer that wrote `written` rows in
/// `writer_seconds` from `started_us`.
fn lag_figures(samples: &[(i64, f64)], written: u64, writer_seconds: f64, started_us: i64) -> LagFigures {
    let counted_from = started_us + (WARM_UP_SECONDS * 1e6) as i64;
    let mut lags: Vec<f64> = samples.iter().filter(|(w, _)| *w >= counted_from).map(|(_, l)| *l).collect();
    if lags.is_empty() {
        lags = samples.iter().map(|(_, l)| *l).collect();
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    LagFigures {
        p50_s: quantile(&lags, 0.50),
        p99_s: quantile(&lags, 0.99),
        max_s: lags.last().copied().unwrap_or(f64::NAN),
        samples: lags.len(),
        achieved_rate: written as f64 / writer_seconds,
    }
}

/// What `--slow-sink` measured: the other sinks' lag while one sink was slowed on purpose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BesideSlow {
    /// The sink slowed on purpose.
    pub slow: &'static str,
    /// Each other sink's lag meanwhile.
    pub others: Vec<(&'static str, LagFigures)>,
    /// How far behind the slowed sink fell (its largest lag, seconds).
    pub slow_max_lag_s: f64,
    /// Batches sent to spill files meanwhile (the slowed sink's: the others keep up).
    pub slow_batches_spilled: u64,
}

/// One `run` into every sink of `kinds` while the writer runs at `--lag-rate` for `--lag-seconds`,
/// `slow` among them slowed on purpose (each batch send waits [`SLOW_SEND`] while the writer runs, so
/// it falls behind); the lag of every other sink meanwhile.
pub async fn measure_beside_slow(bench: &Bench, kinds: &[SinkKind], slow: SinkKind) -> Result<BesideSlow> {
    let writing = format!(
        "lag beside a slow sink: writing {} changes/s for {} s into {} with {} slowed on purpose",
        bench.args.lag_rate,
        bench.args.lag_seconds,
        kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join("+"),
        slow.label()
    );
    let run = run_under_writer(bench, kinds, Some(slow), None, writing).await?;
    let mut others = Vec::new();
    let mut slow_max_lag_s = f64::NAN;
    for (&kind, samples) in kinds.iter().zip(&run.samples) {
        let figures = lag_figures(samples, run.written, run.writer_seconds, run.started_us);
        if kind == slow {
            slow_max_lag_s = figures.max_s;
        } else {
            bench.note(format!(
                "lag {} beside a slowed {}: p50 {:.3} s, p99 {:.3} s over {} rows",
                kind.label(),
                slow.label(),
                figures.p50_s,
                figures.p99_s,
                figures.samples
            ));
            others.push((kind.label(), figures));
        }
    }
    let slow_batches_spilled =
        run.metrics.sinks.lock().unwrap().iter().map(|(_, stats)| stats.batches_spilled.load(Relaxed)).sum();
    bench.note(format!(
        "the slowed {} was up to {slow_max_lag_s:.1} s behind; {slow_batches_spilled} batches went to spill files",
        slow.label()
    ));
    Ok(BesideSlow { slow: slow.label(), others, slow_max_lag_s, slow_batches_spilled })
}

/// The `--online-copy` report: one line per sink.
pub fn copy_table(figures: &[(&str, LagFigures, CopyFigures)]) -> String {
    let mut out = String::from(
        "| sink | rows copied online | seconds | rows/s | lag p50 | lag p99 | writer changes/s | peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (sink, lag, copy) in figures {
        out.push_str(&format!(
            "| {sink} | {} | {:.1} | {:.0} | {:.3} s | {:.3} s | {:.0} | {:.0} MiB |\n",
            copy.rows,
            copy.seconds,
            copy.rows_per_s,
            lag.p50_s,
            lag.p99_s,
            lag.achieved_rate,
            copy.peak_rss_bytes as f64 / (1 << 20) as f64
        ));
    }
    out
}

/// Commits `--lag-rate` row changes per second for `--lag-seconds` (and then on while `keep_going`
/// says so, at most [`LONGEST_WRITER`]), in transactions of 1/100 s worth of rows on a fixed schedule;
/// returns the rows written, the seconds it took and its start (µs).
pub(super) async fn write_steadily(bench: &Bench, keep_going: impl Fn() -> bool) -> Result<(u64, f64, i64)> {
    let rate = bench.args.lag_rate as f64;
    let per_tx = ((rate / 100.0).round() as u64).max(1);
    let interval = Duration::from_secs_f64(per_tx as f64 / rate);
    let transactions = ((bench.args.lag_seconds * rate) / per_tx as f64).ceil().max(1.0) as u64;
    let longest = ((LONGEST_WRITER.as_secs_f64() * rate) / per_tx as f64).ceil() as u64;
    let mut conn = super::data::connect(bench).await?;
    let (started, started_us) = (tokio::time::Instant::now(), now_us());
    let (mut written, mut key, mut version) = (0u64, 0u64, 0u64);
    for i in 0..longest {
        if i >= transactions && !keep_going() {
            break;
        }
        tokio::time::sleep_until(started + interval * i as u32).await;
        let written_us = now_us();
        version += 1;
        let values: Vec<String> = (0..per_tx)
            .map(|_| {
                key = key % LAG_KEYS + 1;
                format!("({key},{version},{written_us})")
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO lag (id, v, written_us) VALUES {} ON DUPLICATE KEY UPDATE v = VALUES(v), written_us = VALUES(written_us)",
            values.join(",")
        ))
        .await
        .context("lag writer")?;
        written += per_tx;
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.disconnect().await?;
    Ok((written, seconds, started_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
