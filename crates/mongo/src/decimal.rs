//! Exact DECIMAL text ⇄ BSON Decimal128 (IEEE 754-2008 decimal128, binary integer decimal encoding).
//!
//! Invariants:
//! - Encoding never rounds: a decimal whose significant digits exceed 34 (the format's precision) is
//!   refused (`None`), and the caller stores the exact text instead.
//! - The exponent is `-scale` of the text, so `"-12.500"` becomes coefficient 12500, exponent −3, and
//!   decoding gives `"-12.500"` back character for character (trailing zeros and scale kept).
//! - Only the canonical form with a coefficient below 2^113 is produced (10^34 − 1 < 2^113).
//!
//! Layout of the 128 bits (BSON stores them little-endian): bit 127 sign, bits 126..113 the biased
//! exponent (bias 6176), bits 112..0 the coefficient.

use mongodb::bson::Decimal128;

/// The exponent bias of decimal128.
const EXPONENT_BIAS: i32 = 6176;
/// Largest biased exponent of the canonical (small-coefficient) form.
const MAX_BIASED_EXPONENT: i32 = 0x3FFF - 1;
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
