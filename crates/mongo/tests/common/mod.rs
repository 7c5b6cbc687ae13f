//! Shared helpers of the integration tests: a real server, a randomly named database per test, and a
//! look at the raw documents with the plain driver. Builders of test data come from the conformance kit.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use mongodb::bson::{doc, Document};
use polyrepl_mongo::MongoSink;

/// The test builders, one copy for every sink: the conformance kit's.
pub use polyrepl_core::testkit::builders::*;

/// The server under test: `POLYREPL_MONGO_URL`, default the local FerretDB/MongoDB on port 1800.
pub fn url() -> String {
    std::env::var("POLYREPL_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:1800".to_string())
}

/// Runs `body` with a connected sink, a fresh database name and pipeline name; drops the database
/// and the pipeline's checkpoint afterwards, even when the body panics.
pub async fn with_sink<F, Fut>(body: F)
where
    F: FnOnce(MongoSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = unique("prt");
    let pipeline = unique("pipe");
    let sink = MongoSink::connect(&url(), &pipeline).await.unwrap_or_else(|e| {
        panic!(
            "MongoDB-protocol server not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_MONGO_URL",
            url()
        )
    });
    let client = sink.client().clone();
    let outcome = AssertUnwindSafe(body(sink, database.clone())).catch_unwind().await;
    let _ = client.database(&database).drop().await;
    let _ = client
        .database("polyrepl")
        .collection::<Document>("_polyrepl_checkpoints")
        .delete_one(doc! { "_id": &pipeline })
        .await;
    let _ = client
        .database("polyrepl")
        .collection::<Document>("_polyrepl_dead_letters")
        .delete_many(doc! { "pipeline": &pipeline })
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// All documents of a collection, by `_id` order.
pub async fn documents(sink: &MongoSink, database: &str, collection: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    sink.client()
        .database(database)
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The document with `_id` = `id`.
pub async fn document(
    sink: &MongoSink,
    database: &str,
    collection: &str,
    id: impl Into<mongodb::bson::Bson>,
) -> Option<Document> {
    sink.client()
        .database(database)
        .collection::<Document>(collection)
        .find_one(doc! { "_id": id.into() })
        .await
        .unwrap()
}
