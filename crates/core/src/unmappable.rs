//! Rows a sink cannot hold, and what to do with them: `--on-unmappable stop|skip|dead-letter`.
//!
//! A sink finds the rows it cannot hold while it plans a batch, before writing anything (a MongoDB
//! document over the server's size limit, a Redis value over `proto-max-bulk-len`, a Cassandra
//! partition-key value over 64 KiB or a row over its mutation limit…), and hands them to its
//! [`RowPolicy`], which it was given when it was opened:
//! - [`OnUnmappable::Stop`] (the default): the batch fails with a definite error naming the row, the
//!   reason and the fix (the `--on-unmappable` flag); nothing of the batch is written.
//! - [`OnUnmappable::Skip`]: the row is left out of this sink (a WARN line, a count in
//!   [`UnmappableCounts`]); the other rows of the batch are written, the other sinks are not affected.
//! - [`OnUnmappable::DeadLetter`]: as `Skip`, and a [`DeadLetter`] record (table, key as JSON, source
//!   position, sink, reason) is written to the sink's dead-letter place with the batch.
//!
//! Invariants:
//! - A row left out never leaves an older image of itself behind: when the sink can address the key,
//!   the key is deleted instead (the sink holds no row for it; `verify` reports it missing), so the sink
//!   never serves a stale row as current.
//! - Only what the sink would write counts: a key's last image in the batch (earlier images of the same
//!   key collapse away and are never written).
//! - Counts and WARN lines are recorded only once the batch is stored ([`RowPolicy::record`]); a
//!   dead-letter record has a stable id per change ([`DeadLetter::id`]), so a replayed batch rewrites
//!   the same record instead of adding one.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{Change, Op, Position, SinkError, TableId, TableSchema, Value};

/// The flag (and config-file key `on_unmappable`) that chooses the policy.
pub const FLAG: &str = "--on-unmappable";

/// What a sink does with a row it cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnmappable {
    /// Fail the batch with a definite error that names the row and the fix.
    #[default]
    Stop,
    /// Leave the row out of this sink, with a WARN line and a count.
    Skip,
    /// Leave the row out and record it in the sink's dead-letter place.
    DeadLetter,
}

impl OnUnmappable {
    /// The flag's value: `stop`, `skip` or `dead-letter`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnmappable::Stop => "stop",
            OnUnmappable::Skip => "skip",
            OnUnmappable::DeadLetter => "dead-letter",
        }
    }
}

impl std::fmt::Display for OnUnmappable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnUnmappable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop" => Ok(OnUnmappable::Stop),
            "skip" => Ok(OnUnmappable::Skip),
            "dead-letter" | "dead_letter" => Ok(OnUnmappable::DeadLetter),
            other => Err(format!("{FLAG} '{other}': expected stop, skip or dead-letter")),
        }
    }
}

/// Rows left out per source table (`db.table`), since the sink was opened.
#[derive(Debug, Default)]
pub struct UnmappableCounts {
    skipped: Mutex<BTreeMap<String, u64>>,
    dead_lettered: Mutex<BTreeMap<String, u64>>,
}

impl UnmappableCounts {
    /// Rows skipped (policy `skip`), per table.
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        self.skipped.lock().expect("counts").clone()
    }

    /// Rows dead-lettered (policy `dead-letter`), per table.
    pub fn dead_lettered(&self) -> BTreeMap<String, u64> {
        self.dead_lettered.lock().expect("counts").clone()
    }

    /// Counts one row of `table` skipped.
    pub fn add_skipped(&self, table: &TableId) {
        Self::add(&self.skipped, table);
    }

    /// Counts one row of `table` dead-lettered.
    pub fn add_dead_lettered(&self, table: &TableId) {
        Self::add(&self.dead_lettered, table);
    }

    fn add(map: &Mutex<BTreeMap<String, u64>>, table: &TableId) {
        *map.lock().expect("counts").entry(table.to_string()).or_default() += 1;
    }
}

/// A sink's policy for rows it cannot hold, and its counts; given to the sink when it is opened.
#[derive(Debug, Clone, Default)]
pub struct RowPolicy {
    pub on_unmappable: OnUnmappable,
    /// Shared with whoever reports metrics.
    pub counts: Arc<UnmappableCounts>,
}

/// One row of a batch the sink cannot hold.
#[derive(Debug, Clone)]
pub struct Unmappable<'a> {
    /// The change whose image the sink would have written (the key's last change in the batch).
    pub change: &'a Change,
    /// Why, with the figures (`the document is 17825792 bytes, over the server's 16777216`).
    pub reason: String,
    /// Whether the sink can still address the key: it then deletes it, so no older image stays. False
    /// when the key itself cannot be held (such a key cannot be in the sink).
    pub remove_key: bool,
}

impl RowPolicy {
    /// A policy with fresh counts.
    pub fn new(on_unmappable: OnUnmappable) -> RowPolicy {
        RowPolicy { on_unmappable, counts: Arc::default() }
    }

