//! The consistent initial snapshot, read chunk by chunk in primary-key order.
//!
//! Invariants:
//! - one connection, one transaction: `START TRANSACTION WITH CONSISTENT SNAPSHOT` is issued first and
//!   every SELECT of every table runs inside it, so all chunks see one instant of the database;
//! - [`Snapshot::position`] is the binlog position of exactly that instant (MariaDB:
//!   `binlog_snapshot_file/position` status, which needs no global lock, and the GTID state of that
//!   file/offset via `BINLOG_GTID_POS`); streaming from it yields every later change and no earlier one;
//! - the snapshot streaming starts from ([`Snapshot::begin`]) is opened at an instant when `XA RECOVER`
//!   lists no prepared XA transaction ([`start_with_no_xa_prepared`]): such a transaction's rows are
//!   logged before the position (at its XA PREPARE) but are not in the snapshot, so a stream from there
//!   could not apply its later `XA COMMIT`;
//! - a chunk is `WHERE (pk...) > (last...) ORDER BY pk... LIMIT n`: at most `n` rows are in memory,
//!   and a chunk can resume after any key (a crash resumes after the last applied key);
//! - a parallel snapshot splits a table into key ranges ahead of reading them
//!   ([`Snapshot::next_boundary`]: the key `n` rows further on, found by the server without sending
//!   the rows) and reads each range, bounded above by the next boundary ([`Snapshot::read_range`]),
//!   on connections of its own opened right after the first ([`Snapshot::alongside`]); the ranges
//!   cover the key space with no gap and no overlap whatever state the boundaries were read in;
//! - values are read with the binary protocol on a `time_zone='+00:00'` session and decoded by
//!   [`crate::decode::from_protocol_in`], which yields the same values as the binlog decoder; text
//!   arrives unconverted (`character_set_results = NULL`) and is decoded by its column's collation
//!   with the binlog's own decoder ([`crate::charset`]), so bytes the server would print as `?` are
//!   an error here too.

