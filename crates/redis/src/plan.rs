//! Turning a batch into Redis writes: one write per row key (the last change wins), plus the stream
//! entries, split into MULTI/EXEC-sized chunks.
//!
//! Invariants:
//! - Changes to the same key (same Redis key bytes) collapse to the last one in batch order, so per-key
//!   order is kept and the order of writes between different keys no longer matters.
//! - An insert or update becomes `HSET key <every non-NULL column>` + `HDEL key <every NULL column>`
//!   (+ `PEXPIRE` with a TTL): every column of the schema is set or removed, so the hash is exactly the
//!   row image. That holds because a row hash only ever holds fields of its table's current columns:
//!   polyrepl writes nothing else, and every schema change that changes a table's columns or stored
//!   values removes the table's keys in every sink before the first row of the new shape
//!   ([`polyrepl_core::TableOp::Drop`], followed by an online copy). A field no column has (another
//!   application's) is left as it is. A delete becomes `DEL key`. Both are idempotent: replaying a
//!   batch has the effect of applying it once.
//! - A key whose changes in the batch do not all have one schema (a schema change that kept the
//!   columns, inside the batch) is written as `DEL key` + `HSET`, replacing the whole hash.
//! - Before (issue #15): every key not first inserted in the batch got `DEL` + `HSET`, two commands in
//!   a MULTI/EXEC for every update; now a row without NULL columns is one `HSET`, the same work as the
//!   benchmark's raw writer.
//! - Stream entries are not collapsed: one per change, in batch order.
//! - Collapsing and the shape checks (key of the wrong length or NULL, row of the wrong length, no row
//!   image: an error, never skipped) are core's ([`polyrepl_core::collapse`]).
//! - A row the server would refuse ([`crate::limits`]: a key or value over `proto-max-bulk-len`, an
//!   `HSET` over `client-query-buffer-limit`) is set aside as unmappable before anything is written
//!   ([`plan_within`]): its key is deleted instead (nothing, when the key itself is too long: such a key
//!   cannot exist), and so is a stream entry over the bulk limit. The sink's
//!   [`polyrepl_core::RowPolicy`] decides whether the batch may go on at all.
//! - Dead-letter records are written last, after the rows and stream entries ([`Plan::dead_letters`]).

use std::collections::HashSet;

use polyrepl_core::{collapse, Batch, Column, Unmappable, Value};

use crate::limits::{field_len, ServerLimits};
use crate::naming::{check_table, row_key, stream_key};
use crate::stream::envelope;

/// One write to one row key; the row's values are borrowed from the batch, not copied (the sink's
/// time went to copying field names and values before they were copied again into commands).
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite<'a> {
    /// Make the hash at `key` the row: its non-NULL columns set, its NULL columns removed (`row` holds
    /// a value per column of `columns`). `replace`: delete the whole hash first instead (see the module
    /// notes).
    Upsert { key: Vec<u8>, columns: &'a [Column], row: &'a [Value], replace: bool },
    /// Remove the hash at `key`, if present.
    Delete { key: Vec<u8> },
}

impl<'a> RowWrite<'a> {
    /// The Redis key written.
    pub fn key(&self) -> &[u8] {
        match self {
            RowWrite::Upsert { key, .. } | RowWrite::Delete { key } => key,
        }
    }

