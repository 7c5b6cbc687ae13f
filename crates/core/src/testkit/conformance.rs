//! The checks every [`Sink`] must pass, through the trait alone, against the sink's real server.
//!
//! Each check takes the connected sink, a [`Subject`] (how to name it, its pipeline, what it can store,
//! how to open a second connection) and a fresh database name; it creates its own tables in that
//! database (names distinct per check, so [`run_all`] runs them all in one database) and panics with a
//! message `[<label>] <check>: …` on the first broken promise. The caller removes the database.
//!
//! Invariants:
//! - Every write of a check sits at a greater source position than the check's earlier writes, so sinks
//!   that order writes by position see a real stream of transactions.
//! - Expected values come from the source row and the sink's declared [`Capabilities`], never from what
//!   the sink returned.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builders::*;
use crate::unmappable::key_json;
use crate::{
    Batch, Change, Column, ColumnKind, Lease, LeaseRequest, OnUnmappable, Row, RowPolicy, Sink, SinkError, TableSchema,
    Value,
};

/// What a sink stores differently from the source, as its documented mapping says. The default is a sink
/// that gives every value back exactly.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Zero dates (`0000-00-00`, zero DATETIME/TIMESTAMP) have no form in the sink and read back as NULL.
    pub zero_dates_read_as_null: bool,
    /// A JSON document that is exactly `null` reads back as SQL NULL.
    pub json_null_reads_as_sql_null: bool,
    /// `scan_keys` is not supported (e.g. on a Redis Cluster) and must answer a definite error.
    pub no_key_scan: bool,
}

impl Capabilities {
    /// What `read_rows` must give back for `value` written into `column`.
    pub fn expected(&self, column: &Column, value: &Value) -> Value {
        let zero = match value {
            Value::Date(d) => d.is_zero(),
            Value::DateTime(d) | Value::Timestamp(d) => d.date.is_zero(),
            _ => false,
        };
        if zero && self.zero_dates_read_as_null {
            return Value::Null;
        }
        if matches!(column.kind, ColumnKind::Json)
            && matches!(value, Value::Json(serde_json::Value::Null))
            && self.json_null_reads_as_sql_null
        {
            return Value::Null;
        }
        value.clone()
    }

    /// [`Capabilities::expected`] for every value of `row`.
    pub fn expected_row(&self, table: &TableSchema, row: &Row) -> Row {
        table.columns.iter().zip(row).map(|(c, v)| self.expected(c, v)).collect()
    }
}

/// Opens a new connection to the sink under test (same URL, options and pipeline), for checks that
/// must see what another connection sees (a restart).
pub type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Box<dyn Sink>> + Send>> + Send + Sync>;

/// Opens a new connection to the sink under test (same URL, options and pipeline) with the given row
/// policy, for the `--on-unmappable` checks.
pub type OpenWithPolicy = Box<dyn Fn(RowPolicy) -> Pin<Box<dyn Future<Output = Box<dyn Sink>> + Send>> + Send + Sync>;

/// A row the sink under test really cannot hold (its server refuses it), for the `--on-unmappable`
/// checks, in the table `id VARCHAR` (key) + `v TEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// A `v` value of this many bytes (the key is short).
    Value(usize),
    /// A key value of this many bytes (`v` is short).
    Key(usize),
}

/// The sink under test, as the checks need to know it.
pub struct Subject {
    /// Names the sink in assertion messages, e.g. `redis (prefix app:)`.
    pub label: String,
    /// The pipeline name the sink stores its checkpoint under.
    pub pipeline: String,
    /// What the sink stores differently.
    pub capabilities: Capabilities,
    /// A second connection, opened on demand.
    pub reopen: Reopen,
    /// A second connection with a given row policy, opened on demand.
    pub open_with_policy: OpenWithPolicy,
    /// A row the sink's server really refuses; `None` skips the `--on-unmappable` checks (the test
    /// running the kit must then check them elsewhere and say where).
    pub oversize: Option<Oversize>,
}

impl Subject {
    fn says(&self, check: &str) -> String {
        format!("[{}] {check}", self.label)
    }
}

/// Runs every check, in order, in `database`.
pub async fn run_all(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    types_round_trip(sink, subject, database).await;
    out_of_day_times_round_trip(sink, subject, database).await;
    composite_keys(sink, subject, database).await;
    upsert_replaces_the_whole_row(sink, subject, database).await;
    delete_removes_the_row(sink, subject, database).await;
    changes_to_one_key_in_a_batch_end_at_the_last(sink, subject, database).await;
    replaying_a_batch_is_harmless(sink, subject, database).await;
    checkpoint_is_never_ahead_of_the_data(sink, subject, database).await;
    a_refused_batch_leaves_the_checkpoint(sink, subject, database).await;
    scan_keys_finds_every_key(sink, subject, database).await;
    truncate_table_empties_and_keeps_the_table(sink, subject, database).await;
    drop_table_then_prepare_gives_an_empty_table(sink, subject, database).await;
    truncate_and_drop_need_only_the_name(sink, subject, database).await;
    leases_keep_other_pipelines_out(sink, subject, database).await;
    unmappable_rows_follow_the_policy(subject, database).await;
}

async fn ok<T>(result: Result<T, SinkError>, what: impl FnOnce() -> String) -> T {
    result.unwrap_or_else(|e| panic!("{}: {e}", what()))
}

/// Applies `batch`, panicking with `check`'s name on error.
async fn apply(sink: &mut dyn Sink, subject: &Subject, check: &str, b: &Batch) {
    let offset = b.checkpoint.position.offset;
    ok(sink.apply(b).await, || format!("{}: apply of the batch at offset {offset}", subject.says(check))).await;
}

