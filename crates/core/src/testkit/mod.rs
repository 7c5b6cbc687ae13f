//! The sink conformance kit (cargo feature `test-utils`): one set of test builders and one suite of
//! checks that every [`crate::Sink`] runs against its real server.
//!
//! - [`builders`]: tables, rows with every type's edge values, changes, batches and checkpoints — the one
//!   copy the sinks' integration tests use.
//! - [`conformance`]: the behaviour the [`crate::Sink`] trait promises, checked through the trait only
//!   (`apply`, `read_rows`, `scan_keys`, checkpoints, `truncate_table`, `drop_table`, leases, rows the
//!   server refuses under each `--on-unmappable` policy), so a new sink gets
//!   the whole suite by calling [`conformance::run_all`].
//! - [`memory_sink`]: a sink in memory with fault injection, for testing what drives sinks (the engine's
//!   pipeline) without a database; it passes the conformance suite too.
//!
//! Invariants:
//! - Nothing here talks to a database by itself: the caller connects the sink and names a fresh
//!   database (a random name per test, so tests run in parallel on shared servers) and cleans it up.
//! - A sink that legitimately decodes a value differently says so in its
//!   [`conformance::Capabilities`]; the checks never weaken an assertion to fit a sink.

pub mod builders;
pub mod conformance;
pub mod json_cases;
pub mod memory_sink;
