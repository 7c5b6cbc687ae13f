//! The exact type mapping between a source [`Value`] and BSON, both ways.
//!
//! | source (MySQL/MariaDB)              | BSON written                                                        | read back as            |
//! |-------------------------------------|---------------------------------------------------------------------|-------------------------|
//! | NULL                                | null                                                                | `Value::Null`           |
//! | TINYINT..BIGINT (signed)            | int32 when it fits, else int64                                      | `Int`                   |
//! | ... UNSIGNED ≤ i64::MAX             | int32 when it fits, else int64                                      | `UInt` (column unsigned)|
//! | BIGINT UNSIGNED > i64::MAX          | decimal128 (exponent 0); string of digits if the server lacks decimal128 | `UInt`             |
//! | FLOAT                               | double (the f32 widened exactly)                                    | `Float`                 |
//! | DOUBLE                              | double                                                              | `Double`                |
//! | DECIMAL(p,s)                        | decimal128 built from the exact text (exponent −s, trailing zeros kept); **string** with the exact text when > 34 significant digits (counted in `decimals_as_text`) or when the server lacks decimal128 (FerretDB 1.x) | `Decimal` (same text) |
//! | CHAR/VARCHAR/TEXT (`Value::String`)  | string (UTF-8, emoji intact)                                        | `String`                |
//! | BINARY/VARBINARY/BLOB (`Value::Bytes`)| binary, subtype 0 (generic)                                       | `Bytes`                 |
//! | DATE                                | string `YYYY-MM-DD`                                                 | `Date`                  |
//! | TIME                                | string `[-]HH:MM:SS[.ffffff]` (MySQL's text, fsp digits)            | `Time` (fsp = digits)   |
//! | DATETIME, fsp 0–3                   | date (the wall clock read as UTC, milliseconds)                     | `DateTime` (column fsp) |
//! | DATETIME, fsp 4–6                   | string `YYYY-MM-DDTHH:MM:SS.ffffff` (microseconds kept)             | `DateTime` (column fsp) |
//! | TIMESTAMP, fsp 0–3                  | date (UTC instant, milliseconds)                                    | `Timestamp`             |
//! | TIMESTAMP, fsp 4–6                  | string `YYYY-MM-DDTHH:MM:SS.ffffffZ`                                | `Timestamp`             |
//! | zero date / datetime / timestamp    | null, counted in `zero_dates`, with a warning                       | `Value::Null`           |
//! | YEAR                                | int32                                                               | `Year`                  |
//! | JSON                                | native: object → document (key order kept, empty keys too), array → array, string, bool, null; numbers exactly: an integer literal within i64 → int32/int64; another number whose shortest double has the same decimal value (`1.5`, `0.1`, `1e300`, `1.0`) → double; else decimal128 of the exact value when it has ≤ 34 significant digits and an exponent within −6176..6111 (`1.50` keeps its scale, `18446744073709551615`, `0.1000000000000000000001`, `1e400`) | `Json` (numbers by value) |
//! | JSON the server cannot store natively | binary subtype 0x80 holding the JSON text, every digit kept (counted in `json_as_text`, logged with the reason): a number none of the above holds exactly (more than 34 significant digits, beyond decimal128's exponents, or any such number on a server without decimal128: FerretDB 1.x), nested arrays (FerretDB 1.x), keys starting with `$` or containing `.` (FerretDB 1.x, MongoDB < 5.0), keys holding a NUL character (no BSON field name can), nesting deeper than 90 | `Json` |
//! | BIT(n)                              | int64 (the 64-bit pattern; BIT(64) values above i64::MAX are negative int64) | `Bit`          |
//! | ENUM                                | string (the label)                                                  | `Enum`                  |
//! | SET                                 | array of strings (labels in definition order)                       | `Set`                   |
//!
//! Invariants:
//! - For every value the source produces for a column, `from_bson(column, to_bson(column, v)) == v`, with
//!   these documented exceptions: zero dates read back as NULL; a JSON document that is exactly `null`
//!   reads back as SQL NULL; DATETIME/TIMESTAMP with fsp ≤ 3 keep milliseconds only (MySQL never has more
//!   at that precision); FerretDB stores −0.0 as 0.0. JSON reads back as the same JSON value by
//!   [`polyrepl_core::json::same`]: numbers keep their exact value but not their spelling (a double reads
//!   back in its shortest form, `1E2` as `100.0`; `-0` as `0`).
//! - Writing never fails and never panics on a value: what cannot be stored natively is stored as exact
//!   text and counted.
//! - Reading never fails: a BSON value of an unexpected type becomes a `Value::String` describing it,
//!   so that verification reports the row as different instead of stopping.