async fn read(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    t: &TableSchema,
    keys: &[Vec<Value>],
) -> Vec<Option<Row>> {
    let rows = ok(sink.read_rows(t, keys).await, || format!("{}: read_rows of {}", subject.says(check), t.id)).await;
    assert_eq!(
        rows.len(),
        keys.len(),
        "{}: read_rows gave {} answers for {} keys",
        subject.says(check),
        rows.len(),
        keys.len()
    );
    rows
}

async fn prepare(sink: &mut dyn Sink, subject: &Subject, check: &str, tables: &[Arc<TableSchema>]) {
    ok(sink.prepare(tables).await, || format!("{}: prepare", subject.says(check))).await;
}

/// Compares rows column by column, naming the first column that differs.
fn assert_rows(subject: &Subject, check: &str, t: &TableSchema, got: &[Option<Row>], want: &[Option<Row>]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => {
                for (c, column) in t.columns.iter().enumerate() {
                    assert_eq!(
                        g.get(c),
                        w.get(c),
                        "{}: row {i} (key {:?}) of {}: column '{}' reads back differently",
                        subject.says(check),
                        Change::key_of(t, w),
                        t.id,
                        column.name
                    );
                }
                assert_eq!(g.len(), w.len(), "{}: row {i} of {} has {} values", subject.says(check), t.id, g.len());
            }
            _ => assert_eq!(g, w, "{}: row {i} of {} (present or absent)", subject.says(check), t.id),
        }
    }
    assert_eq!(got.len(), want.len(), "{}: number of rows read", subject.says(check));
}

fn keys_of(t: &TableSchema, rows: &[Row]) -> Vec<Vec<Value>> {
    rows.iter().map(|r| Change::key_of(t, r)).collect()
}

/// Every column kind's edge values ([`edge_rows`]) round-trip through `apply` and `read_rows`, as the
/// sink's [`Capabilities`] say; an absent key reads as `None`.
pub async fn types_round_trip(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "types_round_trip";
    let t = type_table(database, "kit_types");
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    let rows = edge_rows();
    apply(sink, subject, check, &batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 1_000)).await;
    let mut keys = keys_of(&t, &rows);
    keys.push(vec![Value::Int(999)]);
    let got = read(sink, subject, check, &t, &keys).await;
    let mut want: Vec<Option<Row>> = rows.iter().map(|r| Some(subject.capabilities.expected_row(&t, r))).collect();
    want.push(None);
    assert_rows(subject, check, &t, &got, &want);
}

/// TIME values beyond one day and negative ones ([`out_of_day_times`]), the whole range MySQL allows,
/// round-trip: a sink must hold every TIME the source can produce.
pub async fn out_of_day_times_round_trip(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "out_of_day_times";
    let t = type_table(database, "kit_times");
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    let base = edge_rows()[2].clone(); // all NULL
    let rows: Vec<Row> = out_of_day_times()
        .into_iter()
        .enumerate()
        .map(|(i, (t6, t0))| {
            let mut r = base.clone();
            r[types::ID] = Value::Int(10 + i as i64);
            r[types::TIME6] = t6;
            r[types::TIME0] = t0;
            r
        })
        .collect();
    apply(sink, subject, check, &batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 2_000)).await;
    let got = read(sink, subject, check, &t, &keys_of(&t, &rows)).await;
    let want: Vec<Option<Row>> = rows.iter().map(|r| Some(subject.capabilities.expected_row(&t, r))).collect();
    assert_rows(subject, check, &t, &got, &want);
}

/// `region VARCHAR, id INT, b VARBINARY, v INT` with the key `(region, id, b)` in that order (not column
/// order).
fn composite_table(database: &str, name: &str) -> Arc<TableSchema> {
    table(
        database,
        name,
        vec![
            column("id", ColumnKind::Int),
            column("region", ColumnKind::VarChar),
            column("b", ColumnKind::VarBinary),
            column("v", ColumnKind::Int),
        ],
        vec![1, 0, 2],
    )
}

fn composite_row(id: i64, region: &str, b: &[u8], v: Option<i64>) -> Row {
    vec![Value::Int(id), Value::String(region.into()), Value::Bytes(b.to_vec()), v.map_or(Value::Null, Value::Int)]
}

/// Composite primary keys (key order differs from column order; parts holding `:`, `\`, glob characters,
/// empty strings and binary bytes) address distinct rows: written, read, updated and deleted by key,
/// without two keys ever meeting.
pub async fn composite_keys(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "composite_keys";
    let t = composite_table(database, "kit_composite");
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    let rows = vec![
        composite_row(1, "a:b", b"c", Some(1)),
        composite_row(1, "a", b"b:c", Some(2)),
        composite_row(1, "a\\", b":c", Some(3)),
        composite_row(2, "", &[0, b':', 0xff], Some(4)),
        composite_row(2, "*?[x]", &[], Some(5)),
        composite_row(3, "eu", b"k", None),
        composite_row(-3, "eu", b"k", Some(7)),
    ];
    apply(sink, subject, check, &batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 3_000)).await;
    let mut keys = keys_of(&t, &rows);
    keys.push(vec![Value::String("a".into()), Value::Int(1), Value::Bytes(b"c".to_vec())]);
    let got = read(sink, subject, check, &t, &keys).await;
    let mut want: Vec<Option<Row>> = rows.iter().cloned().map(Some).collect();
    want.push(None);
    assert_rows(subject, check, &t, &got, &want);

    let updated = composite_row(1, "a", b"b:c", Some(20));
    apply(
        sink,
        subject,
        check,
        &batch(vec![upsert(&t, updated.clone()), delete(&t, Change::key_of(&t, &rows[0]))], 3_001),
    )
    .await;
    let got = read(sink, subject, check, &t, &keys).await;
    want[0] = None;
    want[1] = Some(updated);
    assert_rows(subject, check, &t, &got, &want);
}

