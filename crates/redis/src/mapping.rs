//! The exact type mapping between a source [`Value`] and a Redis hash field, both ways.
//!
//! Every field value is a byte string. The text is what MySQL's client prints for the value
//! ([`Value::mysql_text`]), except for strings and binary values, which are stored as their raw bytes.
//!
//! | source (MySQL/MariaDB)                 | field bytes written                                           | read back as (by column kind) |
//! |----------------------------------------|---------------------------------------------------------------|-------------------------------|
//! | NULL                                   | no field (`HEXISTS` is 0); the key's hash has the other fields | `Null`                       |
//! | TINYINT..BIGINT                        | decimal text, `-128`                                          | `Int` (signed column)         |
//! | … UNSIGNED (BIGINT up to 18446744073709551615) | decimal text                                          | `UInt` (unsigned column)      |
//! | FLOAT / DOUBLE                         | Rust's shortest text that parses back to the same bits (`1.5`, `0.1`, `1e300` as 301 digits) | `Float` / `Double` |
//! | DECIMAL(p,s)                           | the exact text with its scale, `-12.500`                      | `Decimal` (same text)         |
//! | CHAR/VARCHAR/TEXT                      | UTF-8 bytes (emoji intact); `''` is an empty field, not NULL   | `String`                      |
//! | BINARY/VARBINARY/BLOB                  | the raw bytes (zero bytes kept)                                | `Bytes`                       |
//! | DATE                                   | `YYYY-MM-DD` (zero date `0000-00-00` kept as text)             | `Date`                        |
//! | TIME(fsp)                              | `[-]HH:MM:SS[.f…]` with fsp digits, `-838:59:59.000000`        | `Time` (fsp = digits)         |
//! | DATETIME(fsp)                          | `YYYY-MM-DD HH:MM:SS[.f…]` with fsp digits                     | `DateTime` (fsp = digits)     |
//! | TIMESTAMP(fsp)                         | same text, the UTC instant                                     | `Timestamp` (fsp = digits)    |
//! | YEAR                                   | four digits, `2024` (`0000` for the zero year)                 | `Year`                        |
//! | JSON                                   | compact JSON text, `{"a":[1,2]}`: numbers with every digit as written (`12345678901234567890123`, `0.1000000000000000000001`, `1.50`, `-0`; an exponent spelled `1e+400`), keys as they are (`""`, `$a`, `a.b`, escapes) in the source's order, any depth the source allows | `Json` (parsed, numbers exact) |
//! | BIT(n)                                 | the integer in decimal, `5` for b'101'                         | `Bit`                         |
//! | ENUM                                   | the label (`''` for MySQL's invalid index 0)                   | `Enum`                        |
//! | SET                                    | labels joined by `,`, `a,b` (`''` for the empty set)           | `Set` (split on `,`)          |
//!
//! Invariants:
//! - For every value the source produces for a column, `from_field(column, to_field(v)) == v`; microseconds
//!   beyond a value's `fsp` are not written (MySQL never has them).
//! - Writing never fails. Reading never fails either: bytes that do not parse as the column's kind become a
//!   `Value::String` describing them (with a warning), so that verification reports the row as different
//!   instead of stopping.

use polyrepl_core::{Column, ColumnKind, Date, DateTime, Time, Value};

/// The field bytes of `value`; `None` for NULL (the field is left out).
pub fn to_field(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Bytes(b) => Some(b.clone()),
        v => v.mysql_text().map(String::into_bytes),
    }
}

/// Writes the field bytes of a non-NULL `value` as one command argument, straight into the command's
/// buffer (the same bytes as [`to_field`]; numbers and temporal values without an intermediate string).
pub fn write_field<W: ?Sized + redis::RedisWrite>(value: &Value, out: &mut W) {
    match value {
        Value::String(s) => out.write_arg(s.as_bytes()),
        Value::Bytes(b) => out.write_arg(b),
        v => out.write_arg(v.text().as_deref().unwrap_or_default().as_bytes()),
    }
}

/// A value as a command argument, written by [`write_field`].
pub struct FieldArg<'a>(pub &'a Value);

impl redis::ToRedisArgs for FieldArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        write_field(self.0, out)
    }
}

