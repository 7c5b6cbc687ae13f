//! Each sink, without writing to it: reachable with its credentials, and the pipeline's checkpoint
//! readable.
//!
//! MongoDB, Redis and Cassandra sinks are opened exactly as `run` opens them ([`open_sink_with`]): their
//! `connect` only talks to the server (handshake, `hello`/`buildInfo`, `PING`, `CONFIG GET`, a read of
//! `system_views.settings`) and creates nothing; `prepare`, which creates collections and tables, is
//! never called, and `load_checkpoint` only reads. A Kafka sink creates its topics when opened, so
//! Kafka gets a metadata request instead.

use super::report::Findings;
use polyrepl_core::redact::redact_url;
use polyrepl_core::{RowPolicy, SinkError};
use polyrepl_engine::registry::{kind_of, open_sink_with, SINKS};
use polyrepl_engine::{EngineError, RunConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

/// Longest wait for one sink: its own connect timeouts are shorter; this only bounds a hung server.
const SINK_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn check(run: &RunConfig, findings: &mut Findings) {
    for url in &run.sinks {
        let subject = format!("sink {}", redact_url(url));
        let Some(kind) = kind_of(url) else {
            let known: Vec<&str> = SINKS.iter().map(|k| k.example).collect();
            findings.problem(subject, "not a sink URL polyrepl knows", format!("write it as {}", known.join(", ")));
            continue;
        };
        if kind.schemes.contains(&"kafka") {
            kafka(url, &run.name, &subject, findings).await;
            continue;
        }
        let opened =
            tokio::time::timeout(SINK_TIMEOUT, open_sink_with(url, &run.name, RowPolicy::new(run.on_unmappable))).await;
        let mut sink = match opened {
            Err(_) => {
                let fix = "check that the server at that address is healthy, and the URL's host and port";
                findings.problem(subject, format!("no answer within {SINK_TIMEOUT:?}"), fix);
                continue;
            }
            Ok(Err(e)) => {
                let (message, fix) = unreachable_fix(&e, kind.example);
                findings.problem(subject, message, fix);
                continue;
            }
            Ok(Ok(sink)) => sink,
        };
        match sink.load_checkpoint(&run.name).await {
            Ok(Some(checkpoint)) => findings.ok(
                subject,
                format!(
                    "reachable; pipeline '{}' resumes from its checkpoint at {}{}",
                    run.name,
                    checkpoint.position,
                    if checkpoint.snapshot.is_some() { " (a snapshot in progress)" } else { "" }
                ),
            ),
            Ok(None) => findings.ok(
                subject,
                format!("reachable; no checkpoint for pipeline '{}': `run` first copies every table", run.name),
            ),
            Err(e) => {
                let fix = "fix or delete the checkpoint named in the message, or run with --resnapshot";
                findings.problem(subject, format!("the checkpoint cannot be read: {e}"), fix);
            }
        }
    }
}

/// The sink's message (the subject already names the sink), and what to do: for an unreachable server,
/// start it or correct the URL.
fn unreachable_fix(e: &EngineError, example: &str) -> (String, String) {
    let url_fix = || format!("correct the sink URL ({example}): scheme, host, port, user, password and options");
    match e {
        EngineError::Sink(SinkError::Transient { message, .. }) => (
            message.clone(),
            "start the server at that address, or correct the host and port in the sink URL (`polyrepl stack \
             up` starts the local ones)"
                .to_string(),
        ),
        EngineError::Sink(SinkError::Definite { message, .. }) => (message.clone(), url_fix()),
        other => (other.to_string(), url_fix()),
    }
}

/// A metadata request to the brokers: reachable, and whether the pipeline has a checkpoint topic.
async fn kafka(url: &str, pipeline: &str, subject: &str, findings: &mut Findings) {
    let options = match polyrepl_kafka::options::parse(url) {
        Ok(options) => options,
        Err(e) => {
            findings.problem(subject, e, "correct the kafka:// URL as the message says");
            return;
        }
    };
    let brokers = options.brokers.clone();
    let topics = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        Ok(metadata.topics().iter().map(|t| t.name().to_string()).collect())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match topics {
        Ok(topics) => {
            let checkpoints = polyrepl_kafka::topics::checkpoint_topic(pipeline);
            let held = if topics.contains(&checkpoints) {
                format!("pipeline '{pipeline}' has its checkpoint topic {checkpoints}")
            } else {
                format!("no checkpoint topic for pipeline '{pipeline}' yet: `run` first copies every table")
            };
            findings.ok(subject, format!("reachable ({} topics); {held}", topics.len()));
        }
        Err(e) => findings.problem(
            subject,
            format!("cannot reach Kafka at {}: {e}", options.brokers),
            "start Kafka there (`polyrepl stack up --service kafka`), or correct the brokers in the URL",
        ),
    }
}
