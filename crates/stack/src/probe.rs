//! Asks each server a real question: readiness and `status` rest on an answer, not an open port.

use crate::{Service, StackConfig};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Queries the service once and returns its version string, or why it did not answer.
pub async fn version(cfg: &StackConfig, service: Service) -> Result<String, String> {
    let port = cfg.port(service);
    let fut = async {
        match service {
            Service::Mysql => mysql_version(cfg).await,
            Service::Mongo | Service::MongoJava => mongo_version(port, service).await,
            Service::Redis => redis_version(port).await,
            Service::Cassandra => cassandra_version(port).await,
            Service::Kafka => kafka_version(cfg).await,
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

async fn mysql_version(cfg: &StackConfig) -> Result<String, String> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(&cfg.mysql_connect_url()).map_err(|e| e.to_string())?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| e.to_string())?;
    let v: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    let v = v.unwrap_or_default();
    Ok(if v.contains("MariaDB") { format!("MariaDB {v}") } else { format!("MySQL {v}") })
}

/// `buildInfo`'s version, naming FerretDB (which adds `ferretdbVersion`) and, for the `mongo-java`
/// service, mongo-java-server (whose `buildInfo` has no `gitVersion`, which every mongod has).
async fn mongo_version(port: u16, service: Service) -> Result<String, String> {
    use mongodb::bson::doc;
    let url = format!(
        "mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000&directConnection=true"
    );
    let client = mongodb::Client::with_uri_str(&url).await.map_err(|e| e.to_string())?;
    let info = client.database("admin").run_command(doc! {"buildInfo": 1}).await.map_err(|e| e.to_string())?;
    let mongo = info.get_str("version").unwrap_or("?").to_string();
    Ok(match info.get_str("ferretdbVersion") {
        Ok(f) => format!("FerretDB {f} (MongoDB {mongo} wire)"),
        Err(_) if service == Service::MongoJava && !info.contains_key("gitVersion") => {
            format!("mongo-java-server (MongoDB {mongo} wire)")
        }
        Err(_) => format!("MongoDB {mongo}"),
    })
}

async fn redis_version(port: u16) -> Result<String, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.map_err(|e| e.to_string())?;
    let v = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
    Ok(format!("Redis {v}"))
}

async fn cassandra_version(port: u16) -> Result<String, String> {
    // The driver logs every refused connection loudly: knock first.
    if !port_in_use(port) {
        return Err(format!("nothing listens on 127.0.0.1:{port}"));
    }
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(format!("127.0.0.1:{port}"))
        .connection_timeout(Duration::from_secs(2))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let (v,): (String,) = rows.first_row::<(String,)>().map_err(|e| e.to_string())?;
    Ok(format!("Cassandra {v}"))
}

/// Kafka: a Metadata request (v4, no topics, in the wire format itself: no client library needed)
/// must list a broker, which a KRaft broker only does once it has registered with the controller
/// and is unfenced. The protocol carries no version string; the version is the one the server logged
/// at its last start ("Kafka version: …" in `<state>/kafka/server.log`), when that log is there.
async fn kafka_version(cfg: &StackConfig) -> Result<String, String> {
    let meta = kafka_metadata(cfg.kafka_port).await?;
    if meta.brokers.is_empty() {
        return Err("answers, but no broker has registered yet".into());
    }
    let log = cfg.state_dir.join(Service::Kafka.name()).join("server.log");
    let version = kafka_logged_version(&log).unwrap_or_else(|| "(version not in a local log)".into());
    let cluster = meta.cluster_id.unwrap_or_else(|| "?".into());
    Ok(format!("Kafka {version}, KRaft cluster {cluster}"))
}

/// What a Kafka Metadata response says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMetadata {
    /// (node id, host, port) of each live (unfenced) broker.
    pub brokers: Vec<(i32, String, i32)>,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
}

/// Sends one Metadata v4 request for no topics and parses the brokers, cluster id and controller.
pub async fn kafka_metadata(port: u16) -> Result<KafkaMetadata, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream.write_all(&kafka_metadata_request(1)).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| format!("no Metadata response: {e}"))?;
    let len = i32::from_be_bytes(len);
    if !(8..=1 << 20).contains(&len) {
        return Err(format!("a Metadata response of {len} bytes"));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.map_err(|e| format!("a cut Metadata response: {e}"))?;
    parse_kafka_metadata_response(&body, 1)
}

