//! Collapsing a batch to one entry per key: the step every sink takes before writing.
//!
//! A sink chooses what identifies a key in its database (MongoDB: collection and `_id` bytes; Redis:
//! the key bytes; Cassandra: table and the key's canonical encoding) and [`collapse`] does the rest.
//!
//! Invariants:
//! - Every change's shape is checked once ([`check_change`]): as many key values as primary-key
//!   columns (at least one), none NULL, and for an insert or update a row image with one value per
//!   column. A malformed change is an error, never skipped.
//! - Each table schema is handed to the sink's table check once per batch, before any of its changes.
//! - Changes with the same identity collapse to the last one in batch order (so per-key order is kept
//!   and writes to different keys may run in any order); the key's first change is remembered too.
//! - Keys come out in the order of their first change, borrowing the changes from the batch (no row is
//!   copied), at the cost of one hash-map lookup per change.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use crate::{Change, Op, TableSchema, Value};

/// The changes of one key in a batch, as far as a sink needs them.
#[derive(Debug)]
pub struct CollapsedKey<'a, K> {
    /// The key's identity, as the sink computed it (from the key's first change).
    pub identity: K,
    /// The key's first change in the batch.
    pub first: &'a Change,
    /// The key's last change in the batch: the one to write.
    pub last: &'a Change,
    /// Whether every change of the key has the schema of its first change (same or equal).
    pub one_schema: bool,
}

impl<'a, K> CollapsedKey<'a, K> {
    /// The row image to write (one value per column of `last.table`), or `None` to delete the key.
    pub fn row(&self) -> Option<&'a [Value]> {
        match self.last.op {
            Op::Delete => None,
            Op::Insert | Op::Update => self.last.after.as_deref(),
        }
    }

    /// Whether the key's first change in the batch is an insert: the key was absent when the batch
    /// began (unless the batch is a replay), whatever came after.
    pub fn first_inserted(&self) -> bool {
        self.first.op == Op::Insert
    }
}

/// Checks one change's shape: a non-empty key of the primary key's length without NULLs, and for an
/// insert or update a row image with one value per column (a delete may carry none).
pub fn check_change(change: &Change) -> Result<(), String> {
    let table = &*change.table;
    if change.key.len() != table.primary_key.len() || change.key.is_empty() {
        return Err(format!(
            "table {}: a {:?} change carries {} key value(s) for a primary key of {} column(s)",
            table.id,
            change.op,
            change.key.len(),
            table.primary_key.len()
        ));
    }
    if change.key.iter().any(Value::is_null) {
        return Err(format!("table {}: a {:?} change has a NULL primary-key value", table.id, change.op));
    }
    match (change.op, &change.after) {
        (Op::Delete, _) => Ok(()),
        (op, Some(row)) if row.len() != table.columns.len() => Err(format!(
            "table {}: a {op:?} change carries {} values for {} columns",
            table.id,
            row.len(),
            table.columns.len()
        )),
        (_, Some(_)) => Ok(()),
        (op, None) => Err(format!("table {}: a {op:?} change carries no row image", table.id)),
    }
}

