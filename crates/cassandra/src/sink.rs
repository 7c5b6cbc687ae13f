//! [`CassandraSink`]: the [`Sink`] implementation tying connection, tables, mapping, planning, writing
//! and checkpoints together.
//!
//! Invariants:
//! - `apply` makes sure every table of the batch exists with every column of the change's schema
//!   (created or widened as needed), then writes the data, then the checkpoint
//!   ([`crate::checkpoint`]); a failure at any step returns an error without storing the checkpoint,
//!   so the pipeline retries the whole batch, which is harmless ([`crate::timestamp`]).
//! - `read_rows` decodes with the same mapping that wrote, so a row read back equals the source row (up
//!   to the documented exceptions of [`crate::mapping`]); it reads only the schema's columns, so the
//!   time-bucket column (`time_bucket` option, [`crate::connection`]) never shows.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use polyrepl_core::{
    Batch, Checkpoint, DeadLetter, Lease, LeaseRequest, LeftOut, Row, RowPolicy, Sink, SinkError, StagedBatch,
    TableSchema, Value,
};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row as CqlRow};

use crate::checkpoint::{self, now_micros};
use crate::connection::{connect, sink_name, url_options, CassandraOptions};
use crate::ddl::Catalog;
use crate::error::classify;
use crate::limits::ServerLimits;
use crate::mapping::{from_cql, MappingCounts, MappingStats};
use crate::naming::{check_names, check_table};
use crate::plan::{plan_within, WriteKind};
use crate::write::{delete_cql, execute_all, insert_cql, key_values, row_values, select_cql, Bound, Statements};

/// A Cassandra sink: one keyspace per source database, one table per source table, one partition per
/// row keyed by the source primary key, every write timestamped by its source position.
pub struct CassandraSink {
    /// Shared with batches being sent ([`CassandraStaged`]).
    session: Arc<Session>,
    name: String,
    pipeline: String,
    options: CassandraOptions,
    replication: String,
    stats: Arc<MappingStats>,
    catalog: Catalog,
    statements: Statements,
    checkpoint_table_ready: bool,
    lease_table_ready: bool,
    dead_letter_table_ready: bool,
    last_checkpoint_timestamp: i64,
    /// What the server refuses, read at connect.
    limits: ServerLimits,
    /// What to do with a row Cassandra cannot hold (`--on-unmappable`).
    policy: RowPolicy,
}

impl CassandraSink {
    /// Connects to `url` (`cassandra://[user:password@]host:port[/ignored][?replication_factor=N |
    /// ?replication=DC:N,…][&time_bucket=COLUMN:hour|day|month]`) for the pipeline named `pipeline`,
    /// whose checkpoint `apply` stores. URL options override `options` ([`crate::connection`]). Fails transiently (and quickly) when nothing
    /// answers at the address, definitely when the URL or an option is invalid or the server is not
    /// Cassandra.
    pub async fn connect(url: &str, pipeline: &str, options: CassandraOptions) -> Result<CassandraSink, SinkError> {
        let options = url_options(url, options).map_err(|m| SinkError::definite(&sink_name(url), m))?;
        let (session, name) = connect(url, &options).await?;
        let limits = crate::limits::read(&session, &name).await;
        Ok(CassandraSink {
            session: Arc::new(session),
            name,
            pipeline: pipeline.to_string(),
            replication: options.replication.cql(),
            options,
            stats: Arc::new(MappingStats::default()),
            catalog: Catalog::default(),
            statements: Statements::default(),
            checkpoint_table_ready: false,
            lease_table_ready: false,
            dead_letter_table_ready: false,
            last_checkpoint_timestamp: 0,
            limits,
            policy: RowPolicy::default(),
        })
    }

    /// This sink, treating rows Cassandra cannot hold ([`crate::limits`]) as `policy` says
    /// ([`polyrepl_core::unmappable`]; dead letters go to `polyrepl.polyrepl_dead_letters`).
    pub fn with_row_policy(mut self, policy: RowPolicy) -> CassandraSink {
        self.policy = policy;
        self
    }

    /// The server's limits read at connect.
    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    async fn ensure_dead_letter_table(&mut self) -> Result<(), SinkError> {
        if !self.dead_letter_table_ready {
            crate::dead_letter::ensure(&self.session, &self.name, &self.replication).await?;
            self.dead_letter_table_ready = true;
        }
        Ok(())
    }

    /// The pipeline name checkpoints are stored under.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The driver session, e.g. for `stack init` or tests.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The options in use.
    pub fn options(&self) -> &CassandraOptions {
        &self.options
    }

    /// Counts of values stored in a fallback form so far (zero dates).
    pub fn mapping_counts(&self) -> MappingCounts {
        self.stats.snapshot()
    }

    /// The live counters behind [`CassandraSink::mapping_counts`], e.g. for a metrics exporter.
    pub fn mapping_stats(&self) -> Arc<MappingStats> {
        self.stats.clone()
    }

