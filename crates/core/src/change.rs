//! A change to one row, and a batch of them.

use crate::{Checkpoint, Position, TableSchema, Value};
use std::sync::Arc;

/// Column values in the order of the table's `columns`.
pub type Row = Vec<Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A row that did not exist before: from the snapshot or a binlog insert.
    Insert,
    Update,
    Delete,
}

/// One row change. An update that changes the primary key is emitted as a delete of the old key
/// followed by an insert of the new row, so that sinks only ever see per-key operations.
#[derive(Debug, Clone)]
pub struct Change {
    /// Commit position of the transaction holding this change (for the snapshot: the hand-over position).
    pub position: Position,
    /// Index of this change inside its transaction (0-based), so (position, seq) is unique and ordered.
    pub seq: u32,
    pub table: Arc<TableSchema>,
    pub op: Op,
    /// The primary-key values, in key order.
    pub key: Vec<Value>,
    /// The full row after the change; `None` for a delete.
    pub after: Option<Row>,
    /// Commit time on the source, seconds since the Unix epoch (0 when unknown, e.g. snapshot rows).
    pub source_ts: u32,
}

impl Change {
    /// Builds the key of `row` for `table`.
    pub fn key_of(table: &TableSchema, row: &Row) -> Vec<Value> {
        table.primary_key.iter().map(|&i| row[i].clone()).collect()
    }
}

/// Changes that a sink applies together, ending on a transaction boundary, with the checkpoint that
/// is true once all of them are applied. Sinks store the checkpoint in the same atomic write where
/// their database allows it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub checkpoint: Checkpoint,
}
