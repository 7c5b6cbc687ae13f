//! `bench --kafka`: the scale-out path measured against the broker's own limits, on the same events.
//!
//! - capture: `run` streams the pre-generated `cdc` binlog range into the Kafka sink (one Kafka
//!   transaction per batch with its checkpoint), changes/s;
//! - raw produce / raw consume: the very messages capture wrote, sent again by a plain idempotent
//!   producer (acks=all, no transactions) and read back by one read_committed consumer — the broker's
//!   and librdkafka's limit on this machine for these messages;
//! - apply: `polyrepl apply` workers of one consumer group (1, then 2, in this process) reading
//!   capture's topic into every --sinks sink, changes/s from the first batch applied to the last (the
//!   group join before it is not counted);
//! - run: the same range streamed by one `run` process straight into the same sinks, for comparison.
//!
//! Topics get a prefix of their own per round (`<bench db>_…`) and are deleted at the end.

use super::data::Generated;
use super::phases::{self, prestore_checkpoint_in, run_config_into, run_to_end};
use super::report::Measured;
use super::Bench;
use anyhow::{anyhow, bail, Context, Result};
use polyrepl_kafka::sink::{send_all, Message};
use polyrepl_kafka::topics::{self, Record, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Partitions of every bench topic: room for two workers.
const PARTITIONS: i32 = 4;

/// What `bench --kafka` measured.
#[derive(Debug, Serialize)]
pub struct KafkaFigures {
    /// Row changes in the streamed range, and messages capture wrote for them (tombstones included).
    pub changes: u64,
    pub messages: u64,
    /// Mean key + value bytes of a message.
    pub message_bytes: f64,
    pub capture_changes_per_s: Measured,
    pub raw_produce_messages_per_s: Measured,
    pub raw_consume_messages_per_s: Measured,
    /// Capture's messages/s over the raw producer's.
    pub capture_over_raw_produce: f64,
    /// `apply` into every sink, by number of workers.
    pub apply: Vec<ApplyFigures>,
    /// `run` straight into the same sinks (no Kafka), changes/s.
    pub run_changes_per_s: Measured,
    pub sinks: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ApplyFigures {
    pub workers: usize,
    pub changes_per_s: Measured,
    /// Messages/s over the raw consumer's.
    pub over_raw_consume: f64,
}

/// All the phases of `bench --kafka`; the data phase has run.
pub async fn measure(bench: &Bench, generated: &Generated) -> Result<KafkaFigures> {
    let brokers =
        polyrepl_kafka::options::parse(&bench.args.kafka_url).map_err(|e| anyhow!("--kafka-url: {e}"))?.brokers;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().context("creating a Kafka admin client")?;
    let mut created = Vec::new();
    let outcome = measure_all(bench, generated, &brokers, &admin, &mut created).await;
    if !bench.args.keep {
        let names: Vec<&str> = created.iter().map(String::as_str).collect();
        if let Err(e) = admin.delete_topics(&names, &AdminOptions::new()).await {
            eprintln!("warning: the bench topics were not deleted: {e}");
        }
    }
    outcome
}

async fn measure_all(
    bench: &Bench,
    generated: &Generated,
    brokers: &str,
    admin: &AdminClient<DefaultClientContext>,
    created: &mut Vec<String>,
) -> Result<KafkaFigures> {
    let args = &bench.args;
    let changes = generated.cdc_changes;
    // Capture, once per round, each into topics of its own.
    let mut capture = Vec::new();
    let mut topic = String::new();
    for round in 1..=args.rounds {
        let prefix = format!("{}_c{round}", bench.db);
        topic = format!("{prefix}.{}.cdc", bench.db);
        let url = format!("{}?topic_prefix={prefix}&partitions={PARTITIONS}", args.kafka_url);
        let name = bench.pipeline("kafka_capture");
        created.extend([topic.clone(), topics::checkpoint_topic(&name)]);
        prestore_checkpoint_in(&url, &name, &generated.cdc_from).await?;
        let (elapsed, metrics) = run_to_end(run_config_into(bench, "cdc", vec![url], &name, true)?).await?;
        let read = metrics.source.changes_read.load(Relaxed);
        if read != changes {
            bail!("the capture run read {read} changes, expected {changes}");
        }
        capture.push(changes as f64 / elapsed.as_secs_f64());
        bench.note(format!(
            "kafka capture round {round}: {:.0} changes/s ({:.2} s)",
            capture[round - 1],
            elapsed.as_secs_f64()
        ));
    }
    // The broker's own rates on the last capture's messages.
    let mut consume = Vec::new();
    let mut records = Vec::new();
    for round in 1..=args.rounds {
        let (b, t) = (brokers.to_string(), topic.clone());
        let started = Instant::now();
        records = tokio::task::spawn_blocking(move || topics::read_all(&b, &t)).await??;
        consume.push(records.len() as f64 / started.elapsed().as_secs_f64());
        bench.note(format!("kafka raw consume round {round}: {:.0} messages/s", consume[round - 1]));
    }
    if records.is_empty() {
        bail!("capture wrote no message to {topic}");
    }
    let messages = records.len() as u64;
    let bytes: usize =
        records.iter().map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)).sum();
    let mut produce = Vec::new();
    for round in 1..=args.rounds {
        let raw_topic = format!("{}_raw{round}", bench.db);
        created.push(raw_topic.clone());
        let spec = TopicSpec { name: raw_topic.clone(), partitions: PARTITIONS, replication: None, compacted: false };
        topics::ensure(admin, &[spec]).await.context("creating the raw topic")?;
        produce.push(raw_produce(brokers, &raw_topic, &records).await?);
        bench.note(format!("kafka raw produce round {round}: {:.0} messages/s", produce[round - 1]));
    }
    // Where each partition's last message is: apply is done when the group has committed past it.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &records {
        let end = ends.entry(r.partition).or_default();
        *end = (*end).max(r.offset + 1);
    }
    let mut apply = Vec::new();
    let consume_median = super::report::median(&consume);
    for workers in [1, 2] {
        let mut rounds = Vec::new();
        for round in 1..=args.rounds {
            for &kind in &args.sinks {
                phases::reset_sink(bench, kind, "cdc").await?;
            }
            let group = format!("{}_apply{workers}_{round}", bench.db);
            let rate = apply_round(bench, brokers, &topic, &group, workers, &ends, changes).await?;
            bench.note(format!("kafka apply, {workers} worker(s), round {round}: {rate:.0} changes/s"));
            rounds.push(rate);
        }
        let changes_per_s = Measured::from(rounds);
        let over_raw_consume = changes_per_s.median * messages as f64 / changes as f64 / consume_median;
        apply.push(ApplyFigures { workers, changes_per_s, over_raw_consume });
    }
    let run = phases::cdc(bench, &args.sinks, generated).await.context("run straight into the sinks")?;
    let capture = Measured::from(capture);
    let produce = Measured::from(produce);
    Ok(KafkaFigures {
        changes,
        messages,
        message_bytes: bytes as f64 / messages as f64,
        capture_over_raw_produce: capture.median * messages as f64 / changes as f64 / produce.median,
        capture_changes_per_s: capture,
        raw_produce_messages_per_s: produce,
        raw_consume_messages_per_s: Measured::from(consume),
        apply,
        run_changes_per_s: Measured::from(run),
        sinks: args.sinks.iter().map(|k| k.label()).collect(),
    })
}

