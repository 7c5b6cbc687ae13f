//! The exact type mapping between a source [`Value`] and a CQL value, both ways, decided by the
//! column's [`ColumnKind`] (a Cassandra column has one type for its whole life).
//!
//! | source (MySQL/MariaDB)                     | CQL column type       | value written                                                     | read back as             |
//! |--------------------------------------------|-----------------------|-------------------------------------------------------------------|--------------------------|
//! | NULL (any column)                          | —                     | null (a cell tombstone, so an older value disappears)             | `Value::Null`            |
//! | TINYINT/SMALLINT/MEDIUMINT/INT signed      | `int`                 | the integer                                                       | `Int`                    |
//! | TINYINT/SMALLINT/MEDIUMINT UNSIGNED        | `int`                 | the integer (≤ 16 777 215 fits)                                   | `UInt`                   |
//! | INT UNSIGNED                               | `bigint`              | the integer                                                       | `UInt`                   |
//! | BIGINT signed                              | `bigint`              | the integer                                                       | `Int`                    |
//! | BIGINT UNSIGNED                            | `varint`              | the integer (0 ..= 18 446 744 073 709 551 615)                    | `UInt`                   |
//! | FLOAT                                      | `float`               | the f32                                                           | `Float`                  |
//! | DOUBLE                                     | `double`              | the f64                                                           | `Double`                 |
//! | DECIMAL(p,s)                               | `decimal`             | unscaled integer of the exact text + scale s (trailing zeros kept)| `Decimal` (same text)    |
//! | CHAR/VARCHAR/TEXT                          | `text`                | the UTF-8 string ('' stays '', emoji intact)                      | `String`                 |
//! | BINARY/VARBINARY/BLOB                      | `blob`                | the bytes (zero bytes and empty blobs intact)                     | `Bytes`                  |
//! | DATE                                       | `date`                | days since 1970-01-01                                             | `Date`                   |
//! | TIME (−838:59:59.999999 … 838:59:59.999999)| `bigint`              | signed microseconds (a duration, as Debezium's MicroTime); CQL `time` holds one day only | `Time` (column fsp) |
//! | DATETIME(0..3)                             | `timestamp`           | milliseconds since the epoch, the wall clock read as UTC          | `DateTime` (column fsp)  |
//! | DATETIME(4..6)                             | `text`                | `YYYY-MM-DDTHH:MM:SS.ffffff` (microseconds kept)                  | `DateTime` (column fsp)  |
//! | TIMESTAMP(0..3)                            | `timestamp`           | milliseconds since the epoch (UTC instant)                        | `Timestamp` (column fsp) |
//! | TIMESTAMP(4..6)                            | `text`                | `YYYY-MM-DDTHH:MM:SS.ffffffZ`                                     | `Timestamp` (column fsp) |
//! | zero DATE/DATETIME/TIMESTAMP (`0000-00-00`)| (as above)            | null, counted in [`MappingCounts::zero_dates`] (refused in a key) | `Value::Null`            |
//! | YEAR                                       | `int`                 | the year                                                          | `Year`                   |
//! | JSON                                       | `text`                | the JSON text (serde_json's compact form): numbers with every digit as written (`12345678901234567890123`, `0.1000000000000000000001`, `-0`; an exponent spelled `1e+400`), keys as they are (`""`, `$a`, `a.b`, escapes), any depth the source allows | `Json` (numbers exact) |
//! | BIT(n)                                     | `bigint`              | the 64-bit pattern (BIT(64) values above i64::MAX are negative)   | `Bit`                    |
//! | ENUM                                       | `text`                | the label                                                         | `Enum`                   |
//! | SET                                        | `frozen<set<text>>`   | the labels (an empty SET is an empty set, not null)               | `Set` (definition order) |
//! | anything else (GEOMETRY, …)                | —                     | the table is refused at `prepare`                                 | —                        |
//!
//! Invariants:
//! - For every value the source produces for a column, `from_cql(column, to_cql(column, v)) == v`, with
//!   these documented exceptions: zero dates read back as NULL; DATETIME/TIMESTAMP with fsp ≤ 3 keep
//!   milliseconds (MySQL has no more at that precision).
//! - Writing a value that does not fit its column (a value of the wrong family) is an error naming the
//!   column, never a silent change of the value.
//! - Reading never fails: a CQL value of an unexpected type becomes a `Value::String` describing it,
//!   so that verification reports the row as different instead of stopping.

