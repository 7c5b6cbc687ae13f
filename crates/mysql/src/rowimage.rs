//! Row images of a rows event → [`Value`]s, driven by a per-table plan made once from the table map.
//!
//! Why: mysql_common's `BinlogRow` builds, for every row, a `Column` (names copied), an optional
//! metadata extractor, a null bitmap and two vectors; a third of the reader's CPU went to malloc/free.
//! Here a row costs its `Vec<Value>` plus the strings/bytes it carries, nothing else.
//!
//! Invariant: the values are exactly those of [`crate::decode::from_binlog`] over mysql_common's own
//! parse. The hot types (integers, FLOAT/DOUBLE, DECIMAL, strings and bytes, DATETIME2, TIMESTAMP2)
//! are read here; every other type is parsed by mysql_common's own `BinlogValue` parser, one value at
//! a time, and decoded by `from_binlog`. Debug builds check every rows event against the reference
//! path (see `binlog.rs`), so the integration tests of every type prove the two agree.

use crate::decode::{check_text, from_binlog, integer, text, timestamp_from_epoch};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;
use polyrepl_core::{Column, ColumnKind, Date, DateTime, TableSchema, Value};

/// How one column's value is read from a row image.
#[derive(Debug, Clone)]
enum Read {
    /// Little-endian integer of this many bytes, of `bits` width.
    Int { bytes: usize, bits: u32 },
    /// 4-byte little-endian FLOAT.
    Float,
    /// 8-byte little-endian DOUBLE.
    Double,
    /// NEWDECIMAL(precision, scale).
    Decimal { precision: u8, scale: u8 },
    /// Length-prefixed (1 or 2 bytes) text in the column's charset.
    Text { wide_len: bool },
    /// Length-prefixed (1 or 2 bytes) bytes (VARBINARY; BINARY(n) gets its trailing zeros back).
    Bytes { wide_len: bool, pad_to: Option<usize> },
    /// BLOB/TEXT with a 1..4-byte length prefix.
    Blob { len_bytes: usize, text: bool },
    /// DATETIME2 with `fsp` fraction digits.
    DateTime2 { fsp: u8 },
    /// TIMESTAMP2 with `fsp` fraction digits.
    Timestamp2 { fsp: u8 },
    /// Anything else: mysql_common's own value parser, then `from_binlog`.
    Generic { unsigned: bool },
}

/// One column of the plan.
#[derive(Debug, Clone)]
struct PlannedColumn {
    read: Read,
    col_type: ColumnType,
    meta: Vec<u8>,
    charset: u16,
    binary_len: Option<usize>,
}

/// How to read every column of one table shape (made once per table map).
#[derive(Debug, Clone)]
pub struct RowPlan {
    columns: Vec<PlannedColumn>,
}

/// A column's type, metadata and charset as the table map gives them.
pub struct MapColumn<'a> {
    /// The real type (ENUM/SET/CHAR told apart), as mysql_common's `get_column_type` gives it.
    pub col_type: ColumnType,
    /// The column's table-map metadata bytes.
    pub meta: &'a [u8],
    /// Charset id (0 when not a character type).
    pub charset: u16,
    /// Declared length of a BINARY(n) column.
    pub binary_len: Option<usize>,
    /// The signedness bit of the table map (mysql_common's `is_unsigned`; numeric types only).
    pub map_unsigned: bool,
}