use mongodb::bson::{
    spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime, Document, RawBinaryRef, RawBson, RawBsonRef,
    RawDocumentBuf,
};
use polyrepl_core::text::ShortText;
use polyrepl_core::{Column, ColumnKind, Date, DateTime, Time, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use polyrepl_core::json::{self, NumberParts};

use crate::decimal;

/// Binary subtype (user-defined range) of a JSON value stored as its text.
pub const JSON_TEXT_SUBTYPE: u8 = 0x80;
/// Deepest JSON nesting stored natively (MongoDB refuses documents nested deeper than 100).
const MAX_NATIVE_JSON_DEPTH: usize = 90;

/// What the connected server can store, which decides a few fallbacks of the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerFeatures {
    /// BSON decimal128 is accepted (MongoDB 3.4+; not FerretDB 1.x, which drops the connection).
    pub decimal128: bool,
    /// Arrays directly inside arrays are accepted (not FerretDB 1.x).
    pub nested_arrays: bool,
    /// Field names starting with `$` or containing `.` are accepted in embedded documents (MongoDB 5.0+).
    pub dollar_and_dot_keys: bool,
}

impl ServerFeatures {
    /// Everything a current MongoDB server accepts.
    pub const MONGODB: ServerFeatures =
        ServerFeatures { decimal128: true, nested_arrays: true, dollar_and_dot_keys: true };
    /// FerretDB 1.x.
    pub const FERRETDB_1: ServerFeatures =
        ServerFeatures { decimal128: false, nested_arrays: false, dollar_and_dot_keys: false };
}

/// Counters of values the mapping had to store in a fallback form. Shared, cheap to update.
#[derive(Debug, Default)]
pub struct MappingStats {
    /// Zero dates/datetimes/timestamps written as null.
    pub zero_dates: AtomicU64,
    /// DECIMAL values stored as exact text because they do not fit decimal128 (more than 34 digits, or
    /// text that is not a plain decimal). Not counted: decimals stored as text because the server has
    /// no decimal128 at all (said once at connection).
    pub decimals_as_text: AtomicU64,
    /// JSON values stored as text (binary subtype 0x80) because the server cannot store them natively.
    pub json_as_text: AtomicU64,
}

/// A point-in-time copy of [`MappingStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MappingCounts {
    pub zero_dates: u64,
    pub decimals_as_text: u64,
    pub json_as_text: u64,
}

impl MappingStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> MappingCounts {
        MappingCounts {
            zero_dates: self.zero_dates.load(Ordering::Relaxed),
            decimals_as_text: self.decimals_as_text.load(Ordering::Relaxed),
            json_as_text: self.json_as_text.load(Ordering::Relaxed),
        }
    }
}

/// Adds one to a counter and says whether this occurrence deserves a log line (1st, 2nd, 4th, 8th...).
fn bump(counter: &AtomicU64) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    n.is_power_of_two()
}

/// Maps values to BSON and back for one server.
#[derive(Debug, Clone)]
pub struct Mapping {
    features: ServerFeatures,
    stats: Arc<MappingStats>,
}

impl Mapping {
    /// A mapping for a server with `features`, counting fallbacks into `stats`.
    pub fn new(features: ServerFeatures, stats: Arc<MappingStats>) -> Self {
        Mapping { features, stats }
    }

    /// The counters this mapping updates.
    pub fn stats(&self) -> &Arc<MappingStats> {
        &self.stats
    }