    /// The fields an upsert sets: (column name, value) of every non-NULL column.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        let (columns, row): (&'a [Column], &'a [Value]) = match self {
            RowWrite::Upsert { columns, row, .. } => (columns, row),
            RowWrite::Delete { .. } => (&[], &[]),
        };
        columns.iter().zip(row).filter(|(_, v)| !v.is_null()).map(|(c, v)| (c.name.as_str(), v))
    }

    /// The NULL columns of an upsert (removed from the hash unless it is replaced).
    pub fn nulls(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (columns, row): (&'a [Column], &'a [Value]) = match self {
            RowWrite::Upsert { columns, row, .. } => (columns, row),
            RowWrite::Delete { .. } => (&[], &[]),
        };
        columns.iter().zip(row).filter(|(_, v)| v.is_null()).map(|(c, _)| c.name.as_str())
    }

    /// Commands this write takes: DEL or HDEL, HSET, PEXPIRE.
    pub fn commands(&self, ttl: bool) -> usize {
        match self {
            RowWrite::Upsert { replace, .. } if self.fields().next().is_some() => {
                let clear = if *replace { 1 } else { usize::from(self.nulls().next().is_some()) };
                1 + clear + usize::from(ttl)
            }
            _ => 1,
        }
    }

    /// Payload bytes (key, field names and values, an estimate for values written as text), a bound
    /// for chunking.
    pub fn bytes(&self) -> usize {
        match self {
            RowWrite::Upsert { key, columns, row, .. } => {
                let value_bytes = |v: &Value| match v {
                    Value::String(s) => s.len(),
                    Value::Bytes(b) => b.len(),
                    _ => 48,
                };
                2 * key.len()
                    + columns.iter().zip(row.iter()).map(|(c, v)| c.name.len() + value_bytes(v) + 16).sum::<usize>()
            }
            RowWrite::Delete { key } => key.len(),
        }
    }
}

/// One entry for a table's change stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub key: String,
    pub event: String,
}

/// One dead-letter record: `HSET key field json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterWrite {
    pub key: String,
    pub field: String,
    pub json: String,
}

/// What one batch writes, before chunking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan<'a> {
    /// One write per row key, in the order of each key's first change.
    pub rows: Vec<RowWrite<'a>>,
    /// Stream entries in batch order (empty without the stream option).
    pub appends: Vec<StreamAppend>,
    /// Records of rows left out (`--on-unmappable dead-letter`), written after the rest.
    pub dead_letters: Vec<DeadLetterWrite>,
}

/// Collapses the batch's changes per key and builds the stream entries when `with_stream`, assuming
/// Redis's default limits.
pub fn plan<'a>(batch: &'a Batch, prefix: Option<&str>, with_stream: bool) -> Result<Plan<'a>, String> {
    plan_within(batch, prefix, with_stream, &ServerLimits::default()).map(|(plan, _)| plan)
}

/// [`plan`], setting aside the rows (and stream entries) the server's `limits` refuse: returned
/// apart, their keys deleted in the plan (see the module notes).
pub fn plan_within<'a>(
    batch: &'a Batch,
    prefix: Option<&str>,
    with_stream: bool,
    limits: &ServerLimits,
) -> Result<(Plan<'a>, Vec<Unmappable<'a>>), String> {
    let keys =
        collapse(&batch.changes, |t| check_table(prefix, t), |change| row_key(prefix, &change.table, &change.key))?;
    let mut unmappable = Vec::new();
    let mut set_aside: HashSet<Vec<u8>> = HashSet::new();
    let mut rows = Vec::with_capacity(keys.len());
    for k in keys {
        if k.identity.len() > limits.bulk {
            // Such a key cannot be in Redis: nothing to delete.
            if k.row().is_some() {
                unmappable.push(Unmappable {
                    change: k.last,
                    reason: format!(
                        "its Redis key is {} bytes, more than the server's proto-max-bulk-len of {} bytes",
                        k.identity.len(),
                        limits.bulk
                    ),
                    remove_key: false,
                });
            }
            set_aside.insert(k.identity);
            continue;
        }
        let Some(row) = k.row() else {
            rows.push(RowWrite::Delete { key: k.identity });
            continue;
        };
        let columns = &k.last.table.columns;
        match refused_row(&k.identity, columns, row, limits) {
            Some(reason) => {
                unmappable.push(Unmappable { change: k.last, reason, remove_key: true });
                set_aside.insert(k.identity.clone());
                rows.push(RowWrite::Delete { key: k.identity });
            }
            None => rows.push(RowWrite::Upsert { replace: !k.one_schema, key: k.identity, columns, row }),
        }
    }
    let snapshot = batch.checkpoint.snapshot.is_some();
    let mut appends = Vec::new();
    if with_stream {
        for c in &batch.changes {
            let event = envelope(c, snapshot);
            if event.len() > limits.bulk {
                let key = row_key(prefix, &c.table, &c.key)?;
                if set_aside.insert(key) {
                    unmappable.push(Unmappable {
                        change: c,
                        reason: format!(
                            "its change-stream entry is {} bytes, more than the server's proto-max-bulk-len of {} \
                             bytes (the entry is left out of the stream)",
                            event.len(),
                            limits.bulk
                        ),
                        remove_key: false,
                    });
                }
                continue;
            }
            appends.push(StreamAppend { key: stream_key(&c.table), event });
        }
    }
    Ok((Plan { rows, appends, dead_letters: Vec::new() }, unmappable))
}

