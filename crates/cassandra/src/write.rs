//! Sending a planned batch: prepared statements, one per key, many in flight at once.
//!
//! Invariants:
//! - Every key of a batch has exactly one write ([`crate::plan`]), and one key is one partition, so
//!   each write is a single-partition statement: there is nothing to group into a batch, and writes to
//!   different keys may complete in any order.
//! - An upsert is `INSERT (every column of the change's schema[, polyrepl_bucket]) … USING TIMESTAMP ?`, NULLs bound as
//!   null so an older value disappears; a delete is `DELETE … USING TIMESTAMP ? WHERE key`.
//! - Statements are sent in unlogged batches of up to [`STATEMENTS_PER_BATCH`] statements and about
//!   [`BATCH_BYTES`] bytes of values (a lone statement goes alone, unbatched): on a node this saves a
//!   request, a response and a coordinator dispatch per row, which is what made the snapshot run at half
//!   the raw rate with one request per row. An unlogged batch is not atomic, and does not need to be:
//!   each statement keeps its own `USING TIMESTAMP`, so order and replays behave as with single
//!   statements. The bounds stay under the default batch-size warning (5 KiB) and the warning on
//!   batches over more than 10 partitions. (On a multi-node cluster such batches cost the coordinator a
//!   fan-out; grouping by replica would then be the better cut.)
//! - At most `max_in_flight / 2` batches run at once. Every batch is awaited even when one fails, and
//!   the apply fails if any did: transient only when every failure was transient.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use polyrepl_core::{SinkError, TableSchema, Value};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use crate::connection::TimeBucket;
use crate::error::{classify, classify_prepare};
use crate::mapping::{to_cql, MappingStats};
use crate::naming::{qualified, quote};

/// Prepared statements by CQL text.
#[derive(Debug, Default)]
pub struct Statements {
    prepared: HashMap<String, PreparedStatement>,
}

impl Statements {
    /// Forgets every statement naming `qualified` (`"ks"."t"`, a dropped table): a table created again
    /// gets statements prepared against it.
    pub fn forget(&mut self, qualified: &str) {
        self.prepared.retain(|cql, _| !cql.contains(qualified));
    }

    /// The prepared form of `cql`, preparing it on first use.
    pub async fn get(&mut self, session: &Session, sink: &str, cql: &str) -> Result<PreparedStatement, SinkError> {
        if let Some(p) = self.prepared.get(cql) {
            return Ok(p.clone());
        }
        let p = session.prepare(cql).await.map_err(|e| classify_prepare(sink, &format!("preparing {cql}"), &e))?;
        self.prepared.insert(cql.to_string(), p.clone());
        Ok(p)
    }
}

/// `INSERT INTO "ks"."t" ("a", …[, "polyrepl_bucket"]) VALUES (?, …) USING TIMESTAMP ?`.
pub fn insert_cql(table: &TableSchema, bucket: bool) -> String {
    let mut names: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    if bucket {
        names.push(quote(TimeBucket::COLUMN));
    }
    let marks = vec!["?"; names.len()].join(", ");
    format!("INSERT INTO {} ({}) VALUES ({marks}) USING TIMESTAMP ?", qualified(table), names.join(", "))
}

/// `DELETE FROM "ks"."t" USING TIMESTAMP ? WHERE "k" = ? AND …`.
pub fn delete_cql(table: &TableSchema) -> String {
    format!("DELETE FROM {} USING TIMESTAMP ? WHERE {}", qualified(table), key_condition(table))
}

/// `SELECT "a", … FROM "ks"."t" WHERE "k" = ? AND …`.
pub fn select_cql(table: &TableSchema, columns: &[&str]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    format!("SELECT {} FROM {} WHERE {}", names.join(", "), qualified(table), key_condition(table))
}

fn key_condition(table: &TableSchema) -> String {
    table.key_columns().map(|c| format!("{} = ?", quote(&c.name))).collect::<Vec<_>>().join(" AND ")
}

/// The bound values of a key, in key order. A NULL or zero-date key part is an error.
pub fn key_values(table: &TableSchema, key: &[Value], stats: &MappingStats) -> Result<Vec<CqlValue>, String> {
    table
        .key_columns()
        .zip(key)
        .map(|(column, value)| {
            to_cql(column, value, stats)
                .map_err(|e| format!("table {}: {e}", table.id))?
                .ok_or_else(|| {
                    let shown = value.mysql_text().unwrap_or_else(|| "NULL".into());
                    format!(
                        "table {}: primary key column '{}' holds {shown}, which has no Cassandra form and cannot be part of a key \
                         (Cassandra has no zero date). Fix: give the row a real value in the source, or exclude the table",
                        table.id, column.name
                    )
                })
        })
        .collect()
}

/// The bound values of a full row, in column order.
pub fn row_values(table: &TableSchema, row: &[Value], stats: &MappingStats) -> Result<Vec<Option<CqlValue>>, String> {
    table
        .columns
        .iter()
        .zip(row)
        .map(|(column, value)| to_cql(column, value, stats).map_err(|e| format!("table {}: {e}", table.id)))
        .collect()
}

/// A statement ready to run: its number in the caller's list (described for errors only when one
/// fails, by the caller's `describe`), its prepared form and its values.
pub struct Bound {
    pub index: usize,
    pub statement: PreparedStatement,
    pub values: Vec<Option<CqlValue>>,
}

/// Says what statement `index` writes, e.g. "writing key [Int(7)] of db.t" (only built for an error).
pub type Describe<'a> = dyn Fn(usize) -> String + Sync + 'a;