use std::sync::atomic::{AtomicU64, Ordering};

use polyrepl_core::{Column, ColumnKind, Date, DateTime, Time, Value};
use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp, CqlValue, CqlVarint};

/// `CqlDate` counts days from 2^31 days before the Unix epoch.
const CQL_DATE_EPOCH: i64 = 1 << 31;

/// Counters of values stored in a fallback form. Shared, cheap to update.
#[derive(Debug, Default)]
pub struct MappingStats {
    /// Zero dates/datetimes/timestamps written as null.
    pub zero_dates: AtomicU64,
}

/// A snapshot of [`MappingStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingCounts {
    pub zero_dates: u64,
}

impl MappingStats {
    pub fn snapshot(&self) -> MappingCounts {
        MappingCounts { zero_dates: self.zero_dates.load(Ordering::Relaxed) }
    }
}

/// The CQL type of a column, as Cassandra reports it in `system_schema.columns.type`.
pub fn cql_type(column: &Column) -> Result<&'static str, String> {
    Ok(match &column.kind {
        ColumnKind::TinyInt | ColumnKind::SmallInt | ColumnKind::MediumInt => "int",
        ColumnKind::Int if column.unsigned => "bigint",
        ColumnKind::Int => "int",
        ColumnKind::BigInt if column.unsigned => "varint",
        ColumnKind::BigInt => "bigint",
        ColumnKind::Float => "float",
        ColumnKind::Double => "double",
        ColumnKind::Decimal { .. } => "decimal",
        ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text | ColumnKind::Enum { .. } | ColumnKind::Json => {
            "text"
        }
        ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob => "blob",
        ColumnKind::Date => "date",
        ColumnKind::Time { .. } => "bigint",
        ColumnKind::DateTime { fsp } | ColumnKind::Timestamp { fsp } if *fsp <= 3 => "timestamp",
        ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. } => "text",
        ColumnKind::Year => "int",
        ColumnKind::Bit { .. } => "bigint",
        ColumnKind::Set { .. } => "frozen<set<text>>",
        ColumnKind::Unsupported(t) => {
            return Err(format!(
                "column '{}' has type {t}, which polyrepl does not replicate to Cassandra",
                column.name
            ))
        }
    })
}