/// An update writes the whole row: a column set to NULL reads back NULL, not its old value, in a later
/// batch and within one batch.
pub async fn upsert_replaces_the_whole_row(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "upsert_replaces_the_whole_row";
    let t = table(
        database,
        "kit_upsert",
        vec![column("id", ColumnKind::Int), column("name", ColumnKind::VarChar), column("qty", ColumnKind::BigInt)],
        vec![0],
    );
    let row = |id: i64, name: Option<&str>, qty: Option<i64>| {
        vec![Value::Int(id), name.map_or(Value::Null, |n| Value::String(n.into())), qty.map_or(Value::Null, Value::Int)]
    };
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    apply(
        sink,
        subject,
        check,
        &batch(vec![insert(&t, row(1, Some("a"), Some(5))), insert(&t, row(2, Some("b"), Some(6)))], 4_000),
    )
    .await;
    apply(sink, subject, check, &batch(vec![upsert(&t, row(1, None, Some(7)))], 4_001)).await;
    apply(
        sink,
        subject,
        check,
        &batch(vec![upsert(&t, row(2, Some("b2"), None)), upsert(&t, row(2, None, None))], 4_002),
    )
    .await;
    let got = read(sink, subject, check, &t, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await;
    assert_rows(subject, check, &t, &got, &[Some(row(1, None, Some(7))), Some(row(2, None, None))]);
    apply(sink, subject, check, &batch(vec![upsert(&t, row(2, Some("back"), Some(1)))], 4_003)).await;
    let got = read(sink, subject, check, &t, &[vec![Value::Int(2)]]).await;
    assert_rows(subject, check, &t, &got, &[Some(row(2, Some("back"), Some(1)))]);
}

/// A delete removes the row (and only it); deleting an absent key is fine; a key deleted and inserted
/// again in a later batch lives again.
pub async fn delete_removes_the_row(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "delete_removes_the_row";
    let t = simple_table(database);
    let t = table(database, "kit_delete", t.columns.clone(), t.primary_key.clone());
    let key = |id: i64| vec![Value::Int(id)];
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    apply(sink, subject, check, &batch((1..=3).map(|i| insert(&t, simple_row(i, Some("x")))).collect(), 5_000)).await;
    apply(sink, subject, check, &batch(vec![delete(&t, key(2)), delete(&t, key(99))], 5_001)).await;
    let got = read(sink, subject, check, &t, &[key(1), key(2), key(3), key(99)]).await;
    assert_rows(
        subject,
        check,
        &t,
        &got,
        &[Some(simple_row(1, Some("x"))), None, Some(simple_row(3, Some("x"))), None],
    );
    apply(sink, subject, check, &batch(vec![delete(&t, key(2))], 5_002)).await;
    apply(sink, subject, check, &batch(vec![insert(&t, simple_row(2, Some("again")))], 5_003)).await;
    let got = read(sink, subject, check, &t, &[key(2)]).await;
    assert_rows(subject, check, &t, &got, &[Some(simple_row(2, Some("again")))]);
}

/// Several changes to one key in one batch end at the last one (insert, update, delete, insert again).
pub async fn changes_to_one_key_in_a_batch_end_at_the_last(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "changes_to_one_key_in_a_batch_end_at_the_last";
    let t = simple_table(database);
    let t = table(database, "kit_collapse", t.columns.clone(), t.primary_key.clone());
    let key = |id: i64| vec![Value::Int(id)];
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    apply(sink, subject, check, &batch(vec![insert(&t, simple_row(3, Some("was here")))], 6_000)).await;
    let changes = vec![
        insert(&t, simple_row(1, Some("v1"))),
        upsert(&t, simple_row(1, Some("v2"))),
        insert(&t, simple_row(2, Some("gone"))),
        upsert(&t, simple_row(1, None)),
        upsert(&t, simple_row(1, Some("final"))),
        delete(&t, key(2)),
        delete(&t, key(3)),
        insert(&t, simple_row(3, Some("back"))),
    ];
    apply(sink, subject, check, &batch(changes, 6_001)).await;
    let got = read(sink, subject, check, &t, &[key(1), key(2), key(3)]).await;
    assert_rows(
        subject,
        check,
        &t,
        &got,
        &[Some(simple_row(1, Some("final"))), None, Some(simple_row(3, Some("back")))],
    );
}

/// Every key of `t` through `scan_keys` pages of `limit`, as `Debug` strings, deduplicated.
async fn scan_all(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    t: &TableSchema,
    limit: usize,
) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let (page, next) =
            ok(sink.scan_keys(t, cursor, limit).await, || format!("{}: scan_keys of {}", subject.says(check), t.id))
                .await;
        keys.extend(page.iter().map(|k| format!("{k:?}")));
        match next {
            Some(c) => cursor = Some(c),
            None => return keys,
        }
    }
    panic!("{}: scan_keys of {} never ended", subject.says(check), t.id)
}

fn key_set(keys: &[Vec<Value>]) -> BTreeSet<String> {
    keys.iter().map(|k| format!("{k:?}")).collect()
}

/// What the sink holds of `t`: every row of `keys` (present or not) and, when it scans keys, the set
/// of its keys.
async fn state(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    t: &TableSchema,
    keys: &[Vec<Value>],
) -> (Vec<Option<Row>>, Option<BTreeSet<String>>) {
    let rows = read(sink, subject, check, t, keys).await;
    let scanned =
        if subject.capabilities.no_key_scan { None } else { Some(scan_all(sink, subject, check, t, 7).await) };
    (rows, scanned)
}