use crate::decode::{from_protocol_in, to_param};
use crate::error::{Result, SourceError};
use crate::schema::{quote_ident, quote_table};
use crate::source_url::SourceUrl;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params};
use polyrepl_core::{Change, Op, Position, TableSchema, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An open consistent snapshot: a connection inside a `WITH CONSISTENT SNAPSHOT` transaction.
pub struct Snapshot {
    conn: Conn,
    position: Position,
    server: String,
    mariadb: bool,
    chunk_rows: usize,
}

impl Snapshot {
    /// Connects, starts the consistent-snapshot transaction and reads the binlog position it matches;
    /// chunks will hold up to `chunk_rows` rows. Waits while XA transactions are prepared
    /// ([`start_with_no_xa_prepared`]); drop the future to stop waiting.
    pub async fn begin(url: &SourceUrl, chunk_rows: usize) -> Result<Snapshot> {
        Snapshot::open(url, chunk_rows, true).await
    }

    /// A connection for an online copy, which reads each chunk in a snapshot of its own
    /// ([`Snapshot::renew`]); no transaction is left open, and no GTID state is read (see `renew`).
    /// Nor does it wait for prepared XA transactions: the stream is already reading the binlog from
    /// before each chunk's position, so it has read the XA PREPARE (with the rows) of any transaction
    /// prepared before it, and applies it at its XA COMMIT, after the chunk.
    pub async fn for_chunks(url: &SourceUrl, chunk_rows: usize) -> Result<Snapshot> {
        let mut snapshot = Snapshot::open(url, chunk_rows, false).await?;
        snapshot.end_transaction().await?;
        Ok(snapshot)
    }

    /// Another reader of a parallel snapshot: a connection in a consistent-snapshot transaction of its
    /// own, opened now (so at or after the position of any snapshot opened before it) and kept until
    /// [`Snapshot::finish`]. Its [`Snapshot::position`] has no GTID state (see [`Snapshot::renew`]);
    /// the caller stamps the rows it reads with the first snapshot's position ([`Snapshot::read_range`]).
    pub async fn alongside(url: &SourceUrl, chunk_rows: usize) -> Result<Snapshot> {
        Snapshot::open(url, chunk_rows, false).await
    }

    /// Connects, sets the session up and starts a snapshot transaction; `stream_start`: streaming will
    /// start from its position, so it also has the GTID state (see [`start_transaction`]) and no XA
    /// transaction is prepared when it opens ([`start_with_no_xa_prepared`]).
    async fn open(url: &SourceUrl, chunk_rows: usize, stream_start: bool) -> Result<Snapshot> {
        let server = url.address();
        let mut conn = Conn::new(url.opts(false))
            .await
            .map_err(|e| SourceError::query("connecting for the snapshot", &server, e))?;
        let server_for_errors = server.clone();
        let q = |what: &'static str| {
            let server = server_for_errors.clone();
            move |e| SourceError::query(what, &server, e)
        };
        let version: String =
            conn.query_first("SELECT @@version").await.map_err(q("reading @@version"))?.unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        conn.query_drop("SET NAMES utf8mb4").await.map_err(q("SET NAMES utf8mb4"))?;
        conn.query_drop(RAW_RESULTS).await.map_err(q("SET character_set_results = NULL"))?;
        conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(q("setting the session time zone"))?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(q("setting REPEATABLE READ"))?;
        let position = if stream_start {
            start_with_no_xa_prepared(&mut conn, &server, mariadb).await?
        } else {
            start_transaction(&mut conn, &server, mariadb, false).await?
        };
        Ok(Snapshot { conn, position, server, mariadb, chunk_rows: chunk_rows.max(1) })
    }

    /// Ends this snapshot's transaction and starts a new one on the same connection: the online copy
    /// reads each chunk in its own snapshot, at its own position. On MariaDB that position has no GTID
    /// state: `BINLOG_GTID_POS` reads the binlog file from its start, far too slow once per chunk; the
    /// binlog reader knows the state when it reaches the position. (`START TRANSACTION` commits any
    /// open transaction itself.)
    pub async fn renew(&mut self) -> Result<()> {
        self.position = start_transaction(&mut self.conn, &self.server, self.mariadb, false).await?;
        Ok(())
    }

    /// Ends this snapshot's transaction, keeping the connection for [`Snapshot::renew`]. An online copy
    /// does this after each chunk: an open transaction keeps a metadata lock on the tables it read,
    /// and an ALTER TABLE waiting for it would block every writer of the table behind it.
    pub async fn end_transaction(&mut self) -> Result<()> {
        self.conn.query_drop("COMMIT").await.map_err(|e| SourceError::query("COMMIT of the snapshot", &self.server, e))
    }

    /// A table's schema as the server describes it now (information_schema is not transactional), `None`
    /// when it does not exist.
    pub async fn discover(&mut self, id: &polyrepl_core::TableId) -> Result<Option<TableSchema>> {
        crate::schema::discover_table(&mut self.conn, id, &self.server).await
    }

    /// The binlog position this snapshot is consistent with: stream from here once it is applied.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The server's estimate of a table's row count (information_schema.TABLES), for progress.
    pub async fn estimated_rows(&mut self, table: &TableSchema) -> Result<u64> {
        estimated_rows(&mut self.conn, &self.server, table).await
    }

    /// The next chunk of `table`: up to `chunk_rows` rows with a key greater than `after_key` (from the
    /// first row when `None`), in key order, as `Insert` changes at [`Snapshot::position`].
    /// An empty vector means the table is done.
    pub async fn read_chunk(&mut self, table: &Arc<TableSchema>, after_key: Option<&[Value]>) -> Result<Vec<Change>> {
        let position = self.position.clone();
        self.read_range(table, after_key, None, &position).await
    }

    /// Up to `chunk_rows` rows of `table` with a key greater than `after_key` (from the first row when
    /// `None`) and at most `upto` (to the last row when `None`), in key order, as `Insert` changes at
    /// `position` (a parallel snapshot's rows all carry its first reader's position).
    pub async fn read_range(
        &mut self,
        table: &Arc<TableSchema>,
        after_key: Option<&[Value]>,
        upto: Option<&[Value]>,
        position: &Position,
    ) -> Result<Vec<Change>> {
        let (sql, params) = range_select(table, after_key, upto, self.chunk_rows)?;
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(|e| SourceError::query(format!("snapshot SELECT of {}", table.id), &self.server, e))?;
        let mut changes = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let values = decode_row(table, row, "snapshot")?;
            changes.push(Change {
                position: position.clone(),
                seq: i as u32,
                table: table.clone(),
                op: Op::Insert,
                key: Change::key_of(table, &values),
                after: Some(values),
                source_ts: 0,
            });
        }
        Ok(changes)
    }

    /// The key `chunk_rows` rows after `after_key` (from the first row when `None`): the upper end of
    /// the key range a chunk starting there holds; `None` when fewer rows are left (the range from
    /// there to the end is the table's last). The server walks the primary key without sending the
    /// rows it skips.
    pub async fn next_boundary(
        &mut self,
        table: &TableSchema,
        after_key: Option<&[Value]>,
    ) -> Result<Option<Vec<Value>>> {
        let (sql, params) = boundary_select(table, after_key, self.chunk_rows)?;
        let row: Option<mysql_async::Row> =
            self.conn.exec_first(sql, params).await.map_err(|e| {
                SourceError::query(format!("snapshot key-range SELECT of {}", table.id), &self.server, e)
            })?;
        row.map(|row| decode_key(table, row, "snapshot key range")).transpose()
    }

    /// A cursor over `table`'s chunks, starting after `resume_after` (e.g. from
    /// [`polyrepl_core::SnapshotProgress::current`]).
    pub fn table_chunks(&mut self, table: Arc<TableSchema>, resume_after: Option<Vec<Value>>) -> TableChunks<'_> {
        TableChunks { snapshot: self, table, last_key: resume_after, done: false }
    }

    /// Ends the snapshot transaction and closes the connection.
    pub async fn finish(mut self) -> Result<()> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| SourceError::query("COMMIT of the snapshot", &self.server, e))?;
        let _ = self.conn.disconnect().await;
        Ok(())
    }
}