/// Sends `records` to `topic` with a plain idempotent producer (acks=all, the sink's linger); messages/s.
async fn raw_produce(brokers: &str, topic: &str, records: &[Record]) -> Result<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the raw producer")?;
    let messages: Vec<Message> = records
        .iter()
        .map(|r| Message {
            topic: topic.to_string(),
            partition: Some(r.partition),
            key: r.key.clone(),
            value: r.value.clone(),
        })
        .collect();
    let started = Instant::now();
    send_all(&producer, &messages).await.context("raw produce")?;
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

/// `workers` apply workers of group `group` read `topic` into every bench sink until the group has
/// committed `ends`; changes/s from the first commit seen to the last (from the launch when that
/// first commit already held half of them).
async fn apply_round(
    bench: &Bench,
    brokers: &str,
    topic: &str,
    group: &str,
    workers: usize,
    ends: &BTreeMap<i32, i64>,
    changes: u64,
) -> Result<f64> {
    let cfg = polyrepl_engine::apply::ApplyConfig {
        source: bench.args.kafka_url.clone(),
        topics: topic.to_string(),
        group: group.to_string(),
        schema_source: bench.args.source.clone(),
        tables: vec![format!("{}.cdc", bench.db)],
        exclude: vec![],
        sinks: bench.args.sinks.iter().map(|&k| bench.sink_url(k).to_string()).collect(),
        batch_events: 1000,
        batch_delay: Duration::from_millis(50),
        on_unmappable: polyrepl_core::OnUnmappable::Stop,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let launched = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(polyrepl_engine::apply::apply(cfg.clone(), Default::default(), stopped.clone())))
        .collect();
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the offset watcher")?;
    let total: i64 = ends.values().sum();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, i64)> = None;
    let finished = loop {
        if tasks.iter().any(|t| t.is_finished()) {
            break Err(anyhow!("an apply worker stopped before the end"));
        }
        if Instant::now() > deadline {
            break Err(anyhow!("apply did not reach the end of {topic} in 600 s"));
        }
        let committed = committed_sum(&watcher, topic, ends).await?;
        if committed > 0 && first.is_none() {
            first = Some((Instant::now(), committed));
        }
        if committed >= total {
            break Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = stop.send(true);
    for t in tasks {
        if let Err(e) = t.await.context("an apply worker panicked")? {
            bail!("apply: {e}");
        }
    }
    let finished = finished?;
    let (started, at_start) = first.expect("committed before the end");
    let share = (total - at_start) as f64 / total as f64;
    if share < 0.5 {
        // Too few changes to leave the start out: timed from the launch, group join included.
        return Ok(changes as f64 / finished.duration_since(launched).as_secs_f64());
    }
    Ok(changes as f64 * share / finished.duration_since(started).as_secs_f64())
}

/// The offsets `group` has committed on `topic`'s partitions, summed (none committed counts 0).
async fn committed_sum(watcher: &BaseConsumer, topic: &str, ends: &BTreeMap<i32, i64>) -> Result<i64> {
    let mut list = TopicPartitionList::new();
    for &p in ends.keys() {
        list.add_partition(topic, p);
    }
    let committed = tokio::task::block_in_place(|| watcher.committed_offsets(list, Duration::from_secs(10)))
        .context("reading the group's committed offsets")?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o.min(ends.get(&e.partition()).copied().unwrap_or(o)),
            _ => 0,
        })
        .sum())
}

