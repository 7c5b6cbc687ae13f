//! Connecting to Cassandra from a `cassandra://[user:password@]host[:port][,host[:port]…][/ignored][?options]` URL.
//!
//! URL options ([`url_options`]) override [`CassandraOptions`] given in code:
//!
//! | query key            | option        | value                                                              |
//! |----------------------|---------------|--------------------------------------------------------------------|
//! | `replication_factor` | `replication` | `3` → `SimpleStrategy`, replication factor 3 (a whole number ≥ 1)   |
//! | `replication`        | `replication` | `dc1:3,dc2:2` → `NetworkTopologyStrategy`, a factor per datacenter  |
//! | `time_bucket`        | `time_bucket` | `ts:day` → [`TimeBucket`]: COLUMN:GRANULARITY, granularity `hour`, `day` or `month` |
//!
//! Both replication keys apply only to keyspaces polyrepl creates; an existing keyspace keeps its
//! replication. Giving both, a key twice, or any other key is an error that lists the known keys.
//!
//! `time_bucket=COLUMN:GRANULARITY`: every replicated table that has a DATE, DATETIME or TIMESTAMP column
//! named COLUMN (exact name) gets one extra text column `polyrepl_bucket`, written with every row: the
//! row's value truncated to the granularity — `YYYY-MM-DDTHH` (hour), `YYYY-MM-DD` (day), `YYYY-MM`
//! (month); null for NULL or a zero date — and indexed by a Storage-Attached Index named
//! `<table>_polyrepl_bucket`, so `SELECT … WHERE polyrepl_bucket = '2025-11-29'` works (Cassandra 5.0+).
//! The partition key stays the source primary key; other tables are unaffected.
//!
//! Invariants:
//! - [`sink_name`] never contains credentials: it is safe for logs and metrics.
//! - Before the driver is involved, a raw CQL `OPTIONS` handshake is tried on each host, bounded by
//!   the connect timeout: nothing listening is a transient error at once (and the driver, which logs
//!   every refused connection loudly, never starts); something that answers but is not Cassandra, or
//!   accepts the connection and stays silent (Cassandra answers `OPTIONS` at once; Redis, for one, waits
//!   forever for a line end after a NUL byte), is a definite error that says so.
//! - The session is only returned after the driver connected and read the cluster's topology, within
//!   twice the connect timeout.

use std::time::Duration;

use polyrepl_core::redact::url_hosts;
use polyrepl_core::{ColumnKind, SinkError, TableSchema, Value};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::classify_session;

/// CQL's default native transport port.
pub const DEFAULT_PORT: u16 = 9042;

/// Replication of the keyspaces polyrepl creates (existing keyspaces are never altered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor.
    Simple { factor: u32 },
    /// `NetworkTopologyStrategy` with a factor per datacenter.
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal, e.g. `{'class': 'SimpleStrategy', 'replication_factor': 1}`.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple { factor } => format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}"),
            Replication::NetworkTopology(dcs) => {
                let mut s = "{'class': 'NetworkTopologyStrategy'".to_string();
                for (dc, factor) in dcs {
                    s.push_str(&format!(", '{}': {factor}", dc.replace('\'', "''")));
                }
                s.push('}');
                s
            }
        }
    }
}

/// Truncation of a [`TimeBucket`] column's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketGranularity {
    /// `YYYY-MM-DDTHH`.
    Hour,
    /// `YYYY-MM-DD`.
    Day,
    /// `YYYY-MM`.
    Month,
}

/// A time-bucket column for time-series tables (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBucket {
    /// The source column (DATE, DATETIME or TIMESTAMP) whose value is bucketed; exact name.
    pub column: String,
    pub granularity: BucketGranularity,
}

impl TimeBucket {
    /// Name of the extra Cassandra column holding the bucket.
    pub const COLUMN: &'static str = "polyrepl_bucket";

