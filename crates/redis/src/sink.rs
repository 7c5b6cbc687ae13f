//! [`RedisSink`]: the [`Sink`] implementation tying connection, mapping, planning, writing and
//! checkpoints together.
//!
//! Invariants:
//! - `apply` spreads the batch's row writes and stream entries over lanes — on a single server one per
//!   writing connection (`connections`, default 4), on a Redis Cluster one per hash slot — each lane a
//!   sequence of pipelined chunks (MULTI/EXEC for rows of several commands), a key always in the same
//!   lane; then writes the checkpoint alone, only after every lane succeeded (see [`crate::write`]).
//! - Any failure returns an error, and the checkpoint is then the previous one, so the pipeline retries
//!   the whole batch; every write is idempotent, so the retry converges.
//! - `read_rows` decodes with the same mapping that wrote, so a row read back equals the source row
//!   (see [`crate::mapping`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use polyrepl_core::{
    Batch, Checkpoint, DeadLetter, Lease, LeaseRequest, LeftOut, Row, RowPolicy, Sink, SinkError, StagedBatch,
    TableSchema, Value,
};

use crate::checkpoint;
use crate::connection::{connect, writing_connections, RedisConnection};
use crate::error::classify;
use crate::limits::ServerLimits;
use crate::mapping::from_field;
use crate::naming::{check_names, check_table, dead_letter_key, row_key, stream_key};
use crate::options::{check, split_url_options, RedisOptions};
use crate::plan::{plan_within, DeadLetterWrite};
use crate::resp::{Encoded, LaneConnection};
use crate::write::{lane_writes, send_lanes, LaneBuffer, LaneSender, LaneWrites, Lanes};

/// Immediate re-sends of a batch after a transient failure on a single server (see `StagedWrites::send`).
const IMMEDIATE_RETRIES: usize = 2;
/// Keys per pipelined round trip in `read_rows`.
const READ_CHUNK: usize = 1000;
/// `HGETALL`s in flight at once in `read_rows` on a cluster (one key each: keys span slots).
const CLUSTER_READS_IN_FLIGHT: usize = 64;

/// A Redis sink: one HASH per row at `[prefix]DB:TABLE:PK`, the checkpoint at
/// `polyrepl:checkpoint:<pipeline>`, written after the batch's lanes of MULTI/EXEC transactions.
pub struct RedisSink {
    conn: RedisConnection,
    /// The connections a single server's rows are written through (empty on a cluster).
    lanes: Arc<[LaneConnection]>,
    name: String,
    pipeline: String,
    options: RedisOptions,
    /// What the server refuses, read at connect.
    limits: ServerLimits,
    /// What to do with a row the server refuses (`--on-unmappable`).
    policy: RowPolicy,
}

impl RedisSink {
    /// Connects to `url` (`redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=…&ttl=…&stream=…]`, or
    /// `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][?…]` for a Redis Cluster; a `redis://`
    /// server in cluster mode is used as a cluster seed) for the pipeline named `pipeline`, whose
    /// checkpoint `apply` stores. Options in the URL override `options` (see [`crate::options`]). Fails
    /// transiently when nothing answers at the address, definitely when the URL or an option is invalid,
    /// the server is not Redis, or refuses the credentials.
    pub async fn connect(url: &str, pipeline: &str, options: RedisOptions) -> Result<RedisSink, SinkError> {
        let name = crate::connection::sink_name(url);
        let (url, options) = split_url_options(url, options).map_err(|m| SinkError::definite(&name, m))?;
        check(&options).map_err(|m| SinkError::definite(&name, m))?;
        if pipeline.is_empty() {
            return Err(SinkError::definite(
                &name,
                "the pipeline name is empty: it names the checkpoint key polyrepl:checkpoint:<pipeline>",
            ));
        }
        let (mut conn, name) = connect(&url, &options).await?;
        let limits = crate::limits::read(&mut conn, &name).await;
        let lanes = if conn.is_cluster() { Vec::new() } else { writing_connections(&url, &name, &options).await? };
        let lanes = Arc::from(lanes);
        Ok(RedisSink {
            conn,
            lanes,
            name,
            pipeline: pipeline.to_string(),
            options,
            limits,
            policy: RowPolicy::default(),
        })
    }

    /// This sink, treating rows the server refuses ([`crate::limits`]) as `policy` says
    /// ([`polyrepl_core::unmappable`]; dead letters go to `polyrepl:dead_letters:<pipeline>`).
    pub fn with_row_policy(mut self, policy: RowPolicy) -> RedisSink {
        self.policy = policy;
        self
    }