/// The report as a table.
pub fn table(f: &KafkaFigures) -> String {
    let mut out = format!(
        "Kafka path: {} row changes → {} messages of {:.0} bytes on average ({} partitions); sinks: {}\n\n\
         | path | rate | over the broker's raw |\n|---|---:|---:|\n",
        f.changes,
        f.messages,
        f.message_bytes,
        PARTITIONS,
        f.sinks.join(", ")
    );
    out.push_str(&format!(
        "| capture: binlog → Kafka (transactions with checkpoints) | {:.0} changes/s | {:.2} of raw produce |\n",
        f.capture_changes_per_s.median, f.capture_over_raw_produce
    ));
    out.push_str(&format!(
        "| raw produce: same messages, idempotent, acks=all | {:.0} messages/s | 1 |\n",
        f.raw_produce_messages_per_s.median
    ));
    out.push_str(&format!(
        "| raw consume: one read_committed consumer | {:.0} messages/s | 1 |\n",
        f.raw_consume_messages_per_s.median
    ));
    for a in &f.apply {
        out.push_str(&format!(
            "| apply: Kafka → sinks, {} worker{} | {:.0} changes/s | {:.2} of raw consume |\n",
            a.workers,
            if a.workers == 1 { "" } else { "s" },
            a.changes_per_s.median,
            a.over_raw_consume
        ));
    }
    out.push_str(&format!(
        "| run: binlog → sinks, one process, no Kafka | {:.0} changes/s | |\n",
        f.run_changes_per_s.median
    ));
    out
}