/// Decodes field bytes as a value of `column`.
pub fn from_field(column: &Column, bytes: &[u8]) -> Value {
    match decode(column, bytes) {
        Some(v) => v,
        None => {
            let text = String::from_utf8_lossy(bytes);
            tracing::warn!(column = %column.name, kind = ?column.kind, value = %text, "a Redis field does not parse as its column's type");
            Value::String(format!("<not a {:?} value: {text:?}>", column.kind))
        }
    }
}

fn decode(column: &Column, bytes: &[u8]) -> Option<Value> {
    use ColumnKind as K;
    if matches!(column.kind, K::Binary | K::VarBinary | K::Blob) {
        return Some(Value::Bytes(bytes.to_vec()));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    Some(match &column.kind {
        K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt => {
            if column.unsigned {
                Value::UInt(text.parse().ok()?)
            } else {
                Value::Int(text.parse().ok()?)
            }
        }
        K::Float => Value::Float(text.parse().ok()?),
        K::Double => Value::Double(text.parse().ok()?),
        K::Decimal { .. } => {
            is_decimal_text(text).then_some(())?;
            Value::Decimal(text.to_string())
        }
        K::Char | K::VarChar | K::Text => Value::String(text.to_string()),
        K::Binary | K::VarBinary | K::Blob => unreachable!("handled above"),
        K::Date => Value::Date(parse_date(text)?),
        K::Time { .. } => Value::Time(parse_time(text)?),
        K::DateTime { .. } => Value::DateTime(parse_datetime(text)?),
        K::Timestamp { .. } => Value::Timestamp(parse_datetime(text)?),
        K::Year => {
            (text.len() == 4).then_some(())?;
            Value::Year(text.parse().ok()?)
        }
        K::Json => Value::Json(serde_json::from_str(text).ok()?),
        K::Bit { .. } => Value::Bit(text.parse().ok()?),
        K::Enum { .. } => Value::Enum(text.to_string()),
        K::Set { .. } => {
            Value::Set(if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_string).collect() })
        }
        K::Unsupported(_) => return None,
    })
}

/// `[-]digits[.digits]`.
fn is_decimal_text(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = t.split_once('.').unwrap_or((t, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn digits<T: std::str::FromStr>(text: &str, len: usize) -> Option<T> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    text.parse().ok()
}

/// `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let date =
        Date { year: digits(parts.next()?, 4)?, month: digits(parts.next()?, 2)?, day: digits(parts.next()?, 2)? };
    parts.next().is_none().then_some(date)
}

/// `SS[.f…]` → (seconds, micros, fsp).
fn parse_seconds(text: &str) -> Option<(u8, u32, u8)> {
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (text, None),
    };
    let secs: u8 = digits(secs, 2)?;
    let Some(frac) = frac else { return Some((secs, 0, 0)) };
    if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: u32 = format!("{frac:0<6}").parse().ok()?;
    Some((secs, micros, frac.len() as u8))
}

/// `[-]H…H:MM:SS[.f…]`.
fn parse_time(text: &str) -> Option<Time> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let mut parts = rest.splitn(3, ':');
    let hours = parts.next()?;
    (hours.len() >= 2 && hours.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    let minutes = digits(parts.next()?, 2)?;
    let (seconds, micros, fsp) = parse_seconds(parts.next()?)?;
    Some(Time { negative, hours: hours.parse().ok()?, minutes, seconds, micros, fsp })
}

/// `YYYY-MM-DD HH:MM:SS[.f…]`.
fn parse_datetime(text: &str) -> Option<DateTime> {
    let (date, time) = text.split_once(' ')?;
    let date = parse_date(date)?;
    let mut parts = time.splitn(3, ':');
    let hour = digits(parts.next()?, 2)?;
    let minute = digits(parts.next()?, 2)?;
    let (second, micros, fsp) = parse_seconds(parts.next()?)?;
    Some(DateTime { date, hour, minute, second, micros, fsp })
}

