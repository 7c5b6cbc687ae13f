//! Turning a batch into one write per key: the last change to a key wins, with its write timestamp.
//!
//! Invariants:
//! - Changes to the same key (same table, same key values) collapse to the last one in batch order, so
//!   per-key order is kept and writes to different keys can run concurrently in any order.
//! - Each write carries the timestamp of the change it comes from ([`crate::timestamp`]); snapshot
//!   batches use seq 0, so every snapshot row sits below every streamed change after the snapshot.
//! - An insert or update becomes an INSERT of every column (NULLs as null, so stale values vanish);
//!   a delete becomes a DELETE of the partition. Both are idempotent.
//! - Collapsing and the shape checks (no key, wrong row length: an error, never skipped) are core's
//!   ([`polyrepl_core::collapse`]); a table Cassandra cannot hold is refused before its first change.
//! - A row Cassandra would refuse ([`crate::limits`]) is set aside before anything is written
//!   ([`plan_within`]): a row too large becomes a delete of its key (no older image stays); a key too
//!   long is no write at all (such a key cannot be stored, so there is nothing to delete). The sink's
//!   [`polyrepl_core::RowPolicy`] decides whether the batch may go on at all.

use std::sync::Arc;

use polyrepl_core::rowhash::row_bytes;
use polyrepl_core::{collapse, Batch, TableSchema, Unmappable, Value};

use crate::limits::{refused_key, refused_row, ServerLimits};
use crate::naming::check_table;
use crate::timestamp::write_timestamp;

/// What happens to one key.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind<'a> {
    /// Write the full row (one value per column of the write's table), borrowed from the batch.
    Upsert(&'a [Value]),
    /// Delete the row.
    Delete,
}

/// The one write of a batch for one key, borrowing from the batch.
#[derive(Debug, Clone)]
pub struct KeyWrite<'a> {
    /// The schema of the last change to the key (the columns its row is in).
    pub table: &'a Arc<TableSchema>,
    pub key: &'a [Value],
    pub kind: WriteKind<'a>,
    /// `USING TIMESTAMP` of the write.
    pub timestamp: i64,
}

/// Collapses the batch's changes per key, assuming Cassandra's default limits. Writes appear in the
/// order of each key's first change.
pub fn plan(batch: &Batch) -> Result<Vec<KeyWrite<'_>>, String> {
    plan_within(batch, &ServerLimits::default()).map(|(writes, _)| writes)
}

/// [`plan`], setting aside the rows the server's `limits` refuse (returned apart; see the module
/// notes).
pub fn plan_within<'a>(
    batch: &'a Batch,
    limits: &ServerLimits,
) -> Result<(Vec<KeyWrite<'a>>, Vec<Unmappable<'a>>), String> {
    let snapshot = batch.checkpoint.snapshot.is_some();
    // A key is its table and the canonical encoding of its values (exact, and cheap to build).
    let keys = collapse(&batch.changes, check_table, |change| Ok((&change.table.id, row_bytes(&change.key))))?;
    let mut writes = Vec::with_capacity(keys.len());
    let mut unmappable = Vec::new();
    for k in keys {
        let change = k.last;
        let key_parts: Vec<&Value> = change.key.iter().collect();
        if let Some(reason) = refused_key(&key_parts) {
            if k.row().is_some() {
                unmappable.push(Unmappable { change, reason, remove_key: false });
            }
            continue;
        }
        let seq = if snapshot { 0 } else { change.seq };
        let timestamp =
            write_timestamp(&change.position, seq).map_err(|e| format!("table {}: {e}", change.table.id))?;
        let kind = match k.row() {
            Some(row) => match refused_row(row, limits) {
                Some(reason) => {
                    unmappable.push(Unmappable { change, reason, remove_key: true });
                    WriteKind::Delete
                }
                None => WriteKind::Upsert(row),
            },
            None => WriteKind::Delete,
        };
        writes.push(KeyWrite { table: &change.table, key: &change.key, kind, timestamp });
    }
    Ok((writes, unmappable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Change, Checkpoint, Column, ColumnKind, Op, Position, SnapshotProgress, TableId};

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
        let batch = Batch::new(
            vec![
                change(Op::Insert, 1, Some("a"), 100, 0),
                change(Op::Insert, 2, Some("b"), 100, 1),
                change(Op::Delete, 1, None, 200, 0),
                change(Op::Update, 2, None, 200, 1),
            ],
            Checkpoint::streaming(Position::new("binlog.000001", 200)),
        );
        let writes = plan(&batch).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].kind, WriteKind::Delete);
        assert_eq!(writes[0].timestamp, write_timestamp(&Position::new("binlog.000001", 200), 0).unwrap());
        assert_eq!(writes[1].kind, WriteKind::Upsert(&[Value::Int(2), Value::Null]));
        assert_eq!(writes[1].timestamp, writes[0].timestamp + 1);
    }

    #[test]
    fn snapshot_rows_use_seq_zero() {
        let batch = Batch::new(
            vec![change(Op::Insert, 1, Some("a"), 100, 0), change(Op::Insert, 2, Some("b"), 100, 7)],
            Checkpoint::snapshotting(
                Position::new("binlog.000001", 100),
                SnapshotProgress { done: vec![], current: None },
            ),
        );
        let writes = plan(&batch).unwrap();
        assert_eq!(writes[0].timestamp, writes[1].timestamp);
    }

    #[test]
    fn malformed_changes_are_errors() {
        let mut bad = change(Op::Insert, 1, Some("a"), 100, 0);
        bad.after = Some(vec![Value::Int(1)]);
        let batch = Batch::new(vec![bad], Checkpoint::streaming(Position::new("binlog.000001", 100)));
        assert!(plan(&batch).unwrap_err().contains("1 values for 2 columns"));
    }
}