    /// The server's limits read at connect.
    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    /// The pipeline name checkpoints are stored under.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The options in effect (code defaults with the URL's options applied).
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The Redis key of the row of `table` with primary key `key`.
    pub fn row_key(&self, table: &TableSchema, key: &[Value]) -> Result<Vec<u8>, SinkError> {
        row_key(self.options.key_prefix.as_deref(), table, key).map_err(|m| SinkError::definite(&self.name, m))
    }

    /// The connection (a cheap clone of a shared, auto-reconnecting one), e.g. for tools and tests.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// True when connected to a Redis Cluster (batches are then atomic per hash slot only).
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// `writes`, to be sent through `sender` with the checkpoint on the sink's connection.
    fn staged<B: LaneBuffer + 'static, S: LaneSender<B> + 'static>(
        &self,
        writes: LaneWrites<B>,
        sender: S,
        what: String,
        left_out: LeftOut,
    ) -> Box<dyn StagedBatch> {
        Box::new(StagedWrites {
            writes,
            sender,
            conn: self.conn.clone(),
            sink: self.name.clone(),
            what,
            policy: self.policy.clone(),
            left_out,
        })
    }
}

/// A batch's Redis writes, ready to send on the sink's connections (shared handles): RESP bytes on a
/// single server's writing connections, or redis-rs pipelines through a cluster connection.
struct StagedWrites<B, S> {
    writes: LaneWrites<B>,
    sender: S,
    /// Where the checkpoint is written.
    conn: RedisConnection,
    sink: String,
    /// What the batch writes, for errors.
    what: String,
    policy: RowPolicy,
    left_out: LeftOut,
}

#[async_trait]
impl<B: LaneBuffer + 'static, S: LaneSender<B> + 'static> StagedBatch for StagedWrites<B, S> {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        // After an outage a connection answers its first call with a broken pipe or a closed stream;
        // with several connections a batch could meet that on one lane after another: on a transient
        // failure every lane starts afresh and the batch is sent again at once (up to
        // IMMEDIATE_RETRIES times) rather than after a backoff. Re-sending is safe: every write is
        // idempotent.
        let cluster = self.conn.is_cluster();
        let mut retries = 0;
        loop {
            match send_lanes(&self.sender, &self.conn, &self.sink, &self.writes, &self.what).await {
                Err(e) if e.is_transient() && !cluster && retries < IMMEDIATE_RETRIES => {
                    self.sender.reset().await;
                    retries += 1;
                }
                done => break done?,
            }
        }
        self.policy.record_left_out(&self.sink, &self.left_out);
        Ok(())
    }
}

/// The lanes of a single server, shared by the sink and its staged batches.
struct SharedLanes(Arc<[LaneConnection]>);

#[async_trait]
impl LaneSender<Encoded> for SharedLanes {
    async fn send(&self, lane: u16, chunk: &Encoded) -> redis::RedisResult<()> {
        self.0[lane as usize].send(chunk).await
    }

    async fn reset(&self) {
        for lane in self.0.iter() {
            lane.reset().await;
        }
    }
}

