//! One column value as read from MySQL/MariaDB, before any sink's type mapping.
//!
//! Values keep everything the source knows (exact DECIMAL text, microseconds, signedness, ENUM/SET labels),
//! so that each sink can map them exactly and document what it does; nothing is rounded here.

use serde::{Deserialize, Serialize};

/// A calendar date as MySQL stores it; zero parts are allowed ('0000-00-00' is a legal MySQL value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// True for MySQL's zero date or a date with a zero month/day, which no sink can represent as a date.
    pub fn is_zero(&self) -> bool {
        self.year == 0 || self.month == 0 || self.day == 0
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::text::ShortText::of_date(self).as_str())
    }
}

/// A DATETIME or TIMESTAMP value with microseconds and the column's fractional precision (`fsp`, 0..=6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
    pub fsp: u8,
}

impl DateTime {
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` with exactly `fsp` fractional digits, as MySQL prints it.
    pub fn mysql_text(&self) -> String {
        crate::text::ShortText::of_datetime(self).as_str().to_string()
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` (always six digits), the ISO form used where a sink stores text.
    pub fn iso_micros(&self) -> String {
        crate::text::ShortText::of_iso_micros(self, false).as_str().to_string()
    }

    /// Milliseconds since the Unix epoch, reading the value as UTC; `None` for a zero date.
    pub fn epoch_millis(&self) -> Option<i64> {
        if self.date.is_zero() {
            return None;
        }
        let days = days_from_civil(self.date.year as i64, self.date.month as i64, self.date.day as i64);
        let secs = days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64;
        Some(secs * 1000 + (self.micros / 1000) as i64)
    }

    /// Builds a value from seconds since the Unix epoch (UTC) and microseconds.
    pub fn from_epoch(secs: i64, micros: u32, fsp: u8) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        DateTime {
            date: Date { year: y as u16, month: m as u8, day: d as u8 },
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            micros,
            fsp,
        }
    }
}

/// A TIME value: MySQL allows negative values and hours beyond 24 (range ±838:59:59.999999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    pub negative: bool,
    pub hours: u32,
    pub minutes: u8,
    pub seconds: u8,
    pub micros: u32,
    pub fsp: u8,
}

impl Time {
    /// `[-]HH:MM:SS[.ffffff]` with exactly `fsp` fractional digits, as MySQL prints it.
    pub fn mysql_text(&self) -> String {
        crate::text::ShortText::of_time(self).as_str().to_string()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// A column value from the source.
///
/// `==` is structural, except for JSON: two `Json` values are equal when they are the same JSON value
/// by [`crate::json::same`] (numbers by decimal value, object keys in any order).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    Null,
    /// Any signed integer type (TINYINT..BIGINT).
    Int(i64),
    /// Any UNSIGNED integer type; BIGINT UNSIGNED may exceed i64.
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL exactly as MySQL prints it, with its scale (e.g. `-12.500`).
    Decimal(String),
    /// CHAR/VARCHAR/TEXT, decoded to UTF-8.
    String(String),
    /// BINARY/VARBINARY/BLOB, raw bytes.
    Bytes(Vec<u8>),
    Date(Date),
    Time(Time),
    /// DATETIME: a wall-clock value without a time zone.
    DateTime(DateTime),
    /// TIMESTAMP: a UTC instant.
    Timestamp(DateTime),
    Year(u16),
    /// JSON (MySQL JSON, or MariaDB's LONGTEXT with json_valid); numbers keep every digit (see
    /// [`crate::json`]).
    Json(serde_json::Value),
    /// BIT(n) as an integer.
    Bit(u64),
    /// ENUM label ('' for MySQL's invalid-value index 0).
    Enum(String),
    /// SET labels, in definition order.
    Set(Vec<String>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        // Exhaustive on `self`, so a new variant cannot be forgotten here.
        match self {
            Value::Null => matches!(other, Value::Null),
            Value::Int(a) => matches!(other, Value::Int(b) if a == b),
            Value::UInt(a) => matches!(other, Value::UInt(b) if a == b),
            Value::Float(a) => matches!(other, Value::Float(b) if a == b),
            Value::Double(a) => matches!(other, Value::Double(b) if a == b),
            Value::Decimal(a) => matches!(other, Value::Decimal(b) if a == b),
            Value::String(a) => matches!(other, Value::String(b) if a == b),
            Value::Bytes(a) => matches!(other, Value::Bytes(b) if a == b),
            Value::Date(a) => matches!(other, Value::Date(b) if a == b),
            Value::Time(a) => matches!(other, Value::Time(b) if a == b),
            Value::DateTime(a) => matches!(other, Value::DateTime(b) if a == b),
            Value::Timestamp(a) => matches!(other, Value::Timestamp(b) if a == b),
            Value::Year(a) => matches!(other, Value::Year(b) if a == b),
            Value::Json(a) => matches!(other, Value::Json(b) if crate::json::same(a, b)),
            Value::Bit(a) => matches!(other, Value::Bit(b) if a == b),
            Value::Enum(a) => matches!(other, Value::Enum(b) if a == b),
            Value::Set(a) => matches!(other, Value::Set(b) if a == b),
        }
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as MySQL's client prints it (`SELECT` output); `None` for NULL.
    /// Used by sinks that store text (Redis) and for display and key strings.
    pub fn mysql_text(&self) -> Option<String> {
        self.text().map(crate::Text::into_owned)
    }

    /// [`Value::mysql_text`] without allocating where it can (see [`crate::text`]).
    pub fn text(&self) -> Option<crate::Text<'_>> {
        crate::text::text_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_round_trip_keeps_every_field() {
        for secs in [0i64, 1, 86_399, 951_782_400, 4_102_444_800, -86_400] {
            let dt = DateTime::from_epoch(secs, 123_456, 6);
            assert_eq!(dt.epoch_millis(), Some(secs * 1000 + 123));
        }
        let leap = DateTime::from_epoch(951_782_400, 0, 0); // 2000-02-29
        assert_eq!(leap.date, Date { year: 2000, month: 2, day: 29 });
    }

    #[test]
    fn text_forms_follow_fsp() {
        let dt = DateTime {
            date: Date { year: 2025, month: 11, day: 29 },
            hour: 12,
            minute: 0,
            second: 1,
            micros: 123_456,
            fsp: 3,
        };
        assert_eq!(dt.mysql_text(), "2025-11-29 12:00:01.123");
        assert_eq!(dt.iso_micros(), "2025-11-29T12:00:01.123456");
        let t = Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 0 };
        assert_eq!(t.mysql_text(), "-838:59:59");
        assert_eq!(Value::Set(vec!["a".into(), "b".into()]).mysql_text().unwrap(), "a,b");
        assert_eq!(Value::Null.mysql_text(), None);
    }

    #[test]
    fn json_values_are_equal_by_value_and_print_every_digit() {
        let j = |t: &str| Value::Json(crate::json::parse(t.as_bytes()).unwrap());
        assert_eq!(j(r#"{"a":[1.50,-0],"b":1e400}"#), j(r#"{"b":10e399,"a":[1.5,0]}"#));
        assert_ne!(j("[0.1000000000000000000001]"), j("[0.1]"));
        assert_ne!(j("1"), Value::Int(1));
        assert_eq!(j("[12345678901234567890123,1E400]").mysql_text().unwrap(), "[12345678901234567890123,1e+400]");
        // Other variants keep their structural equality.
        assert_eq!(Value::Double(-0.0), Value::Double(0.0));
        assert_ne!(Value::Double(f64::NAN), Value::Double(f64::NAN));
        assert_ne!(Value::Int(1), Value::UInt(1));
    }
}
