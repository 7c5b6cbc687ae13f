//! [`RedisOptions`]: what the sink writes besides the row hashes, and how it talks to the server;
//! read from code and from the sink URL's query string.
//!
//! URL options (`redis://host:6379/0?prefix=app:&ttl=60&stream=10000`) are removed from the URL before
//! it reaches the redis crate, and override the options given in code:
//!
//! | query key          | option                | value                                                    |
//! |--------------------|-----------------------|----------------------------------------------------------|
//! | `prefix`           | `key_prefix`          | text prepended to every row key, verbatim (`app:` → `app:shop:orders:7`) |
//! | `ttl`              | `ttl`                 | seconds (`60`) or with a unit: `500ms`, `60s`, `10m`, `2h`, `1d`; > 0 |
//! | `stream`           | `stream`              | approximate MAXLEN of each table's change stream; > 0     |
//! | `connect_timeout`  | `connect_timeout`     | like `ttl`                                                |
//! | `response_timeout` | `response_timeout`    | like `ttl`                                                |
//! | `connections`      | `connections`         | connections a single server is written through, 1–64      |
//!
//! Every other query key (e.g. the redis crate's `protocol=resp3`) is passed through to the redis crate.
//! Percent-encoded values are decoded (`prefix=a%3Ab` is `a:b`).

use std::time::Duration;

/// Connections to a single server: measured with `polyrepl bench` (snapshot and cdc into Redis), 4
/// was the knee on 2 cores; more cost memory and server threads for nothing.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// Most connections the `connections` option accepts.
const MAX_CONNECTIONS: usize = 64;

/// How the sink writes rows; `Default` writes plain hashes with no prefix, TTL or stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prepended verbatim to every row key (not to the checkpoint or stream keys). Include your own
    /// separator: `Some("app:")` gives `app:DB:TABLE:PK`.
    pub key_prefix: Option<String>,
    /// When set, every written row key gets this time to live (PEXPIRE, millisecond precision), renewed
    /// on each write of the row. Deleted rows are removed at once.
    pub ttl: Option<Duration>,
    /// When set, every change is also appended to the table's change stream `polyrepl:stream:DB:TABLE`
    /// with `XADD … MAXLEN ~ N`; see [`crate::stream`] for the entry format.
    pub stream: Option<usize>,
    /// Bound on establishing a connection (and on the protocol probe); default 5 s.
    pub connect_timeout: Duration,
    /// Bound on waiting for any reply (a whole MULTI/EXEC chunk included); default 30 s.
    pub response_timeout: Duration,
    /// Connections a batch's writes are spread over on a single server (a key always on the same one,
    /// see [`crate::write`]); default 4. A cluster uses its own connections, one per node.
    pub connections: usize,
    /// Most commands in one MULTI/EXEC transaction; a larger batch is split into chunks. Default 20 000.
    pub max_chunk_commands: usize,
    /// Most payload bytes (keys, field names and values) in one MULTI/EXEC transaction. Default 32 MiB.
    pub max_chunk_bytes: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: None,
            ttl: None,
            stream: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            connections: DEFAULT_CONNECTIONS,
            max_chunk_commands: 20_000,
            max_chunk_bytes: 32 << 20,
        }
    }
}

