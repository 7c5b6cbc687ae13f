//! Column values → [`polyrepl_core::Value`], from the binlog and from the snapshot's result sets.
//!
//! Invariant: for the same stored row, [`from_binlog`] and [`from_protocol`] return equal values
//! (same variant, same fsp, same DECIMAL text). Both are driven by the column's [`ColumnKind`], never
//! by the shape of the raw value, and neither panics on bad data: it returns a decode error.
//!
//! Raw binlog forms (mysql_common 0.37): DECIMAL as text, TIMESTAMP2 as `"<epoch>[.<usec>]"`, ENUM as
//! its 1-based index, SET and BIT as bitmask bytes, YEAR as text (`1900` is the stored 0), strings as
//! bytes in the column's charset, BINARY(n) without its trailing zero bytes, MySQL JSON as binary
//! JSON and MariaDB JSON as text; signedness as mysql_common guessed it (re-derived here from the
//! column width and the schema's `unsigned`).

use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as MyValue;
use polyrepl_core::{Column, ColumnKind, Date, DateTime, Time, Value};

/// Why a raw value could not be decoded (the caller adds table and column).
pub type DecodeResult<T> = std::result::Result<T, String>;

/// The `binary` charset.
pub const BINARY_CHARSET: u16 = 63;

/// Decodes one value of a binlog row image. `charset` is the column's charset id from the table map
/// (0 when unknown); `binary_len` the declared length of a BINARY(n) column (to restore the trailing
/// zero bytes the binlog drops).
pub fn from_binlog(
    column: &Column,
    raw: BinlogValue<'_>,
    charset: u16,
    binary_len: Option<usize>,
) -> DecodeResult<Value> {
    let v = match raw {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            return match column.kind {
                ColumnKind::Json => crate::json::from_binary(j).map(Value::Json),
                _ => Err("binary JSON in a non-JSON column".into()),
            };
        }
        BinlogValue::JsonDiff(_) => {
            return Err("partial JSON update (binlog_row_value_options=PARTIAL_JSON) is not supported: \
                        run SET GLOBAL binlog_row_value_options=''"
                .into())
        }
    };
    if matches!(v, MyValue::NULL) {
        return Ok(Value::Null);
    }
    match &column.kind {
        ColumnKind::Timestamp { fsp } => match v {
            MyValue::Bytes(b) => timestamp_from_epoch_text(&b, *fsp),
            MyValue::Int(secs) => Ok(timestamp_from_epoch(secs, 0, *fsp)),
            other => Err(format!("unexpected raw TIMESTAMP {other:?}")),
        },
        ColumnKind::Year => match v {
            MyValue::Bytes(b) => {
                let y: u16 = ascii(&b)?.parse().map_err(|_| format!("bad YEAR {:?}", String::from_utf8_lossy(&b)))?;
                Ok(Value::Year(if y == 1900 { 0 } else { y }))
            }
            MyValue::Int(y) => Ok(Value::Year(y as u16)),
            other => Err(format!("unexpected raw YEAR {other:?}")),
        },
        ColumnKind::Enum { labels } => match v {
            MyValue::Int(i) => enum_label(labels, i),
            MyValue::UInt(i) => enum_label(labels, i as i64),
            other => Err(format!("unexpected raw ENUM {other:?}")),
        },
        ColumnKind::Set { labels } => match v {
            MyValue::Bytes(b) => {
                let mut mask = 0u64;
                for (i, byte) in b.iter().take(8).enumerate() {
                    mask |= (*byte as u64) << (8 * i);
                }
                Ok(Value::Set(
                    labels
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1u64 << i) != 0)
                        .map(|(_, l)| l.clone())
                        .collect(),
                ))
            }
            other => Err(format!("unexpected raw SET {other:?}")),
        },
        ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text => match v {
            MyValue::Bytes(b) => text(b, charset).map(Value::String),
            other => Err(format!("unexpected raw string {other:?}")),
        },
        ColumnKind::Binary => match v {
            MyValue::Bytes(mut b) => {
                if let Some(n) = binary_len {
                    if b.len() < n {
                        b.resize(n, 0);
                    }
                }
                Ok(Value::Bytes(b))
            }
            other => Err(format!("unexpected raw BINARY {other:?}")),
        },
        _ => common(column, v),
    }
}

