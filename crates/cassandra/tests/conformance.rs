//! The sink conformance kit (`polyrepl_core::testkit`) against the real Cassandra.

mod common;

use common::*;
use polyrepl_cassandra::{CassandraOptions, CassandraSink};
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Oversize, Subject};
use polyrepl_core::Sink;

/// What the Cassandra mapping documents ([`polyrepl_cassandra::mapping`]): zero dates read back as NULL.
/// A row Cassandra cannot hold: a 70,000-byte key (its partition keys are at most 65,535 bytes); a
/// row over its write size is checked in `tests/unmappable.rs`.
fn subject(sink: &CassandraSink) -> Subject {
    let (url, pipeline) = (url(), sink.pipeline().to_string());
    let (url2, pipeline2) = (url.clone(), pipeline.clone());
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
        open_with_policy: Box::new(move |policy| {
            let (url, pipeline) = (url2.clone(), pipeline2.clone());
            Box::pin(async move {
                Box::new(
                    CassandraSink::connect(&url, &pipeline, CassandraOptions::default())
                        .await
                        .expect("a second connection")
                        .with_row_policy(policy),
                ) as Box<dyn Sink>
            })
        }),
        oversize: Some(Oversize::Key(70_000)),
    }
}

#[tokio::test]
async fn the_cassandra_sink_passes_the_conformance_kit() {
    with_sink(|mut sink, keyspace| async move {
        // The kit's unmappable row is one the server really refuses: a 70,000-byte partition key.
        let session = sink.session();
        session
            .query_unpaged(
                format!("CREATE KEYSPACE \"{keyspace}\" WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
                &[],
            )
            .await
            .unwrap();
        session.query_unpaged(format!("CREATE TABLE \"{keyspace}\".raw (id text PRIMARY KEY)"), &[]).await.unwrap();
        let refusal = session
            .query_unpaged(format!("INSERT INTO \"{keyspace}\".raw (id) VALUES (?)"), ("k".repeat(70_000),))
            .await
            .expect_err("Cassandra took a 70,000-byte key");
        assert!(refusal.to_string().contains("65535"), "{refusal}");
        let subject = subject(&sink);
        run_all(&mut sink, &subject, &keyspace).await;
    })
    .await;
}