/// The CQL value written for `value` in `column`; `None` for NULL (and zero dates, counted in `stats`).
pub fn to_cql(column: &Column, value: &Value, stats: &MappingStats) -> Result<Option<CqlValue>, String> {
    let wrong = || format!("column '{}' ({:?}) cannot hold the value {value:?}", column.name, column.kind);
    let out = match (&column.kind, value) {
        (_, Value::Null) => return Ok(None),
        (_, Value::Date(d)) if d.is_zero() => return Ok(zero_date(stats)),
        (_, Value::DateTime(dt) | Value::Timestamp(dt)) if dt.date.is_zero() => return Ok(zero_date(stats)),
        (_, Value::Int(_) | Value::UInt(_))
            if cql_type(column) == Ok("int") && !matches!(column.kind, ColumnKind::Year) =>
        {
            let v = match value {
                Value::Int(v) => i32::try_from(*v).ok(),
                Value::UInt(v) => i32::try_from(*v).ok(),
                _ => None,
            };
            CqlValue::Int(v.ok_or_else(wrong)?)
        }
        (ColumnKind::Int | ColumnKind::BigInt, Value::Int(v)) if cql_type(column) == Ok("bigint") => {
            CqlValue::BigInt(*v)
        }
        (ColumnKind::Int | ColumnKind::BigInt, Value::UInt(v)) if cql_type(column) == Ok("bigint") => {
            CqlValue::BigInt(i64::try_from(*v).map_err(|_| wrong())?)
        }
        (ColumnKind::BigInt, Value::UInt(v)) => {
            CqlValue::Varint(CqlVarint::from_signed_bytes_be(minimal_signed_bytes(*v as i128)))
        }
        (ColumnKind::BigInt, Value::Int(v)) => {
            CqlValue::Varint(CqlVarint::from_signed_bytes_be(minimal_signed_bytes(*v as i128)))
        }
        (ColumnKind::Float, Value::Float(v)) => CqlValue::Float(*v),
        (ColumnKind::Double, Value::Double(v)) => CqlValue::Double(*v),
        (ColumnKind::Decimal { .. }, Value::Decimal(text)) => {
            let (bytes, scale) = decimal_to_unscaled(text).map_err(|e| format!("column '{}': {e}", column.name))?;
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(bytes, scale))
        }
        (ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text, Value::String(s)) => CqlValue::Text(s.clone()),
        (ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text, Value::Bytes(b)) => {
            CqlValue::Text(String::from_utf8(b.clone()).map_err(|_| wrong())?)
        }
        (ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob, Value::Bytes(b)) => CqlValue::Blob(b.clone()),
        (ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob, Value::String(s)) => {
            CqlValue::Blob(s.as_bytes().to_vec())
        }
        (ColumnKind::Date, Value::Date(d)) => CqlValue::Date(CqlDate((days_since_epoch(*d) + CQL_DATE_EPOCH) as u32)),
        (ColumnKind::Time { .. }, Value::Time(t)) => CqlValue::BigInt(time_micros(t)),
        (ColumnKind::DateTime { fsp }, Value::DateTime(dt)) | (ColumnKind::Timestamp { fsp }, Value::Timestamp(dt))
            if *fsp <= 3 =>
        {
            CqlValue::Timestamp(CqlTimestamp(dt.epoch_millis().ok_or_else(wrong)?))
        }
        (ColumnKind::DateTime { .. }, Value::DateTime(dt)) => CqlValue::Text(dt.iso_micros()),
        (ColumnKind::Timestamp { .. }, Value::Timestamp(dt)) => CqlValue::Text(format!("{}Z", dt.iso_micros())),
        (ColumnKind::Year, Value::Year(y)) => CqlValue::Int(i32::from(*y)),
        (ColumnKind::Json, Value::Json(j)) => CqlValue::Text(j.to_string()),
        (ColumnKind::Bit { .. }, Value::Bit(v)) => CqlValue::BigInt(*v as i64),
        (ColumnKind::Enum { .. }, Value::Enum(s)) => CqlValue::Text(s.clone()),
        (ColumnKind::Set { .. }, Value::Set(labels)) => {
            CqlValue::Set(labels.iter().cloned().map(CqlValue::Text).collect())
        }
        _ => return Err(wrong()),
    };
    Ok(Some(out))
}

fn zero_date(stats: &MappingStats) -> Option<CqlValue> {
    if stats.zero_dates.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!("a zero date (0000-00-00) has no CQL form: written as null (counted in zero_dates)");
    }
    None
}

