//! The live re-check: a suspect key only counts as a difference once the sink has caught up past the
//! source state it is compared with.
//!
//! Invariants:
//! - Each round reads every suspect row of the source in one consistent snapshot together with the
//!   binlog position P1 it matches ([`SourceReader::read_keys_at`]), waits until the sink's checkpoint
//!   of the pipeline (`--name`) is a streaming checkpoint at or after P1, reads the sink, then reads the
//!   source again (P2). The sink then holds a state the row had between P1 and P2: equal to either
//!   source read means consistent; a row unchanged from P1 to P2 that the sink holds otherwise is a
//!   confirmed difference ([`settle`]).
//! - A row that changed between P1 and P2 and matches neither stays a suspect for the next round; after
//!   [`ROUNDS`] rounds whatever still differs is reported.
//! - No checkpoint for the pipeline (nothing runs under that name): wait [`NO_PIPELINE_WAIT`] and go on.
//!   A checkpoint that does not reach P within the timeout, or does not move for [`STALLED_AFTER`]
//!   (the pipeline is stopped), ends the wait with a note in the report; that sink is not waited for in
//!   later rounds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};
use polyrepl_core::rowhash::row_bytes;
use polyrepl_core::{Checkpoint, Position, Row, Sink, TableSchema, Value};
use polyrepl_mysql::SourceReader;

use super::compare::{verdict, Suspects};
use super::outcome::Difference;

/// Re-check rounds at most.
pub const ROUNDS: usize = 3;
/// Wait when the sink has no checkpoint for the pipeline.
const NO_PIPELINE_WAIT: Duration = Duration::from_secs(1);
/// A checkpoint unchanged this long means the pipeline is not running (a live one moves at least every
/// ~10 s: heartbeats move it past other tables' transactions every 5 s).
const STALLED_AFTER: Duration = Duration::from_secs(12);
/// Pause between two checkpoint reads.
const POLL: Duration = Duration::from_millis(200);

/// Suspect keys of one table (index into the table list) in one sink (index into the sink list).
#[derive(Debug, Clone)]
pub struct PairSuspects {
    pub table: usize,
    pub sink: usize,
    pub suspects: Suspects,
}

/// Waits for sinks to catch up with a source position, remembering per sink whether waiting is useless.
pub struct Waiter {
    pipeline: String,
    timeout: Duration,
    /// Per sink: why it is no longer waited for (also a note for the report).
    gave_up: Vec<Option<String>>,
}

impl Waiter {
    /// A waiter for the checkpoints of `pipeline` in `sinks` sinks.
    pub fn new(pipeline: &str, timeout: Duration, sinks: usize) -> Self {
        Waiter { pipeline: pipeline.to_string(), timeout, gave_up: vec![None; sinks] }
    }

    /// Why sink `index` was not waited for, if it was not.
    pub fn note(&self, index: usize) -> Option<&str> {
        self.gave_up[index].as_deref()
    }

