//! Query events: transaction boundaries written as statements (`BEGIN`, `COMMIT`, `ROLLBACK`,
//! savepoints, XA) and DDL.
//!
//! Invariants:
//! - `BEGIN`, `SAVEPOINT`, `ROLLBACK TO` and `XA …` open (or stay in) a group; `COMMIT` and
//!   `ROLLBACK` commit it (a logged ROLLBACK only follows changes of non-transactional tables:
//!   they happened);
//! - any other statement is DDL (or a statement-logged DML, or another statement with no rows): it
//!   ends a standalone group or stands alone outside a group, and is emitted as [`SourceEvent::Ddl`] at
//!   the committed position. Inside a group (DDL commits implicitly, so this is a statement-logged DML
//!   of a STATEMENT or MIXED session) the group's row changes stay pending: they commit with the group.

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
        if upper == "BEGIN"
            || upper.starts_with("SAVEPOINT")
            || upper.starts_with("ROLLBACK TO")
            || upper.starts_with("XA ")
        {
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
        }
        Ok(Some(SourceEvent::Ddl { position: self.committed.clone(), database, statement }))
    }
}