impl RowPlan {
    /// The plan for `columns` (the schema) read with the table map's `map` (same order and length).
    pub fn new(columns: &[Column], map: &[MapColumn<'_>]) -> RowPlan {
        use ColumnType::*;
        let planned = columns
            .iter()
            .zip(map)
            .map(|(c, m)| {
                let b = |k: usize| m.meta.get(k).copied().unwrap_or(0);
                let generic = Read::Generic { unsigned: m.map_unsigned };
                let read = match (m.col_type, &c.kind) {
                    (MYSQL_TYPE_TINY, ColumnKind::TinyInt) => Read::Int { bytes: 1, bits: 8 },
                    (MYSQL_TYPE_SHORT, ColumnKind::SmallInt) => Read::Int { bytes: 2, bits: 16 },
                    (MYSQL_TYPE_INT24, ColumnKind::MediumInt) => Read::Int { bytes: 3, bits: 24 },
                    (MYSQL_TYPE_LONG, ColumnKind::Int) => Read::Int { bytes: 4, bits: 32 },
                    (MYSQL_TYPE_LONGLONG, ColumnKind::BigInt) => Read::Int { bytes: 8, bits: 64 },
                    (MYSQL_TYPE_FLOAT, ColumnKind::Float) => Read::Float,
                    (MYSQL_TYPE_DOUBLE, ColumnKind::Double) => Read::Double,
                    (MYSQL_TYPE_NEWDECIMAL, ColumnKind::Decimal { precision, scale })
                        if *precision == b(0)
                            && *scale == b(1)
                            && *precision >= *scale
                            && *scale <= 30
                            && *precision <= 65 =>
                    {
                        Read::Decimal { precision: *precision, scale: *scale }
                    }
                    (MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING, kind) => {
                        let wide_len = (b(0) as usize | (b(1) as usize) << 8) >= 256;
                        match kind {
                            ColumnKind::VarChar => Read::Text { wide_len },
                            ColumnKind::VarBinary => Read::Bytes { wide_len, pad_to: None },
                            _ => generic,
                        }
                    }
                    (MYSQL_TYPE_STRING, ColumnKind::Char | ColumnKind::Binary) if b(0) >= 1 => {
                        // Same length rule as mysql_common (a long CHAR() field: MySQL bug #37426).
                        let (b0, b1) = (b(0) as usize, b(1) as usize);
                        let length = if (b0 & 0x30) != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 };
                        let wide_len = length >= 256;
                        if c.kind == ColumnKind::Char {
                            Read::Text { wide_len }
                        } else {
                            Read::Bytes { wide_len, pad_to: m.binary_len }
                        }
                    }
                    (
                        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB,
                        ColumnKind::Text | ColumnKind::Blob,
                    ) if (1..=4).contains(&b(0)) => {
                        Read::Blob { len_bytes: b(0) as usize, text: c.kind == ColumnKind::Text }
                    }
                    (MYSQL_TYPE_DATETIME2, ColumnKind::DateTime { fsp }) if b(0) <= 6 => Read::DateTime2 { fsp: *fsp },
                    (MYSQL_TYPE_TIMESTAMP2, ColumnKind::Timestamp { fsp }) if b(0) <= 6 => {
                        Read::Timestamp2 { fsp: *fsp }
                    }
                    _ => generic,
                };
                PlannedColumn {
                    read,
                    col_type: m.col_type,
                    meta: m.meta.to_vec(),
                    charset: m.charset,
                    binary_len: m.binary_len,
                }
            })
            .collect();
        RowPlan { columns: planned }
    }

    /// Reads one row image (null bitmap + values of all columns) from the front of `buf`, advancing it.
    /// `schema` is the table the plan was made for (names for errors, kinds for `from_binlog`).
    pub fn read_row(&self, schema: &TableSchema, buf: &mut &[u8]) -> Result<Vec<Value>, String> {
        self.read(schema, buf, false)
    }

    /// The primary key (as [`polyrepl_core::Change::key_of`] gives it) of an image of which only the
    /// key is used (the before image of an update or delete): the other columns are checked exactly
    /// as `read_row` would (so bad data is refused the same way) but not built.
    pub fn read_key(&self, schema: &TableSchema, buf: &mut &[u8]) -> Result<Vec<Value>, String> {
        self.read(schema, buf, true)
    }

