//! Where in the source's binlog a change was committed.
//!
//! Positions order by binlog file then offset. MariaDB and MySQL name binlog files with a zero-padded
//! sequence suffix (`binlog.000042`), so the file names compare correctly as numbers of that suffix.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A point in the binlog: the end of a committed transaction (or the snapshot's hand-over point).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name, e.g. `binlog.000003`.
    pub file: String,
    /// Byte offset in that file of the next event after this position.
    pub offset: u64,
    /// GTID state at this position, when the server uses GTIDs (MariaDB `D-S-N[,D-S-N]`, MySQL GTID set).
    pub gtid: Option<String>,
}

impl Position {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        Position { file: file.into(), offset, gtid: None }
    }

    /// The numeric suffix of the binlog file name (`binlog.000042` → 42).
    pub fn file_sequence(&self) -> u64 {
        self.file.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// A strictly increasing number for positions inside one server's binlog history, used where a
    /// sink needs a monotone write timestamp: file sequence in the high bits, offset in the low 40.
    pub fn ordinal(&self) -> u64 {
        (self.file_sequence() << 40) | (self.offset & ((1 << 40) - 1))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.file_sequence(), &self.file, self.offset).cmp(&(other.file_sequence(), &other.file, other.offset))
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(g) = &self.gtid {
            write!(f, " (gtid {g})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_file_sequence_then_offset() {
        let a = Position::new("binlog.000009", 900);
        let b = Position::new("binlog.000010", 4);
        let c = Position::new("binlog.000010", 120);
        assert!(a < b && b < c);
        assert!(a.ordinal() < b.ordinal() && b.ordinal() < c.ordinal());
    }
}