/// Statements per unlogged batch: Cassandra warns about unlogged batches over more than 10 partitions.
pub const STATEMENTS_PER_BATCH: usize = 10;
/// Bytes of bound values per batch, under Cassandra's default 5 KiB batch-size warning.
pub const BATCH_BYTES: usize = 4 * 1024;

/// About how many bytes a statement's values take on the wire.
fn value_bytes(values: &[Option<CqlValue>]) -> usize {
    values
        .iter()
        .map(|v| match v {
            Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => s.len() + 4,
            Some(CqlValue::Blob(b)) => b.len() + 4,
            Some(CqlValue::Varint(_)) | Some(CqlValue::Decimal(_)) => 24,
            Some(CqlValue::List(l)) | Some(CqlValue::Set(l)) => 8 + l.len() * 16,
            _ => 12,
        })
        .sum()
}

/// Consecutive ranges of statements (of the given value sizes) within the batch bounds.
fn batch_ranges(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        match ranges.last_mut() {
            Some(r) if r.len() < STATEMENTS_PER_BATCH && bytes + size <= BATCH_BYTES => {
                bytes += size;
                r.end = i + 1;
            }
            _ => {
                bytes = size;
                ranges.push(i..i + 1);
            }
        }
    }
    ranges
}

/// `statements` cut into groups by [`batch_ranges`].
fn group(statements: Vec<Bound>) -> Vec<Vec<Bound>> {
    let sizes: Vec<usize> = statements.iter().map(|b| value_bytes(&b.values)).collect();
    let mut rest = statements.into_iter();
    batch_ranges(&sizes).into_iter().map(|r| rest.by_ref().take(r.len()).collect()).collect()
}

/// Runs one group: a lone statement as itself, several as one unlogged batch.
async fn run_group(
    session: &Session,
    sink: &str,
    mut group: Vec<Bound>,
    describe: &Describe<'_>,
) -> Result<(), SinkError> {
    if group.len() == 1 {
        let b = group.pop().expect("one statement");
        return session
            .execute_unpaged(&b.statement, &b.values)
            .await
            .map(|_| ())
            .map_err(|e| classify(sink, &describe(b.index), &e));
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    for b in &group {
        batch.append_statement(b.statement.clone());
    }
    let values: Vec<&Vec<Option<CqlValue>>> = group.iter().map(|b| &b.values).collect();
    session.batch(&batch, values).await.map(|_| ()).map_err(|e| {
        let what = format!("{} and {} more write(s) in one unlogged batch", describe(group[0].index), group.len() - 1);
        classify(sink, &what, &e)
    })
}

/// Runs every statement, in unlogged batches, at most `max_in_flight / 2` batches at once.
pub async fn execute_all(
    session: &Session,
    sink: &str,
    statements: Vec<Bound>,
    max_in_flight: usize,
    describe: &Describe<'_>,
) -> Result<(), SinkError> {
    let total = statements.len();
    let failures: Vec<SinkError> = stream::iter(group(statements))
        .map(|g| run_group(session, sink, g, describe))
        .buffer_unordered((max_in_flight / 2).max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let Some(first) = failures.first() else { return Ok(()) };
    let all_transient = failures.iter().all(SinkError::is_transient);
    let detail = match first {
        SinkError::Transient { message, .. } | SinkError::Definite { message, .. } => message.clone(),
    };
    let message = format!("{} of the batches of {total} write(s) failed; first: {detail}", failures.len());
    Err(if all_transient { SinkError::transient(sink, message) } else { SinkError::definite(sink, message) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    #[test]
    fn statements_bind_the_timestamp_and_key() {
        let t = TableSchema {
            id: TableId::new("db", "t"),
            columns: ["a", "b", "c"]
                .iter()
                .map(|n| Column { name: n.to_string(), kind: ColumnKind::Int, unsigned: false, nullable: true })
                .collect(),
            primary_key: vec![2, 0],
        };
        assert_eq!(
            insert_cql(&t, false),
            "INSERT INTO \"db\".\"t\" (\"a\", \"b\", \"c\") VALUES (?, ?, ?) USING TIMESTAMP ?"
        );
        assert_eq!(
            insert_cql(&t, true),
            "INSERT INTO \"db\".\"t\" (\"a\", \"b\", \"c\", \"polyrepl_bucket\") VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        );
        assert_eq!(delete_cql(&t), "DELETE FROM \"db\".\"t\" USING TIMESTAMP ? WHERE \"c\" = ? AND \"a\" = ?");
        assert_eq!(select_cql(&t, &["a", "b"]), "SELECT \"a\", \"b\" FROM \"db\".\"t\" WHERE \"c\" = ? AND \"a\" = ?");
        let stats = MappingStats::default();
        assert_eq!(
            key_values(&t, &[Value::Int(3), Value::Int(1)], &stats).unwrap(),
            vec![CqlValue::Int(3), CqlValue::Int(1)]
        );
        assert!(key_values(&t, &[Value::Null, Value::Int(1)], &stats).unwrap_err().contains("primary key column 'c'"));
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        assert_eq!(batch_ranges(&[100; 25]), vec![0..10, 10..20, 20..25]);
        assert_eq!(batch_ranges(&[3000, 2000, 500, 100]), vec![0..1, 1..4]);
        assert_eq!(batch_ranges(&[9000, 10]), vec![0..1, 1..2], "a large statement goes alone");
        assert!(batch_ranges(&[]).is_empty());
    }
}