/// Splits polyrepl's own options off `url`: returns the URL for the redis crate (its other query
/// parameters kept, in order) and `options` with the URL's values applied.
pub fn split_url_options(url: &str, mut options: RedisOptions) -> Result<(String, RedisOptions), String> {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let Some((head, query)) = base.split_once('?') else {
        return Ok((url.to_string(), options));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).map_err(|e| format!("URL option {key}: {e}"))?;
        match key {
            "prefix" => options.key_prefix = (!value.is_empty()).then_some(value),
            "ttl" => options.ttl = Some(positive_duration("ttl", &value)?),
            "stream" => {
                let n: usize = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("URL option stream={value}: expected the stream's maximum length, a whole number > 0")
                })?;
                options.stream = Some(n);
            }
            "connect_timeout" => options.connect_timeout = positive_duration("connect_timeout", &value)?,
            "response_timeout" => options.response_timeout = positive_duration("response_timeout", &value)?,
            "connections" => {
                options.connections = value.parse().ok().filter(|n| (1..=MAX_CONNECTIONS).contains(n)).ok_or_else(|| {
                    format!("URL option connections={value}: expected how many connections to write through, 1 to {MAX_CONNECTIONS}")
                })?;
            }
            _ => kept.push(pair),
        }
    }
    let mut clean = head.to_string();
    if !kept.is_empty() {
        clean.push('?');
        clean.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        clean.push('#');
        clean.push_str(f);
    }
    Ok((clean, options))
}

/// Checks options given in code (the URL parser checks its own).
pub fn check(options: &RedisOptions) -> Result<(), String> {
    if options.ttl.is_some_and(|t| t.as_millis() == 0) {
        return Err("ttl must be at least 1 ms (leave it unset for rows that never expire)".into());
    }
    if options.stream == Some(0) {
        return Err("stream must be a maximum length > 0 (leave it unset for no change stream)".into());
    }
    if options.connect_timeout.is_zero() || options.response_timeout.is_zero() {
        return Err("connect_timeout and response_timeout must be > 0".into());
    }
    if !(1..=MAX_CONNECTIONS).contains(&options.connections) {
        return Err(format!("connections must be 1 to {MAX_CONNECTIONS}"));
    }
    if options.max_chunk_commands < 8 || options.max_chunk_bytes < 1024 {
        return Err("max_chunk_commands must be ≥ 8 and max_chunk_bytes ≥ 1024".into());
    }
    Ok(())
}

/// `60` (seconds), `500ms`, `60s`, `10m`, `2h`, `1d`; must be > 0.
fn positive_duration(key: &str, text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("URL option {key}={text}: expected a number of seconds, or a number with ms, s, m, h or d")
    })?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("URL option {key}={text}: unknown unit '{unit}' (use ms, s, m, h or d)")),
    };
    if d.is_zero() {
        return Err(format!("URL option {key}={text}: must be > 0"));
    }
    Ok(d)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or("truncated %-escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_taken_out() {
        let (url, o) = split_url_options(
            "redis://h:6379/2?prefix=app%3A&ttl=60&protocol=resp3&stream=10000",
            RedisOptions::default(),
        )
        .unwrap();
        assert_eq!(url, "redis://h:6379/2?protocol=resp3");
        assert_eq!(o.key_prefix.as_deref(), Some("app:"));
        assert_eq!(o.ttl, Some(Duration::from_secs(60)));
        assert_eq!(o.stream, Some(10_000));
        let (_, o) = split_url_options("redis://h?connections=8", RedisOptions::default()).unwrap();
        assert_eq!(o.connections, 8);
        let (url, o) = split_url_options("redis://h/0?ttl=250ms", RedisOptions::default()).unwrap();
        assert_eq!(url, "redis://h/0");
        assert_eq!(o.ttl, Some(Duration::from_millis(250)));
        let (url, o) = split_url_options("redis://h", RedisOptions::default()).unwrap();
        assert_eq!((url.as_str(), o), ("redis://h", RedisOptions::default()));
    }

    #[test]
    fn bad_url_options_are_refused() {
        for bad in [
            "redis://h?ttl=0",
            "redis://h?ttl=abc",
            "redis://h?ttl=5y",
            "redis://h?stream=0",
            "redis://h?stream=-1",
            "redis://h?connections=0",
            "redis://h?connections=65",
        ] {
            assert!(split_url_options(bad, RedisOptions::default()).is_err(), "{bad}");
        }
        assert!(check(&RedisOptions { ttl: Some(Duration::ZERO), ..Default::default() }).is_err());
        assert!(check(&RedisOptions::default()).is_ok());
    }
}
