//! A value's MySQL text without a heap allocation where one can be avoided: text values are borrowed,
//! integers and temporal values are written into a small buffer on the stack. Sinks that store text
//! (Redis) write every value of every row this way; allocating a `String` per value was a large part
//! of their CPU (issue #15's profile of a snapshot into Redis).

use crate::value::{Date, DateTime, Time, Value};

/// The text of one value: borrowed from it, on the stack, or (JSON, SET, BIT, floats, bytes that
/// are not UTF-8) allocated.
pub enum Text<'a> {
    Borrowed(&'a str),
    Short(ShortText),
    Owned(String),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Short(s) => s.as_str(),
            Text::Owned(s) => s,
        }
    }
}

impl Text<'_> {
    pub fn into_owned(self) -> String {
        match self {
            Text::Borrowed(s) => s.to_string(),
            Text::Short(s) => s.as_str().to_string(),
            Text::Owned(s) => s,
        }
    }
}

/// Up to 32 ASCII bytes on the stack: the longest integer (20) or temporal value
/// (`-4294967295:59:59.999999`, `65535-12-31 23:59:59.999999`) fits.
#[derive(Clone, Copy)]
pub struct ShortText {
    bytes: [u8; 32],
    len: usize,
}

impl ShortText {
    fn new() -> ShortText {
        ShortText { bytes: [0; 32], len: 0 }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, signs and separators are ever pushed.
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII")
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn push_str(&mut self, s: &str) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
    }