/// Metadata request v4 (request header v1): no topics, no auto-creation.
pub fn kafka_metadata_request(correlation_id: i32) -> Vec<u8> {
    let client_id = b"polyrepl-stack";
    let mut msg = Vec::new();
    msg.extend(3i16.to_be_bytes()); // api key: Metadata
    msg.extend(4i16.to_be_bytes()); // api version
    msg.extend(correlation_id.to_be_bytes());
    msg.extend((client_id.len() as i16).to_be_bytes());
    msg.extend(client_id);
    msg.extend(0i32.to_be_bytes()); // topics: empty array = none (null would be all)
    msg.push(0); // allow_auto_topic_creation = false
    let mut out = (msg.len() as i32).to_be_bytes().to_vec();
    out.extend(msg);
    out
}

/// Parses a Metadata v4 response (after its length prefix): correlation id, throttle time, brokers,
/// cluster id, controller id (the topics that follow are not needed).
pub fn parse_kafka_metadata_response(body: &[u8], correlation_id: i32) -> Result<KafkaMetadata, String> {
    struct Cursor<'a>(&'a [u8]);
    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8], String> {
            if self.0.len() < n {
                return Err("a truncated Metadata response".into());
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self) -> Result<i16, String> {
            Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
        }
        fn i32(&mut self) -> Result<i32, String> {
            Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
        }
        fn string(&mut self) -> Result<Option<String>, String> {
            let n = self.i16()?;
            if n < 0 {
                return Ok(None);
            }
            Ok(Some(String::from_utf8_lossy(self.take(n as usize)?).into_owned()))
        }
    }
    let mut c = Cursor(body);
    let got = c.i32()?;
    if got != correlation_id {
        return Err(format!("a Metadata response for request {got}, not {correlation_id}"));
    }
    let _throttle_ms = c.i32()?;
    let n = c.i32()?;
    if !(0..=10_000).contains(&n) {
        return Err(format!("a Metadata response with {n} brokers"));
    }
    let mut brokers = Vec::new();
    for _ in 0..n {
        let id = c.i32()?;
        let host = c.string()?.unwrap_or_default();
        let port = c.i32()?;
        let _rack = c.string()?;
        brokers.push((id, host, port));
    }
    let cluster_id = c.string()?;
    let controller_id = c.i32()?;
    Ok(KafkaMetadata { brokers, cluster_id, controller_id })
}

/// The version in the last "Kafka version: X" line of a Kafka server log.
pub fn kafka_logged_version(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&text);
    let at = text.rfind("Kafka version: ")? + "Kafka version: ".len();
    let v: String = text[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    (!v.is_empty()).then_some(v)
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_metadata_request_is_v4_for_no_topics() {
        let r = kafka_metadata_request(7);
        assert_eq!(i32::from_be_bytes(r[..4].try_into().unwrap()) as usize, r.len() - 4);
        assert_eq!(&r[4..8], &[0, 3, 0, 4], "api key 3 (Metadata), version 4");
        assert_eq!(&r[8..12], &7i32.to_be_bytes());
        assert_eq!(&r[r.len() - 5..], &[0, 0, 0, 0, 0], "empty topics, no auto-creation");
    }

    #[test]
    fn kafka_metadata_response_is_parsed() {
        let mut b = Vec::new();
        b.extend(1i32.to_be_bytes()); // correlation id
        b.extend(0i32.to_be_bytes()); // throttle
        b.extend(1i32.to_be_bytes()); // one broker
        b.extend(1i32.to_be_bytes());
        b.extend(9i16.to_be_bytes());
        b.extend(b"127.0.0.1");
        b.extend(9092i32.to_be_bytes());
        b.extend((-1i16).to_be_bytes()); // no rack
        b.extend(4i16.to_be_bytes());
        b.extend(b"abcd");
        b.extend(1i32.to_be_bytes()); // controller
        b.extend(0i32.to_be_bytes()); // no topics
        let m = parse_kafka_metadata_response(&b, 1).unwrap();
        assert_eq!(m.brokers, vec![(1, "127.0.0.1".to_string(), 9092)]);
        assert_eq!((m.cluster_id.as_deref(), m.controller_id), (Some("abcd"), 1));
        assert!(parse_kafka_metadata_response(&b[..20], 1).is_err());
        assert!(parse_kafka_metadata_response(&b, 2).is_err());
    }
}