/// Applying a batch a second time (a crash after the write, before the pipeline learned of it) leaves
/// the same rows and the same checkpoint.
pub async fn replaying_a_batch_is_harmless(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "replaying_a_batch_is_harmless";
    let t = simple_table(database);
    let t = table(database, "kit_replay", t.columns.clone(), t.primary_key.clone());
    let keys: Vec<Vec<Value>> = (1..=6).map(|i| vec![Value::Int(i)]).collect();
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    apply(sink, subject, check, &batch((4..=6).map(|i| insert(&t, simple_row(i, Some("old")))).collect(), 7_000)).await;
    let b = batch(
        vec![
            insert(&t, simple_row(1, Some("one"))),
            upsert(&t, simple_row(2, None)),
            delete(&t, vec![Value::Int(5)]),
            upsert(&t, simple_row(4, Some("four"))),
            upsert(&t, simple_row(1, Some("uno"))),
        ],
        7_001,
    );
    apply(sink, subject, check, &b).await;
    let once = state(sink, subject, check, &t, &keys).await;
    assert_rows(
        subject,
        check,
        &t,
        &once.0,
        &[
            Some(simple_row(1, Some("uno"))),
            Some(simple_row(2, None)),
            None,
            Some(simple_row(4, Some("four"))),
            None,
            Some(simple_row(6, Some("old"))),
        ],
    );
    apply(sink, subject, check, &b).await;
    let twice = state(sink, subject, check, &t, &keys).await;
    assert_eq!(twice, once, "{}: the replayed batch changed what the sink holds", subject.says(check));
    let stored = ok(sink.load_checkpoint(&subject.pipeline).await, || subject.says(check)).await;
    assert_eq!(stored, Some(b.checkpoint.clone()), "{}: checkpoint after the replay", subject.says(check));
}

/// Once `apply` returns, the batch's checkpoint is stored (snapshot progress and GTID included) and every
/// row of the batch is readable — also through another connection; an empty batch moves the checkpoint
/// too; an unknown pipeline has none.
pub async fn checkpoint_is_never_ahead_of_the_data(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "checkpoint_is_never_ahead_of_the_data";
    let t = simple_table(database);
    let t = table(database, "kit_checkpoint", t.columns.clone(), t.primary_key.clone());
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    let mut other = (subject.reopen)().await;
    for round in 0..3u64 {
        let ids: Vec<i64> = (0..40).map(|i| (round * 100 + i) as i64).collect();
        let rows: Vec<Row> = ids.iter().map(|&i| simple_row(i, Some(&format!("r{round}")))).collect();
        let changes = rows.iter().cloned().map(|r| insert(&t, r)).collect();
        let b = if round == 1 {
            snapshot_batch(changes, 8_000 + round, &t, vec![Value::Int(ids[39])])
        } else {
            batch(changes, 8_000 + round)
        };
        apply(sink, subject, check, &b).await;
        let keys = keys_of(&t, &rows);
        for (who, s) in [("the applying connection", &mut *sink), ("another connection", &mut *other)] {
            let stored =
                ok(s.load_checkpoint(&subject.pipeline).await, || format!("{}: load_checkpoint", subject.says(check)))
                    .await;
            assert_eq!(
                stored.as_ref(),
                Some(&b.checkpoint),
                "{}: checkpoint seen by {who} after apply returned",
                subject.says(check)
            );
            let got = read(s, subject, check, &t, &keys).await;
            let want: Vec<Option<Row>> = rows.iter().cloned().map(Some).collect();
            assert_rows(subject, &format!("{check} (rows seen by {who})"), &t, &got, &want);
        }
    }
    apply(sink, subject, check, &batch(vec![], 8_100)).await;
    let stored = ok(other.load_checkpoint(&subject.pipeline).await, || subject.says(check)).await;
    assert_eq!(
        stored.map(|c| c.position),
        Some(position(8_100)),
        "{}: an empty batch stores its checkpoint",
        subject.says(check)
    );
    let none = ok(sink.load_checkpoint(&unique("no_such_pipeline")).await, || subject.says(check)).await;
    assert_eq!(none, None, "{}: a pipeline never applied has no checkpoint", subject.says(check));
}

/// A batch the sink refuses (a NULL primary-key value) is a definite error and leaves the stored
/// checkpoint where it was.
pub async fn a_refused_batch_leaves_the_checkpoint(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "a_refused_batch_leaves_the_checkpoint";
    let t = simple_table(database);
    let t = table(database, "kit_refused", t.columns.clone(), t.primary_key.clone());
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    apply(sink, subject, check, &batch(vec![insert(&t, simple_row(1, Some("a")))], 9_000)).await;
    let bad = batch(
        vec![insert(&t, simple_row(2, Some("b"))), insert(&t, vec![Value::Null, Value::String("no key".into())])],
        9_001,
    );
    let err = sink
        .apply(&bad)
        .await
        .expect_err(&format!("{}: a batch with a NULL key value was accepted", subject.says(check)));
    assert!(!err.is_transient(), "{}: a NULL key must be a definite error: {err}", subject.says(check));
    let stored = ok(sink.load_checkpoint(&subject.pipeline).await, || subject.says(check)).await;
    assert_eq!(
        stored.map(|c| c.position),
        Some(position(9_000)),
        "{}: the refused batch moved the checkpoint",
        subject.says(check)
    );
}

