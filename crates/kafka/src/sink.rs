//! [`KafkaSink`]: the [`Sink`] methods on Kafka.

use crate::decode;
use crate::envelope::{EventFormat, Origin};
use crate::options::{self, KafkaOptions};
use crate::topics::{self, Record, TopicSpec, DEAD_LETTERS, LEASES, SHARED_CHECKPOINTS};
use async_trait::async_trait;
use polyrepl_core::{
    Batch, Checkpoint, DeadLetter, Lease, LeaseRequest, Op, Row, RowPolicy, Sink, SinkError, StagedBatch, TableId,
    TableSchema, Unmappable, Value, Written,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde_json::Value as J;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A message the broker takes at most (the producer's default `message.max.bytes`); a larger row is
/// one this sink cannot hold (`--on-unmappable`).
const MAX_MESSAGE_BYTES: usize = 1_000_000;
/// The topic prefix when the URL names none (Debezium's `topic.prefix`).
pub const DEFAULT_PREFIX: &str = "polyrepl";
/// How long a transaction step may take before the batch is retried.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes each batch as Debezium change events into per-table topics, in one Kafka transaction with
/// the batch's checkpoint.
pub struct KafkaSink {
    name: String,
    pipeline: String,
    /// This pipeline's checkpoint topic ([`topics::checkpoint_topic`]).
    checkpoints: String,
    options: KafkaOptions,
    format: EventFormat,
    producer: FutureProducer,
    /// Idempotent, not transactional: leases are not written with data, and any connection may take
    /// them without fencing the pipeline's producer.
    lease_producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist, with their partition counts where looked up.
    partitions: HashMap<String, i32>,
    /// The last [`KafkaSink::table_state`] of each topic read, with the partitions' high watermarks then:
    /// unchanged watermarks mean nothing was written since (a commit or abort marker moves them too),
    /// so `verify`'s chunk-by-chunk reads cost one look-up each, not a read of the whole topic.
    states: HashMap<String, (Vec<i64>, Arc<TableState>)>,
    watermarks: Option<Arc<BaseConsumer>>,
    policy: RowPolicy,
    /// Transactions are initialised (by `prepare` or the first write, never by a connection that only
    /// reads, such as `verify`'s: it must not fence the running pipeline's producer).
    transactional: bool,
}

/// A topic's rows: key payload text → (key payload, row payload).
type TableState = BTreeMap<String, (J, J)>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("a blocking Kafka call panicked")
}

impl KafkaSink {
    /// Connects to the brokers of `url` for pipeline `pipeline`. `prepare` (or the first write)
    /// initialises the transactional id `polyrepl-<pipeline>`, which fences any other producer of the same pipeline (a
    /// zombie run) and aborts its unfinished transaction.
    pub async fn connect(url: &str, pipeline: &str) -> Result<KafkaSink, SinkError> {
        let name = options::sink_name(url);
        let options = options::parse(url).map_err(|m| SinkError::definite(&name, m))?;
        if pipeline.is_empty() {
            return Err(SinkError::definite(&name, "the pipeline name is empty: it names the transactional id"));
        }
        let prefix = options.topic_prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        let format = EventFormat { prefix, schemas: options.schemas };
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .set("transactional.id", format!("polyrepl-{pipeline}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .set("transaction.timeout.ms", "60000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(|e| SinkError::definite(&name, format!("creating the Kafka producer: {e}")))?;
        let lease_producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| SinkError::definite(&name, format!("creating the Kafka producer: {e}")))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .create()
            .map_err(|e| SinkError::definite(&name, format!("creating the Kafka admin client: {e}")))?;
        let probe = producer.clone();
        blocking(move || probe.client().fetch_metadata(None, Duration::from_secs(10)).map(|_| ())).await.map_err(
            |e| {
                SinkError::transient(
                    &name,
                    format!(
                        "cannot reach Kafka at {}: {e} — is Kafka running there? (polyrepl stack up --service kafka)",
                        options.brokers
                    ),
                )
            },
        )?;
        let mut sink = KafkaSink {
            name,
            pipeline: pipeline.to_string(),
            checkpoints: topics::checkpoint_topic(pipeline),
            options,
            format,
            producer,
            lease_producer,
            admin,
            partitions: HashMap::new(),
            states: HashMap::new(),
            watermarks: None,
            policy: RowPolicy::default(),
            transactional: false,
        };
        let own = [sink.checkpoints.as_str(), LEASES, DEAD_LETTERS].map(|t| TopicSpec {
            name: t.to_string(),
            partitions: 1,
            replication: sink.options.replication,
            compacted: true,
        });
        topics::ensure(&sink.admin, &own).await.map_err(|e| sink.error("creating polyrepl's topics", e))?;
        for t in [sink.checkpoints.clone().as_str(), LEASES, DEAD_LETTERS] {
            sink.partitions.insert(t.to_string(), 1);
        }
        Ok(sink)
    }

    /// Treats rows this sink cannot hold as `policy` says.
    pub fn with_row_policy(mut self, policy: RowPolicy) -> KafkaSink {
        self.policy = policy;
        self
    }

    /// The topic of `table`.
    pub fn topic(&self, table: &TableSchema) -> String {
        self.format.topic(table)
    }

    fn error(&self, what: &str, e: KafkaError) -> SinkError {
        classify(&self.name, &self.pipeline, what, e)
    }

    /// Runs `messages` (topic, partition, key, value) as one transaction; on failure, aborts it.
    async fn transaction(&mut self, messages: Vec<Message>) -> Result<(), SinkError> {
        self.start_transactions().await?;
        let p = self.producer.clone();
        blocking(move || p.begin_transaction()).await.map_err(|e| self.error("beginning a transaction", e))?;
        match send_all(&self.producer, &messages).await {
            Ok(()) => {
                let p = self.producer.clone();
                match blocking(move || p.commit_transaction(TRANSACTION_TIMEOUT)).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.abort("committing the transaction", e).await),
                }
            }
            Err(e) => Err(self.abort("sending the batch", e).await),
        }
    }

    /// Initialises the transactional id once: the broker first finishes what a killed producer of this
    /// pipeline left (commits a transaction it was committing, aborts an open one) and fences one still
    /// running. Until then a read_committed reader stops before that transaction, so the checkpoint is
    /// read only after this ([`Sink::prepare`] runs it).
    async fn start_transactions(&mut self) -> Result<(), SinkError> {
        if !self.transactional {
            let p = self.producer.clone();
            blocking(move || p.init_transactions(TRANSACTION_TIMEOUT))
                .await
                .map_err(|e| self.error("starting transactions", e))?;
            self.transactional = true;
        }
        Ok(())
    }

    /// Aborts the open transaction after `e` (a fatal error leaves nothing to abort) and says why.
    async fn abort(&self, what: &str, e: KafkaError) -> SinkError {
        let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        if !fatal {
            let p = self.producer.clone();
            if let Err(abort) = blocking(move || p.abort_transaction(TRANSACTION_TIMEOUT)).await {
                tracing::warn!(sink = %self.name, error = %abort, "aborting the Kafka transaction failed");
            }
        }
        self.error(what, e)
    }

    /// The checkpoint record of this pipeline.
    fn checkpoint_message(&self, checkpoint: &Checkpoint) -> Message {
        Message::keyed(&self.checkpoints, self.pipeline.as_bytes().to_vec(), Some(checkpoint.to_json().into_bytes()))
    }

    /// Partition count of `topic` (looked up once).
    async fn partition_count(&mut self, topic: &str) -> Result<i32, SinkError> {
        if let Some(&n) = self.partitions.get(topic) {
            return Ok(n);
        }
        let p = self.producer.clone();
        let t = topic.to_string();
        let n = blocking(move || {
            p.client()
                .fetch_metadata(Some(&t), Duration::from_secs(10))
                .map(|m| m.topics().iter().find(|x| x.name() == t).map_or(0, |x| x.partitions().len() as i32))
        })
        .await
        .map_err(|e| self.error("reading topic metadata", e))?;
        if n > 0 {
            self.partitions.insert(topic.to_string(), n);
        }
        Ok(n)
    }

    /// Every committed record of `topic`.
    async fn read_topic(&self, topic: &str) -> Result<Vec<Record>, SinkError> {
        let (brokers, t) = (self.options.brokers.clone(), topic.to_string());
        blocking(move || topics::read_all(&brokers, &t))
            .await
            .map_err(|e| self.error(&format!("reading topic {topic}"), e))
    }

    /// The client that looks up high watermarks, created on first use: read_uncommitted, because a
    /// read_committed look-up answers the last stable offset, which moves only once the commit markers
    /// are written — after `commit_transaction` has returned.
    fn watermarks(&mut self) -> Result<Arc<BaseConsumer>, SinkError> {
        if let Some(w) = &self.watermarks {
            return Ok(w.clone());
        }
        let w: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.options.brokers)
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|e| self.definite(format!("creating the Kafka watermark client: {e}")))?;
        Ok(self.watermarks.insert(Arc::new(w)).clone())
    }

    /// [`KafkaSink::read_table_state`], reused while the topic's high watermarks stay the same.
    async fn table_state(&mut self, table: &TableSchema) -> Result<Arc<TableState>, SinkError> {
        let topic = self.topic(table);
        let partitions = self.partition_count(&topic).await?;
        let (watcher, t) = (self.watermarks()?, topic.clone());
        let marks = blocking(move || {
            (0..partitions)
                .map(|i| watcher.fetch_watermarks(&t, i, Duration::from_secs(10)).map(|(_, high)| high))
                .collect::<Result<Vec<i64>, KafkaError>>()
        })
        .await
        .map_err(|e| self.error(&format!("reading the watermarks of {topic}"), e))?;
        if let Some((held, state)) = self.states.get(&topic) {
            if *held == marks {
                return Ok(state.clone());
            }
        }
        let state = Arc::new(self.read_table_state(table).await?);
        self.states.insert(topic, (marks, state.clone()));
        Ok(state)
    }

    /// What `table`'s topic holds now: key payload text → (key payload, row payload), the latest event
    /// of each key; deletes, tombstones and truncates applied.
    async fn read_table_state(&self, table: &TableSchema) -> Result<TableState, SinkError> {
        let topic = self.topic(table);
        let mut state: BTreeMap<String, (i32, J, J)> = BTreeMap::new();
        for r in self.read_topic(&topic).await? {
            let value = match &r.value {
                Some(v) => Some(
                    serde_json::from_slice::<J>(v)
                        .map_err(|e| self.definite(format!("{topic}: a message that is not JSON: {e}")))?,
                ),
                None => None,
            };
            let op = value.as_ref().map(|v| decode::payload(v)["op"].as_str().unwrap_or("").to_string());
            if op.as_deref() == Some("t") {
                state.retain(|_, (p, _, _)| *p != r.partition);
                continue;
            }
            let Some(key) = &r.key else { continue };
            let key: J = serde_json::from_slice(key)
                .map_err(|e| self.definite(format!("{topic}: a key that is not JSON: {e}")))?;
            let key = decode::payload(&key).clone();
            let text = key.to_string();
            match value.as_ref().map(|v| decode::payload(v)["after"].clone()) {
                Some(after) if !after.is_null() => {
                    state.insert(text, (r.partition, key, after));
                }
                _ => {
                    state.remove(&text);
                }
            }
        }
        Ok(state.into_iter().map(|(k, (_, key, row))| (k, (key, row))).collect())
    }

    fn definite(&self, message: String) -> SinkError {
        SinkError::definite(&self.name, message)
    }

    /// Leases in the lease topic by sink table (the latest record of each; released ones are absent).
    async fn leases(&self) -> Result<HashMap<String, StoredLease>, SinkError> {
        let mut out = HashMap::new();
        for r in self.read_topic(LEASES).await? {
            let Some(key) = r.key.and_then(|k| String::from_utf8(k).ok()) else { continue };
            match r.value.and_then(|v| serde_json::from_slice::<StoredLease>(&v).ok()) {
                Some(l) => out.insert(key, l),
                None => out.remove(&key),
            };
        }
        Ok(out)
    }
}

