//! Shared helpers of the integration tests: the real Redis, a randomly named source database per test
//! (so row keys, stream keys and the checkpoint key of one test never meet another's), cleaned up after,
//! and a look at the raw keys. Builders of test data come from the conformance kit.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use polyrepl_redis::{RedisOptions, RedisSink};
use redis::aio::MultiplexedConnection;

/// The test builders, one copy for every sink: the conformance kit's.
pub use polyrepl_core::testkit::builders::*;

/// The server under test: `POLYREPL_REDIS_URL`, default the local Redis on port 6379.
pub fn url() -> String {
    std::env::var("POLYREPL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A plain connection for checking what the sink wrote.
pub async fn raw() -> MultiplexedConnection {
    redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap_or_else(|e| {
        panic!("Redis not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_REDIS_URL", url())
    })
}

/// Every key matching `pattern`.
pub async fn keys(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        out.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out
}

/// Deletes every key of a test: rows (with or without prefix), streams and the checkpoint.
pub async fn cleanup(database: &str, prefix: Option<&str>, pipeline: &str) {
    let mut conn = raw().await;
    let mut doomed = keys(&mut conn, &format!("{}{database}:*", prefix.unwrap_or(""))).await;
    doomed.extend(keys(&mut conn, &format!("polyrepl:stream:{database}:*")).await);
    doomed.push(format!("polyrepl:checkpoint:{pipeline}").into_bytes());
    doomed.push(format!("polyrepl:dead_letters:{pipeline}").into_bytes());
    let _: () = redis::cmd("DEL").arg(&doomed).query_async(&mut conn).await.unwrap();
}

/// Runs `body` with a sink connected with `options`, a fresh database name and pipeline name; deletes
/// the test's keys afterwards, even when the body panics.
pub async fn with_sink<F, Fut>(options: RedisOptions, body: F)
where
    F: FnOnce(RedisSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = unique("prt");
    let pipeline = unique("pipe");
    let prefix = options.key_prefix.clone();
    let sink = RedisSink::connect(&url(), &pipeline, options).await.unwrap_or_else(|e| {
        panic!("Redis not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_REDIS_URL", url())
    });
    let outcome = AssertUnwindSafe(body(sink, database.clone())).catch_unwind().await;
    cleanup(&database, prefix.as_deref(), &pipeline).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The hash at `key`, fields sorted by name.
pub async fn hash(conn: &mut MultiplexedConnection, key: &[u8]) -> Vec<(String, Vec<u8>)> {
    let map: std::collections::HashMap<String, Vec<u8>> =
        redis::cmd("HGETALL").arg(key).query_async(conn).await.unwrap();
    let mut fields: Vec<(String, Vec<u8>)> = map.into_iter().collect();
    fields.sort();
    fields
}

pub async fn exists(conn: &mut MultiplexedConnection, key: &[u8]) -> bool {
    redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await.unwrap() == 1
}
