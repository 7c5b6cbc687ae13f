//! The sink conformance kit (`polyrepl_core::testkit`) against the real Redis: with the default options
//! (change stream on), and with a key prefix holding glob characters.

mod common;

use common::*;
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Subject};
use polyrepl_core::Sink;
use polyrepl_redis::{RedisOptions, RedisSink};

/// Redis stores every value as exact text ([`polyrepl_redis::mapping`]): everything reads back exactly,
/// zero dates included.
fn subject(sink: &RedisSink, label: &str) -> Subject {
    let (url, pipeline, options) = (url(), sink.pipeline().to_string(), sink.options().clone());
    Subject {
        label: format!("redis {} ({label})", sink.name()),
        pipeline: pipeline.clone(),
        capabilities: Capabilities::default(),
        reopen: Box::new(move || {
            let (url, pipeline, options) = (url.clone(), pipeline.clone(), options.clone());
            Box::pin(async move {
                Box::new(RedisSink::connect(&url, &pipeline, options).await.expect("a second connection"))
                    as Box<dyn Sink>
            })
        }),
    }
}

#[tokio::test]
async fn the_redis_sink_passes_the_conformance_kit() {
    with_sink(RedisOptions { stream: Some(1000), ..Default::default() }, |mut sink, db| async move {
        let subject = subject(&sink, "stream on");
        run_all(&mut sink, &subject, &db).await;
    })
    .await;
}

#[tokio::test]
async fn the_redis_sink_with_a_glob_key_prefix_passes_the_conformance_kit() {
    let options = RedisOptions { key_prefix: Some(unique("app") + "*?:"), stream: None, ..Default::default() };
    with_sink(options, |mut sink, db| async move {
        let subject = subject(&sink, "key prefix with glob characters");
        run_all(&mut sink, &subject, &db).await;
    })
    .await;
}
