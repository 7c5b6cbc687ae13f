//! Connecting to a Redis server from a `redis://` URL, or to a Redis Cluster from a
//! `redis+cluster://HOST:PORT[,HOST:PORT…]` URL, after making sure that what answers is Redis.
//!
//! Invariants:
//! - [`sink_name`] never contains credentials or query options: it is safe for logs and metrics.
//! - Nothing listening at the address (refused, unresolvable, connect timeout) is a transient error and
//!   is seen at once by a raw probe, bounded by `connect_timeout`: no hang, no retry loop at start-up.
//! - Something that is not Redis at the address (MongoDB, MySQL, a web server) is a definite error that
//!   says so: the probe sends inline `PING`s and requires a RESP reply.
//! - Refused outright, with a message: TLS (`rediss://`, `rediss+cluster://`; not built in yet), unknown
//!   schemes, a database number other than 0 on a cluster (a cluster has database 0 only).
//! - Cluster mode is chosen by the URL (`redis+cluster://` or `valkey+cluster://`, every listed node a
//!   seed) or found at connect time: a `redis://` URL whose server reports `cluster_enabled:1` is used
//!   as the one seed of a cluster connection (logged), so the same URL keeps working when a server is
//!   turned into a cluster node. Either way the client learns the slot map from the cluster itself.
//! - A connection is only returned after the server answered `PING` through the real client, so
//!   authentication failures surface here (definite).

use std::time::Duration;

use polyrepl_core::redact::{url_hosts, url_scheme};
use polyrepl_core::SinkError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::classify;
use crate::options::RedisOptions;
use crate::resp::{Encoded, LaneConnection};

/// A connection to a standalone Redis or to a Redis Cluster; cheap to clone (both share one
/// multiplexed, auto-reconnecting connection). Commands with keys are routed by the cluster client to
/// the node owning the key's slot; a pipeline must stay within one slot in cluster mode.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server (standalone, or a replica-less primary not in cluster mode).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// True for a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// What a probed address turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A server speaking RESP answered (possibly with an error such as `-NOAUTH`).
    Redis,
    /// Nothing could be reached there (refused, unresolvable, timed out connecting).
    Unreachable(String),
    /// Something answered (or hung up, or stayed silent) but not as Redis; the text says what was seen.
    NotRedis(String),
}

/// The scheme of `url`, lowercased (`redis` when the URL has none).
fn scheme(url: &str) -> String {
    url_scheme(url).unwrap_or("redis").to_ascii_lowercase()
}

/// The URL reduced to scheme, host and port (`redis://127.0.0.1:6379`), with `/N` when the database
/// number is not 0. No credentials, no options. Best effort for URLs that do not parse.
pub fn sink_name(url: &str) -> String {
    match url.into_connection_info() {
        Ok(info) => name_of(&info),
        Err(_) => format!("{}://{}", url_scheme(url).unwrap_or("redis"), url_hosts(url)),
    }
}

fn name_of(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    let db = if db != 0 { format!("/{db}") } else { String::new() };
    match info.addr() {
        ConnectionAddr::Tcp(host, port) if host.contains(':') => format!("redis://[{host}]:{port}{db}"),
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}{db}"),
        ConnectionAddr::Unix(path) => format!("redis+unix://{}{db}", path.display()),
        other => format!("redis://{other}{db}"),
    }
}