/// Makes the server send text columns as stored, each with its own collation id (see [`decode_row`]).
pub(crate) const RAW_RESULTS: &str = "SET character_set_results = NULL";

/// Starts the consistent-snapshot transaction on `conn` and returns the binlog position it matches.
/// `with_gtid`: MariaDB only, also read the GTID state at that position (slow on a large binlog file).
async fn start_transaction(conn: &mut Conn, server: &str, mariadb: bool, with_gtid: bool) -> Result<Position> {
    let q = |what: &'static str| move |e| SourceError::query(what, server, e);
    let position = if mariadb {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(q("START TRANSACTION WITH CONSISTENT SNAPSHOT"))?;
        mariadb_snapshot_position(conn, server, with_gtid).await?
    } else {
        // MySQL has no lock-free snapshot position: hold a global read lock for an instant.
        conn.query_drop("FLUSH TABLES WITH READ LOCK")
            .await
            .map_err(q("FLUSH TABLES WITH READ LOCK (needs RELOAD)"))?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(q("START TRANSACTION WITH CONSISTENT SNAPSHOT"))?;
        let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
            Ok(r) => r,
            Err(_) => conn.query_first("SHOW MASTER STATUS").await.map_err(q("SHOW MASTER STATUS"))?,
        };
        conn.query_drop("UNLOCK TABLES").await.map_err(q("UNLOCK TABLES"))?;
        let row =
            row.ok_or_else(|| SourceError::Usage(format!("{server} has no binary log status: is log_bin on?")))?;
        let file: String = row.get(0).unwrap_or_default();
        let offset: u64 = row.get(1).unwrap_or(4);
        let gtid: Option<String> = row.get::<Option<String>, _>(4).flatten().filter(|g| !g.is_empty());
        Position { file, offset, gtid, part: None }
    };
    Ok(position)
}

/// How often a snapshot waiting for prepared XA transactions asks again, and warns.
const XA_POLL: Duration = Duration::from_millis(500);
const XA_WARN_EVERY: Duration = Duration::from_secs(10);