/// A value as text in a change-stream envelope: MySQL's text; binary values as `0x` + lowercase hex
/// (JSON cannot hold raw bytes); `null` for NULL.
pub fn envelope_text(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + 2 * b.len());
            s.push_str("0x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            serde_json::Value::String(s)
        }
        v => serde_json::Value::String(v.mysql_text().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(kind: ColumnKind, unsigned: bool) -> Column {
        Column { name: "c".into(), kind, unsigned, nullable: true }
    }

    #[allow(clippy::too_many_arguments)]
    fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> DateTime {
        DateTime { date: Date { year: y, month: mo, day: d }, hour: h, minute: mi, second: s, micros, fsp }
    }

    /// Every kind with edge values: (column, value, exact field text).
    fn cases() -> Vec<(Column, Value, Vec<u8>)> {
        use ColumnKind as K;
        let t = |kind, unsigned, v, text: &str| (col(kind, unsigned), v, text.as_bytes().to_vec());
        vec![
            t(K::TinyInt, false, Value::Int(-128), "-128"),
            t(K::TinyInt, true, Value::UInt(255), "255"),
            t(K::SmallInt, false, Value::Int(32767), "32767"),
            t(K::MediumInt, false, Value::Int(-8_388_608), "-8388608"),
            t(K::Int, true, Value::UInt(4_000_000_000), "4000000000"),
            t(K::BigInt, false, Value::Int(i64::MIN), "-9223372036854775808"),
            t(K::BigInt, false, Value::Int(i64::MAX), "9223372036854775807"),
            t(K::BigInt, true, Value::UInt(u64::MAX), "18446744073709551615"),
            t(K::BigInt, true, Value::UInt(0), "0"),
            t(K::Float, false, Value::Float(1.5), "1.5"),
            t(K::Float, false, Value::Float(-0.1), "-0.1"),
            t(K::Float, false, Value::Float(f32::MAX), &f32::MAX.to_string()),
            t(K::Double, false, Value::Double(0.1), "0.1"),
            t(K::Double, false, Value::Double(-2.5e-300), &(-2.5e-300f64).to_string()),
            t(K::Double, false, Value::Double(1.5e300), &1.5e300f64.to_string()),
            t(K::Decimal { precision: 10, scale: 3 }, false, Value::Decimal("-12.500".into()), "-12.500"),
            t(
                K::Decimal { precision: 65, scale: 30 },
                false,
                Value::Decimal(format!("-{}.{}", "9".repeat(35), "9".repeat(30))),
                &format!("-{}.{}", "9".repeat(35), "9".repeat(30)),
            ),
            t(K::Decimal { precision: 5, scale: 0 }, false, Value::Decimal("0".into()), "0"),
            t(K::VarChar, false, Value::String("héllo 😀 Ω".into()), "héllo 😀 Ω"),
            t(K::Char, false, Value::String(String::new()), ""),
            t(K::Text, false, Value::String("a,b:c\n\0d".into()), "a,b:c\n\0d"),
            (col(K::Blob, false), Value::Bytes(vec![0, 1, 0, 0xff, 0xfe]), vec![0, 1, 0, 0xff, 0xfe]),
            (col(K::Binary, false), Value::Bytes(vec![0; 4]), vec![0; 4]),
            (col(K::VarBinary, false), Value::Bytes(vec![]), vec![]),
            t(K::Date, false, Value::Date(Date { year: 2024, month: 2, day: 29 }), "2024-02-29"),
            t(K::Date, false, Value::Date(Date { year: 0, month: 0, day: 0 }), "0000-00-00"),
            t(
                K::Time { fsp: 6 },
                false,
                Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 }),
                "-838:59:59.000000",
            ),
            t(
                K::Time { fsp: 0 },
                false,
                Value::Time(Time { negative: false, hours: 0, minutes: 0, seconds: 0, micros: 0, fsp: 0 }),
                "00:00:00",
            ),
            t(
                K::Time { fsp: 3 },
                false,
                Value::Time(Time { negative: true, hours: 1, minutes: 2, seconds: 3, micros: 450_000, fsp: 3 }),
                "-01:02:03.450",
            ),
            t(
                K::DateTime { fsp: 6 },
                false,
                Value::DateTime(dt(9999, 12, 31, 23, 59, 59, 999_999, 6)),
                "9999-12-31 23:59:59.999999",
            ),
            t(K::DateTime { fsp: 0 }, false, Value::DateTime(dt(0, 0, 0, 0, 0, 0, 0, 0)), "0000-00-00 00:00:00"),
            t(
                K::Timestamp { fsp: 3 },
                false,
                Value::Timestamp(dt(1970, 1, 1, 0, 0, 1, 5_000, 3)),
                "1970-01-01 00:00:01.005",
            ),
            t(K::Year, false, Value::Year(2155), "2155"),
            t(K::Year, false, Value::Year(0), "0000"),
            t(
                K::Json,
                false,
                Value::Json(json!({"a": [1, -2.5, null, true], "b": {"c": "😀"}, "big": u64::MAX})),
                r#"{"a":[1,-2.5,null,true],"b":{"c":"😀"},"big":18446744073709551615}"#,
            ),
            t(K::Json, false, Value::Json(json!(null)), "null"),
            t(K::Json, false, Value::Json(json!("")), r#""""#),
            t(K::Bit { bits: 64 }, false, Value::Bit(u64::MAX), "18446744073709551615"),
            t(K::Bit { bits: 3 }, false, Value::Bit(5), "5"),
            t(K::Enum { labels: vec!["x".into(), "y z".into()] }, false, Value::Enum("y z".into()), "y z"),
            t(K::Enum { labels: vec!["x".into()] }, false, Value::Enum(String::new()), ""),
            t(K::Set { labels: vec!["a".into(), "b".into()] }, false, Value::Set(vec!["a".into(), "b".into()]), "a,b"),
            t(K::Set { labels: vec!["a".into()] }, false, Value::Set(vec![]), ""),
        ]
    }

    #[test]
    fn every_kind_round_trips_with_exact_text() {
        for (column, value, text) in cases() {
            let field = to_field(&value).expect("not null");
            assert_eq!(field, text, "{value:?}");
            let back = from_field(&column, &field);
            match (&value, &back) {
                (Value::Json(a), Value::Json(b)) => assert_eq!(a, b),
                _ => assert_eq!(back, value, "{:?}", column.kind),
            }
        }
        assert_eq!(to_field(&Value::Null), None);
        for v in [
            Value::Int(-42),
            Value::UInt(u64::MAX),
            Value::String("é".into()),
            Value::Bytes(vec![0, 255]),
            Value::Double(1.5),
        ] {
            let mut args: Vec<Vec<u8>> = Vec::new();
            write_field(&v, &mut args);
            assert_eq!(args, vec![to_field(&v).unwrap()], "{v:?}");
        }
    }

    #[test]
    fn json_numbers_and_odd_keys_keep_every_digit_and_character() {
        let column = col(ColumnKind::Json, false);
        for (source, stored) in polyrepl_core::testkit::json_cases::json_kept_as_text() {
            let value = Value::Json(polyrepl_core::json::parse(source.as_bytes()).unwrap());
            let field = to_field(&value).expect("not null");
            assert_eq!(String::from_utf8(field.clone()).unwrap(), stored, "{source}");
            let back = from_field(&column, &field);
            assert_eq!(back, value, "{source}");
            assert_eq!(to_field(&back).unwrap(), field, "{source}: the same bytes again");
        }
        // A lost digit reads back as a different value.
        let exact = Value::Json(polyrepl_core::json::parse(b"[0.1000000000000000000001]").unwrap());
        assert_ne!(from_field(&column, b"[0.1]"), exact);
    }

    #[test]
    fn garbage_reads_as_a_describing_string() {
        for (kind, bytes) in [
            (ColumnKind::Int, &b"12x"[..]),
            (ColumnKind::Date, b"2024-2-29"),
            (ColumnKind::DateTime { fsp: 0 }, b"2024-02-29T00:00:00"),
            (ColumnKind::Time { fsp: 0 }, b"1:00"),
            (ColumnKind::Decimal { precision: 5, scale: 2 }, b"1e5"),
            (ColumnKind::Json, b"{"),
            (ColumnKind::VarChar, b"\xff"),
        ] {
            assert!(
                matches!(from_field(&col(kind.clone(), false), bytes), Value::String(s) if s.starts_with("<not a")),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn envelope_text_is_json_safe() {
        assert_eq!(envelope_text(&Value::Bytes(vec![0, 0xab])), json!("0x00ab"));
        assert_eq!(envelope_text(&Value::Null), json!(null));
        assert_eq!(envelope_text(&Value::UInt(u64::MAX)), json!("18446744073709551615"));
    }
}