    /// Waits until sink `index` holds a streaming checkpoint at or after `position` (see module notes).
    pub async fn wait(&mut self, sink: &mut dyn Sink, index: usize, position: &Position) -> Result<()> {
        if self.gave_up[index].is_some() {
            return Ok(());
        }
        let started = Instant::now();
        let mut last: Option<Checkpoint> = None;
        let mut last_change = Instant::now();
        loop {
            let checkpoint = sink
                .load_checkpoint(&self.pipeline)
                .await
                .map_err(EngineError::sink_step(format!("reading the checkpoint of {}", sink.name())))?;
            let Some(checkpoint) = checkpoint else {
                tokio::time::sleep(NO_PIPELINE_WAIT).await;
                self.gave_up[index] = Some(format!(
                    "no checkpoint of pipeline '{}' in this sink: rows changing during the check may show as differences",
                    self.pipeline
                ));
                return Ok(());
            };
            if checkpoint.snapshot.is_none() && checkpoint.position >= *position {
                return Ok(());
            }
            if last.as_ref() != Some(&checkpoint) {
                last = Some(checkpoint.clone());
                last_change = Instant::now();
            }
            let why = if started.elapsed() >= self.timeout {
                Some(format!("did not reach the source position {position} within {} s", self.timeout.as_secs()))
            } else if last_change.elapsed() >= STALLED_AFTER {
                Some(format!("has not moved for {} s (is the pipeline running?)", STALLED_AFTER.as_secs()))
            } else {
                None
            };
            if let Some(why) = why {
                let at = if checkpoint.snapshot.is_some() {
                    format!("{} (snapshot in progress)", checkpoint.position)
                } else {
                    checkpoint.position.to_string()
                };
                tracing::warn!(sink = sink.name(), pipeline = %self.pipeline, checkpoint = %at, "the sink's checkpoint {why}");
                self.gave_up[index] =
                    Some(format!("the checkpoint of pipeline '{}' (at {at}) {why}: rows changing during the check may show as differences", self.pipeline));
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Re-checks the suspects until they are settled or [`ROUNDS`] rounds have passed; returns, per entry
/// of `pairs`, the differences that remain.
///
/// A round reads the source at P1 (one snapshot), waits for each sink to pass P1 and reads it, then reads
/// the source again at P2. The sink's row is then one of the states the source row had between P1 and
/// P2: if it equals the source row at P1 or at P2, the key is consistent; if the source row was the
/// same at P1 and P2 and the sink's differs, the difference is confirmed; otherwise (the row changed
/// more than once meanwhile) it is re-checked in the next round, and reported after the last.
pub async fn settle(
    reader: &mut SourceReader,
    sinks: &mut [Box<dyn Sink>],
    tables: &[std::sync::Arc<TableSchema>],
    pairs: &[PairSuspects],
    waiter: &mut Waiter,
) -> Result<Vec<Vec<Difference>>> {
    let mut current: Vec<Suspects> = pairs.iter().map(|p| p.suspects.clone()).collect();
    let mut result: Vec<Vec<Difference>> = vec![Vec::new(); pairs.len()];
    for round in 1..=ROUNDS {
        if current.iter().all(|s| s.is_empty()) {
            break;
        }
        // Every suspect key of each table, once.
        let mut per_table: BTreeMap<usize, Suspects> = BTreeMap::new();
        for (pair, keys) in pairs.iter().zip(&current) {
            per_table.entry(pair.table).or_default().extend(keys.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let (position, before) = read_source(reader, tables, &per_table).await?;
        let mut theirs: Vec<Vec<Option<Row>>> = vec![Vec::new(); pairs.len()];
        let mut waited = vec![false; sinks.len()];
        for (i, pair) in pairs.iter().enumerate() {
            if current[i].is_empty() {
                continue;
            }
            let sink = sinks[pair.sink].as_mut();
            if !waited[pair.sink] {
                waiter.wait(sink, pair.sink, &position).await?;
                waited[pair.sink] = true;
            }
            let table = &*tables[pair.table];
            let keys: Vec<Vec<Value>> = current[i].values().cloned().collect();
            theirs[i] = sink.read_rows(table, &keys).await.map_err(EngineError::sink_step(format!(
                "re-reading {} from {}",
                table.id,
                sink.name()
            )))?;
        }
        let (_, after) = read_source(reader, tables, &per_table).await?;
        for (i, pair) in pairs.iter().enumerate() {
            if current[i].is_empty() {
                continue;
            }
            let table = &*tables[pair.table];
            let mut in_flux = Suspects::new();
            for ((kb, key), row) in current[i].iter().zip(&theirs[i]) {
                let at_p1 = before.get(&(pair.table, kb.clone())).and_then(Option::as_ref);
                let at_p2 = after.get(&(pair.table, kb.clone())).and_then(Option::as_ref);
                let Some(difference) = verdict(table, key, at_p2, row.as_ref()) else { continue };
                if verdict(table, key, at_p1, row.as_ref()).is_none() {
                    continue;
                }
                let stable = at_p1.map(|r| row_bytes(r)) == at_p2.map(|r| row_bytes(r));
                if stable || round == ROUNDS {
                    result[i].push(difference);
                } else {
                    in_flux.insert(kb.clone(), key.clone());
                }
            }
            current[i] = in_flux;
        }
    }
    for r in &mut result {
        r.sort_by(|a, b| super::outcome::key_order(&a.key, &b.key));
    }
    Ok(result)
}

/// The source rows of every suspect key, read in one snapshot, and the position of that snapshot.
async fn read_source(
    reader: &mut SourceReader,
    tables: &[std::sync::Arc<TableSchema>],
    per_table: &BTreeMap<usize, Suspects>,
) -> Result<(Position, HashMap<(usize, Vec<u8>), Option<Row>>)> {
    let wanted: Vec<(&TableSchema, Vec<Vec<Value>>)> =
        per_table.iter().map(|(&t, keys)| (&*tables[t], keys.values().cloned().collect())).collect();
    let (position, rows) = reader
        .read_keys_at(&wanted)
        .await
        .map_err(EngineError::source_step("re-reading suspect rows from the source"))?;
    let mut source = HashMap::new();
    for ((&t, keys), rows) in per_table.iter().zip(rows) {
        for (kb, row) in keys.keys().zip(rows) {
            source.insert((t, kb.clone()), row);
        }
    }
    Ok((position, source))
}
