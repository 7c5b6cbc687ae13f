//! Paging through the row keys stored for a table, for `polyrepl verify` (rows the source lacks).
//!
//! Invariants:
//! - A page is one or more `SCAN cursor MATCH [prefix]DB:TABLE:* COUNT n` calls (until at least `limit`
//!   keys or the end; one call may return up to n matches, so a page can exceed `limit`, by at most
//!   [`SCAN_WORK_MAX`]), every glob character of the prefix and names escaped, so only that table's keys
//!   match. Redis SCAN guarantees every key present for the whole scan is returned at least once; it
//!   may return a key twice, which callers tolerate.
//! - The cursor is Redis's own cursor, as decimal text; `None` once Redis answers cursor 0.
//! - Keys are parsed back exactly as [`crate::naming::row_key`] built them: a single-column key is the
//!   whole rest of the key, a composite key is split on unescaped `:` and unescaped (`\:` → `:`,
//!   `\\` → `\`); each part is decoded by its column's kind like a field ([`from_field`]). A key that
//!   does not split into as many parts as the key has columns cannot be a row of this table and is
//!   skipped with a warning.
//! - Redis Cluster: not supported yet — a cluster's keys live on every master, and the client routes
//!   a keyless SCAN to one node only; scanning answers a definite error that says so.

use polyrepl_core::{SinkError, TableSchema, Value};

use crate::connection::RedisConnection;
use crate::error::classify;
use crate::mapping::from_field;

/// Least keys Redis inspects per `SCAN` call (its COUNT is work per call, not matches): with a small
/// COUNT, a table among millions of other keys would take a round trip per handful of keys.
pub const SCAN_WORK_MIN: usize = 1_000;
/// Most keys Redis inspects per `SCAN` call (bounds the time one call holds the server).
pub const SCAN_WORK_MAX: usize = 10_000;

/// One page of keys of `table` after `cursor` (see the module notes), and the next cursor.
pub async fn scan_keys(
    conn: &mut RedisConnection,
    sink: &str,
    prefix: Option<&str>,
    table: &TableSchema,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
    if conn.is_cluster() {
        return Err(SinkError::definite(
            sink,
            format!(
                "scanning the keys of {} on a Redis Cluster is not supported yet (keys live on every master): \
                 verify against a standalone server, or check extra rows with redis-cli --cluster call … SCAN",
                table.id
            ),
        ));
    }
    let table_prefix = table_prefix(prefix, table);
    let pattern = [glob_escape(&table_prefix), b"*".to_vec()].concat();
    let mut next: u64 = match &cursor {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
            SinkError::definite(
                sink,
                format!("scanning keys of {}: the scan cursor is not one this sink made", table.id),
            )
        })?,
    };
    let limit = limit.max(1);
    let mut keys = Vec::new();
    loop {
        let (cursor, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(next)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(limit.clamp(SCAN_WORK_MIN, SCAN_WORK_MAX))
            .query_async(conn)
            .await
            .map_err(|e| classify(sink, &format!("scanning the keys of {}", table.id), &e))?;
        for key in found {
            match parse_key(table, &key[table_prefix.len().min(key.len())..]) {
                Some(values) if key.starts_with(&table_prefix) => keys.push(values),
                _ => {
                    tracing::warn!(key = %String::from_utf8_lossy(&key), table = %table.id, "a Redis key under the table's prefix is not a row key of it; skipped")
                }
            }
        }
        next = cursor;
        if next == 0 {
            return Ok((keys, None));
        }
        if keys.len() >= limit {
            return Ok((keys, Some(next.to_string().into_bytes())));
        }
    }
}

/// `[prefix]DB:TABLE:`, the bytes every row key of `table` starts with.
pub fn table_prefix(prefix: Option<&str>, table: &TableSchema) -> Vec<u8> {
    format!("{}{}:{}:", prefix.unwrap_or(""), table.id.database, table.id.table).into_bytes()
}

/// `bytes` with the glob characters of Redis's MATCH (`* ? [ ] \`) escaped.
pub(crate) fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The key values encoded in `rest` (a row key without its table prefix), or `None` when it does not
/// have as many parts as the key has columns.
pub fn parse_key(table: &TableSchema, rest: &[u8]) -> Option<Vec<Value>> {
    let columns: Vec<_> = table.key_columns().collect();
    if columns.len() == 1 {
        return Some(vec![from_field(columns[0], rest)]);
    }
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    let mut escaped = false;
    for &b in rest {
        if escaped {
            parts.last_mut().expect("non-empty").push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b':' {
            parts.push(Vec::new());
        } else {
            parts.last_mut().expect("non-empty").push(b);
        }
    }
    if escaped || parts.len() != columns.len() {
        return None;
    }
    Some(columns.iter().zip(parts).map(|(c, p)| from_field(c, &p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::row_key;
    use polyrepl_core::{Column, ColumnKind, TableId};

    fn table(pk: Vec<usize>) -> TableSchema {
        let col = |n: &str, kind| Column { name: n.into(), kind, unsigned: false, nullable: false };
        TableSchema {
            id: TableId::new("shop", "orders"),
            columns: vec![col("a", ColumnKind::VarChar), col("b", ColumnKind::Int), col("c", ColumnKind::VarBinary)],
            primary_key: pk,
        }
    }

    #[test]
    fn keys_parse_back_to_their_values() {
        let cases: Vec<(Vec<usize>, Vec<Value>)> = vec![
            (vec![0], vec![Value::String("x:y\\z".into())]),
            (vec![1], vec![Value::Int(-42)]),
            (vec![0, 1], vec![Value::String("a:b\\".into()), Value::Int(7)]),
            (vec![2, 0], vec![Value::Bytes(vec![0, b':', 0xff]), Value::String("".into())]),
        ];
        for (pk, key) in cases {
            let t = table(pk);
            let full = row_key(Some("p*:"), &t, &key).unwrap();
            let prefix = table_prefix(Some("p*:"), &t);
            assert!(full.starts_with(&prefix));
            assert_eq!(parse_key(&t, &full[prefix.len()..]), Some(key));
        }
        assert_eq!(parse_key(&table(vec![0, 1]), b"only-one"), None);
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }
}
