//! `--repair`: rewrite the divergent rows of a sink from the source.
//!
//! Invariants:
//! - The sinks were connected under the pipeline name `<name>-repair`, so the checkpoint each `apply`
//!   stores never touches the running pipeline's own checkpoint.
//! - The rows are read in one consistent snapshot with the binlog position P they match
//!   ([`SourceReader::read_keys_at`]), and every change carries P: Cassandra's write timestamps come from
//!   the position, so the repair wins over every older write, and any later change of the pipeline
//!   (at a position after P) still wins over the repair.
//! - A key the source has becomes an update with the full source row (an upsert in every sink); a key
//!   the source lacks becomes a delete. Sinks apply both idempotently, so repairing twice is harmless.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use polyrepl_core::rowhash::row_bytes;
use polyrepl_core::{Batch, Change, Checkpoint, Op, Sink, TableId, TableSchema, Value};
use polyrepl_mysql::SourceReader;

use super::compare::Suspects;
use super::outcome::Repaired;
use super::recheck::PairSuspects;

/// Changes per applied batch.
const BATCH_CHANGES: usize = 1000;

/// Repairs every pair's keys; returns what was written, per entry of `pairs`.
pub async fn repair(
    reader: &mut SourceReader,
    sinks: &mut [Box<dyn Sink>],
    tables: &[Arc<TableSchema>],
    pairs: &[PairSuspects],
    progress: &mut dyn super::Progress,
) -> Result<Vec<Repaired>> {
    let mut per_table: BTreeMap<usize, Suspects> = BTreeMap::new();
    for pair in pairs {
        per_table.entry(pair.table).or_default().extend(pair.suspects.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let wanted: Vec<(&TableSchema, Vec<Vec<Value>>)> =
        per_table.iter().map(|(&t, keys)| (&*tables[t], keys.values().cloned().collect())).collect();
    let (position, rows) = reader
        .read_keys_at(&wanted)
        .await
        .map_err(EngineError::source_step("reading the rows to repair from the source"))?;
    let mut source = std::collections::HashMap::new();
    for ((&t, keys), rows) in per_table.iter().zip(rows) {
        for (kb, row) in keys.keys().zip(rows) {
            source.insert((t, kb.clone()), row);
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let table = &tables[pair.table];
        let mut done = Repaired::default();
        let changes: Vec<Change> = pair
            .suspects
            .iter()
            .enumerate()
            .map(|(seq, (kb, key))| {
                let row = source.get(&(pair.table, kb.clone())).cloned().flatten();
                if row.is_some() {
                    done.upserted += 1;
                } else {
                    done.deleted += 1;
                }
                Change {
                    position: position.clone(),
                    seq: seq as u32,
                    table: table.clone(),
                    op: if row.is_some() { Op::Update } else { Op::Delete },
                    key: key.clone(),
                    after: row,
                    source_ts: 0,
                }
            })
            .collect();
        debug_assert!(changes
            .iter()
            .all(|c| c.after.as_ref().is_none_or(|r| row_bytes(&Change::key_of(table, r)) == row_bytes(&c.key))));
        let sink = sinks[pair.sink].as_mut();
        for chunk in changes.chunks(BATCH_CHANGES) {
            let batch = Batch::new(chunk.to_vec(), Checkpoint::streaming(position.clone()));
            sink.apply(&batch).await.map_err(EngineError::sink_step(format!(
                "repairing {} row(s) of {} in {}",
                chunk.len(),
                table.id,
                sink.name()
            )))?;
            progress.add(chunk.len() as u64);
        }
        out.push(done);
    }
    Ok(out)
}

/// Where repairs go instead of straight into the sinks: a running pipeline (`verify --repair
/// --through`), which reads the rows itself and applies them in order with its stream.
#[async_trait::async_trait]
pub trait RepairRoute: Send + Sync + std::fmt::Debug {
    /// Asks for `keys` of `table` to be rewritten from the source; per key, whether the source has it.
    async fn repair(&self, table: &TableId, keys: Vec<Vec<Value>>) -> std::result::Result<Vec<bool>, String>;
}

/// Repairs every pair's keys through `route`: each table's keys once (for every sink: the pipeline
/// writes them into all of its sinks); returns what was asked for, per entry of `pairs`.
pub async fn through(
    route: &dyn RepairRoute,
    tables: &[Arc<TableSchema>],
    pairs: &[PairSuspects],
) -> Result<Vec<Repaired>> {
    let mut per_table: BTreeMap<usize, Suspects> = BTreeMap::new();
    for pair in pairs {
        per_table.entry(pair.table).or_default().extend(pair.suspects.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut present = std::collections::HashMap::new();
    for (&t, keys) in &per_table {
        let found = route
            .repair(&tables[t].id, keys.values().cloned().collect())
            .await
            .map_err(|e| EngineError::Settings(format!("the pipeline refused to repair {}: {e}", tables[t].id)))?;
        for (kb, has) in keys.keys().zip(found) {
            present.insert((t, kb.clone()), has);
        }
    }
    Ok(pairs
        .iter()
        .map(|pair| {
            let upserted =
                pair.suspects.keys().filter(|kb| present.get(&(pair.table, (*kb).clone())) == Some(&true)).count();
            Repaired { upserted: upserted as u64, deleted: (pair.suspects.len() - upserted) as u64 }
        })
        .collect())
}