    /// `v` in decimal, zero-padded to at least `width` digits (like `{:0width$}`).
    fn push_padded(&mut self, v: u32, width: usize) {
        let mut digits = [b'0'; 10];
        let mut n = v;
        let mut count = 0;
        loop {
            digits[9 - count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for _ in count..width {
            self.push(b'0');
        }
        for &d in &digits[10 - count..] {
            self.push(d);
        }
    }

    /// `.ffffff` cut to `fsp` digits; nothing for `fsp` 0.
    fn push_fraction(&mut self, micros: u32, fsp: u8) {
        if fsp > 0 {
            let mut six = ShortText::new();
            six.push_padded(micros, 6);
            self.push(b'.');
            self.push_str(&six.as_str()[..fsp.min(6) as usize]);
        }
    }

    /// `HH:MM:SS[.ffffff]` (hours at least two digits).
    fn push_clock(&mut self, hours: u32, minutes: u8, seconds: u8, micros: u32, fsp: u8) {
        self.push_padded(hours, 2);
        self.push(b':');
        self.push_padded(minutes.into(), 2);
        self.push(b':');
        self.push_padded(seconds.into(), 2);
        self.push_fraction(micros, fsp);
    }

    fn integer(v: impl itoa::Integer) -> ShortText {
        let mut buffer = itoa::Buffer::new();
        let mut out = ShortText::new();
        out.push_str(buffer.format(v));
        out
    }

    /// `YYYY-MM-DD`.
    pub fn of_date(d: &Date) -> ShortText {
        let mut out = ShortText::new();
        out.push_padded(d.year.into(), 4);
        out.push(b'-');
        out.push_padded(d.month.into(), 2);
        out.push(b'-');
        out.push_padded(d.day.into(), 2);
        out
    }

    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` with exactly `fsp` fractional digits.
    pub fn of_datetime(v: &DateTime) -> ShortText {
        let mut out = ShortText::of_date(&v.date);
        out.push(b' ');
        out.push_clock(v.hour.into(), v.minute, v.second, v.micros, v.fsp);
        out
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` (always six fractional digits), then `Z` when `utc`.
    pub fn of_iso_micros(v: &DateTime, utc: bool) -> ShortText {
        let mut out = ShortText::of_date(&v.date);
        out.push(b'T');
        out.push_clock(v.hour.into(), v.minute, v.second, v.micros, 6);
        if utc {
            out.push(b'Z');
        }
        out
    }

    /// `[-]HH:MM:SS[.ffffff]` with exactly `fsp` fractional digits.
    pub fn of_time(v: &Time) -> ShortText {
        let mut out = ShortText::new();
        if v.negative {
            out.push(b'-');
        }
        out.push_clock(v.hours, v.minutes, v.seconds, v.micros, v.fsp);
        out
    }
}

/// The value as MySQL's client prints it (see [`Value::mysql_text`]); `None` for NULL.
pub fn text_of(value: &Value) -> Option<Text<'_>> {
    Some(match value {
        Value::Null => return None,
        Value::Int(v) => Text::Short(ShortText::integer(*v)),
        Value::UInt(v) | Value::Bit(v) => Text::Short(ShortText::integer(*v)),
        Value::Float(v) => Text::Owned(v.to_string()),
        Value::Double(v) => Text::Owned(v.to_string()),
        Value::Decimal(v) | Value::String(v) | Value::Enum(v) => Text::Borrowed(v),
        Value::Bytes(v) => match String::from_utf8_lossy(v) {
            std::borrow::Cow::Borrowed(s) => Text::Borrowed(s),
            std::borrow::Cow::Owned(s) => Text::Owned(s),
        },
        Value::Date(v) => Text::Short(ShortText::of_date(v)),
        Value::Time(v) => Text::Short(ShortText::of_time(v)),
        Value::DateTime(v) | Value::Timestamp(v) => Text::Short(ShortText::of_datetime(v)),
        Value::Year(v) => {
            let mut out = ShortText::new();
            out.push_padded((*v).into(), 4);
            Text::Short(out)
        }
        Value::Json(v) => Text::Owned(v.to_string()),
        Value::Set(v) => Text::Owned(v.join(",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: u16, micros: u32, fsp: u8) -> DateTime {
        DateTime { date: Date { year, month: 3, day: 9 }, hour: 7, minute: 5, second: 0, micros, fsp }
    }

    #[test]
    fn matches_the_formatting_it_replaces() {
        let cases: Vec<(Value, String)> = vec![
            (Value::Int(i64::MIN), i64::MIN.to_string()),
            (Value::UInt(u64::MAX), u64::MAX.to_string()),
            (Value::Bit(5), "5".into()),
            (Value::Date(Date { year: 0, month: 0, day: 0 }), "0000-00-00".into()),
            (Value::Date(Date { year: 65535, month: 12, day: 31 }), "65535-12-31".into()),
            (Value::DateTime(dt(2024, 120, 6)), "2024-03-09 07:05:00.000120".into()),
            (Value::Timestamp(dt(999, 123_456, 3)), "0999-03-09 07:05:00.123".into()),
            (Value::DateTime(dt(2024, 999_999, 0)), "2024-03-09 07:05:00".into()),
            (
                Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 999_999, fsp: 6 }),
                "-838:59:59.999999".into(),
            ),
            (
                Value::Time(Time { negative: false, hours: 1, minutes: 2, seconds: 3, micros: 0, fsp: 0 }),
                "01:02:03".into(),
            ),
            (
                Value::Time(Time { negative: true, hours: u32::MAX, minutes: 0, seconds: 0, micros: 1, fsp: 6 }),
                format!("-{}:00:00.000001", u32::MAX),
            ),
            (Value::Year(7), "0007".into()),
            (Value::Bytes(vec![b'a', 0xff]), "a\u{fffd}".into()),
            (Value::Set(vec!["a".into(), "b".into()]), "a,b".into()),
        ];
        for (value, expected) in cases {
            assert_eq!(&*text_of(&value).unwrap(), expected, "{value:?}");
        }
        assert!(text_of(&Value::Null).is_none());
    }

    #[test]
    fn iso_micros_matches_the_formatting_it_replaces() {
        for v in [dt(2024, 120, 0), dt(999, 123_456, 3), dt(65535, 999_999, 6), dt(0, 0, 6)] {
            let old = format!("{}T{:02}:{:02}:{:02}.{:06}", v.date, v.hour, v.minute, v.second, v.micros);
            assert_eq!(ShortText::of_iso_micros(&v, false).as_str(), old);
            assert_eq!(ShortText::of_iso_micros(&v, true).as_str(), format!("{old}Z"));
        }
    }
}
