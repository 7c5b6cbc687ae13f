//! Shared helpers of the integration tests: real servers (each test runs on every one, see [`servers`]),
//! a randomly named database per test, and a look at the raw documents with the plain driver. Builders of test data come from the conformance kit.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use mongodb::bson::{doc, Document};
use polyrepl_mongo::MongoSink;

/// The test builders, one copy for every sink: the conformance kit's.
pub use polyrepl_core::testkit::builders::*;

/// One MongoDB-wire server the tests run against.
#[derive(Debug, Clone)]
pub struct Server {
    /// What it is, for messages: `mongodb` (FerretDB, or mongod where installed) or `mongo-java`.
    pub label: &'static str,
    pub url: String,
    /// The environment variable that sets `url`, and how to start the server, for messages.
    pub env: &'static str,
    pub start: &'static str,
}

/// The servers under test; every test that takes a sink runs on each of them:
/// - `POLYREPL_MONGO_URL`, default `mongodb://127.0.0.1:1800`: the stack's `mongodb` service (FerretDB
///   1.x where no `mongod` is installed, which the sink writes to with its FerretDB-only path);
/// - `POLYREPL_MONGO_JAVA_URL`, default `mongodb://127.0.0.1:1801`: the stack's `mongo-java` service,
///   mongo-java-server announcing MongoDB 5.0 (a real `_id` index: the sink's update/delete command
///   path that MongoDB 4.4–7.x users get). `off` leaves it out, said on every test that would use it.
///
/// A server that does not answer fails the test: never a silent skip.
pub fn servers() -> Vec<Server> {
    let mut out = vec![Server {
        label: "mongodb",
        url: std::env::var("POLYREPL_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:1800".to_string()),
        env: "POLYREPL_MONGO_URL",
        start: "polyrepl stack up",
    }];
    match std::env::var("POLYREPL_MONGO_JAVA_URL").as_deref() {
        Ok("off") => eprintln!(
            "!!! SKIPPED on mongo-java-server: POLYREPL_MONGO_JAVA_URL=off (start it with polyrepl stack up --service mongo-java)"
        ),
        found => out.push(Server {
            label: "mongo-java",
            url: found.map(str::to_string).unwrap_or_else(|_| "mongodb://127.0.0.1:1801".to_string()),
            env: "POLYREPL_MONGO_JAVA_URL",
            start: "polyrepl stack up --service mongo-java",
        }),
    }
    out
}

tokio::task_local! {
    /// The server the running test body talks to (set by [`on_each_server`]).
    static CURRENT: Server;
}

/// The server the running test body talks to: the one [`on_each_server`] (or [`with_sink`]) runs it
/// on; outside of those, the first server under test.
pub fn server() -> Server {
    CURRENT.try_with(Server::clone).unwrap_or_else(|_| servers().remove(0))
}

/// The URL of [`server`].
pub fn url() -> String {
    server().url
}

/// Runs `body` once on each server under test, one after the other, with [`server`] and [`url`] naming
/// that server. A failure on one server does not stop the run on the next; the test then fails naming
/// every server it failed on.
pub async fn on_each_server<F, Fut>(body: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failed = Vec::new();
    for server in servers() {
        eprintln!("--- on {} ({})", server.label, server.url);
        let run = CURRENT.scope(server.clone(), body(server.clone()));
        if AssertUnwindSafe(run).catch_unwind().await.is_err() {
            failed.push(format!("{} ({})", server.label, server.url));
        }
    }
    assert!(failed.is_empty(), "failed on {} (see the panic message above each)", failed.join(" and "));
}

/// Runs `body` with a connected sink, a fresh database name and pipeline name, once on each server under
/// test ([`on_each_server`]); drops the database and the pipeline's checkpoint afterwards, even when the
/// body panics.
pub async fn with_sink<F, Fut>(body: F)
where
    F: Fn(MongoSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let body = &body;
    on_each_server(|server| async move {
        let database = unique("prt");
        let pipeline = unique("pipe");
        let sink = MongoSink::connect(&server.url, &pipeline).await.unwrap_or_else(|e| {
            panic!(
                "the {} server under test is not reachable at {}: {e} — start it ({}) or set {}",
                server.label, server.url, server.start, server.env
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
    })
    .await;
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
