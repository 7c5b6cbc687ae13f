//! Binlog file changes: rotate events and the format description that follows each file's start.
//!
//! Invariants:
//! - the first rotate of a stream is artificial and its name may carry 4 checksum bytes
//!   (mysql_async #189): the decoder uses the file asked for, or the name the reader resolved with
//!   SHOW BINARY LOGS, until the first format description is read;
//! - outside a group, a rotate to another file moves the committed position to that file (at the
//!   rotate's offset, at least 4), keeping the GTID state; inside a group the position waits for
//!   the commit.

use super::BinlogDecoder;
use crate::error::Result;
use mysql_async::binlog::events::{Event, RotateEvent};
use polyrepl_core::Position;

impl BinlogDecoder {
    /// A rotate event: the stream continues in the file it names.
    pub(super) fn on_rotate(&mut self, ev: &Event) -> Result<()> {
        let re: RotateEvent<'_> =
            ev.read_event().map_err(|e| self.stream_error(ev, format!("bad rotate event: {e}")))?;
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
            self.committed = Position {
                file: self.file.clone(),
                offset: re.position().max(4),
                gtid: self.committed.gtid.clone(),
                part: None,
            };
        }
        Ok(())
    }

    /// A format description event: later rotates name their file exactly.
    pub(super) fn on_format_description(&mut self) {
        self.seen_fde = true;
    }
}
