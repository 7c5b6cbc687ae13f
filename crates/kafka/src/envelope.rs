//! Changes → Debezium change events (JSON), as Debezium's MySQL connector writes them with Kafka
//! Connect's JSON converter, so consumers and Kafka Connect sinks that read Debezium topics read
//! polyrepl's unchanged.
//!
//! A message's key is the row's primary key as a JSON object (`{"id": 7}`); its value is the envelope:
//! `before` (always `null`: polyrepl keeps only the row after a change), `after` (the row; `null` for a
//! delete), `source` (where the change was read: `connector` `mysql`, `name` = the topic prefix, `db`,
//! `table`, `file`, `pos`, `gtid`, `row`, `snapshot`, `ts_ms`…), `op` (`r` snapshot read, `c` insert,
//! `u` update, `d` delete), `ts_ms` (when polyrepl wrote it), `transaction` (`null`). With `schemas`
//! (the converter's `schemas.enable=true`) key and value are `{"schema": …, "payload": …}`.
//!
//! Values follow Debezium's defaults (`time.precision.mode=adaptive_time_microseconds`,
//! `bigint.unsigned.handling.mode=long`, `binary.handling.mode=bytes`) except DECIMAL, written as a
//! string as with `decimal.handling.mode=string` (exact, where the default's bytes need the schema to
//! read):
//!
//! | MySQL | JSON value | schema type (name) |
//! |---|---|---|
//! | TINYINT, SMALLINT (UNSIGNED TINYINT) | number | int16 |
//! | MEDIUMINT, INT (UNSIGNED SMALLINT, MEDIUMINT) | number | int32 |
//! | BIGINT (UNSIGNED INT, BIGINT) | number (exact; an UNSIGNED BIGINT above 2^63−1 does not fit an int64 reader) | int64 |
//! | FLOAT, DOUBLE | number | float32, float64 |
//! | DECIMAL | string, exactly as MySQL prints it | string |
//! | CHAR, VARCHAR, TEXT, ENUM | string | string (`io.debezium.data.Enum` for ENUM) |
//! | SET | string, labels joined by `,` | string (`io.debezium.data.EnumSet`) |
//! | BINARY, VARBINARY, BLOB | base64 string | bytes |
//! | BIT(1) | boolean | boolean |
//! | BIT(n > 1) | base64 of the bytes, least significant first | bytes (`io.debezium.data.Bits`) |
//! | DATE | days since 1970-01-01 | int32 (`io.debezium.time.Date`) |
//! | TIME | microseconds, signed | int64 (`io.debezium.time.MicroTime`) |
//! | DATETIME(0–3) | milliseconds since the epoch, wall clock read as UTC | int64 (`io.debezium.time.Timestamp`) |
//! | DATETIME(4–6) | microseconds since the epoch, wall clock read as UTC | int64 (`io.debezium.time.MicroTimestamp`) |
//! | TIMESTAMP | ISO-8601 UTC string, `2024-05-06T07:08:09.123Z` (the column's digits) | string (`io.debezium.time.ZonedTimestamp`) |
//! | YEAR | number | int32 (`io.debezium.time.Year`) |
//! | JSON | the document as a string | string (`io.debezium.data.Json`) |
//!
//! A zero date or datetime (`0000-00-00`) is `null`, as Debezium writes it.

use base64::Engine;
use polyrepl_core::{Change, ColumnKind, Op, TableSchema, Value};
use serde_json::{json, Map, Value as J};

/// What every event of one sink carries.
#[derive(Debug, Clone)]
pub struct EventFormat {
    /// The logical server name: `source.name`, the topics' prefix and the schemas' namespace.
    pub prefix: String,
    /// Key and value as `{"schema", "payload"}` (the JSON converter's `schemas.enable=true`).
    pub schemas: bool,
}

/// Where a change was read, for `source`.
pub struct Origin<'a> {
    pub change: &'a Change,
    /// A snapshot read (`op` `r`).
    pub snapshot: bool,
}

impl EventFormat {
    /// The topic of `table`: `<prefix>.<db>.<table>`.
    pub fn topic(&self, table: &TableSchema) -> String {
        format!("{}.{}.{}", self.prefix, table.id.database, table.id.table)
    }

    /// The message key of a change: its primary key.
    pub fn key(&self, change: &Change) -> Vec<u8> {
        let table = &change.table;
        let payload = key_payload(table, &change.key);
        let out = if self.schemas {
            let fields: Vec<J> = table.primary_key.iter().map(|&i| field_schema(table, i, false)).collect();
            json!({
                "schema": {"type": "struct", "fields": fields, "optional": false, "name": format!("{}.Key", self.record_name(table))},
                "payload": payload,
            })
        } else {
            payload
        };
        serde_json::to_vec(&out).expect("JSON serialises")
    }

