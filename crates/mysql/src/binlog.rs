//! Streaming row changes from the binlog, in commit order.
//!
//! Invariants:
//! - a transaction's changes are emitted only when its commit event (XID, `COMMIT`, or the end of a
//!   standalone MariaDB GTID group) is read: never a partial transaction;
//! - every change of a transaction carries the position just after its commit event (current file,
//!   the commit event's `log_pos`, and the GTID state including that transaction) and `seq` = its
//!   index in the transaction; resuming from that position yields exactly the later transactions;
//! - an update that changes the primary key becomes `Delete(old key)` + `Insert(new row)`;
//! - the table map's optional metadata (`binlog_row_metadata=FULL`) is the source of truth for column
//!   names, signedness, ENUM/SET labels and the primary key; a table map with a new shape (after an
//!   ALTER TABLE) yields a new `Arc<TableSchema>`. MariaDB JSON columns (BLOB in the table map) are
//!   recognised from information_schema;
//! - every event type is either understood, deliberately ignored (listed in `next_event`), or a loud
//!   [`SourceError::UnsupportedEvent`]: nothing is skipped silently. Rows of tables outside the filter
//!   are skipped by table id;
//! - the stream has a read timeout (heartbeats keep an idle stream alive): silence is an error.

use crate::decode::{from_binlog, BINARY_CHARSET};
use crate::error::{Result, SourceError};
use crate::rowimage::{MapColumn, RowPlan};
use crate::schema::discover_table;
use crate::source_url::SourceUrl;
use futures::{Stream, StreamExt};
use mysql_async::binlog::events::{
    Event, EventData, OptionalMetaExtractor, OptionalMetadataField, RotateEvent, RowsEventData, TableMapEvent,
};
use mysql_async::binlog::{BinlogVersion, EventType};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use mysql_common::binlog::EventStreamReader;
use polyrepl_core::{Change, Column, ColumnKind, Op, Position, TableFilter, TableId, TableSchema, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// MariaDB event types (mysql_common does not know them).
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB GTID flag: the group is one statement (DDL) without BEGIN/COMMIT.
const FL_STANDALONE: u8 = 1;

/// How to stream.
#[derive(Debug, Clone)]
pub struct BinlogOptions {
    /// This replica's server id: unique among every binlog reader of the server.
    pub server_id: u32,
    /// Interval of the server's heartbeats on an idle stream.
    pub heartbeat: Duration,
    /// End the stream at the end of the current binlog instead of waiting for new events.
    pub stop_at_end: bool,
}

impl BinlogOptions {
    /// Defaults: heartbeat every 5 s, follow the binlog forever.
    pub fn new(server_id: u32) -> Self {
        BinlogOptions { server_id, heartbeat: Duration::from_secs(5), stop_at_end: false }
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
    /// The row changes of one committed transaction (only tables in the filter; never empty).
    Transaction { position: Position, changes: Vec<Change> },
    /// The stream is at `position` with nothing new for the selected tables: safe to checkpoint.
    Heartbeat { position: Position },
    /// A DDL statement (any database) committed at `position`; the next table map of an altered
    /// table yields its new schema by itself — this is for logging and for sinks that create tables.
    Ddl { position: Position, database: String, statement: String },
}

impl SourceEvent {
    /// The position after this event.
    pub fn position(&self) -> &Position {
        match self {
            SourceEvent::Transaction { position, .. }
            | SourceEvent::Heartbeat { position }
            | SourceEvent::Ddl { position, .. } => position,
        }
    }
}

/// A table's shape as decoded from a table map.
#[derive(Debug)]
struct MappedTable {
    schema: Arc<TableSchema>,
    charsets: Vec<u16>,
    binary_len: Vec<Option<usize>>,
    /// How to read its row images (made once per shape).
    plan: RowPlan,
    /// The table map itself, for the reference decoder debug builds compare against.
    tme: TableMapEvent<'static>,
}

/// Reads the binlog from a position and yields committed transactions: the replication connection,
/// the look-ups that need a server (information_schema, SHOW BINARY LOGS), and a [`BinlogDecoder`]
/// that turns each event into what it completes.
pub struct BinlogReader {
    stream: BinlogStream,
    url: SourceUrl,
    server: String,
    mariadb: bool,
    options: BinlogOptions,
    side: Option<Conn>,
    decoder: BinlogDecoder,
    finished: bool,
    /// Raw events kept since [`BinlogReader::record`], for an in-memory decode pass.
    recording: Option<RecordedBinlog>,
}

/// Binlog events → [`SourceEvent`]s, with no connection: the state machine of the invariants above.
/// The live reader and the in-memory pass ([`RecordedBinlog::replay`]) run this same code.
#[derive(Clone)]
pub struct BinlogDecoder {
    filter: TableFilter,
    /// Interval after which an idle commit yields a heartbeat.
    heartbeat: Duration,
    /// Current binlog file.
    file: String,
    /// GTID state: domain → (server id, seq).
    gtid_state: BTreeMap<u32, (u32, u64)>,
    /// Position after the last commit read (emitted or not).
    committed: Position,
    /// table id → mapped table, `None` when outside the filter.
    table_ids: HashMap<u64, Option<Arc<MappedTable>>>,
    /// Last shape per table: table-map body fingerprint → mapped table.
    shapes: HashMap<TableId, (Vec<u8>, Arc<MappedTable>)>,
    pending: Vec<Change>,
    /// Changes in the last transaction, to size the next one's vector.
    last_len: usize,
    in_group: bool,
    standalone: bool,
    group_gtid: Option<(u32, u32, u64)>,
    seen_fde: bool,
    /// The name of the first (artificial) rotate: the file asked for, or as the reader resolved it.
    first_rotate_name: Option<String>,
    /// MariaDB JSON columns per table (BLOBs in the table map), as the reader looked them up.
    json_columns: HashMap<TableId, Vec<String>>,
    last_emit: Instant,
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
            committed: Position { gtid: start_gtid, ..from.clone() },
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
        })
    }

    /// The position after the last commit read so far (a safe resume point).
    pub fn position(&self) -> &Position {
        &self.decoder.committed
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

/// The raw events of a binlog range, kept in memory, with the decoder's state at its start.
pub struct RecordedBinlog {
    start: BinlogDecoder,
    bytes: Vec<u8>,
    events: usize,
}

impl RecordedBinlog {
    /// Events recorded.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Bytes recorded (events as the server sent them, checksums included).
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Parses and decodes the recorded events with the live reader's own code (mysql_common's event
    /// reader, then [`BinlogDecoder::handle`]), no server and no network; `each` gets every
    /// [`SourceEvent`] and returns `false` to stop.
    pub fn replay(&self, mut each: impl FnMut(&SourceEvent) -> bool) -> Result<()> {
        let mut decoder = self.start.clone();
        let mut reader = EventStreamReader::new(BinlogVersion::Version4);
        let mut input: &[u8] = &self.bytes;
        loop {
            let ev = match reader.read(&mut input) {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(SourceError::Stream {
                        position: decoder.committed.clone(),
                        message: format!("replaying a recorded event: {e}"),
                    })
                }
            };
            if let Some(out) = decoder.handle(&ev)? {
                if !each(&out) {
                    return Ok(());
                }
            }
        }
    }
}