/// Decodes one value of a snapshot row read with the binary protocol (prepared statement) on a
/// session with `time_zone='+00:00'` whose results are utf8mb4 (`SET NAMES utf8mb4`).
pub fn from_protocol(column: &Column, v: MyValue) -> DecodeResult<Value> {
    from_protocol_in(column, v, 0)
}

/// [`from_protocol`] for a value whose text is in the character set of collation `charset`: the
/// collation id of its result column, which is the column's own when the session reads results
/// unconverted (`character_set_results = NULL`); 0 for UTF-8.
pub fn from_protocol_in(column: &Column, v: MyValue, charset: u16) -> DecodeResult<Value> {
    if matches!(v, MyValue::NULL) {
        return Ok(Value::Null);
    }
    match &column.kind {
        ColumnKind::Timestamp { fsp } => match v {
            MyValue::Date(y, mo, d, h, mi, s, us) => Ok(Value::Timestamp(datetime(y, mo, d, h, mi, s, us, *fsp))),
            other => Err(format!("unexpected TIMESTAMP {other:?}")),
        },
        ColumnKind::Year => match v {
            MyValue::Int(y) => Ok(Value::Year(y as u16)),
            MyValue::UInt(y) => Ok(Value::Year(y as u16)),
            MyValue::Bytes(b) => ascii(&b)?.parse().map(Value::Year).map_err(|_| "bad YEAR".to_string()),
            other => Err(format!("unexpected YEAR {other:?}")),
        },
        ColumnKind::Enum { .. } => match v {
            MyValue::Bytes(b) => text(b, charset).map(Value::Enum),
            other => Err(format!("unexpected ENUM {other:?}")),
        },
        ColumnKind::Set { .. } => match v {
            MyValue::Bytes(b) => {
                // The server prints the members in definition order, as the binlog bitmask gives them.
                // Taken from the value, not matched against the schema's labels: the server's catalog
                // prints a label character outside the BMP as `?`.
                let s = text(b, charset)?;
                Ok(Value::Set(if s.is_empty() { Vec::new() } else { s.split(',').map(str::to_string).collect() }))
            }
            other => Err(format!("unexpected SET {other:?}")),
        },
        ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text => match v {
            MyValue::Bytes(b) => text(b, charset).map(Value::String),
            other => Err(format!("unexpected string {other:?}")),
        },
        ColumnKind::Binary => match v {
            MyValue::Bytes(b) => Ok(Value::Bytes(b)),
            other => Err(format!("unexpected BINARY {other:?}")),
        },
        _ => common(column, v),
    }
}