    /// The BSON stored for `value` in `column`.
    pub fn to_bson(&self, column: &Column, value: &Value) -> Bson {
        match value {
            Value::Null => Bson::Null,
            Value::Int(v) => int_bson(*v),
            Value::UInt(v) => match i64::try_from(*v) {
                Ok(i) => int_bson(i),
                Err(_) if self.features.decimal128 => Bson::Decimal128(decimal::encode_u64(*v)),
                Err(_) => Bson::String(v.to_string()),
            },
            Value::Float(v) => Bson::Double(f64::from(*v)),
            Value::Double(v) => Bson::Double(*v),
            Value::Decimal(text) => self.decimal_bson(column, text),
            Value::String(s) | Value::Enum(s) => Bson::String(s.clone()),
            Value::Bytes(b) => Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: b.clone() }),
            Value::Date(d) => {
                if d.is_zero() {
                    self.zero_date(column, &d.to_string())
                } else {
                    Bson::String(d.to_string())
                }
            }
            Value::Time(t) => Bson::String(t.mysql_text()),
            Value::DateTime(dt) => self.datetime_bson(column, dt, false),
            Value::Timestamp(dt) => self.datetime_bson(column, dt, true),
            Value::Year(y) => Bson::Int32(i32::from(*y)),
            Value::Json(j) => self.json_bson(column, j),
            Value::Bit(b) => Bson::Int64(*b as i64),
            Value::Set(labels) => Bson::Array(labels.iter().cloned().map(Bson::String).collect()),
        }
    }

    fn decimal_bson(&self, column: &Column, text: &str) -> Bson {
        if !self.features.decimal128 {
            return Bson::String(text.to_string());
        }
        match decimal::encode_text(text) {
            Some(d) => Bson::Decimal128(d),
            None => {
                if bump(&self.stats.decimals_as_text) {
                    tracing::warn!(
                        column = %column.name,
                        count = self.stats.decimals_as_text.load(Ordering::Relaxed),
                        "DECIMAL value with more than 34 significant digits stored as exact text (decimal128 would round it)"
                    );
                }
                Bson::String(text.to_string())
            }
        }
    }

    fn zero_date(&self, column: &Column, text: &str) -> Bson {
        if bump(&self.stats.zero_dates) {
            tracing::warn!(
                column = %column.name,
                value = text,
                count = self.stats.zero_dates.load(Ordering::Relaxed),
                "zero date has no BSON form: stored as null"
            );
        }
        Bson::Null
    }

    fn datetime_bson(&self, column: &Column, dt: &DateTime, utc: bool) -> Bson {
        if dt.date.is_zero() {
            return self.zero_date(column, &dt.mysql_text());
        }
        if !Self::datetime_as_text(dt) {
            if let Some(ms) = dt.epoch_millis() {
                return Bson::DateTime(BsonDateTime::from_millis(ms));
            }
        }
        Bson::String(ShortText::of_iso_micros(dt, utc).as_str().to_string())
    }

    /// Appends `value` of `column` to `doc` as the BSON [`Mapping::to_bson`] gives, the same bytes,
    /// but written straight from the value where it is text or bytes (no `Bson` built and copied first:
    /// that was a third of a snapshot's CPU in the MongoDB sink).
    pub fn append_raw(
        &self,
        doc: &mut RawDocumentBuf,
        key: &str,
        column: &Column,
        value: &Value,
    ) -> Result<(), mongodb::bson::raw::Error> {
        match value {
            Value::String(s) | Value::Enum(s) => doc.append_ref(key, RawBsonRef::String(s)),
            Value::Bytes(bytes) => {
                doc.append_ref(key, RawBsonRef::Binary(RawBinaryRef { subtype: BinarySubtype::Generic, bytes }))
            }
            Value::DateTime(dt) | Value::Timestamp(dt) if Self::datetime_as_text(dt) => {
                let utc = matches!(value, Value::Timestamp(_));
                doc.append_ref(key, RawBsonRef::String(ShortText::of_iso_micros(dt, utc).as_str()))
            }
            _ => doc.append(key, RawBson::try_from(self.to_bson(column, value))?),
        }
        Ok(())
    }

    /// Whether a DATETIME/TIMESTAMP is stored as ISO text: a non-zero value with more than millisecond
    /// precision (a BSON date holds milliseconds).
    fn datetime_as_text(dt: &DateTime) -> bool {
        !dt.date.is_zero() && dt.fsp > 3
    }

    fn json_bson(&self, column: &Column, json: &serde_json::Value) -> Bson {
        let why = match self.json_native(json, 0) {
            Ok(bson) => return bson,
            Err(why) => why,
        };
        if bump(&self.stats.json_as_text) {
            tracing::warn!(
                column = %column.name,
                reason = why,
                count = self.stats.json_as_text.load(Ordering::Relaxed),
                "JSON value the server cannot store as a document stored as text (binary subtype 0x80)"
            );
        }
        Bson::Binary(Binary {
            subtype: BinarySubtype::UserDefined(JSON_TEXT_SUBTYPE),
            bytes: json.to_string().into_bytes(),
        })
    }

    /// `json` as native BSON that reads back as the same JSON value, or why the server cannot hold it so.
    fn json_native(&self, json: &serde_json::Value, depth: usize) -> Result<Bson, &'static str> {
        use serde_json::Value as J;
        if depth > MAX_NATIVE_JSON_DEPTH {
            return Err("nested deeper than 90 levels");
        }
        Ok(match json {
            J::Null => Bson::Null,
            J::Bool(b) => Bson::Boolean(*b),
            J::Number(n) => self.json_number(n.as_str())?,
            J::String(s) => Bson::String(s.clone()),
            J::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if item.is_array() && !self.features.nested_arrays {
                        return Err("an array directly inside an array");
                    }
                    out.push(self.json_native(item, depth + 1)?);
                }
                Bson::Array(out)
            }
            J::Object(map) => {
                let mut doc = Document::new();
                for (key, item) in map {
                    if key.contains('\0') {
                        return Err("a key holding a NUL character (BSON field names cannot)");
                    }
                    if !self.features.dollar_and_dot_keys && (key.starts_with('$') || key.contains('.')) {
                        return Err("a key starting with $ or containing a dot");
                    }
                    doc.insert(key.clone(), self.json_native(item, depth + 1)?);
                }
                Bson::Document(doc)
            }
        })
    }

    /// A JSON number (its exact text) as int32/int64 when it is an integer literal within i64, as a double
    /// when the double's shortest text has the same decimal value, else as a decimal128 of the exact value
    /// when the server has decimal128 and the value fits 34 digits and its exponent range.
    fn json_number(&self, text: &str) -> Result<Bson, &'static str> {
        const WHY: &str = "a number that int64, double and (on this server) decimal128 cannot hold exactly";
        let parts = NumberParts::parse(text).ok_or(WHY)?;
        if !text.contains(['.', 'e', 'E']) {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(int_bson(i));
            }
        }
        if let Ok(d) = text.parse::<f64>() {
            if d.is_finite() && json::normal_number(&shortest_text(d)) == parts.normal_text() {
                return Ok(Bson::Double(d));
            }
        }
        if self.features.decimal128 {
            if let Some(d) = decimal::encode_number(&parts) {
                return Ok(Bson::Decimal128(d));
            }
        }
        Err(WHY)
    }

    /// The source value that `bson`, stored for `column`, stands for. Never fails: unexpected BSON
    /// becomes a `Value::String` that describes it (and so differs from any source value).
    pub fn from_bson(&self, column: &Column, bson: &Bson) -> Value {
        from_bson(column, bson).unwrap_or_else(|| {
            tracing::debug!(column = %column.name, ?bson, "unexpected BSON for column");
            Value::String(format!("<unexpected BSON {:?} for {:?} column>", bson, column.kind))
        })
    }
}

