//! MongoDB sink of polyrepl (works with MongoDB 4.4+ and FerretDB 1.x).
//!
//! Layout in MongoDB: database = source database, collection = table, one document per row with
//! `_id` = primary key (a sub-document `{col: value, …}` in key order for composite keys) and one field
//! per column named like the column. The exact type mapping is documented in [`mapping`].
//!
//! Use: [`MongoSink::connect`]`(url, pipeline)`, then the [`polyrepl_core::Sink`] methods.
//!
//! Modules, one job each: [`connection`] (URL, handshake, server features), [`probe`] (is it MongoDB at
//! all?), [`mapping`] + [`decimal`] (values ⇄ BSON), [`naming`] (where a row lives), [`plan`] (collapse a
//! batch per key, setting aside documents over the server's size limit), [`write`] (bulk writes with
//! chunking), [`checkpoint`] (resume point), [`lease`] (who owns a collection), [`dead_letter`] (rows
//! left out under `--on-unmappable dead-letter`), [`error`] (transient vs definite).

pub mod checkpoint;
pub mod connection;
pub mod dead_letter;
pub mod decimal;
pub mod error;
pub mod fence;
pub mod lease;
pub mod mapping;
pub mod naming;
pub mod plan;
pub mod probe;
pub mod scan;
pub mod sink;
pub mod write;

pub use connection::ServerInfo;
pub use mapping::{Mapping, MappingCounts, MappingStats, ServerFeatures};
pub use sink::MongoSink;