/// The kinds whose raw forms are the same in the binlog and in the binary protocol.
fn common(column: &Column, v: MyValue) -> DecodeResult<Value> {
    match &column.kind {
        ColumnKind::TinyInt | ColumnKind::SmallInt | ColumnKind::MediumInt | ColumnKind::Int | ColumnKind::BigInt => {
            let bits = match column.kind {
                ColumnKind::TinyInt => 8,
                ColumnKind::SmallInt => 16,
                ColumnKind::MediumInt => 24,
                ColumnKind::Int => 32,
                _ => 64,
            };
            match v {
                MyValue::Int(i) => Ok(integer(i as u64, bits, column.unsigned)),
                MyValue::UInt(u) => Ok(integer(u, bits, column.unsigned)),
                MyValue::Bytes(b) => {
                    let s = ascii(&b)?;
                    if column.unsigned {
                        s.parse().map(Value::UInt).map_err(|_| format!("bad integer {s:?}"))
                    } else {
                        s.parse().map(Value::Int).map_err(|_| format!("bad integer {s:?}"))
                    }
                }
                other => Err(format!("unexpected integer {other:?}")),
            }
        }
        ColumnKind::Float => match v {
            MyValue::Float(f) => Ok(Value::Float(f)),
            MyValue::Double(d) => Ok(Value::Float(d as f32)),
            other => Err(format!("unexpected FLOAT {other:?}")),
        },
        ColumnKind::Double => match v {
            MyValue::Double(d) => Ok(Value::Double(d)),
            MyValue::Float(f) => Ok(Value::Double(f as f64)),
            other => Err(format!("unexpected DOUBLE {other:?}")),
        },
        ColumnKind::Decimal { scale, .. } => match v {
            MyValue::Bytes(b) => {
                let s = ascii(&b)?;
                normalize_decimal(s, *scale).map(Value::Decimal).ok_or_else(|| format!("bad DECIMAL {s:?}"))
            }
            other => Err(format!("unexpected DECIMAL {other:?}")),
        },
        ColumnKind::VarBinary | ColumnKind::Blob => match v {
            MyValue::Bytes(b) => Ok(Value::Bytes(b)),
            other => Err(format!("unexpected binary {other:?}")),
        },
        ColumnKind::Date => match v {
            MyValue::Date(y, m, d, ..) => Ok(Value::Date(Date { year: y, month: m, day: d })),
            other => Err(format!("unexpected DATE {other:?}")),
        },
        ColumnKind::DateTime { fsp } => match v {
            MyValue::Date(y, mo, d, h, mi, s, us) => Ok(Value::DateTime(datetime(y, mo, d, h, mi, s, us, *fsp))),
            other => Err(format!("unexpected DATETIME {other:?}")),
        },
        ColumnKind::Time { fsp } => match v {
            MyValue::Time(negative, days, h, m, s, us) => Ok(Value::Time(Time {
                negative: negative && (days, h, m, s, us) != (0, 0, 0, 0, 0),
                hours: days * 24 + h as u32,
                minutes: m,
                seconds: s,
                micros: us,
                fsp: *fsp,
            })),
            other => Err(format!("unexpected TIME {other:?}")),
        },
        ColumnKind::Json => match v {
            MyValue::Bytes(b) => crate::json::from_text(&b).map(Value::Json),
            other => Err(format!("unexpected JSON {other:?}")),
        },
        ColumnKind::Bit { .. } => match v {
            MyValue::Bytes(b) => {
                if b.len() > 8 {
                    return Err(format!("BIT value of {} bytes", b.len()));
                }
                Ok(Value::Bit(b.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64)))
            }
            MyValue::Int(i) => Ok(Value::Bit(i as u64)),
            MyValue::UInt(u) => Ok(Value::Bit(u)),
            other => Err(format!("unexpected BIT {other:?}")),
        },
        ColumnKind::Unsupported(t) => Err(format!("type {t} is not supported")),
        // Handled by the callers.
        ColumnKind::Timestamp { .. }
        | ColumnKind::Year
        | ColumnKind::Enum { .. }
        | ColumnKind::Set { .. }
        | ColumnKind::Char
        | ColumnKind::VarChar
        | ColumnKind::Text
        | ColumnKind::Binary => Err("internal: kind not handled".into()),
    }
}

/// An integer of `bits` width, re-interpreted by the column's signedness.
pub(crate) fn integer(raw: u64, bits: u32, unsigned: bool) -> Value {
    if unsigned {
        let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        Value::UInt(raw & mask)
    } else {
        let shift = 64 - bits;
        Value::Int(((raw << shift) as i64) >> shift)
    }
}

#[allow(clippy::too_many_arguments)]
fn datetime(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32, fsp: u8) -> DateTime {
    DateTime { date: Date { year: y, month: mo, day: d }, hour: h, minute: mi, second: s, micros: us, fsp }
}

fn timestamp_from_epoch_text(b: &[u8], fsp: u8) -> DecodeResult<Value> {
    let s = ascii(b)?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = secs.parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
    let micros: u32 = format!("{frac:0<6}")[..6].parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
    Ok(timestamp_from_epoch(secs, micros, fsp))
}

/// MySQL's zero TIMESTAMP is stored as epoch 0 (1970-01-01 00:00:00 UTC is out of TIMESTAMP's range).
pub(crate) fn timestamp_from_epoch(secs: i64, micros: u32, fsp: u8) -> Value {
    if secs == 0 && micros == 0 {
        return Value::Timestamp(datetime(0, 0, 0, 0, 0, 0, 0, fsp));
    }
    Value::Timestamp(DateTime::from_epoch(secs, micros, fsp))
}