    async fn ensure_checkpoint_table(&mut self) -> Result<(), SinkError> {
        if !self.checkpoint_table_ready {
            checkpoint::ensure(&self.session, &self.name, &self.replication).await?;
            self.checkpoint_table_ready = true;
        }
        Ok(())
    }

    /// Checks the names of `tables` and creates the lease table if absent.
    async fn prepare_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        }
        if !self.lease_table_ready {
            crate::lease::ensure(&self.session, &self.name, &self.replication).await?;
            self.lease_table_ready = true;
        }
        Ok(())
    }

    /// Makes sure the table holds every column of `table`'s schema (and the time-bucket column).
    async fn ensure_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        let bucket = self.bucket_column(table).is_some();
        self.catalog.ensure(&self.session, &self.name, &self.replication, table, bucket).await
    }

    /// The index of the column bucketed by the `time_bucket` option, when the table has it.
    fn bucket_column(&self, table: &TableSchema) -> Option<usize> {
        self.options.time_bucket.as_ref().and_then(|b| b.column_in(table))
    }
}

/// A batch's bound statements, its dead-letter records and its checkpoint, ready to send.
struct CassandraStaged {
    session: Arc<Session>,
    sink: String,
    pipeline: String,
    bound: Vec<Bound>,
    /// Per statement: an upsert?, its table and key (for errors).
    described: Vec<(bool, Arc<TableSchema>, Vec<Value>)>,
    max_in_flight: usize,
    letters: Vec<DeadLetter>,
    checkpoint_statement: PreparedStatement,
    checkpoint: Checkpoint,
    /// The checkpoint's write timestamp, above every earlier checkpoint's of this sink.
    timestamp: i64,
    policy: RowPolicy,
    left_out: LeftOut,
}

#[async_trait]
impl StagedBatch for CassandraStaged {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        let this = *self;
        let described = &this.described;
        let describe = |i: usize| {
            let (upsert, table, key) = &described[i];
            let verb = if *upsert { "writing" } else { "deleting" };
            format!("{verb} key {key:?} of {}", table.id)
        };
        execute_all(&this.session, &this.sink, this.bound, this.max_in_flight, &describe).await?;
        if !this.letters.is_empty() {
            crate::dead_letter::store(&this.session, &this.sink, &this.letters).await?;
        }
        checkpoint::store(
            &this.session,
            &this.sink,
            &this.checkpoint_statement,
            &this.pipeline,
            &this.checkpoint,
            this.timestamp,
        )
        .await?;
        this.policy.record_left_out(&this.sink, &this.left_out);
        Ok(())
    }
}