    /// The index of the bucketed column in `table`, when it has one of a date/time kind.
    pub fn column_in(&self, table: &TableSchema) -> Option<usize> {
        table.columns.iter().position(|c| {
            c.name == self.column
                && matches!(c.kind, ColumnKind::Date | ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. })
        })
    }

    /// The bucket of a value: `YYYY-MM-DDTHH`, `YYYY-MM-DD` or `YYYY-MM`; `None` for NULL, a zero date
    /// or a value that is not a date.
    pub fn label(&self, value: &Value) -> Option<String> {
        let (date, hour) = match value {
            Value::Date(d) => (*d, 0),
            Value::DateTime(dt) | Value::Timestamp(dt) => (dt.date, dt.hour),
            _ => return None,
        };
        if date.is_zero() {
            return None;
        }
        Some(match self.granularity {
            BucketGranularity::Hour => format!("{:04}-{:02}-{:02}T{hour:02}", date.year, date.month, date.day),
            BucketGranularity::Day => format!("{:04}-{:02}-{:02}", date.year, date.month, date.day),
            BucketGranularity::Month => format!("{:04}-{:02}", date.year, date.month),
        })
    }

    /// Parses `COLUMN:GRANULARITY`.
    pub fn parse(value: &str) -> Result<TimeBucket, String> {
        let (column, granularity) = value
            .rsplit_once(':')
            .filter(|(c, _)| !c.is_empty())
            .ok_or_else(|| format!("URL option time_bucket={value}: expected COLUMN:GRANULARITY with GRANULARITY hour, day or month, e.g. time_bucket=ts:day"))?;
        let granularity = match granularity {
            "hour" => BucketGranularity::Hour,
            "day" => BucketGranularity::Day,
            "month" => BucketGranularity::Month,
            other => {
                return Err(format!(
                    "URL option time_bucket={value}: unknown granularity '{other}' (known: hour, day, month)"
                ))
            }
        };
        Ok(TimeBucket { column: column.to_string(), granularity })
    }
}

/// Tunables of the Cassandra sink.
#[derive(Debug, Clone)]
pub struct CassandraOptions {
    /// Replication of created keyspaces (data keyspaces and `polyrepl`). Default: SimpleStrategy, RF 1.
    pub replication: Replication,
    /// Bound of the TCP connect and of the CQL handshake probe; the session start gets twice this.
    pub connect_timeout: Duration,
    /// Statements in flight at once while applying a batch or reading rows.
    pub max_in_flight: usize,
    /// A time-bucket column added to tables with that date/time column (module notes). Default: none.
    pub time_bucket: Option<TimeBucket>,
}

impl Default for CassandraOptions {
    fn default() -> Self {
        CassandraOptions {
            replication: Replication::Simple { factor: 1 },
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 64,
            time_bucket: None,
        }
    }
}

/// What the URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` of each contact point.
    pub hosts: Vec<(String, u16)>,
    pub user: Option<(String, String)>,
}

impl Endpoint {
    /// Parses `cassandra://[user:password@]host[:port][,…][/anything]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("cassandra://").ok_or_else(|| {
            "the Cassandra URL must start with cassandra:// (e.g. cassandra://127.0.0.1:9042)".to_string()
        })?;
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(u), percent_decode(p))), hosts)
            }
            None => (None, authority),
        };
        let mut out = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            out.push(parse_host(host).ok_or_else(|| format!("'{host}' in the Cassandra URL is not host[:port]"))?);
        }
        if out.is_empty() {
            return Err("the Cassandra URL names no host (e.g. cassandra://127.0.0.1:9042)".to_string());
        }
        Ok(Endpoint { hosts: out, user })
    }
}

fn parse_host(host: &str) -> Option<(String, u16)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((host.to_string(), DEFAULT_PORT)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host:port` as written in the session's address list (IPv6 in brackets).
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The URL reduced to scheme and hosts with ports: `cassandra://127.0.0.1:9042`. No credentials, no path.
pub fn sink_name(url: &str) -> String {
    match Endpoint::parse(url) {
        Ok(e) => format!("cassandra://{}", e.hosts.iter().map(|(h, p)| address(h, *p)).collect::<Vec<_>>().join(",")),
        Err(_) => format!("cassandra://{}", url_hosts(url)),
    }
}

/// What a raw CQL handshake found at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Cassandra,
    Unreachable(String),
    NotCassandra(String),
}

/// A CQL v4 `OPTIONS` request on stream 0.
const OPTIONS_FRAME: [u8; 9] = [0x04, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00];
/// Response opcodes: ERROR (e.g. protocol version refused) and SUPPORTED.
const OPCODE_ERROR: u8 = 0x00;
const OPCODE_SUPPORTED: u8 = 0x06;