/// The shortest text that parses back to `d` (what serde_json writes for a double).
fn shortest_text(d: f64) -> String {
    serde_json::Number::from_f64(d).map(|n| n.to_string()).unwrap_or_default()
}

/// int32 when it fits, else int64.
fn int_bson(v: i64) -> Bson {
    match i32::try_from(v) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Int64(v),
    }
}

fn from_bson(column: &Column, bson: &Bson) -> Option<Value> {
    use ColumnKind as K;
    if matches!(bson, Bson::Null) {
        return Some(Value::Null);
    }
    Some(match (&column.kind, bson) {
        (K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt, _) => integer_value(column.unsigned, bson)?,
        (K::Float, Bson::Double(d)) => Value::Float(*d as f32),
        (K::Double, Bson::Double(d)) => Value::Double(*d),
        (K::Decimal { .. }, Bson::Decimal128(d)) => Value::Decimal(decimal::decode_text(d)?),
        (K::Decimal { .. }, Bson::String(s)) => Value::Decimal(s.clone()),
        (K::Date, Bson::String(s)) => Value::Date(parse_date(s)?),
        (K::Time { .. }, Bson::String(s)) => Value::Time(parse_time(s)?),
        (K::DateTime { fsp }, _) => Value::DateTime(datetime_value(bson, *fsp)?),
        (K::Timestamp { fsp }, _) => Value::Timestamp(datetime_value(bson, *fsp)?),
        (K::Year, Bson::Int32(_) | Bson::Int64(_)) => Value::Year(u16::try_from(bson_i64(bson)?).ok()?),
        (K::Json, _) => Value::Json(json_value(bson)?),
        (K::Bit { .. }, Bson::Int32(_) | Bson::Int64(_)) => Value::Bit(bson_i64(bson)? as u64),
        (K::Enum { .. }, Bson::String(s)) => Value::Enum(s.clone()),
        (K::Set { .. }, Bson::Array(items)) => {
            Value::Set(items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>()?)
        }
        // Character and binary columns: the BSON type says which the source sent.
        (_, Bson::String(s)) => Value::String(s.clone()),
        (_, Bson::Binary(b)) if b.subtype == BinarySubtype::Generic => Value::Bytes(b.bytes.clone()),
        _ => return None,
    })
}

fn bson_i64(bson: &Bson) -> Option<i64> {
    match bson {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        _ => None,
    }
}

fn integer_value(unsigned: bool, bson: &Bson) -> Option<Value> {
    let text = match bson {
        Bson::Int32(_) | Bson::Int64(_) => {
            let v = bson_i64(bson)?;
            return Some(if unsigned { Value::UInt(u64::try_from(v).ok()?) } else { Value::Int(v) });
        }
        Bson::Decimal128(d) => decimal::decode_text(d)?,
        Bson::String(s) => s.clone(),
        _ => return None,
    };
    Some(if unsigned { Value::UInt(text.parse().ok()?) } else { Value::Int(text.parse().ok()?) })
}

fn datetime_value(bson: &Bson, fsp: u8) -> Option<DateTime> {
    match bson {
        Bson::DateTime(d) => {
            let ms = d.timestamp_millis();
            Some(DateTime::from_epoch(ms.div_euclid(1000), (ms.rem_euclid(1000) * 1000) as u32, fsp))
        }
        Bson::String(s) => parse_iso_datetime(s.strip_suffix('Z').unwrap_or(s), fsp),
        _ => None,
    }
}

