//! What a sink has durably applied: the resume point after a restart or a crash.

use crate::{Position, TableId, Value};
use serde::{Deserialize, Serialize};

/// Progress of the initial snapshot, while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Tables whose every chunk is applied.
    pub done: Vec<TableId>,
    /// The table being copied and the last primary key applied from it (chunks resume after it).
    pub current: Option<(TableId, Vec<Value>)>,
}

/// A table being copied while streaming goes on (an online copy), and how far the sink holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCopy {
    pub table: TableId,
    /// The last primary key applied from the copy (`None`: nothing yet; the copy starts at the first row).
    pub after: Option<Vec<Value>>,
}

/// A sink's resume point. While the initial snapshot runs, `position` is the binlog position that the
/// snapshot is consistent with and streaming starts from; `snapshot` is `None` once it is complete.
///
/// While streaming, `copies` lists the tables being copied online (after a schema change, a table newly
/// selected, a sink that joined): every other selected table is held completely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: crate::Position,
    pub snapshot: Option<SnapshotProgress>,
    /// Online copies in progress, in the order they run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<TableCopy>,
    /// The table selection (`--tables`/`--exclude`, see [`crate::TableFilter::spec`]) the sink's
    /// tables were copied under, so a run with a wider selection copies the newly selected tables.
    /// `None` in checkpoints written before polyrepl recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    /// Where reading must start again when it is earlier than `position` (`None`: at `position`): the
    /// start of a transaction the sink holds only part of (a large transaction applied in parts), or of
    /// an XA transaction prepared but not yet committed. Changes up to `position` are still held:
    /// re-read ones are skipped by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Position>,
}

impl Checkpoint {
    /// A checkpoint for pure streaming from `position` (no copy in progress, selection not recorded).
    pub fn streaming(position: Position) -> Self {
        Checkpoint { position, snapshot: None, copies: vec![], selection: None, resume: None }
    }

    /// A checkpoint of the initial snapshot at `position`, with its progress.
    pub fn snapshotting(position: Position, progress: SnapshotProgress) -> Self {
        Checkpoint { position, snapshot: Some(progress), copies: vec![], selection: None, resume: None }
    }

    /// Where reading starts again to give this sink every change it lacks.
    pub fn read_from(&self) -> &Position {
        self.resume.as_ref().filter(|r| **r < self.position).unwrap_or(&self.position)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("checkpoint serialises")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}
