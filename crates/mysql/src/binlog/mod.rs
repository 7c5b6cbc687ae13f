//! Streaming row changes from the binlog, in commit order: the reader (replication connection and
//! the look-ups that need a server) and the public types; the decoding is split by event kind.
//!
//! Invariants:
//! - a transaction's changes are emitted when its commit event (XID, `COMMIT`, `XA COMMIT`, or the end
//!   of a standalone MariaDB GTID group) is read; a large one's earlier changes may come first as
//!   [`SourceEvent::Part`]s, with [`BinlogReader::hold`] at its start until it commits; rolled-back
//!   savepoints and XA transactions are never emitted;
//! - every change of a transaction carries the position just after its commit event (current file,
//!   the commit event's `log_pos`, and the GTID state including that transaction) and `seq` = its
//!   index in the transaction; resuming from that position yields exactly the later transactions;
//! - an update that changes the primary key becomes `Delete(old key)` + `Insert(new row)`;
//! - the table map's optional metadata (`binlog_row_metadata=FULL`) is the source of truth for column
//!   names, signedness, ENUM/SET labels and the primary key; a table map with a new shape (after an
//!   ALTER TABLE) yields a new `Arc<TableSchema>`. MariaDB JSON columns (BLOB in the table map) are
//!   recognised from information_schema;
//! - every event type is either understood, deliberately ignored (listed in `decoder`), or a loud
//!   [`SourceError::UnsupportedEvent`]: nothing is skipped silently. Rows of tables outside the filter
//!   are skipped by table id;
//! - the stream has a read timeout (heartbeats keep an idle stream alive): silence is an error.
//!
//! Where each part lives:
//! - `decoder`: [`BinlogDecoder`]'s state and the dispatch of each event to the handler of its kind,
//!   the ignored and the refused event types;
//! - `transaction`: group boundaries (XID, commit), pending changes, heartbeats;
//! - `mariadb`: MariaDB's own events (GTID, GTID list, annotate, checkpoint) and its GTID state;
//! - `rotate`: binlog file changes (rotate, format description);
//! - `query`: query events (`BEGIN`, `COMMIT`, DDL);
//! - `table_map`: table maps → table shapes;
//! - `rows`: rows events → changes, with the row-image decoder;
//! - `reference`: the slower reference decoder debug builds check every rows event against;
//! - `recording`: raw events kept in memory and decoded again ([`RecordedBinlog::replay`]).

mod decoder;
mod mariadb;
mod query;
mod recording;
mod reference;
mod rotate;
mod rows;
mod table_map;
mod transaction;

pub use decoder::BinlogDecoder;
pub use polyrepl_core::parse_gtid_state;
pub use recording::RecordedBinlog;

use crate::error::{Result, SourceError};
use crate::schema::discover_table;
use crate::source_url::SourceUrl;
use futures::{Stream, StreamExt};
use mysql_async::binlog::events::{Event, RotateEvent, TableMapEvent};
use mysql_async::binlog::{BinlogVersion, EventType};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use polyrepl_core::{Change, ColumnKind, Position, TableFilter, TableId};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Default for [`BinlogOptions::part_changes`]: a few MiB of changes held per open transaction.
pub const PART_CHANGES: usize = 20_000;

/// How to stream.
#[derive(Debug, Clone)]
pub struct BinlogOptions {
    /// This replica's server id: unique among every binlog reader of the server.
    pub server_id: u32,
    /// Interval of the server's heartbeats on an idle stream.
    pub heartbeat: Duration,
    /// End the stream at the end of the current binlog instead of waiting for new events.
    pub stop_at_end: bool,
    /// Changes of an open transaction beyond which they are emitted in parts ([`SourceEvent::Part`]).
    pub part_changes: usize,
}

impl BinlogOptions {
    /// Defaults: heartbeat every 5 s, follow the binlog forever.
    pub fn new(server_id: u32) -> Self {
        BinlogOptions { server_id, heartbeat: Duration::from_secs(5), stop_at_end: false, part_changes: PART_CHANGES }
    }