/// `scan_keys` pages (small limit) find every key of the table and only of it (a table whose name
/// starts the same is left out), decoded like `read_rows` decodes them, single and composite; duplicates
/// are tolerated; an empty or never prepared table has none. A sink without key scans answers a definite
/// error instead.
pub async fn scan_keys_finds_every_key(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "scan_keys_finds_every_key";
    let single =
        table(database, "kit_scan", vec![column("id", ColumnKind::BigInt), column("v", ColumnKind::VarChar)], vec![0]);
    let lookalike = table(database, "kit_scan2", vec![column("id", ColumnKind::BigInt)], vec![0]);
    let composite = composite_table(database, "kit_scan_composite");
    let empty = table(database, "kit_scan_empty", vec![column("id", ColumnKind::Int)], vec![0]);
    let never = table(database, "kit_scan_never", vec![column("id", ColumnKind::Int)], vec![0]);
    prepare(sink, subject, check, &[single.clone(), lookalike.clone(), composite.clone(), empty.clone()]).await;
    if subject.capabilities.no_key_scan {
        let err =
            sink.scan_keys(&single, None, 10).await.expect_err(&format!("{}: scan_keys answered", subject.says(check)));
        assert!(!err.is_transient(), "{}: an unsupported scan must be a definite error: {err}", subject.says(check));
        return;
    }
    let mut changes = Vec::new();
    let mut want_single = Vec::new();
    for i in 0..23i64 {
        changes.push(insert(&single, vec![Value::Int(i * 1000 - 5000), Value::String(format!("v{i}"))]));
        want_single.push(vec![Value::Int(i * 1000 - 5000)]);
    }
    changes.push(insert(&lookalike, vec![Value::Int(424_242)]));
    let composite_rows = vec![
        composite_row(1, "a:b", b"c", Some(1)),
        composite_row(1, "a", b"b:c", None),
        composite_row(2, "back\\slash", &[0, b':', 0xff], Some(2)),
        composite_row(3, "", &[], Some(3)),
        composite_row(4, "ü🙂*?[x]", b"k", Some(4)),
    ];
    changes.extend(composite_rows.iter().cloned().map(|r| insert(&composite, r)));
    apply(sink, subject, check, &batch(changes, 10_000)).await;
    assert_eq!(
        scan_all(sink, subject, check, &single, 5).await,
        key_set(&want_single),
        "{}: keys of {}",
        subject.says(check),
        single.id
    );
    assert_eq!(
        scan_all(sink, subject, check, &composite, 2).await,
        key_set(&keys_of(&composite, &composite_rows)),
        "{}: keys of {}",
        subject.says(check),
        composite.id
    );
    assert!(
        scan_all(sink, subject, check, &empty, 5).await.is_empty(),
        "{}: keys of an empty table",
        subject.says(check)
    );
    assert!(
        scan_all(sink, subject, check, &never, 5).await.is_empty(),
        "{}: keys of a table never prepared",
        subject.says(check)
    );
    // Every scanned key reads back its row.
    let got = read(sink, subject, check, &composite, &keys_of(&composite, &composite_rows)).await;
    assert!(got.iter().all(Option::is_some), "{}: a scanned key does not read back: {got:?}", subject.says(check));
}

/// Writes `rows` of [`simple_row`] into `t` at `offset` and checks that they read back.
async fn fill(sink: &mut dyn Sink, subject: &Subject, check: &str, t: &Arc<TableSchema>, ids: &[i64], offset: u64) {
    apply(sink, subject, check, &batch(ids.iter().map(|&i| insert(t, simple_row(i, Some("v")))).collect(), offset))
        .await;
    let keys: Vec<Vec<Value>> = ids.iter().map(|&i| vec![Value::Int(i)]).collect();
    let got = read(sink, subject, check, t, &keys).await;
    assert!(
        got.iter().all(Option::is_some),
        "{}: rows written to {} before the layout operation",
        subject.says(check),
        t.id
    );
}

async fn assert_empty(sink: &mut dyn Sink, subject: &Subject, check: &str, t: &TableSchema, ids: &[i64]) {
    let keys: Vec<Vec<Value>> = ids.iter().map(|&i| vec![Value::Int(i)]).collect();
    let got = read(sink, subject, check, t, &keys).await;
    assert!(got.iter().all(Option::is_none), "{}: {} still holds rows: {got:?}", subject.says(check), t.id);
    if !subject.capabilities.no_key_scan {
        let keys = scan_all(sink, subject, check, t, 50).await;
        assert!(keys.is_empty(), "{}: {} still has keys: {keys:?}", subject.says(check), t.id);
    }
}

