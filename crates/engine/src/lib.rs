//! Runs a replication: everything between the source reader and the sinks.
//!
//! - [`startup`]: source checks, sinks opened through the [`registry`], the sink tables' [`leases`]
//!   taken, sinks prepared, checkpoints loaded.
//! - [`replication`]: the initial snapshot where a sink needs one ([`snapshot`]), the `--resnapshot`
//!   sweep ([`sweep`]), then binlog streaming with reconnects ([`stream`]), all feeding the [`pipeline`];
//!   while streaming, tables are copied online ([`online`]) and schema changes followed
//!   ([`schema_changes`]).
//! - [`checkpoints`]: every rule about checkpoints (where to resume, what a sink already holds).
//! - [`metrics`]: the counters a run keeps; the binary renders them (Prometheus text, JSON).
//! - [`settings`]: a run's resolved settings and their defaults, in one place.

pub mod apply;
pub mod checkpoints;
pub mod control;
pub mod error;
pub mod history;
pub mod leases;
pub mod metrics;
pub mod online;
pub mod pipeline;
pub mod registry;
pub mod replication;
pub mod schema_changes;
pub mod settings;
pub mod snapshot;
pub mod spill;
pub mod startup;
pub mod stream;
pub mod sweep;
pub mod verify;

pub use error::{EngineError, Result};
pub use metrics::Metrics;
pub use registry::open_sink;
pub use replication::run;
pub use settings::RunConfig;
pub use startup::{prepare, Prepared};
