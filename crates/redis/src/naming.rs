//! Where things live in Redis: row hashes, the checkpoint and the change streams.
//!
//! - Row: `[prefix]DB:TABLE:PK`, a HASH with one field per non-NULL column, named like the column.
//!   PK is the key value's text ([`Value::mysql_text`]; BINARY/VARBINARY/BLOB key values as their raw
//!   bytes — Redis keys are binary-safe). A composite key joins its values' texts with `:` in key order,
//!   each value escaped (`\` → `\\`, `:` → `\:`) so that two different keys can never give the same
//!   Redis key (`("a:b","c")` is `a\:b:c`, `("a","b:c")` is `a:b\:c`). A single-column key is never
//!   escaped: `shop:orders:2025-01-01 12:00:00` is what it looks like.
//! - Checkpoint: `polyrepl:checkpoint:<pipeline>` (a STRING holding the checkpoint JSON).
//! - Change stream (optional): `polyrepl:stream:DB:TABLE`.
//! - Lease of a table's rows: `polyrepl:lease:[prefix]DB:TABLE` ([`crate::lease`]).
//! - Dead letters of a pipeline (`--on-unmappable dead-letter`): `polyrepl:dead_letters:<pipeline>`, a
//!   HASH with one field per row left out (the record's id → its JSON).
//!
//! Invariants:
//! - The same key always gives the same bytes: writes, deletes and `read_rows` agree.
//! - Database and table names containing `:` are refused (they would make keys of different tables
//!   collide); so are tables without a primary key (rows could not be addressed).
//! - The prefix applies to row keys only; checkpoint and stream keys are fixed so that tools find them.
//! - No key carries a `{hash tag}` of polyrepl's making: in a Redis Cluster the rows of one table spread
//!   over all hash slots ([`hash_slot`]), which is why cluster batches are atomic per slot only
//!   (see [`crate::write`]).

use polyrepl_core::{ColumnKind, TableSchema, Value};

/// Prefix of every checkpoint key.
pub const CHECKPOINT_KEY_PREFIX: &str = "polyrepl:checkpoint:";
/// Prefix of every change-stream key.
pub const STREAM_KEY_PREFIX: &str = "polyrepl:stream:";
/// Prefix of every lease key.
pub const LEASE_KEY_PREFIX: &str = "polyrepl:lease:";
/// Prefix of every dead-letter key.
pub const DEAD_LETTER_KEY_PREFIX: &str = "polyrepl:dead_letters:";

/// The key prefixes where polyrepl keeps its own state: a table whose rows would start the same way
/// (a source table `polyrepl.checkpoint`, … without a row-key prefix) is refused.
pub const OWN_KEY_PREFIXES: &[&str] =
    &[CHECKPOINT_KEY_PREFIX, STREAM_KEY_PREFIX, LEASE_KEY_PREFIX, DEAD_LETTER_KEY_PREFIX];

/// Why a table cannot be stored in Redis under the row-key prefix `prefix`, if it cannot.
pub fn check_table(prefix: Option<&str>, table: &TableSchema) -> Result<(), String> {
    check_names(prefix, table)?;
    table.check_primary_key("its rows could not be addressed by a Redis key")?;
    if let Some(c) = table.columns.iter().find(|c| matches!(c.kind, ColumnKind::Unsupported(_))) {
        let ColumnKind::Unsupported(t) = &c.kind else { unreachable!() };
        return Err(format!("column '{}' of {} has type {t}, which polyrepl does not replicate", c.name, table.id));
    }
    Ok(())
}

/// The part of [`check_table`] about names only: enough to remove a table's keys by name.
pub fn check_names(prefix: Option<&str>, table: &TableSchema) -> Result<(), String> {
    // Without a prefix, the rows of `polyrepl.checkpoint`, `polyrepl.stream`, … would share keys with
    // polyrepl's own checkpoints, change streams, …, and overwrite them.
    let rows_at = format!("{}:{}:", table.id.database, table.id.table);
    if prefix.is_none() && OWN_KEY_PREFIXES.contains(&rows_at.as_str()) {
        return Err(format!(
            "the Redis keys of table {} ({rows_at}…) are where polyrepl keeps its own state (checkpoints, change \
             streams, leases, dead letters): give the Redis sink a key prefix (redis://HOST:PORT?prefix=app:) or exclude the table",
            table.id
        ));
    }
    for (what, name) in [("database", &table.id.database), ("table", &table.id.table)] {
        if name.is_empty() || name.contains(':') {
            return Err(format!(
                "{what} name '{name}' of {} cannot be part of a Redis key: it is empty or contains ':', the key separator",
                table.id
            ));
        }
    }
    Ok(())
}