impl BinlogDecoder {
    fn here(&self, log_pos: u64) -> Position {
        Position { file: self.file.clone(), offset: log_pos, gtid: self.committed.gtid.clone() }
    }

    fn unsupported(&self, ev: &Event, name: &'static str, hint: &str) -> SourceError {
        SourceError::UnsupportedEvent {
            event_type: ev.header().event_type_raw(),
            name,
            position: self.here(ev.header().log_pos() as u64),
            hint: hint.to_string(),
        }
    }

    fn stream_error(&self, ev: &Event, message: impl Into<String>) -> SourceError {
        SourceError::Stream { position: self.here(ev.header().log_pos() as u64), message: message.into() }
    }

    /// The id of the table `tme` maps when it is selected and its shape is new (needs mapping).
    fn new_shape(&self, ev: &Event, tme: &TableMapEvent<'_>) -> Option<TableId> {
        let id = TableId::new(tme.database_name().into_owned(), tme.table_name().into_owned());
        if !self.filter.matches(&id) {
            return None;
        }
        match self.shapes.get(&id) {
            Some((fp, _)) if fp.as_slice() == ev.data().get(8..).unwrap_or_default() => None,
            _ => Some(id),
        }
    }

    /// Handles one event; returns what it completes, if anything.
    pub fn handle(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        let out = self.handle_inner(ev)?;
        if out.is_some() {
            self.last_emit = Instant::now();
        }
        Ok(out)
    }