/// Starts the consistent-snapshot transaction (with its GTID state) at an instant when no XA
/// transaction is prepared, and returns its position. A transaction prepared before the position and
/// committed after it is in neither the snapshot nor the binlog after the position (MariaDB logs its
/// rows at XA PREPARE), so a stream from there would stop at its XA COMMIT. While `XA RECOVER` lists
/// any, the snapshot is rolled back and tried again every [`XA_POLL`], with a warning every
/// [`XA_WARN_EVERY`]; the caller ends the wait on shutdown by dropping this future.
///
/// `XA RECOVER` is asked before and after the snapshot opens: after, for transactions prepared before
/// it and still prepared; before, for one prepared earlier that commits just as the snapshot opens. A
/// transaction both prepared and committed within those few round trips is not seen (the stream
/// then stops at its XA COMMIT, with the `--resnapshot` fix). MySQL works the same way.
/// `XA RECOVER` needs no privilege on MariaDB for the user's own XA transactions; MySQL 8 wants
/// XA_RECOVER_ADMIN. Refused for lack of a privilege, it is warned about once and the snapshot
/// goes on unchecked, as before this check existed: a run must not stop for it.
async fn start_with_no_xa_prepared(conn: &mut Conn, server: &str, mariadb: bool) -> Result<Position> {
    // The xids `XA RECOVER` lists (its `data` column), `None` when refused for lack of a privilege.
    async fn prepared(conn: &mut Conn, server: &str) -> Result<Option<Vec<String>>> {
        match conn.query::<mysql_async::Row, _>("XA RECOVER").await {
            Ok(rows) => Ok(Some(
                rows.iter()
                    .map(|r| String::from_utf8_lossy(&r.get::<Vec<u8>, _>("data").unwrap_or_default()).into_owned())
                    .collect(),
            )),
            // ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED
            Err(mysql_async::Error::Server(e)) if matches!(e.code, 1044 | 1045 | 1142 | 1227) => {
                tracing::warn!(
                    %server, error = %e.message,
                    "XA RECOVER refused: the snapshot goes on without waiting for prepared XA \
                     transactions; if one is prepared now and committed later, streaming stops at its \
                     XA COMMIT (grant XA_RECOVER_ADMIN on MySQL 8)"
                );
                Ok(None)
            }
            Err(e) => Err(SourceError::query("XA RECOVER", server, e)),
        }
    }
    let mut warned: Option<Instant> = None;
    loop {
        let mut xids = match prepared(conn, server).await? {
            None => return start_transaction(conn, server, mariadb, true).await,
            Some(xids) => xids,
        };
        if xids.is_empty() {
            // Asked again right after the snapshot opens; MariaDB's GTID state (slow to read on a large
            // binlog file) once it is known to be kept.
            let position = start_transaction(conn, server, mariadb, false).await?;
            match prepared(conn, server).await? {
                Some(after) if !after.is_empty() => xids = after,
                _ if mariadb => return mariadb_snapshot_position(conn, server, true).await,
                _ => return Ok(position),
            }
            conn.query_drop("ROLLBACK").await.map_err(|e| SourceError::query("ROLLBACK of the snapshot", server, e))?;
        }
        if warned.is_none_or(|at| at.elapsed() >= XA_WARN_EVERY) {
            warned = Some(Instant::now());
            tracing::warn!(
                %server, prepared = xids.len(), xids = ?xids,
                "the snapshot waits: {} XA transaction(s) prepared, whose rows a snapshot opened now \
                 would miss (they are logged at XA PREPARE, before its position). Commit or roll them \
                 back: XA COMMIT/XA ROLLBACK <xid>; polyrepl waits",
                xids.len()
            );
        }
        tokio::time::sleep(XA_POLL).await;
    }
}

/// MariaDB: the binlog position (with its GTID state) of the consistent-snapshot transaction open on
/// `conn` (`binlog_snapshot_file/position`, no global lock needed).
pub(crate) async fn mariadb_snapshot_position(conn: &mut Conn, server: &str, with_gtid: bool) -> Result<Position> {
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| SourceError::query("SHOW STATUS LIKE 'binlog_snapshot_%'", server, e))?;
    let get = |n: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let file = get("binlog_snapshot_file")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| SourceError::Usage(format!("{server} reports no binlog_snapshot_file: is log_bin on?")))?;
    let offset: u64 = get("binlog_snapshot_position").and_then(|p| p.parse().ok()).unwrap_or(4);
    if !with_gtid {
        return Ok(Position { file, offset, gtid: None, part: None });
    }
    let gtid: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), offset))
        .await
        .map_err(|e| SourceError::query("SELECT BINLOG_GTID_POS", server, e))?
        .flatten();
    Ok(Position { file, offset, gtid: gtid.filter(|g| !g.is_empty()), part: None })
}

/// The SELECT of one chunk of `table` and its parameters: every column, rows with a key greater than
/// `after_key` (all rows when `None`), in key order, at most `limit` rows. Composite keys use a
/// row-constructor comparison. Shared by the snapshot and the verify reader ([`crate::reader`]).
pub fn chunk_select(table: &TableSchema, after_key: Option<&[Value]>, limit: usize) -> Result<(String, Params)> {
    range_select(table, after_key, None, limit)
}