/// The Redis key of the row with primary key `key` (values in key order).
pub fn row_key(prefix: Option<&str>, table: &TableSchema, key: &[Value]) -> Result<Vec<u8>, String> {
    if key.len() != table.primary_key.len() {
        return Err(format!(
            "table {}: a change carries {} key value(s) for a {}-column primary key",
            table.id,
            key.len(),
            table.primary_key.len()
        ));
    }
    let mut out = Vec::with_capacity(64);
    if let Some(p) = prefix {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(table.id.database.as_bytes());
    out.push(b':');
    out.extend_from_slice(table.id.table.as_bytes());
    let composite = key.len() > 1;
    for value in key {
        out.push(b':');
        let text = key_text(value).ok_or_else(|| format!("table {}: a primary-key value is NULL", table.id))?;
        if composite {
            for &b in &text {
                if b == b':' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
        } else {
            out.extend_from_slice(&text);
        }
    }
    Ok(out)
}

/// A key value's bytes in a Redis key: raw bytes for binary values, MySQL's text otherwise.
fn key_text(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(b) => Some(b.clone()),
        v => v.text().map(|t| t.as_bytes().to_vec()),
    }
}

/// Number of hash slots of a Redis Cluster.
pub const HASH_SLOTS: u16 = 16_384;

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}` when the key
/// has a non-empty one, modulo 16384 — the server's own rule (cluster spec, "Keys distribution model").
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty());
    crc16_xmodem(tagged.unwrap_or(key)) % HASH_SLOTS
}

/// CRC16-CCITT, XMODEM variant (polynomial 0x1021, initial value 0), as Redis Cluster uses it; a byte
/// at a time from a table (bit by bit it was 5 % of a snapshot's CPU: every row key is hashed to pick
/// its lane).
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)])
}

/// [`crc16_xmodem`]'s table: the CRC of each byte value.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The checkpoint key of `pipeline`.
pub fn checkpoint_key(pipeline: &str) -> String {
    format!("{CHECKPOINT_KEY_PREFIX}{pipeline}")
}

/// The dead-letter key of `pipeline`.
pub fn dead_letter_key(pipeline: &str) -> String {
    format!("{DEAD_LETTER_KEY_PREFIX}{pipeline}")
}

/// The change-stream key of `table`.
pub fn stream_key(table: &TableSchema) -> String {
    format!("{STREAM_KEY_PREFIX}{}:{}", table.id.database, table.id.table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, TableId};

    fn table(pk: Vec<usize>) -> TableSchema {
        let col = |n: &str| Column { name: n.into(), kind: ColumnKind::VarChar, unsigned: false, nullable: false };
        TableSchema { id: TableId::new("shop", "orders"), columns: vec![col("a"), col("b")], primary_key: pk }
    }

    #[test]
    fn single_keys_are_verbatim_and_composite_keys_unambiguous() {
        let t1 = table(vec![0]);
        assert_eq!(row_key(None, &t1, &[Value::String("x:y".into())]).unwrap(), b"shop:orders:x:y");
        assert_eq!(row_key(Some("p:"), &t1, &[Value::Int(-7)]).unwrap(), b"p:shop:orders:-7");
        assert_eq!(row_key(None, &t1, &[Value::Bytes(vec![0, 0xff])]).unwrap(), b"shop:orders:\x00\xff");
        let t2 = table(vec![0, 1]);
        let k1 = row_key(None, &t2, &[Value::String("a:b".into()), Value::String("c".into())]).unwrap();
        let k2 = row_key(None, &t2, &[Value::String("a".into()), Value::String("b:c".into())]).unwrap();
        assert_eq!(k1, b"shop:orders:a\\:b:c");
        assert_eq!(k2, b"shop:orders:a:b\\:c");
        assert_eq!(row_key(None, &t2, &[Value::UInt(1), Value::String("\\".into())]).unwrap(), b"shop:orders:1:\\\\");
        assert!(row_key(None, &t2, &[Value::UInt(1)]).is_err());
        assert!(row_key(None, &t1, &[Value::Null]).is_err());
    }

    #[test]
    fn hash_slots_follow_the_cluster_rule() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        for key in [&b"shop:orders:1"[..], b"polyrepl:checkpoint:p", b"\x00\xff", b"a{b}c"] {
            assert_eq!(
                redis::cluster_routing::Slot::new(hash_slot(key)),
                Some(redis::cluster_routing::Slot::for_key(key))
            );
        }
    }

    #[test]
    fn tables_that_cannot_be_keyed_are_refused() {
        assert!(check_table(None, &table(vec![0])).is_ok());
        assert!(check_table(None, &table(vec![])).is_err());
        let mut t = table(vec![0]);
        t.id.database = "a:b".into();
        assert!(check_table(None, &t).is_err());
        // polyrepl's own keys: refused without a prefix, fine with one.
        for own in ["checkpoint", "stream", "lease", "dead_letters"] {
            let mut t = table(vec![0]);
            t.id = polyrepl_core::TableId::new("polyrepl", own);
            let err = check_table(None, &t).unwrap_err();
            assert!(err.contains("key prefix"), "{err}");
            assert!(check_table(Some("app:"), &t).is_ok());
        }
    }
}
