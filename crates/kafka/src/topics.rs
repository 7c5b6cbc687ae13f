//! Topics: creating them, and reading one whole (read_committed) to its end — for checkpoints, leases,
//! dead letters and `verify`, never on the write path.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// polyrepl's own topics: compacted, one partition, keyed by what they hold.
/// Checkpoints of versions that kept every pipeline's in one topic (read when a pipeline's own has none).
pub const SHARED_CHECKPOINTS: &str = "__polyrepl_checkpoints";
pub const LEASES: &str = "__polyrepl_leases";
pub const DEAD_LETTERS: &str = "__polyrepl_dead_letters";

/// The checkpoint topic of `pipeline`: one per pipeline, because a read_committed reader stops at the
/// first transaction still open in a partition — one left open by another pipeline's killed process
/// (open until that pipeline restarts, or for the transaction timeout) would hide this pipeline's newer
/// checkpoints and resume it from an older one. Characters a topic name cannot hold become `_`, and
/// then a hash of the name keeps two names apart.
pub fn checkpoint_topic(pipeline: &str) -> String {
    let safe: String =
        pipeline.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if safe == pipeline && safe.len() <= 200 {
        return format!("{SHARED_CHECKPOINTS}.{safe}");
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = pipeline.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{SHARED_CHECKPOINTS}.{}-{hash:016x}", safe.chars().take(180).collect::<String>())
}

/// A topic to create if absent.
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `None`: the broker's default replication factor.
    pub replication: Option<i32>,
    pub compacted: bool,
}

/// Creates the topics that do not exist yet (an existing one is left as it is).
pub async fn ensure(admin: &AdminClient<DefaultClientContext>, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    if specs.is_empty() {
        return Ok(());
    }
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            let replication = TopicReplication::Fixed(s.replication.unwrap_or(-1));
            let t = NewTopic::new(&s.name, s.partitions, replication);
            if s.compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::warn!(%topic, "topic not created"))
            }
        }
    }
    Ok(())
}

/// One record of a topic read whole.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Logs librdkafka's errors as the default context does, except the end of a partition, which
/// [`read_all`] asks for (`enable.partition.eof`) and which librdkafka also reports as an error.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

/// librdkafka's client errors, logged as the default context does, except a partition's end (which
/// `enable.partition.eof` asks for, and librdkafka also reports as an error).
pub fn log_client_error(error: KafkaError, reason: &str) {
    let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
        || matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF));
    if !end_of_partition {
        tracing::error!(%error, reason, "Kafka client error");
    }
}

impl ConsumerContext for ReaderContext {}

/// Every committed record of `topic`, partition by partition in offset order (blocking: run it on a
/// blocking thread). A topic that does not exist has none.
pub fn read_all(brokers: &str, topic: &str) -> Result<Vec<Record>, KafkaError> {
    let consumer: BaseConsumer<ReaderContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "polyrepl-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // At the end of a partition the broker would otherwise hold each fetch 500 ms.
        .set("fetch.wait.max.ms", "10")
        .create_with_context(ReaderContext)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(vec![]) };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(vec![]);
    }
    let mut assignment = TopicPartitionList::new();
    for p in t.partitions() {
        assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut open: HashSet<i32> = t.partitions().iter().map(|p| p.id()).collect();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            }),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::checkpoint_topic;

    #[test]
    fn each_pipeline_has_a_checkpoint_topic_kafka_accepts() {
        assert_eq!(checkpoint_topic("orders-v2.prod"), "__polyrepl_checkpoints.orders-v2.prod");
        let odd = checkpoint_topic("group:topic:3");
        assert!(odd.starts_with("__polyrepl_checkpoints.group_topic_3-"), "{odd}");
        assert_ne!(odd, checkpoint_topic("group_topic:3"), "names that differ only in odd characters");
        let long = checkpoint_topic(&"x".repeat(300));
        assert!(long.len() <= 249 && long.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{long}");
    }
}