fn enum_label(labels: &[String], index: i64) -> DecodeResult<Value> {
    if index == 0 {
        return Ok(Value::Enum(String::new()));
    }
    labels
        .get((index - 1) as usize)
        .map(|l| Value::Enum(l.clone()))
        .ok_or_else(|| format!("ENUM index {index} out of {} labels", labels.len()))
}

fn ascii(b: &[u8]) -> DecodeResult<&str> {
    std::str::from_utf8(b).map_err(|_| "non-ASCII bytes in a numeric value".to_string())
}

/// Bytes in the character set of collation `charset` → UTF-8 (0: UTF-8); see [`crate::charset`].
pub(crate) fn text(b: Vec<u8>, charset: u16) -> DecodeResult<String> {
    crate::charset::decode(b, charset)
}

/// Whether [`text`] would accept `b` for `charset`, without building the string when it can.
pub(crate) fn check_text(b: &[u8], charset: u16) -> DecodeResult<()> {
    crate::charset::check(b, charset)
}

/// DECIMAL text as MySQL prints it: optional `-`, integer digits without leading zeros (at least
/// one), and exactly `scale` fraction digits. `None` when `text` is not a decimal number.
pub fn normalize_decimal(text: &str, scale: u8) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac_part.bytes().all(|c| c.is_ascii_digit())
        || (int_part.is_empty() && frac_part.is_empty())
    {
        return None;
    }
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let mut frac = frac_part.to_string();
    frac.truncate(scale as usize);
    while frac.len() < scale as usize {
        frac.push('0');
    }
    let is_zero = int_part == "0" && frac.bytes().all(|c| c == b'0');
    let mut out = String::with_capacity(int_part.len() + frac.len() + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(int_part);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// A key value as a statement parameter that compares the way the column orders (ENUM by index).
pub fn to_param(column: &Column, v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Int(i) => MyValue::Int(*i),
        Value::UInt(u) => MyValue::UInt(*u),
        Value::Float(f) => MyValue::Float(*f),
        Value::Double(d) => MyValue::Double(*d),
        Value::Decimal(s) | Value::String(s) => MyValue::Bytes(s.clone().into_bytes()),
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
        Value::Date(d) => MyValue::Date(d.year, d.month, d.day, 0, 0, 0, 0),
        Value::DateTime(t) | Value::Timestamp(t) => {
            MyValue::Date(t.date.year, t.date.month, t.date.day, t.hour, t.minute, t.second, t.micros)
        }
        Value::Time(t) => MyValue::Time(t.negative, t.hours / 24, (t.hours % 24) as u8, t.minutes, t.seconds, t.micros),
        Value::Year(y) => MyValue::UInt(*y as u64),
        Value::Json(j) => MyValue::Bytes(j.to_string().into_bytes()),
        Value::Bit(b) => MyValue::UInt(*b),
        Value::Enum(label) => match &column.kind {
            ColumnKind::Enum { labels } => {
                MyValue::UInt(labels.iter().position(|l| l == label).map(|i| i as u64 + 1).unwrap_or(0))
            }
            _ => MyValue::Bytes(label.clone().into_bytes()),
        },
        Value::Set(labels) => MyValue::Bytes(labels.join(",").into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_like_mysql() {
        assert_eq!(normalize_decimal("-0000012.5", 2).unwrap(), "-12.50");
        assert_eq!(
            normalize_decimal(".000000000000000000000000000001", 30).unwrap(),
            "0.000000000000000000000000000001"
        );
        assert_eq!(normalize_decimal("-0.00", 2).unwrap(), "0.00");
        assert_eq!(normalize_decimal("000000000000000000000000000000000042", 0).unwrap(), "42");
        assert!(normalize_decimal("1e5", 0).is_none());
    }

    #[test]
    fn integers_follow_width_and_sign() {
        assert_eq!(integer(-1i64 as u64, 8, true), Value::UInt(255));
        assert_eq!(integer(0xff, 8, false), Value::Int(-1));
        assert_eq!(integer(0xff_ffff, 24, false), Value::Int(-1));
        assert_eq!(integer(u64::MAX, 64, true), Value::UInt(u64::MAX));
        assert_eq!(integer(4_000_000_000, 32, true), Value::UInt(4_000_000_000));
    }
}
