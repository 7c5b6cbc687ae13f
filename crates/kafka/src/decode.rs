//! Debezium change events (JSON) → polyrepl values: the inverse of [`crate::envelope::encode`], for
//! reading a topic back (`verify`) with the table's schema.

use base64::Engine;
use polyrepl_core::{Change, ColumnKind, Date, DateTime, Op, Position, Row, TableId, TableSchema, Time, Value};
use serde_json::Value as J;
use std::sync::Arc;

/// The payload of a key or value message: the object itself, or its `payload` when it carries its
/// schema (`{"schema", "payload"}`).
pub fn payload(message: &J) -> &J {
    match message {
        J::Object(m) if m.contains_key("schema") && m.contains_key("payload") => &m["payload"],
        other => other,
    }
}

/// What one event asks of a sink.
#[derive(Debug)]
pub enum Decoded {
    /// A row change (`c`, `r`, `u`, `d`).
    Change(Change),
    /// Every row of the table goes (`t`).
    Truncate,
    /// Nothing for the rows (a tombstone, or an event of another kind).
    Nothing,
}

/// The source table an event's value names (`source.db`, `source.table`).
pub fn table_of(value: &J) -> Option<TableId> {
    let source = &payload(value)["source"];
    Some(TableId::new(source["db"].as_str()?, source["table"].as_str()?))
}

/// An event (its key and value, both parsed JSON) of `table` → what it asks. The change's position is
/// the event's source position (file, pos, GTID state, and the part of a large transaction polyrepl
/// adds), so a sink orders it as `polyrepl run` would have; `seq` is `source.row`.
pub fn event(table: &Arc<TableSchema>, key: Option<&J>, value: &J) -> Result<Decoded, String> {
    let p = payload(value);
    let op = match p["op"].as_str() {
        Some("c") | Some("r") => Op::Insert,
        Some("u") => Op::Update,
        Some("d") => Op::Delete,
        Some("t") => return Ok(Decoded::Truncate),
        _ => return Ok(Decoded::Nothing),
    };
    let source = &p["source"];
    let position = Position {
        file: source["file"].as_str().unwrap_or_default().to_string(),
        offset: source["pos"].as_u64().unwrap_or(0),
        gtid: source["gtid"].as_str().map(str::to_string),
        part: source["polyrepl_part"].as_u64(),
    };
    let after = match op {
        Op::Delete => None,
        _ => Some(row(table, &p["after"])?),
    };
    let key = match (key, &after) {
        (Some(k), _) => self::key(table, payload(k))?,
        (None, Some(row)) => Change::key_of(table, row),
        (None, None) => return Err(format!("{}: a delete event without a key", table.id)),
    };
    Ok(Decoded::Change(Change {
        position,
        seq: source["row"].as_u64().unwrap_or(0) as u32,
        table: table.clone(),
        op,
        key,
        after,
        source_ts: (source["ts_ms"].as_i64().unwrap_or(0) / 1000).max(0) as u32,
    }))
}

/// A row object (`after`) → the row in the table's column order.
pub fn row(table: &TableSchema, object: &J) -> Result<Row, String> {
    let J::Object(fields) = object else { return Err(format!("{}: a row is not a JSON object: {object}", table.id)) };
    table
        .columns
        .iter()
        .map(|c| {
            let v = fields.get(&c.name).unwrap_or(&J::Null);
            value(&c.kind, c.unsigned, v).map_err(|e| format!("{}.{}: {e}", table.id, c.name))
        })
        .collect()
}

/// A key object → the key values, in key order.
pub fn key(table: &TableSchema, object: &J) -> Result<Vec<Value>, String> {
    let J::Object(fields) = object else { return Err(format!("{}: a key is not a JSON object: {object}", table.id)) };
    table
        .primary_key
        .iter()
        .map(|&i| {
            let c = &table.columns[i];
            value(&c.kind, c.unsigned, fields.get(&c.name).unwrap_or(&J::Null))
                .map_err(|e| format!("{}.{}: {e}", table.id, c.name))
        })
        .collect()
}

/// A decimal number as text (`-12.50`, `7`): what polyrepl and `decimal.handling.mode=string` write.
fn is_decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty() && !fraction.is_empty() && (whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
}