    fn read(&self, schema: &TableSchema, buf: &mut &[u8], key_only: bool) -> Result<Vec<Value>, String> {
        let n = self.columns.len();
        let nulls = take(buf, n.div_ceil(8)).map_err(|m| format!("cannot parse a row of {}: {m}", schema.id))?;
        let mut values = if key_only { vec![Value::Null; schema.primary_key.len()] } else { Vec::with_capacity(n) };
        for (i, (pc, column)) in self.columns.iter().zip(&schema.columns).enumerate() {
            let is_null = nulls[i / 8] & (1 << (i % 8)) != 0;
            let at = if key_only { schema.primary_key.iter().position(|&k| k == i) } else { None };
            let v = match (is_null, key_only, at) {
                (true, _, _) => Ok(Value::Null),
                (false, true, None) => self.skip_value(pc, column, buf).map(|()| Value::Null),
                (false, _, _) => self.read_value(pc, column, buf),
            };
            let v = v.map_err(|m| format!("cannot decode {}.{}: {m}", schema.id, column.name))?;
            match (key_only, at) {
                (false, _) => values.push(v),
                (true, Some(k)) => values[k] = v,
                (true, None) => {}
            }
        }
        Ok(values)
    }

    /// Checks and passes one value without building it; anything not trivially checked is read.
    fn skip_value(&self, pc: &PlannedColumn, column: &Column, buf: &mut &[u8]) -> Result<(), String> {
        match &pc.read {
            Read::Int { bytes, .. } => drop(take(buf, *bytes)?),
            Read::Float => drop(take(buf, 4)?),
            Read::Double => drop(take(buf, 8)?),
            Read::Text { wide_len } => {
                let len = length(buf, if *wide_len { 2 } else { 1 })?;
                check_text(take(buf, len)?, pc.charset)?;
            }
            Read::Bytes { wide_len, .. } => {
                let len = length(buf, if *wide_len { 2 } else { 1 })?;
                take(buf, len)?;
            }
            Read::Blob { len_bytes, text: is_text } => {
                let len = length(buf, *len_bytes)?;
                let b = take(buf, len)?;
                if *is_text {
                    check_text(b, pc.charset)?;
                }
            }
            Read::Decimal { precision, scale } => {
                let size = decimal_bin_size(*precision, *scale);
                let b = buf.get(..size).ok_or("truncated row image")?;
                if decimal_groups_in_range(b, *precision, *scale) {
                    *buf = &buf[size..];
                } else {
                    self.read_value(pc, column, buf)?;
                }
            }
            Read::DateTime2 { .. } | Read::Timestamp2 { .. } | Read::Generic { .. } => {
                self.read_value(pc, column, buf)?;
            }
        }
        Ok(())
    }

