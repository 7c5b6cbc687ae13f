//! Kafka sink of polyrepl: every change as a Debezium change event (JSON) in a topic per table, each
//! batch in one Kafka transaction together with its checkpoint.
//!
//! Layout in Kafka:
//! - table `db.t` → topic `<prefix>.db.t` (prefix: the URL's `topic_prefix`, default `polyrepl`),
//!   created with the URL's `partitions` if absent; message key = the primary key, so a key's
//!   changes stay in order in one partition; value = the Debezium envelope ([`envelope`]); after a
//!   delete, a tombstone (`null` value) unless `tombstones=false`.
//! - checkpoint → compacted topic `__polyrepl_checkpoints.<pipeline>` (one per pipeline: see
//!   [`topics::checkpoint_topic`]), key = pipeline name, value = checkpoint JSON.
//! - leases → compacted topic `__polyrepl_leases`, key = the table's topic; dead letters →
//!   compacted topic `__polyrepl_dead_letters`, key = the record's id.
//!
//! Exactly once: the producer is idempotent and transactional (`transactional.id` =
//! `polyrepl-<pipeline>`). A batch's events and its checkpoint are one transaction: a consumer reading
//! with `isolation.level=read_committed` sees all of them or none, and a `kill -9` before the commit
//! leaves an aborted transaction and the old checkpoint, so the batch is sent again and seen once.
//! Starting a producer with the same transactional id aborts what a killed one left open and fences a
//! zombie that is still running. Waiting batches are merged (the pipeline hands a lagging sink its queue
//! as one batch), so a busy stream makes few, large transactions.
//!
//! Not like the other sinks:
//! - `before` is always `null` (polyrepl keeps the row after a change only); deletes carry the key.
//! - a truncate (or a dropped table: the topic stays) is Debezium's `op: "t"` event, sent to every
//!   partition; topics keep their history.
//! - `verify` reads a table's topic whole (read_committed) to know what it holds: fine for tests and
//!   small tables, slow for large ones.
//! - leases are read, then written: Kafka has no compare-and-set, so two pipelines of different names
//!   starting in the same instant could both take one (the same name is fenced by the transactional id).
//!
//! Modules: [`options`] (the URL), [`envelope`] (changes → events), [`decode`] (events → values),
//! [`topics`] (creating and reading topics), [`sink`] (the [`polyrepl_core::Sink`] methods).

pub mod consume;
pub mod decode;
pub mod envelope;
pub mod options;
pub mod sink;
pub mod topics;

pub use sink::KafkaSink;