/// [`chunk_select`] bounded above: only rows with a key at most `upto` (when given).
pub fn range_select(
    table: &TableSchema,
    after_key: Option<&[Value]>,
    upto: Option<&[Value]>,
    limit: usize,
) -> Result<(String, Params)> {
    let select: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    keyed_select(table, &select, after_key, upto, &format!("LIMIT {}", limit.max(1)))
}

/// The SELECT of [`Snapshot::next_boundary`]: the key columns of the `rows`-th row after `after_key`.
pub fn boundary_select(table: &TableSchema, after_key: Option<&[Value]>, rows: usize) -> Result<(String, Params)> {
    let key: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
    keyed_select(table, &key, after_key, None, &format!("LIMIT 1 OFFSET {}", rows.max(1) - 1))
}

/// `SELECT <columns> FROM t WHERE key > after AND key <= upto ORDER BY key <tail>`, either bound left
/// out when `None`. Composite keys use a row-constructor comparison, with a leading comparison of the
/// first key column that lets the optimizer use a range scan (the row comparison is exact).
fn keyed_select(
    table: &TableSchema,
    columns: &[String],
    after_key: Option<&[Value]>,
    upto: Option<&[Value]>,
    tail: &str,
) -> Result<(String, Params)> {
    if table.primary_key.is_empty() {
        return Err(SourceError::Usage(format!("table {} has no primary key: it cannot be read in chunks", table.id)));
    }
    let key_cols: Vec<String> = table.key_columns().map(|c| quote_ident(&c.name)).collect();
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), quote_table(&table.id));
    let mut params: Vec<mysql_async::Value> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    for (bound, (op, first_op)) in [(after_key, (">", ">=")), (upto, ("<=", "<="))] {
        let Some(bound) = bound else { continue };
        if bound.len() != key_cols.len() {
            return Err(SourceError::Usage(format!(
                "key bound for {} has {} values, the primary key has {} columns",
                table.id,
                bound.len(),
                key_cols.len()
            )));
        }
        let key_params = table.key_columns().zip(bound).map(|(c, v)| to_param(c, v));
        if key_cols.len() == 1 {
            conditions.push(format!("{} {op} ?", key_cols[0]));
            params.extend(key_params);
        } else {
            let marks = vec!["?"; key_cols.len()].join(", ");
            conditions.push(format!("{} {first_op} ? AND ({}) {op} ({marks})", key_cols[0], key_cols.join(", ")));
            params.push(to_param(table.key_columns().next().expect("non-empty key"), &bound[0]));
            params.extend(key_params);
        }
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(" ORDER BY {} {tail}", key_cols.join(", ")));
    let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
    Ok((sql, params))
}

/// Decodes a result row holding only `table`'s key columns (in key order).
fn decode_key(table: &TableSchema, row: mysql_async::Row, context: &str) -> Result<Vec<Value>> {
    let charsets: Vec<u16> = row.columns_ref().iter().map(|c| c.character_set()).collect();
    let mut key = Vec::with_capacity(table.primary_key.len());
    for ((column, v), charset) in table.key_columns().zip(row.unwrap()).zip(charsets) {
        key.push(from_protocol_in(column, v, charset).map_err(|message| SourceError::Decode {
            table: table.id.to_string(),
            column: column.name.clone(),
            context: context.into(),
            message,
        })?);
    }
    Ok(key)
}

/// Decodes a result row of a `SELECT` of every column of `table` (in column order); `context` names
/// the reader in errors. Text is decoded in the character set of its result column's collation: the
/// column's own on a session with [`RAW_RESULTS`], the connection's otherwise.
pub fn decode_row(table: &TableSchema, row: mysql_async::Row, context: &str) -> Result<Vec<Value>> {
    let result_columns = row.columns();
    let raw = row.unwrap();
    let mut values = Vec::with_capacity(raw.len());
    for ((column, v), result_column) in table.columns.iter().zip(raw).zip(result_columns.iter()) {
        values.push(from_protocol_in(column, v, result_column.character_set()).map_err(|message| {
            SourceError::Decode {
                table: table.id.to_string(),
                column: column.name.clone(),
                context: context.into(),
                message,
            }
        })?);
    }
    Ok(values)
}

/// Chunks of one table, in key order; remembers the last key it returned.
pub struct TableChunks<'a> {
    snapshot: &'a mut Snapshot,
    table: Arc<TableSchema>,
    last_key: Option<Vec<Value>>,
    done: bool,
}