#[async_trait]
impl Sink for CassandraSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        }
        self.ensure_checkpoint_table().await?;
        for table in tables {
            self.ensure_table(table).await?;
        }
        Ok(())
    }

    /// Yes: every write carries a timestamp derived from its source position, so even a write that lands
    /// late (a killed run's, still in flight) can never overwrite a newer one.
    fn merges_waiting_batches(&self) -> bool {
        true
    }

    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        let (writes, unmappable) = plan_within(batch, &self.limits).map_err(|m| SinkError::definite(&self.name, m))?;
        self.policy.check(&self.name, &unmappable, crate::dead_letter::PLACE)?;
        // Every schema of the batch (compared by pointer first, then by column list in the catalog).
        let mut seen: HashSet<usize> = HashSet::new();
        for change in &batch.changes {
            if seen.insert(Arc::as_ptr(&change.table) as usize) {
                self.ensure_table(&change.table).await?;
            }
        }
        let mut bound = Vec::with_capacity(writes.len());
        let mut described = Vec::with_capacity(writes.len());
        // One statement per table and kind, looked up once per batch rather than once per row.
        let mut statements: HashMap<(usize, bool), PreparedStatement> = HashMap::new();
        for (index, write) in writes.iter().enumerate() {
            let table: &TableSchema = write.table;
            let key = key_values(table, write.key, &self.stats).map_err(|m| SinkError::definite(&self.name, m))?;
            let upsert = matches!(write.kind, WriteKind::Upsert(_));
            let values = match &write.kind {
                WriteKind::Upsert(row) => {
                    let mut values =
                        row_values(table, row, &self.stats).map_err(|m| SinkError::definite(&self.name, m))?;
                    if let (Some(i), Some(b)) = (self.bucket_column(table), &self.options.time_bucket) {
                        values.push(b.label(&row[i]).map(CqlValue::Text));
                    }
                    values.push(Some(CqlValue::BigInt(write.timestamp)));
                    values
                }
                WriteKind::Delete => {
                    let mut values = vec![Some(CqlValue::BigInt(write.timestamp))];
                    values.extend(key.into_iter().map(Some));
                    values
                }
            };
            let statement = match statements.entry((Arc::as_ptr(write.table) as usize, upsert)) {
                Entry::Occupied(e) => e.get().clone(),
                Entry::Vacant(e) => {
                    let cql =
                        if upsert { insert_cql(table, self.bucket_column(table).is_some()) } else { delete_cql(table) };
                    e.insert(self.statements.get(&self.session, &self.name, &cql).await?).clone()
                }
            };
            bound.push(Bound { index, statement, values });
            described.push((upsert, write.table.clone(), write.key.to_vec()));
        }
        let letters = self.policy.dead_letters(&self.name, &self.pipeline, &unmappable);
        if !letters.is_empty() {
            self.ensure_dead_letter_table().await?;
        }
        self.ensure_checkpoint_table().await?;
        let timestamp = now_micros().max(self.last_checkpoint_timestamp + 1);
        self.last_checkpoint_timestamp = timestamp;
        Ok(Box::new(CassandraStaged {
            session: self.session.clone(),
            sink: self.name.clone(),
            pipeline: self.pipeline.clone(),
            bound,
            described,
            max_in_flight: self.options.max_in_flight,
            letters,
            checkpoint_statement: self.statements.get(&self.session, &self.name, &checkpoint::store_cql()).await?,
            checkpoint: batch.checkpoint.clone(),
            timestamp,
            policy: self.policy.clone(),
            left_out: self.policy.left_out(&unmappable),
        }))
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        checkpoint::load(&self.session, &self.name, pipeline).await
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        let Some(state) = self.catalog.existing(&self.session, &self.name, &table.id).await? else {
            return Ok(vec![None; keys.len()]);
        };
        // Columns the table has; a schema column it lacks (not added yet) reads as NULL.
        let present: Vec<usize> =
            (0..table.columns.len()).filter(|&i| state.columns.contains_key(&table.columns[i].name)).collect();
        let names: Vec<&str> = present.iter().map(|&i| table.columns[i].name.as_str()).collect();
        let statement = self.statements.get(&self.session, &self.name, &select_cql(table, &names)).await?;
        let bound = keys
            .iter()
            .map(|key| key_values(table, key, &self.stats).map_err(|m| SinkError::definite(&self.name, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let (session, name) = (&self.session, self.name.as_str());
        let results: Vec<Option<CqlRow>> = stream::iter(bound)
            .map(|values| {
                let statement = &statement;
                async move {
                    let doing = format!("reading a row of {}", table.id);
                    let result =
                        session.execute_unpaged(statement, &values).await.map_err(|e| classify(name, &doing, &e))?;
                    let rows =
                        result.into_rows_result().map_err(|e| SinkError::definite(name, format!("{doing}: {e}")))?;
                    rows.maybe_first_row::<CqlRow>().map_err(|e| SinkError::definite(name, format!("{doing}: {e}")))
                }
            })
            .buffered(self.options.max_in_flight.max(1))
            .try_collect()
            .await?;
        Ok(results
            .into_iter()
            .map(|found| {
                found.map(|cql_row| {
                    let mut row = vec![Value::Null; table.columns.len()];
                    for (&i, cell) in present.iter().zip(cql_row.columns) {
                        row[i] = from_cql(&table.columns[i], cell);
                    }
                    row
                })
            })
            .collect())
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        if self.catalog.existing(&self.session, &self.name, &table.id).await?.is_none() {
            return Ok((Vec::new(), None));
        }
        crate::scan::scan_keys(&self.session, &mut self.statements, &self.name, table, cursor, limit).await
    }

    /// `TRUNCATE` of the table when it exists ([`crate::ddl::truncate_table`]); the table, its columns
    /// and indexes stay.
    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        // Read afresh, not from the catalog: another sink may have dropped the table meanwhile.
        if crate::ddl::read_table(&self.session, &self.name, &table.id).await?.is_none() {
            return Ok(());
        }
        crate::ddl::truncate_table(&self.session, &self.name, table).await
    }

    /// `DROP TABLE IF EXISTS` ([`crate::ddl::drop_table`]); the keyspace stays. The sink forgets the table
    /// and its prepared statements, so a later `prepare` or `apply` creates it again.
    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        self.catalog.forget(&table.id);
        self.statements.forget(&crate::naming::qualified(table));
        if crate::ddl::read_table(&self.session, &self.name, &table.id).await?.is_none() {
            return Ok(());
        }
        crate::ddl::drop_table(&self.session, &self.name, table).await
    }

    /// One lightweight transaction (or a few, when the lease changes meanwhile) per table in
    /// `polyrepl.polyrepl_leases` ([`crate::lease`]).
    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError> {
        self.prepare_leases(tables).await?;
        crate::lease::acquire(&self.session, &self.name, tables, request).await
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        self.prepare_leases(tables).await?;
        crate::lease::release(&self.session, &self.name, tables, owner).await
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
        self.prepare_leases(tables).await?;
        crate::lease::read(&self.session, &self.name, tables).await
    }

    fn row_policy(&self) -> &RowPolicy {
        &self.policy
    }

    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
        self.ensure_dead_letter_table().await?;
        crate::dead_letter::load(&self.session, &self.name, pipeline).await
    }
}