    /// `Ok` when the batch may go on without `rows` (policy `skip` or `dead-letter`, or no such row);
    /// with `stop`, the definite error naming the first row, the reason and the fix. `place` says where
    /// the sink keeps dead letters, for the message.
    pub fn check(&self, sink: &str, rows: &[Unmappable], place: &str) -> Result<(), SinkError> {
        let Some(first) = rows.first() else { return Ok(()) };
        if self.on_unmappable != OnUnmappable::Stop {
            return Ok(());
        }
        let more = match rows.len() {
            1 => String::new(),
            n => format!(" (and {} more row(s) of this batch)", n - 1),
        };
        Err(SinkError::definite(
            sink,
            format!(
                "{} cannot be held: {}{more}. This sink stops here (policy {FLAG} stop). Fix: run with {FLAG} skip \
                 to leave such rows out of this sink (a WARN line and a count each), or {FLAG} dead-letter to also \
                 record them in {place}; the other rows and sinks keep flowing either way. Or change the row in the \
                 source, or leave the table out (--exclude {})",
                describe(first.change),
                first.reason,
                first.change.table.id
            ),
        ))
    }

    /// The dead-letter records of `rows` to write with the batch (none unless the policy is
    /// `dead-letter`).
    pub fn dead_letters(&self, sink: &str, pipeline: &str, rows: &[Unmappable]) -> Vec<DeadLetter> {
        if self.on_unmappable != OnUnmappable::DeadLetter {
            return Vec::new();
        }
        rows.iter().map(|r| DeadLetter::new(pipeline, sink, r.change, &r.reason)).collect()
    }

    /// Counts and logs `rows` once the batch that left them out is stored.
    pub fn record(&self, sink: &str, rows: &[Unmappable]) {
        self.record_left_out(sink, &self.left_out(rows))
    }

    /// What [`RowPolicy::record`] says of `rows`, owned, for a batch whose writes are sent after the
    /// batch itself is gone ([`crate::Sink::stage`]).
    pub fn left_out(&self, rows: &[Unmappable]) -> LeftOut {
        if self.on_unmappable == OnUnmappable::Stop {
            return LeftOut::default();
        }
        LeftOut(
            rows.iter()
                .map(|row| LeftOutRow {
                    table: row.change.table.id.clone(),
                    key: key_json(&row.change.table, &row.change.key).to_string(),
                    position: row.change.position.to_string(),
                    reason: row.reason.clone(),
                })
                .collect(),
        )
    }

    /// Counts and logs rows left out (see [`RowPolicy::left_out`]) once their batch is stored.
    pub fn record_left_out(&self, sink: &str, left_out: &LeftOut) {
        for row in &left_out.0 {
            let what = match self.on_unmappable {
                OnUnmappable::Stop => return,
                OnUnmappable::Skip => {
                    self.counts.add_skipped(&row.table);
                    "skipped"
                }
                OnUnmappable::DeadLetter => {
                    self.counts.add_dead_lettered(&row.table);
                    "dead-lettered"
                }
            };
            tracing::warn!(
                sink,
                table = %row.table,
                key = %row.key,
                position = %row.position,
                reason = %row.reason,
                "a row this sink cannot hold was {what} ({FLAG} {})",
                self.on_unmappable
            );
        }
    }
}

/// Rows a batch left out, as [`RowPolicy::record_left_out`] reports them.
#[derive(Debug, Clone, Default)]
pub struct LeftOut(Vec<LeftOutRow>);

#[derive(Debug, Clone)]
struct LeftOutRow {
    table: TableId,
    key: String,
    position: String,
    reason: String,
}

/// `table db.t row {"id":7} (change at binlog.000001:4, seq 0)`.
fn describe(change: &Change) -> String {
    format!(
        "table {} row {} (change at {}, seq {})",
        change.table.id,
        key_json(&change.table, &change.key),
        change.position,
        change.seq
    )
}

/// A row left out of a sink, as recorded in the sink's dead-letter place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The pipeline (`--name`) that left it out.
    pub pipeline: String,
    /// The sink's name (no credentials).
    pub sink: String,
    pub table: TableId,
    /// The primary key as JSON ([`key_json`]).
    pub key: serde_json::Value,
    /// The change's operation.
    pub op: Op,
    /// Where the change was committed on the source, and its index in that transaction.
    pub position: Position,
    pub seq: u32,
    /// Why the sink cannot hold it.
    pub reason: String,
    /// The change's commit time on the source (seconds since the epoch, 0 when unknown).
    pub source_ts: u32,
}

impl DeadLetter {
    /// The record of `change`, left out of `sink` by `pipeline` because of `reason`.
    pub fn new(pipeline: &str, sink: &str, change: &Change, reason: &str) -> DeadLetter {
        DeadLetter {
            pipeline: pipeline.to_string(),
            sink: sink.to_string(),
            table: change.table.id.clone(),
            key: key_json(&change.table, &change.key),
            op: change.op,
            position: change.position.clone(),
            seq: change.seq,
            reason: reason.to_string(),
            source_ts: change.source_ts,
        }
    }

