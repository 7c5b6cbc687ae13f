//! Transaction boundaries: the commit that ends a group and emits its pending changes, and
//! heartbeats between groups.
//!
//! Invariants:
//! - a transaction's changes are emitted only at its commit (XID, `COMMIT`, or the end of a
//!   standalone MariaDB GTID group): never a partial transaction;
//! - at a commit the group's GTID joins the state, and every change gets the position just after
//!   the commit event (current file, its `log_pos`, the GTID state including the transaction),
//!   `seq` = its index in the transaction and the commit's timestamp;
//! - a commit with nothing selected yields a heartbeat at most once per heartbeat interval, so the
//!   checkpoint advances; a server heartbeat yields one only outside a group.

use super::mariadb::format_gtid_state;
use super::{BinlogDecoder, SourceEvent};
use mysql_async::binlog::events::Event;
use polyrepl_core::Position;

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