    /// Reads and decodes one non-NULL value.
    fn read_value(&self, pc: &PlannedColumn, column: &Column, buf: &mut &[u8]) -> Result<Value, String> {
        Ok(match &pc.read {
            Read::Int { bytes, bits } => {
                let b = take(buf, *bytes)?;
                let mut raw = 0u64;
                for (k, byte) in b.iter().enumerate() {
                    raw |= (*byte as u64) << (8 * k);
                }
                integer(raw, *bits, column.unsigned)
            }
            Read::Float => Value::Float(f32::from_le_bytes(take(buf, 4)?.try_into().expect("4 bytes"))),
            Read::Double => Value::Double(f64::from_le_bytes(take(buf, 8)?.try_into().expect("8 bytes"))),
            Read::Decimal { precision, scale } => {
                let size = decimal_bin_size(*precision, *scale);
                let b = buf.get(..size).ok_or("truncated row image")?;
                match decimal_text(b, *precision, *scale) {
                    Some(s) => {
                        *buf = &buf[size..];
                        Value::Decimal(s)
                    }
                    // Out-of-range digit groups (corrupt data): let the reference parser say what it says.
                    None => self.generic(pc, column, buf, false)?,
                }
            }
            Read::Text { wide_len } => {
                let len = length(buf, if *wide_len { 2 } else { 1 })?;
                Value::String(text(take(buf, len)?.to_vec(), pc.charset)?)
            }
            Read::Bytes { wide_len, pad_to } => {
                let len = length(buf, if *wide_len { 2 } else { 1 })?;
                let b = take(buf, len)?;
                let mut v = Vec::with_capacity(pad_to.unwrap_or(0).max(len));
                v.extend_from_slice(b);
                if let Some(n) = pad_to {
                    if v.len() < *n {
                        v.resize(*n, 0);
                    }
                }
                Value::Bytes(v)
            }
            Read::Blob { len_bytes, text: is_text } => {
                let len = length(buf, *len_bytes)?;
                let b = take(buf, len)?.to_vec();
                if *is_text {
                    Value::String(text(b, pc.charset)?)
                } else {
                    Value::Bytes(b)
                }
            }
            Read::DateTime2 { fsp } => {
                let dec = pc.meta.first().copied().unwrap_or(0) as u32;
                let before = *buf;
                let mut cursor: &[u8] = buf;
                let packed = mysql_common::binlog::misc::my_datetime_packed_from_binary(&mut cursor, dec)
                    .map_err(|_| "truncated row image".to_string())?;
                *buf = &before[before.len() - cursor.len()..];
                match mysql_common::binlog::misc::datetime_from_packed(packed) {
                    mysql_async::Value::Date(y, mo, d, h, mi, s, us) => Value::DateTime(DateTime {
                        date: Date { year: y, month: mo, day: d },
                        hour: h,
                        minute: mi,
                        second: s,
                        micros: us,
                        fsp: *fsp,
                    }),
                    other => return Err(format!("unexpected DATETIME {other:?}")),
                }
            }
            Read::Timestamp2 { fsp } => {
                let dec = pc.meta.first().copied().unwrap_or(0);
                let mut cursor: &[u8] = buf;
                let (sec, usec) = mysql_common::binlog::misc::my_timestamp_from_binary(&mut cursor, dec)
                    .map_err(|_| "truncated row image".to_string())?;
                if !(0..1_000_000).contains(&usec) {
                    // Only corrupt data: the reference path's text form decides.
                    return self.generic(pc, column, buf, false);
                }
                *buf = cursor;
                timestamp_from_epoch(sec as i64, usec as u32, *fsp)
            }
            Read::Generic { unsigned } => self.generic(pc, column, buf, *unsigned)?,
        })
    }

    /// mysql_common's value parser (exactly what `BinlogRow` calls), then `from_binlog`.
    fn generic(&self, pc: &PlannedColumn, column: &Column, buf: &mut &[u8], unsigned: bool) -> Result<Value, String> {
        let data: &[u8] = buf;
        let mut pb = ParseBuf(data);
        let raw: BinlogValue<'_> = pb
            .parse((pc.col_type, pc.meta.as_slice(), unsigned, false))
            .map_err(|e| format!("cannot parse the row image: {e}"))?;
        let consumed = data.len() - pb.0.len();
        *buf = &buf[consumed..];
        from_binlog(column, raw, pc.charset, pc.binary_len)
    }
}

/// The first `n` bytes of `buf`, advancing it.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err("truncated row image".into());
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A little-endian length of `n` bytes.
fn length(buf: &mut &[u8], n: usize) -> Result<usize, String> {
    Ok(take(buf, n)?.iter().enumerate().fold(0usize, |acc, (k, b)| acc | (*b as usize) << (8 * k)))
}

/// Digits per 4-byte group of the DECIMAL binary form, and bytes per leftover digit count.
const DIG_PER_DEC: usize = 9;
const DIG_TO_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POW10: [u32; 10] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

