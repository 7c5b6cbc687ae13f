//! Cassandra sink of polyrepl (Apache Cassandra 4/5, through the `scylla` driver, CQL v4).
//!
//! Layout in Cassandra: keyspace = source database (created with the configured replication,
//! SimpleStrategy RF 1 by default), table = source table with the same column names (quoted identifiers)
//! and `PRIMARY KEY ((source primary key…))`, one partition per row. The exact type mapping is documented
//! in [`mapping`]. Every write carries `USING TIMESTAMP` derived from the change's binlog position, which
//! is what makes replays and crash recovery converge ([`timestamp`]).
//!
//! Use: [`CassandraSink::connect`]`(url, pipeline, options)`, then the [`polyrepl_core::Sink`] methods.
//! The replication of created keyspaces can also be given in the URL:
//! `cassandra://host:9042?replication_factor=3` (SimpleStrategy) or
//! `cassandra://host:9042?replication=dc1:3,dc2:2` (NetworkTopologyStrategy). For time-series tables,
//! `?time_bucket=COLUMN:GRANULARITY` (granularity `hour`, `day` or `month`, e.g. `?time_bucket=ts:day`)
//! adds to every table with a DATE/DATETIME/TIMESTAMP column of that name a `polyrepl_bucket text`
//! column holding the row's bucket (`YYYY-MM-DDTHH`, `YYYY-MM-DD`, `YYYY-MM`; null for NULL or a zero
//! date), indexed with a Storage-Attached Index so `WHERE polyrepl_bucket = '…'` queries work. Any other
//! query key is refused ([`connection`]).
//!
//! Modules, one job each: [`connection`] (URL, options, handshake probe, session), [`naming`] (what
//! Cassandra can name), [`ddl`] (keyspaces, tables, added columns), [`mapping`] (values ⇄ CQL),
//! [`timestamp`] (write timestamps from positions), [`plan`] (collapse a batch per key), [`write`](mod@write)
//! (prepared statements, concurrent execution), [`checkpoint`] (resume point), [`lease`] (who owns a
//! table), [`limits`] + [`dead_letter`] (rows Cassandra refuses, `--on-unmappable`), [`error`]
//! (transient vs definite).

pub mod checkpoint;
pub mod connection;
pub mod ddl;
pub mod dead_letter;
pub mod error;
pub mod lease;
pub mod limits;
pub mod mapping;
pub mod naming;
pub mod plan;
pub mod scan;
pub mod sink;
pub mod timestamp;
pub mod write;

pub use connection::{BucketGranularity, CassandraOptions, Replication, TimeBucket};
pub use mapping::{MappingCounts, MappingStats};
pub use sink::CassandraSink;
