//! Query events: transaction boundaries written as statements (`BEGIN`, `COMMIT`, `ROLLBACK`,
//! savepoints, XA) and DDL; and the XA prepare event.
//!
//! Invariants:
//! - `BEGIN`, `SAVEPOINT` and `XA START` (MariaDB: a GTID event flagged as XA) open (or stay in) a group; `COMMIT` and `ROLLBACK` commit
//!   it (a logged ROLLBACK only follows changes of non-transactional tables: they happened);
//! - `ROLLBACK TO x` drops the group's changes logged since `SAVEPOINT x` (the server logs both only
//!   when the transaction also changed a non-transactional table; in ROW format those changes are
//!   logged on their own, outside the group, so every change dropped here was rolled back);
//! - an XA transaction's changes are held from its prepare (`XA_PREPARE_LOG_EVENT`, which ends its
//!   group) to its `XA COMMIT` (in a later group: emitted there, at that position) or `XA ROLLBACK`
//!   (dropped); until then [`BinlogDecoder::hold`] keeps its start as the resume point. An
//!   `XA COMMIT` of a transaction prepared before the stream started is an error: its rows are unknown;
//! - any other statement is DDL (or a statement-logged DML, or another statement with no rows): it
//!   ends a standalone group or stands alone outside a group, and is emitted as [`SourceEvent::Ddl`] at
//!   the committed position. Inside a group (DDL commits implicitly, so this is a statement-logged DML
//!   of a STATEMENT or MIXED session) it is emitted at its own event's position (after the last commit,
//!   so a stream that skips what it handed over never mistakes it for a re-read), and the group's row
//!   changes stay pending: they commit with the group.

use super::decoder::PreparedXa;
use super::mariadb::{normalize_xid, xid_text};
use super::{BinlogDecoder, SourceEvent};
use crate::error::Result;
use mysql_async::binlog::events::{Event, EventData};

impl BinlogDecoder {
    /// A query event: a transaction boundary, or a DDL statement to emit.
    pub(super) fn on_query(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        let log_pos = ev.header().log_pos() as u64;
        let ts = ev.header().timestamp();
        let Some(EventData::QueryEvent(qe)) =
            ev.read_data().map_err(|e| self.stream_error(ev, format!("bad query event: {e}")))?
        else {
            return Err(self.stream_error(ev, "query event without a body"));
        };
        let statement = qe.query().trim().to_string();
        let database = qe.schema().into_owned();
        let upper = statement.to_ascii_uppercase();
        if upper == "BEGIN" {
            self.open_group();
            return Ok(None);
        }
        if let Some(name) = after_words(&statement, &["SAVEPOINT"]) {
            self.open_group();
            let name = identifier(name);
            self.savepoints.retain(|(n, _)| *n != name);
            self.savepoints.push((name, self.emitted_in_group + self.pending.len()));
            return Ok(None);
        }
        if let Some(name) = after_words(&statement, &["ROLLBACK", "TO"]) {
            let name = identifier(after_words(name, &["SAVEPOINT"]).unwrap_or(name));
            let Some(at) = self.savepoints.iter().position(|(n, _)| *n == name) else {
                return Err(self.stream_error(ev, format!("ROLLBACK TO a savepoint the binlog never set: {name}")));
            };
            let before = self.savepoints[at].1;
            self.savepoints.truncate(at + 1);
            // Parts are only emitted before the first savepoint, so its changes are all still pending.
            self.pending.truncate(before - self.emitted_in_group);
            return Ok(None);
        }
        if let Some(xid) =
            after_words(&statement, &["XA", "START"]).or_else(|| after_words(&statement, &["XA", "BEGIN"]))
        {
            self.open_group();
            self.xa_open = Some(normalize_xid(xid));
            return Ok(None);
        }
        if after_words(&statement, &["XA", "END"]).is_some() {
            return Ok(None);
        }
        if let Some(xid) = after_words(&statement, &["XA", "COMMIT"]) {
            let Some(prepared) = self.prepared_xa.remove(&normalize_xid(xid)) else {
                return Err(self.stream_error(
                    ev,
                    format!(
                        "XA COMMIT {xid}: this XA transaction was prepared before the position the stream \
                         started from, so its changes are unknown. Fix: polyrepl run --resnapshot (once no XA \
                         transaction is prepared: XA RECOVER shows none)"
                    ),
                ));
            };
            self.pending = prepared.changes;
            return Ok(self.commit(log_pos, ts));
        }
        if let Some(xid) = after_words(&statement, &["XA", "ROLLBACK"]) {
            self.prepared_xa.remove(&normalize_xid(xid));
            self.pending.clear();
            return Ok(self.commit(log_pos, ts));
        }
        if upper == "COMMIT" || upper == "ROLLBACK" {
            // A logged ROLLBACK only follows changes of non-transactional tables: they happened.
            return Ok(self.commit(log_pos, ts));
        }
        // DDL and other statements: standalone groups end here. A statement inside a group (a
        // statement-logged DML) sits at its own event, after the group's start, like a part.
        if self.standalone || !self.in_group {
            let _ = self.commit(log_pos, ts);
            return Ok(Some(SourceEvent::Ddl { position: self.committed.clone(), database, statement }));
        }
        Ok(Some(SourceEvent::Ddl { position: self.here(log_pos), database, statement }))
    }