/// Bytes of a DECIMAL(precision, scale) in a row image.
fn decimal_bin_size(precision: u8, scale: u8) -> usize {
    let intg = (precision - scale) as usize;
    let frac = scale as usize;
    (intg / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[intg % DIG_PER_DEC]
        + (frac / DIG_PER_DEC) * 4
        + DIG_TO_BYTES[frac % DIG_PER_DEC]
}

/// A DECIMAL's binary form → the text [`crate::decode::normalize_decimal`] would give for it (no
/// leading zeros, exactly `scale` fraction digits, no `-` on zero). `None` when a digit group is out
/// of range (corrupt data). `b` holds exactly [`decimal_bin_size`] bytes.
fn decimal_text(b: &[u8], precision: u8, scale: u8) -> Option<String> {
    let intg = (precision - scale) as usize;
    let frac = scale as usize;
    let negative = b.first()? & 0x80 == 0;
    let mask: u8 = if negative { 0xff } else { 0 };
    let byte = |i: usize| b[i] ^ mask ^ if i == 0 { 0x80 } else { 0 };
    let mut at = 0usize;
    let mut group = |len: usize, digits: usize| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..len {
            v = (v << 8) | byte(at) as u32;
            at += 1;
        }
        (v < POW10[digits]).then_some(v)
    };
    let mut out = String::with_capacity(precision as usize + 3);
    if negative {
        out.push('-');
    }
    let sign_len = out.len();
    let push = |out: &mut String, v: u32, width: usize| {
        let mut digits = [b'0'; 9];
        let mut x = v;
        for k in (0..width).rev() {
            digits[k] = b'0' + (x % 10) as u8;
            x /= 10;
        }
        for &d in &digits[..width] {
            // Leading zeros of the integer part are dropped.
            if out.len() == sign_len && d == b'0' {
                continue;
            }
            out.push(d as char);
        }
    };
    let lead = intg % DIG_PER_DEC;
    if lead > 0 {
        let v = group(DIG_TO_BYTES[lead], lead)?;
        push(&mut out, v, lead);
    }
    for _ in 0..intg / DIG_PER_DEC {
        let v = group(4, DIG_PER_DEC)?;
        push(&mut out, v, DIG_PER_DEC);
    }
    if out.len() == sign_len {
        out.push('0');
    }
    let int_is_zero = &out[sign_len..] == "0";
    if frac > 0 {
        out.push('.');
        for _ in 0..frac / DIG_PER_DEC {
            let v = group(4, DIG_PER_DEC)?;
            push_padded(&mut out, v, DIG_PER_DEC);
        }
        let tail = frac % DIG_PER_DEC;
        if tail > 0 {
            let v = group(DIG_TO_BYTES[tail], tail)?;
            push_padded(&mut out, v, tail);
        }
    }
    let frac_is_zero = out.bytes().skip_while(|&c| c != b'.').skip(1).all(|c| c == b'0');
    if negative && int_is_zero && frac_is_zero {
        out.remove(0);
    }
    Some(out)
}

/// `v` with exactly `width` digits (zero-padded).
fn push_padded(out: &mut String, v: u32, width: usize) {
    let mut digits = [b'0'; 9];
    let mut x = v;
    for k in (0..width).rev() {
        digits[k] = b'0' + (x % 10) as u8;
        x /= 10;
    }
    out.extend(digits[..width].iter().map(|&d| d as char));
}

