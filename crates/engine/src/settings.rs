//! A run's resolved settings, and every default the engine uses, in one place.
//!
//! The binary resolves flags, environment and the config file into a [`RunConfig`]; anything left
//! unset takes the defaults below (the binary's `--help` quotes them from here).

use crate::pipeline::PipelineConfig;
use std::time::Duration;

/// A batch closes once it holds this many changes…
pub const DEFAULT_BATCH_CHANGES: usize = 5_000;
/// …or this many milliseconds after its first transaction arrived (at once when every sink is idle).
pub const DEFAULT_BATCH_DELAY_MS: u64 = 50;
/// Rows per snapshot chunk (one primary-key range, one batch).
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;
/// Connections reading the initial snapshot's key ranges at once (1: one transaction reads every
/// chunk in turn); see [`crate::snapshot::parallel`]. 1 until the parallel path has been through the
/// whole crash suite (it is opt-in: `--snapshot-parallelism N`).
pub const DEFAULT_SNAPSHOT_PARALLELISM: usize = 1;
/// The name of a pipeline when none is given: the key of its checkpoints in every sink.
pub const DEFAULT_NAME: &str = "polyrepl";
/// Longest wait between two attempts to reach a lost source.
pub const SOURCE_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// First wait after the source is lost (doubles up to [`SOURCE_MAX_BACKOFF`]).
pub const SOURCE_FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How often, at most, a heartbeat moves the checkpoints past transactions on tables not replicated.
pub const HEARTBEAT_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How long a run's lease on its sink tables lasts unless renewed (it is renewed every third of it):
/// how long a crashed pipeline keeps another name out of its tables.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

/// Changes queued in memory per sink.
pub const DEFAULT_QUEUE_CHANGES: usize = 100_000;
/// MiB of changes (estimated) queued in memory per sink. Room for the batch being sent, the one being
/// staged and the next (a 5,000-row batch of the bench is estimated at 3.5 MB): with 8 a sink's queue
/// held two, the source waited for the batch in flight to be stored before it could hand over the
/// next, and staging never overlapped sending (issue #15). A 1,000,000-row snapshot into three sinks
/// peaks at 105 MiB with 16 (94 MiB with 8).
pub const DEFAULT_QUEUE_MIB: usize = 16;
/// MiB of batches a sink whose queue is full keeps in its spill file on disk before the source waits.
pub const DEFAULT_SPILL_MIB: u64 = 1024;

/// Changes of one source transaction held in memory before they are applied in parts.
pub const DEFAULT_TRANSACTION_PART_CHANGES: usize = polyrepl_mysql::binlog::PART_CHANGES;

/// What to replicate, from where, to where, and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `mysql://USER:PASS@HOST:PORT[/DB]`.
    pub source: String,
    /// Include patterns `db.table` / `db.*`.
    pub tables: Vec<String>,
    /// Exclude patterns, same form.
    pub exclude: Vec<String>,
    /// Sink URLs, each opened through [`crate::registry`].
    pub sinks: Vec<String>,
    /// The pipeline's name: the key of its checkpoints in every sink.
    pub name: String,
    /// The server id the binlog reader presents; unique per reader.
    pub server_id: u32,
    pub batch_changes: usize,
    pub batch_delay_ms: u64,
    pub chunk_rows: usize,
    /// Connections reading the initial snapshot at once ([`DEFAULT_SNAPSHOT_PARALLELISM`]).
    pub snapshot_parallelism: usize,
    /// Stop at the end of the binlog instead of following it.
    pub stop_at_end: bool,
    /// Copy every table again, ignoring the checkpoints the sinks hold.
    pub resnapshot: bool,
    /// A table dropped (or renamed away) on the source keeps its rows in the sinks.
    pub keep_dropped_tables: bool,
    /// How long the run's leases on its sink tables last unless renewed.
    pub lease_ttl: Duration,
    /// Take the sink tables' leases even from another pipeline that holds them.
    pub take_over: bool,
    /// What a sink does with a row it cannot hold (`--on-unmappable`).
    pub on_unmappable: polyrepl_core::OnUnmappable,
    /// An open transaction's changes beyond which they are applied in parts (bounded memory).
    pub transaction_part_changes: usize,
    /// Changes queued in memory per sink; beyond them, the sink's spill file.
    pub queue_changes: usize,
    /// MiB of changes queued in memory per sink (estimated).
    pub queue_mib: usize,
    /// MiB a lagging sink's spill file may hold (0: no spill file).
    pub spill_mib: u64,
    /// Where spill files are created (`None`: the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
}

impl RunConfig {
    /// A configuration with every default, for `source`, `tables` and `sinks`.
    pub fn new(source: impl Into<String>, tables: Vec<String>, sinks: Vec<String>) -> Self {
        RunConfig {
            source: source.into(),
            tables,
            exclude: vec![],
            sinks,
            name: DEFAULT_NAME.into(),
            server_id: default_server_id(DEFAULT_NAME),
            batch_changes: DEFAULT_BATCH_CHANGES,
            batch_delay_ms: DEFAULT_BATCH_DELAY_MS,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            snapshot_parallelism: DEFAULT_SNAPSHOT_PARALLELISM,
            stop_at_end: false,
            resnapshot: false,
            keep_dropped_tables: false,
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_SECONDS),
            take_over: false,
            on_unmappable: polyrepl_core::OnUnmappable::Stop,
            transaction_part_changes: DEFAULT_TRANSACTION_PART_CHANGES,
            queue_changes: DEFAULT_QUEUE_CHANGES,
            queue_mib: DEFAULT_QUEUE_MIB,
            spill_mib: DEFAULT_SPILL_MIB,
            spill_dir: None,
        }
    }

    /// The pipeline's batching and queueing bounds for these settings.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            max_batch_changes: self.batch_changes,
            max_batch_delay: Duration::from_millis(self.batch_delay_ms),
            queue_changes: self.queue_changes,
            queue_bytes: self.queue_mib << 20,
            spill_bytes: self.spill_mib << 20,
            spill_dir: self.spill_dir.clone(),
            ..PipelineConfig::default()
        }
    }
}

/// A stable server id per pipeline name, away from the small ids servers themselves use.
pub fn default_server_id(name: &str) -> u32 {
    let h = name.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    100_000 + h % 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_the_pipeline_and_server_ids_are_stable() {
        let cfg = RunConfig::new("mysql://h", vec!["d.*".into()], vec!["redis://h".into()]);
        assert_eq!(cfg.pipeline().max_batch_changes, DEFAULT_BATCH_CHANGES);
        assert_eq!(PipelineConfig::default().max_batch_changes, DEFAULT_BATCH_CHANGES);
        assert_eq!(default_server_id("a"), default_server_id("a"));
        assert_ne!(default_server_id("a"), default_server_id("b"));
        assert!(default_server_id("polyrepl") >= 100_000);
    }
}