    fn handle_inner(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        let raw_type = ev.header().event_type_raw();
        let log_pos = ev.header().log_pos() as u64;
        let ts = ev.header().timestamp();
        match raw_type {
            MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT => Ok(None),
            MARIADB_GTID => {
                let d = ev.data();
                if d.len() < 13 {
                    return Err(self.stream_error(ev, "truncated MariaDB GTID event"));
                }
                let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                let flags = d[12];
                self.pending.clear();
                self.in_group = true;
                self.standalone = flags & FL_STANDALONE != 0;
                self.group_gtid = Some((domain, ev.header().server_id(), seq));
                Ok(None)
            }
            MARIADB_GTID_LIST => {
                let d = ev.data();
                let count = d.get(0..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) & 0x0fff_ffff);
                let Some(count) = count else { return Err(self.stream_error(ev, "truncated GTID list event")) };
                for i in 0..count as usize {
                    let at = 4 + i * 16;
                    let Some(e) = d.get(at..at + 16) else { return Err(self.stream_error(ev, "truncated GTID list event")) };
                    let domain = u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
                    let server = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
                    let seq = u64::from_le_bytes(e[8..16].try_into().expect("8 bytes"));
                    let entry = self.gtid_state.entry(domain).or_insert((server, seq));
                    if seq > entry.1 {
                        *entry = (server, seq);
                    }
                }
                if !self.gtid_state.is_empty() && !self.in_group {
                    self.committed.gtid = Some(format_gtid_state(&self.gtid_state));
                }
                Ok(None)
            }
            t if t == EventType::ROTATE_EVENT as u8 => {
                let re: RotateEvent<'_> = ev.read_event().map_err(|e| self.stream_error(ev, format!("bad rotate event: {e}")))?;
                let name = if !self.seen_fde {
                    // The first (artificial) rotate may carry 4 checksum bytes on the name (mysql_async #189):
                    // the file asked for, or the name the reader resolved with SHOW BINARY LOGS.
                    match &self.first_rotate_name {
                        Some(f) => f.clone(),
                        None => return Err(self.stream_error(ev, "internal: the first rotate's file name was not resolved")),
                    }
                } else {
                    re.name().into_owned()
                };
                if name != self.file {
                    tracing::debug!(from = %self.file, to = %name, "binlog rotate");
                }
                self.file = name;
                if !self.in_group && self.committed.file != self.file {
                    self.committed = Position { file: self.file.clone(), offset: re.position().max(4), gtid: self.committed.gtid.clone() };
                }
                Ok(None)
            }
            t if t == EventType::FORMAT_DESCRIPTION_EVENT as u8 => {
                self.seen_fde = true;
                Ok(None)
            }
            t if t == EventType::XID_EVENT as u8 => Ok(self.commit(log_pos, ts)),
            t if t == EventType::QUERY_EVENT as u8 => {
                let Some(EventData::QueryEvent(qe)) = ev.read_data().map_err(|e| self.stream_error(ev, format!("bad query event: {e}")))? else {
                    return Err(self.stream_error(ev, "query event without a body"));
                };
                let statement = qe.query().trim().to_string();
                let database = qe.schema().into_owned();
                let upper = statement.to_ascii_uppercase();
                if upper == "BEGIN" || upper.starts_with("SAVEPOINT") || upper.starts_with("ROLLBACK TO") || upper.starts_with("XA ") {
                    self.in_group = true;
                    return Ok(None);
                }
                if upper == "COMMIT" || upper == "ROLLBACK" {
                    // A logged ROLLBACK only follows changes of non-transactional tables: they happened.
                    return Ok(self.commit(log_pos, ts));
                }
                // DDL and other statements: standalone groups end here.
                if self.standalone || !self.in_group {
                    let _ = self.commit(log_pos, ts);
                } else {
                    self.pending.clear();
                }
                Ok(Some(SourceEvent::Ddl { position: self.committed.clone(), database, statement }))
            }
            t if t == EventType::TABLE_MAP_EVENT as u8 => {
                let tme: TableMapEvent<'_> = ev.read_event().map_err(|e| self.stream_error(ev, format!("bad table map: {e}")))?;
                let id = TableId::new(tme.database_name().into_owned(), tme.table_name().into_owned());
                if !self.filter.matches(&id) {
                    self.table_ids.insert(tme.table_id(), None);
                    return Ok(None);
                }
                let fingerprint = ev.data().get(8..).unwrap_or_default().to_vec();
                if let Some((fp, mapped)) = self.shapes.get(&id) {
                    if *fp == fingerprint {
                        self.table_ids.insert(tme.table_id(), Some(mapped.clone()));
                        return Ok(None);
                    }
                }
                let json_columns = self.json_columns.get(&id).cloned().unwrap_or_default();
                let mapped = Arc::new(map_table(&id, &tme, &json_columns).map_err(|m| self.stream_error(ev, m))?);
                if let Some(c) = mapped.schema.columns.iter().find(|c| matches!(c.kind, ColumnKind::Unsupported(_))) {
                    return Err(self.stream_error(ev, format!("column {id}.{} has an unsupported type {:?}", c.name, c.kind)));
                }
                if mapped.schema.primary_key.is_empty() {
                    return Err(self.stream_error(ev, format!("table {id} has no primary key in the binlog's table map: it cannot be replicated by key")));
                }
                tracing::debug!(table = %id, columns = mapped.schema.columns.len(), "new table shape");
                self.shapes.insert(id, (fingerprint, mapped.clone()));
                self.table_ids.insert(tme.table_id(), Some(mapped));
                Ok(None)
            }
            23..=25 | 30..=32 => {
                let Some(EventData::RowsEvent(rows)) = ev.read_data().map_err(|e| self.stream_error(ev, format!("bad rows event: {e}")))? else {
                    return Err(self.stream_error(ev, "rows event without a body"));
                };
                let mapped = match self.table_ids.get(&rows.table_id()) {
                    None => return Err(self.stream_error(ev, format!("rows for table id {} without a table map", rows.table_id()))),
                    Some(None) => return Ok(None),
                    Some(Some(m)) => m.clone(),
                };
                let mut out = std::mem::take(&mut self.pending);
                if out.capacity() == 0 {
                    // Most transactions are alike: size for the last one.
                    out.reserve(self.last_len);
                }
                let res = decode_rows(&rows, &mapped, &mut out);
                self.pending = out;
                res.map_err(|m| self.stream_error(ev, m))?;
                Ok(None)
            }
            t if t == EventType::HEARTBEAT_EVENT as u8 => {
                if self.in_group {
                    Ok(None)
                } else {
                    Ok(Some(SourceEvent::Heartbeat { position: self.committed.clone() }))
                }
            }
            // Ignored on purpose: statement-context events (meaningless in ROW format), MySQL GTID
            // bookkeeping, the stop marker and the compressed payload wrapper (its inner events follow).
            t if [
                EventType::STOP_EVENT as u8,
                EventType::INTVAR_EVENT as u8,
                EventType::RAND_EVENT as u8,
                EventType::USER_VAR_EVENT as u8,
                EventType::IGNORABLE_EVENT as u8,
                EventType::ROWS_QUERY_EVENT as u8,
                EventType::GTID_EVENT as u8,
                EventType::ANONYMOUS_GTID_EVENT as u8,
                EventType::PREVIOUS_GTIDS_EVENT as u8,
                EventType::TRANSACTION_PAYLOAD_EVENT as u8,
            ]
            .contains(&t) =>
            {
                Ok(None)
            }
            t if t == EventType::PARTIAL_UPDATE_ROWS_EVENT as u8 => Err(self.unsupported(
                ev,
                "PARTIAL_UPDATE_ROWS",
                "partial JSON updates: SET GLOBAL binlog_row_value_options='' and restart the stream",
            )),
            164 => Err(self.unsupported(ev, "START_ENCRYPTION", "encrypted binlogs cannot be read: SET GLOBAL encrypt_binlog=OFF")),
            165..=177 => Err(self.unsupported(
                ev,
                "MariaDB compressed event",
                "compressed binlog events: SET GLOBAL log_bin_compress=OFF and snapshot again from a position after the change",
            )),
            _ => Err(self.unsupported(ev, "unknown", "this event type is not understood by polyrepl; please report it")),
        }
    }

    /// Ends the current group at `log_pos`; returns its changes if there are any.
    fn commit(&mut self, log_pos: u64, ts: u32) -> Option<SourceEvent> {
        if let Some((domain, server, seq)) = self.group_gtid.take() {
            self.gtid_state.insert(domain, (server, seq));
        }
        let gtid = if self.gtid_state.is_empty() {
            self.committed.gtid.clone()
        } else {
            Some(format_gtid_state(&self.gtid_state))
        };
        self.committed = Position { file: self.file.clone(), offset: log_pos, gtid };
        self.in_group = false;
        self.standalone = false;
        if self.pending.is_empty() {
            // Nothing selected in this transaction: let the checkpoint advance now and then.
            if self.last_emit.elapsed() >= self.heartbeat {
                return Some(SourceEvent::Heartbeat { position: self.committed.clone() });
            }
            return None;
        }
        let mut changes = std::mem::take(&mut self.pending);
        self.last_len = changes.len();
        for (i, c) in changes.iter_mut().enumerate() {
            c.position = self.committed.clone();
            c.seq = i as u32;
            c.source_ts = ts;
        }
        Some(SourceEvent::Transaction { position: self.committed.clone(), changes })
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

/// `D-S-N,D-S-N` → domain → (server, seq).
pub fn parse_gtid_state(s: &str) -> std::result::Result<BTreeMap<u32, (u32, u64)>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let parse = |x: Option<&str>| x.and_then(|v| v.parse::<u64>().ok());
        match (parse(it.next()), parse(it.next()), parse(it.next()), it.next()) {
            (Some(d), Some(srv), Some(n), None) if d <= u32::MAX as u64 && srv <= u32::MAX as u64 => {
                out.insert(d as u32, (srv as u32, n));
            }
            _ => return Err(format!("GTID position '{s}' is not of the form domain-server-seq[,...] (MariaDB)")),
        }
    }
    Ok(out)
}

