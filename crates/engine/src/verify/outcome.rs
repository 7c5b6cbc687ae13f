//! What `verify` found, per table × sink: the differences, what a repair wrote, what remains.

use polyrepl_core::{TableId, Value};

/// How a sink row differs from the source row with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The source has the row, the sink does not.
    Missing,
    /// The sink has a row the source does not.
    Extra,
    /// Both have the row, with different values in some columns.
    Different,
}

/// One divergent key.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub key: Vec<Value>,
    pub kind: Kind,
    /// The differing columns (only for [`Kind::Different`]), in column order.
    pub columns: Vec<String>,
}

/// Rows `--repair` wrote into a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Rows re-written from the source (missing or different).
    pub upserted: u64,
    /// Rows deleted (extra).
    pub deleted: u64,
}

/// The outcome for one table in one sink.
#[derive(Debug, Clone)]
pub struct PairReport {
    pub table: TableId,
    pub sink: String,
    /// Source rows compared with the sink.
    pub compared: u64,
    /// Differences confirmed after the live re-check (before any repair).
    pub found: Vec<Difference>,
    /// Set when `--repair` ran for this pair.
    pub repaired: Option<Repaired>,
    /// Differences left after the repair and its re-check (equals `found` without `--repair`).
    pub remaining: Vec<Difference>,
    /// Anything the reader should know about how reliable this pair's result is.
    pub notes: Vec<String>,
}

impl PairReport {
    /// How many of `list` are of `kind`.
    pub fn count(list: &[Difference], kind: Kind) -> usize {
        list.iter().filter(|d| d.kind == kind).count()
    }
}

/// Total differences still present over every pair (what decides the exit code).
pub fn remaining_total(reports: &[PairReport]) -> usize {
    reports.iter().map(|r| r.remaining.len()).sum()
}

/// The order keys are listed in: numbers by value, bytes by bytes, other values by their MySQL text.
pub fn key_order(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Value::Int(x), Value::Int(y)) => x.cmp(y),
            (Value::UInt(x), Value::UInt(y)) => x.cmp(y),
            (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
            (x, y) => x.mysql_text().cmp(&y.mysql_text()),
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}