    /// The message value of a change: the envelope. `now_ms` is its `ts_ms`.
    pub fn value(&self, origin: &Origin<'_>, now_ms: i64) -> Vec<u8> {
        let change = origin.change;
        let table = &change.table;
        let after = change.after.as_ref().map(|row| {
            let mut m = Map::new();
            for (column, value) in table.columns.iter().zip(row) {
                m.insert(column.name.clone(), encode(&column.kind, column.unsigned, value));
            }
            J::Object(m)
        });
        let op = match (origin.snapshot, change.op) {
            (true, _) => "r",
            (false, Op::Insert) => "c",
            (false, Op::Update) => "u",
            (false, Op::Delete) => "d",
        };
        let position = &change.position;
        let ts_ms = if change.source_ts == 0 { now_ms } else { i64::from(change.source_ts) * 1000 };
        let source = json!({
            "version": concat!("polyrepl-", env!("CARGO_PKG_VERSION")),
            "connector": "mysql",
            "name": self.prefix,
            "ts_ms": ts_ms,
            "snapshot": if origin.snapshot { "true" } else { "false" },
            "db": table.id.database,
            "sequence": null,
            "table": table.id.table,
            "server_id": 0,
            "gtid": position.gtid,
            "file": position.file,
            "pos": position.offset,
            "row": change.seq,
            "thread": null,
            "query": null,
        });
        let mut source = source;
        if let Some(part) = position.part {
            // Not Debezium's: where a part of a large transaction sits (see `Position::part`).
            source["polyrepl_part"] = J::from(part);
        }
        let payload = json!({
            "before": null,
            "after": after,
            "source": source,
            "op": op,
            "ts_ms": now_ms,
            "transaction": null,
        });
        let out = if self.schemas { json!({"schema": self.value_schema(table), "payload": payload}) } else { payload };
        serde_json::to_vec(&out).expect("JSON serialises")
    }

    /// `<prefix>.<db>.<table>`, the schemas' record name.
    fn record_name(&self, table: &TableSchema) -> String {
        format!("{}.{}.{}", self.prefix, table.id.database, table.id.table)
    }

    /// The Kafka Connect schema of the envelope.
    fn value_schema(&self, table: &TableSchema) -> J {
        let row_fields: Vec<J> = (0..table.columns.len()).map(|i| field_schema(table, i, true)).collect();
        let row = |field: &str| {
            json!({"type": "struct", "fields": row_fields, "optional": true,
                   "name": format!("{}.Value", self.record_name(table)), "field": field})
        };
        let s = |field: &str, ty: &str, optional: bool| json!({"type": ty, "optional": optional, "field": field});
        let source = json!({
            "type": "struct", "optional": false, "name": "io.debezium.connector.mysql.Source", "field": "source",
            "fields": [
                s("version", "string", false), s("connector", "string", false), s("name", "string", false),
                s("ts_ms", "int64", false), s("snapshot", "string", true), s("db", "string", false),
                s("sequence", "string", true), s("table", "string", true), s("server_id", "int64", false),
                s("gtid", "string", true), s("file", "string", false), s("pos", "int64", false),
                s("row", "int32", false), s("thread", "int64", true), s("query", "string", true),
            ],
        });
        json!({
            "type": "struct", "optional": false, "name": format!("{}.Envelope", self.record_name(table)),
            "fields": [row("before"), row("after"), source, s("op", "string", false), s("ts_ms", "int64", true),
                       json!({"type": "struct", "optional": true, "field": "transaction", "fields": [
                           s("id", "string", false), s("total_order", "int64", false),
                           s("data_collection_order", "int64", false)]})],
        })
    }
}

/// A primary key as the key's payload: `{"id": 7}` (key columns in key order).
pub fn key_payload(table: &TableSchema, key: &[Value]) -> J {
    let mut payload = Map::new();
    for (&i, value) in table.primary_key.iter().zip(key) {
        let column = &table.columns[i];
        payload.insert(column.name.clone(), encode(&column.kind, column.unsigned, value));
    }
    J::Object(payload)
}

/// The Kafka Connect schema of column `i` of `table`.
fn field_schema(table: &TableSchema, i: usize, in_value: bool) -> J {
    let column = &table.columns[i];
    let (ty, name) = schema_type(&column.kind, column.unsigned);
    let mut f = json!({"type": ty, "optional": in_value && column.nullable, "field": column.name});
    if let Some(name) = name {
        f["name"] = J::from(name);
    }
    f
}

