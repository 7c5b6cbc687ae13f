//! Shared helpers of the integration tests: the real Cassandra, a randomly named keyspace per test.
//! Builders of test data come from the conformance kit.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use polyrepl_cassandra::{CassandraOptions, CassandraSink};

/// The test builders, one copy for every sink: the conformance kit's.
pub use polyrepl_core::testkit::builders::*;

/// The server under test: `POLYREPL_CASSANDRA_URL`, default the local Cassandra on port 9042.
pub fn url() -> String {
    std::env::var("POLYREPL_CASSANDRA_URL").unwrap_or_else(|_| "cassandra://127.0.0.1:9042".to_string())
}

/// Connects a sink for a fresh pipeline name.
pub async fn sink(pipeline: &str) -> CassandraSink {
    CassandraSink::connect(&url(), pipeline, CassandraOptions::default()).await.unwrap_or_else(|e| {
        panic!("Cassandra not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_CASSANDRA_URL", url())
    })
}

/// Runs `body` with a connected sink and a fresh keyspace name; drops the keyspace and the pipeline's
/// checkpoint afterwards, even when the body panics.
pub async fn with_sink<F, Fut>(body: F)
where
    F: FnOnce(CassandraSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    with_sink_query("", body).await
}

/// [`with_sink`] for a sink whose URL also carries `query` (e.g. `time_bucket=ts:day`; empty for none).
pub async fn with_sink_query<F, Fut>(query: &str, body: F)
where
    F: FnOnce(CassandraSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let keyspace = unique("prt");
    let pipeline = unique("pipe");
    let sink = if query.is_empty() {
        sink(&pipeline).await
    } else {
        let base = url();
        let url = format!("{base}{}{query}", if base.contains('?') { '&' } else { '?' });
        CassandraSink::connect(&url, &pipeline, CassandraOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    };
    let cleanup = self::sink(&pipeline).await;
    let outcome = AssertUnwindSafe(body(sink, keyspace.clone())).catch_unwind().await;
    let session = cleanup.session();
    let _ = session.query_unpaged(format!("DROP KEYSPACE IF EXISTS \"{keyspace}\""), &[]).await;
    let _ = session.query_unpaged("DELETE FROM polyrepl.polyrepl_checkpoints WHERE pipeline = ?", (&pipeline,)).await;
    let _ = session.query_unpaged("DELETE FROM polyrepl.polyrepl_dead_letters WHERE pipeline = ?", (&pipeline,)).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
