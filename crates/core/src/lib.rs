//! polyrepl's domain, shared by the source, every sink and the pipeline.
//!
//! The smallest set of concepts that covers the tool: a [`Value`] in a row of a table described by a
//! [`TableSchema`]; a [`Change`] to one row at a [`Position`] of the source; a [`Batch`] of changes that a
//! [`Sink`] applies idempotently together with its [`Checkpoint`].

pub mod change;
pub mod checkpoint;
pub mod collapse;
pub mod json;
pub mod lease;
pub mod position;
pub mod redact;
pub mod rowhash;
pub mod schema;
pub mod sink;
pub mod tables;
#[cfg(feature = "test-utils")]
pub mod testkit;
pub mod text;
pub mod unmappable;
pub mod value;

pub use change::{Batch, Change, Op, Row, TableOp};
pub use checkpoint::{Checkpoint, SnapshotProgress, TableCopy};
pub use collapse::{collapse, CollapsedKey};
pub use lease::{Lease, LeaseRequest};
pub use position::{parse_gtid_state, Position};
pub use schema::{Column, ColumnKind, TableId, TableSchema};
pub use sink::{Sink, SinkError, StagedBatch, Written};
pub use tables::TableFilter;
pub use text::Text;
pub use unmappable::{DeadLetter, LeftOut, OnUnmappable, RowPolicy, Unmappable};
pub use value::{Date, DateTime, Time, Value};