/// Connects to `host:port` and sends a CQL `OPTIONS` request. A text protocol (Redis, HTTP) stays
/// silent until a line ends, so after a short silence a line end is sent to make it answer.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let addr = address(host, port);
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Err(_) => return ProbeOutcome::Unreachable(format!("no TCP connection to {addr} within {timeout:?}")),
        Ok(Err(e)) => return ProbeOutcome::Unreachable(format!("cannot connect to {addr}: {e}")),
        Ok(Ok(s)) => s,
    };
    if let Err(e) = stream.write_all(&OPTIONS_FRAME).await {
        return ProbeOutcome::Unreachable(format!("{addr} closed the connection: {e}"));
    }
    let mut header = [0u8; 9];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    let nudge_at = tokio::time::Instant::now() + timeout.min(Duration::from_millis(1500));
    let mut nudged = false;
    while got < header.len() {
        let until = if nudged { deadline } else { nudge_at };
        match tokio::time::timeout_at(until, stream.read(&mut header[got..])).await {
            Ok(Ok(0)) if got == 0 => {
                return ProbeOutcome::NotCassandra(format!("{addr} closed the connection on a CQL handshake"));
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return ProbeOutcome::NotCassandra(format!("{addr} broke the connection on a CQL handshake: {e}")),
            Err(_) if !nudged && got == 0 => {
                nudged = true;
                let _ = stream.write_all(b"\r\n").await;
            }
            Err(_) if got == 0 => {
                return ProbeOutcome::NotCassandra(format!(
                    "{addr} accepts connections but did not answer a CQL handshake within {timeout:?} (Cassandra answers at once)"
                ))
            }
            Err(_) => break,
        }
    }
    let is_cql = got >= 5
        && header[0] & 0x80 != 0
        && (1..=6).contains(&(header[0] & 0x7F))
        && matches!(header[4], OPCODE_ERROR | OPCODE_SUPPORTED);
    if is_cql {
        ProbeOutcome::Cassandra
    } else {
        let shown: String =
            String::from_utf8_lossy(&header[..got]).chars().map(|c| if c.is_control() { '.' } else { c }).collect();
        ProbeOutcome::NotCassandra(format!("{addr} answered a CQL handshake with '{shown}', which is not CQL"))
    }
}

/// Applies the URL's query options (see the module notes) to `options`.
pub fn url_options(url: &str, mut options: CassandraOptions) -> Result<CassandraOptions, String> {
    let Some(query) = url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or("")) else {
        return Ok(options);
    };
    let mut replication: Option<(&str, Replication)> = None;
    let mut time_bucket: Option<TimeBucket> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let parsed = match key {
            "time_bucket" => {
                if time_bucket.is_some() {
                    return Err("the Cassandra URL gives time_bucket twice: give time_bucket=COLUMN:GRANULARITY once".to_string());
                }
                time_bucket = Some(TimeBucket::parse(&value)?);
                continue;
            }
            "replication_factor" => Replication::Simple { factor: factor(key, &value)? },
            "replication" => {
                let mut dcs: Vec<(String, u32)> = Vec::new();
                for entry in value.split(',') {
                    let (dc, n) = entry
                        .rsplit_once(':')
                        .filter(|(dc, _)| !dc.trim().is_empty())
                        .ok_or_else(|| format!("URL option replication={value}: expected DATACENTER:FACTOR[,DATACENTER:FACTOR…], e.g. replication=dc1:3,dc2:2"))?;
                    let dc = dc.trim().to_string();
                    if dcs.iter().any(|(d, _)| *d == dc) {
                        return Err(format!("URL option replication={value}: datacenter '{dc}' is given twice"));
                    }
                    dcs.push((dc, factor(key, n.trim())?));
                }
                Replication::NetworkTopology(dcs)
            }
            _ => {
                return Err(format!(
                    "unknown option '{key}' in the Cassandra URL: the known options are replication_factor=N (SimpleStrategy), replication=DC:N[,DC:N…] (NetworkTopologyStrategy) and time_bucket=COLUMN:hour|day|month"
                ))
            }
        };
        if let Some((earlier, _)) = replication {
            return Err(format!(
                "the Cassandra URL gives the replication twice ({earlier} and {key}): use either replication_factor=N or replication=DC:N[,DC:N…], once"
            ));
        }
        replication = Some((key, parsed));
    }
    if let Some((_, r)) = replication {
        options.replication = r;
    }
    if time_bucket.is_some() {
        options.time_bucket = time_bucket;
    }
    Ok(options)
}

