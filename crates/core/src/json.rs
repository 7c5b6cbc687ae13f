//! JSON column values ([`crate::Value::Json`]): numbers kept exactly, and what "the same JSON value" means.
//!
//! ## Numbers keep their digits
//! serde_json is built with its `arbitrary_precision` feature (set once, for the whole workspace, in the
//! root `Cargo.toml`): a [`serde_json::Number`] holds the number's text, so `12345678901234567890123`,
//! `0.1000000000000000000001` and `1e400` — all valid in a MariaDB JSON column — are parsed, stored and
//! printed with every digit, where an `f64` would round the first two and refuse the third (which used to
//! stop the run). The only change serde_json makes to a number's text is the exponent's spelling:
//! `1E400` and `1e400` are printed `1e+400`.
//!
//! Why serde_json's feature and not a number type of our own: the parser and the printer stay serde_json's
//! (escapes, surrogate pairs, depth limit, key order kept) and `Value::Json` keeps the type every sink and
//! test already uses; what a type of our own would add — equality by value — is [`same`] below. What the
//! feature changes, checked for this workspace:
//! - It is one switch for the whole build (Cargo unifies features): every crate that uses serde_json,
//!   dependencies included, gets it. [`serde_json::Number::as_str`] exists only with it, and this module
//!   uses it, so the build fails if the feature is ever lost.
//! - Numbers compare by their text: as `serde_json::Value`s, `1.0 != 1` and `1.50 != 1.5`. Polyrepl
//!   compares JSON with [`same`] (through `Value`'s `==` and the row hash of `verify`), never with
//!   `serde_json::Value`'s `==`.
//! - `as_i64`/`as_u64`/`as_f64`/`is_f64` parse the text (`as_i64` of `-0` is `Some(0)`; `as_f64` is `None`
//!   beyond the f64 range). Numbers built with `From<i64>`/`from_f64` print as before (itoa / ryu).
//! - A serde visitor sees a number through `deserialize_any` as a private one-entry map, which breaks
//!   `#[serde(untagged)]`, `#[serde(flatten)]` and internally tagged enums holding numbers. Polyrepl has
//!   none; among its dependencies only bollard has one untagged enum (`BuildInfoAux`, behind its
//!   `buildkit` feature, which is off, and holding no number). Typed (de)serialisation — checkpoints, the
//!   HTTP requests, `/status`, `--json` reports — reads and writes the same text as before.
//! - Every number is a heap string: parsing a JSON column value allocates once per number.
//!
//! ## Equality is by value
//! Two JSON values are the same ([`same`]) when they have the same structure, strings and keys (key order
//! never matters) and numbers with the same decimal value: `1`, `1.0`, `1.00`, `10e-1` and `1E0` are one
//! number, and so are `-0` and `0`. That is MariaDB's own rule (`JSON_EQUALS`, `JSON_NORMALIZE`, whose
//! number form [`normal_number`] reproduces: `1.5E0`, `0.0E0`, `1.2345678901234567890123E22`) and MySQL's
//! JSON comparison. A sink that stores a number natively (MongoDB's int64, double or decimal128 — whose
//! text is not the source's) verifies equal as long as the value is exact; a sink that lost a digit never
//! does.
//!
//! Nesting: serde_json refuses JSON nested deeper than 128 levels. MariaDB's `JSON_VALID` refuses more than
//! 31 levels and MySQL more than 100, so a JSON column value never reaches that limit.
//!
//! Keys are kept as they are (`""`, `$a`, `a.b`, escapes such as `\u0000`); what a sink cannot hold is said
//! in its mapping. One known difference: an object with a duplicate key (`{"a":1,"a":2}`, which MariaDB
//! accepts and keeps whole) keeps only the last member, as MySQL does; MariaDB's `JSON_EXTRACT` reads the
//! first. Both sides of `verify` read it the same way, so it does not show as a difference.

use serde_json::{Number, Value as J};

/// Parses JSON text, keeping every number's digits.
pub fn parse(text: &[u8]) -> Result<J, serde_json::Error> {
    serde_json::from_slice(text)
}

/// A JSON number from its text (`None` if the text is not one JSON number), digits kept.
pub fn number(text: &str) -> Option<Number> {
    text.parse().ok()
}

