//! Exact DECIMAL text and JSON numbers ⇄ BSON Decimal128 (IEEE 754-2008 decimal128, binary integer
//! decimal encoding).
//!
//! Invariants:
//! - Encoding never rounds: a decimal whose significant digits exceed 34 (the format's precision) is
//!   refused (`None`), and the caller stores the exact text instead.
//! - The exponent is `-scale` of the text, so `"-12.500"` becomes coefficient 12500, exponent −3, and
//!   decoding gives `"-12.500"` back character for character (trailing zeros and scale kept).
//! - Only the canonical form with a coefficient below 2^113 is produced (10^34 − 1 < 2^113), with an
//!   exponent in −6176 ..= 6111 (biased 0 ..= 0x2FFF: a biased exponent whose top two bits are `11` would
//!   read as the other, large-coefficient form).
//! - A JSON number ([`encode_number`]) is encoded with its exact value: its digits as written when they
//!   fit (so `1.50` keeps its scale), else without trailing zeros, else with zeros appended to bring a
//!   too-large exponent into range; never rounded. [`decode_number`] gives JSON number text of the same
//!   value.
//!
//! Layout of the 128 bits (BSON stores them little-endian): bit 127 sign, bits 126..113 the biased
//! exponent (bias 6176), bits 112..0 the coefficient.

use mongodb::bson::Decimal128;
use polyrepl_core::json::NumberParts;

/// The exponent bias of decimal128.
const EXPONENT_BIAS: i32 = 6176;
/// Largest biased exponent of the canonical (small-coefficient) form: 3 × 2^12 − 1.
const MAX_BIASED_EXPONENT: i32 = 0x2FFF;
/// Exponents a decimal128 holds.
const MIN_EXPONENT: i64 = -(EXPONENT_BIAS as i64);
const MAX_EXPONENT: i64 = (MAX_BIASED_EXPONENT - EXPONENT_BIAS) as i64;
/// Below this exponent (or above 0), [`decode_number`] writes `<digits>e<exponent>` instead of a plain
/// decimal full of zeros.
const PLAIN_MIN_EXPONENT: i32 = -40;
/// Most significant decimal digits decimal128 holds exactly.
pub const MAX_DIGITS: usize = 34;
const COEFFICIENT_BITS: u32 = 113;

/// Encodes a plain decimal text (`[+-]digits[.digits]`, as MySQL prints DECIMAL) exactly.
/// `None` when the text is not a plain decimal or has more than 34 significant digits.
pub fn encode_text(text: &str) -> Option<Decimal128> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let significant = digits.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return None;
    }
    let coefficient: u128 = if significant.is_empty() { 0 } else { significant.parse().ok()? };
    let exponent = -i32::try_from(frac_part.len()).ok()?;
    encode_parts(negative, coefficient, exponent)
}

/// Encodes an unsigned integer exactly (exponent 0).
pub fn encode_u64(value: u64) -> Decimal128 {
    encode_parts(false, value as u128, 0).expect("u64 fits decimal128")
}

/// Encodes a JSON number's exact value (see the module invariants); `None` when it needs more than 34
/// significant digits or an exponent beyond decimal128's range.
pub fn encode_number(number: &NumberParts) -> Option<Decimal128> {
    let mut parts = number.clone();
    if parts.digits.len() > MAX_DIGITS || !(MIN_EXPONENT..=MAX_EXPONENT).contains(&parts.exponent) {
        parts = NumberParts { negative: number.negative, ..number.normalized() };
    }
    if parts.digits.len() > MAX_DIGITS || parts.exponent < MIN_EXPONENT {
        return None;
    }
    if parts.exponent > MAX_EXPONENT {
        let pad = usize::try_from(parts.exponent - MAX_EXPONENT).ok()?;
        if parts.digits.len() + pad > MAX_DIGITS || parts.digits.is_empty() {
            return None;
        }
        parts.digits.push_str(&"0".repeat(pad));
        parts.exponent = MAX_EXPONENT;
    }
    let coefficient: u128 = if parts.digits.is_empty() { 0 } else { parts.digits.parse().ok()? };
    encode_parts(parts.negative, coefficient, i32::try_from(parts.exponent).ok()?)
}

/// JSON number text of a finite canonical Decimal128, of exactly its value: a plain decimal (`-0`,
/// `1.50`, `123`) for exponents from −40 to 0, else `<coefficient>e<exponent>` (`1e400`, `15e-50`).
/// `None` for NaN, infinities and non-canonical encodings.
pub fn decode_number(value: &Decimal128) -> Option<String> {
    let bits = u128::from_le_bytes(value.bytes());
    if (bits >> 125) & 0b11 == 0b11 {
        return None;
    }
    let exponent = ((bits >> COEFFICIENT_BITS) & 0x3FFF) as i32 - EXPONENT_BIAS;
    if (PLAIN_MIN_EXPONENT..=0).contains(&exponent) {
        return decode_text(value);
    }
    let coefficient = bits & ((1u128 << COEFFICIENT_BITS) - 1);
    if coefficient >= 10u128.pow(MAX_DIGITS as u32) {
        return None;
    }
    let sign = if bits >> 127 == 1 { "-" } else { "" };
    Some(format!("{sign}{coefficient}e{exponent}"))
}