    /// Stops at the end of the current binlog (tests, benchmarks).
    pub fn stop_at_end(mut self) -> Self {
        self.stop_at_end = true;
        self
    }
}

/// What the binlog reader produces.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// The row changes of one committed transaction (only tables in the filter; empty only when every
    /// change was emitted in [`SourceEvent::Part`]s before).
    Transaction { position: Position, changes: Vec<Change> },
    /// Changes of a large transaction not committed yet, that can no longer be rolled back short of
    /// the whole transaction: `position` is the end of the rows event that completed them, between
    /// the previous commit and this transaction's own. Its commit (a [`SourceEvent::Transaction`], or
    /// a later part) follows; until then [`BinlogReader::hold`] is the transaction's start.
    Part { position: Position, changes: Vec<Change> },
    /// The stream is at `position` with nothing new for the selected tables: safe to checkpoint.
    Heartbeat { position: Position },
    /// A DDL statement (any database) committed at `position`; the next table map of an altered
    /// table yields its new schema by itself — this is for logging and for sinks that create tables.
    Ddl { position: Position, database: String, statement: String },
    /// Every transaction committed at or before `position` has been emitted (see
    /// [`BinlogReader::wake_at`]); `position` carries the GTID state there.
    Reached { position: Position },
}

impl SourceEvent {
    /// The position after this event.
    pub fn position(&self) -> &Position {
        match self {
            SourceEvent::Transaction { position, .. }
            | SourceEvent::Part { position, .. }
            | SourceEvent::Heartbeat { position }
            | SourceEvent::Ddl { position, .. }
            | SourceEvent::Reached { position } => position,
        }
    }
}

/// Reads the binlog from a position and yields committed transactions: the replication connection,
/// the look-ups that need a server (information_schema, SHOW BINARY LOGS), and a [`BinlogDecoder`]
/// that turns each event into what it completes.
pub struct BinlogReader {
    /// The replication stream.
    stream: BinlogStream,
    /// The source, for the side connection.
    url: SourceUrl,
    /// The server's address, for errors and logs.
    server: String,
    /// The server is MariaDB.
    mariadb: bool,
    /// How to stream.
    options: BinlogOptions,
    /// The connection for look-ups, opened on first use.
    side: Option<Conn>,
    /// Events → what they complete.
    decoder: BinlogDecoder,
    /// The stream ended (or failed): later calls yield `None`.
    finished: bool,
    /// Raw events kept since [`BinlogReader::record`], for an in-memory decode pass.
    recording: Option<RecordedBinlog>,
    /// Where a [`SourceEvent::Reached`] was asked for ([`BinlogReader::wake_at`]).
    wake_at: Option<Position>,
}

