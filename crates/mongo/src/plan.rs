//! Turning a batch into per-collection write operations: one operation per key, the last change wins.
//!
//! Invariants:
//! - Changes to the same key (same table, same `_id` bytes) collapse to the last one in batch order, so
//!   per-key order is kept and the order of operations between different keys no longer matters —
//!   which is what lets the writes be sent unordered.
//! - An insert or update becomes a full-row replacement with upsert; a delete becomes a delete by `_id`.
//!   Both are idempotent, so replaying a batch has the effect of applying it once.
//! - Collapsing and the shape checks are core's ([`polyrepl_core::collapse`]); a table MongoDB cannot
//!   name is an error too, never skipped. Documents are built for the last change of each key only.
//! - A document larger than one write may carry (`max_write_bytes`: the server's document limit less
//!   command overhead) is a row MongoDB cannot hold: it is returned in [`Planned::unmappable`] and its
//!   key becomes a delete, so no older image of it stays (the sink's [`polyrepl_core::RowPolicy`]
//!   decides whether the batch may go on at all).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use mongodb::bson::{Bson, RawDocumentBuf};
use polyrepl_core::{collapse, Batch, TableId, Unmappable};

use crate::mapping::Mapping;
use crate::naming::{check_table, document_id, id_bytes, row_raw_document};

/// One write to one document.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace the document with `_id` by `document`, inserting it if absent. `fresh` when the key's
    /// first change in the batch was an insert, so the document is most likely absent (it exists only
    /// on a replay).
    Upsert { id: Bson, document: RawDocumentBuf, fresh: bool },
    /// Delete the document with `_id`, if present.
    Delete { id: Bson },
}

impl WriteOp {
    /// The `_id` the operation addresses.
    pub fn id(&self) -> &Bson {
        match self {
            WriteOp::Upsert { id, .. } | WriteOp::Delete { id } => id,
        }
    }
}

/// The operations for one collection, one per key.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionWrites {
    pub database: String,
    pub collection: String,
    pub ops: Vec<WriteOp>,
}

/// What a batch writes, and the rows MongoDB cannot hold.
#[derive(Debug)]
pub struct Planned<'a> {
    /// Per collection, in the order of their first change.
    pub groups: Vec<CollectionWrites>,
    /// Rows whose document is over `max_write_bytes` (their keys are deleted in `groups`).
    pub unmappable: Vec<Unmappable<'a>>,
}

/// Room a document leaves in one write statement for the rest of it (`q: {_id}`, `upsert`, …).
const STATEMENT_OVERHEAD: usize = 64;

/// Collapses and groups the batch's changes, setting aside documents over `max_write_bytes`.
/// Collections appear in the order of their first change.
pub fn plan<'a>(mapping: &Mapping, batch: &'a Batch, max_write_bytes: usize) -> Result<Planned<'a>, String> {
    let keys = collapse(&batch.changes, check_table, |change| {
        let id = document_id(mapping, &change.table, &change.key)?;
        Ok(DocumentKey { collection: &change.table.id, bytes: id_bytes(&id), id })
    })?;
    let mut groups: Vec<CollectionWrites> = Vec::new();
    let mut unmappable = Vec::new();
    let mut group_of: HashMap<&TableId, usize> = HashMap::new();
    for key in keys {
        let table = &*key.last.table;
        let (row, fresh) = (key.row(), key.first_inserted());
        let DocumentKey { collection, id, bytes: key_bytes } = key.identity;
        let op = match row {
            None => WriteOp::Delete { id },
            Some(row) => {
                let document = row_raw_document(mapping, table, &id, row)?;
                let bytes = document.as_bytes().len() + key_bytes.len() + STATEMENT_OVERHEAD;
                if bytes > max_write_bytes {
                    unmappable.push(Unmappable {
                        change: key.last,
                        reason: format!(
                            "its MongoDB document is {} bytes, more than the {max_write_bytes} bytes one write can \
                             carry (the server's document size limit, maxBsonObjectSize, less command overhead)",
                            document.as_bytes().len()
                        ),
                        remove_key: true,
                    });
                    WriteOp::Delete { id }
                } else {
                    // A key whose first change in the batch is an insert was absent when the batch began
                    // (but on a replay), whatever came after: its final image can be inserted without a
                    // delete.
                    WriteOp::Upsert { id, document, fresh }
                }
            }
        };
        let group = *group_of.entry(collection).or_insert_with(|| {
            groups.push(CollectionWrites {
                database: table.id.database.clone(),
                collection: table.id.table.clone(),
                ops: Vec::new(),
            });
            groups.len() - 1
        });
        groups[group].ops.push(op);
    }
    Ok(Planned { groups, unmappable })
}

