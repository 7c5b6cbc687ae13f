//! Builders of test data: schemas, rows, changes, batches, checkpoints, and the edge-value type suite.
//!
//! Invariants:
//! - [`batch`] stamps every change with the batch's position and its index as `seq`, like one source
//!   transaction: a later batch (greater offset) always carries later positions, which sinks that order
//!   writes by position (Cassandra's `USING TIMESTAMP`) rely on. Changes built alone carry offset 0 until
//!   then; [`at`] places a change explicitly for a [`Batch`] built by hand.
//! - The edge rows of [`type_table`] hold only values the source can produce for their columns
//!   (DATETIME/TIMESTAMP with fsp ≤ 3 carry whole milliseconds, SET labels in definition order), and
//!   TIME values within one day; [`out_of_day_times`] are the TIME values beyond it and negative ones,
//!   checked apart so that a failure names them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{
    Batch, Change, Checkpoint, Column, ColumnKind, Date, DateTime, Op, Position, Row, SnapshotProgress, TableId,
    TableSchema, Time, Value,
};

/// The commit time every built change carries (seconds since the epoch, 2024-11-24).
pub const SOURCE_TS: u32 = 1_732_450_000;

/// The largest DECIMAL(65,30).
pub const DEC65_MAX: &str = "99999999999999999999999999999999999.999999999999999999999999999999";
/// The smallest negative DECIMAL(65,30) step.
pub const DEC65_TINY: &str = "-0.000000000000000000000000000001";

/// `prefix_` and 12 random hex digits: a fresh database, keyspace or pipeline name for one test (only
/// `[a-z0-9_]`, short enough for every sink's naming rules).
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{prefix}_{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// A nullable signed column.
pub fn column(name: &str, kind: ColumnKind) -> Column {
    Column { name: name.to_string(), kind, unsigned: false, nullable: true }
}

/// A nullable UNSIGNED column.
pub fn unsigned(name: &str, kind: ColumnKind) -> Column {
    Column { name: name.to_string(), kind, unsigned: true, nullable: true }
}

/// A table `database.name` with `columns` and the primary key `primary_key` (indexes into `columns`, in
/// key order).
pub fn table(database: &str, name: &str, columns: Vec<Column>, primary_key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema { id: TableId::new(database, name), columns, primary_key })
}

/// `t`: `id INT` key + `v VARCHAR`.
pub fn simple_table(database: &str) -> Arc<TableSchema> {
    table(database, "t", vec![column("id", ColumnKind::Int), column("v", ColumnKind::VarChar)], vec![0])
}

/// A row of [`simple_table`]; `None` is NULL.
pub fn simple_row(id: i64, v: Option<&str>) -> Row {
    vec![Value::Int(id), v.map_or(Value::Null, |s| Value::String(s.into()))]
}

/// A position in `binlog.000001`.
pub fn position(offset: u64) -> Position {
    Position::new("binlog.000001", offset)
}

/// A DATETIME/TIMESTAMP value.
#[allow(clippy::too_many_arguments)]
pub fn datetime(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8, micros: u32, fsp: u8) -> DateTime {
    DateTime { date: Date { year, month, day }, hour, minute, second, micros, fsp }
}

/// A DATE value.
pub fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

/// A TIME value (`negative` for a time below zero).
pub fn time(negative: bool, hours: u32, minutes: u8, seconds: u8, micros: u32, fsp: u8) -> Time {
    Time { negative, hours, minutes, seconds, micros, fsp }
}

/// An update writing `row` (the full row after the change), at offset 0 until [`batch`] or [`at`].
pub fn upsert(table: &Arc<TableSchema>, row: Row) -> Change {
    Change {
        position: position(0),
        seq: 0,
        key: Change::key_of(table, &row),
        table: table.clone(),
        op: Op::Update,
        after: Some(row),
        source_ts: SOURCE_TS,
    }
}

/// An insert of `row`, at offset 0 until [`batch`] or [`at`].
pub fn insert(table: &Arc<TableSchema>, row: Row) -> Change {
    Change { op: Op::Insert, ..upsert(table, row) }
}

/// A delete of the row with primary key `key` (values in key order), at offset 0 until [`batch`] or [`at`].
pub fn delete(table: &Arc<TableSchema>, key: Vec<Value>) -> Change {
    Change {
        position: position(0),
        seq: 0,
        table: table.clone(),
        op: Op::Delete,
        key,
        after: None,
        source_ts: SOURCE_TS,
    }
}