/// True when `a` and `b` are the same JSON value: same structure, strings and keys (in any key order),
/// and numbers of the same decimal value.
pub fn same(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => same_number(x, y),
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, v)| y.get(key).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// True when two numbers have the same decimal value.
pub fn same_number(x: &Number, y: &Number) -> bool {
    x.as_str() == y.as_str() || normal_number(x.as_str()) == normal_number(y.as_str())
}

/// The one text of a number's decimal value, as MariaDB's `JSON_NORMALIZE` writes it: `d.dddE±n` with
/// no trailing zero in the digits (but at least one after the point), zero as `0.0E0` whatever its sign.
/// Text that is not a JSON number, or whose exponent is beyond ±9·10^18, is returned unchanged.
pub fn normal_number(text: &str) -> String {
    match NumberParts::parse(text) {
        Some(parts) => parts.normal_text(),
        None => text.to_string(),
    }
}

/// A JSON number's exact decimal value: `(-1)^negative × digits × 10^exponent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberParts {
    pub negative: bool,
    /// The coefficient's decimal digits without leading zeros (empty for zero), trailing zeros as written.
    pub digits: String,
    pub exponent: i64,
}

impl NumberParts {
    /// Splits a JSON number's text (`-?digits[.digits][(e|E)[+-]digits]`; a leading `+` and leading zeros
    /// are accepted too). `None` for anything else or an exponent beyond ±9·10^18.
    pub fn parse(text: &str) -> Option<NumberParts> {
        let (negative, unsigned) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp_text) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int_part.is_empty() || (mantissa.contains('.') && frac_part.is_empty()) {
            return None;
        }
        if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let written_exponent: i64 = match exp_text {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let significant = digits.trim_start_matches('0');
                let magnitude: i64 = if significant.is_empty() { 0 } else { significant.parse().ok()? };
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        let frac_len = i64::try_from(frac_part.len()).ok()?;
        let exponent = written_exponent.checked_sub(frac_len)?;
        let digits: String = int_part.chars().chain(frac_part.chars()).skip_while(|&c| c == '0').collect();
        // Keep room for normal_text's adjustment (at most the number of digits).
        exponent.checked_add(i64::try_from(digits.len()).ok()?)?;
        Some(NumberParts { negative, digits, exponent })
    }

    /// True for any zero (`0`, `-0`, `0.000`, `0e5`).
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The same value with the coefficient's trailing zeros moved into the exponent (zero: no digits,
    /// exponent 0, not negative).
    pub fn normalized(&self) -> NumberParts {
        if self.is_zero() {
            return NumberParts { negative: false, digits: String::new(), exponent: 0 };
        }
        let kept = self.digits.trim_end_matches('0');
        let moved = (self.digits.len() - kept.len()) as i64;
        NumberParts { negative: self.negative, digits: kept.to_string(), exponent: self.exponent + moved }
    }