/// Decodes a stored CQL value for `column`. Never fails: an unexpected value reads as a descriptive string.
pub fn from_cql(column: &Column, value: Option<CqlValue>) -> Value {
    let Some(value) = value else { return Value::Null };
    let int = |v: i64| if column.unsigned { Value::UInt(v as u64) } else { Value::Int(v) };
    match (&column.kind, value) {
        (ColumnKind::Year, CqlValue::Int(v)) => {
            u16::try_from(v).map(Value::Year).unwrap_or_else(|_| unexpected(column, &CqlValue::Int(v)))
        }
        (_, CqlValue::Int(v)) if cql_type(column) == Ok("int") => int(i64::from(v)),
        (ColumnKind::Bit { .. }, CqlValue::BigInt(v)) => Value::Bit(v as u64),
        (ColumnKind::Int | ColumnKind::BigInt, CqlValue::BigInt(v)) => int(v),
        (ColumnKind::BigInt, CqlValue::Varint(v)) => match signed_bytes_to_i128(v.as_signed_bytes_be_slice()) {
            Some(n) if column.unsigned => {
                u64::try_from(n).map(Value::UInt).unwrap_or_else(|_| Value::String(format!("varint {n}")))
            }
            Some(n) => i64::try_from(n).map(Value::Int).unwrap_or_else(|_| Value::String(format!("varint {n}"))),
            None => Value::String("varint wider than 128 bits".to_string()),
        },
        (ColumnKind::Float, CqlValue::Float(v)) => Value::Float(v),
        (ColumnKind::Double, CqlValue::Double(v)) => Value::Double(v),
        (ColumnKind::Decimal { .. }, CqlValue::Decimal(d)) => {
            let (bytes, scale) = d.as_signed_be_bytes_slice_and_exponent();
            Value::Decimal(unscaled_to_decimal(bytes, scale))
        }
        (ColumnKind::Char | ColumnKind::VarChar | ColumnKind::Text, CqlValue::Text(s)) => Value::String(s),
        (ColumnKind::Binary | ColumnKind::VarBinary | ColumnKind::Blob, CqlValue::Blob(b)) => Value::Bytes(b),
        (ColumnKind::Date, CqlValue::Date(CqlDate(d))) => Value::Date(date_from_days(i64::from(d) - CQL_DATE_EPOCH)),
        (ColumnKind::Time { fsp }, CqlValue::BigInt(micros)) => Value::Time(time_from_micros(micros, *fsp)),
        (ColumnKind::DateTime { fsp }, CqlValue::Timestamp(CqlTimestamp(ms))) => Value::DateTime(from_millis(ms, *fsp)),
        (ColumnKind::Timestamp { fsp }, CqlValue::Timestamp(CqlTimestamp(ms))) => {
            Value::Timestamp(from_millis(ms, *fsp))
        }
        (ColumnKind::DateTime { fsp }, CqlValue::Text(s)) => match parse_iso_micros(&s, *fsp) {
            Some(dt) => Value::DateTime(dt),
            None => Value::String(s),
        },
        (ColumnKind::Timestamp { fsp }, CqlValue::Text(s)) => {
            match s.strip_suffix('Z').and_then(|t| parse_iso_micros(t, *fsp)) {
                Some(dt) => Value::Timestamp(dt),
                None => Value::String(s),
            }
        }
        (ColumnKind::Json, CqlValue::Text(s)) => match serde_json::from_str(&s) {
            Ok(j) => Value::Json(j),
            Err(_) => Value::String(s),
        },
        (ColumnKind::Enum { .. }, CqlValue::Text(s)) => Value::Enum(s),
        (ColumnKind::Set { labels }, CqlValue::Set(items)) => {
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    CqlValue::Text(s) => out.push(s),
                    other => return unexpected(column, &other),
                }
            }
            // Definition order, as MySQL lists a SET; unknown labels last, in stored order.
            out.sort_by_key(|s| labels.iter().position(|l| l == s).unwrap_or(usize::MAX));
            Value::Set(out)
        }
        (_, other) => unexpected(column, &other),
    }
}

fn unexpected(column: &Column, value: &CqlValue) -> Value {
    Value::String(format!("unexpected CQL value for column '{}' ({:?}): {value:?}", column.name, column.kind))
}

/// A TIME as signed microseconds: MySQL's TIME is a duration (−838:59:59.999999 … 838:59:59.999999),
/// which a CQL `time` (one day) cannot hold.
fn time_micros(t: &Time) -> i64 {
    let secs = i64::from(t.hours) * 3600 + i64::from(t.minutes) * 60 + i64::from(t.seconds);
    let magnitude = secs * 1_000_000 + i64::from(t.micros);
    if t.negative {
        -magnitude
    } else {
        magnitude
    }
}

/// The TIME that [`time_micros`] wrote.
fn time_from_micros(micros: i64, fsp: u8) -> Time {
    let magnitude = micros.unsigned_abs();
    let secs = magnitude / 1_000_000;
    Time {
        negative: micros < 0,
        hours: (secs / 3600) as u32,
        minutes: (secs % 3600 / 60) as u8,
        seconds: (secs % 60) as u8,
        micros: (magnitude % 1_000_000) as u32,
        fsp,
    }
}

fn from_millis(ms: i64, fsp: u8) -> DateTime {
    DateTime::from_epoch(ms.div_euclid(1000), (ms.rem_euclid(1000) * 1000) as u32, fsp)
}

/// Days from 1970-01-01 to a (non-zero) date.
fn days_since_epoch(d: Date) -> i64 {
    let midnight = DateTime { date: d, hour: 0, minute: 0, second: 0, micros: 0, fsp: 0 };
    midnight.epoch_millis().unwrap_or(0).div_euclid(86_400_000)
}

fn date_from_days(days: i64) -> Date {
    DateTime::from_epoch(days * 86_400, 0, 0).date
}

/// Parses `YYYY-MM-DDTHH:MM:SS.ffffff` (what [`DateTime::iso_micros`] writes).
fn parse_iso_micros(s: &str, fsp: u8) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() != 26 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    Some(DateTime {
        date: Date { year: num(0..4)? as u16, month: num(5..7)? as u8, day: num(8..10)? as u8 },
        hour: num(11..13)? as u8,
        minute: num(14..16)? as u8,
        second: num(17..19)? as u8,
        micros: num(20..26)?,
        fsp,
    })
}

