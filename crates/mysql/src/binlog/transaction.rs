//! Transaction boundaries: the opening of a group, the commit that ends it and emits its pending
//! changes, the parts of a large transaction, and heartbeats between groups.
//!
//! Invariants:
//! - a transaction's changes are emitted at its commit (XID, `COMMIT`, or the end of a standalone
//!   MariaDB GTID group) — except a large one: once `part_changes` are pending (and none of them can
//!   still be rolled back to a savepoint, and it is no XA transaction), they are emitted as a
//!   [`SourceEvent::Part`] at the position of the rows event that completed them, with the GTID state
//!   of the last commit and [`Position::part`] = the changes emitted so far (after the last commit,
//!   before the transaction's own, on any server that has the transaction), and
//!   [`BinlogDecoder::hold`] keeps the group's start as the resume point until the commit;
//! - a new group that starts while part of the open one was emitted (its commit never came) is an
//!   error: the emitted part never happened on the source;
//! - at a commit the group's GTID joins the state, and every change gets the position just after
//!   the commit event (current file, its `log_pos`, the GTID state including the transaction),
//!   `seq` = its index in the whole transaction (parts included) and the commit's timestamp;
//! - a commit with nothing selected yields a heartbeat at most once per heartbeat interval, so the
//!   checkpoint advances; a server heartbeat yields one only outside a group.

use super::mariadb::format_gtid_state;
use super::{BinlogDecoder, SourceEvent};
use mysql_async::binlog::events::Event;
use polyrepl_core::{Change, Position};

impl BinlogDecoder {
    /// An XID event: the transaction commits.
    pub(super) fn on_xid(&mut self, ev: &Event) -> Option<SourceEvent> {
        self.commit(ev.header().log_pos() as u64, ev.header().timestamp())
    }

    /// A server heartbeat: the committed position, unless inside a group.
    pub(super) fn on_heartbeat(&self) -> Option<SourceEvent> {
        if self.in_group {
            None
        } else {
            Some(SourceEvent::Heartbeat { position: self.committed.clone() })
        }
    }

    /// A group starts (BEGIN, a MariaDB GTID, XA START, or a savepoint outside one): it starts after the
    /// last commit.
    pub(super) fn open_group(&mut self) {
        if !self.in_group {
            self.in_group = true;
            self.group_start = self.committed.clone();
            self.emitted_in_group = 0;
            self.savepoints.clear();
            self.xa_open = None;
        }
    }

    /// The pending changes that can no longer be rolled back, as a [`SourceEvent::Part`] at the rows
    /// event ending at `log_pos`, once there are `part_changes` of them.
    pub(super) fn take_part(&mut self, log_pos: u64, ts: u32) -> Option<SourceEvent> {
        if self.pending.len() < self.part_changes || !self.in_group || self.standalone || self.xa_open.is_some() {
            return None;
        }
        // Changes after a savepoint may still be rolled back to it.
        let final_count =
            self.savepoints.first().map_or(self.pending.len(), |(_, before)| before - self.emitted_in_group);
        if final_count < self.part_changes {
            return None;
        }
        let emitted_before = self.emitted_in_group;
        self.emitted_in_group += final_count;
        let position = Position { part: Some(self.emitted_in_group as u64), ..self.here(log_pos) };
        let mut changes: Vec<Change> = self.pending.drain(..final_count).collect();
        for (i, c) in changes.iter_mut().enumerate() {
            c.position = position.clone();
            c.seq = (emitted_before + i) as u32;
            c.source_ts = ts;
        }
        Some(SourceEvent::Part { position, changes })
    }

    /// Ends the current group at `log_pos`; returns its changes if there are any.
    pub(super) fn commit(&mut self, log_pos: u64, ts: u32) -> Option<SourceEvent> {
        if let Some((domain, server, seq)) = self.group_gtid.take() {
            self.gtid_state.insert(domain, (server, seq));
        }
        let gtid = if self.gtid_state.is_empty() {
            self.committed.gtid.clone()
        } else {
            Some(format_gtid_state(&self.gtid_state))
        };
        self.committed = Position { file: self.file.clone(), offset: log_pos, gtid, part: None };
        self.in_group = false;
        self.standalone = false;
        let emitted_before = std::mem::take(&mut self.emitted_in_group);
        let emitted_parts = emitted_before > 0;
        self.savepoints.clear();
        self.xa_open = None;
        if self.pending.is_empty() && emitted_parts {
            // Every change went out in parts: the commit still ends the transaction (and its hold).
            return Some(SourceEvent::Transaction { position: self.committed.clone(), changes: vec![] });
        }
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
            c.seq = (emitted_before + i) as u32;
            c.source_ts = ts;
        }
        Some(SourceEvent::Transaction { position: self.committed.clone(), changes })
    }
}
