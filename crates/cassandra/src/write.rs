//! Sending a planned batch: prepared statements, one per key, many in flight at once.
//!
//! Invariants:
//! - Every key of a batch has exactly one write ([`crate::plan`]), and one key is one partition, so
//!   each write is a single-partition statement: there is nothing to group into a batch, and writes to
//!   different keys may complete in any order.
//! - An upsert is `INSERT (every column of the change's schema[, polyrepl_bucket]) … USING TIMESTAMP ?`, NULLs bound as
//!   null so an older value disappears; a delete is `DELETE … USING TIMESTAMP ? WHERE key`.
//! - At most `max_in_flight` statements run at once. Every statement is awaited even when one fails, and
//!   the batch fails if any did: transient only when every failure was transient.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use polyrepl_core::{SinkError, TableSchema, Value};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use crate::connection::TimeBucket;
use crate::error::{classify, classify_prepare, definite};
use crate::mapping::{to_cql, MappingStats};
use crate::naming::{qualified, quote};

/// Prepared statements by CQL text.
#[derive(Debug, Default)]
pub struct Statements {
    prepared: HashMap<String, PreparedStatement>,
}

impl Statements {
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

/// A statement ready to run: what it is (for errors), its prepared form and its values.
pub struct Bound {
    pub what: String,
    pub statement: PreparedStatement,
    pub values: Vec<Option<CqlValue>>,
}

/// Runs every statement, at most `max_in_flight` at once.
pub async fn execute_all(session: &Session, sink: &str, statements: Vec<Bound>, max_in_flight: usize) -> Result<(), SinkError> {
    let total = statements.len();
    let failures: Vec<SinkError> = stream::iter(statements)
        .map(|b| async move {
            session.execute_unpaged(&b.statement, &b.values).await.map(|_| ()).map_err(|e| classify(sink, &b.what, &e))
        })
        .buffer_unordered(max_in_flight.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let Some(first) = failures.first() else { return Ok(()) };
    let all_transient = failures.iter().all(SinkError::is_transient);
    let detail = match first {
        SinkError::Transient { message, .. } | SinkError::Definite { message, .. } => message.clone(),
    };
    let message = format!("{} of {total} write(s) failed; first: {detail}", failures.len());
    Err(if all_transient { crate::error::transient(sink, message) } else { definite(sink, message) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    #[test]
    fn statements_bind_the_timestamp_and_key() {
        let t = TableSchema {
            id: TableId::new("db", "t"),
            columns: ["a", "b", "c"].iter().map(|n| Column { name: n.to_string(), kind: ColumnKind::Int, unsigned: false, nullable: true }).collect(),
            primary_key: vec![2, 0],
        };
        assert_eq!(insert_cql(&t, false), "INSERT INTO \"db\".\"t\" (\"a\", \"b\", \"c\") VALUES (?, ?, ?) USING TIMESTAMP ?");
        assert_eq!(
            insert_cql(&t, true),
            "INSERT INTO \"db\".\"t\" (\"a\", \"b\", \"c\", \"polyrepl_bucket\") VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        );
        assert_eq!(delete_cql(&t), "DELETE FROM \"db\".\"t\" USING TIMESTAMP ? WHERE \"c\" = ? AND \"a\" = ?");
        assert_eq!(select_cql(&t, &["a", "b"]), "SELECT \"a\", \"b\" FROM \"db\".\"t\" WHERE \"c\" = ? AND \"a\" = ?");
        let stats = MappingStats::default();
        assert_eq!(key_values(&t, &[Value::Int(3), Value::Int(1)], &stats).unwrap(), vec![CqlValue::Int(3), CqlValue::Int(1)]);
        assert!(key_values(&t, &[Value::Null, Value::Int(1)], &stats).unwrap_err().contains("primary key column 'c'"));
    }
}
