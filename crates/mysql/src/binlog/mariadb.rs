//! MariaDB's own events (mysql_common does not know them) and its GTID state.
//!
//! Invariants:
//! - a MariaDB GTID event opens a group: changes pending from before are dropped (an error if part of
//!   them was emitted), and the group's
//!   GTID joins the state only at its commit (`transaction`); a standalone group (one DDL statement
//!   without BEGIN/COMMIT) ends with its statement (`query`);
//! - a GTID list event (at the start of a binlog file) raises the state to each domain's highest seq,
//!   and outside a group the committed position carries the new state;
//! - annotate-rows (the statement of the rows events that follow) and binlog-checkpoint events carry
//!   nothing polyrepl needs: the decoder ignores them.

use super::BinlogDecoder;
use crate::error::Result;
use mysql_async::binlog::events::Event;
use std::collections::BTreeMap;

/// ANNOTATE_ROWS: the statement of the following rows events (ignored).
pub(super) const MARIADB_ANNOTATE_ROWS: u8 = 160;
/// BINLOG_CHECKPOINT: a binlog file no longer needed for crash recovery (ignored).
pub(super) const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
/// GTID: the start of a group (transaction or standalone statement).
pub(super) const MARIADB_GTID: u8 = 162;
/// GTID_LIST: the GTID state at the start of a binlog file.
pub(super) const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB GTID flag: the group is one statement (DDL) without BEGIN/COMMIT.
const FL_STANDALONE: u8 = 1;
/// MariaDB GTID flag: a group commit id (8 bytes) follows the fixed part.
const FL_GROUP_COMMIT_ID: u8 = 2;
/// MariaDB GTID flag: the group is an XA transaction ending in its prepare; its XA id follows.
const FL_PREPARED_XA: u8 = 64;

/// An XA id as the server writes it in `XA COMMIT`/`XA ROLLBACK` statements: `X'gtrid',X'bqual',formatID`
/// (hex in upper case; compare query texts with [`normalize_xid`]).
pub(super) fn xid_text(format_id: u32, gtrid: &[u8], bqual: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    format!("X'{}',X'{}',{}", hex(gtrid), hex(bqual), format_id)
}

/// An XA id from a statement's text, comparable with [`xid_text`].
pub(super) fn normalize_xid(text: &str) -> String {
    text.split_whitespace().collect::<String>().to_ascii_uppercase()
}

impl BinlogDecoder {
    /// A MariaDB GTID event: a new group starts.
    pub(super) fn on_mariadb_gtid(&mut self, ev: &Event) -> Result<()> {
        let d = ev.data();
        if d.len() < 13 {
            return Err(self.stream_error(ev, "truncated MariaDB GTID event"));
        }
        let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
        let flags = d[12];
        if self.in_group && self.emitted_in_group > 0 {
            return Err(self.stream_error(
                ev,
                "a large transaction whose first part was applied never committed in the binlog (did the \
                 server crash while writing it?): the sinks may hold rows the source does not. Fix: \
                 polyrepl run --resnapshot",
            ));
        }
        // A group whose commit never came (the server stopped while writing it) did not happen.
        self.pending.clear();
        self.in_group = false;
        self.open_group();
        self.standalone = flags & FL_STANDALONE != 0;
        self.group_gtid = Some((domain, ev.header().server_id(), seq));
        if flags & FL_PREPARED_XA != 0 {
            // The group is an XA transaction up to its prepare: its id follows the fixed part.
            let at = if flags & FL_GROUP_COMMIT_ID != 0 { 21 } else { 13 };
            let xid = d.get(at..at + 6).and_then(|h| {
                let format_id = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
                let (g, b) = (h[4] as usize, h[5] as usize);
                let data = d.get(at + 6..at + 6 + g + b)?;
                Some(xid_text(format_id, &data[..g], &data[g..]))
            });
            let Some(xid) = xid else { return Err(self.stream_error(ev, "truncated XA id in a MariaDB GTID event")) };
            self.xa_open = Some(xid);
        }
        Ok(())
    }

    /// A MariaDB GTID list event: merges its GTIDs into the state.
    pub(super) fn on_gtid_list(&mut self, ev: &Event) -> Result<()> {
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
        Ok(())
    }
}

/// domain → (server, seq) → `D-S-N,D-S-N` (domains in order).
pub(super) fn format_gtid_state(state: &BTreeMap<u32, (u32, u64)>) -> String {
    state.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_state_round_trip() {
        let s = polyrepl_core::parse_gtid_state("0-1-42,3-7-9").unwrap();
        assert_eq!(format_gtid_state(&s), "0-1-42,3-7-9");
    }
}