/// Whether every digit group of a DECIMAL's binary form is in range (what [`decimal_text`] needs).
fn decimal_groups_in_range(b: &[u8], precision: u8, scale: u8) -> bool {
    let intg = (precision - scale) as usize;
    let frac = scale as usize;
    let Some(&first) = b.first() else { return false };
    let mask: u8 = if first & 0x80 == 0 { 0xff } else { 0 };
    let mut at = 0usize;
    let mut ok = |len: usize, digits: usize| {
        let mut v = 0u32;
        for _ in 0..len {
            v = (v << 8) | (b[at] ^ mask ^ if at == 0 { 0x80 } else { 0 }) as u32;
            at += 1;
        }
        v < POW10[digits]
    };
    let (lead, tail) = (intg % DIG_PER_DEC, frac % DIG_PER_DEC);
    (lead == 0 || ok(DIG_TO_BYTES[lead], lead))
        && (0..intg / DIG_PER_DEC + frac / DIG_PER_DEC).all(|_| ok(4, DIG_PER_DEC))
        && (tail == 0 || ok(DIG_TO_BYTES[tail], tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::normalize_decimal;
    use mysql_common::binlog::decimal::Decimal;

    /// The reference: mysql_common's parse and print, then polyrepl's normalisation.
    fn reference(bin: &[u8], precision: u8, scale: u8) -> String {
        let d = Decimal::read_bin(bin, precision as usize, scale as usize, false).unwrap();
        normalize_decimal(&d.to_string(), scale).unwrap()
    }

    #[test]
    fn decimals_match_mysql_common() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (precision, scale) in [
            (1, 0),
            (5, 2),
            (9, 0),
            (10, 0),
            (12, 2),
            (18, 9),
            (19, 10),
            (20, 0),
            (30, 30),
            (65, 30),
            (65, 0),
            (38, 7),
            (4, 4),
            (10, 1),
        ] {
            for round in 0..3000 {
                // The server's layout: big-endian digit groups, first bit flipped, all bits flipped when negative.
                let intg = (precision - scale) as usize;
                let frac = scale as usize;
                let mut groups: Vec<(usize, u32)> = Vec::new();
                let lead = intg % DIG_PER_DEC;
                if lead > 0 {
                    groups.push((lead, 0));
                }
                groups.extend(std::iter::repeat_n((DIG_PER_DEC, 0), intg / DIG_PER_DEC + frac / DIG_PER_DEC));
                if !frac.is_multiple_of(DIG_PER_DEC) {
                    groups.push((frac % DIG_PER_DEC, 0));
                }
                for g in groups.iter_mut() {
                    // Many zero groups, so leading zeros and zero values are covered.
                    g.1 = if round % 3 == 0 && next() % 2 == 0 { 0 } else { (next() % POW10[g.0] as u64) as u32 };
                }
                let mut bin = Vec::new();
                for &(digits, v) in &groups {
                    let len = DIG_TO_BYTES[digits];
                    bin.extend_from_slice(&v.to_be_bytes()[4 - len..]);
                }
                let negative = next() % 2 == 0;
                if negative {
                    bin.iter_mut().for_each(|b| *b ^= 0xff);
                }
                bin[0] ^= 0x80;
                assert_eq!(bin.len(), decimal_bin_size(precision, scale));
                assert!(decimal_groups_in_range(&bin, precision, scale));
                assert_eq!(
                    decimal_text(&bin, precision, scale).unwrap(),
                    reference(&bin, precision, scale),
                    "{groups:?} negative {negative} as DECIMAL({precision},{scale})"
                );
            }
        }
    }

    /// Reads every value of `bytes` with mysql_common's value parser + `from_binlog` (the reference).
    fn reference_row(columns: &[Column], map: &[MapColumn<'_>], mut bytes: &[u8]) -> Vec<Value> {
        let nulls = take(&mut bytes, columns.len().div_ceil(8)).unwrap().to_vec();
        columns
            .iter()
            .zip(map)
            .enumerate()
            .map(|(i, (c, m))| {
                if nulls[i / 8] & (1 << (i % 8)) != 0 {
                    return Value::Null;
                }
                let data: &[u8] = bytes;
                let mut pb = ParseBuf(data);
                let raw: BinlogValue<'_> = pb.parse((m.col_type, m.meta, m.map_unsigned, false)).unwrap();
                bytes = &bytes[data.len() - pb.0.len()..];
                from_binlog(c, raw, m.charset, m.binary_len).unwrap()
            })
            .collect()
    }

    #[test]
    fn wide_lengths_latin1_and_binary_padding_match_the_reference() {
        use ColumnType::*;
        let col =
            |name: &str, kind: ColumnKind, unsigned: bool| Column { name: name.into(), kind, unsigned, nullable: true };
        let columns = vec![
            col("id", ColumnKind::BigInt, true),
            col("wide", ColumnKind::VarChar, false),
            col("latin", ColumnKind::VarChar, false),
            col("ch", ColumnKind::Char, false),
            col("bn", ColumnKind::Binary, false),
            col("tx", ColumnKind::Text, false),
            col("ts", ColumnKind::Timestamp { fsp: 3 }, false),
            col("dt", ColumnKind::DateTime { fsp: 6 }, false),
            col("n", ColumnKind::Int, false),
        ];
        // VARCHAR(300) utf8mb4 (1200 bytes: 2-byte length), VARCHAR(10) latin1, CHAR(100) utf8mb4
        // (400 bytes: 2-byte length), BINARY(4), TEXT, TIMESTAMP(3), DATETIME(6), INT NULL.
        let map = vec![
            MapColumn { col_type: MYSQL_TYPE_LONGLONG, meta: &[], charset: 0, binary_len: None, map_unsigned: true },
            MapColumn {
                col_type: MYSQL_TYPE_VARCHAR,
                meta: &[0xb0, 0x04],
                charset: 45,
                binary_len: None,
                map_unsigned: false,
            },
            MapColumn {
                col_type: MYSQL_TYPE_VARCHAR,
                meta: &[10, 0],
                charset: 8,
                binary_len: None,
                map_unsigned: false,
            },
            MapColumn {
                col_type: MYSQL_TYPE_STRING,
                meta: &[0xee, 0x90],
                charset: 45,
                binary_len: None,
                map_unsigned: false,
            },
            MapColumn {
                col_type: MYSQL_TYPE_STRING,
                meta: &[0xfe, 4],
                charset: 63,
                binary_len: Some(4),
                map_unsigned: false,
            },
            MapColumn { col_type: MYSQL_TYPE_BLOB, meta: &[2], charset: 45, binary_len: None, map_unsigned: false },
            MapColumn {
                col_type: MYSQL_TYPE_TIMESTAMP2,
                meta: &[3],
                charset: 0,
                binary_len: None,
                map_unsigned: false,
            },
            MapColumn { col_type: MYSQL_TYPE_DATETIME2, meta: &[6], charset: 0, binary_len: None, map_unsigned: false },
            MapColumn { col_type: MYSQL_TYPE_LONG, meta: &[], charset: 0, binary_len: None, map_unsigned: false },
        ];
        let plan = RowPlan::new(&columns, &map);
        assert!(plan.columns.iter().all(|c| !matches!(c.read, Read::Generic { .. })), "{plan:?}");
        let wide = "é😀".repeat(60);
        let mut row = vec![0b0000_0000, 0b0000_0001]; // n (column 8) is NULL
        row.extend_from_slice(&u64::MAX.to_le_bytes());
        row.extend_from_slice(&(wide.len() as u16).to_le_bytes());
        row.extend_from_slice(wide.as_bytes());
        row.extend_from_slice(&[3, b'a', 0xe9, 0xff]); // latin1 'aéÿ'
        row.extend_from_slice(&(300u16).to_le_bytes());
        row.extend_from_slice("x".repeat(300).as_bytes());
        row.extend_from_slice(&[2, 0, 1]); // BINARY(4) without its trailing zeros
        row.extend_from_slice(&(5u16).to_le_bytes());
        row.extend_from_slice(b"hello");
        row.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        row.extend_from_slice(&(1234u16 / 10).to_be_bytes()); // .123 as 2 bytes of hundreds of micros
                                                              // DATETIME2(6): 2024-02-29 13:14:15.000042
        let ymd = ((2024u64 * 13 + 2) << 5) | 29;
        let hms = (13u64 << 12) | (14 << 6) | 15;
        let int_part = ((ymd << 17) | hms) + 0x80_0000_0000;
        row.extend_from_slice(&int_part.to_be_bytes()[3..]);
        row.extend_from_slice(&42u32.to_be_bytes()[1..]);
        let expected = reference_row(&columns, &map, &row);
        let schema =
            TableSchema { id: polyrepl_core::TableId::new("d", "t"), columns: columns.clone(), primary_key: vec![0] };
        let mut buf: &[u8] = &row;
        assert_eq!(plan.read_row(&schema, &mut buf).unwrap(), expected);
        assert!(buf.is_empty());
        let mut buf: &[u8] = &row;
        let key = plan.read_key(&schema, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(key, vec![expected[0].clone()]);
        assert_eq!(expected[2], Value::String("aéÿ".into()));
        assert_eq!(expected[4], Value::Bytes(vec![0, 1, 0, 0]));
    }
}
