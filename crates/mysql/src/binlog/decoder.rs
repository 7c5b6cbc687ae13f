//! Binlog events → [`SourceEvent`]s, with no connection: the decoder's state and the dispatch of each
//! event to the handler of its kind (in the sibling module of that kind).
//!
//! Invariants:
//! - every event type is either understood (a handler), deliberately ignored (the MariaDB annotate
//!   and checkpoint events, [`IGNORED_EVENTS`]), or a loud [`SourceError::UnsupportedEvent`]
//!   ([`BinlogDecoder::refusal`]): nothing is skipped silently;
//! - the live reader and the in-memory pass (`RecordedBinlog::replay`) run this same code.

use super::mariadb::{MARIADB_ANNOTATE_ROWS, MARIADB_BINLOG_CHECKPOINT, MARIADB_GTID, MARIADB_GTID_LIST};
use super::table_map::MappedTable;
use super::SourceEvent;
use crate::error::{Result, SourceError};
use mysql_async::binlog::events::Event;
use mysql_async::binlog::EventType;
use polyrepl_core::{Change, Position, TableFilter, TableId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Binlog events → [`SourceEvent`]s, with no connection: the state machine of the `binlog` module's
/// invariants.
/// The live reader and the in-memory pass ([`RecordedBinlog::replay`](super::RecordedBinlog::replay))
/// run this same code.
#[derive(Clone)]
pub struct BinlogDecoder {
    /// The tables to stream.
    pub(super) filter: TableFilter,
    /// Interval after which an idle commit yields a heartbeat.
    pub(super) heartbeat: Duration,
    /// Current binlog file.
    pub(super) file: String,
    /// GTID state: domain → (server id, seq).
    pub(super) gtid_state: BTreeMap<u32, (u32, u64)>,
    /// Position after the last commit read (emitted or not).
    pub(super) committed: Position,
    /// table id → mapped table, `None` when outside the filter.
    pub(super) table_ids: HashMap<u64, Option<Arc<MappedTable>>>,
    /// Last shape per table: table-map body fingerprint → mapped table.
    pub(super) shapes: HashMap<TableId, (Vec<u8>, Arc<MappedTable>)>,
    /// Changes of the open transaction (position and seq are set at commit).
    pub(super) pending: Vec<Change>,
    /// Changes in the last transaction, to size the next one's vector.
    pub(super) last_len: usize,
    /// Inside a transaction (after BEGIN or a MariaDB GTID, before its commit).
    pub(super) in_group: bool,
    /// The open MariaDB GTID group is one statement (DDL) without BEGIN/COMMIT.
    pub(super) standalone: bool,
    /// The open MariaDB GTID group's (domain, server id, seq), added to the state at its commit.
    pub(super) group_gtid: Option<(u32, u32, u64)>,
    /// A format description was read: rotates from now on are real ones, not the first artificial one.
    pub(super) seen_fde: bool,
    /// The name of the first (artificial) rotate: the file asked for, or as the reader resolved it.
    pub(super) first_rotate_name: Option<String>,
    /// MariaDB JSON columns per table (BLOBs in the table map), as the reader looked them up.
    pub(super) json_columns: HashMap<TableId, Vec<String>>,
    /// When the last event was emitted (for idle heartbeats).
    pub(super) last_emit: Instant,
    /// The end of the last event read (file, `log_pos`): every transaction committed at or before it has
    /// been emitted.
    pub(super) read_to: Position,
    /// Where the open group started (the position after the commit before it).
    pub(super) group_start: Position,
    /// Changes of the open group already emitted as [`SourceEvent::Part`]s.
    pub(super) emitted_in_group: usize,
    /// Pending changes beyond which an open transaction is emitted in parts (bounded memory).
    pub(super) part_changes: usize,
    /// The open group's savepoints, in order: name → how many of the group's changes precede it.
    pub(super) savepoints: Vec<(String, usize)>,
    /// The open XA transaction's id (from `XA START` to its prepare).
    pub(super) xa_open: Option<String>,
    /// XA transactions prepared and not yet committed or rolled back, by id.
    pub(super) prepared_xa: BTreeMap<String, PreparedXa>,
}

/// An XA transaction between its prepare and its `XA COMMIT`/`XA ROLLBACK` (later, in another group).
#[derive(Clone, Debug)]
pub(super) struct PreparedXa {
    /// Where its group started: reading must start there again until it is resolved.
    pub(super) start: Position,
    /// Its changes (position and seq are set at its commit).
    pub(super) changes: Vec<Change>,
}

/// Ignored on purpose: statement-context events (meaningless in ROW format), MySQL GTID
/// bookkeeping, the stop marker and the compressed payload wrapper (its inner events follow).
const IGNORED_EVENTS: [u8; 10] = [
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
];

impl BinlogDecoder {
    /// The earliest point reading must start again from to see every change not yet emitted in full:
    /// the start of the open transaction once part of it is emitted, and of every XA transaction
    /// prepared but not resolved. `None` when reading may resume after the last commit.
    pub fn hold(&self) -> Option<&Position> {
        let open = (self.emitted_in_group > 0).then_some(&self.group_start);
        open.into_iter().chain(self.prepared_xa.values().map(|x| &x.start)).min()
    }

    /// Handles one event; returns what it completes, if anything.
    pub fn handle(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        // Artificial events (log_pos 0) and server heartbeats say nothing about what was read.
        let log_pos = ev.header().log_pos() as u64;
        let read_to = (log_pos > 0 && ev.header().event_type_raw() != EventType::HEARTBEAT_EVENT as u8)
            .then(|| Position { file: self.file.clone(), offset: log_pos, gtid: None, part: None });
        let out = self.handle_inner(ev)?;
        if let Some(read_to) = read_to {
            self.read_to = read_to;
        }
        if out.is_some() {
            self.last_emit = Instant::now();
        }
        Ok(out)
    }

    /// Sends one event to the handler of its kind.
    fn handle_inner(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        match ev.header().event_type_raw() {
            MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT => Ok(None),
            MARIADB_GTID => self.on_mariadb_gtid(ev).map(|()| None),
            MARIADB_GTID_LIST => self.on_gtid_list(ev).map(|()| None),
            t if t == EventType::ROTATE_EVENT as u8 => self.on_rotate(ev).map(|()| None),
            t if t == EventType::FORMAT_DESCRIPTION_EVENT as u8 => {
                self.on_format_description();
                Ok(None)
            }
            t if t == EventType::XID_EVENT as u8 => Ok(self.on_xid(ev)),
            t if t == EventType::XA_PREPARE_LOG_EVENT as u8 => self.on_xa_prepare(ev),
            t if t == EventType::QUERY_EVENT as u8 => self.on_query(ev),
            t if t == EventType::TABLE_MAP_EVENT as u8 => self.on_table_map(ev).map(|()| None),
            // WRITE/UPDATE/DELETE_ROWS, v1 (23..=25) and v2 (30..=32).
            23..=25 | 30..=32 => self.on_rows(ev),
            t if t == EventType::HEARTBEAT_EVENT as u8 => Ok(self.on_heartbeat()),
            t if IGNORED_EVENTS.contains(&t) => Ok(None),
            _ => Err(self.refusal(ev)),
        }
    }

    /// The error for an event type polyrepl does not read: partial JSON updates, encrypted or
    /// compressed MariaDB binlogs, and any type it does not know.
    fn refusal(&self, ev: &Event) -> SourceError {
        match ev.header().event_type_raw() {
            t if t == EventType::PARTIAL_UPDATE_ROWS_EVENT as u8 => self.unsupported(
                ev,
                "PARTIAL_UPDATE_ROWS",
                "partial JSON updates: SET GLOBAL binlog_row_value_options='' and restart the stream",
            ),
            164 => self.unsupported(
                ev,
                "START_ENCRYPTION",
                "encrypted binlogs cannot be read: SET GLOBAL encrypt_binlog=OFF",
            ),
            165..=177 => self.unsupported(
                ev,
                "MariaDB compressed event",
                "compressed binlog events: SET GLOBAL log_bin_compress=OFF and snapshot again from a position after the change",
            ),
            _ => self.unsupported(ev, "unknown", "this event type is not understood by polyrepl; please report it"),
        }
    }

    /// The position of `log_pos` in the current file, with the GTID state of the last commit.
    pub(super) fn here(&self, log_pos: u64) -> Position {
        Position { file: self.file.clone(), offset: log_pos, gtid: self.committed.gtid.clone(), part: None }
    }

    /// The error for an event of a type polyrepl refuses, with the fix in `hint`.
    fn unsupported(&self, ev: &Event, name: &'static str, hint: &str) -> SourceError {
        SourceError::UnsupportedEvent {
            event_type: ev.header().event_type_raw(),
            name,
            position: self.here(ev.header().log_pos() as u64),
            hint: hint.to_string(),
        }
    }

    /// The error for an event that cannot be read or makes no sense here, at its position.
    pub(super) fn stream_error(&self, ev: &Event, message: impl Into<String>) -> SourceError {
        SourceError::Stream { position: self.here(ev.header().log_pos() as u64), message: message.into() }
    }
}