/// Schema type and (Debezium logical) name of a column kind.
fn schema_type(kind: &ColumnKind, unsigned: bool) -> (&'static str, Option<&'static str>) {
    match kind {
        ColumnKind::TinyInt => ("int16", None),
        ColumnKind::SmallInt if !unsigned => ("int16", None),
        ColumnKind::SmallInt | ColumnKind::MediumInt => ("int32", None),
        ColumnKind::Int if !unsigned => ("int32", None),
        ColumnKind::Int | ColumnKind::BigInt => ("int64", None),
        ColumnKind::Float => ("float", None),
        ColumnKind::Double => ("double", None),
        ColumnKind::Decimal { .. } => ("string", None),
        ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text => ("string", None),
        ColumnKind::Enum { .. } => ("string", Some("io.debezium.data.Enum")),
        ColumnKind::Set { .. } => ("string", Some("io.debezium.data.EnumSet")),
        ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob => ("bytes", None),
        ColumnKind::Bit { bits: 1 } => ("boolean", None),
        ColumnKind::Bit { .. } => ("bytes", Some("io.debezium.data.Bits")),
        ColumnKind::Date => ("int32", Some("io.debezium.time.Date")),
        ColumnKind::Time { .. } => ("int64", Some("io.debezium.time.MicroTime")),
        ColumnKind::DateTime { fsp } if *fsp <= 3 => ("int64", Some("io.debezium.time.Timestamp")),
        ColumnKind::DateTime { .. } => ("int64", Some("io.debezium.time.MicroTimestamp")),
        ColumnKind::Timestamp { .. } => ("string", Some("io.debezium.time.ZonedTimestamp")),
        ColumnKind::Year => ("int32", Some("io.debezium.time.Year")),
        ColumnKind::Json => ("string", Some("io.debezium.data.Json")),
        ColumnKind::Unsupported(_) => ("string", None),
    }
}

/// A column value as Debezium's JSON converter writes it (table in the module doc).
pub fn encode(kind: &ColumnKind, _unsigned: bool, value: &Value) -> J {
    let b64 = |b: &[u8]| J::from(base64::engine::general_purpose::STANDARD.encode(b));
    match value {
        Value::Null => J::Null,
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => J::from(f64::from(*f)),
        Value::Double(d) => J::from(*d),
        Value::Decimal(s) | Value::String(s) | Value::Enum(s) => J::from(s.as_str()),
        Value::Set(labels) => J::from(labels.join(",")),
        Value::Bytes(b) => b64(b),
        Value::Bit(bits) => match kind {
            ColumnKind::Bit { bits: 1 } => J::from(*bits != 0),
            ColumnKind::Bit { bits: n } => {
                let len = usize::from(*n).div_ceil(8);
                b64(&bits.to_le_bytes()[..len.min(8)])
            }
            _ => J::from(*bits),
        },
        Value::Date(d) if d.is_zero() => J::Null,
        Value::Date(d) => {
            let midnight = polyrepl_core::DateTime { date: *d, hour: 0, minute: 0, second: 0, micros: 0, fsp: 0 };
            midnight.epoch_millis().map_or(J::Null, |ms| J::from(ms.div_euclid(86_400_000)))
        }
        Value::Time(t) => {
            let micros = (i64::from(t.hours) * 3600 + i64::from(t.minutes) * 60 + i64::from(t.seconds)) * 1_000_000
                + i64::from(t.micros);
            J::from(if t.negative { -micros } else { micros })
        }
        Value::DateTime(dt) => match epoch_micros(dt) {
            None => J::Null,
            Some(us) if dt.fsp <= 3 => J::from(us.div_euclid(1000)),
            Some(us) => J::from(us),
        },
        Value::Timestamp(dt) if dt.date.is_zero() => J::Null,
        Value::Timestamp(dt) => {
            let mut s = format!("{}T{:02}:{:02}:{:02}", dt.date, dt.hour, dt.minute, dt.second);
            if dt.fsp > 0 {
                let digits = format!("{:06}", dt.micros);
                s.push('.');
                s.push_str(&digits[..usize::from(dt.fsp.min(6))]);
            }
            s.push('Z');
            J::from(s)
        }
        Value::Year(y) => J::from(*y),
        Value::Json(j) => J::from(j.to_string()),
    }
}

