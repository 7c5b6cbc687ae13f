//! A canonical byte encoding of a [`Row`] and checksums over rows, for `polyrepl verify`.
//!
//! Every sink's `read_rows` decodes back to the source's exact [`Value`]s, so comparing a sink with the
//! source is comparing rows of `Value`s: both sides are encoded here and hashed, and only chunks whose
//! hashes differ are compared row by row.
//!
//! Invariants:
//! - Two rows encode to the same bytes if and only if they are equal as `Value`s (`==`), with two
//!   deliberate refinements: floats are compared by their bits (so `-0.0` and `0.0` differ, and a NaN
//!   equals itself), and JSON is encoded the way `==` compares it ([`crate::json::same`]): objects with
//!   their keys sorted (key order never matters) and numbers by their decimal value in one normal form
//!   ([`crate::json::normal_number`]: `1`, `1.0` and `1e0` encode alike; `0.1000000000000000000001` and
//!   `0.1` do not), so the hash of a JSON value is the same whichever path (snapshot text, binlog text or
//!   binary JSON, a sink's native form) produced it.
//! - The encoding is unambiguous: every value is a type tag followed by a length-prefixed payload, and a
//!   row starts with its value count, so `("a","bc")` and `("ab","c")`, or NULL and `''`, never collide.
//! - A chunk checksum is the XXH3-128 of the rows' encodings in the order given (callers give key order).

use crate::{Row, Value};
use xxhash_rust::xxh3::Xxh3;

/// Appends the canonical encoding of `row` to `out`.
pub fn encode_row(row: &[Value], out: &mut Vec<u8>) {
    out.extend_from_slice(&(row.len() as u32).to_le_bytes());
    for value in row {
        encode_value(value, out);
    }
}

/// The canonical encoding of one row, as a new vector.
pub fn row_bytes(row: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * row.len());
    encode_row(row, &mut out);
    out
}

/// The XXH3-128 checksum of one row's canonical encoding.
pub fn row_hash(row: &[Value]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&row_bytes(row))
}

/// Checksum of a sequence of rows (a chunk), fed one row at a time so no chunk is encoded whole.
pub struct ChunkHasher {
    hasher: Xxh3,
    rows: u64,
    buf: Vec<u8>,
}

impl Default for ChunkHasher {
    fn default() -> Self {
        ChunkHasher { hasher: Xxh3::new(), rows: 0, buf: Vec::new() }
    }
}

impl ChunkHasher {
    /// A hasher for an empty chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row, or `None` for a row that is absent (so a missing row changes the checksum).
    pub fn add(&mut self, row: Option<&Row>) {
        self.buf.clear();
        match row {
            Some(row) => {
                self.buf.push(1);
                encode_row(row, &mut self.buf);
            }
            None => self.buf.push(0),
        }
        self.hasher.update(&self.buf);
        self.rows += 1;
    }

    /// The checksum of every row added so far (their count included).
    pub fn finish(&self) -> u128 {
        let mut h = self.hasher.clone();
        h.update(&self.rows.to_le_bytes());
        h.digest128()
    }
}

/// The checksum of a whole chunk of rows in the order given.
pub fn chunk_hash<'a>(rows: impl IntoIterator<Item = Option<&'a Row>>) -> u128 {
    let mut h = ChunkHasher::new();
    for row in rows {
        h.add(row);
    }
    h.finish()
}

fn put(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => put(out, 0, &[]),
        Value::Int(v) => put(out, 1, &v.to_le_bytes()),
        Value::UInt(v) => put(out, 2, &v.to_le_bytes()),
        Value::Float(v) => put(out, 3, &v.to_bits().to_le_bytes()),
        Value::Double(v) => put(out, 4, &v.to_bits().to_le_bytes()),
        Value::Decimal(v) => put(out, 5, v.as_bytes()),
        Value::String(v) => put(out, 6, v.as_bytes()),
        Value::Bytes(v) => put(out, 7, v),
        Value::Date(d) => put(out, 8, &date_bytes(d)),
        Value::Time(t) => {
            let mut p = vec![t.negative as u8];
            p.extend_from_slice(&t.hours.to_le_bytes());
            p.extend_from_slice(&[t.minutes, t.seconds]);
            p.extend_from_slice(&t.micros.to_le_bytes());
            p.push(t.fsp);
            put(out, 9, &p)
        }
        Value::DateTime(dt) => put(out, 10, &datetime_bytes(dt)),
        Value::Timestamp(dt) => put(out, 11, &datetime_bytes(dt)),
        Value::Year(y) => put(out, 12, &y.to_le_bytes()),
        Value::Json(j) => {
            let mut p = Vec::new();
            encode_json(j, &mut p);
            put(out, 13, &p)
        }
        Value::Bit(v) => put(out, 14, &v.to_le_bytes()),
        Value::Enum(v) => put(out, 15, v.as_bytes()),
        Value::Set(labels) => {
            let mut p = (labels.len() as u32).to_le_bytes().to_vec();
            for l in labels {
                put(&mut p, 0, l.as_bytes());
            }
            put(out, 16, &p)
        }
    }
}