    /// An XA prepare: the open XA transaction's changes are held until its commit or rollback; its
    /// group ends here.
    pub(super) fn on_xa_prepare(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        // one_phase (1), formatID (4), gtrid length (4), bqual length (4), gtrid and bqual.
        let d = ev.data();
        let xid = d.get(1..13).and_then(|h| {
            let n = |r: std::ops::Range<usize>| u32::from_le_bytes(h[r].try_into().expect("4 bytes"));
            let (g, b) = (n(4..8) as usize, n(8..12) as usize);
            let data = d.get(13..13 + g + b)?;
            Some(xid_text(n(0..4), &data[..g], &data[g..]))
        });
        let Some(xid) = xid else { return Err(self.stream_error(ev, "truncated XA PREPARE event")) };
        self.xa_open = None;
        let changes = std::mem::take(&mut self.pending);
        self.prepared_xa.insert(xid, PreparedXa { start: self.group_start.clone(), changes });
        Ok(self.commit(ev.header().log_pos() as u64, ev.header().timestamp()))
    }
}

/// The rest of `statement` after the keywords `words` (case-insensitive, separated by blanks), trimmed;
/// `None` when it does not start with them.
fn after_words<'a>(statement: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut rest = statement.trim_start();
    for word in words {
        let head = rest.get(..word.len())?;
        if !head.eq_ignore_ascii_case(word) {
            return None;
        }
        rest = &rest[word.len()..];
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        rest = rest.trim_start();
    }
    Some(rest.trim_end_matches(';').trim())
}

/// A savepoint name as logged (`` `a` ``, `a`) → its name.
fn identifier(name: &str) -> String {
    let name = name.trim();
    match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(quoted) => quoted.replace("``", "`"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_then_the_rest() {
        assert_eq!(after_words("SAVEPOINT `a`", &["SAVEPOINT"]), Some("`a`"));
        assert_eq!(after_words("ROLLBACK TO `a`", &["ROLLBACK", "TO"]), Some("`a`"));
        assert_eq!(after_words("rollback  to savepoint b", &["ROLLBACK", "TO"]), Some("savepoint b"));
        assert_eq!(after_words("XA COMMIT X'7831',X'',1", &["XA", "COMMIT"]), Some("X'7831',X'',1"));
        assert_eq!(after_words("ROLLBACK", &["ROLLBACK", "TO"]), None);
        assert_eq!(after_words("SAVEPOINTS_TABLE x", &["SAVEPOINT"]), None);
        assert_eq!(after_words("XA STARTED", &["XA", "START"]), None);
    }

    #[test]
    fn savepoint_names() {
        assert_eq!(identifier("`a`"), "a");
        assert_eq!(identifier("`we``ird`"), "we`ird");
        assert_eq!(identifier("plain"), "plain");
    }
}
