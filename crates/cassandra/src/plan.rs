//! Turning a batch into one write per key: the last change to a key wins, with its write timestamp.
//!
//! Invariants:
//! - Changes to the same key (same table, same key values) collapse to the last one in batch order, so
//!   per-key order is kept and writes to different keys can run concurrently in any order.
//! - Each write carries the timestamp of the change it comes from ([`crate::timestamp`]); snapshot
//!   batches use seq 0, so every snapshot row sits below every streamed change after the snapshot.
//! - An insert or update becomes an INSERT of every column (NULLs as null, so stale values vanish);
//!   a delete becomes a DELETE of the partition. Both are idempotent.
//! - A malformed change (no key, wrong row length) is an error, never skipped.

use std::collections::HashMap;
use std::sync::Arc;

use polyrepl_core::{Batch, Op, Row, TableId, TableSchema, Value};

use crate::timestamp::write_timestamp;

/// What happens to one key.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind {
    /// Write the full row.
    Upsert(Row),
    /// Delete the row.
    Delete,
}

/// The one write of a batch for one key.
#[derive(Debug, Clone)]
pub struct KeyWrite {
    /// The schema of the last change to the key (the columns its row is in).
    pub table: Arc<TableSchema>,
    pub key: Vec<Value>,
    pub kind: WriteKind,
    /// `USING TIMESTAMP` of the write.
    pub timestamp: i64,
}

/// Collapses the batch's changes per key. Writes appear in the order of each key's first change.
pub fn plan(batch: &Batch) -> Result<Vec<KeyWrite>, String> {
    let snapshot = batch.checkpoint.snapshot.is_some();
    let mut writes: Vec<KeyWrite> = Vec::new();
    let mut slot_of: HashMap<(TableId, String), usize> = HashMap::new();
    for change in &batch.changes {
        let table = &change.table;
        if change.key.len() != table.primary_key.len() || change.key.is_empty() {
            return Err(format!(
                "table {}: a change carries {} key value(s) for a primary key of {} column(s)",
                table.id,
                change.key.len(),
                table.primary_key.len()
            ));
        }
        let kind = match (change.op, &change.after) {
            (Op::Delete, _) => WriteKind::Delete,
            (Op::Insert | Op::Update, Some(row)) if row.len() == table.columns.len() => WriteKind::Upsert(row.clone()),
            (Op::Insert | Op::Update, Some(row)) => {
                return Err(format!(
                    "table {}: a row image has {} values for {} columns",
                    table.id,
                    row.len(),
                    table.columns.len()
                ))
            }
            (op, None) => return Err(format!("table {}: a {op:?} change carries no row image", table.id)),
        };
        let seq = if snapshot { 0 } else { change.seq };
        let timestamp = write_timestamp(&change.position, seq).map_err(|e| format!("table {}: {e}", table.id))?;
        let write = KeyWrite { table: table.clone(), key: change.key.clone(), kind, timestamp };
        let identity = (table.id.clone(), serde_json::to_string(&change.key).expect("values serialise"));
        match slot_of.get(&identity) {
            Some(&slot) => writes[slot] = write,
            None => {
                slot_of.insert(identity, writes.len());
                writes.push(write);
            }
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Change, Checkpoint, Column, ColumnKind, Position, SnapshotProgress};

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                Column { name: "id".into(), kind: ColumnKind::Int, unsigned: false, nullable: false },
                Column { name: "v".into(), kind: ColumnKind::Text, unsigned: false, nullable: true },
            ],
            primary_key: vec![0],
        })
    }

    fn change(op: Op, id: i64, v: Option<&str>, offset: u64, seq: u32) -> Change {
        let after =
            (op != Op::Delete).then(|| vec![Value::Int(id), v.map_or(Value::Null, |s| Value::String(s.into()))]);
        Change {
            position: Position::new("binlog.000001", offset),
            seq,
            table: schema(),
            op,
            key: vec![Value::Int(id)],
            after,
            source_ts: 0,
        }
    }

    #[test]
    fn last_change_per_key_wins_with_its_timestamp() {
        let batch = Batch {
            changes: vec![
                change(Op::Insert, 1, Some("a"), 100, 0),
                change(Op::Insert, 2, Some("b"), 100, 1),
                change(Op::Delete, 1, None, 200, 0),
                change(Op::Update, 2, None, 200, 1),
            ],
            checkpoint: Checkpoint::streaming(Position::new("binlog.000001", 200)),
        };
        let writes = plan(&batch).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].kind, WriteKind::Delete);
        assert_eq!(writes[0].timestamp, write_timestamp(&Position::new("binlog.000001", 200), 0).unwrap());
        assert_eq!(writes[1].kind, WriteKind::Upsert(vec![Value::Int(2), Value::Null]));
        assert_eq!(writes[1].timestamp, writes[0].timestamp + 1);
    }

    #[test]
    fn snapshot_rows_use_seq_zero() {
        let batch = Batch {
            changes: vec![change(Op::Insert, 1, Some("a"), 100, 0), change(Op::Insert, 2, Some("b"), 100, 7)],
            checkpoint: Checkpoint {
                position: Position::new("binlog.000001", 100),
                snapshot: Some(SnapshotProgress { done: vec![], current: None }),
            },
        };
        let writes = plan(&batch).unwrap();
        assert_eq!(writes[0].timestamp, writes[1].timestamp);
    }

    #[test]
    fn malformed_changes_are_errors() {
        let mut bad = change(Op::Insert, 1, Some("a"), 100, 0);
        bad.after = Some(vec![Value::Int(1)]);
        let batch =
            Batch { changes: vec![bad], checkpoint: Checkpoint::streaming(Position::new("binlog.000001", 100)) };
        assert!(plan(&batch).unwrap_err().contains("1 values for 2 columns"));
    }
}