/// A replication factor: a whole number ≥ 1.
fn factor(key: &str, text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("URL option {key}: '{text}' is not a replication factor (a whole number ≥ 1)"))
}

/// Probes the hosts, then starts a driver session.
pub async fn connect(url: &str, options: &CassandraOptions) -> Result<(Session, String), SinkError> {
    let name = sink_name(url);
    let endpoint = Endpoint::parse(url).map_err(|e| SinkError::definite(&name, e))?;
    let mut unreachable = Vec::new();
    let mut foreign = Vec::new();
    let mut reachable = Vec::new();
    for (host, port) in &endpoint.hosts {
        match probe(host, *port, options.connect_timeout).await {
            ProbeOutcome::Cassandra => reachable.push(address(host, *port)),
            ProbeOutcome::Unreachable(why) => unreachable.push(why),
            ProbeOutcome::NotCassandra(why) => foreign.push(why),
        }
    }
    if reachable.is_empty() {
        if !foreign.is_empty() {
            return Err(SinkError::definite(&name, format!("not a Cassandra server: {} — check the host and port of the cassandra:// URL (CQL's port is usually 9042)", foreign.join("; "))));
        }
        return Err(SinkError::transient(&name, format!("{} — is Cassandra running there?", unreachable.join("; "))));
    }
    let mut builder = SessionBuilder::new()
        .known_nodes(&reachable)
        .connection_timeout(options.connect_timeout)
        .fetch_schema_metadata(false)
        .fetch_full_schema_metadata(false);
    if let Some((user, password)) = &endpoint.user {
        builder = builder.user(user, password);
    }
    let session = match tokio::time::timeout(options.connect_timeout * 2, builder.build()).await {
        Err(_) => {
            return Err(SinkError::transient(
                &name,
                format!("connecting: no session within {:?} — is Cassandra overloaded?", options.connect_timeout * 2),
            ))
        }
        Ok(Err(e)) => return Err(classify_session(&name, &e)),
        Ok(Ok(s)) => s,
    };
    tracing::info!(sink = %name, "connected to Cassandra");
    Ok((session, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_names_hide_credentials() {
        let e = Endpoint::parse("cassandra://u:p%40ss@h1:9000,h2/ks").unwrap();
        assert_eq!(e.hosts, vec![("h1".to_string(), 9000), ("h2".to_string(), DEFAULT_PORT)]);
        assert_eq!(e.user, Some(("u".to_string(), "p@ss".to_string())));
        assert_eq!(sink_name("cassandra://u:secret@127.0.0.1:9042/ignored"), "cassandra://127.0.0.1:9042");
        assert_eq!(sink_name("cassandra://127.0.0.1"), "cassandra://127.0.0.1:9042");
        assert_eq!(Endpoint::parse("cassandra://[::1]:9043").unwrap().hosts, vec![("::1".to_string(), 9043)]);
        assert!(Endpoint::parse("mongodb://h").is_err());
        assert!(Endpoint::parse("cassandra://").is_err());
        assert!(Endpoint::parse("cassandra://h:notaport").is_err());
    }

    #[test]
    fn replication_comes_from_the_url() {
        let default = CassandraOptions::default;
        assert_eq!(
            url_options("cassandra://h:9042", default()).unwrap().replication,
            Replication::Simple { factor: 1 }
        );
        assert_eq!(
            url_options("cassandra://h:9042/ks?replication_factor=3", default()).unwrap().replication,
            Replication::Simple { factor: 3 }
        );
        assert_eq!(
            url_options("cassandra://u:p@h1,h2?replication=dc1:3,dc2:2", default()).unwrap().replication,
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)])
        );
        assert_eq!(
            url_options("cassandra://h?replication=eu%2Dwest:1", default()).unwrap().replication,
            Replication::NetworkTopology(vec![("eu-west".into(), 1)])
        );
        let in_code = CassandraOptions { replication: Replication::Simple { factor: 5 }, ..default() };
        assert_eq!(url_options("cassandra://h?", in_code).unwrap().replication, Replication::Simple { factor: 5 });
        for (url, says) in [
            ("cassandra://h?replication_factor=0", "not a replication factor"),
            ("cassandra://h?replication_factor=three", "not a replication factor"),
            ("cassandra://h?replication_factor=", "not a replication factor"),
            ("cassandra://h?replication=dc1", "DATACENTER:FACTOR"),
            ("cassandra://h?replication=:3", "DATACENTER:FACTOR"),
            ("cassandra://h?replication=dc1:3,dc1:2", "given twice"),
            ("cassandra://h?replication=dc1:x", "not a replication factor"),
            ("cassandra://h?replication_factor=3&replication=dc1:3", "replication twice"),
            ("cassandra://h?replication_factor=3&replication_factor=2", "replication twice"),
            ("cassandra://h?consistency=quorum", "unknown option 'consistency'"),
        ] {
            let err = url_options(url, default()).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
        // Options never leak into the hosts or the name.
        assert_eq!(
            Endpoint::parse("cassandra://h:9000?replication_factor=3").unwrap().hosts,
            vec![("h".to_string(), 9000)]
        );
        assert_eq!(sink_name("cassandra://h:9000?replication_factor=3"), "cassandra://h:9000");
    }

    #[test]
    fn time_bucket_comes_from_the_url() {
        let default = CassandraOptions::default;
        assert_eq!(url_options("cassandra://h:9042", default()).unwrap().time_bucket, None);
        assert_eq!(
            url_options("cassandra://h:9042?time_bucket=ts:day", default()).unwrap().time_bucket,
            Some(TimeBucket { column: "ts".into(), granularity: BucketGranularity::Day })
        );
        let both = url_options("cassandra://h?replication_factor=3&time_bucket=created%3Aat:hour", default()).unwrap();
        assert_eq!(both.replication, Replication::Simple { factor: 3 });
        assert_eq!(
            both.time_bucket,
            Some(TimeBucket { column: "created:at".into(), granularity: BucketGranularity::Hour })
        );
        assert_eq!(
            url_options("cassandra://h?time_bucket=d:month", default()).unwrap().time_bucket.unwrap().granularity,
            BucketGranularity::Month
        );
        let in_code = CassandraOptions {
            time_bucket: Some(TimeBucket { column: "x".into(), granularity: BucketGranularity::Day }),
            ..default()
        };
        assert_eq!(
            url_options("cassandra://h?replication_factor=2", in_code).unwrap().time_bucket.unwrap().column,
            "x"
        );
        for (url, says) in [
            ("cassandra://h?time_bucket=ts:week", "unknown granularity 'week'"),
            ("cassandra://h?time_bucket=ts:Day", "unknown granularity 'Day'"),
            ("cassandra://h?time_bucket=ts", "COLUMN:GRANULARITY"),
            ("cassandra://h?time_bucket=:day", "COLUMN:GRANULARITY"),
            ("cassandra://h?time_bucket=", "COLUMN:GRANULARITY"),
            ("cassandra://h?time_bucket=a:day&time_bucket=b:day", "time_bucket twice"),
            ("cassandra://h?bucket=ts:day", "time_bucket=COLUMN"),
        ] {
            let err = url_options(url, default()).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn time_bucket_labels() {
        use polyrepl_core::{Date, DateTime};
        let bucket = |granularity| TimeBucket { column: "ts".into(), granularity };
        let dt = DateTime {
            date: Date { year: 2025, month: 11, day: 29 },
            hour: 7,
            minute: 5,
            second: 1,
            micros: 5,
            fsp: 6,
        };
        assert_eq!(bucket(BucketGranularity::Hour).label(&Value::DateTime(dt)).as_deref(), Some("2025-11-29T07"));
        assert_eq!(bucket(BucketGranularity::Day).label(&Value::Timestamp(dt)).as_deref(), Some("2025-11-29"));
        assert_eq!(bucket(BucketGranularity::Month).label(&Value::DateTime(dt)).as_deref(), Some("2025-11"));
        assert_eq!(bucket(BucketGranularity::Hour).label(&Value::Date(dt.date)).as_deref(), Some("2025-11-29T00"));
        assert_eq!(bucket(BucketGranularity::Day).label(&Value::Null), None);
        assert_eq!(bucket(BucketGranularity::Day).label(&Value::Date(Date { year: 0, month: 0, day: 0 })), None);
    }

    #[test]
    fn replication_literals() {
        assert_eq!(Replication::Simple { factor: 3 }.cql(), "{'class': 'SimpleStrategy', 'replication_factor': 3}");
        assert_eq!(
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)]).cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
    }
}
