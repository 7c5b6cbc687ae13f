//! A binlog range kept in memory and decoded again without a server: the raw events as the server
//! sent them, with the decoder's state at the range's start.
//!
//! Invariants: the replay runs the live reader's own code (mysql_common's event reader, then
//! [`BinlogDecoder::handle`]) from a copy of the starting state, every time it is called; it needs
//! no server because the reader hands over the look-ups it made (first rotate name, MariaDB JSON
//! columns) with the recording.

use super::{BinlogDecoder, SourceEvent};
use crate::error::{Result, SourceError};
use mysql_async::binlog::BinlogVersion;
use mysql_common::binlog::EventStreamReader;

/// The raw events of a binlog range, kept in memory, with the decoder's state at its start.
pub struct RecordedBinlog {
    /// The decoder's state at the start of the range (the reader adds its look-ups when handing over).
    pub(super) start: BinlogDecoder,
    /// The events, one after the other (checksums included).
    pub(super) bytes: Vec<u8>,
    /// How many events `bytes` holds.
    pub(super) events: usize,
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
