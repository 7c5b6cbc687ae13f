//! Every metric a run keeps, in one place: counters kept with atomics. The binary renders them
//! (Prometheus text on `/metrics`, JSON on `/status`).

use polyrepl_core::unmappable::UnmappableCounts;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub changes_applied: AtomicU64,
    pub batches_applied: AtomicU64,
    pub batches_skipped: AtomicU64,
    pub last_batch_size: AtomicU64,
    pub errors: AtomicU64,
    /// Source commit time (epoch seconds) of the newest applied change.
    pub last_source_ts: AtomicU64,
    /// Epoch milliseconds when the newest batch was applied.
    pub last_apply_ms: AtomicU64,
    pub state: Mutex<String>,
    /// The error of the last failed apply while the sink is retrying or failed (cleared once it applies).
    pub last_error: Mutex<Option<String>>,
    pub position: Mutex<Option<String>>,
    /// Changes applied per source table.
    pub per_table: Mutex<BTreeMap<String, u64>>,
    /// Rows the sink could not hold, skipped or dead-lettered per source table (`--on-unmappable`),
    /// counted by the sink itself.
    pub unmappable: Arc<UnmappableCounts>,
    /// Batches written to the sink's spill file because its queue was full (see [`crate::spill`]).
    pub batches_spilled: AtomicU64,
    /// Bytes in the sink's spill file not yet read back.
    pub spilled_bytes: AtomicU64,
}

/// Counters of the source side.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub changes_read: AtomicU64,
    pub transactions_read: AtomicU64,
    pub snapshot_rows: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Source commit time (epoch seconds) of the newest change read.
    pub last_source_ts: AtomicU64,
    pub position: Mutex<Option<String>>,
    pub per_table: Mutex<BTreeMap<String, u64>>,
    /// Rows handed over per table by online copies in progress (a table leaves the map when done).
    pub copies: Mutex<BTreeMap<String, u64>>,
    /// Online copies completed since the run started.
    pub copies_completed: AtomicU64,
    /// The initial snapshot's tables, as it reaches them (tables copied by an earlier run are absent).
    pub snapshot_tables: Mutex<BTreeMap<String, TableSnapshot>>,
}

/// How far the initial snapshot has read one table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TableSnapshot {
    pub rows_read: u64,
    /// The server's estimate of the table's rows (0 when it gave none).
    pub rows_estimated: u64,
    pub done: bool,
}

/// All metrics of one `run`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub source: SourceStats,
    pub sinks: Mutex<Vec<(String, Arc<SinkStats>)>>,
}

pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Metrics {
    /// Registers a sink and returns its counters.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        self.sink_with_counts(name, Arc::default())
    }

    /// Registers a sink whose counts of rows it could not hold are `unmappable`, and returns its
    /// counters.
    pub fn sink_with_counts(&self, name: &str, unmappable: Arc<UnmappableCounts>) -> Arc<SinkStats> {
        let stats = Arc::new(SinkStats { unmappable, ..SinkStats::default() });
        *stats.state.lock().unwrap() = "starting".into();
        self.sinks.lock().unwrap().push((name.to_string(), stats.clone()));
        stats
    }

    /// Counts `rows` more handed over by the online copy of `table`.
    pub fn copy_progress(&self, table: &str, rows: u64) {
        *self.source.copies.lock().unwrap().entry(table.to_string()).or_default() += rows;
    }

    /// The online copy of `table` is handed over completely.
    pub fn copy_done(&self, table: &str) {
        self.source.copies.lock().unwrap().remove(table);
        self.source.copies_completed.fetch_add(1, Relaxed);
    }

    /// The initial snapshot read `rows` more of `table`, whose size the server estimates at `estimate`.
    pub fn snapshot_progress(&self, table: &str, rows: u64, estimate: u64) {
        let mut tables = self.source.snapshot_tables.lock().unwrap();
        let entry = tables.entry(table.to_string()).or_default();
        entry.rows_read += rows;
        entry.rows_estimated = estimate;
    }

    /// The initial snapshot has read all of `table`.
    pub fn snapshot_done(&self, table: &str) {
        self.source.snapshot_tables.lock().unwrap().entry(table.to_string()).or_default().done = true;
    }

    /// Seconds the sink is behind what the source has delivered (0 when caught up).
    pub fn lag_seconds(&self, st: &SinkStats) -> f64 {
        let read = self.source.last_source_ts.load(Relaxed);
        let applied = st.last_source_ts.load(Relaxed);
        if applied == 0 && read > 0 {
            // Nothing streamed applied yet (snapshot rows carry no commit time): "read - 0" would be
            // the age of the epoch. The age of the newest change read is a lower bound of the lag.
            return (now_millis() / 1000).saturating_sub(read) as f64;
        }
        read.saturating_sub(applied) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_that_applied_no_streamed_change_is_not_an_epoch_behind() {
        let m = Metrics::default();
        let st = m.sink("redis://h:1");
        assert_eq!(m.lag_seconds(&st), 0.0);
        let now = now_millis() / 1000;
        m.source.last_source_ts.store(now - 5, Relaxed);
        let lag = m.lag_seconds(&st);
        assert!((5.0..60.0).contains(&lag), "{lag}");
        st.last_source_ts.store(now - 7, Relaxed);
        assert_eq!(m.lag_seconds(&st), 2.0);
    }

    #[test]
    fn snapshot_progress_adds_up_per_table_until_done() {
        let m = Metrics::default();
        m.snapshot_progress("d.t", 0, 100);
        m.snapshot_progress("d.t", 40, 100);
        m.snapshot_progress("d.t", 40, 100);
        m.snapshot_done("d.t");
        let expected = TableSnapshot { rows_read: 80, rows_estimated: 100, done: true };
        assert_eq!(m.source.snapshot_tables.lock().unwrap()["d.t"], expected);
    }
}