/// Enqueues every message (waiting while librdkafka's queue is full), then waits for every delivery, so
/// that a transaction's commit finds nothing in flight (its own flush would wait in 100 ms slices).
pub async fn send_all(producer: &FutureProducer, messages: &[Message]) -> Result<(), KafkaError> {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
    for m in messages {
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&m.topic);
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &m.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = m.partition {
                record = record.partition(p);
            }
            match producer.send_result(record) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// A message to send ([`send_all`]); `partition` `None`: the producer's partitioner picks it from the key.
pub struct Message {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl Message {
    fn keyed(topic: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> Message {
        Message { topic: topic.to_string(), partition: None, key: Some(key), value }
    }
}

/// A lease as the lease topic stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredLease {
    database: String,
    table: String,
    owner: String,
    holder: String,
    expires_ms: i64,
}

/// A Kafka error → a sink error: fenced or fatal ones are definite (with what to do), the rest are
/// retried.
fn classify(sink: &str, pipeline: &str, what: &str, e: KafkaError) -> SinkError {
    if let KafkaError::Transaction(t) = &e {
        if t.code() == RDKafkaErrorCode::ProducerFenced || t.code() == RDKafkaErrorCode::InvalidProducerEpoch {
            return SinkError::definite(
                sink,
                format!(
                    "{what}: another polyrepl process took over pipeline '{pipeline}' on this Kafka (its transactional \
                     id polyrepl-{pipeline} fenced this one): {e}. Stop one of them"
                ),
            );
        }
        if t.is_fatal() {
            return SinkError::definite(sink, format!("{what}: {e}"));
        }
    }
    if let KafkaError::AdminOp(code) | KafkaError::MessageProduction(code) = &e {
        if matches!(
            code,
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::PolicyViolation
        ) {
            return SinkError::definite(sink, format!("{what}: {e}"));
        }
    }
    SinkError::transient(sink, format!("{what}: {e}"))
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        let specs: Vec<TopicSpec> = tables
            .iter()
            .map(|t| self.topic(t))
            .filter(|t| !self.partitions.contains_key(t))
            .map(|name| TopicSpec {
                name,
                partitions: self.options.partitions,
                replication: self.options.replication,
                compacted: false,
            })
            .collect();
        topics::ensure(&self.admin, &specs).await.map_err(|e| self.error("creating the table topics", e))?;
        for s in &specs {
            self.partition_count(&s.name).await?;
        }
        // Only a writer prepares (a run, an apply worker; never verify): it owns the transactional id.
        self.start_transactions().await
    }

    // Not pipelined: a batch and its checkpoint are one Kafka transaction of one transactional
    // producer, written here; the next batch's transaction cannot begin before this one commits.
    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        let snapshot = batch.checkpoint.snapshot.is_some();
        let now = now_ms();
        let mut messages = Vec::with_capacity(batch.changes.len() + 1);
        let mut unmappable = Vec::new();
        // Every change, in order: a topic keeps each key's history, not only its last image.
        for change in &batch.changes {
            if change.key.iter().any(|v| matches!(v, Value::Null)) {
                return Err(self.definite(format!(
                    "table {}: a change with a NULL primary-key value cannot be keyed (position {})",
                    change.table.id, change.position
                )));
            }
            let topic = self.topic(&change.table);
            let key = self.format.key(change);
            let value = self.format.value(&Origin { change, snapshot }, now);
            if key.len() + value.len() > MAX_MESSAGE_BYTES && change.op != Op::Delete {
                unmappable.push(Unmappable {
                    change,
                    reason: format!(
                        "its change event is {} bytes, over the {MAX_MESSAGE_BYTES} bytes of a Kafka message",
                        key.len() + value.len()
                    ),
                    remove_key: true,
                });
                continue;
            }
            let tombstone = change.op == Op::Delete && self.options.tombstones;
            messages.push(Message::keyed(&topic, key.clone(), Some(value)));
            if tombstone {
                messages.push(Message::keyed(&topic, key, None));
            }
        }
        self.policy.check(&self.name, &unmappable, DEAD_LETTERS)?;
        // A row left out: its key is deleted (a `d` event), so no older image stays.
        for u in &unmappable {
            let deleted = polyrepl_core::Change { op: Op::Delete, after: None, ..u.change.clone() };
            let topic = self.topic(&u.change.table);
            messages.push(Message::keyed(
                &topic,
                self.format.key(&deleted),
                Some(self.format.value(&Origin { change: &deleted, snapshot: false }, now)),
            ));
        }
        for letter in self.policy.dead_letters(&self.name, &self.pipeline, &unmappable) {
            messages.push(Message::keyed(DEAD_LETTERS, letter.id().into_bytes(), Some(letter.to_json().into_bytes())));
        }
        messages.push(self.checkpoint_message(&batch.checkpoint));
        self.transaction(messages).await?;
        self.policy.record(&self.name, &unmappable);
        Ok(Box::new(Written))
    }

    fn merges_waiting_batches(&self) -> bool {
        true
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        let mut last = None;
        let mut topic = self.checkpoints.clone();
        for from in [self.checkpoints.clone(), SHARED_CHECKPOINTS.to_string()] {
            for r in self.read_topic(&from).await? {
                if r.key.as_deref() == Some(pipeline.as_bytes()) {
                    last = r.value;
                }
            }
            topic = from;
            if last.is_some() {
                break;
            }
        }
        last.map(|v| {
            let text = String::from_utf8_lossy(&v);
            Checkpoint::from_json(&text).map_err(|e| {
                self.definite(format!("checkpoint of pipeline '{pipeline}' in {topic} is not readable: {e}"))
            })
        })
        .transpose()
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        let state = self.table_state(table).await?;
        keys.iter()
            .map(|key| match state.get(&crate::envelope::key_payload(table, key).to_string()) {
                None => Ok(None),
                Some((_, row)) => decode::row(table, row).map(Some).map_err(|e| self.definite(e)),
            })
            .collect()
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        _cursor: Option<Vec<u8>>,
        _limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        // A topic has no index: it is read whole, once, and every key comes in one page.
        let state = self.table_state(table).await?;
        let keys = state
            .values()
            .map(|(key, _)| decode::key(table, key).map_err(|e| self.definite(e)))
            .collect::<Result<_, _>>()?;
        Ok((keys, None))
    }

    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        // Debezium's truncate event (`op` `t`, no key) in every partition: a reader drops what the
        // partition held before it. Topics keep their history; compaction does not remove old keys.
        let topic = self.topic(table);
        let partitions = self.partition_count(&topic).await?;
        let event = serde_json::json!({
            "before": null, "after": null, "op": "t", "ts_ms": now_ms(), "transaction": null,
            "source": {"connector": "mysql", "name": self.format.prefix, "db": table.id.database, "table": table.id.table},
        });
        let value = serde_json::to_vec(&event).expect("JSON serialises");
        let messages = (0..partitions)
            .map(|p| Message { topic: topic.clone(), partition: Some(p), key: None, value: Some(value.clone()) })
            .collect();
        self.transaction(messages).await
    }

    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        // The topic stays (Debezium keeps it too, and consumers may still read it); its rows are gone.
        if self.partition_count(&self.topic(table)).await? == 0 {
            return Ok(());
        }
        self.truncate_table(table).await
    }

    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError> {
        // Kafka has no compare-and-set: the lease topic is read, then written in a transaction. Two
        // pipelines starting within the same instant could both win (see the crate doc).
        let held = self.leases().await?;
        let now = now_ms();
        let mut others = Vec::new();
        let mut messages = Vec::new();
        for table in tables {
            let topic = self.topic(table);
            if let Some(l) =
                held.get(&topic).filter(|l| l.owner != request.owner && l.expires_ms > now && !request.take_over)
            {
                others.push(Lease {
                    table: table.id.clone(),
                    owner: l.owner.clone(),
                    holder: l.holder.clone(),
                    expires_in: Duration::from_millis((l.expires_ms - now).max(0) as u64),
                });
                continue;
            }
            let lease = StoredLease {
                database: table.id.database.clone(),
                table: table.id.table.clone(),
                owner: request.owner.clone(),
                holder: request.holder.clone(),
                expires_ms: now + request.ttl.as_millis() as i64,
            };
            messages.push(Message::keyed(LEASES, topic.into_bytes(), Some(serde_json::to_vec(&lease).expect("JSON"))));
        }
        if !messages.is_empty() {
            send_all(&self.lease_producer, &messages).await.map_err(|e| self.error("writing leases", e))?;
        }
        Ok(others)
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        let held = self.leases().await?;
        let messages: Vec<Message> = tables
            .iter()
            .map(|t| self.topic(t))
            .filter(|topic| held.get(topic).is_some_and(|l| l.owner == owner))
            .map(|topic| Message::keyed(LEASES, topic.into_bytes(), None))
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        send_all(&self.lease_producer, &messages).await.map_err(|e| self.error("releasing leases", e))
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
        let held = self.leases().await?;
        let now = now_ms();
        let wanted: HashSet<String> = tables.iter().map(|t| self.topic(t)).collect();
        Ok(held
            .into_iter()
            .filter(|(topic, l)| wanted.contains(topic) && l.expires_ms > now)
            .map(|(_, l)| Lease {
                table: TableId::new(&l.database, &l.table),
                owner: l.owner,
                holder: l.holder,
                expires_in: Duration::from_millis((l.expires_ms - now) as u64),
            })
            .collect())
    }

    fn row_policy(&self) -> &RowPolicy {
        &self.policy
    }

    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
        let mut by_id = BTreeMap::new();
        for r in self.read_topic(DEAD_LETTERS).await? {
            let Some(id) = r.key else { continue };
            match r.value.and_then(|v| DeadLetter::from_json(&String::from_utf8_lossy(&v)).ok()) {
                Some(l) => by_id.insert(id, l),
                None => by_id.remove(&id),
            };
        }
        Ok(by_id.into_values().filter(|l| l.pipeline == pipeline).collect())
    }
}