/// `change` placed at `offset` as change `seq` of its transaction.
pub fn at(change: Change, offset: u64, seq: u32) -> Change {
    Change { position: position(offset), seq, ..change }
}

/// One transaction committed at `offset`: every change stamped with that position and its index as
/// `seq`, and the streaming checkpoint at `offset`.
pub fn batch(changes: Vec<Change>, offset: u64) -> Batch {
    let changes = changes.into_iter().enumerate().map(|(i, c)| at(c, offset, i as u32)).collect();
    Batch::new(changes, Checkpoint::streaming(position(offset)))
}

/// [`batch`] with a snapshot checkpoint: a GTID, one table done and `current` copied up to `last_key`.
pub fn snapshot_batch(changes: Vec<Change>, offset: u64, current: &TableSchema, last_key: Vec<Value>) -> Batch {
    let mut b = batch(changes, offset);
    b.checkpoint = Checkpoint::snapshotting(
        Position { file: "binlog.000001".into(), offset, gtid: Some(format!("0-1-{offset}")), part: None },
        SnapshotProgress {
            done: vec![TableId::new(&current.id.database, "done_before")],
            current: Some((current.id.clone(), last_key)),
        },
    );
    b
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Column names of [`type_table`], by what they hold.
pub mod types {
    /// The key column (`BIGINT`).
    pub const ID: usize = 0;
    /// `TIME(6)`.
    pub const TIME6: usize = 20;
    /// `TIME(0)`.
    pub const TIME0: usize = 21;
    /// The DATE, DATETIME and TIMESTAMP columns: where zero dates go.
    pub const DATES: [usize; 6] = [19, 22, 23, 24, 25, 26];
    /// `JSON`.
    pub const JSON: usize = 28;
    /// `VARCHAR`.
    pub const VARCHAR: usize = 14;
    /// `YEAR`.
    pub const YEAR: usize = 27;
}

/// `name`: a `BIGINT` key `id` and one column of every kind the sinks map (signed and unsigned
/// integers of each width, FLOAT, DOUBLE, DECIMAL(10,3) and (65,30), CHAR/VARCHAR/TEXT, BINARY/VARBINARY/
/// BLOB, DATE, TIME(6)/(0), DATETIME(0)/(3)/(6), TIMESTAMP(0)/(6), YEAR, JSON, BIT(64)/(1), ENUM, SET, and
/// a column whose name has a space, quotes and a non-ASCII letter). Indexes in [`types`].
pub fn type_table(database: &str, name: &str) -> Arc<TableSchema> {
    use ColumnKind as K;
    table(
        database,
        name,
        vec![
            column("id", K::BigInt),                                              // 0
            column("ti", K::TinyInt),                                             // 1
            unsigned("tiu", K::TinyInt),                                          // 2
            column("si", K::SmallInt),                                            // 3
            unsigned("siu", K::SmallInt),                                         // 4
            column("mi", K::MediumInt),                                           // 5
            unsigned("miu", K::MediumInt),                                        // 6
            column("i", K::Int),                                                  // 7
            unsigned("iu", K::Int),                                               // 8
            column("bi", K::BigInt),                                              // 9
            unsigned("biu", K::BigInt),                                           // 10
            column("f", K::Float),                                                // 11
            column("d", K::Double),                                               // 12
            column("dec", K::Decimal { precision: 10, scale: 3 }),                // 13
            column("vc", K::VarChar),                                             // 14
            column("dec65", K::Decimal { precision: 65, scale: 30 }),             // 15
            column("ch", K::Char),                                                // 16
            column("txt", K::Text),                                               // 17
            column("bin", K::Binary),                                             // 18
            column("day", K::Date),                                               // 19
            column("tm6", K::Time { fsp: 6 }),                                    // 20
            column("tm0", K::Time { fsp: 0 }),                                    // 21
            column("dt0", K::DateTime { fsp: 0 }),                                // 22
            column("dt3", K::DateTime { fsp: 3 }),                                // 23
            column("dt6", K::DateTime { fsp: 6 }),                                // 24
            column("ts0", K::Timestamp { fsp: 0 }),                               // 25
            column("ts6", K::Timestamp { fsp: 6 }),                               // 26
            column("yr", K::Year),                                                // 27
            column("js", K::Json),                                                // 28
            column("bt64", K::Bit { bits: 64 }),                                  // 29
            column("bt1", K::Bit { bits: 1 }),                                    // 30
            column("en", K::Enum { labels: labels(&["small", "large", "x y"]) }), // 31
            column("st", K::Set { labels: labels(&["z", "a", "m"]) }),            // 32
            column("vb", K::VarBinary),                                           // 33
            column("blob", K::Blob),                                              // 34
            column("Mixed Case ☃", K::VarChar),                                   // 35
        ],
        vec![0],
    )
}

/// Rows of [`type_table`] with every column's edge values, keys 1..=5: the largest values, the
/// smallest, every column NULL, zero dates (with a JSON `null`, a JSON string that looks like an array, a
/// VARCHAR that does too, and YEAR 0), and awkward text and bytes.
pub fn edge_rows() -> Vec<Row> {
    let max = vec![
        Value::Int(1),
        Value::Int(127),
        Value::UInt(255),
        Value::Int(32_767),
        Value::UInt(65_535),
        Value::Int(8_388_607),
        Value::UInt(16_777_215),
        Value::Int(i64::from(i32::MAX)),
        Value::UInt(4_294_967_295),
        Value::Int(i64::MAX),
        Value::UInt(u64::MAX),
        Value::Float(f32::MAX),
        Value::Double(f64::MAX),
        Value::Decimal("9999999.999".into()),
        Value::String("emoji 😀🎉 ü 中文".into()),
        Value::Decimal(DEC65_MAX.into()),
        Value::String("ab".into()),
        Value::String("x".repeat(10_000)),
        Value::Bytes(vec![0, 0, 0, 0]),
        Value::Date(date(9999, 12, 31)),
        Value::Time(time(false, 23, 59, 59, 999_999, 6)),
        Value::Time(time(false, 23, 59, 59, 0, 0)),
        Value::DateTime(datetime(9999, 12, 31, 23, 59, 59, 0, 0)),
        Value::DateTime(datetime(2025, 11, 29, 12, 0, 1, 123_000, 3)),
        Value::DateTime(datetime(9999, 12, 31, 23, 59, 59, 999_999, 6)),
        Value::Timestamp(datetime(2038, 1, 19, 3, 14, 7, 0, 0)),
        Value::Timestamp(datetime(2038, 1, 19, 3, 14, 7, 999_999, 6)),
        Value::Year(2155),
        Value::Json(
            serde_json::json!({"a": 1, "b": [true, null, 2.5, "x"], "c": {"d": "😀"}, "big": 9_007_199_254_740_993i64}),
        ),
        Value::Bit(u64::MAX),
        Value::Bit(1),
        Value::Enum("x y".into()),
        Value::Set(labels(&["z", "m"])),
        Value::Bytes(vec![0, 255, 0, 1, 2]),
        Value::Bytes((0..=255).collect()),
        Value::String("quoted".into()),
    ];
    let min = vec![
        Value::Int(2),
        Value::Int(-128),
        Value::UInt(0),
        Value::Int(-32_768),
        Value::UInt(0),
        Value::Int(-8_388_608),
        Value::UInt(0),
        Value::Int(i64::from(i32::MIN)),
        Value::UInt(0),
        Value::Int(i64::MIN),
        Value::UInt(i64::MAX as u64 + 1),
        Value::Float(-1.5),
        Value::Double(f64::MIN_POSITIVE),
        Value::Decimal("-0.001".into()),
        Value::String(String::new()),
        Value::Decimal(DEC65_TINY.into()),
        Value::String(String::new()),
        Value::String("line\nbreak \"quoted\" 'single' \\ back, comma:colon".into()),
        Value::Bytes(vec![]),
        Value::Date(date(1000, 1, 1)),
        Value::Time(time(false, 0, 0, 0, 0, 6)),
        Value::Time(time(false, 0, 0, 0, 0, 0)),
        Value::DateTime(datetime(1000, 1, 1, 0, 0, 0, 0, 0)),
        Value::DateTime(datetime(1969, 12, 31, 23, 59, 59, 999_000, 3)),
        Value::DateTime(datetime(1000, 1, 1, 0, 0, 0, 1, 6)),
        Value::Timestamp(datetime(1970, 1, 1, 0, 0, 1, 0, 0)),
        Value::Timestamp(datetime(1970, 1, 1, 0, 0, 1, 1, 6)),
        Value::Year(1901),
        Value::Json(serde_json::json!([1, [2, [3]], {"$weird": {"a.b": []}}, ""])),
        Value::Bit(0),
        Value::Bit(0),
        Value::Enum(String::new()),
        Value::Set(vec![]),
        Value::Bytes(vec![]),
        Value::Bytes(vec![]),
        Value::String(String::new()),
    ];
    let mut nulls = vec![Value::Null; max.len()];
    nulls[types::ID] = Value::Int(3);
    let mut zero = nulls.clone();
    zero[types::ID] = Value::Int(4);
    for i in types::DATES {
        let fsp = match &type_table("d", "t").columns[i].kind {
            ColumnKind::DateTime { fsp } | ColumnKind::Timestamp { fsp } => *fsp,
            _ => 0,
        };
        zero[i] = match i {
            19 => Value::Date(date(0, 0, 0)),
            25 | 26 => Value::Timestamp(datetime(0, 0, 0, 0, 0, 0, 0, fsp)),
            _ => Value::DateTime(datetime(0, 0, 0, 0, 0, 0, 0, fsp)),
        };
    }
    zero[types::VARCHAR] = Value::String("[1]".into());
    zero[types::JSON] = Value::Json(serde_json::Value::Null);
    zero[types::YEAR] = Value::Year(0);
    let mut text = nulls.clone();
    text[types::ID] = Value::Int(5);
    text[types::VARCHAR] = Value::String("{\"a\":1}".into());
    text[types::JSON] = Value::Json(serde_json::json!("[1]"));
    text[16] = Value::String(" leading and trailing ".into());
    text[17] = Value::String("tab\tcr\r\\u0000 not a nul, 𝄞 astral".into());
    text[33] = Value::Bytes(b":\\*?[]".to_vec());
    text[15] = Value::Decimal("0.000000000000000000000000000000".into());
    text[13] = Value::Decimal("-9999999.999".into());
    text[12] = Value::Double(-0.0);
    text[11] = Value::Float(f32::MIN_POSITIVE);
    vec![max, min, nulls, zero, text]
}

/// TIME values beyond one day, as the source allows them (±838:59:59): `(fsp 6, fsp 0)` pairs for the
/// TIME(6) and TIME(0) columns of [`type_table`].
pub fn out_of_day_times() -> Vec<(Value, Value)> {
    vec![
        (Value::Time(time(true, 838, 59, 59, 0, 6)), Value::Time(time(true, 838, 59, 59, 0, 0))),
        (Value::Time(time(false, 838, 59, 59, 0, 6)), Value::Time(time(false, 24, 0, 0, 0, 0))),
        (Value::Time(time(true, 0, 0, 0, 1, 6)), Value::Time(time(true, 1, 2, 3, 0, 0))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn edge_rows_fit_the_type_table() {
        let t = type_table("db", "t");
        let rows = edge_rows();
        let mut keys = BTreeSet::new();
        for row in &rows {
            assert_eq!(row.len(), t.columns.len());
            assert!(keys.insert(format!("{:?}", Change::key_of(&t, row))), "keys are distinct");
        }
        assert!(rows[2][1..].iter().all(Value::is_null));
        for i in types::DATES {
            assert!(
                matches!(rows[3][i], Value::Date(d) if d.is_zero())
                    || matches!(rows[3][i], Value::DateTime(d) | Value::Timestamp(d) if d.date.is_zero())
            );
        }
        assert_eq!(t.columns[types::TIME6].kind, ColumnKind::Time { fsp: 6 });
        assert_eq!(t.columns[types::JSON].kind, ColumnKind::Json);
    }

    #[test]
    fn batches_stamp_positions_and_names_are_unique() {
        let t = simple_table("db");
        let b = batch(vec![insert(&t, simple_row(1, None)), delete(&t, vec![Value::Int(1)])], 42);
        assert_eq!(b.changes.iter().map(|c| (c.position.offset, c.seq)).collect::<Vec<_>>(), vec![(42, 0), (42, 1)]);
        assert_eq!(b.checkpoint, Checkpoint::streaming(position(42)));
        let (a, b) = (unique("prt"), unique("prt"));
        assert_ne!(a, b);
        assert!(a.len() == 16 && a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'), "{a}");
    }
}
