//! polyrepl's MySQL/MariaDB source: start-up checks, a consistent chunked snapshot, and binlog
//! streaming, all producing [`polyrepl_core::Change`]s with exactly decoded [`polyrepl_core::Value`]s.
//!
//! The pipeline's path: [`checks::run_startup_checks`] → [`snapshot::Snapshot::begin`] and its chunks
//! (applied and checkpointed one by one) → [`binlog::BinlogReader::start`] from the snapshot's
//! position → [`binlog::SourceEvent`]s.

pub mod binlog;
pub mod charset;
pub mod checks;
pub mod ddl;
pub mod decode;
pub mod error;
pub mod json;
pub mod purged;
pub mod reader;
pub mod rowimage;
pub mod schema;
pub mod snapshot;
pub mod source_url;

pub use binlog::{current_position, BinlogOptions, BinlogReader, SourceEvent};
pub use checks::{run_startup_checks, CheckError, ServerSettings, StartupReport};
pub use error::{Result, SourceError};
pub use reader::SourceReader;
pub use schema::discover_tables;
pub use snapshot::{Snapshot, TableChunks};
pub use source_url::{SourceUrl, UrlError};
