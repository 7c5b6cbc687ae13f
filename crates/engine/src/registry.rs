//! The sinks polyrepl knows, by URL scheme. Adding a sink is one crate implementing
//! [`polyrepl_core::Sink`] plus one entry in [`SINKS`].

use crate::error::{EngineError, Result};
use polyrepl_core::redact::{redact_url, url_scheme};
use polyrepl_core::{RowPolicy, Sink, SinkError};
use std::future::Future;
use std::pin::Pin;

/// Opens a sink from its URL for the pipeline named by the second argument, treating rows it cannot hold
/// as the policy says.
type Open = for<'a> fn(
    &'a str,
    &'a str,
    RowPolicy,
) -> Pin<Box<dyn Future<Output = Result<Box<dyn Sink>, SinkError>> + Send + 'a>>;

/// One kind of sink: the URL schemes that name it, an example for error messages, its constructor.
pub struct SinkKind {
    pub schemes: &'static [&'static str],
    pub example: &'static str,
    pub open: Open,
}

/// Every sink polyrepl can write to.
pub const SINKS: &[SinkKind] = &[
    SinkKind {
        schemes: &["mongodb", "mongodb+srv"],
        example: "mongodb://HOST:PORT",
        open: |url, name, policy| {
            Box::pin(
                async move { Ok(boxed(polyrepl_mongo::MongoSink::connect(url, name).await?.with_row_policy(policy))) },
            )
        },
    },
    SinkKind {
        schemes: &["redis", "rediss", "redis+cluster", "valkey+cluster"],
        example: "redis://HOST:PORT or redis+cluster://HOST:PORT[,HOST:PORT]",
        open: |url, name, policy| {
            Box::pin(async move {
                Ok(boxed(
                    polyrepl_redis::RedisSink::connect(url, name, Default::default()).await?.with_row_policy(policy),
                ))
            })
        },
    },
    SinkKind {
        schemes: &["cassandra"],
        example: "cassandra://HOST:PORT[/KEYSPACE]",
        open: |url, name, policy| {
            Box::pin(async move {
                Ok(boxed(
                    polyrepl_cassandra::CassandraSink::connect(url, name, Default::default())
                        .await?
                        .with_row_policy(policy),
                ))
            })
        },
    },
    SinkKind {
        schemes: &["kafka"],
        example: "kafka://HOST:PORT[,HOST:PORT][?topic_prefix=P&format=debezium-json|debezium-json-schema]",
        open: |url, name, policy| {
            Box::pin(
                async move { Ok(boxed(polyrepl_kafka::KafkaSink::connect(url, name).await?.with_row_policy(policy))) },
            )
        },
    },
];

fn boxed(sink: impl Sink + 'static) -> Box<dyn Sink> {
    Box::new(sink)
}

/// The kind of sink a URL names, if polyrepl knows its scheme.
pub fn kind_of(url: &str) -> Option<&'static SinkKind> {
    let scheme = url_scheme(url)?;
    SINKS.iter().find(|k| k.schemes.contains(&scheme))
}

/// Opens the sink a URL names, for the pipeline `pipeline_name` (a row the sink cannot hold stops it).
pub async fn open_sink(url: &str, pipeline_name: &str) -> Result<Box<dyn Sink>> {
    open_sink_with(url, pipeline_name, RowPolicy::default()).await
}

/// [`open_sink`], treating rows the sink cannot hold as `policy` says (`--on-unmappable`).
pub async fn open_sink_with(url: &str, pipeline_name: &str, policy: RowPolicy) -> Result<Box<dyn Sink>> {
    let Some(kind) = kind_of(url) else {
        let known: Vec<&str> = SINKS.iter().map(|k| k.example).collect();
        return Err(EngineError::Settings(format!(
            "'{}' is not a sink URL polyrepl knows: expected {}",
            redact_url(url),
            known.join(", ")
        )));
    };
    Ok((kind.open)(url, pipeline_name, policy).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_find_their_sink_and_unknown_ones_are_refused_without_the_password() {
        assert_eq!(kind_of("redis+cluster://h:1,h:2").map(|k| k.schemes[0]), Some("redis"));
        assert_eq!(kind_of("mongodb://h:1").map(|k| k.schemes[0]), Some("mongodb"));
        assert!(kind_of("postgres://h:1").is_none());
        assert!(kind_of("no-scheme").is_none());
        let err = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(open_sink("postgres://u:secret@h:1", "p"))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("postgres://u:***@h:1") && !err.contains("secret"), "{err}");
        assert!(err.contains("mongodb://HOST:PORT"), "{err}");
    }
}