fn json_value(bson: &Bson) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match bson {
        Bson::Null => J::Null,
        Bson::Boolean(b) => J::Bool(*b),
        Bson::Int32(v) => J::from(*v),
        Bson::Int64(v) => J::from(*v),
        Bson::Double(d) => serde_json::Number::from_f64(*d).map(J::Number)?,
        Bson::Decimal128(d) => J::Number(json::number(&decimal::decode_number(d)?)?),
        Bson::String(s) => J::String(s.clone()),
        Bson::Array(items) => J::Array(items.iter().map(json_value).collect::<Option<_>>()?),
        Bson::Document(doc) => {
            let mut map = serde_json::Map::new();
            for (k, v) in doc {
                map.insert(k.clone(), json_value(v)?);
            }
            J::Object(map)
        }
        Bson::Binary(b) if b.subtype == BinarySubtype::UserDefined(JSON_TEXT_SUBTYPE) => {
            serde_json::from_slice(&b.bytes).ok()?
        }
        _ => return None,
    })
}

/// Parses `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<Date> {
    let mut parts = s.splitn(3, '-');
    let year = parse_digits(parts.next()?, 4)?;
    let month = parse_digits(parts.next()?, 2)?;
    let day = parse_digits(parts.next()?, 2)?;
    Some(Date { year: u16::try_from(year).ok()?, month: u8::try_from(month).ok()?, day: u8::try_from(day).ok()? })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
fn parse_iso_datetime(s: &str, fsp: u8) -> Option<DateTime> {
    let (date, time) = s.split_once('T')?;
    let date = parse_date(date)?;
    let (clock, micros) = split_fraction(time)?;
    let mut parts = clock.splitn(3, ':');
    let hour = parse_digits(parts.next()?, 2)?;
    let minute = parse_digits(parts.next()?, 2)?;
    let second = parse_digits(parts.next()?, 2)?;
    Some(DateTime {
        date,
        hour: u8::try_from(hour).ok()?,
        minute: u8::try_from(minute).ok()?,
        second: u8::try_from(second).ok()?,
        micros: micros.0,
        fsp,
    })
}

/// Parses `[-]HH:MM:SS[.f...]`; the fsp is the number of fraction digits.
fn parse_time(s: &str) -> Option<Time> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (clock, (micros, fsp)) = split_fraction(rest)?;
    let mut parts = clock.splitn(3, ':');
    let hours_text = parts.next()?;
    if hours_text.len() < 2 {
        return None;
    }
    let hours = u32::try_from(parse_digits(hours_text, hours_text.len())?).ok()?;
    let minutes = parse_digits(parts.next()?, 2)?;
    let seconds = parse_digits(parts.next()?, 2)?;
    Some(Time {
        negative,
        hours,
        minutes: u8::try_from(minutes).ok()?,
        seconds: u8::try_from(seconds).ok()?,
        micros,
        fsp,
    })
}

/// Splits `clock[.digits]` into the clock and (microseconds, number of fraction digits).
fn split_fraction(s: &str) -> Option<(&str, (u32, u8))> {
    match s.split_once('.') {
        None => Some((s, (0, 0))),
        Some((clock, frac)) => {
            if frac.is_empty() || frac.len() > 6 {
                return None;
            }
            let value = parse_digits(frac, frac.len())? as u32;
            Some((clock, (value * 10u32.pow(6 - frac.len() as u32), frac.len() as u8)))
        }
    }
}

