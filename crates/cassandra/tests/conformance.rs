//! The sink conformance kit (`polyrepl_core::testkit`) against the real Cassandra.

mod common;

use common::*;
use polyrepl_cassandra::{CassandraOptions, CassandraSink};
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Subject};
use polyrepl_core::Sink;

/// What the Cassandra mapping documents ([`polyrepl_cassandra::mapping`]): zero dates read back as NULL.
fn subject(sink: &CassandraSink) -> Subject {
    let (url, pipeline) = (url(), sink.pipeline().to_string());
    Subject {
        label: format!("cassandra {}", sink.name()),
        pipeline: pipeline.clone(),
        capabilities: Capabilities { zero_dates_read_as_null: true, ..Default::default() },
        reopen: Box::new(move || {
            let (url, pipeline) = (url.clone(), pipeline.clone());
            Box::pin(async move {
                Box::new(
                    CassandraSink::connect(&url, &pipeline, CassandraOptions::default())
                        .await
                        .expect("a second connection"),
                ) as Box<dyn Sink>
            })
        }),
    }
}

#[tokio::test]
async fn the_cassandra_sink_passes_the_conformance_kit() {
    with_sink(|mut sink, keyspace| async move {
        let subject = subject(&sink);
        run_all(&mut sink, &subject, &keyspace).await;
    })
    .await;
}
