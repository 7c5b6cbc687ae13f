//! What Cassandra refuses to hold, checked before writing ([`polyrepl_core::unmappable`]):
//! - a partition key over 65,535 bytes (a single key value, or a composite key's values with 3 bytes of
//!   framing each): Cassandra answers "Key length of N is longer than maximum of 65535";
//! - a row larger than one write may carry: the smaller of `native_transport_max_frame_size` (a CQL v4
//!   request must fit one frame, 16 MiB by default) and `max_mutation_size` (half of
//!   `commitlog_segment_size`, 16 MiB by default), less room for the rest of the request. Both are read
//!   at connect from the `system_views.settings` virtual table (Cassandra 4.0+); when unreadable,
//!   Cassandra's defaults are assumed and that is logged.
//!
//! Invariants:
//! - [`value_len`] counts the bytes a value takes in the request, as [`crate::mapping`] encodes it
//!   (text and blobs exactly, other values by their encoded width or a bound).

use polyrepl_core::Value;
use scylla::client::session::Session;

/// The longest partition key Cassandra stores.
pub const MAX_KEY_BYTES: usize = 65_535;
/// Cassandra's default `native_transport_max_frame_size` and `max_mutation_size`.
pub const DEFAULT_WRITE_BYTES: usize = 16 << 20;
/// Room kept in a request for everything but the row's values (statement id, timestamp, framing).
const REQUEST_OVERHEAD: usize = 64 << 10;

/// The server's limits on one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most bytes of values one write may carry.
    pub write_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { write_bytes: DEFAULT_WRITE_BYTES - REQUEST_OVERHEAD }
    }
}

/// `16MiB`, `512KiB`, `33554432B`, `16` (MiB, for the old `_in_mb` names) → bytes.
fn parse_size(text: &str, default_unit: usize) -> Option<usize> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(digits);
    let n: usize = n.parse().ok()?;
    let unit = match unit.trim() {
        "" => default_unit,
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Reads the limits from `system_views.settings`, or the defaults.
pub async fn read(session: &Session, sink: &str) -> ServerLimits {
    let rows = match session.query_unpaged("SELECT name, value FROM system_views.settings", &[]).await {
        Ok(result) => result.into_rows_result().ok(),
        Err(_) => None,
    };
    let mut settings: Vec<(String, Option<String>)> = Vec::new();
    if let Some(rows) = rows {
        if let Ok(iter) = rows.rows::<(String, Option<String>)>() {
            settings.extend(iter.flatten());
        }
    }
    let setting = |names: &[(&str, usize)]| {
        names.iter().find_map(|(name, unit)| {
            settings.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref().and_then(|v| parse_size(v, *unit)))
        })
    };
    let frame =
        setting(&[("native_transport_max_frame_size", 1 << 20), ("native_transport_max_frame_size_in_mb", 1 << 20)]);
    let mutation = setting(&[("max_mutation_size", 1 << 10), ("max_mutation_size_in_kb", 1 << 10)]).or_else(|| {
        setting(&[("commitlog_segment_size", 1 << 20), ("commitlog_segment_size_in_mb", 1 << 20)]).map(|s| s / 2)
    });
    if frame.is_none() || mutation.is_none() {
        tracing::info!(
            sink,
            ?frame,
            ?mutation,
            "cannot read Cassandra's write limits from system_views.settings: assuming its defaults (16 MiB)"
        );
    }
    let limit = frame.unwrap_or(DEFAULT_WRITE_BYTES).min(mutation.unwrap_or(DEFAULT_WRITE_BYTES));
    ServerLimits { write_bytes: limit.saturating_sub(REQUEST_OVERHEAD).max(1024) }
}

/// Bytes `value` takes as a bound value (an upper bound for the fixed-width kinds).
pub fn value_len(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::String(s) | Value::Decimal(s) | Value::Enum(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Set(items) => 4 + items.iter().map(|i| 4 + i.len()).sum::<usize>(),
        Value::Json(j) => polyrepl_core::unmappable::json_text_len(j),
        _ => 16,
    }
}

/// Why Cassandra would refuse the partition key made of `parts` (each part's value), if it would.
pub fn refused_key(parts: &[&Value]) -> Option<String> {
    let lens: Vec<usize> = parts.iter().map(|v| value_len(v)).collect();
    let total = if lens.len() == 1 { lens[0] } else { lens.iter().map(|l| l + 3).sum() };
    (total > MAX_KEY_BYTES).then(|| {
        format!("its partition key is {total} bytes, more than Cassandra's maximum key length of {MAX_KEY_BYTES} bytes")
    })
}

/// Why Cassandra would refuse a write of `row`, if it would.
pub fn refused_row(row: &[Value], limits: &ServerLimits) -> Option<String> {
    let total: usize = row.iter().map(|v| value_len(v) + 8).sum();
    (total > limits.write_bytes).then(|| {
        format!(
            "its row is about {total} bytes, more than the {} bytes one Cassandra write can carry \
             (native_transport_max_frame_size and max_mutation_size, less request overhead)",
            limits.write_bytes
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_keys_count_their_framing() {
        assert_eq!(parse_size("16MiB", 1), Some(16 << 20));
        assert_eq!(parse_size("512KiB", 1), Some(512 << 10));
        assert_eq!(parse_size("16", 1 << 20), Some(16 << 20));
        assert_eq!(parse_size("null", 1), None);
        let big = Value::String("k".repeat(65_535));
        assert!(refused_key(&[&big]).is_none());
        assert!(refused_key(&[&Value::String("k".repeat(65_536))]).unwrap().contains("65536 bytes"));
        assert!(refused_key(&[&Value::String("k".repeat(40_000)), &Value::String("k".repeat(40_000))]).is_some());
        let limits = ServerLimits { write_bytes: 1000 };
        assert!(refused_row(&[Value::Int(1), Value::String("x".repeat(900))], &limits).is_none());
        assert!(refused_row(&[Value::Int(1), Value::String("x".repeat(1000))], &limits).is_some());
    }
}
