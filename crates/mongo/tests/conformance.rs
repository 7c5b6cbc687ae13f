//! The sink conformance kit (`polyrepl_core::testkit`) against the real MongoDB-protocol server.

mod common;

use common::*;
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Oversize, Subject};
use polyrepl_core::Sink;
use polyrepl_mongo::MongoSink;

/// What the MongoDB mapping documents ([`polyrepl_mongo::mapping`]): zero dates and a JSON `null`
/// document read back as NULL; everything else exactly. A row MongoDB cannot hold: a 17 MiB value (the
/// server's document limit is 16 MiB).
fn subject(sink: &MongoSink) -> Subject {
    let (url, pipeline) = (url(), sink.pipeline().to_string());
    let (url2, pipeline2) = (url.clone(), pipeline.clone());
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
        open_with_policy: Box::new(move |policy| {
            let (url, pipeline) = (url2.clone(), pipeline2.clone());
            Box::pin(async move {
                Box::new(
                    MongoSink::connect(&url, &pipeline).await.expect("a second connection").with_row_policy(policy),
                ) as Box<dyn Sink>
            })
        }),
        oversize: Some(Oversize::Value(17 << 20)),
    }
}

#[tokio::test]
async fn the_mongo_sink_passes_the_conformance_kit() {
    with_sink(|mut sink, db| async move {
        // The kit's unmappable row is over the document size the server advertises (16 MiB, which
        // MongoDB enforces). FerretDB 1.x advertises it too but was seen to store a 17 MiB document
        // anyway: polyrepl keeps to the advertised limit, so a sink behaves the same on MongoDB.
        assert_eq!(sink.server().max_bson_object_size, 16 << 20, "the server's maxBsonObjectSize");
        let mut document = mongodb::bson::RawDocumentBuf::new();
        document.append("_id", 1);
        document.append("v", "x".repeat(17 << 20));
        let mut documents = mongodb::bson::RawArrayBuf::new();
        documents.push(document);
        let mut insert = mongodb::bson::RawDocumentBuf::new();
        insert.append("insert", "raw");
        insert.append("documents", documents);
        let answer = match sink.client().database(&db).run_raw_command(insert).await {
            Err(e) => format!("refused: {e}"),
            Ok(reply) => match reply.get_array("writeErrors") {
                Ok(errors) => format!("refused: {errors:?}"),
                Err(_) => format!("stored, over its own advertised limit: {reply:?}"),
            },
        };
        eprintln!("the server and a 17 MiB document: {}", &answer[..answer.len().min(300)]);
        let subject = subject(&sink);
        run_all(&mut sink, &subject, &db).await;
    })
    .await;
}