#[async_trait]
impl Sink for RedisSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Checks that every table can be keyed, and that no stream key holds a value of another type.
    /// Redis needs nothing created.
    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_table(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
            if self.options.stream.is_some() {
                let key = stream_key(table);
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query_async(&mut self.conn)
                    .await
                    .map_err(|e| classify(&self.name, &format!("checking the stream key {key}"), &e))?;
                if kind != "none" && kind != "stream" {
                    return Err(SinkError::definite(
                        &self.name,
                        format!(
                            "the change-stream key {key} of {} holds a {kind}, not a stream: delete or rename it",
                            table.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Yes: the checkpoint is written after the whole batch, so a larger apply is as safe as a small
    /// one, and it costs one checkpoint write instead of many.
    fn merges_waiting_batches(&self) -> bool {
        true
    }

    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        let (mut planned, unmappable) =
            plan_within(batch, self.options.key_prefix.as_deref(), self.options.stream.is_some(), &self.limits)
                .map_err(|m| SinkError::definite(&self.name, m))?;
        let place = format!("the Redis hash {}", dead_letter_key(&self.pipeline));
        self.policy.check(&self.name, &unmappable, &place)?;
        planned.dead_letters = self
            .policy
            .dead_letters(&self.name, &self.pipeline, &unmappable)
            .into_iter()
            .map(|l| DeadLetterWrite { key: dead_letter_key(&self.pipeline), field: l.id(), json: l.to_json() })
            .collect();
        let what = format!(
            "{} row key(s){} and the checkpoint {} of pipeline '{}'",
            planned.rows.len(),
            if planned.appends.is_empty() {
                String::new()
            } else {
                format!(", {} stream entries", planned.appends.len())
            },
            batch.checkpoint.position,
            self.pipeline
        );
        let left_out = self.policy.left_out(&unmappable);
        if self.conn.is_cluster() {
            let writes = lane_writes::<redis::Pipeline>(
                &planned,
                &self.options,
                &self.pipeline,
                &batch.checkpoint,
                Lanes::PerSlot,
            );
            return Ok(self.staged(writes, self.conn.clone(), what, left_out));
        }
        let lanes = Lanes::Connections(self.lanes.len());
        let writes = lane_writes::<Encoded>(&planned, &self.options, &self.pipeline, &batch.checkpoint, lanes);
        Ok(self.staged(writes, SharedLanes(self.lanes.clone()), what, left_out))
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        checkpoint::load(&mut self.conn, &self.name, pipeline).await
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        check_table(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
        let redis_keys = keys.iter().map(|k| self.row_key(table, k)).collect::<Result<Vec<_>, _>>()?;
        if self.conn.is_cluster() {
            let reads: Vec<_> = redis_keys
                .into_iter()
                .map(|key| {
                    let mut conn = self.conn.clone();
                    let doing = format!("reading row {} of {}", String::from_utf8_lossy(&key), table.id);
                    let name = self.name.clone();
                    async move {
                        redis::cmd("HGETALL")
                            .arg(&key)
                            .query_async::<HashMap<Vec<u8>, Vec<u8>>>(&mut conn)
                            .await
                            .map_err(|e| classify(&name, &doing, &e))
                    }
                })
                .collect();
            let hashes: Vec<Result<HashMap<Vec<u8>, Vec<u8>>, SinkError>> =
                futures::stream::iter(reads).buffered(CLUSTER_READS_IN_FLIGHT).collect().await;
            return hashes
                .into_iter()
                .map(|hash| hash.map(|hash| (!hash.is_empty()).then(|| row_of(table, &hash))))
                .collect();
        }
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in redis_keys.chunks(READ_CHUNK) {
            let mut p = redis::pipe();
            for key in chunk {
                p.cmd("HGETALL").arg(key);
            }
            let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = p
                .query_async(&mut self.conn)
                .await
                .map_err(|e| classify(&self.name, &format!("reading {} row(s) of {}", chunk.len(), table.id), &e))?;
            rows.extend(hashes.into_iter().map(|hash| (!hash.is_empty()).then(|| row_of(table, &hash))));
        }
        Ok(rows)
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        check_table(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
        crate::scan::scan_keys(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), table, cursor, limit)
            .await
    }

    /// Deletes the table's row hashes (SCAN + UNLINK, every master of a cluster); keeps its change
    /// stream ([`crate::layout`]).
    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
        crate::layout::delete_rows(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), table).await
    }

    /// Deletes the table's row hashes and its change stream ([`crate::layout`]).
    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
        crate::layout::delete_rows(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), table).await?;
        crate::layout::delete_stream(&mut self.conn, &self.name, table).await
    }

    /// One Lua script per table on its lease key ([`crate::lease`]).
    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::acquire(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), tables, request).await
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::release(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), tables, owner).await
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::read(&mut self.conn, &self.name, self.options.key_prefix.as_deref(), tables).await
    }

    fn row_policy(&self) -> &RowPolicy {
        &self.policy
    }

    /// `HGETALL polyrepl:dead_letters:<pipeline>`.
    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
        let key = dead_letter_key(pipeline);
        let doing = format!("reading the dead letters of pipeline '{pipeline}' (HGETALL {key})");
        let records: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| classify(&self.name, &doing, &e))?;
        records
            .values()
            .map(|json| {
                DeadLetter::from_json(json).map_err(|e| SinkError::definite(&self.name, format!("{doing}: {e}")))
            })
            .collect()
    }
}

impl RedisSink {
    fn check_lease_names(&self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_names(self.options.key_prefix.as_deref(), table).map_err(|m| SinkError::definite(&self.name, m))?;
        }
        Ok(())
    }
}

/// Decodes a stored hash into a row in column order (a missing field reads as NULL).
fn row_of(table: &TableSchema, hash: &HashMap<Vec<u8>, Vec<u8>>) -> Row {
    table
        .columns
        .iter()
        .map(|column| match hash.get(column.name.as_bytes()) {
            Some(bytes) => from_field(column, bytes),
            None => Value::Null,
        })
        .collect()
}