fn format_gtid_state(state: &BTreeMap<u32, (u32, u64)>) -> String {
    state.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect::<Vec<_>>().join(",")
}

/// Builds the table's schema from a table map and its optional metadata.
fn map_table(
    id: &TableId,
    tme: &TableMapEvent<'_>,
    json_columns: &[String],
) -> std::result::Result<MappedTable, String> {
    let n = tme.columns_count() as usize;
    let mut names = Vec::new();
    let mut signedness: Vec<bool> = Vec::new();
    let mut enum_labels: Vec<Vec<String>> = Vec::new();
    let mut set_labels: Vec<Vec<String>> = Vec::new();
    let mut primary_key: Vec<usize> = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| format!("bad table-map metadata of {id}: {e}"))? {
            OptionalMetadataField::ColumnName(cn) => {
                for name in cn.iter_names() {
                    names.push(name.map_err(|e| e.to_string())?.name().into_owned());
                }
            }
            OptionalMetadataField::Signedness(bits) => signedness = bits.iter().by_vals().collect(),
            OptionalMetadataField::EnumStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(|e| e.to_string())?;
                    enum_labels.push(v.values().iter().map(|l| l.value().into_owned()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(|e| e.to_string())?;
                    set_labels.push(v.values().iter().map(|l| l.value().into_owned()).collect());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(pk) => {
                for i in pk.iter_indexes() {
                    primary_key.push(i.map_err(|e| e.to_string())? as usize);
                }
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                for k in pk.iter_keys() {
                    primary_key.push(k.map_err(|e| e.to_string())?.column_index() as usize);
                }
            }
            _ => {}
        }
    }
    if names.len() != n {
        return Err(format!(
            "the table map of {id} has no column names: the server does not log full row metadata. \
             Fix: SET GLOBAL binlog_row_metadata='FULL'; and in my.cnf `binlog_row_metadata = FULL`"
        ));
    }
    let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| e.to_string())?;
    let mut charset_iter = extractor.iter_charset();
    let mut signed_iter = signedness.into_iter();
    let mut enum_iter = enum_labels.into_iter();
    let mut set_iter = set_labels.into_iter();
    let nulls = tme.null_bitmask();

    let mut columns = Vec::with_capacity(n);
    let mut charsets = Vec::with_capacity(n);
    let mut binary_len = Vec::with_capacity(n);
    let mut map_columns = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let raw = tme.get_raw_column_type(i).map_err(|e| format!("{id}.{name}: {e}"))?.ok_or("column out of range")?;
        let real = tme.get_column_type(i).map_err(|e| format!("{id}.{name}: {e}"))?.ok_or("column out of range")?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let unsigned = if raw.is_numeric_type() { signed_iter.next().unwrap_or(false) } else { false };
        let unsigned_raw = unsigned;
        let charset = if real.is_character_type() {
            charset_iter.next().transpose().map_err(|e| e.to_string())?.unwrap_or(0)
        } else {
            0
        };
        let m = |k: usize| meta.get(k).copied().unwrap_or(0);
        use ColumnType::*;
        let mut blen = None;
        let kind = match real {
            MYSQL_TYPE_TINY => ColumnKind::TinyInt,
            MYSQL_TYPE_SHORT => ColumnKind::SmallInt,
            MYSQL_TYPE_INT24 => ColumnKind::MediumInt,
            MYSQL_TYPE_LONG => ColumnKind::Int,
            MYSQL_TYPE_LONGLONG => ColumnKind::BigInt,
            MYSQL_TYPE_FLOAT => ColumnKind::Float,
            MYSQL_TYPE_DOUBLE => ColumnKind::Double,
            MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal { precision: m(0), scale: m(1) },
            MYSQL_TYPE_STRING if charset == BINARY_CHARSET => {
                let (b0, b1) = (m(0) as usize, m(1) as usize);
                blen = Some(if (b0 & 0x30) != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 });
                ColumnKind::Binary
            }
            MYSQL_TYPE_STRING => ColumnKind::Char,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING if charset == BINARY_CHARSET => ColumnKind::VarBinary,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => ColumnKind::VarChar,
            MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
                if json_columns.contains(&name) {
                    ColumnKind::Json
                } else if charset == BINARY_CHARSET {
                    ColumnKind::Blob
                } else {
                    ColumnKind::Text
                }
            }
            MYSQL_TYPE_JSON => ColumnKind::Json,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
            MYSQL_TYPE_TIME => ColumnKind::Time { fsp: 0 },
            MYSQL_TYPE_TIME2 => ColumnKind::Time { fsp: m(0).min(6) },
            MYSQL_TYPE_DATETIME => ColumnKind::DateTime { fsp: 0 },
            MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime { fsp: m(0).min(6) },
            MYSQL_TYPE_TIMESTAMP => ColumnKind::Timestamp { fsp: 0 },
            MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp { fsp: m(0).min(6) },
            MYSQL_TYPE_YEAR => ColumnKind::Year,
            MYSQL_TYPE_BIT => ColumnKind::Bit { bits: (m(1) as u16 * 8 + m(0) as u16).clamp(1, 64) },
            MYSQL_TYPE_ENUM => {
                ColumnKind::Enum { labels: enum_iter.next().ok_or(format!("no ENUM labels for {id}.{name}"))? }
            }
            MYSQL_TYPE_SET => {
                ColumnKind::Set { labels: set_iter.next().ok_or(format!("no SET labels for {id}.{name}"))? }
            }
            MYSQL_TYPE_GEOMETRY => ColumnKind::Unsupported("geometry".into()),
            other => ColumnKind::Unsupported(format!("{other:?}")),
        };
        // YEAR is counted among numeric columns (MariaDB marks it unsigned): not a signed/unsigned type.
        let unsigned = unsigned && kind != ColumnKind::Year;
        let nullable = nulls.get(i).map(|b| *b).unwrap_or(true);
        columns.push(Column { name, kind, unsigned, nullable });
        charsets.push(charset);
        binary_len.push(blen);
        // What mysql_common's row parser would be given for this column (`unsigned` before the YEAR rule).
        let map_unsigned = if real.is_numeric_type() { unsigned_raw } else { false };
        map_columns.push(MapColumn { col_type: real, meta, charset, binary_len: blen, map_unsigned });
    }
    let plan = RowPlan::new(&columns, &map_columns);
    drop(map_columns);
    if primary_key.iter().any(|&k| k >= n) {
        return Err(format!("primary key of {id} names a column out of range"));
    }
    Ok(MappedTable {
        schema: Arc::new(TableSchema { id: id.clone(), columns, primary_key }),
        charsets,
        binary_len,
        plan,
        tme: tme.clone().into_owned(),
    })
}

