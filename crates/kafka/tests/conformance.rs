//! The sink conformance kit (`polyrepl_core::testkit`) against a real Kafka broker (127.0.0.1:9092,
//! started by `polyrepl stack up --service kafka`; the test suite starts it), with payload-only events
//! and with `{"schema", "payload"}` events. Rows are read back by reading each table's topic whole with
//! read_committed, so the checks also prove that what a batch wrote is committed with its checkpoint.

use polyrepl_core::testkit::builders::unique;
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Oversize, Subject};
use polyrepl_core::Sink;
use polyrepl_kafka::KafkaSink;

const KAFKA: &str = "127.0.0.1:9092";

/// Zero dates have no Debezium form (they are `null`); everything else reads back exactly.
fn subject(url: String, pipeline: String, label: &str) -> Subject {
    let (url2, pipeline2) = (url.clone(), pipeline.clone());
    Subject {
        label: format!("kafka ({label})"),
        pipeline: pipeline.clone(),
        capabilities: Capabilities { zero_dates_read_as_null: true, ..Default::default() },
        reopen: Box::new(move || {
            let (url, pipeline) = (url.clone(), pipeline.clone());
            Box::pin(async move {
                Box::new(KafkaSink::connect(&url, &pipeline).await.expect("a second connection")) as Box<dyn Sink>
            })
        }),
        open_with_policy: Box::new(move |policy| {
            let (url, pipeline) = (url2.clone(), pipeline2.clone());
            Box::pin(async move {
                Box::new(
                    KafkaSink::connect(&url, &pipeline).await.expect("a second connection").with_row_policy(policy),
                ) as Box<dyn Sink>
            })
        }),
        // Over the 1,000,000 bytes of a Kafka message.
        oversize: Some(Oversize::Value(1_500_000)),
    }
}

async fn run(format: &str) {
    let url = format!("kafka://{KAFKA}?format={format}");
    let pipeline = unique("kpipe");
    let mut sink = KafkaSink::connect(&url, &pipeline)
        .await
        .unwrap_or_else(|e| panic!("Kafka at {KAFKA}: {e}. Start it with: polyrepl stack up --service kafka"));
    let subject = subject(url.clone(), pipeline, format);
    run_all(&mut sink, &subject, &unique("kdb")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_sink_passes_the_conformance_kit() {
    run("debezium-json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_sink_with_schemas_passes_the_conformance_kit() {
    run("debezium-json-schema").await;
}
