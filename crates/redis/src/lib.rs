//! Redis sink of polyrepl: one HASH per row, a batch's writes spread over several connections (on a
//! Redis Cluster: over the hash slots) with the checkpoint written last, an optional TTL and an
//! optional per-table change stream.
//!
//! Layout in Redis:
//! - row `[prefix]DB:TABLE:PK` → HASH, one field per non-NULL column named like the column; a NULL column
//!   is an absent field. PK is the key value's MySQL text, composite keys joined by `:` (details and
//!   escaping in [`naming`]). The exact type mapping is in [`mapping`].
//! - checkpoint `polyrepl:checkpoint:<pipeline>` → STRING, the checkpoint JSON ([`checkpoint`]).
//! - change stream `polyrepl:stream:DB:TABLE` → STREAM, when enabled ([`stream`] documents the entries).
//! - lease `polyrepl:lease:[prefix]DB:TABLE` → HASH `owner`, `holder`, expiring ([`lease`]).
//! - dead letters `polyrepl:dead_letters:<pipeline>` → HASH record id → record JSON, for rows the server
//!   refuses under `--on-unmappable dead-letter` ([`limits`] says which).
//!
//! Writes: an insert or update is `HSET` of the row's non-NULL columns + `HDEL` of its NULL ones (so the
//! hash is exactly the row), a delete is `DEL`; several changes to one key in a batch collapse to the
//! last ([`plan`]). A
//! batch's keys are spread over lanes (a key always on the same one), a row of several commands is one
//! MULTI/EXEC, a row of one command is sent as it is, and the checkpoint is written alone after every
//! lane succeeded ([`write`](mod@write) says why a replay after a crash in between converges).
//!
//! Redis Cluster (`redis+cluster://HOST:PORT[,HOST:PORT…]`, or a `redis://` URL whose server reports
//! `cluster_enabled:1`, which is then used as the cluster's seed): key names are the same, so a table's
//! rows spread over all hash slots, and a cluster runs a transaction only within one slot. Atomicity is
//! therefore relaxed:
//! - single server: one lane per connection (`connections`, default 4), as below;
//! - cluster: each hash slot's part of the batch (its row writes, and the entries of stream keys in that
//!   slot) is one lane, slots are written concurrently, and the checkpoint (its own slot) is
//!   written alone, last, only after every slot succeeded. A crash in between leaves the old checkpoint,
//!   the batch is replayed, and since every write sets or removes every column of a row, or is a DEL, the replay is
//!   harmless (stream entries are at least once, as always). A reader may briefly see part of a batch,
//!   never part of a row.
//! - A key prefix with a hash tag (`?prefix={app}:`) puts every row in one slot (one node): each
//!   transaction then holds a whole batch chunk, at the price of no spreading across the cluster.
//!
//! Use: [`RedisSink::connect`]`(url, pipeline, `[`RedisOptions`]`)`, then the [`polyrepl_core::Sink`] methods.
//! Options can also be given in the URL: `redis://127.0.0.1:6379/0?prefix=app:&ttl=60&stream=10000`
//! ([`options`]).
//!
//! Not supported yet, refused at `connect` with a message saying so:
//! - TLS (`rediss://`, `rediss+cluster://`): the redis crate is built without a TLS backend.
//!
//! Modules, one job each: [`connection`] (URL, probe, handshake), [`options`] (what to write besides
//! rows), [`naming`] (where a row lives), [`mapping`] (values ⇄ field bytes), [`plan`] (collapse a batch
//! per key), [`stream`] (change-stream entries), [`write`](mod@write) (lanes and their chunks), [`resp`] (a single server's
//! writing connections, RESP bytes), [`checkpoint`] (resume
//! point), [`error`] (transient vs definite), [`layout`] (removing a table's keys), [`lease`] (who owns
//! a table's keys), [`limits`] (what the server refuses, `--on-unmappable`).

pub mod checkpoint;
pub mod connection;
pub mod error;
pub mod layout;
pub mod lease;
pub mod limits;
pub mod mapping;
pub mod naming;
pub mod options;
pub mod plan;
pub mod resp;
pub mod scan;
pub mod sink;
pub mod stream;
pub mod write;

pub use options::RedisOptions;
pub use sink::RedisSink;