/// `truncate_table` removes every row of the table and nothing else (a table whose name starts the same
/// keeps its rows); the table stays usable, also for writes at the positions written before; it is
/// idempotent, and fine on a table the sink never had.
pub async fn truncate_table_empties_and_keeps_the_table(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "truncate_table";
    let simple = simple_table(database);
    let t = table(database, "kit_trunc", simple.columns.clone(), simple.primary_key.clone());
    let neighbour = table(database, "kit_trunc2", simple.columns.clone(), simple.primary_key.clone());
    let never = table(database, "kit_trunc_never", simple.columns.clone(), simple.primary_key.clone());
    let ids: Vec<i64> = (1..=30).collect();
    prepare(sink, subject, check, &[t.clone(), neighbour.clone()]).await;
    fill(sink, subject, check, &t, &ids, 11_000).await;
    fill(sink, subject, check, &neighbour, &[1, 2], 11_001).await;
    ok(sink.truncate_table(&t).await, || format!("{}: truncate_table", subject.says(check))).await;
    assert_empty(sink, subject, check, &t, &ids).await;
    let kept = read(sink, subject, check, &neighbour, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await;
    assert!(
        kept.iter().all(Option::is_some),
        "{}: truncating {} removed rows of {}",
        subject.says(check),
        t.id,
        neighbour.id
    );
    ok(sink.truncate_table(&t).await, || format!("{}: truncate_table again", subject.says(check))).await;
    ok(sink.truncate_table(&never).await, || {
        format!("{}: truncate_table of a table never prepared", subject.says(check))
    })
    .await;
    // Usable without a new prepare, even for the same positions as before the truncation.
    fill(sink, subject, check, &t, &ids[..5], 11_000).await;
    fill(sink, subject, check, &t, &ids[5..10], 11_002).await;
    assert_only(sink, subject, check, &t, &ids[..10], &ids[10..]).await;
}

/// `t` holds the rows of `present` and none of `absent` (and, when it scans keys, only `present`'s keys).
async fn assert_only(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    t: &TableSchema,
    present: &[i64],
    absent: &[i64],
) {
    let keys: Vec<Vec<Value>> = present.iter().chain(absent).map(|&i| vec![Value::Int(i)]).collect();
    let got = read(sink, subject, check, t, &keys).await;
    let want: Vec<Option<Row>> =
        present.iter().map(|&i| Some(simple_row(i, Some("v")))).chain(absent.iter().map(|_| None)).collect();
    assert_rows(subject, check, t, &got, &want);
    if !subject.capabilities.no_key_scan {
        let want: Vec<Vec<Value>> = present.iter().map(|&i| vec![Value::Int(i)]).collect();
        assert_eq!(
            scan_all(sink, subject, check, t, 50).await,
            key_set(&want),
            "{}: keys of {}",
            subject.says(check),
            t.id
        );
    }
}

/// `drop_table` removes the table's rows (and only its); after it, `prepare` gives an empty, usable
/// table; dropping twice, or a table the sink never had, is fine.
pub async fn drop_table_then_prepare_gives_an_empty_table(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "drop_table";
    let simple = simple_table(database);
    let t = table(database, "kit_drop", simple.columns.clone(), simple.primary_key.clone());
    let neighbour = table(database, "kit_drop2", simple.columns.clone(), simple.primary_key.clone());
    let never = table(database, "kit_drop_never", simple.columns.clone(), simple.primary_key.clone());
    let ids: Vec<i64> = (1..=30).collect();
    prepare(sink, subject, check, &[t.clone(), neighbour.clone()]).await;
    fill(sink, subject, check, &t, &ids, 12_000).await;
    fill(sink, subject, check, &neighbour, &[1, 2], 12_001).await;
    ok(sink.drop_table(&t).await, || format!("{}: drop_table", subject.says(check))).await;
    assert_empty(sink, subject, check, &t, &ids).await;
    let kept = read(sink, subject, check, &neighbour, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await;
    assert!(
        kept.iter().all(Option::is_some),
        "{}: dropping {} removed rows of {}",
        subject.says(check),
        t.id,
        neighbour.id
    );
    ok(sink.drop_table(&t).await, || format!("{}: drop_table again", subject.says(check))).await;
    ok(sink.drop_table(&never).await, || format!("{}: drop_table of a table never prepared", subject.says(check)))
        .await;
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    assert_empty(sink, subject, check, &t, &ids).await;
    fill(sink, subject, check, &t, &ids[..5], 12_000).await;
    fill(sink, subject, check, &t, &ids[5..10], 12_002).await;
    assert_only(sink, subject, check, &t, &ids[..10], &ids[10..]).await;
    // A second connection (its own caches) sees the table as it is now.
    let mut other = (subject.reopen)().await;
    let got = read(&mut *other, subject, check, &t, &[vec![Value::Int(1)], vec![Value::Int(29)]]).await;
    assert_rows(subject, check, &t, &got, &[Some(simple_row(1, Some("v"))), None]);
}

/// `truncate_table` and `drop_table` work from the table's name alone: a schema with no columns and no
/// key (a table the run never saw, created and dropped again before the stream reached it) removes the
/// rows written under the full schema.
pub async fn truncate_and_drop_need_only_the_name(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "truncate/drop by name";
    let simple = simple_table(database);
    let t = table(database, "kit_byname", simple.columns.clone(), simple.primary_key.clone());
    let name_only = table(database, "kit_byname", vec![], vec![]);
    let ids: Vec<i64> = (1..=10).collect();
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    fill(sink, subject, check, &t, &ids, 13_000).await;
    ok(sink.truncate_table(&name_only).await, || format!("{}: truncate_table", subject.says(check))).await;
    assert_empty(sink, subject, check, &t, &ids).await;
    fill(sink, subject, check, &t, &ids, 13_001).await;
    ok(sink.drop_table(&name_only).await, || format!("{}: drop_table", subject.says(check))).await;
    prepare(sink, subject, check, std::slice::from_ref(&t)).await;
    assert_empty(sink, subject, check, &t, &ids).await;
}

/// A lease request of `owner` from `holder`, lasting `ttl`.
fn lease_request(owner: &str, holder: &str, ttl: Duration, take_over: bool) -> LeaseRequest {
    LeaseRequest { owner: owner.into(), holder: holder.into(), ttl, take_over }
}

/// The leases on `tables`, as (table name, owner, holder), sorted; each with a time left within `ttl`.
async fn leases_of(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    tables: &[Arc<TableSchema>],
    ttl: Duration,
) -> Vec<(String, String, String)> {
    let leases = ok(sink.read_leases(tables).await, || format!("{}: read_leases", subject.says(check))).await;
    for lease in &leases {
        assert!(
            lease.expires_in > Duration::ZERO && lease.expires_in <= ttl + Duration::from_secs(1),
            "{}: lease {lease} should expire within {ttl:?}",
            subject.says(check)
        );
    }
    let mut out: Vec<_> = leases.into_iter().map(|l| (l.table.table, l.owner, l.holder)).collect();
    out.sort();
    out
}

async fn acquire(
    sink: &mut dyn Sink,
    subject: &Subject,
    check: &str,
    tables: &[Arc<TableSchema>],
    request: &LeaseRequest,
) -> Vec<Lease> {
    ok(sink.acquire_leases(tables, request).await, || {
        format!("{}: acquire_leases by '{}' (take over: {})", subject.says(check), request.owner, request.take_over)
    })
    .await
}

/// Leases: a pipeline takes the lease of its tables; the same name (a restart) gets it back at once; a
/// second name is refused (the answer names the owner) until the lease expires or it takes over, and
/// the first then finds it lost; a lease covers its own table only; releasing removes only one's own.
pub async fn leases_keep_other_pipelines_out(sink: &mut dyn Sink, subject: &Subject, database: &str) {
    let check = "leases";
    let simple = simple_table(database);
    let named = |name: &str| table(database, name, simple.columns.clone(), simple.primary_key.clone());
    let (t1, t2, t3, t4) = (named("kit_lease"), named("kit_lease2"), named("kit_lease3"), named("kit_lease4"));
    let all = [t1.clone(), t2.clone(), t3.clone(), t4.clone()];
    let (a, b) = (unique("kit_owner_a"), unique("kit_owner_b"));
    let ttl = Duration::from_secs(30);
    assert!(
        leases_of(sink, subject, check, &all, ttl).await.is_empty(),
        "{}: fresh tables have no lease",
        subject.says(check)
    );
    let both = [t1.clone(), t2.clone()];
    let refused = acquire(sink, subject, check, &both, &lease_request(&a, "host-a:1", ttl, false)).await;
    assert!(refused.is_empty(), "{}: free leases were refused: {refused:?}", subject.says(check));
    let held = |owner: &str, holder: &str, names: &[&str]| -> Vec<(String, String, String)> {
        names.iter().map(|n| (n.to_string(), owner.to_string(), holder.to_string())).collect()
    };
    assert_eq!(
        leases_of(sink, subject, check, &all, ttl).await,
        held(&a, "host-a:1", &["kit_lease", "kit_lease2"]),
        "{}: leases after the first acquire",
        subject.says(check)
    );
    // The same pipeline restarted (kill -9, another process): its own leases come back at once.
    let mut other = (subject.reopen)().await;
    let refused = acquire(&mut *other, subject, check, &both, &lease_request(&a, "host-a:2", ttl, false)).await;
    assert!(refused.is_empty(), "{}: a restart under the same name was refused: {refused:?}", subject.says(check));
    assert_eq!(
        leases_of(sink, subject, check, &both, ttl).await,
        held(&a, "host-a:2", &["kit_lease", "kit_lease2"]),
        "{}: the restart renewed the leases under its own holder",
        subject.says(check)
    );
    // Another pipeline: refused on the leased table, with the owner named; a free table is its own.
    let refused =
        acquire(&mut *other, subject, check, &[t1.clone(), t3.clone()], &lease_request(&b, "host-b:1", ttl, false))
            .await;
    let refused: Vec<_> = refused.into_iter().map(|l| (l.table.table, l.owner, l.holder)).collect();
    assert_eq!(
        refused,
        held(&a, "host-a:2", &["kit_lease"]),
        "{}: what another pipeline is refused",
        subject.says(check)
    );
    assert_eq!(
        leases_of(sink, subject, check, &all, ttl).await,
        vec![
            ("kit_lease".to_string(), a.clone(), "host-a:2".to_string()),
            ("kit_lease2".to_string(), a.clone(), "host-a:2".to_string()),
            ("kit_lease3".to_string(), b.clone(), "host-b:1".to_string()),
        ],
        "{}: a refused lease stays its owner's; the free one is taken",
        subject.says(check)
    );
    // Releasing gives up only one's own leases.
    ok(sink.release_leases(std::slice::from_ref(&t3), &a).await, || format!("{}: release_leases", subject.says(check)))
        .await;
    assert_eq!(
        leases_of(sink, subject, check, std::slice::from_ref(&t3), ttl).await,
        held(&b, "host-b:1", &["kit_lease3"]),
        "{}: releasing another owner's lease removed it",
        subject.says(check)
    );
    // Taking over, explicitly: the old owner's next renewal finds the lease lost.
    let refused =
        acquire(&mut *other, subject, check, std::slice::from_ref(&t1), &lease_request(&b, "host-b:1", ttl, true))
            .await;
    assert!(refused.is_empty(), "{}: a take-over was refused: {refused:?}", subject.says(check));
    let lost = acquire(sink, subject, check, &both, &lease_request(&a, "host-a:2", ttl, false)).await;
    let lost: Vec<_> = lost.into_iter().map(|l| (l.table.table, l.owner)).collect();
    assert_eq!(lost, vec![("kit_lease".to_string(), b.clone())], "{}: renewal after a take-over", subject.says(check));
    // An expired lease is free for anyone.
    let short = Duration::from_secs(1);
    let refused =
        acquire(sink, subject, check, std::slice::from_ref(&t4), &lease_request(&a, "host-a:2", short, false)).await;
    assert!(refused.is_empty(), "{}: {refused:?}", subject.says(check));
    let taken_at = Instant::now();
    let refused =
        acquire(&mut *other, subject, check, std::slice::from_ref(&t4), &lease_request(&b, "host-b:1", ttl, false))
            .await;
    assert_eq!(refused.len(), 1, "{}: a fresh 1 s lease was not refused", subject.says(check));
    loop {
        let refused =
            acquire(&mut *other, subject, check, std::slice::from_ref(&t4), &lease_request(&b, "host-b:1", ttl, false))
                .await;
        if refused.is_empty() {
            break;
        }
        assert!(
            taken_at.elapsed() < Duration::from_secs(15),
            "{}: a 1 s lease still refused after 15 s: {refused:?}",
            subject.says(check)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        leases_of(sink, subject, check, std::slice::from_ref(&t4), ttl).await,
        held(&b, "host-b:1", &["kit_lease4"]),
        "{}: the expired lease went to the other pipeline",
        subject.says(check)
    );
    ok(other.release_leases(&all, &b).await, || format!("{}: release_leases", subject.says(check))).await;
    ok(sink.release_leases(&all, &a).await, || format!("{}: release_leases", subject.says(check))).await;
    ok(sink.release_leases(&all, &a).await, || format!("{}: release_leases again", subject.says(check))).await;
    assert!(
        leases_of(sink, subject, check, &all, ttl).await.is_empty(),
        "{}: leases left after every owner released",
        subject.says(check)
    );
}

/// `id VARCHAR` (key) + `v TEXT`: where the oversize row goes.
fn unmappable_table(database: &str, name: &str) -> Arc<TableSchema> {
    table(database, name, vec![column("id", ColumnKind::VarChar), column("v", ColumnKind::Text)], vec![0])
}

fn text_row(id: &str, v: &str) -> Row {
    vec![Value::String(id.into()), Value::String(v.into())]
}

/// `--on-unmappable`: a batch holding a row the server refuses ([`Subject::oversize`]) between two good
/// ones. `stop` fails it definitely, naming the flag, and writes nothing of it; `skip` writes the good
/// rows, leaves the bad one out (an older image of its key removed) and counts it; `dead-letter` does
/// the same and records it (key, table, position, sink, reason) once, also when the batch is replayed.
/// Later batches flow in every case.
pub async fn unmappable_rows_follow_the_policy(subject: &Subject, database: &str) {
    let Some(oversize) = subject.oversize else { return };
    for (n, policy) in [OnUnmappable::Stop, OnUnmappable::Skip, OnUnmappable::DeadLetter].into_iter().enumerate() {
        let check = format!("on_unmappable {policy}");
        let check = check.as_str();
        let row_policy = RowPolicy::new(policy);
        let mut sink = (subject.open_with_policy)(row_policy.clone()).await;
        let sink = &mut *sink;
        let t = unmappable_table(database, &format!("kit_unmappable_{n}"));
        prepare(sink, subject, check, std::slice::from_ref(&t)).await;
        let base = 14_000 + 10 * n as u64;
        apply(
            sink,
            subject,
            check,
            &batch(vec![insert(&t, text_row("k1", "one")), insert(&t, text_row("k2", "old"))], base),
        )
        .await;
        let (bad, bad_key_readable) = match oversize {
            Oversize::Value(bytes) => (text_row("k2", &"x".repeat(bytes)), true),
            Oversize::Key(bytes) => (text_row(&"k".repeat(bytes), "small"), false),
        };
        let b = batch(
            vec![insert(&t, text_row("k3", "three")), upsert(&t, bad.clone()), insert(&t, text_row("k4", "four"))],
            base + 1,
        );
        let key = |id: &str| vec![Value::String(id.into())];
        let good_keys = [key("k1"), key("k3"), key("k4")];
        let stored = |s: Option<crate::Checkpoint>| s.map(|c| c.position);
        match policy {
            OnUnmappable::Stop => {
                let err =
                    sink.apply(&b).await.expect_err(&format!("{}: the oversize row was accepted", subject.says(check)));
                assert!(!err.is_transient(), "{}: must be a definite error: {err}", subject.says(check));
                let text = err.to_string();
                assert!(
                    text.contains("--on-unmappable") && text.contains(&t.id.to_string()),
                    "{}: the error names neither the table nor the fix: {text}",
                    subject.says(check)
                );
                let got = read(sink, subject, check, &t, &[key("k3"), key("k4"), key("k2")]).await;
                assert_rows(subject, check, &t, &got, &[None, None, Some(text_row("k2", "old"))]);
                let cp = ok(sink.load_checkpoint(&subject.pipeline).await, || subject.says(check)).await;
                assert_eq!(
                    stored(cp),
                    Some(position(base)),
                    "{}: the refused batch moved the checkpoint",
                    subject.says(check)
                );
            }
            OnUnmappable::Skip | OnUnmappable::DeadLetter => {
                apply(sink, subject, check, &b).await;
                let got = read(sink, subject, check, &t, &good_keys).await;
                assert_rows(
                    subject,
                    check,
                    &t,
                    &got,
                    &[Some(text_row("k1", "one")), Some(text_row("k3", "three")), Some(text_row("k4", "four"))],
                );
                if bad_key_readable {
                    let got = read(sink, subject, check, &t, &[key("k2")]).await;
                    assert_eq!(
                        got,
                        vec![None],
                        "{}: the older image of the row left out is still there",
                        subject.says(check)
                    );
                }
                let cp = ok(sink.load_checkpoint(&subject.pipeline).await, || subject.says(check)).await;
                assert_eq!(stored(cp), Some(position(base + 1)), "{}: checkpoint after the batch", subject.says(check));
                let (counted, other) = if policy == OnUnmappable::Skip {
                    (row_policy.counts.skipped(), row_policy.counts.dead_lettered())
                } else {
                    (row_policy.counts.dead_lettered(), row_policy.counts.skipped())
                };
                assert_eq!(counted.get(&t.id.to_string()), Some(&1), "{}: counts {counted:?}", subject.says(check));
                assert!(other.is_empty(), "{}: counted under the other policy too: {other:?}", subject.says(check));
                // Replayed (a crash before the pipeline heard of it): one record still.
                apply(sink, subject, check, &b).await;
                let letters = ok(sink.read_dead_letters(&subject.pipeline).await, || subject.says(check)).await;
                let letters: Vec<_> = letters.into_iter().filter(|l| l.table == t.id).collect();
                if policy == OnUnmappable::Skip {
                    assert!(letters.is_empty(), "{}: skip wrote dead letters: {letters:?}", subject.says(check));
                } else {
                    assert_eq!(letters.len(), 1, "{}: dead letters {letters:?}", subject.says(check));
                    let l = &letters[0];
                    assert_eq!(
                        l.key,
                        key_json(&t, &Change::key_of(&t, &bad)),
                        "{}: dead letter key",
                        subject.says(check)
                    );
                    assert_eq!(
                        (&l.position, l.seq),
                        (&position(base + 1), 1),
                        "{}: dead letter position",
                        subject.says(check)
                    );
                    assert_eq!(l.pipeline, subject.pipeline, "{}: dead letter pipeline", subject.says(check));
                    assert_eq!(l.sink, sink.name(), "{}: dead letter sink", subject.says(check));
                    assert!(!l.reason.is_empty(), "{}: dead letter without a reason", subject.says(check));
                }
            }
        }
        // The sink keeps flowing: a later batch writes the key again, small.
        apply(
            sink,
            subject,
            check,
            &batch(vec![upsert(&t, text_row("k2", "back")), insert(&t, text_row("k5", "five"))], base + 2),
        )
        .await;
        let got = read(sink, subject, check, &t, &[key("k2"), key("k5")]).await;
        assert_rows(subject, check, &t, &got, &[Some(text_row("k2", "back")), Some(text_row("k5", "five"))]);
    }
}
