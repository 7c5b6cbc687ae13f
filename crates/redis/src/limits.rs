//! What the Redis server refuses, read from its configuration at connect: the longest bulk string
//! (`proto-max-bulk-len`, 512 MiB by default) and the largest query buffer (`client-query-buffer-limit`,
//! 1 GiB). A row with a key or a field value over the first, or whose `HSET` is over the second, cannot
//! be held: Redis answers a longer bulk with a protocol error and closes the connection, which would
//! otherwise look like an outage and be retried forever.
//!
//! Invariants:
//! - Read once per connection; when the server does not let us read them (`CONFIG` renamed or denied by
//!   an ACL), Redis's defaults are assumed and that is logged.
//! - [`field_len`] is the exact length of the bytes the sink writes for a value ([`crate::mapping`]).

use polyrepl_core::Value;
use redis::aio::ConnectionLike;

/// Redis's default `proto-max-bulk-len`.
pub const DEFAULT_BULK: usize = 512 << 20;
/// Redis's default `client-query-buffer-limit`.
pub const DEFAULT_QUERY_BUFFER: usize = 1 << 30;

/// The server's limits on what one command may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest key, field name or value (`proto-max-bulk-len`).
    pub bulk: usize,
    /// Largest command (`client-query-buffer-limit`).
    pub query_buffer: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { bulk: DEFAULT_BULK, query_buffer: DEFAULT_QUERY_BUFFER }
    }
}

/// Reads the limits from the server (`CONFIG GET`), or the defaults when it will not say.
pub async fn read<C: ConnectionLike + Send>(conn: &mut C, sink: &str) -> ServerLimits {
    let mut limits = ServerLimits::default();
    for (name, slot) in
        [("proto-max-bulk-len", &mut limits.bulk), ("client-query-buffer-limit", &mut limits.query_buffer)]
    {
        let answer: Result<Vec<String>, _> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(conn).await;
        match answer.ok().and_then(|pair| pair.get(1).and_then(|v| v.parse::<usize>().ok())) {
            Some(value) => *slot = value,
            None => tracing::info!(
                sink,
                setting = name,
                assumed = *slot,
                "cannot read a Redis limit (CONFIG GET refused?): assuming Redis's default"
            ),
        }
    }
    limits
}

/// Bytes the sink writes for a non-NULL `value` in a hash field.
pub fn field_len(value: &Value) -> usize {
    match value {
        Value::String(s) | Value::Decimal(s) | Value::Enum(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Set(items) => items.iter().map(|i| i.len() + 1).sum::<usize>().saturating_sub(1),
        Value::Json(j) => polyrepl_core::unmappable::json_text_len(j),
        other => other.text().map_or(0, |t| t.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::to_field;

    #[test]
    fn field_len_is_the_length_written() {
        for v in [
            Value::String("ü🙂".into()),
            Value::Bytes(vec![0; 7]),
            Value::Json(serde_json::json!({"a": [1, 2.5, "x"]})),
            Value::Set(vec!["a".into(), "bc".into()]),
            Value::Set(vec![]),
            Value::Int(-42),
            Value::Decimal("12.500".into()),
        ] {
            assert_eq!(field_len(&v), to_field(&v).unwrap().len(), "{v:?}");
        }
    }
}