impl BinlogReader {
    /// Connects as a replica with `options.server_id` and starts streaming after `from` (MariaDB: by
    /// GTID when `from.gtid` is set, else by file and offset).
    pub async fn start(
        url: &SourceUrl,
        from: &Position,
        filter: TableFilter,
        options: BinlogOptions,
    ) -> Result<BinlogReader> {
        let server = url.address();
        let q = |what: &'static str| {
            let server = server.clone();
            move |e| SourceError::query(what, &server, e)
        };
        let mut conn = Conn::new(url.opts(false)).await.map_err(q("connecting for the binlog stream"))?;
        let version: String =
            conn.query_first("SELECT @@version").await.map_err(q("reading @@version"))?.unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        crate::purged::check_not_purged(&mut conn, &server, from, mariadb).await?;
        let heartbeat_ns = options.heartbeat.as_nanos().clamp(1_000_000, 4_294_967_000_000_000) as u64;
        conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat_ns}"))
            .await
            .map_err(q("setting the heartbeat"))?;
        conn.query_drop("SET @master_binlog_checksum = 'CRC32'").await.map_err(q("setting the binlog checksum"))?;

        let mut gtid_state = BTreeMap::new();
        let mut start_gtid = from.gtid.clone().filter(|g| !g.trim().is_empty());
        if mariadb {
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(q("setting @mariadb_slave_capability"))?;
            if start_gtid.is_none() {
                // Know the GTID state at the start so that every emitted position carries it.
                start_gtid = conn
                    .exec_first::<Option<String>, _, _>(
                        "SELECT BINLOG_GTID_POS(?, ?)",
                        (from.file.clone(), from.offset),
                    )
                    .await
                    .map_err(q("SELECT BINLOG_GTID_POS"))?
                    .flatten()
                    .filter(|g| !g.is_empty());
            }
            if let Some(g) = &start_gtid {
                gtid_state = parse_gtid_state(g).map_err(SourceError::Usage)?;
            }
        }
        let by_gtid = mariadb && from.gtid.as_deref().is_some_and(|g| !g.trim().is_empty());
        if by_gtid {
            conn.exec_drop("SET @slave_connect_state = ?", (from.gtid.clone().unwrap_or_default(),))
                .await
                .map_err(q("setting @slave_connect_state"))?;
            conn.query_drop("SET @slave_gtid_strict_mode = 0").await.map_err(q("setting @slave_gtid_strict_mode"))?;
        }
        let file_bytes = if by_gtid { Vec::new() } else { from.file.clone().into_bytes() };
        let mut request = BinlogStreamRequest::new(options.server_id).with_filename(&file_bytes).with_pos(if by_gtid {
            4
        } else {
            from.offset.max(4)
        });
        if options.stop_at_end {
            request = request.with_non_blocking();
        }
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| SourceError::binlog_read("requesting the binlog stream", &server, from, e))?;
        tracing::info!(server = %server, from = %from, by_gtid, server_id = options.server_id, "binlog stream started");
        let decoder = BinlogDecoder {
            filter,
            heartbeat: options.heartbeat,
            file: from.file.clone(),
            gtid_state,
            committed: Position { gtid: start_gtid, part: None, ..from.clone() },
            table_ids: HashMap::new(),
            shapes: HashMap::new(),
            pending: Vec::new(),
            last_len: 0,
            in_group: false,
            standalone: false,
            group_gtid: None,
            seen_fde: false,
            first_rotate_name: if by_gtid { None } else { Some(from.file.clone()).filter(|f| !f.is_empty()) },
            json_columns: HashMap::new(),
            last_emit: Instant::now(),
            read_to: from.clone(),
            group_start: from.clone(),
            emitted_in_group: 0,
            part_changes: options.part_changes.max(1),
            savepoints: Vec::new(),
            xa_open: None,
            prepared_xa: BTreeMap::new(),
        };
        Ok(BinlogReader {
            stream,
            url: url.clone(),
            server,
            mariadb,
            options,
            side: None,
            decoder,
            finished: false,
            recording: None,
            wake_at: None,
        })
    }

    /// Asks for a [`SourceEvent::Reached`] once every transaction committed at or before `position` has
    /// been emitted, even when none of them touched a selected table (`None` cancels it). The online copy
    /// waits for this to hand over a chunk read at `position`.
    pub fn wake_at(&mut self, position: Option<Position>) {
        self.wake_at = position;
    }

    /// The [`SourceEvent::Reached`] asked for, once it is true.
    fn reached(&mut self) -> Option<SourceEvent> {
        let target = self.wake_at.as_ref()?;
        if self.decoder.read_to < *target {
            return None;
        }
        // No commit lies between the last one read and the target (the reader stops at the first event
        // that reaches it), so the GTID state there is the target's.
        let gtid = (self.decoder.committed <= *target).then(|| self.decoder.committed.gtid.clone()).flatten();
        self.wake_at.take().map(|target| SourceEvent::Reached { position: Position { gtid, ..target } })
    }

    /// The position after the last commit read so far.
    pub fn position(&self) -> &Position {
        &self.decoder.committed
    }

    /// Where reading must start again to see every change not yet emitted whole, when that is before
    /// the last commit read: the start of a large transaction emitted in part, or of an XA transaction
    /// prepared and not resolved ([`BinlogDecoder::hold`]).
    pub fn hold(&self) -> Option<&Position> {
        self.decoder.hold()
    }

    /// Keeps a copy of every raw event read from now on, with the decoder's state at this point, so
    /// that the same range can be decoded again in memory ([`RecordedBinlog::replay`]).
    pub fn record(&mut self) {
        self.recording = Some(RecordedBinlog { start: self.decoder.clone(), bytes: Vec::new(), events: 0 });
    }

    /// What was recorded since [`BinlogReader::record`], with the look-ups the reader made meanwhile
    /// (first rotate name, MariaDB JSON columns) so the in-memory pass needs no server.
    pub fn take_recording(&mut self) -> Option<RecordedBinlog> {
        let mut r = self.recording.take()?;
        r.start.first_rotate_name = r.start.first_rotate_name.or_else(|| self.decoder.first_rotate_name.clone());
        r.start.json_columns = self.decoder.json_columns.clone();
        Some(r)
    }

    /// The next event; `None` when the stream ended (only with [`BinlogOptions::stop_at_end`], or
    /// when the server closed it).
    pub async fn next_event(&mut self) -> Result<Option<SourceEvent>> {
        let stall = self.options.heartbeat * 3 + Duration::from_secs(10);
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(reached) = self.reached() {
                return Ok(Some(reached));
            }
            let ev = match tokio::time::timeout(stall, self.stream.next()).await {
                Err(_) => return Err(SourceError::Stalled { server: self.server.clone(), seconds: stall.as_secs() }),
                Ok(None) => {
                    self.finished = true;
                    return Ok(None);
                }
                Ok(Some(Err(e))) => {
                    self.finished = true;
                    let at = &self.decoder.committed;
                    return Err(SourceError::binlog_read(format!("reading the binlog at {at}"), &self.server, at, e));
                }
                Ok(Some(Ok(ev))) => ev,
            };
            if let Some(r) = &mut self.recording {
                ev.write(BinlogVersion::Version4, &mut r.bytes)
                    .map_err(|e| self.decoder.stream_error(&ev, format!("recording an event: {e}")))?;
                r.events += 1;
            }
            self.look_up(&ev).await?;
            if let Some(out) = self.decoder.handle(&ev)? {
                return Ok(Some(out));
            }
        }
    }

    /// The reader as a stream; it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<SourceEvent>> + Send {
        futures::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            match reader.next_event().await {
                Ok(Some(ev)) => Some((Ok(ev), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// Closes the replication connection.
    pub async fn close(self) -> Result<()> {
        let server = self.server.clone();
        if let Some(side) = self.side {
            let _ = side.disconnect().await;
        }
        self.stream.close().await.map_err(|e| SourceError::query("closing the binlog stream", &server, e))
    }

    /// Makes the server look-ups `ev` will need before the decoder sees it: the name of the first
    /// rotate when none was asked for, and MariaDB JSON columns of a new table shape.
    async fn look_up(&mut self, ev: &Event) -> Result<()> {
        let t = ev.header().event_type_raw();
        if t == EventType::ROTATE_EVENT as u8 && !self.decoder.seen_fde && self.decoder.first_rotate_name.is_none() {
            let re: RotateEvent<'_> =
                ev.read_event().map_err(|e| self.decoder.stream_error(ev, format!("bad rotate event: {e}")))?;
            let name = self.clean_first_rotate_name(re.name_raw()).await?;
            self.decoder.first_rotate_name = Some(name);
        } else if t == EventType::TABLE_MAP_EVENT as u8 && self.mariadb {
            let tme: TableMapEvent<'_> =
                ev.read_event().map_err(|e| self.decoder.stream_error(ev, format!("bad table map: {e}")))?;
            if let Some(id) = self.decoder.new_shape(ev, &tme) {
                let columns = self.json_columns(&id, &tme).await?;
                self.decoder.json_columns.insert(id, columns);
            }
        }
        Ok(())
    }
}

impl BinlogReader {
    /// A connection for information_schema look-ups, opened on first use.
    async fn side(&mut self) -> Result<&mut Conn> {
        if self.side.is_none() {
            let conn = Conn::new(self.url.opts(false))
                .await
                .map_err(|e| SourceError::query("connecting for schema look-ups", &self.server, e))?;
            self.side = Some(conn);
        }
        Ok(self.side.as_mut().expect("just set"))
    }

    /// MariaDB JSON columns of `id` (they are BLOBs in the table map), from information_schema.
    async fn json_columns(&mut self, id: &TableId, tme: &TableMapEvent<'_>) -> Result<Vec<String>> {
        let has_text_blob = (0..tme.columns_count() as usize)
            .any(|i| matches!(tme.get_column_type(i), Ok(Some(ColumnType::MYSQL_TYPE_BLOB))));
        if !self.mariadb || !has_text_blob {
            return Ok(Vec::new());
        }
        let server = self.server.clone();
        let conn = self.side().await?;
        let schema = discover_table(conn, id, &server).await?;
        Ok(schema
            .map(|s| s.columns.into_iter().filter(|c| c.kind == ColumnKind::Json).map(|c| c.name).collect())
            .unwrap_or_default())
    }

    /// The file name of the first artificial rotate, without the checksum bytes it may carry.
    async fn clean_first_rotate_name(&mut self, raw: &[u8]) -> Result<String> {
        let server = self.server.clone();
        let conn = self.side().await?;
        let logs: Vec<mysql_async::Row> =
            conn.query("SHOW BINARY LOGS").await.map_err(|e| SourceError::query("SHOW BINARY LOGS", &server, e))?;
        let names: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
        let full = String::from_utf8_lossy(raw).into_owned();
        if names.contains(&full) {
            return Ok(full);
        }
        if raw.len() > 4 {
            let cut = String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned();
            if names.contains(&cut) {
                return Ok(cut);
            }
        }
        Err(SourceError::Usage(format!(
            "the server started the stream at binlog file {full:?}, which SHOW BINARY LOGS does not list"
        )))
    }
}

/// Checks that the server's binlog holds the transactions up to `position` (a MariaDB GTID position):
/// one the server has no such GTID for — a failover to a replica that had not received them, another
/// server — is [`SourceError::NotInHistory`]. Reads the first event of a stream from there, no more,
/// as replica `server_id` (the stream that follows, with the same id, replaces this one).
pub async fn check_in_history(url: &SourceUrl, position: &Position, server_id: u32) -> Result<()> {
    let nothing = TableFilter::new(&[], &[]).map_err(SourceError::Usage)?;
    let options = BinlogOptions::new(server_id).stop_at_end();
    let mut reader = BinlogReader::start(url, position, nothing, options).await?;
    let first = reader.stream.next().await;
    let server = reader.server.clone();
    let _ = reader.stream.close().await;
    match first {
        Some(Err(e)) => Err(SourceError::binlog_read("reading the binlog", &server, position, e)),
        _ => Ok(()),
    }
}

/// The server's current binlog position (end of the last committed transaction), with the MariaDB
/// GTID state at that point.
pub async fn current_position(url: &SourceUrl) -> Result<Position> {
    let server = url.address();
    let q = |what: &'static str| {
        let server = server.clone();
        move |e| SourceError::query(what, &server, e)
    };
    let mut conn = Conn::new(url.opts(false)).await.map_err(q("connecting"))?;
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(r) => r,
        Err(_) => {
            conn.query_first("SHOW MASTER STATUS").await.map_err(q("SHOW MASTER STATUS (needs BINLOG MONITOR)"))?
        }
    };
    let row = row.ok_or_else(|| SourceError::Usage(format!("{server} has no binary log status: is log_bin on?")))?;
    let file: String = row.get(0).unwrap_or_default();
    let offset: u64 = row.get(1).unwrap_or(4);
    let gtid: Option<String> =
        match conn.exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), offset)).await {
            Ok(g) => g.flatten(),
            // MySQL: the GTID set is the 5th column of the status.
            Err(_) => row.get::<Option<String>, _>(4).flatten(),
        };
    let _ = conn.disconnect().await;
    Ok(Position { file, offset, gtid: gtid.filter(|g| !g.is_empty()), part: None })
}