/// Connects to `url` (polyrepl's options already removed), checking scheme, protocol and credentials.
/// Returns the connection (standalone or cluster, see the module notes) and the sink name.
pub async fn connect(url: &str, options: &RedisOptions) -> Result<(RedisConnection, String), SinkError> {
    let name = sink_name(url);
    let scheme = scheme(url);
    if matches!(scheme.as_str(), "rediss" | "valkeys" | "rediss+cluster" | "valkeys+cluster") {
        return Err(SinkError::definite(&name, "TLS (rediss://) is not supported by this build of polyrepl yet; use redis://HOST:PORT or redis+cluster://HOST:PORT,… (e.g. through a local TLS tunnel)"));
    }
    if matches!(scheme.as_str(), "redis+cluster" | "valkey+cluster") {
        let seeds = cluster_seeds(url).map_err(|m| SinkError::definite(&name, m))?;
        return connect_cluster(&name, seeds, options).await;
    }
    if !matches!(scheme.as_str(), "redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix") {
        return Err(SinkError::definite(
            &name,
            format!("'{scheme}://' is not a Redis URL: expected redis://[USER:PASSWORD@]HOST[:PORT][/DB] or redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]"),
        ));
    }
    let info = url.into_connection_info().map_err(|e| {
        SinkError::definite(
            &name,
            format!("the Redis URL is not valid ({e}): expected redis://[USER:PASSWORD@]HOST[:PORT][/DB]"),
        )
    })?;
    if let ConnectionAddr::Tcp(host, port) = info.addr() {
        match probe(host, *port, options.connect_timeout).await {
            ProbeOutcome::Redis => {}
            ProbeOutcome::Unreachable(why) => {
                return Err(SinkError::transient(&name, format!("{why} — is Redis running there?")))
            }
            ProbeOutcome::NotRedis(why) => {
                return Err(SinkError::definite(
                    &name,
                    format!("not a Redis server: {why} — check the host and port of the Redis URL"),
                ))
            }
        }
    }
    let client = redis::Client::open(info.clone()).map_err(|e| classify(&name, "reading the Redis URL", &e))?;
    let config = manager_config(options);
    let mut conn = tokio::time::timeout(options.connect_timeout * 3, ConnectionManager::new_with_config(client, config))
        .await
        .map_err(|_| SinkError::transient(&name, format!("connecting timed out after {:?}", options.connect_timeout * 3)))?
        .map_err(|e| {
            if e.to_string().contains("not allowed in cluster mode") {
                let db = info.redis_settings().db();
                SinkError::definite(&name, format!("this Redis runs in cluster mode, which has database 0 only, but the URL asks for database {db}: remove /{db} from the URL"))
            } else {
                classify(&name, "connecting", &e)
            }
        })?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| classify(&name, "PING", &e))?;
    let server: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap_or_default();
    let cluster: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await.unwrap_or_default();
    if info_field(&cluster, "cluster_enabled") == Some("1") {
        if matches!(info.addr(), ConnectionAddr::Unix(_)) {
            return Err(SinkError::definite(&name, "this Redis runs in cluster mode, which needs TCP addresses: use redis+cluster://HOST:PORT[,HOST:PORT…]"));
        }
        tracing::info!(sink = %name, "this Redis runs in cluster mode: using it as the seed of a Redis Cluster connection (say redis+cluster://… to make that explicit)");
        drop(conn);
        return connect_cluster(&name, vec![info], options).await;
    }
    tracing::info!(sink = %name, version = info_field(&server, "redis_version").unwrap_or("unknown"), "connected to Redis");
    Ok((RedisConnection::Single(conn), name))
}

/// The writing connections of the single server at `url` (without polyrepl's options):
/// [`RedisOptions::connections`] of them, each its own TCP stream ([`crate::resp`]), each checked with a
/// `PING` here so that a refused password or an unreachable server shows at start-up.
pub async fn writing_connections(
    url: &str,
    name: &str,
    options: &RedisOptions,
) -> Result<Vec<LaneConnection>, SinkError> {
    let info = url.into_connection_info().map_err(|e| classify(name, "reading the Redis URL", &e))?;
    let mut ping = Encoded::default();
    ping.command("PING", 0);
    let mut lanes = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let lane = LaneConnection::new(info.clone(), options.connect_timeout, options.response_timeout);
        lane.send(&ping).await.map_err(|e| classify(name, "opening a writing connection", &e))?;
        lanes.push(lane);
    }
    Ok(lanes)
}

fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// The seed nodes of a `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/0][?…]` URL, each as the
/// connection info of a plain `redis://` URL with the same credentials and query.
pub fn cluster_seeds(url: &str) -> Result<Vec<ConnectionInfo>, String> {
    let usage = "expected redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]";
    let (_, rest) = url.split_once("://").ok_or_else(|| format!("no scheme in the cluster URL: {usage}"))?;
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (userinfo, hosts) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
    if !path.is_empty() && path != "0" {
        return Err(format!(
            "a Redis Cluster has database 0 only, the URL asks for database /{path}: remove it ({usage})"
        ));
    }
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err(format!("the cluster URL lists an empty node: {usage}"));
        }
        let mut node = String::from("redis://");
        if let Some(u) = userinfo {
            node.push_str(u);
            node.push('@');
        }
        node.push_str(host);
        if let Some(q) = query {
            node.push_str("/?");
            node.push_str(q);
        }
        let info = node
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("cluster node '{host}' is not a valid address ({e}): {usage}"))?;
        seeds.push(info);
    }
    Ok(seeds)
}

/// Connects to a Redis Cluster through `seeds`, after probing that what answers at them is Redis.
async fn connect_cluster(
    name: &str,
    seeds: Vec<ConnectionInfo>,
    options: &RedisOptions,
) -> Result<(RedisConnection, String), SinkError> {
    if let Some(db) = seeds.iter().map(|s| s.redis_settings().db()).find(|&db| db != 0) {
        return Err(SinkError::definite(name, format!("this Redis runs in cluster mode, which has database 0 only, but the URL asks for database {db}: remove /{db} from the URL")));
    }
    let mut unreachable = Vec::new();
    for seed in &seeds {
        if let ConnectionAddr::Tcp(host, port) = seed.addr() {
            match probe(host, *port, options.connect_timeout).await {
                ProbeOutcome::Redis => {}
                ProbeOutcome::Unreachable(why) => unreachable.push(why),
                ProbeOutcome::NotRedis(why) => {
                    return Err(SinkError::definite(
                        name,
                        format!("not a Redis server: {why} — check the nodes of the Redis Cluster URL"),
                    ))
                }
            }
        }
    }
    if unreachable.len() == seeds.len() {
        return Err(SinkError::transient(
            name,
            format!("no cluster node answered: {} — is the Redis Cluster running?", unreachable.join("; ")),
        ));
    }
    let client = ClusterClient::builder(seeds)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.response_timeout)
        .retries(3)
        .build()
        .map_err(|e| SinkError::definite(name, format!("the Redis Cluster URL is not valid: {e}")))?;
    let mut conn = tokio::time::timeout(options.connect_timeout * 3, client.get_async_connection())
        .await
        .map_err(|_| {
            SinkError::transient(
                name,
                format!("connecting to the cluster timed out after {:?}", options.connect_timeout * 3),
            )
        })?
        .map_err(|e| {
            let mut error = classify(name, "connecting to the Redis Cluster", &e);
            if e.to_string().contains("cluster support disabled") {
                error = SinkError::definite(
                    name,
                    format!(
                        "{error} — this server is not a cluster node: use redis://HOST:PORT for a standalone Redis"
                    ),
                );
            }
            error
        })?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| classify(name, "PING", &e))?;
    let state: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .map_err(|e| classify(name, "CLUSTER INFO", &e))?;
    match info_field(&state, "cluster_state") {
        Some("ok") => {}
        other => {
            return Err(SinkError::transient(
                name,
                format!(
                    "the Redis Cluster is not serving (cluster_state:{}) — wait until every slot is covered",
                    other.unwrap_or("unknown")
                ),
            ))
        }
    }
    tracing::info!(sink = %name, slots = info_field(&state, "cluster_slots_assigned").unwrap_or("?"), nodes = info_field(&state, "cluster_known_nodes").unwrap_or("?"), "connected to Redis Cluster");
    Ok((RedisConnection::Cluster(conn), name.to_string()))
}

/// The value of `field:` in an `INFO` reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).map(str::trim)
}

