//! JSON column values → `serde_json::Value` with every number exact, from both forms the source sends.
//!
//! - JSON text (MariaDB's JSON columns on both paths; MySQL's snapshot): parsed by
//!   [`polyrepl_core::json::parse`], which keeps each number's digits (`1e400`, `12345678901234567890123`
//!   and `0.1000000000000000000001` included).
//! - MySQL's binary JSON (binlog): read from the parsed document ([`jsonb::Value::parse`]), so that it
//!   equals what the snapshot reads from MySQL's JSON text for the same value: integers and doubles as
//!   numbers (a double with its shortest text), a DECIMAL inside the document as a number with its exact
//!   digits (`1.50`, as MySQL prints it), DATE/TIME/DATETIME inside the document as MySQL's strings, other
//!   opaque values as `base64:type<N>:<data>` strings (MySQL's own text form). mysql_common's
//!   `serde_json::Value::try_from` is not used: it refuses every opaque value (a DECIMAL inside a JSON
//!   document would stop the run) and its `From<JsonDom>` turns a DECIMAL into a string.
//!
//! Invariant: never panics; a value that cannot be read is an error naming what was wrong.

use mysql_async::binlog::jsonb::{self, JsonContainer, JsonDom, JsonNumber, JsonScalar};
use serde_json::{Number, Value as J};

/// JSON text as a value, numbers exact.
pub fn from_text(text: &[u8]) -> Result<J, String> {
    polyrepl_core::json::parse(text).map_err(|e| format!("invalid JSON text: {e}"))
}

/// MySQL binary JSON as the value its JSON text stands for, numbers exact.
pub fn from_binary(value: jsonb::Value<'_>) -> Result<J, String> {
    let dom = value.parse().map_err(|e| format!("binary JSON: {e}"))?;
    from_dom(dom)
}

fn from_dom(dom: JsonDom) -> Result<J, String> {
    Ok(match dom {
        JsonDom::Container(JsonContainer::Array(items)) => {
            J::Array(items.into_iter().map(from_dom).collect::<Result<_, _>>()?)
        }
        JsonDom::Container(JsonContainer::Object(entries)) => {
            J::Object(entries.into_iter().map(|(key, item)| Ok((key, from_dom(item)?))).collect::<Result<_, String>>()?)
        }
        JsonDom::Scalar(JsonScalar::Number(n)) => J::Number(number(n)?),
        JsonDom::Scalar(other) => J::from(other),
    })
}

fn number(n: JsonNumber) -> Result<Number, String> {
    match n {
        JsonNumber::Int(i) => Ok(i.into()),
        JsonNumber::Uint(u) => Ok(u.into()),
        JsonNumber::Double(d) => Number::from_f64(d).ok_or_else(|| format!("binary JSON holds the double {d}")),
        JsonNumber::Decimal(d) => {
            let text = d.to_string();
            polyrepl_core::json::number(&text).ok_or_else(|| format!("binary JSON holds the DECIMAL {text:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::consts::ColumnType;
    use mysql_common::binlog::decimal::Decimal;
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::MyDeserialize;

    /// A DECIMAL(precision, scale) as MySQL stores it inside binary JSON (opaque value data).
    fn packed_decimal(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let mut out = vec![precision, scale];
        text.parse::<Decimal>().unwrap().write_bin(&mut out).unwrap();
        out
    }

    /// Binary JSON of a small array: `[<opaque DECIMAL>, <double>, <uint64>, <int64>]`.
    fn small_array(decimal: &[u8], double: f64, uint: u64, int: i64) -> Vec<u8> {
        const HEADER: usize = 4 + 4 * 3;
        let opaque_len = 1 + 1 + decimal.len();
        let offsets = [HEADER, HEADER + opaque_len, HEADER + opaque_len + 8, HEADER + opaque_len + 16];
        let size = HEADER + opaque_len + 24;
        let mut out = vec![0x02]; // small array
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&(size as u16).to_le_bytes());
        for (kind, offset) in [0x0f_u8, 0x0b, 0x0a, 0x09].into_iter().zip(offsets) {
            out.push(kind);
            out.extend_from_slice(&(offset as u16).to_le_bytes());
        }
        out.push(ColumnType::MYSQL_TYPE_NEWDECIMAL as u8);
        out.push(decimal.len() as u8);
        out.extend_from_slice(decimal);
        out.extend_from_slice(&double.to_le_bytes());
        out.extend_from_slice(&uint.to_le_bytes());
        out.extend_from_slice(&int.to_le_bytes());
        out
    }

    fn binary(bytes: &[u8]) -> J {
        let value = jsonb::Value::deserialize((), &mut ParseBuf(bytes)).expect("valid binary JSON");
        from_binary(value).unwrap()
    }

    #[test]
    fn binary_json_numbers_are_exact_and_a_decimal_is_a_number() {
        let dec = packed_decimal("12345678901234567890.1234567890", 30, 10);
        let got = binary(&small_array(&dec, 0.1, u64::MAX, i64::MIN));
        assert_eq!(got.to_string(), "[12345678901234567890.1234567890,0.1,18446744073709551615,-9223372036854775808]");
        let text = from_text(b"[12345678901234567890.123456789, 1e-1, 18446744073709551615, -9223372036854775808]");
        assert_eq!(polyrepl_core::Value::Json(got), polyrepl_core::Value::Json(text.unwrap()));

        let dec = packed_decimal("-1.50", 3, 2);
        let got = binary(&small_array(&dec, 1e300, 0, 0));
        assert_eq!(got.to_string(), "[-1.50,1e+300,0,0]");

        let opaque = jsonb::Value::Opaque(jsonb::OpaqueValue::new(ColumnType::MYSQL_TYPE_NEWDECIMAL, dec));
        assert_eq!(from_binary(opaque).unwrap().to_string(), "-1.50");
    }

    #[test]
    fn json_text_keeps_every_digit_and_refuses_what_is_not_json() {
        let text = br#"{"big": 12345678901234567890123, "tiny": 0.1000000000000000000001, "huge": [1e400, -0]}"#;
        let got = from_text(text).unwrap();
        assert_eq!(got["big"].to_string(), "12345678901234567890123");
        assert_eq!(got["tiny"].to_string(), "0.1000000000000000000001");
        assert_eq!(got["huge"].to_string(), "[1e+400,-0]");
        assert!(from_text(b"[1,").unwrap_err().contains("invalid JSON text"));
        assert!(from_text(b"[01]").is_err());
    }
}