impl TableChunks<'_> {
    /// The next chunk, or `None` when the table is done.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Change>>> {
        if self.done {
            return Ok(None);
        }
        let chunk = self.snapshot.read_chunk(&self.table, self.last_key.as_deref()).await?;
        match chunk.last() {
            None => {
                self.done = true;
                Ok(None)
            }
            Some(last) => {
                self.last_key = Some(last.key.clone());
                Ok(Some(chunk))
            }
        }
    }

    /// The key of the last row returned (the resume point once that chunk is applied).
    pub fn last_key(&self) -> Option<&[Value]> {
        self.last_key.as_deref()
    }
}

/// The server's estimate of a table's row count (information_schema.TABLES, approximate for InnoDB).
pub(crate) async fn estimated_rows(conn: &mut Conn, server: &str, table: &TableSchema) -> Result<u64> {
    let n: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (table.id.database.clone(), table.id.table.clone()),
        )
        .await
        .map_err(|e| SourceError::query("reading TABLE_ROWS", server, e))?;
    Ok(n.flatten().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    fn table(key: &[&str]) -> TableSchema {
        let column = |name: &str, kind| Column { name: name.into(), kind, unsigned: false, nullable: false };
        TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![column("g", ColumnKind::VarChar), column("n", ColumnKind::Int), column("v", ColumnKind::Int)],
            primary_key: key.iter().map(|k| if *k == "g" { 0 } else { 1 }).collect(),
        }
    }

    fn params(p: Params) -> usize {
        match p {
            Params::Positional(p) => p.len(),
            _ => 0,
        }
    }

    #[test]
    fn ranges_are_bounded_on_either_side_or_both() {
        let t = table(&["n"]);
        let (sql, p) = range_select(&t, None, None, 10).unwrap();
        assert_eq!(sql, "SELECT `g`, `n`, `v` FROM `d`.`t` ORDER BY `n` LIMIT 10");
        assert_eq!(params(p), 0);
        let (sql, p) = range_select(&t, Some(&[Value::Int(5)]), Some(&[Value::Int(9)]), 10).unwrap();
        assert_eq!(sql, "SELECT `g`, `n`, `v` FROM `d`.`t` WHERE `n` > ? AND `n` <= ? ORDER BY `n` LIMIT 10");
        assert_eq!(params(p), 2);
        let (sql, _) = range_select(&t, None, Some(&[Value::Int(9)]), 10).unwrap();
        assert_eq!(sql, "SELECT `g`, `n`, `v` FROM `d`.`t` WHERE `n` <= ? ORDER BY `n` LIMIT 10");
        assert_eq!(
            chunk_select(&t, Some(&[Value::Int(5)]), 7).unwrap().0,
            range_select(&t, Some(&[Value::Int(5)]), None, 7).unwrap().0
        );
    }

    #[test]
    fn composite_keys_compare_as_rows_and_boundaries_skip_a_chunk() {
        let t = table(&["g", "n"]);
        let after = [Value::String("a".into()), Value::Int(1)];
        let upto = [Value::String("m".into()), Value::Int(2)];
        let (sql, p) = range_select(&t, Some(&after), Some(&upto), 3).unwrap();
        assert_eq!(
            sql,
            "SELECT `g`, `n`, `v` FROM `d`.`t` WHERE `g` >= ? AND (`g`, `n`) > (?, ?) \
             AND `g` <= ? AND (`g`, `n`) <= (?, ?) ORDER BY `g`, `n` LIMIT 3"
        );
        assert_eq!(params(p), 6);
        let (sql, p) = boundary_select(&t, Some(&after), 500).unwrap();
        assert_eq!(
            sql,
            "SELECT `g`, `n` FROM `d`.`t` WHERE `g` >= ? AND (`g`, `n`) > (?, ?) ORDER BY `g`, `n` LIMIT 1 OFFSET 499"
        );
        assert_eq!(params(p), 3);
        assert_eq!(
            boundary_select(&t, None, 1).unwrap().0,
            "SELECT `g`, `n` FROM `d`.`t` ORDER BY `g`, `n` LIMIT 1 OFFSET 0"
        );
        // A bound of the wrong width, a table without a key: said, not queried.
        assert!(range_select(&t, None, Some(&[Value::Int(1)]), 3).is_err());
        assert!(boundary_select(&table(&[]), None, 3).is_err());
    }
}
