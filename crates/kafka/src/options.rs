//! The sink's URL: `kafka://HOST:PORT[,HOST:PORT…][?topic_prefix=P&format=F&partitions=N&replication=R&tombstones=B]`.
//!
//! - `topic_prefix`: topics are `<prefix>.<db>.<table>` (Debezium's `topic.prefix`); default
//!   `polyrepl`.
//! - `format`: `debezium-json` (default: payload only, the JSON converter's `schemas.enable=false`) or
//!   `debezium-json-schema` (`{"schema", "payload"}`, `schemas.enable=true`).
//! - `partitions`: of each table topic polyrepl creates (default 1; a key always goes to the same
//!   partition, so its changes stay in order). An existing topic is used as it is.
//! - `replication`: replication factor of the topics polyrepl creates (default: the broker's
//!   `default.replication.factor`).
//! - `tombstones`: a `null`-valued message after each delete, for log compaction (default `true`, as
//!   Debezium's `tombstones.on.delete`).

use std::collections::BTreeMap;

/// What the URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `host:port,host:port` for `bootstrap.servers`.
    pub brokers: String,
    /// Topic prefix; `None`: `polyrepl`.
    pub topic_prefix: Option<String>,
    /// Key and value with their schemas.
    pub schemas: bool,
    pub partitions: i32,
    /// `None`: the broker's default.
    pub replication: Option<i32>,
    pub tombstones: bool,
}

/// Parses a `kafka://` URL; an error names what is wrong and what is accepted.
pub fn parse(url: &str) -> Result<KafkaOptions, String> {
    let rest = url
        .strip_prefix("kafka://")
        .ok_or_else(|| format!("'{url}' is not a kafka:// URL (kafka://HOST:PORT[,HOST:PORT][?topic_prefix=P])"))?;
    let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
    let hosts = hosts.trim_end_matches('/');
    if hosts.is_empty()
        || hosts.split(',').any(|h| h.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()))
    {
        return Err(format!("'{url}': the brokers must be HOST:PORT[,HOST:PORT…]"));
    }
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        params.insert(k.into_owned(), v.into_owned());
    }
    let mut options = KafkaOptions {
        brokers: hosts.to_string(),
        topic_prefix: None,
        schemas: false,
        partitions: 1,
        replication: None,
        tombstones: true,
    };
    for (key, value) in params {
        let bad = |what: &str| format!("'{url}': {key}={value} is not {what}");
        match key.as_str() {
            "topic_prefix"
                if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                options.topic_prefix = Some(value)
            }
            "topic_prefix" => return Err(bad("a topic prefix (letters, digits, '.', '_', '-')")),
            "format" => {
                options.schemas = match value.as_str() {
                    "debezium-json" => false,
                    "debezium-json-schema" => true,
                    _ => return Err(bad("a format: debezium-json or debezium-json-schema")),
                }
            }
            "partitions" => {
                options.partitions =
                    value.parse().ok().filter(|&n| n >= 1).ok_or_else(|| bad("a partition count (1 or more)"))?
            }
            "replication" => {
                options.replication = Some(
                    value.parse().ok().filter(|&n| n >= 1).ok_or_else(|| bad("a replication factor (1 or more)"))?,
                )
            }
            "tombstones" => options.tombstones = value.parse().map_err(|_| bad("true or false"))?,
            _ => {
                return Err(format!(
                    "'{url}': unknown option '{key}' (known: topic_prefix, format, partitions, replication, tombstones)"
                ))
            }
        }
    }
    Ok(options)
}

/// `kafka://HOST:PORT[,…]` without the options, for logs and metrics.
pub fn sink_name(url: &str) -> String {
    url.split('?').next().unwrap_or(url).trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_options() {
        let o = parse("kafka://127.0.0.1:9092").unwrap();
        assert_eq!((o.brokers.as_str(), o.schemas, o.partitions, o.tombstones), ("127.0.0.1:9092", false, 1, true));
        let o = parse("kafka://a:1,b:2/?topic_prefix=cdc.main&format=debezium-json-schema&partitions=6&replication=3&tombstones=false")
            .unwrap();
        assert_eq!(o.brokers, "a:1,b:2");
        assert_eq!(o.topic_prefix.as_deref(), Some("cdc.main"));
        assert!(o.schemas && !o.tombstones);
        assert_eq!((o.partitions, o.replication), (6, Some(3)));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(parse("kafka://").unwrap_err().contains("HOST:PORT"));
        assert!(parse("kafka://h:x").unwrap_err().contains("HOST:PORT"));
        assert!(parse("kafka://h:1?partitions=0").unwrap_err().contains("partition count"));
        assert!(parse("kafka://h:1?format=avro").unwrap_err().contains("debezium-json"));
        assert!(parse("kafka://h:1?topic=x").unwrap_err().contains("unknown option 'topic'"));
        assert!(parse("kafka://h:1?topic_prefix=a/b").unwrap_err().contains("topic prefix"));
    }
}
