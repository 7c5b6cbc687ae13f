//! A plain-connection reader of source rows, for `polyrepl verify`: chunks in primary-key order, rows
//! by key, and the current binlog position.
//!
//! Invariants:
//! - Not a snapshot: every statement sees the database as of its own start (autocommit), which is what
//!   a live comparison wants — rows changed meanwhile are re-checked later by the caller.
//! - Chunks use the snapshot's own SQL ([`crate::snapshot::chunk_select`]) and decoder, on a session with
//!   `time_zone='+00:00'`, utf8mb4 and unconverted results, so values equal the ones the pipeline replicated.
//! - `read_keys` answers in the order of the keys asked, matching returned rows to keys by their exact
//!   decoded key values (a case-insensitive collation matching `'A'` for `'a'` does not count as found).
//! - [`SourceReader::read_keys_at`] reads rows *and* the binlog position they are consistent with: on
//!   MariaDB exactly (a `WITH CONSISTENT SNAPSHOT` transaction and its `binlog_snapshot_*` position); on
//!   MySQL the position is read right after the transaction starts, so it is at or after the rows' state
//!   (a sink caught up to it may be newer than the rows read, never older).
//! - At most `limit` rows (chunks) or [`KEYS_PER_QUERY`] rows (by key) are in memory per call.

use std::collections::HashMap;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params};
use polyrepl_core::rowhash::row_bytes;
use polyrepl_core::{Change, Position, Row, TableSchema, Value};

use crate::decode::to_param;
use crate::error::{Result, SourceError};
use crate::schema::{quote_ident, quote_table};
use crate::snapshot::{chunk_select, decode_row, estimated_rows};
use crate::source_url::SourceUrl;

/// Keys per `IN (…)` query of [`SourceReader::read_keys`].
pub const KEYS_PER_QUERY: usize = 500;

/// A connection that reads rows of the source tables.
pub struct SourceReader {
    conn: Conn,
    url: SourceUrl,
    server: String,
    mariadb: bool,
}

impl SourceReader {
    /// Connects and sets up the session (utf8mb4, UTC).
    pub async fn connect(url: &SourceUrl) -> Result<SourceReader> {
        let server = url.address();
        let mut conn =
            Conn::new(url.opts(false)).await.map_err(|e| SourceError::query("connecting for verify", &server, e))?;
        for statement in [
            "SET NAMES utf8mb4",
            crate::snapshot::RAW_RESULTS,
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ] {
            conn.query_drop(statement).await.map_err(|e| SourceError::query(statement, &server, e))?;
        }
        let version: String = conn
            .query_first("SELECT @@version")
            .await
            .map_err(|e| SourceError::query("reading @@version", &server, e))?
            .unwrap_or_default();
        Ok(SourceReader { conn, url: url.clone(), server, mariadb: version.to_ascii_lowercase().contains("mariadb") })
    }

    /// Up to `limit` rows of `table` with a key greater than `after_key` (from the first row when
    /// `None`), in key order. An empty vector means the table is done.
    pub async fn read_chunk(
        &mut self,
        table: &TableSchema,
        after_key: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let (sql, params) = chunk_select(table, after_key, limit)?;
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(|e| SourceError::query(format!("reading a chunk of {}", table.id), &self.server, e))?;
        rows.into_iter().map(|r| decode_row(table, r, "verify")).collect()
    }

    /// The rows with the given primary keys (values in key order), `None` where absent.
    pub async fn read_keys(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>> {
        if table.primary_key.is_empty() {
            return Err(SourceError::Usage(format!(
                "table {} has no primary key: its rows cannot be read by key",
                table.id
            )));
        }
        let mut found: HashMap<Vec<u8>, Row> = HashMap::new();
        for batch in keys.chunks(KEYS_PER_QUERY) {
            // A key with a NULL part (or the wrong width) cannot be in the source.
            let usable: Vec<&Vec<Value>> =
                batch.iter().filter(|k| k.len() == table.primary_key.len() && !k.iter().any(Value::is_null)).collect();
            if usable.is_empty() {
                continue;
            }
            let (sql, params) = keys_select(table, &usable);
            let rows: Vec<mysql_async::Row> = self.conn.exec(sql, params).await.map_err(|e| {
                SourceError::query(format!("reading {} row(s) of {} by key", usable.len(), table.id), &self.server, e)
            })?;
            for row in rows {
                let values = decode_row(table, row, "verify")?;
                found.insert(row_bytes(&Change::key_of(table, &values)), values);
            }
        }
        Ok(keys.iter().map(|k| found.get(&row_bytes(k)).cloned()).collect())
    }

    /// The rows of several tables by key (one entry per `(table, keys)` asked, like [`Self::read_keys`]),
    /// all read in one consistent snapshot, and the binlog position that snapshot matches (see the
    /// module notes for MySQL).
    pub async fn read_keys_at(
        &mut self,
        wanted: &[(&TableSchema, Vec<Vec<Value>>)],
    ) -> Result<(Position, Vec<Vec<Option<Row>>>)> {
        self.conn
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(|e| SourceError::query("START TRANSACTION WITH CONSISTENT SNAPSHOT", &self.server, e))?;
        let result = self.read_in_transaction(wanted).await;
        let committed = self.conn.query_drop("COMMIT").await.map_err(|e| SourceError::query("COMMIT", &self.server, e));
        let found = result?;
        committed?;
        Ok(found)
    }

    async fn read_in_transaction(
        &mut self,
        wanted: &[(&TableSchema, Vec<Vec<Value>>)],
    ) -> Result<(Position, Vec<Vec<Option<Row>>>)> {
        let position = if self.mariadb {
            crate::snapshot::mariadb_snapshot_position(&mut self.conn, &self.server, true).await?
        } else {
            self.current_position().await?
        };
        let mut rows = Vec::with_capacity(wanted.len());
        for (table, keys) in wanted {
            rows.push(self.read_keys(table, keys).await?);
        }
        Ok((position, rows))
    }

    /// The source's current binlog position (end of the last committed transaction).
    pub async fn current_position(&mut self) -> Result<Position> {
        crate::binlog::current_position(&self.url).await
    }

    /// The server's estimate of a table's row count (information_schema.TABLES), for progress.
    pub async fn estimated_rows(&mut self, table: &TableSchema) -> Result<u64> {
        estimated_rows(&mut self.conn, &self.server, table).await
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// `SELECT every column FROM t WHERE k IN (?, …)`, or `WHERE (k1, k2) IN ((?, ?), …)` for a composite key.
fn keys_select(table: &TableSchema, keys: &[&Vec<Value>]) -> (String, Params) {
    let key_cols: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
    let select: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let one = if key_cols.len() == 1 { "?".to_string() } else { format!("({})", vec!["?"; key_cols.len()].join(", ")) };
    let lhs = if key_cols.len() == 1 { key_cols[0].clone() } else { format!("({})", key_cols.join(", ")) };
    let sql = format!(
        "SELECT {} FROM {} WHERE {lhs} IN ({})",
        select.join(", "),
        quote_table(&table.id),
        vec![one; keys.len()].join(", ")
    );
    let params = keys.iter().flat_map(|k| table.key_columns().zip(k.iter()).map(|(c, v)| to_param(c, v))).collect();
    (sql, Params::Positional(params))
}