/// Microseconds since the epoch of a wall-clock value read as UTC; `None` for a zero date.
fn epoch_micros(dt: &polyrepl_core::DateTime) -> Option<i64> {
    let ms = dt.epoch_millis()?;
    Some(ms.div_euclid(1000) * 1_000_000 + i64::from(dt.micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use polyrepl_core::testkit::builders::*;

    fn format(schemas: bool) -> EventFormat {
        EventFormat { prefix: "cdc".into(), schemas }
    }

    #[test]
    fn every_type_reads_back_as_written() {
        let table = type_table("db", "types");
        for row in edge_rows() {
            let change = insert(&table, row.clone());
            for schemas in [false, true] {
                let value: J =
                    serde_json::from_slice(&format(schemas).value(&Origin { change: &change, snapshot: false }, 5))
                        .unwrap();
                let back = decode::row(&table, &decode::payload(&value)["after"]).unwrap();
                for ((column, want), got) in table.columns.iter().zip(&row).zip(&back) {
                    let zero = match want {
                        Value::Date(d) => d.is_zero(),
                        Value::DateTime(d) | Value::Timestamp(d) => d.date.is_zero(),
                        _ => false,
                    };
                    let want = if zero { &Value::Null } else { want };
                    assert_eq!(got, want, "column {} ({:?}), schemas {schemas}", column.name, column.kind);
                }
                let key: J = serde_json::from_slice(&format(schemas).key(&change)).unwrap();
                assert_eq!(decode::key(&table, decode::payload(&key)).unwrap(), change.key);
            }
        }
    }

    #[test]
    fn an_event_looks_like_debeziums() {
        let table = simple_table("shop");
        let change = at(insert(&table, simple_row(7, Some("seven"))), 4242, 3);
        let f = format(false);
        assert_eq!(f.topic(&table), format!("cdc.shop.{}", table.id.table));
        let key: J = serde_json::from_slice(&f.key(&change)).unwrap();
        assert_eq!(key, json!({"id": 7}));
        let v: J = serde_json::from_slice(&f.value(&Origin { change: &change, snapshot: false }, 99)).unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], J::Null);
        assert_eq!(v["after"]["id"], 7);
        assert_eq!(v["ts_ms"], 99);
        assert_eq!(v["source"]["connector"], "mysql");
        assert_eq!(v["source"]["name"], "cdc");
        assert_eq!(v["source"]["db"], "shop");
        assert_eq!(v["source"]["pos"], 4242);
        assert_eq!(v["source"]["row"], 3);
        assert_eq!(v["source"]["snapshot"], "false");
        let read: J = serde_json::from_slice(&f.value(&Origin { change: &change, snapshot: true }, 99)).unwrap();
        assert_eq!((read["op"].as_str(), read["source"]["snapshot"].as_str()), (Some("r"), Some("true")));
        let gone = delete(&table, vec![Value::Int(7)]);
        let d: J = serde_json::from_slice(&f.value(&Origin { change: &gone, snapshot: false }, 1)).unwrap();
        assert_eq!((d["op"].as_str(), d["after"].is_null()), (Some("d"), true));
        let with_schema: J =
            serde_json::from_slice(&format(true).value(&Origin { change: &change, snapshot: false }, 1)).unwrap();
        assert_eq!(with_schema["schema"]["name"], format!("cdc.shop.{}.Envelope", table.id.table));
        assert_eq!(with_schema["payload"]["after"]["id"], 7);
    }

    #[test]
    fn temporal_values_follow_debeziums_defaults() {
        let enc = |kind: ColumnKind, v: Value| encode(&kind, false, &v);
        assert_eq!(enc(ColumnKind::Date, Value::Date(date(1970, 1, 2))), json!(1));
        assert_eq!(enc(ColumnKind::Date, Value::Date(date(1969, 12, 31))), json!(-1));
        assert_eq!(
            enc(ColumnKind::Time { fsp: 0 }, Value::Time(time(true, 838, 59, 59, 0, 0))),
            json!(-3_020_399_000_000i64)
        );
        let dt = datetime(2024, 5, 6, 7, 8, 9, 123_456, 6);
        assert_eq!(enc(ColumnKind::DateTime { fsp: 6 }, Value::DateTime(dt)), json!(1_714_979_289_123_456i64));
        let dt3 = datetime(2024, 5, 6, 7, 8, 9, 123_000, 3);
        assert_eq!(enc(ColumnKind::DateTime { fsp: 3 }, Value::DateTime(dt3)), json!(1_714_979_289_123i64));
        assert_eq!(enc(ColumnKind::Timestamp { fsp: 3 }, Value::Timestamp(dt3)), json!("2024-05-06T07:08:09.123Z"));
        assert_eq!(
            enc(ColumnKind::Decimal { precision: 30, scale: 3 }, Value::Decimal("-12.500".into())),
            json!("-12.500")
        );
    }
}