/// Collapses `changes` to one entry per key, in the order of each key's first change.
///
/// For each change, in order: `check_table` runs once per schema (by `Arc`) before its first change,
/// then [`check_change`], then `identity` computes the key's identity. The first error stops the
/// collapse and is returned as is.
pub fn collapse<'a, K, C, I>(
    changes: &'a [Change],
    mut check_table: C,
    mut identity: I,
) -> Result<Vec<CollapsedKey<'a, K>>, String>
where
    K: Hash + Eq,
    C: FnMut(&TableSchema) -> Result<(), String>,
    I: FnMut(&'a Change) -> Result<K, String>,
{
    let mut checked = SchemasSeen::default();
    // The map owns each identity; `keys[slot]` holds the rest until the identities are moved out.
    // foldhash: SipHash was a tenth of the collapse; foldhash's seed is still random per process.
    let mut slot_of: HashMap<K, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(changes.len(), Default::default());
    let mut keys: Vec<(&'a Change, &'a Change, bool)> = Vec::new();
    for change in changes {
        if checked.first_time(&change.table) {
            check_table(&change.table)?;
        }
        check_change(change)?;
        match slot_of.entry(identity(change)?) {
            Entry::Occupied(seen) => {
                let (first, last, one_schema) = &mut keys[*seen.get()];
                *last = change;
                *one_schema = *one_schema && same_schema(&first.table, &change.table);
            }
            Entry::Vacant(new) => {
                new.insert(keys.len());
                keys.push((change, change, true));
            }
        }
    }
    let mut identities: Vec<Option<K>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    for (identity, slot) in slot_of {
        identities[slot] = Some(identity);
    }
    Ok(keys
        .into_iter()
        .zip(identities)
        .map(|((first, last, one_schema), identity)| CollapsedKey {
            identity: identity.expect("every slot has its identity"),
            first,
            last,
            one_schema,
        })
        .collect())
}

/// Same schema: the same `Arc` (the usual case, checked first) or equal contents.
fn same_schema(a: &Arc<TableSchema>, b: &Arc<TableSchema>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// The schemas of a batch already checked, by `Arc` pointer: a batch holds few, and consecutive
/// changes mostly share one, so a comparison with the previous one usually answers.
#[derive(Default)]
struct SchemasSeen {
    previous: Option<*const TableSchema>,
    all: Vec<*const TableSchema>,
}

impl SchemasSeen {
    fn first_time(&mut self, table: &Arc<TableSchema>) -> bool {
        let ptr = Arc::as_ptr(table);
        if self.previous == Some(ptr) {
            return false;
        }
        self.previous = Some(ptr);
        if self.all.contains(&ptr) {
            return false;
        }
        self.all.push(ptr);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, ColumnKind, Position, TableId};

    fn schema(columns: &[&str]) -> Arc<TableSchema> {
        let column = |n: &&str| Column { name: n.to_string(), kind: ColumnKind::Int, unsigned: false, nullable: true };
        Arc::new(TableSchema {
            id: TableId::new("d", "t"),
            columns: columns.iter().map(column).collect(),
            primary_key: vec![0],
        })
    }

    fn change(table: &Arc<TableSchema>, op: Op, id: i64) -> Change {
        let after =
            (op != Op::Delete).then(|| (0..table.columns.len() as i64).map(|i| Value::Int(id * 10 + i)).collect());
        Change {
            position: Position::new("b.000001", 4),
            seq: 0,
            table: table.clone(),
            op,
            key: vec![Value::Int(id)],
            after,
            source_ts: 0,
        }
    }

    fn by_key(changes: &[Change]) -> Result<Vec<CollapsedKey<'_, (TableId, i64)>>, String> {
        collapse(
            changes,
            |_| Ok(()),
            |c| match c.key[0] {
                Value::Int(id) => Ok((c.table.id.clone(), id)),
                _ => Err("not an int".into()),
            },
        )
    }

    #[test]
    fn the_last_change_wins_and_the_first_is_kept_in_order_of_first_appearance() {
        let t = schema(&["id", "v"]);
        let changes = vec![
            change(&t, Op::Update, 2),
            change(&t, Op::Insert, 1),
            change(&t, Op::Update, 1),
            change(&t, Op::Delete, 2),
            change(&t, Op::Insert, 3),
            change(&t, Op::Delete, 3),
        ];
        let keys = by_key(&changes).unwrap();
        let ids: Vec<i64> = keys.iter().map(|k| k.identity.1).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert!(std::ptr::eq(keys[0].first, &changes[0]) && std::ptr::eq(keys[0].last, &changes[3]));
        assert!(std::ptr::eq(keys[1].first, &changes[1]) && std::ptr::eq(keys[1].last, &changes[2]));
        assert_eq!(keys[0].row(), None);
        assert_eq!(keys[1].row(), Some(&changes[2].after.as_ref().unwrap()[..]));
        assert_eq!(keys.iter().map(|k| k.first_inserted()).collect::<Vec<_>>(), vec![false, true, true]);
        // Inserted then deleted: still first inserted, and what remains is the delete.
        assert!(keys[2].first_inserted() && keys[2].one_schema && keys[2].row().is_none());
    }

    #[test]
    fn a_schema_change_within_a_key_is_seen() {
        let a = schema(&["id", "v"]);
        let a_again = schema(&["id", "v"]);
        let b = schema(&["id", "v", "w"]);
        let changes = vec![
            change(&a, Op::Insert, 1),
            change(&a_again, Op::Update, 1),
            change(&a, Op::Insert, 2),
            change(&b, Op::Update, 2),
            change(&a, Op::Update, 2),
        ];
        let keys = by_key(&changes).unwrap();
        assert!(keys[0].one_schema, "an equal schema in another Arc is the same schema");
        assert!(!keys[1].one_schema, "a key that changed schema meanwhile is seen");
        assert!(keys[1].first_inserted());
        assert_eq!(keys[1].row().map(<[Value]>::len), Some(2));
    }

    #[test]
    fn each_schema_is_checked_once_before_its_changes() {
        let a = schema(&["id"]);
        let b = schema(&["id", "v"]);
        let changes = vec![change(&a, Op::Insert, 1), change(&b, Op::Insert, 2), change(&a, Op::Insert, 3)];
        let mut checked = Vec::new();
        collapse(
            &changes,
            |t| {
                checked.push(t.columns.len());
                Ok(())
            },
            |c| Ok(crate::rowhash::row_bytes(&c.key)),
        )
        .unwrap();
        assert_eq!(checked, vec![1, 2]);
        let refused = collapse(&changes, |_| Err("refused".to_string()), |c| Ok(crate::rowhash::row_bytes(&c.key)));
        assert_eq!(refused.unwrap_err(), "refused");
    }

    #[test]
    fn malformed_changes_are_errors() {
        let t = schema(&["id", "v"]);
        let mut short = change(&t, Op::Update, 1);
        short.after.as_mut().unwrap().pop();
        let mut no_image = change(&t, Op::Insert, 1);
        no_image.after = None;
        let mut no_key = change(&t, Op::Delete, 1);
        no_key.key.clear();
        let mut long_key = change(&t, Op::Delete, 1);
        long_key.key.push(Value::Int(2));
        let mut null_key = change(&t, Op::Update, 1);
        null_key.key = vec![Value::Null];
        let cases = [
            (short, "a Update change carries 1 values for 2 columns"),
            (no_image, "a Insert change carries no row image"),
            (no_key, "carries 0 key value(s) for a primary key of 1 column(s)"),
            (long_key, "carries 2 key value(s) for a primary key of 1 column(s)"),
            (null_key, "NULL primary-key value"),
        ];
        for (bad, expected) in cases {
            let err = collapse(std::slice::from_ref(&bad), |_| Ok(()), |c| Ok(crate::rowhash::row_bytes(&c.key)))
                .unwrap_err();
            assert!(err.contains(expected) && err.contains("table d.t"), "{err}");
        }
        // A delete needs no row image.
        assert!(check_change(&change(&t, Op::Delete, 1)).is_ok());
    }

    #[test]
    fn an_identity_error_stops_the_collapse() {
        let t = schema(&["id"]);
        let changes = vec![change(&t, Op::Insert, 1)];
        assert_eq!(collapse(&changes, |_| Ok(()), |_| Err::<u8, _>("no name".into())).unwrap_err(), "no name");
    }
}