/// Packs sign, coefficient and (unbiased) exponent; `None` if either is out of range.
fn encode_parts(negative: bool, coefficient: u128, exponent: i32) -> Option<Decimal128> {
    if coefficient >= 10u128.pow(MAX_DIGITS as u32) {
        return None;
    }
    let biased = exponent + EXPONENT_BIAS;
    if !(0..=MAX_BIASED_EXPONENT).contains(&biased) {
        return None;
    }
    let bits = ((negative as u128) << 127) | ((biased as u128) << COEFFICIENT_BITS) | coefficient;
    Some(Decimal128::from_bytes(bits.to_le_bytes()))
}

/// Decodes a finite canonical Decimal128 to plain decimal text with exactly `-exponent` fraction
/// digits (no exponent notation). `None` for NaN, infinities and non-canonical encodings.
pub fn decode_text(value: &Decimal128) -> Option<String> {
    let bits = u128::from_le_bytes(value.bytes());
    let negative = bits >> 127 == 1;
    if (bits >> 125) & 0b11 == 0b11 {
        // Large-coefficient form (always non-canonical for decimal128), infinity or NaN.
        return None;
    }
    let biased = ((bits >> COEFFICIENT_BITS) & 0x3FFF) as i32;
    let coefficient = bits & ((1u128 << COEFFICIENT_BITS) - 1);
    if coefficient >= 10u128.pow(MAX_DIGITS as u32) {
        return None;
    }
    let exponent = biased - EXPONENT_BIAS;
    let mut digits = coefficient.to_string();
    if exponent > 0 {
        if exponent > 6144 {
            return None;
        }
        digits.push_str(&"0".repeat(exponent as usize));
    } else if exponent < 0 {
        let scale = (-exponent) as usize;
        if digits.len() <= scale {
            digits = format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits);
        }
        digits.insert(digits.len() - scale, '.');
    }
    if negative {
        digits.insert(0, '-');
    }
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exact_text() {
        for text in [
            "0",
            "0.00",
            "-0.5",
            "12.500",
            "-12.500",
            "1",
            "-1",
            "0.000000000000000000000000000001",
            "9999999999999999999999999999999999",
            "-999999999999999999999999999999.9999",
            "18446744073709551615",
            "123456789012345678901234.5678901234",
        ] {
            let d = encode_text(text).unwrap_or_else(|| panic!("{text} encodes"));
            assert_eq!(decode_text(&d).as_deref(), Some(text), "{text}");
        }
    }

    #[test]
    fn agrees_with_the_bson_crate_parser() {
        for text in ["12.500", "-0.5", "0", "1234567890123456789012345678901234", "-0.000001"] {
            let ours = encode_text(text).unwrap();
            let theirs: Decimal128 = text.parse().unwrap();
            assert_eq!(ours.bytes(), theirs.bytes(), "{text}");
            assert_eq!(theirs.to_string().parse::<Decimal128>().unwrap().bytes(), ours.bytes());
        }
    }

    fn number(text: &str) -> NumberParts {
        NumberParts::parse(text).unwrap_or_else(|| panic!("{text} is a number"))
    }

    #[test]
    fn json_numbers_encode_their_exact_value() {
        // (source text, what decode_number gives back: the same value).
        for (text, back) in [
            ("1.50", "1.50"),
            ("-0", "-0"),
            ("0.1000000000000000000001", "0.1000000000000000000001"),
            ("12345678901234567890123", "12345678901234567890123"),
            ("18446744073709551615", "18446744073709551615"),
            ("1e400", "1e400"),
            ("-1.5E-400", "-15e-401"),
            ("1e6111", "1e6111"),
            ("1e6112", "10e6111"),
            ("1e-6176", "1e-6176"),
            ("1e6144", "1000000000000000000000000000000000e6111"),
            // 40 digits, 6 of them trailing zeros: 34 significant digits fit.
            ("1234567890123456789012345678901234000000", "1234567890123456789012345678901234e6"),
            ("-9999999999999999999999999999999999", "-9999999999999999999999999999999999"),
        ] {
            let d = encode_number(&number(text)).unwrap_or_else(|| panic!("{text} encodes"));
            let decoded = decode_number(&d).unwrap();
            assert_eq!(decoded, back, "{text}");
            assert_eq!(
                polyrepl_core::json::normal_number(&decoded),
                polyrepl_core::json::normal_number(text),
                "{text}: same value"
            );
            // The BSON crate reads the same value from our bytes.
            let theirs: Decimal128 = d.to_string().parse().unwrap();
            assert_eq!(theirs.bytes(), d.bytes(), "{text}: {d}");
        }
        for too_much in [
            "12345678901234567890123456789012345",
            "0.12345678901234567890123456789012345",
            "1e6145",
            "1e-6177",
            "1.5e-6176",
            "1e99999",
        ] {
            assert!(encode_number(&number(too_much)).is_none(), "{too_much}");
        }
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_decimal() {
        let sixty_five = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        assert!(encode_text(&sixty_five).is_none());
        assert!(encode_text(&"9".repeat(35)).is_none());
        // Leading zeros do not count as significant digits.
        assert!(encode_text(&format!("000{}", "9".repeat(34))).is_some());
        for bad in ["", "-", ".", "1e5", "abc", "1.2.3", " 1 2"] {
            assert!(encode_text(bad).is_none(), "{bad:?}");
        }
        assert_eq!(decode_text(&encode_u64(u64::MAX)).unwrap(), "18446744073709551615");
    }
}
