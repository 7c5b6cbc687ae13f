//! Connecting to a Redis server from a `redis://` URL, after making sure that what answers is Redis.
//!
//! Invariants:
//! - [`sink_name`] never contains credentials or query options: it is safe for logs and metrics.
//! - Nothing listening at the address (refused, unresolvable, connect timeout) is a transient error and
//!   is seen at once by a raw probe, bounded by `connect_timeout`: no hang, no retry loop at start-up.
//! - Something that is not Redis at the address (MongoDB, MySQL, a web server) is a definite error that
//!   says so: the probe sends inline `PING`s and requires a RESP reply.
//! - Refused outright, with a message: cluster URLs (not supported yet), TLS (`rediss://`, not built in
//!   yet), unknown schemes, a server running in cluster mode.
//! - A connection is only returned after the server answered `PING` through the real client, so
//!   authentication failures surface here (definite).

use std::time::Duration;

use polyrepl_core::SinkError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{classify, definite, transient};
use crate::options::RedisOptions;

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
    url.split_once("://").map_or("redis", |(s, _)| s).to_ascii_lowercase()
}

/// The URL reduced to scheme, host and port (`redis://127.0.0.1:6379`), with `/N` when the database
/// number is not 0. No credentials, no options. Best effort for URLs that do not parse.
pub fn sink_name(url: &str) -> String {
    match url.into_connection_info() {
        Ok(info) => name_of(&info),
        Err(_) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}")
        }
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
/// Returns the connection and the sink name.
pub async fn connect(url: &str, options: &RedisOptions) -> Result<(ConnectionManager, String), SinkError> {
    let name = sink_name(url);
    let scheme = scheme(url);
    if scheme.contains("cluster") {
        return Err(definite(
            &name,
            format!("{scheme}:// URLs are not supported yet: polyrepl's Redis sink talks to one server (a standalone Redis or a cluster's single primary is not enough); use redis://HOST:PORT of a non-cluster server"),
        ));
    }
    if matches!(scheme.as_str(), "rediss" | "valkeys") {
        return Err(definite(&name, "TLS (rediss://) is not supported by this build of polyrepl yet; use redis://HOST:PORT (e.g. through a local TLS tunnel)"));
    }
    if !matches!(scheme.as_str(), "redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix") {
        return Err(definite(&name, format!("'{scheme}://' is not a Redis URL: expected redis://[USER:PASSWORD@]HOST[:PORT][/DB]")));
    }
    let info = url
        .into_connection_info()
        .map_err(|e| definite(&name, format!("the Redis URL is not valid ({e}): expected redis://[USER:PASSWORD@]HOST[:PORT][/DB]")))?;
    if let ConnectionAddr::Tcp(host, port) = info.addr() {
        match probe(host, *port, options.connect_timeout).await {
            ProbeOutcome::Redis => {}
            ProbeOutcome::Unreachable(why) => return Err(transient(&name, format!("{why} — is Redis running there?"))),
            ProbeOutcome::NotRedis(why) => {
                return Err(definite(&name, format!("not a Redis server: {why} — check the host and port of the Redis URL")))
            }
        }
    }
    let client = redis::Client::open(info).map_err(|e| classify(&name, "reading the Redis URL", &e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let mut conn = tokio::time::timeout(options.connect_timeout * 3, ConnectionManager::new_with_config(client, config))
        .await
        .map_err(|_| transient(&name, format!("connecting timed out after {:?}", options.connect_timeout * 3)))?
        .map_err(|e| classify(&name, "connecting", &e))?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| classify(&name, "PING", &e))?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap_or_default();
    let cluster: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await.unwrap_or_default();
    if info_field(&cluster, "cluster_enabled") == Some("1") {
        return Err(definite(&name, "this Redis runs in cluster mode, which polyrepl's Redis sink does not support yet (a batch is one MULTI/EXEC across many keys); use a standalone Redis"));
    }
    tracing::info!(sink = %name, version = info_field(&info, "redis_version").unwrap_or("unknown"), "connected to Redis");
    Ok((conn, name))
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
        Ok(Err(e)) => return ProbeOutcome::NotRedis(format!("{address} broke the connection before a PING could be sent ({e})")),
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
    let text: String = bytes.iter().take(32).map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
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
}