/// Parses exactly `len` ASCII digits.
fn parse_digits(s: &str, len: usize) -> Option<u64> {
    if s.len() != len || len == 0 || len > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;
    use polyrepl_core::{Date, DateTime, Time};
    use serde_json::json;

    fn col(kind: ColumnKind, unsigned: bool) -> Column {
        Column { name: "c".into(), kind, unsigned, nullable: true }
    }

    #[allow(clippy::too_many_arguments)]
    fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> DateTime {
        DateTime { date: Date { year: y, month: mo, day: d }, hour: h, minute: mi, second: s, micros, fsp }
    }

    /// Every supported (column, value) pair the source can produce, with edge values.
    pub(crate) fn samples() -> Vec<(Column, Value)> {
        use ColumnKind as K;
        let mut out = vec![
            (col(K::TinyInt, false), Value::Int(-128)),
            (col(K::TinyInt, true), Value::UInt(255)),
            (col(K::Int, false), Value::Int(i32::MIN as i64)),
            (col(K::Int, true), Value::UInt(u32::MAX as u64)),
            (col(K::BigInt, false), Value::Int(i64::MIN)),
            (col(K::BigInt, false), Value::Int(i64::MAX)),
            (col(K::BigInt, true), Value::UInt(i64::MAX as u64)),
            (col(K::BigInt, true), Value::UInt(i64::MAX as u64 + 1)),
            (col(K::BigInt, true), Value::UInt(u64::MAX)),
            (col(K::BigInt, true), Value::UInt(0)),
            (col(K::Float, false), Value::Float(1.234_567_9)),
            (col(K::Float, false), Value::Float(f32::MAX)),
            (col(K::Double, false), Value::Double(-1.5e300)),
            (col(K::Double, false), Value::Double(f64::MIN_POSITIVE)),
            (col(K::Decimal { precision: 10, scale: 3 }, false), Value::Decimal("-12.500".into())),
            (col(K::Decimal { precision: 10, scale: 0 }, false), Value::Decimal("0".into())),
            (
                col(K::Decimal { precision: 65, scale: 30 }, false),
                Value::Decimal(format!("{}.{}", "9".repeat(35), "9".repeat(30))),
            ),
            (col(K::Decimal { precision: 65, scale: 30 }, false), Value::Decimal(format!("-0.{}1", "0".repeat(29)))),
            (
                col(K::Decimal { precision: 34, scale: 4 }, false),
                Value::Decimal("999999999999999999999999999999.9999".into()),
            ),
            (col(K::VarChar, false), Value::String("".into())),
            (col(K::VarChar, false), Value::String("emoji 😀 ü 中".into())),
            (col(K::Text, false), Value::String("x".repeat(10_000))),
            (col(K::Blob, false), Value::Bytes(vec![0, 1, 0, 255, 0])),
            (col(K::VarBinary, false), Value::Bytes(vec![])),
            (col(K::Date, false), Value::Date(Date { year: 1000, month: 1, day: 1 })),
            (col(K::Date, false), Value::Date(Date { year: 9999, month: 12, day: 31 })),
            (
                col(K::Time { fsp: 0 }, false),
                Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 0 }),
            ),
            (
                col(K::Time { fsp: 6 }, false),
                Value::Time(Time { negative: false, hours: 1, minutes: 2, seconds: 3, micros: 4, fsp: 6 }),
            ),
            (
                col(K::Time { fsp: 3 }, false),
                Value::Time(Time { negative: true, hours: 0, minutes: 0, seconds: 0, micros: 500_000, fsp: 3 }),
            ),
            (col(K::DateTime { fsp: 0 }, false), Value::DateTime(dt(1000, 1, 1, 0, 0, 0, 0, 0))),
            (col(K::DateTime { fsp: 3 }, false), Value::DateTime(dt(2025, 11, 29, 12, 0, 1, 123_000, 3))),
            (col(K::DateTime { fsp: 6 }, false), Value::DateTime(dt(9999, 12, 31, 23, 59, 59, 999_999, 6))),
            (col(K::DateTime { fsp: 4 }, false), Value::DateTime(dt(1969, 12, 31, 23, 59, 59, 100, 4))),
            (col(K::Timestamp { fsp: 0 }, false), Value::Timestamp(dt(1970, 1, 1, 0, 0, 1, 0, 0))),
            (col(K::Timestamp { fsp: 6 }, false), Value::Timestamp(dt(2038, 1, 19, 3, 14, 7, 999_999, 6))),
            (col(K::Year, false), Value::Year(1901)),
            (col(K::Year, false), Value::Year(2155)),
            (col(K::Bit { bits: 1 }, false), Value::Bit(1)),
            (col(K::Bit { bits: 64 }, false), Value::Bit(u64::MAX)),
            (col(K::Enum { labels: vec!["a".into(), "".into()] }, false), Value::Enum("".into())),
            (col(K::Enum { labels: vec!["small".into()] }, false), Value::Enum("small".into())),
            (col(K::Set { labels: vec!["a".into(), "b".into()] }, false), Value::Set(vec![])),
            (col(K::Set { labels: vec!["a".into(), "b".into()] }, false), Value::Set(vec!["a".into(), "b".into()])),
            (col(K::Int, false), Value::Null),
            (col(K::Json, false), Value::Null),
        ];
        for j in [
            json!({"a": 1, "b": [1, 2.5, "x", null, true], "c": {"d": {"e": []}}, "big": i64::MAX, "neg": -7}),
            json!([1, [2, [3]]]),
            json!({"$set": 1, "a.b": 2}),
            json!("just a string"),
            json!("[1]"),
            json!(42),
            json!(1.5),
            json!(true),
            json!(u64::MAX),
            json!([]),
            json!({}),
            json!({"emoji": "😀"}),
        ] {
            out.push((col(K::Json, false), Value::Json(j)));
        }
        for text in json_number_texts() {
            out.push((col(K::Json, false), Value::Json(polyrepl_core::json::parse(text.as_bytes()).unwrap())));
        }
        out
    }

    /// JSON documents whose numbers an f64 does not hold, or holds only in another spelling.
    fn json_number_texts() -> Vec<String> {
        let mut out: Vec<String> = [
            "12345678901234567890123",
            "[1e400]",
            "[-1E-400, 1e+400]",
            "-0",
            "[-0, -0.0, 0.0]",
            "0.1000000000000000000001",
            "1.5",
            "[1.50, 1.0, 1E2]",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
            "1234567890123456789012345678901234567890",
            r#"{"a": [1, {"b": [12345678901234567890123, 0.1000000000000000000001]}], "c": {"d": 1e400}}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        out.push(format!("{}1e400{}", "[".repeat(30), "]".repeat(30)));
        out
    }

    fn bson_of(m: &Mapping, text: &str) -> Bson {
        m.to_bson(&col(ColumnKind::Json, false), &Value::Json(polyrepl_core::json::parse(text.as_bytes()).unwrap()))
    }

    fn dec128(text: &str) -> Bson {
        Bson::Decimal128(text.parse().unwrap())
    }

    #[test]
    fn json_numbers_take_the_documented_bson_types() {
        let stats = Arc::new(MappingStats::default());
        let m = Mapping::new(ServerFeatures::MONGODB, stats.clone());
        let cases: Vec<(&str, Bson)> = vec![
            ("5", Bson::Int32(5)),
            ("-0", Bson::Int32(0)),
            ("-9223372036854775808", Bson::Int64(i64::MIN)),
            ("9007199254740993", Bson::Int64(9_007_199_254_740_993)),
            ("1.5", Bson::Double(1.5)),
            ("0.1", Bson::Double(0.1)),
            ("1.0", Bson::Double(1.0)),
            ("1E2", Bson::Double(100.0)),
            ("1e300", Bson::Double(1e300)),
            ("-0.0", Bson::Double(-0.0)),
            ("1.50", Bson::Double(1.5)),
            ("18446744073709551615", dec128("18446744073709551615")),
            ("12345678901234567890123", dec128("12345678901234567890123")),
            ("0.1000000000000000000001", dec128("0.1000000000000000000001")),
            ("1e400", dec128("1E+400")),
            ("-1E-400", dec128("-1E-400")),
            ("9007199254740993.0", dec128("9007199254740993.0")),
        ];
        for (text, want) in &cases {
            let got = bson_of(&m, text);
            assert_eq!(got, *want, "{text}");
            if let (Bson::Double(a), Bson::Double(b)) = (&got, want) {
                assert_eq!(a.to_bits(), b.to_bits(), "{text}: the sign of zero too");
            }
        }
        assert_eq!(stats.snapshot().json_as_text, 0);
        let nested = bson_of(&m, r#"{"a": [1, {"b": [12345678901234567890123, 1.5]}]}"#);
        assert_eq!(nested, Bson::Document(doc! {"a": [1, {"b": [dec128("12345678901234567890123"), 1.5]}]}));

        // Beyond decimal128 (35 significant digits; exponent 6145), or no decimal128 at all: the text.
        let text_of = |b: Bson| match b {
            Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(0x80), bytes }) => {
                String::from_utf8(bytes).unwrap()
            }
            other => panic!("expected JSON text, got {other:?}"),
        };
        assert_eq!(
            text_of(bson_of(&m, "[12345678901234567890123456789012345]")),
            "[12345678901234567890123456789012345]"
        );
        assert_eq!(text_of(bson_of(&m, "[1e6145]")), "[1e+6145]");
        assert_eq!(stats.snapshot().json_as_text, 2);
        let ferret = Mapping::new(ServerFeatures::FERRETDB_1, stats.clone());
        assert_eq!(bson_of(&ferret, "[2.5, -7]"), Bson::Array(vec![Bson::Double(2.5), Bson::Int32(-7)]));
        assert_eq!(text_of(bson_of(&ferret, "[1e400]")), "[1e+400]");
        assert_eq!(
            text_of(bson_of(&ferret, r#"{"a":{"b":18446744073709551615}}"#)),
            r#"{"a":{"b":18446744073709551615}}"#
        );
        assert_eq!(stats.snapshot().json_as_text, 4);
    }

    #[test]
    fn json_keys_bson_cannot_hold_fall_back_to_text() {
        let stats = Arc::new(MappingStats::default());
        let m = Mapping::new(ServerFeatures::MONGODB, stats.clone());
        assert_eq!(bson_of(&m, r#"{"": 1, "$a": {"b.c": 2}}"#), Bson::Document(doc! {"": 1, "$a": {"b.c": 2}}));
        let nul = r#"{"a\u0000b":1}"#;
        let stored = bson_of(&m, nul);
        assert!(matches!(&stored, Bson::Binary(b) if b.subtype == BinarySubtype::UserDefined(0x80)), "{stored:?}");
        let back = m.from_bson(&col(ColumnKind::Json, false), &stored);
        assert_eq!(back, Value::Json(polyrepl_core::json::parse(nul.as_bytes()).unwrap()));
        let deep = format!("{}1{}", r#"{"a":"#.repeat(91), "}".repeat(91));
        assert!(matches!(bson_of(&m, &deep), Bson::Binary(_)), "91 levels: text");
        let ok = format!("{}1{}", r#"{"a":"#.repeat(90), "}".repeat(90));
        assert!(matches!(bson_of(&m, &ok), Bson::Document(_)), "90 levels: native");
        assert_eq!(stats.snapshot().json_as_text, 2);
    }

    #[test]
    fn every_supported_value_round_trips_on_every_server_kind() {
        for features in [ServerFeatures::MONGODB, ServerFeatures::FERRETDB_1] {
            let mapping = Mapping::new(features, Arc::default());
            for (column, value) in samples() {
                let bson = mapping.to_bson(&column, &value);
                // Through the wire format too.
                let doc = mongodb::bson::doc! { "v": bson.clone() };
                let bytes = mongodb::bson::to_vec(&doc).unwrap();
                let back_doc: Document = mongodb::bson::from_slice(&bytes).unwrap();
                let back = mapping.from_bson(&column, back_doc.get("v").unwrap());
                assert_eq!(back, value, "{features:?} {:?} via {bson:?}", column.kind);
            }
        }
    }

    #[test]
    fn writes_the_documented_bson_types() {
        let stats = Arc::new(MappingStats::default());
        let m = Mapping::new(ServerFeatures::MONGODB, stats.clone());
        let c = |k| col(k, false);
        assert_eq!(m.to_bson(&c(ColumnKind::Int), &Value::Int(5)), Bson::Int32(5));
        assert_eq!(m.to_bson(&c(ColumnKind::BigInt), &Value::Int(1 << 40)), Bson::Int64(1 << 40));
        assert!(matches!(m.to_bson(&c(ColumnKind::BigInt), &Value::UInt(u64::MAX)), Bson::Decimal128(_)));
        assert!(matches!(
            m.to_bson(&c(ColumnKind::Decimal { precision: 5, scale: 2 }), &Value::Decimal("1.25".into())),
            Bson::Decimal128(_)
        ));
        let dt3 = dt(2025, 1, 2, 3, 4, 5, 678_000, 3);
        assert_eq!(
            m.to_bson(&c(ColumnKind::DateTime { fsp: 3 }), &Value::DateTime(dt3)),
            Bson::DateTime(BsonDateTime::from_millis(dt3.epoch_millis().unwrap()))
        );
        let dt6 = dt(2025, 1, 2, 3, 4, 5, 678_901, 6);
        assert_eq!(
            m.to_bson(&c(ColumnKind::DateTime { fsp: 6 }), &Value::DateTime(dt6)),
            Bson::String("2025-01-02T03:04:05.678901".into())
        );
        assert_eq!(
            m.to_bson(&c(ColumnKind::Timestamp { fsp: 6 }), &Value::Timestamp(dt6)),
            Bson::String("2025-01-02T03:04:05.678901Z".into())
        );
        assert_eq!(m.to_bson(&c(ColumnKind::Bit { bits: 8 }), &Value::Bit(5)), Bson::Int64(5));
        let long = format!("{}.{}", "1".repeat(35), "0".repeat(30));
        assert_eq!(
            m.to_bson(&c(ColumnKind::Decimal { precision: 65, scale: 30 }), &Value::Decimal(long.clone())),
            Bson::String(long)
        );
        assert_eq!(stats.snapshot().decimals_as_text, 1);
        let zero = dt(0, 0, 0, 0, 0, 0, 0, 0);
        assert_eq!(m.to_bson(&c(ColumnKind::DateTime { fsp: 0 }), &Value::DateTime(zero)), Bson::Null);
        assert_eq!(m.to_bson(&c(ColumnKind::Date), &Value::Date(Date { year: 2020, month: 0, day: 1 })), Bson::Null);
        assert_eq!(stats.snapshot().zero_dates, 2);

        let ferret = Mapping::new(ServerFeatures::FERRETDB_1, stats.clone());
        assert_eq!(ferret.to_bson(&c(ColumnKind::BigInt), &Value::UInt(u64::MAX)), Bson::String(u64::MAX.to_string()));
        assert!(matches!(
            ferret.to_bson(&c(ColumnKind::Json), &Value::Json(json!([[1]]))),
            Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(0x80), .. })
        ));
        assert_eq!(stats.snapshot().json_as_text, 1);
    }

    #[test]
    fn unexpected_bson_reads_as_a_describing_string() {
        let m = Mapping::new(ServerFeatures::MONGODB, Arc::default());
        let v = m.from_bson(&col(ColumnKind::Date, false), &Bson::Boolean(true));
        assert!(matches!(v, Value::String(s) if s.contains("unexpected")));
        assert_eq!(
            m.from_bson(&col(ColumnKind::Date, false), &Bson::String("2020-13".into())),
            Value::String("<unexpected BSON String(\"2020-13\") for Date column>".into())
        );
    }
}