/// Why Redis would refuse the `HSET` of `row` at `key`, if it would.
fn refused_row(key: &[u8], columns: &[Column], row: &[Value], limits: &ServerLimits) -> Option<String> {
    let mut total = key.len() + 16;
    for (column, value) in columns.iter().zip(row).filter(|(_, v)| !v.is_null()) {
        let len = field_len_bound(value);
        if len > limits.bulk || column.name.len() > limits.bulk {
            return Some(format!(
                "column '{}' holds {len} bytes, more than the server's proto-max-bulk-len of {} bytes",
                column.name, limits.bulk
            ));
        }
        total += column.name.len() + len + 32;
    }
    (total > limits.query_buffer).then(|| {
        format!(
            "its HSET is {total} bytes, more than the server's client-query-buffer-limit of {} bytes",
            limits.query_buffer
        )
    })
}

/// At least the length of `value`'s field bytes, exact for every kind whose text can be long (a
/// number, date or time is at most [`SHORT_TEXT`] bytes: not formatted here, only when written).
fn field_len_bound(value: &Value) -> usize {
    match value {
        Value::Int(_)
        | Value::UInt(_)
        | Value::Date(_)
        | Value::Time(_)
        | Value::DateTime(_)
        | Value::Timestamp(_)
        | Value::Year(_)
        | Value::Bit(_) => SHORT_TEXT,
        other => field_len(other),
    }
}

/// The longest text of an integer, date, time, datetime, year or bit value (`-9223372036854775808`,
/// `-838:59:59.000000`, `YYYY-MM-DD HH:MM:SS.ffffff`).
const SHORT_TEXT: usize = 32;

