//! The optional per-table change stream (`RedisOptions::stream = Some(n)`).
//!
//! Every change of a batch — not collapsed, in batch order — is appended to `polyrepl:stream:DB:TABLE`
//! with `XADD <key> MAXLEN ~ <n> * event <json>`, inside the same MULTI/EXEC as the row writes. The entry
//! has one field, `event`, holding this JSON envelope:
//!
//! ```json
//! {
//!   "op": "insert" | "update" | "delete",
//!   "before": null,
//!   "after": {"<column>": "<text>" | null, ...} | null,
//!   "key": {"<key column>": "<text>", ...},
//!   "position": "binlog.000003:1234",
//!   "gtid": "0-1-42" | null,
//!   "seq": 0,
//!   "snapshot": false,
//!   "ts": 1732450000
//! }
//! ```
//!
//! - `before` is always `null` (sinks receive only the row after the change); `after` is `null` for a delete.
//! - Column values are text as MySQL prints them ([`polyrepl_core::Value::mysql_text`]); binary values are
//!   `0x` + lowercase hex; NULL is JSON `null`. JSON columns are their JSON text inside a string.
//! - `position`/`gtid` is the commit position of the source transaction, `seq` the change's index in it;
//!   (`position`, `seq`) identifies a change. `snapshot` is true for rows copied by the initial snapshot
//!   (their position is the snapshot's hand-over point). `ts` is the commit time in seconds since the
//!   Unix epoch (0 when unknown, e.g. snapshot rows).
//!
//! Delivery is at least once: a batch is replayed only when its outcome is unknown (the connection broke
//! after EXEC was sent) or when it was split into several transactions and a later one failed; then its
//! entries are appended again. Consumers that must not see a change twice skip entries whose
//! (`position`, `seq`) they have seen.

use polyrepl_core::{Change, Op};
use serde_json::{json, Map, Value as Json};

use crate::mapping::envelope_text;

/// The JSON envelope of `change`, as stored in the entry's `event` field.
pub fn envelope(change: &Change, snapshot: bool) -> String {
    let table = &change.table;
    let key: Map<String, Json> =
        table.key_columns().zip(&change.key).map(|(c, v)| (c.name.clone(), envelope_text(v))).collect();
    let after = match (&change.op, &change.after) {
        (Op::Delete, _) | (_, None) => Json::Null,
        (_, Some(row)) => {
            Json::Object(table.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), envelope_text(v))).collect())
        }
    };
    let op = match change.op {
        Op::Insert => "insert",
        Op::Update => "update",
        Op::Delete => "delete",
    };
    json!({
        "op": op,
        "before": Json::Null,
        "after": after,
        "key": key,
        "position": format!("{}:{}", change.position.file, change.position.offset),
        "gtid": change.position.gtid,
        "seq": change.seq,
        "snapshot": snapshot,
        "ts": change.source_ts,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, Position, TableId, TableSchema, Value};
    use std::sync::Arc;

    #[test]
    fn envelope_has_the_documented_shape() {
        let col = |n: &str, kind| Column { name: n.into(), kind, unsigned: false, nullable: true };
        let table = Arc::new(TableSchema {
            id: TableId::new("shop", "orders"),
            columns: vec![col("id", ColumnKind::Int), col("note", ColumnKind::Text), col("raw", ColumnKind::Blob)],
            primary_key: vec![0],
        });
        let change = Change {
            position: Position::new("binlog.000003", 1234),
            seq: 2,
            table,
            op: Op::Update,
            key: vec![Value::Int(7)],
            after: Some(vec![Value::Int(7), Value::Null, Value::Bytes(vec![1, 255])]),
            source_ts: 1_732_450_000,
        };
        let v: Json = serde_json::from_str(&envelope(&change, false)).unwrap();
        assert_eq!(
            v,
            json!({"op": "update", "before": null, "after": {"id": "7", "note": null, "raw": "0x01ff"}, "key": {"id": "7"},
                   "position": "binlog.000003:1234", "gtid": null, "seq": 2, "snapshot": false, "ts": 1_732_450_000u32})
        );
        let delete = Change { op: Op::Delete, after: None, ..change };
        let v: Json = serde_json::from_str(&envelope(&delete, true)).unwrap();
        assert_eq!(v["after"], Json::Null);
        assert_eq!(v["op"], "delete");
        assert_eq!(v["snapshot"], true);
    }
}