    /// A stable id of the change within its pipeline: position, seq, table and a hash of the key (two
    /// snapshot chunks share a position, so the key is part of it). A replay gives the same id.
    pub fn id(&self) -> String {
        let key = xxhash_rust::xxh3::xxh3_64(self.key.to_string().as_bytes());
        format!("{}:{}:{}:{}:{key:016x}", self.position.file, self.position.offset, self.seq, self.table)
    }

    /// The record as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter serializes")
    }

    /// A record read back from JSON text.
    pub fn from_json(text: &str) -> Result<DeadLetter, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Bytes of the compact JSON text of `json` (what text-storing sinks write), counted without building
/// the text.
pub fn json_text_len(json: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, json);
    count.0
}

/// A primary key as a JSON object `{column: value}` (columns in key order):
/// integers as numbers, binary values as `0x…` hex, everything else as MySQL prints it.
pub fn key_json(table: &TableSchema, key: &[Value]) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (column, value) in table.key_columns().zip(key) {
        let json = match value {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => (*i).into(),
            Value::UInt(u) => (*u).into(),
            Value::Bytes(b) => {
                let mut hex = String::with_capacity(2 + 2 * b.len());
                hex.push_str("0x");
                for byte in b {
                    hex.push_str(&format!("{byte:02x}"));
                }
                hex.into()
            }
            other => other.mysql_text().unwrap_or_default().into(),
        };
        object.insert(column.name.clone(), json);
    }
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, ColumnKind};

    fn change() -> Change {
        let col = |n: &str, kind| Column { name: n.into(), kind, unsigned: false, nullable: false };
        let table = Arc::new(TableSchema {
            id: TableId::new("shop", "orders"),
            columns: vec![col("id", ColumnKind::Int), col("b", ColumnKind::VarBinary), col("v", ColumnKind::Text)],
            primary_key: vec![0, 1],
        });
        Change {
            position: Position::new("binlog.000002", 77),
            seq: 3,
            table,
            op: Op::Update,
            key: vec![Value::Int(-7), Value::Bytes(vec![0, 255])],
            after: Some(vec![Value::Int(-7), Value::Bytes(vec![0, 255]), Value::String("x".into())]),
            source_ts: 5,
        }
    }

    #[test]
    fn stop_names_the_row_and_the_flag_and_the_others_go_on() {
        let c = change();
        let rows = [Unmappable { change: &c, reason: "too big".into(), remove_key: true }];
        let err = RowPolicy::default().check("s", &rows, "the place").unwrap_err();
        assert!(!err.is_transient());
        let text = err.to_string();
        for needle in [
            "shop.orders",
            "{\"id\":-7,\"b\":\"0x00ff\"}",
            "binlog.000002:77",
            "too big",
            "--on-unmappable skip",
            "dead-letter",
            "the place",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(RowPolicy::default().check("s", &[], "p").is_ok());
        for policy in [OnUnmappable::Skip, OnUnmappable::DeadLetter] {
            assert!(RowPolicy::new(policy).check("s", &rows, "p").is_ok());
        }
        assert!(RowPolicy::new(OnUnmappable::Skip).dead_letters("s", "p", &rows).is_empty());
    }

    #[test]
    fn dead_letters_round_trip_with_a_stable_id_and_counts_follow_the_policy() {
        let c = change();
        let rows = [Unmappable { change: &c, reason: "too big".into(), remove_key: false }];
        let policy = RowPolicy::new(OnUnmappable::DeadLetter);
        let letters = policy.dead_letters("sink", "pipe", &rows);
        assert_eq!(letters.len(), 1);
        let back = DeadLetter::from_json(&letters[0].to_json()).unwrap();
        assert_eq!(back, letters[0]);
        assert_eq!(back.id(), policy.dead_letters("sink", "pipe", &rows)[0].id());
        assert!(back.id().starts_with("binlog.000002:77:3:shop.orders:"), "{}", back.id());
        policy.record("sink", &rows);
        policy.record("sink", &rows);
        assert_eq!(policy.counts.dead_lettered().get("shop.orders"), Some(&2));
        assert!(policy.counts.skipped().is_empty());
        let skip = RowPolicy::new(OnUnmappable::Skip);
        skip.record("sink", &rows);
        assert_eq!(skip.counts.skipped().get("shop.orders"), Some(&1));
        assert_eq!("dead-letter".parse::<OnUnmappable>(), Ok(OnUnmappable::DeadLetter));
        assert!("later".parse::<OnUnmappable>().unwrap_err().contains("stop, skip or dead-letter"));
        let j = serde_json::json!({"a": [1, "ü", null]});
        assert_eq!(json_text_len(&j), j.to_string().len());
    }
}
