//! Reading change events as a member of a consumer group (`polyrepl apply`): Kafka spreads the
//! partitions over the group's workers and moves them when one joins or leaves.
//!
//! Invariants:
//! - read_committed: only events of committed transactions are seen (polyrepl's capture writes each
//!   batch in one transaction);
//! - the group's committed offsets are for monitoring tools and a starting point; where each sink
//!   resumes is the offset it stored itself, with the data (the caller's job);
//! - revoked partitions are reported by [`GroupReader::take_revoked`] after the `recv` during which the
//!   rebalance happened: the caller drops what it holds of them, unapplied, since their new owner
//!   reads them again from the sinks' offsets; a message of a partition not assigned (fetched before
//!   the rebalance) is never handed out, so two workers never apply one partition at once.

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records the partitions a rebalance takes away and gives.
#[derive(Default)]
pub struct GroupContext {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    assigned: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::topics::log_client_error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked");
            let mut assigned = self.assigned.lock().expect("assigned");
            for e in tpl.elements() {
                let id = (e.topic().to_string(), e.partition());
                assigned.remove(&id);
                revoked.push(id);
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked from this worker");
        }
    }

    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut assigned = self.assigned.lock().expect("assigned");
            for e in tpl.elements() {
                assigned.insert((e.topic().to_string(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned to this worker");
        }
    }
}

/// One event as read: where it is, its key and value (`None`: a tombstone).
pub struct Event {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A member of consumer group `group` reading the topics that match `pattern` (a regular expression).
pub struct GroupReader {
    consumer: StreamConsumer<GroupContext>,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    assigned: Arc<Mutex<HashSet<(String, i32)>>>,
}

/// A topic glob (`polyrepl.shop.*`) as the regular expression librdkafka subscribes with (`^…$`).
pub fn topic_pattern(glob: &str) -> String {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    re
}

impl GroupReader {
    pub fn join(brokers: &str, group: &str, topics_glob: &str) -> Result<GroupReader, KafkaError> {
        let context = GroupContext::default();
        let (revoked, assigned) = (context.revoked.clone(), context.assigned.clone());
        let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(context)?;
        consumer.subscribe(&[&topic_pattern(topics_glob)])?;
        Ok(GroupReader { consumer, revoked, assigned })
    }

    /// The next event, or `None` after `wait` without one. A topic that does not exist yet (the
    /// capture has not created it) or a broker that went away is waited for: the consumer recovers by
    /// itself.
    pub async fn next(&self, wait: Duration) -> Result<Option<Event>, KafkaError> {
        match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => Ok(None),
            Ok(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                tracing::debug!("a subscribed topic does not exist yet");
                tokio::time::sleep(wait).await;
                Ok(None)
            }
            Ok(Err(e)) if e.rdkafka_error_code().is_some_and(|c| c != RDKafkaErrorCode::Fatal) => {
                tracing::warn!(error = %e, "reading from Kafka failed; the consumer retries");
                tokio::time::sleep(wait).await;
                Ok(None)
            }
            Ok(Err(e)) => Err(e),
            // A message fetched before a rebalance took its partition away is its new owner's.
            Ok(Ok(m)) if !self.assigned.lock().expect("assigned").contains(&(m.topic().to_string(), m.partition())) => {
                tracing::debug!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "a message of a partition no longer assigned is left alone"
                );
                Ok(None)
            }
            Ok(Ok(m)) => Ok(Some(event(&m))),
        }
    }

    /// The partitions taken away since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked"))
    }

    /// Commits `next_offset` of `topic`/`partition` as the group's position (for monitoring tools and
    /// as a starting point; asynchronous).
    pub fn commit(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset))?;
        self.consumer.commit(&tpl, CommitMode::Async)
    }
}

fn event(m: &BorrowedMessage<'_>) -> Event {
    Event {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_patterns() {
        assert_eq!(topic_pattern("polyrepl.shop.*"), "^polyrepl\\.shop\\..*$");
        assert_eq!(topic_pattern("cdc-main.db?.t"), "^cdc-main\\.db.\\.t$");
    }
}
