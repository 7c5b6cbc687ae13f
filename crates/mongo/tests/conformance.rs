//! The sink conformance kit (`polyrepl_core::testkit`) against the real MongoDB-protocol server.

mod common;

use common::*;
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Subject};
use polyrepl_core::Sink;
use polyrepl_mongo::MongoSink;

/// What the MongoDB mapping documents ([`polyrepl_mongo::mapping`]): zero dates and a JSON `null`
/// document read back as NULL; everything else exactly.
fn subject(sink: &MongoSink) -> Subject {
    let (url, pipeline) = (url(), sink.pipeline().to_string());
    Subject {
        label: format!("mongodb {}", sink.name()),
        pipeline: pipeline.clone(),
        capabilities: Capabilities {
            zero_dates_read_as_null: true,
            json_null_reads_as_sql_null: true,
            ..Default::default()
        },
        reopen: Box::new(move || {
            let (url, pipeline) = (url.clone(), pipeline.clone());
            Box::pin(async move {
                Box::new(MongoSink::connect(&url, &pipeline).await.expect("a second connection")) as Box<dyn Sink>
            })
        }),
    }
}

#[tokio::test]
async fn the_mongo_sink_passes_the_conformance_kit() {
    with_sink(|mut sink, db| async move {
        let subject = subject(&sink);
        run_all(&mut sink, &subject, &db).await;
    })
    .await;
}