/// An unscaled two's-complement big-endian integer with `scale` decimal places → decimal text.
fn unscaled_to_text(bytes: &[u8], scale: u8) -> String {
    let unscaled = num_bigint::BigInt::from_signed_bytes_be(bytes);
    let (negative, digits) = (unscaled.sign() == num_bigint::Sign::Minus, unscaled.magnitude().to_string());
    let scale = usize::from(scale);
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// One JSON value of a column of `kind` → a polyrepl value.
pub fn value(kind: &ColumnKind, unsigned: bool, v: &J) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = || format!("{v} is not a value of a {kind:?} column");
    let int = || v.as_i64().ok_or_else(bad);
    let text = || v.as_str().map(str::to_string).ok_or_else(bad);
    let bytes = || {
        base64::engine::general_purpose::STANDARD.decode(v.as_str().ok_or_else(bad)?).map_err(|e| format!("{v}: {e}"))
    };
    Ok(match kind {
        ColumnKind::TinyInt | ColumnKind::SmallInt | ColumnKind::MediumInt | ColumnKind::Int | ColumnKind::BigInt => {
            if unsigned {
                Value::UInt(v.as_u64().ok_or_else(bad)?)
            } else {
                Value::Int(int()?)
            }
        }
        ColumnKind::Float => Value::Float(v.as_f64().ok_or_else(bad)? as f32),
        ColumnKind::Double => Value::Double(v.as_f64().ok_or_else(bad)?),
        ColumnKind::Decimal { scale, .. } => match v {
            // Text always shows a column's scale ("12.50"), and base64 has no '.': with a scale the
            // two never mix up. Without one, only an all-digit base64 string could pass for text (see
            // the README's Kafka section).
            J::String(s) if is_decimal_text(s) && (*scale == 0 || s.contains('.')) => Value::Decimal(s.clone()),
            // Debezium's default (`decimal.handling.mode=precise`): the unscaled value's two's-complement
            // big-endian bytes in base64; the scale is the column's.
            J::String(_) => Value::Decimal(unscaled_to_text(&bytes()?, *scale)),
            J::Number(n) => Value::Decimal(n.to_string()),
            _ => return Err(bad()),
        },
        ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text | ColumnKind::Unsupported(_) => {
            Value::String(text()?)
        }
        ColumnKind::Enum { .. } => Value::Enum(text()?),
        ColumnKind::Set { .. } => {
            let s = text()?;
            Value::Set(if s.is_empty() { vec![] } else { s.split(',').map(str::to_string).collect() })
        }
        ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob => Value::Bytes(bytes()?),
        ColumnKind::Bit { .. } => match v {
            J::Bool(b) => Value::Bit(u64::from(*b)),
            _ => {
                let b = bytes()?;
                let mut le = [0u8; 8];
                le[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
                Value::Bit(u64::from_le_bytes(le))
            }
        },
        ColumnKind::Date => Value::Date(DateTime::from_epoch(int()? * 86_400, 0, 0).date),
        ColumnKind::Time { fsp } => {
            let us = int()?;
            let a = us.unsigned_abs();
            Value::Time(Time {
                negative: us < 0,
                hours: (a / 3_600_000_000) as u32,
                minutes: (a / 60_000_000 % 60) as u8,
                seconds: (a / 1_000_000 % 60) as u8,
                micros: (a % 1_000_000) as u32,
                fsp: *fsp,
            })
        }
        ColumnKind::DateTime { fsp } => {
            let us = if *fsp <= 3 { int()? * 1000 } else { int()? };
            Value::DateTime(DateTime::from_epoch(us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32, *fsp))
        }
        ColumnKind::Timestamp { fsp } => Value::Timestamp(iso_utc(&text()?, *fsp).ok_or_else(bad)?),
        ColumnKind::Year => Value::Year(u16::try_from(int()?).map_err(|_| bad())?),
        ColumnKind::Json => {
            Value::Json(polyrepl_core::json::parse(text()?.as_bytes()).map_err(|e| format!("{v}: {e}"))?)
        }
    })
}

/// `2024-05-06T07:08:09[.ffffff]Z` → a UTC date-time with `fsp` digits.
fn iso_utc(s: &str, fsp: u8) -> Option<DateTime> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let micros = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    Some(DateTime {
        date: Date { year: u16::try_from(year).ok()?, month: u8::try_from(month).ok()?, day: u8::try_from(day).ok()? },
        hour,
        minute,
        second,
        micros,
        fsp,
    })
}

#[cfg(test)]
mod decimal_tests {
    use super::*;

    #[test]
    fn debeziums_precise_decimals_decode_with_the_columns_scale() {
        let kind = ColumnKind::Decimal { precision: 12, scale: 2 };
        let b64 = |bytes: &[u8]| J::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        // 1234.50 → unscaled 123450 = 0x01E23A; -0.05 → -5 = 0xFB; 0 → 0x00.
        assert_eq!(value(&kind, false, &b64(&[0x01, 0xE2, 0x3A])), Ok(Value::Decimal("1234.50".into())));
        assert_eq!(value(&kind, false, &b64(&[0xFB])), Ok(Value::Decimal("-0.05".into())));
        assert_eq!(value(&kind, false, &b64(&[0x00])), Ok(Value::Decimal("0.00".into())));
        // Text as polyrepl writes it stays text; with a scale, digits without '.' are base64 ("1234" = d7 6d f8).
        assert_eq!(value(&kind, false, &J::String("-7.25".into())), Ok(Value::Decimal("-7.25".into())));
        assert_eq!(value(&kind, false, &J::String("1234".into())), Ok(Value::Decimal("-26588.24".into())));
        let integer = ColumnKind::Decimal { precision: 10, scale: 0 };
        assert_eq!(value(&integer, false, &J::String("1234".into())), Ok(Value::Decimal("1234".into())));
        // 65 digits, beyond any machine integer.
        let big = ColumnKind::Decimal { precision: 65, scale: 0 };
        let n: num_bigint::BigInt =
            "-99999999999999999999999999999999999999999999999999999999999999999".parse().unwrap();
        assert_eq!(value(&big, false, &b64(&n.to_signed_bytes_be())), Ok(Value::Decimal(n.to_string())));
    }
}
