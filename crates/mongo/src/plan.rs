//! Turning a batch into per-collection write operations: one operation per key, the last change wins.
//!
//! Invariants:
//! - Changes to the same key (same table, same `_id` bytes) collapse to the last one in batch order, so
//!   per-key order is kept and the order of operations between different keys no longer matters —
//!   which is what lets the writes be sent unordered.
//! - An insert or update becomes a full-row replacement with upsert; a delete becomes a delete by `_id`.
//!   Both are idempotent, so replaying a batch has the effect of applying it once.
//! - A malformed change (no key, wrong row length, table MongoDB cannot name) is an error, never skipped.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{Bson, Document};
use polyrepl_core::{Batch, Op, TableId};

use crate::mapping::Mapping;
use crate::naming::{check_table, document_id, id_bytes, row_document};

/// One write to one document.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace the document with `_id` by `document`, inserting it if absent. `fresh` when the key's
    /// last change was an insert, so the document is most likely absent (it exists only on a replay).
    Upsert { id: Bson, document: Document, fresh: bool },
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

/// Collapses and groups the batch's changes. Collections appear in the order of their first change.
pub fn plan(mapping: &Mapping, batch: &Batch) -> Result<Vec<CollectionWrites>, String> {
    let mut groups: Vec<CollectionWrites> = Vec::new();
    let mut group_of: HashMap<TableId, usize> = HashMap::new();
    let mut slot_of: HashMap<(usize, Vec<u8>), usize> = HashMap::new();
    let mut checked: HashSet<TableId> = HashSet::new();
    for change in &batch.changes {
        let table = &*change.table;
        if checked.insert(table.id.clone()) {
            check_table(table)?;
        }
        let id = document_id(mapping, table, &change.key)?;
        let op = match (change.op, &change.after) {
            (Op::Delete, _) => WriteOp::Delete { id },
            (Op::Insert | Op::Update, Some(row)) => {
                let document = row_document(mapping, table, id.clone(), row)?;
                WriteOp::Upsert { id, document, fresh: change.op == Op::Insert }
            }
            (op, None) => return Err(format!("table {}: a {op:?} change carries no row image", table.id)),
        };
        let group = *group_of.entry(table.id.clone()).or_insert_with(|| {
            groups.push(CollectionWrites {
                database: table.id.database.clone(),
                collection: table.id.table.clone(),
                ops: Vec::new(),
            });
            groups.len() - 1
        });
        let ops = &mut groups[group].ops;
        match slot_of.get(&(group, id_bytes(op.id()))) {
            Some(&slot) => ops[slot] = op,
            None => {
                slot_of.insert((group, id_bytes(op.id())), ops.len());
                ops.push(op);
            }
        }
    }
    Ok(groups)
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

    #[test]
    fn chunks_respect_count_and_bytes() {
        assert_eq!(chunk_ranges(&[1, 1, 1, 1, 1], 2, 100), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunk_ranges(&[60, 60, 30, 10], 10, 100), vec![0..1, 1..4]);
        assert_eq!(chunk_ranges(&[500, 1], 10, 100), vec![0..1, 1..2]);
        assert!(chunk_ranges(&[], 10, 100).is_empty());
    }
}