fn date_bytes(d: &crate::Date) -> [u8; 4] {
    let y = d.year.to_le_bytes();
    [y[0], y[1], d.month, d.day]
}

fn datetime_bytes(dt: &crate::DateTime) -> Vec<u8> {
    let mut p = date_bytes(&dt.date).to_vec();
    p.extend_from_slice(&[dt.hour, dt.minute, dt.second]);
    p.extend_from_slice(&dt.micros.to_le_bytes());
    p.push(dt.fsp);
    p
}

/// JSON with object keys sorted, every node tagged and length-prefixed, numbers in their normal form.
fn encode_json(j: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    match j {
        J::Null => put(out, 0, &[]),
        J::Bool(b) => put(out, 1, &[*b as u8]),
        J::Number(n) => put(out, 2, crate::json::normal_number(n.as_str()).as_bytes()),
        J::String(s) => put(out, 3, s.as_bytes()),
        J::Array(items) => {
            let mut p = (items.len() as u32).to_le_bytes().to_vec();
            for item in items {
                encode_json(item, &mut p);
            }
            put(out, 4, &p)
        }
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut p = (keys.len() as u32).to_le_bytes().to_vec();
            for k in keys {
                put(&mut p, 0, k.as_bytes());
                encode_json(&map[k], &mut p);
            }
            put(out, 5, &p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Date, DateTime};

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn distinct_rows_encode_differently() {
        let pairs: Vec<(Row, Row)> = vec![
            (vec![Value::Null], vec![s("")]),
            (vec![s("a"), s("bc")], vec![s("ab"), s("c")]),
            (vec![Value::Int(1)], vec![Value::UInt(1)]),
            (vec![s("x")], vec![Value::Bytes(b"x".to_vec())]),
            (vec![s("x")], vec![Value::Enum("x".into())]),
            (vec![Value::Set(vec!["a,b".into()])], vec![Value::Set(vec!["a".into(), "b".into()])]),
            (vec![Value::Double(0.0)], vec![Value::Double(-0.0)]),
            (vec![], vec![Value::Null]),
            (vec![Value::Json(serde_json::json!("1"))], vec![Value::Json(serde_json::json!(1))]),
            (vec![Value::Decimal("1.0".into())], vec![Value::Decimal("1.00".into())]),
        ];
        for (a, b) in pairs {
            assert_ne!(row_bytes(&a), row_bytes(&b), "{a:?} vs {b:?}");
            assert_ne!(row_hash(&a), row_hash(&b));
        }
        let dt = |micros| {
            Value::DateTime(DateTime {
                date: Date { year: 2025, month: 1, day: 2 },
                hour: 3,
                minute: 4,
                second: 5,
                micros,
                fsp: 6,
            })
        };
        assert_ne!(row_bytes(&[dt(1)]), row_bytes(&[dt(2)]));
    }

    #[test]
    fn equal_rows_encode_equally_whatever_the_json_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[true,null,{"y":2,"x":"s"}]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":[true,null,{"x":"s","y":2}],"b":1}"#).unwrap();
        assert_eq!(row_bytes(&[Value::Json(a)]), row_bytes(&[Value::Json(b)]));
        let row = vec![Value::Int(-7), s("é🙂"), Value::Null, Value::Bit(5)];
        assert_eq!(row_hash(&row), row_hash(&row.clone()));
    }

    #[test]
    fn json_numbers_hash_by_exact_value() {
        let j = |t: &str| vec![Value::Json(crate::json::parse(t.as_bytes()).unwrap())];
        let same = [
            ("[1, 1.5, -0, 100]", "[1.0, 1.50, 0, 1e2]"),
            (r#"{"n": 12345678901234567890123}"#, r#"{"n": 1.2345678901234567890123E22}"#),
            ("[1e400]", "[10E+399]"),
        ];
        for (a, b) in same {
            assert_eq!(j(a), j(b), "{a} == {b}");
            assert_eq!(row_bytes(&j(a)), row_bytes(&j(b)), "{a} vs {b}");
        }
        let different = [
            ("[0.1000000000000000000001]", "[0.1]"),
            ("[12345678901234567890123]", "[12345678901234567890124]"),
            ("[9007199254740993]", "[9007199254740992]"),
            ("[18446744073709551615]", "[18446744073709551616]"),
            ("[1e400]", "[1e401]"),
            ("[1]", r#"["1"]"#),
        ];
        for (a, b) in different {
            assert_ne!(j(a), j(b), "{a} != {b}");
            assert_ne!(row_bytes(&j(a)), row_bytes(&j(b)), "{a} vs {b}");
        }
    }

    #[test]
    fn chunk_hash_sees_order_absence_and_count() {
        let r1: Row = vec![Value::Int(1)];
        let r2: Row = vec![Value::Int(2)];
        assert_ne!(chunk_hash([Some(&r1), Some(&r2)]), chunk_hash([Some(&r2), Some(&r1)]));
        assert_ne!(chunk_hash([Some(&r1), None]), chunk_hash([Some(&r1)]));
        assert_eq!(chunk_hash([Some(&r1), None]), chunk_hash([Some(&r1), None]));
        assert_ne!(chunk_hash(std::iter::empty()), chunk_hash([None]));
    }
}