/// A document's identity within a batch: its collection and the exact bytes of its `_id` (the `_id`
/// itself rides along, compared through its bytes).
struct DocumentKey<'a> {
    collection: &'a TableId,
    bytes: Vec<u8>,
    id: Bson,
}

impl PartialEq for DocumentKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.collection == other.collection
    }
}

impl Eq for DocumentKey<'_> {}

impl Hash for DocumentKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.collection.hash(state);
        self.bytes.hash(state);
    }
}

/// Splits `sizes` (bytes of each statement, in order) into consecutive ranges of at most `max_ops`
/// statements and at most `max_bytes` bytes. A statement larger than `max_bytes` gets a range of its own
/// (the caller refuses it).
pub fn chunk_ranges(sizes: &[usize], max_ops: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start >= max_ops.max(1) || bytes + size > max_bytes) {
            ranges.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::Op;

    /// The plan of `(op, id)` changes to one single-key table.
    fn plan_of(changes: &[(Op, i64)]) -> Vec<WriteOp> {
        use polyrepl_core::{Change, Checkpoint, Column, ColumnKind, Position, TableSchema, Value};
        use std::sync::Arc;
        let column =
            |name: &str| Column { name: name.into(), kind: ColumnKind::BigInt, unsigned: false, nullable: false };
        let table = Arc::new(TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![column("id"), column("v")],
            primary_key: vec![0],
        });
        let changes = changes
            .iter()
            .enumerate()
            .map(|(seq, &(op, id))| Change {
                position: Position::new("b.000001", 4),
                seq: seq as u32,
                table: table.clone(),
                op,
                key: vec![Value::Int(id)],
                after: (op != Op::Delete).then(|| vec![Value::Int(id), Value::Int(seq as i64)]),
                source_ts: 0,
            })
            .collect();
        let batch = Batch::new(changes, Checkpoint::streaming(Position::new("b.000001", 4)));
        let mapping = Mapping::new(crate::mapping::ServerFeatures::FERRETDB_1, Default::default());
        plan(&mapping, &batch, 16 << 20).unwrap().groups.remove(0).ops
    }

    fn fresh(op: &WriteOp) -> Option<bool> {
        match op {
            WriteOp::Upsert { fresh, .. } => Some(*fresh),
            WriteOp::Delete { .. } => None,
        }
    }

    #[test]
    fn a_key_first_inserted_in_the_batch_stays_fresh_whatever_follows() {
        let ops = plan_of(&[
            (Op::Insert, 1),
            (Op::Update, 1),
            (Op::Update, 2),
            (Op::Delete, 3),
            (Op::Insert, 3),
            (Op::Insert, 4),
        ]);
        let by_id: Vec<Option<bool>> = ops.iter().map(fresh).collect();
        // 1: inserted then updated → fresh; 2: updated → may exist; 3: deleted then inserted → exists; 4: inserted.
        assert_eq!(by_id, vec![Some(true), Some(false), Some(false), Some(true)]);
        // Inserted then deleted: a delete remains (a replay may have inserted it already).
        let ops = plan_of(&[(Op::Insert, 5), (Op::Delete, 5)]);
        assert_eq!(ops.len(), 1);
        assert_eq!(fresh(&ops[0]), None);
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        assert_eq!(chunk_ranges(&[1, 1, 1, 1, 1], 2, 100), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunk_ranges(&[60, 60, 30, 10], 10, 100), vec![0..1, 1..4]);
        assert_eq!(chunk_ranges(&[500, 1], 10, 100), vec![0..1, 1..2]);
        assert!(chunk_ranges(&[], 10, 100).is_empty());
    }
}