/// Decodes a rows event into changes (position/seq are set at commit) with the table's [`RowPlan`].
/// Debug builds also decode it with mysql_common's row parser ([`decode_rows_reference`]) and fail
/// loudly if the two differ, so every integration test checks the fast path against the reference.
fn decode_rows(
    rows: &RowsEventData<'_>,
    mapped: &MappedTable,
    out: &mut Vec<Change>,
) -> std::result::Result<(), String> {
    let schema = &mapped.schema;
    let kind = row_op(rows)?;
    let n = schema.columns.len();
    // Every column must be in every image (binlog_row_image=FULL), as the reference requires.
    for (bits, image) in [(rows.columns_before_image(), "before"), (rows.columns_after_image(), "after")] {
        let Some(bits) = bits else { continue };
        let present = bits.count_ones();
        if present != n || rows.num_columns() as usize != n {
            return Err(not_full(schema, image, present));
        }
    }
    let first = out.len();
    let mut buf = rows.rows_data();
    let read = |buf: &mut &[u8]| mapped.plan.read_row(schema, buf);
    // Only the key of a before image is used: its other columns are checked, not built.
    let read_key = |buf: &mut &[u8]| mapped.plan.read_key(schema, buf);
    while !buf.is_empty() {
        match kind {
            Op::Insert => {
                let after = read(&mut buf)?;
                out.push(blank(schema, Op::Insert, Change::key_of(schema, &after), Some(after)));
            }
            Op::Delete => {
                let key = read_key(&mut buf)?;
                out.push(blank(schema, Op::Delete, key, None));
            }
            Op::Update => {
                let old_key = read_key(&mut buf)?;
                let after = read(&mut buf)?;
                push_update(schema, old_key, after, out);
            }
        }
    }
    if cfg!(debug_assertions) {
        let mut reference = Vec::new();
        decode_rows_reference(rows, &mapped.tme, mapped, &mut reference)?;
        let fast = &out[first..];
        let same = fast.len() == reference.len()
            && fast.iter().zip(&reference).all(|(a, b)| a.op == b.op && a.key == b.key && a.after == b.after);
        if !same {
            return Err(format!(
                "internal: the row-image decoder and mysql_common's disagree on a rows event of {}: {:?} vs {:?}",
                schema.id,
                fast.iter().map(|c| (&c.op, &c.key, &c.after)).collect::<Vec<_>>(),
                reference.iter().map(|c| (&c.op, &c.key, &c.after)).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// The operation of a rows event.
fn row_op(rows: &RowsEventData<'_>) -> std::result::Result<Op, String> {
    Ok(match rows {
        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
        RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err("partial JSON update rows: SET GLOBAL binlog_row_value_options=''".into())
        }
    })
}

/// The error of an image without every column.
fn not_full(schema: &TableSchema, image: &str, present: usize) -> String {
    format!(
        "{} image of {} has {} of {} columns: the server does not log full row images. \
         Fix: SET GLOBAL binlog_row_image='FULL'; and in my.cnf `binlog_row_image = FULL`",
        image,
        schema.id,
        present,
        schema.columns.len()
    )
}

/// A change without its position (set at commit).
fn blank(schema: &Arc<TableSchema>, op: Op, key: Vec<Value>, after: Option<Vec<Value>>) -> Change {
    Change {
        position: Position { file: String::new(), offset: 0, gtid: None },
        seq: 0,
        table: schema.clone(),
        op,
        key,
        after,
        source_ts: 0,
    }
}

/// An update; one that changes the primary key becomes delete(old key) + insert(new row).
fn push_update(schema: &Arc<TableSchema>, old_key: Vec<Value>, after: Vec<Value>, out: &mut Vec<Change>) {
    let new_key = Change::key_of(schema, &after);
    if old_key != new_key {
        out.push(blank(schema, Op::Delete, old_key, None));
        out.push(blank(schema, Op::Insert, new_key, Some(after)));
    } else {
        out.push(blank(schema, Op::Update, new_key, Some(after)));
    }
}

/// The reference decoder: mysql_common's `BinlogRow` per image, then [`from_binlog`] per value (what
/// polyrepl used before [`RowPlan`]; debug builds compare every rows event against it).
fn decode_rows_reference(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'static>,
    mapped: &MappedTable,
    out: &mut Vec<Change>,
) -> std::result::Result<(), String> {
    let schema = &mapped.schema;
    let kind = match rows {
        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
        RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err("partial JSON update rows: SET GLOBAL binlog_row_value_options=''".into())
        }
    };
    let decode = |row: mysql_async::binlog::row::BinlogRow, image: &str| -> std::result::Result<Vec<Value>, String> {
        if row.len() != schema.columns.len() {
            return Err(format!(
                "{} image of {} has {} of {} columns: the server does not log full row images. \
                 Fix: SET GLOBAL binlog_row_image='FULL'; and in my.cnf `binlog_row_image = FULL`",
                image,
                schema.id,
                row.len(),
                schema.columns.len()
            ));
        }
        let mut values = Vec::with_capacity(schema.columns.len());
        for (i, raw) in row.unwrap().into_iter().enumerate() {
            let column = &schema.columns[i];
            let v = from_binlog(column, raw, mapped.charsets[i], mapped.binary_len[i])
                .map_err(|m| format!("cannot decode {}.{}: {m}", schema.id, column.name))?;
            values.push(v);
        }
        Ok(values)
    };
    let blank = |op: Op, key: Vec<Value>, after: Option<Vec<Value>>| Change {
        position: Position::new("", 0),
        seq: 0,
        table: schema.clone(),
        op,
        key,
        after,
        source_ts: 0,
    };
    for item in rows.rows(tme) {
        let (before, after) = item.map_err(|e| format!("cannot parse a row of {}: {e}", schema.id))?;
        match kind {
            Op::Insert => {
                let after = decode(after.ok_or("insert without an after image")?, "after")?;
                out.push(blank(Op::Insert, Change::key_of(schema, &after), Some(after)));
            }
            Op::Delete => {
                let before = decode(before.ok_or("delete without a before image")?, "before")?;
                out.push(blank(Op::Delete, Change::key_of(schema, &before), None));
            }
            Op::Update => {
                let before = decode(before.ok_or("update without a before image")?, "before")?;
                let after = decode(after.ok_or("update without an after image")?, "after")?;
                let old_key = Change::key_of(schema, &before);
                let new_key = Change::key_of(schema, &after);
                if old_key != new_key {
                    out.push(blank(Op::Delete, old_key, None));
                    out.push(blank(Op::Insert, new_key, Some(after)));
                } else {
                    out.push(blank(Op::Update, new_key, Some(after)));
                }
            }
        }
    }
    Ok(())
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
    Ok(Position { file, offset, gtid: gtid.filter(|g| !g.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_state_round_trip() {
        let s = parse_gtid_state("0-1-42,3-7-9").unwrap();
        assert_eq!(format_gtid_state(&s), "0-1-42,3-7-9");
        assert!(parse_gtid_state("0-1").is_err());
        assert!(parse_gtid_state("").unwrap().is_empty());
    }
}
