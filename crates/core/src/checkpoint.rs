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

/// A sink's resume point. While a snapshot runs, `position` is the binlog position that the snapshot is
/// consistent with and streaming starts from; `snapshot` is `None` once the snapshot is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: crate::Position,
    pub snapshot: Option<SnapshotProgress>,
}

impl Checkpoint {
    /// A checkpoint for pure streaming from `position`.
    pub fn streaming(position: Position) -> Self {
        Checkpoint { position, snapshot: None }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("checkpoint serialises")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}