/// Splits items of the given (commands, bytes) sizes, in order, into consecutive ranges of at most
/// `max_commands` commands and `max_bytes` bytes. An item larger than a bound gets a range of its own.
pub fn chunk_ranges(sizes: &[(usize, usize)], max_commands: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut commands, mut bytes) = (0, 0, 0);
    for (i, &(c, b)) in sizes.iter().enumerate() {
        if i > start && (commands + c > max_commands || bytes + b > max_bytes) {
            ranges.push(start..i);
            (start, commands, bytes) = (i, 0, 0);
        }
        commands += c;
        bytes += b;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Change, Checkpoint, Column, ColumnKind, Op, Position, TableId, TableSchema, Value};
    use std::sync::Arc;

    fn table() -> Arc<TableSchema> {
        let col = |n: &str, kind| Column { name: n.into(), kind, unsigned: false, nullable: true };
        Arc::new(TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![col("id", ColumnKind::Int), col("v", ColumnKind::VarChar)],
            primary_key: vec![0],
        })
    }

    fn change(op: Op, id: i64, v: Option<&str>) -> Change {
        let t = table();
        Change {
            position: Position::new("b.000001", 10),
            seq: 0,
            table: t,
            op,
            key: vec![Value::Int(id)],
            after: (op != Op::Delete).then(|| vec![Value::Int(id), v.map_or(Value::Null, |s| Value::String(s.into()))]),
            source_ts: 0,
        }
    }

    #[test]
    fn the_last_change_per_key_wins_and_nulls_are_left_out() {
        let batch = Batch::new(
            vec![
                change(Op::Insert, 1, Some("a")),
                change(Op::Insert, 2, Some("b")),
                change(Op::Update, 1, None),
                change(Op::Delete, 2, None),
            ],
            Checkpoint::streaming(Position::new("b.000001", 10)),
        );
        let p = plan(&batch, Some("x:"), true).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].key(), b"x:d:t:1");
        assert_eq!(p.rows[0].fields().map(|(n, v)| (n, v.clone())).collect::<Vec<_>>(), vec![("id", Value::Int(1))]);
        // Inserted, then updated with v NULL: no DEL, v is removed.
        assert!(matches!(p.rows[0], RowWrite::Upsert { replace: false, .. }));
        assert_eq!(p.rows[0].nulls().collect::<Vec<_>>(), vec!["v"]);
        assert_eq!(p.rows[1], RowWrite::Delete { key: b"x:d:t:2".to_vec() });
        // Deleted then inserted again, or only updated: HSET + HDEL of the NULL columns all the same.
        let again = Batch::new(
            vec![change(Op::Delete, 3, None), change(Op::Insert, 3, Some("c")), change(Op::Update, 4, Some("d"))],
            Checkpoint::streaming(Position::new("b.000001", 10)),
        );
        let rows = plan(&again, None, false).unwrap().rows;
        assert!(rows.iter().all(|r| matches!(r, RowWrite::Upsert { replace: false, .. })), "{rows:?}");
        assert_eq!(p.appends.len(), 4);
        assert!(p.appends.iter().all(|a| a.key == "polyrepl:stream:d:t"));
        assert!(plan(&batch, None, false).unwrap().appends.is_empty());
    }

    #[test]
    fn malformed_changes_are_errors() {
        let mut bad = change(Op::Update, 1, Some("a"));
        bad.after.as_mut().unwrap().pop();
        let batch = Batch::new(vec![bad], Checkpoint::streaming(Position::new("b.000001", 10)));
        assert!(plan(&batch, None, false).unwrap_err().contains("1 values for 2 columns"));
        let mut bad = change(Op::Insert, 1, Some("a"));
        bad.after = None;
        let batch = Batch::new(vec![bad], Checkpoint::streaming(Position::new("b.000001", 10)));
        assert!(plan(&batch, None, false).is_err());
    }

    #[test]
    fn chunks_respect_commands_and_bytes() {
        assert_eq!(chunk_ranges(&[(2, 1), (2, 1), (2, 1)], 4, 100), vec![0..2, 2..3]);
        assert_eq!(chunk_ranges(&[(1, 60), (1, 60), (1, 30)], 10, 100), vec![0..1, 1..3]);
        assert_eq!(chunk_ranges(&[(1, 500), (1, 1)], 10, 100), vec![0..1, 1..2]);
        assert!(chunk_ranges(&[], 10, 100).is_empty());
    }

    #[test]
    fn rows_the_server_refuses_are_set_aside_and_their_keys_deleted() {
        let limits = ServerLimits { bulk: 300, query_buffer: 1 << 20 };
        let big = "x".repeat(301);
        let batch = Batch::new(
            vec![
                change(Op::Insert, 1, Some("ok")),
                change(Op::Update, 2, Some(&big)),
                change(Op::Insert, 3, Some("ok")),
            ],
            Checkpoint::streaming(Position::new("b.000001", 4)),
        );
        let (p, unmappable) = plan_within(&batch, None, true, &limits).unwrap();
        assert_eq!(unmappable.len(), 1);
        assert!(
            unmappable[0].remove_key && unmappable[0].reason.contains("proto-max-bulk-len of 300"),
            "{:?}",
            unmappable[0]
        );
        assert_eq!(unmappable[0].change.key, vec![Value::Int(2)]);
        assert!(matches!(&p.rows[1], RowWrite::Delete { key } if key == b"d:t:2"));
        assert!(matches!(p.rows[0], RowWrite::Upsert { .. }) && matches!(p.rows[2], RowWrite::Upsert { .. }));
        // Its stream entry (over the bulk limit too) is left out; the others stay.
        assert_eq!(p.appends.len(), 2);
        // A key longer than the bulk limit cannot exist: no write at all.
        let tiny = ServerLimits { bulk: 4, query_buffer: 1 << 20 };
        let (p, unmappable) = plan_within(&batch, None, false, &tiny).unwrap();
        assert!(p.rows.is_empty() && unmappable.len() == 3 && unmappable.iter().all(|u| !u.remove_key));
    }
}