/// Minimal big-endian two's complement bytes of `v` (CQL varint encoding).
fn minimal_signed_bytes(v: i128) -> Vec<u8> {
    trim_signed(v.to_be_bytes().to_vec())
}

/// Drops redundant leading sign bytes of a big-endian two's complement number.
fn trim_signed(mut bytes: Vec<u8>) -> Vec<u8> {
    let redundant = bytes
        .windows(2)
        .take_while(|w| (w[0] == 0x00 && w[1] & 0x80 == 0) || (w[0] == 0xFF && w[1] & 0x80 != 0))
        .count();
    bytes.drain(..redundant);
    if bytes.is_empty() {
        bytes.push(0);
    }
    bytes
}

fn signed_bytes_to_i128(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

/// Splits MySQL's exact DECIMAL text (`-12.500`) into the unscaled integer as CQL varint bytes and the
/// scale (number of fractional digits).
pub fn decimal_to_unscaled(text: &str) -> Result<(Vec<u8>, i32), String> {
    let bad = || format!("DECIMAL value '{text}' is not a plain decimal number");
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !(int_part.bytes().chain(frac_part.bytes()).all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    // Magnitude, big-endian base 256, built digit by digit.
    let mut magnitude: Vec<u8> = vec![0];
    for digit in int_part.bytes().chain(frac_part.bytes()) {
        let mut carry = u32::from(digit - b'0');
        for byte in magnitude.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, (carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    magnitude.insert(0, 0); // room for the sign bit
    if negative {
        negate(&mut magnitude);
    }
    Ok((trim_signed(magnitude), frac_part.len() as i32))
}

/// Two's complement negation in place (big-endian).
fn negate(bytes: &mut [u8]) {
    let mut carry = true;
    for byte in bytes.iter_mut().rev() {
        let (v, c) = (!*byte).overflowing_add(u8::from(carry));
        *byte = v;
        carry = c;
    }
}

/// The exact decimal text of an unscaled two's complement integer and a scale (`-12500`, 3 → `-12.500`).
pub fn unscaled_to_decimal(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        magnitude.insert(0, 0xFF);
        negate(&mut magnitude);
    }
    // Decimal digits by repeated division by 10.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for byte in magnitude.iter_mut() {
            let v = (rem << 8) | u32::from(*byte);
            *byte = (v / 10) as u8;
            rem = v % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = String::from_utf8(digits).expect("ascii digits");
    if scale < 0 {
        text.push_str(&"0".repeat(scale.unsigned_abs() as usize));
    } else if scale > 0 {
        let scale = scale as usize;
        if text.len() <= scale {
            text = format!("{}{text}", "0".repeat(scale + 1 - text.len()));
        }
        text.insert(text.len() - scale, '.');
    }
    if negative {
        text.insert(0, '-');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ColumnKind, unsigned: bool) -> Column {
        Column { name: "c".into(), kind, unsigned, nullable: true }
    }

    fn round_trip(column: &Column, value: Value) {
        let stats = MappingStats::default();
        let cql = to_cql(column, &value, &stats).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_cql(column, cql.clone()), value, "{:?} via {cql:?}", column.kind);
    }

    #[allow(clippy::too_many_arguments)]
    fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> DateTime {
        DateTime { date: Date { year: y, month: mo, day: d }, hour: h, minute: mi, second: s, micros, fsp }
    }

    #[test]
    fn integers_round_trip_at_their_extremes() {
        for v in [i64::from(i32::MIN), -1, 0, i64::from(i32::MAX)] {
            round_trip(&col(ColumnKind::Int, false), Value::Int(v));
        }
        round_trip(&col(ColumnKind::TinyInt, false), Value::Int(-128));
        round_trip(&col(ColumnKind::MediumInt, true), Value::UInt(16_777_215));
        round_trip(&col(ColumnKind::Int, true), Value::UInt(4_294_967_295));
        for v in [i64::MIN, -1, 0, i64::MAX] {
            round_trip(&col(ColumnKind::BigInt, false), Value::Int(v));
        }
        for v in [0, 1, 127, 128, 255, 256, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            round_trip(&col(ColumnKind::BigInt, true), Value::UInt(v));
        }
        assert_eq!(cql_type(&col(ColumnKind::BigInt, true)), Ok("varint"));
        assert_eq!(cql_type(&col(ColumnKind::Int, true)), Ok("bigint"));
        assert!(to_cql(&col(ColumnKind::Int, false), &Value::Int(i64::from(i32::MAX) + 1), &MappingStats::default())
            .is_err());
    }

    #[test]
    fn varint_bytes_are_minimal() {
        assert_eq!(minimal_signed_bytes(0), vec![0]);
        assert_eq!(minimal_signed_bytes(127), vec![0x7F]);
        assert_eq!(minimal_signed_bytes(128), vec![0x00, 0x80]);
        assert_eq!(minimal_signed_bytes(-1), vec![0xFF]);
        assert_eq!(minimal_signed_bytes(-129), vec![0xFF, 0x7F]);
        assert_eq!(minimal_signed_bytes(u64::MAX as i128), vec![0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn decimals_keep_their_exact_text() {
        let c = col(ColumnKind::Decimal { precision: 65, scale: 30 }, false);
        for text in [
            "0.000000000000000000000000000000",
            "-12.500",
            "12.500",
            "1",
            "-1",
            "0.5",
            "-0.000000000000000000000000000001",
            "99999999999999999999999999999999999.999999999999999999999999999999",
            "-99999999999999999999999999999999999.999999999999999999999999999999",
            "128",
            "-128",
            "255.00",
        ] {
            round_trip(&c, Value::Decimal(text.to_string()));
        }
        let (bytes, scale) = decimal_to_unscaled("-12.500").unwrap();
        assert_eq!((bytes, scale), (minimal_signed_bytes(-12_500), 3));
        assert!(decimal_to_unscaled("1e5").is_err());
        assert!(decimal_to_unscaled("").is_err());
        assert_eq!(unscaled_to_decimal(&[0x01], -2), "100");
    }

    #[test]
    fn text_binary_json_and_sets() {
        round_trip(&col(ColumnKind::VarChar, false), Value::String("emoji 😀 ünï".into()));
        round_trip(&col(ColumnKind::Text, false), Value::String(String::new()));
        round_trip(&col(ColumnKind::Blob, false), Value::Bytes(vec![0, 0, 255, 0]));
        round_trip(&col(ColumnKind::VarBinary, false), Value::Bytes(vec![]));
        round_trip(
            &col(ColumnKind::Json, false),
            Value::Json(serde_json::json!({"a": [1, 2.5, "😀", null], "b": {"c": true}})),
        );
        round_trip(&col(ColumnKind::Json, false), Value::Json(serde_json::Value::Null));
        round_trip(&col(ColumnKind::Bit { bits: 64 }, false), Value::Bit(u64::MAX));
        round_trip(&col(ColumnKind::Bit { bits: 1 }, false), Value::Bit(1));
        round_trip(&col(ColumnKind::Enum { labels: vec!["x".into(), "".into()] }, false), Value::Enum(String::new()));
        let set = col(ColumnKind::Set { labels: vec!["z".into(), "a".into(), "m".into()] }, false);
        round_trip(&set, Value::Set(vec!["z".into(), "m".into()]));
        round_trip(&set, Value::Set(vec![]));
        // Cassandra returns a set sorted; reading restores definition order.
        let sorted = Some(CqlValue::Set(vec![CqlValue::Text("a".into()), CqlValue::Text("z".into())]));
        assert_eq!(from_cql(&set, sorted), Value::Set(vec!["z".into(), "a".into()]));
        round_trip(&col(ColumnKind::Year, false), Value::Year(2155));
        round_trip(&col(ColumnKind::Float, false), Value::Float(-3.4028235e38));
        round_trip(&col(ColumnKind::Double, false), Value::Double(f64::MIN_POSITIVE));
        round_trip(&col(ColumnKind::Int, false), Value::Null);
    }

    #[test]
    fn json_numbers_and_odd_keys_are_stored_as_written() {
        let c = col(ColumnKind::Json, false);
        for (source, stored) in polyrepl_core::testkit::json_cases::json_kept_as_text() {
            let value = Value::Json(polyrepl_core::json::parse(source.as_bytes()).unwrap());
            let cql = to_cql(&c, &value, &MappingStats::default()).unwrap();
            assert_eq!(cql, Some(CqlValue::Text(stored.to_string())), "{source}");
            assert_eq!(from_cql(&c, cql), value, "{source}");
        }
        let exact = Value::Json(polyrepl_core::json::parse(b"[12345678901234567890123]").unwrap());
        assert_ne!(from_cql(&c, Some(CqlValue::Text("[1.2345678901234568e22]".into()))), exact);
    }

    #[test]
    fn dates_and_times() {
        round_trip(&col(ColumnKind::Date, false), Value::Date(Date { year: 1000, month: 1, day: 1 }));
        round_trip(&col(ColumnKind::Date, false), Value::Date(Date { year: 9999, month: 12, day: 31 }));
        round_trip(&col(ColumnKind::Date, false), Value::Date(Date { year: 1970, month: 1, day: 1 }));
        round_trip(
            &col(ColumnKind::DateTime { fsp: 3 }, false),
            Value::DateTime(dt(1969, 12, 31, 23, 59, 59, 999_000, 3)),
        );
        round_trip(&col(ColumnKind::DateTime { fsp: 0 }, false), Value::DateTime(dt(9999, 12, 31, 23, 59, 59, 0, 0)));
        round_trip(
            &col(ColumnKind::DateTime { fsp: 6 }, false),
            Value::DateTime(dt(2025, 11, 29, 12, 0, 1, 123_456, 6)),
        );
        round_trip(
            &col(ColumnKind::Timestamp { fsp: 6 }, false),
            Value::Timestamp(dt(2038, 1, 19, 3, 14, 7, 999_999, 6)),
        );
        round_trip(&col(ColumnKind::Timestamp { fsp: 0 }, false), Value::Timestamp(dt(1970, 1, 1, 0, 0, 1, 0, 0)));
        let t =
            |h, m, s, us, fsp| Value::Time(Time { negative: false, hours: h, minutes: m, seconds: s, micros: us, fsp });
        round_trip(&col(ColumnKind::Time { fsp: 6 }, false), t(23, 59, 59, 999_999, 6));
        round_trip(&col(ColumnKind::Time { fsp: 0 }, false), t(0, 0, 0, 0, 0));
        // The whole MySQL TIME range, negative values and hours beyond a day included (-440:39:45 stopped
        // every sink when this was a CQL time).
        let time = |negative, h, m, s, us| {
            Value::Time(Time { negative, hours: h, minutes: m, seconds: s, micros: us, fsp: 6 })
        };
        for v in [
            time(false, 838, 59, 59, 999_999),
            time(true, 838, 59, 59, 999_999),
            time(true, 440, 39, 45, 0),
            time(true, 0, 0, 0, 500_000),
            time(false, 24, 0, 0, 0),
        ] {
            round_trip(&col(ColumnKind::Time { fsp: 6 }, false), v);
        }
        let stats = MappingStats::default();
        assert_eq!(
            to_cql(&col(ColumnKind::Time { fsp: 0 }, false), &time(true, 1, 0, 0, 1), &stats),
            Ok(Some(CqlValue::BigInt(-3_600_000_001))),
            "signed microseconds"
        );
        // Zero dates: null, counted.
        let zero = Date { year: 0, month: 0, day: 0 };
        assert_eq!(to_cql(&col(ColumnKind::Date, false), &Value::Date(zero), &stats), Ok(None));
        assert_eq!(
            to_cql(&col(ColumnKind::DateTime { fsp: 6 }, false), &Value::DateTime(dt(0, 0, 0, 0, 0, 0, 0, 6)), &stats),
            Ok(None)
        );
        assert_eq!(stats.snapshot().zero_dates, 2);
        assert_eq!(
            to_cql(
                &col(ColumnKind::Timestamp { fsp: 6 }, false),
                &Value::Timestamp(dt(2000, 2, 29, 1, 2, 3, 4, 6)),
                &stats
            ),
            Ok(Some(CqlValue::Text("2000-02-29T01:02:03.000004Z".into())))
        );
    }

    #[test]
    fn wrong_values_are_errors_and_odd_cells_read_as_text() {
        let stats = MappingStats::default();
        assert!(to_cql(&col(ColumnKind::Int, false), &Value::String("1".into()), &stats).is_err());
        assert!(cql_type(&col(ColumnKind::Unsupported("geometry".into()), false)).is_err());
        let v = from_cql(&col(ColumnKind::Int, false), Some(CqlValue::Text("x".into())));
        assert!(matches!(v, Value::String(s) if s.contains("unexpected")));
    }
}