/// Probes `host:port` with inline `PING`s, each step bounded by `timeout`.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let address = format!("{host}:{port}");
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => return ProbeOutcome::Unreachable(format!("connecting to {address} timed out after {timeout:?}")),
        Ok(Err(e)) => return ProbeOutcome::Unreachable(format!("cannot connect to {address}: {e}")),
        Ok(Ok(s)) => s,
    };
    // Three inline PINGs: Redis answers the first at once; 18 bytes are more than a MongoDB message
    // header, so a MongoDB-protocol server reads an absurd message length and hangs up instead of
    // waiting for the rest.
    match tokio::time::timeout(timeout, stream.write_all(b"PING\r\nPING\r\nPING\r\n")).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return ProbeOutcome::NotRedis(format!("{address} broke the connection before a PING could be sent ({e})"))
        }
        Err(_) => return ProbeOutcome::Unreachable(format!("sending PING to {address} timed out after {timeout:?}")),
    }
    let mut reply = [0u8; 64];
    match tokio::time::timeout(timeout, stream.read(&mut reply)).await {
        Err(_) => ProbeOutcome::NotRedis(format!("{address} accepted a connection but did not answer PING within {timeout:?}")),
        Ok(Err(e)) => ProbeOutcome::NotRedis(format!(
            "{address} broke the connection instead of answering PING ({e}); a server requiring TLS does this too, and rediss:// is not supported yet"
        )),
        Ok(Ok(0)) => ProbeOutcome::NotRedis(format!(
            "{address} closed the connection without answering PING (a MongoDB server does this; so does a server requiring TLS)"
        )),
        Ok(Ok(n)) => match reply[0] {
            b'+' | b'-' | b'$' | b'*' | b':' | b'%' | b'>' | b'_' => ProbeOutcome::Redis,
            _ => ProbeOutcome::NotRedis(format!("{address} answered PING with {}", preview(&reply[..n]))),
        },
    }
}

/// Describes the first bytes a non-Redis server sent, recognising common protocols.
fn preview(bytes: &[u8]) -> String {
    let text: String =
        bytes.iter().take(32).map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
    let guess = if bytes.starts_with(b"HTTP/") {
        " — that is HTTP: this URL points at a web server"
    } else if bytes.len() > 5 && bytes[3] == 0 && bytes[4] == 10 {
        " — that is a MySQL/MariaDB server greeting: this URL points at the source database"
    } else {
        ""
    };
    format!("bytes that are not the Redis protocol: {text:?}{guess}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_has_no_credentials_or_options() {
        assert_eq!(sink_name("redis://u:secret@127.0.0.1:6379/0?prefix=x"), "redis://127.0.0.1:6379");
        assert_eq!(sink_name("redis://:secret@localhost/3"), "redis://localhost:6379/3");
        assert_eq!(sink_name("redis://127.0.0.1"), "redis://127.0.0.1:6379");
        assert_eq!(sink_name("redis+cluster://u:p@h1:1,h2:2"), "redis+cluster://h1:1,h2:2");
    }

    #[test]
    fn recognises_other_protocols() {
        assert!(preview(b"HTTP/1.1 400 Bad").contains("HTTP"));
        assert!(preview(b"J\0\0\0\x0a5.5.5-10.11").contains("MySQL"));
        assert_eq!(info_field("# Server\r\nredis_version:7.0.15\r\n", "redis_version"), Some("7.0.15"));
    }

    #[test]
    fn cluster_urls_give_one_seed_per_node() {
        let seeds = cluster_seeds("redis+cluster://u:p%40w@10.0.0.1:7000,10.0.0.2:7001/?protocol=resp3").unwrap();
        assert_eq!(seeds.len(), 2);
        assert_eq!(seeds[1].addr(), &ConnectionAddr::Tcp("10.0.0.2".into(), 7001));
        assert_eq!(seeds[1].redis_settings().username(), Some("u"));
        assert_eq!(seeds[1].redis_settings().password(), Some("p@w"));
        assert_eq!(seeds[0].redis_settings().protocol(), redis::ProtocolVersion::RESP3);
        assert_eq!(cluster_seeds("redis+cluster://h:7000/0").unwrap().len(), 1);
        assert!(cluster_seeds("redis+cluster://h:7000/2").unwrap_err().contains("database 0 only"));
        assert!(cluster_seeds("redis+cluster://h:7000,,h:7001").unwrap_err().contains("empty node"));
    }
}
