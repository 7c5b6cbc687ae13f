//! The one trait a target database implements. A new sink is one crate implementing it.
//!
//! Every method is required (no no-op defaults: a sink that forgets one must not compile).
//!
//! Besides rows and checkpoints, a sink keeps two more things of polyrepl's own, next to its
//! checkpoints: the leases saying which pipeline owns each sink table ([`crate::lease`]), and the
//! records of the rows it could not hold under the `dead-letter` policy ([`crate::unmappable`]). Which
//! rows it cannot hold it finds itself, while planning a batch, and treats them as the
//! [`crate::RowPolicy`] it was opened with says.

use crate::{Batch, Checkpoint, DeadLetter, Lease, LeaseRequest, Row, RowPolicy, TableSchema, Value};
use async_trait::async_trait;
use std::sync::Arc;

/// A sink failure, split the way the pipeline must react to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The sink is unreachable or overloaded: retry the same batch with backoff.
    #[error("{sink}: {message} (will retry)")]
    Transient { sink: String, message: String },
    /// Retrying cannot help (bad data, refused schema, wrong server): stop and say why.
    #[error("{sink}: {message}")]
    Definite { sink: String, message: String },
}

impl SinkError {
    /// Whether retrying the same batch may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }

    /// A failure retrying cannot help, reported by the sink named `sink`.
    pub fn definite(sink: &str, message: impl Into<String>) -> SinkError {
        SinkError::Definite { sink: sink.to_string(), message: message.into() }
    }

    /// A failure worth retrying with backoff, reported by the sink named `sink`.
    pub fn transient(sink: &str, message: impl Into<String>) -> SinkError {
        SinkError::Transient { sink: sink.to_string(), message: message.into() }
    }
}

/// A batch turned into a sink's writes by [`Sink::stage`].
#[async_trait]
pub trait StagedBatch: Send {
    /// Writes the rows, then the checkpoint; `Ok` once the batch is stored. On a failure nothing is
    /// known of what landed: the batch is applied again (a replay has the effect of applying it once).
    async fn send(self: Box<Self>) -> Result<(), SinkError>;
}

/// What [`Sink::stage`] returns when it already wrote the batch (a sink that does not pipeline).
pub struct Written;

#[async_trait]
impl StagedBatch for Written {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A target database kept in step with the source.
#[async_trait]
pub trait Sink: Send {
    /// A short name for logs and metrics, e.g. `mongodb://127.0.0.1:1800` (no credentials).
    fn name(&self) -> &str;

    /// Creates what the tables need (collections, indexes, tables); idempotent.
    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError>;

    /// Applies every change of the batch, in order per key, and stores the batch's checkpoint.
    /// Applying a batch twice has the effect of applying it once. A row the sink cannot hold is treated
    /// as its [`crate::RowPolicy`] says, found before anything is written: the batch fails definitely
    /// (`stop`), or the row is left out (its key deleted where the sink can address it) and the rest
    /// applied (`skip`), and recorded with the batch (`dead-letter`, see [`Sink::read_dead_letters`]).
    /// It is [`Sink::stage`] followed by [`StagedBatch::send`].
    async fn apply(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.stage(batch).await?.send().await
    }

    /// The first half of [`Sink::apply`]: everything before the first write of the batch's rows —
    /// mapping, the row policy (a `stop` fails here), whatever the tables need first — returning the
    /// writes, which own their data and shared handles to the sink's connections. The pipeline sends
    /// them (in a task of their own) while it stages the next batch, and sends that one only once they
    /// are stored, so the sink's server is not idle while batches are converted, and batches and
    /// checkpoints still land in order. A sink that cannot split its work writes the batch here and
    /// returns [`Written`].
    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError>;

    /// Whether the pipeline may hand this sink, when it is behind, the batches waiting in its queue as
    /// one larger batch. Say no when a larger apply is unsafe or no faster: e.g. a server that keeps
    /// executing a killed client's long write, which could then land after the restarted run's newer
    /// writes (FerretDB 1.x deletes by reading the matching ids first and deleting them later).
    fn merges_waiting_batches(&self) -> bool;

    /// The checkpoint stored for `pipeline` (the run's name), if any.
    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError>;

    /// Reads back the rows with the given primary keys, for verification: `None` where absent.
    /// Rows come back in the source's column order, with values as the sink's mapping decodes them.
    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError>;

    /// One page of the primary keys present in the sink for `table` (values in key order, decoded like
    /// `read_rows` decodes them), in any order, at most about `limit` of them, for finding rows the
    /// source no longer has. Start with `cursor = None`; pass the returned cursor (opaque bytes) to get
    /// the next page; a returned `None` cursor means the scan is complete. A key may appear twice in
    /// one scan where the database's own scan allows it (Redis SCAN), so callers must tolerate that.
    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError>;

    /// Removes every row the sink holds for `table`, keeping what `prepare` created (collection, table,
    /// indexes); idempotent. Only `table.id` may be relied on: the schema of a table the run never saw
    /// (created and dropped again before the stream reached it) has no columns. Not ordered with the pipeline's batches: the caller makes sure no batch for
    /// `table` is in flight.
    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError>;

    /// Removes `table` from the sink: its rows and whatever `prepare` created for it; idempotent (a
    /// table the sink does not have is not an error). Only `table.id` may be relied on (see
    /// [`Sink::truncate_table`]).
    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError>;

    /// Takes or renews, for `request.owner`, the lease of the sink table of each of `tables`
    /// ([`crate::lease`]): a lease that is absent, expired or already the owner's is written to last
    /// `request.ttl`; one another owner holds is taken only with `request.take_over`, each in one atomic
    /// step. Returns the leases of another owner that were left alone (empty: the owner holds every
    /// one now). Only `table.id` may be relied on.
    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError>;

    /// Gives up the leases `owner` holds on `tables`; a lease of another owner is left alone;
    /// idempotent.
    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError>;

    /// The leases on `tables` that have not expired, in any order.
    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError>;

    /// The policy the sink was opened with for rows it cannot hold, and its counts (which the pipeline
    /// reports as metrics).
    fn row_policy(&self) -> &RowPolicy;

    /// The records of the rows `pipeline` left out of this sink under the `dead-letter` policy
    /// ([`crate::unmappable`]), in any order.
    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError>;
}
