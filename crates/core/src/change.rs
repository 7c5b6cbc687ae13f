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

/// A change to a table's layout in the sinks, ordered with the row changes (a schema change on the
/// source, or the start of a table's online copy).
#[derive(Debug, Clone)]
pub enum TableOp {
    /// Create what the table needs in the sink ([`crate::Sink::prepare`]), e.g. after CREATE or ALTER.
    Prepare(Arc<TableSchema>),
    /// Remove every row of the table ([`crate::Sink::truncate_table`]).
    Truncate(Arc<TableSchema>),
    /// Remove the table and its rows ([`crate::Sink::drop_table`]).
    Drop(Arc<TableSchema>),
}

impl TableOp {
    pub fn table(&self) -> &Arc<TableSchema> {
        match self {
            TableOp::Prepare(t) | TableOp::Truncate(t) | TableOp::Drop(t) => t,
        }
    }
}

/// Changes that a sink applies together, ending on a transaction boundary, with the checkpoint that
/// is true once all of them are applied. Sinks store the checkpoint in the same atomic write where
/// their database allows it.
///
/// A batch that carries `table_ops` has no row changes: the pipeline runs the operations, in order,
/// before the sink stores the checkpoint (an operation replayed after a crash is idempotent).
#[derive(Debug, Clone)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub checkpoint: Checkpoint,
    pub table_ops: Vec<TableOp>,
}

impl Batch {
    /// Row changes with the checkpoint that is true once they are applied.
    pub fn new(changes: Vec<Change>, checkpoint: Checkpoint) -> Self {
        Batch { changes, checkpoint, table_ops: vec![] }
    }

    /// Layout operations, run in order, with the checkpoint that is true once they are done.
    pub fn table_ops(table_ops: Vec<TableOp>, checkpoint: Checkpoint) -> Self {
        Batch { changes: vec![], checkpoint, table_ops }
    }
}