    /// MariaDB's `JSON_NORMALIZE` text of the value (see [`normal_number`]).
    pub fn normal_text(&self) -> String {
        let n = self.normalized();
        if n.is_zero() {
            return "0.0E0".to_string();
        }
        let (first, rest) = n.digits.split_at(1);
        let scientific = n.exponent + rest.len() as i64;
        format!(
            "{}{first}.{}E{scientific}",
            if n.negative { "-" } else { "" },
            if rest.is_empty() { "0" } else { rest }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(text: &str) -> J {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn numbers_keep_every_digit() {
        for (text, printed) in [
            ("12345678901234567890123", "12345678901234567890123"),
            ("0.1000000000000000000001", "0.1000000000000000000001"),
            ("[1e400]", "[1e+400]"),
            ("[1E400,-1e-400]", "[1e+400,-1e-400]"),
            ("-0", "-0"),
            ("1.50", "1.50"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("9007199254740993", "9007199254740993"),
            (
                r#"{"a":[1,{"b":[123456789012345678901234567890.5]}]}"#,
                r#"{"a":[1,{"b":[123456789012345678901234567890.5]}]}"#,
            ),
        ] {
            assert_eq!(j(text).to_string(), printed, "{text}");
        }
        let big = j("18446744073709551616");
        assert_eq!(big.as_u64(), None);
        assert_eq!(j("9007199254740993").as_i64(), Some(9_007_199_254_740_993));
        assert_eq!(j("1e400").as_f64(), None, "beyond f64: no f64, but the number is there");
    }

    #[test]
    fn normal_form_is_mariadbs() {
        // Each pair as MariaDB 10.11's JSON_NORMALIZE prints the number.
        for (text, normal) in [
            ("1.50", "1.5E0"),
            ("-0", "0.0E0"),
            ("0.000", "0.0E0"),
            ("-0.0e7", "0.0E0"),
            ("1e400", "1.0E400"),
            ("1E+400", "1.0E400"),
            ("12345678901234567890123", "1.2345678901234567890123E22"),
            ("0.1000000000000000000001", "1.000000000000000000001E-1"),
            ("-1.5e-7", "-1.5E-7"),
            ("100", "1.0E2"),
            ("100.0", "1.0E2"),
            ("1e2", "1.0E2"),
            ("10e1", "1.0E2"),
            ("18446744073709551615", "1.8446744073709551615E19"),
            ("-9223372036854775808", "-9.223372036854775808E18"),
        ] {
            assert_eq!(normal_number(text), normal, "{text}");
        }
        assert_eq!(normal_number("1e99999999999999999999"), "1e99999999999999999999", "absurd exponent: as is");
    }

    #[test]
    fn parts_refuse_what_is_not_a_number() {
        for bad in ["", "-", ".5", "5.", "1e", "1e+", "abc", "1.2.3", "0x10", "1 2", "NaN", "inf"] {
            assert_eq!(NumberParts::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            NumberParts::parse("-0012.50e-3"),
            Some(NumberParts { negative: true, digits: "1250".into(), exponent: -5 })
        );
    }

    #[test]
    fn checkpoints_keep_their_text_and_read_back_whole() {
        use crate::{Checkpoint, Position, SnapshotProgress, TableId, Value};
        let key = vec![
            Value::Double(0.1),
            Value::Float(1.5),
            Value::UInt(u64::MAX),
            Value::Int(i64::MIN),
            Value::Decimal("-12.50".into()),
            Value::Json(j("[1e400, 12345678901234567890123]")),
        ];
        let progress = SnapshotProgress { done: vec![], current: Some((TableId::new("d", "t"), key.clone())) };
        let checkpoint = Checkpoint::snapshotting(Position::new("binlog.000001", 4), progress);
        let text = checkpoint.to_json();
        // The same text as serde_json writes without the feature for everything but the exact JSON number.
        for part in [
            r#"{"Double":0.1}"#,
            r#"{"Float":1.5}"#,
            r#"{"UInt":18446744073709551615}"#,
            r#"{"Int":-9223372036854775808}"#,
            r#"{"Json":[1e+400,12345678901234567890123]}"#,
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        let back = Checkpoint::from_json(&text).unwrap();
        assert_eq!(back, checkpoint);
        let Some((_, back_key)) = back.snapshot.unwrap().current else { panic!("no key") };
        let Value::Json(json) = &back_key[5] else { panic!("not JSON") };
        assert_eq!(json.to_string(), "[1e+400,12345678901234567890123]");
    }

    #[test]
    fn same_compares_numbers_by_value_and_nothing_else_loosely() {
        for (a, b) in [
            ("1", "1.0"),
            ("[1.50]", "[1.5]"),
            ("-0", "0"),
            ("1e2", "100"),
            ("1E400", "10e399"),
            (r#"{"a":[1,{"b":2.0}],"c":null}"#, r#"{"c":null,"a":[1.0,{"b":2}]}"#),
        ] {
            assert!(same(&j(a), &j(b)), "{a} vs {b}");
        }
        for (a, b) in [
            ("0.1000000000000000000001", "0.1"),
            ("12345678901234567890123", "12345678901234567000000"),
            ("9007199254740993", "9007199254740992"),
            ("[1,2]", "[2,1]"),
            ("[1]", "[1,1]"),
            (r#"{"a":1}"#, r#"{"a":1,"b":1}"#),
            (r#"{"a":1}"#, r#"{"b":1}"#),
            ("1", r#""1""#),
            ("true", "1"),
            ("null", "0"),
            ("1e400", "1e401"),
            ("-1", "1"),
        ] {
            assert!(!same(&j(a), &j(b)), "{a} vs {b}");
        }
    }
}
