//! The first pass over one table: source chunks by primary key against every sink, then the sinks' own
//! keys for rows the source lacks. What differs here is only a *suspect*: on a live system the sink may
//! simply not have caught up yet ([`super::recheck`] settles that).
//!
//! Invariants:
//! - Memory is bounded by the chunk size: one source chunk and one sink answer at a time, plus the
//!   suspects (bounded by the number of differences).
//! - A chunk is compared row by row only when its checksum ([`polyrepl_core::rowhash`]) differs between
//!   the source and the sink; equal checksums mean equal rows (XXH3-128 over an unambiguous encoding).
//! - Rows are equal when their canonical encodings are equal, the same rule the checksum follows.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use polyrepl_core::rowhash::{chunk_hash, row_bytes};
use polyrepl_core::{Change, Row, Sink, TableSchema, Value};
use polyrepl_mysql::SourceReader;

use super::outcome::{Difference, Kind};
use super::Progress;

/// Divergent keys of one table in one sink, by the canonical encoding of the key (deduplicated, ordered).
pub type Suspects = BTreeMap<Vec<u8>, Vec<Value>>;

/// Result of the first pass for one table in one sink.
#[derive(Debug, Default)]
pub struct FirstPass {
    /// Source rows compared.
    pub compared: u64,
    pub suspects: Suspects,
}

/// How `sink` differs from `source` for one key, or `None` when they agree.
pub fn verdict(table: &TableSchema, key: &[Value], source: Option<&Row>, sink: Option<&Row>) -> Option<Difference> {
    let kind = match (source, sink) {
        (None, None) => return None,
        (Some(_), None) => Kind::Missing,
        (None, Some(_)) => Kind::Extra,
        (Some(a), Some(b)) => {
            if row_bytes(a) == row_bytes(b) {
                return None;
            }
            let columns = table
                .columns
                .iter()
                .enumerate()
                .filter(|&(i, _)| {
                    let (x, y) = (a.get(i), b.get(i));
                    x.map(|v| row_bytes(std::slice::from_ref(v))) != y.map(|v| row_bytes(std::slice::from_ref(v)))
                })
                .map(|(_, c)| c.name.clone())
                .collect();
            return Some(Difference { key: key.to_vec(), kind: Kind::Different, columns });
        }
    };
    Some(Difference { key: key.to_vec(), kind, columns: Vec::new() })
}

/// Compares every row of `table` with every sink, then looks for extra rows in each sink.
pub async fn first_pass(
    reader: &mut SourceReader,
    sinks: &mut [Box<dyn Sink>],
    table: &TableSchema,
    chunk_rows: usize,
    progress: &mut dyn Progress,
) -> Result<Vec<FirstPass>> {
    let started = std::time::Instant::now();
    let mut passes: Vec<FirstPass> = sinks.iter().map(|_| FirstPass::default()).collect();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let rows = reader
            .read_chunk(table, after.as_deref(), chunk_rows)
            .await
            .map_err(EngineError::source_step(format!("reading {} from the source", table.id)))?;
        if rows.is_empty() {
            break;
        }
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| Change::key_of(table, r)).collect();
        let source_hash = chunk_hash(rows.iter().map(Some));
        for (sink, pass) in sinks.iter_mut().zip(&mut passes) {
            let found = sink.read_rows(table, &keys).await.map_err(EngineError::sink_step(format!(
                "reading {} from {}",
                table.id,
                sink.name()
            )))?;
            if chunk_hash(found.iter().map(Option::as_ref)) != source_hash {
                for ((key, row), theirs) in keys.iter().zip(&rows).zip(&found) {
                    if verdict(table, key, Some(row), theirs.as_ref()).is_some() {
                        pass.suspects.insert(row_bytes(key), key.clone());
                    }
                }
            }
            pass.compared += rows.len() as u64;
        }
        progress.add(rows.len() as u64);
        let full = rows.len() >= chunk_rows;
        after = keys.into_iter().last();
        if !full {
            break;
        }
    }
    tracing::debug!(table = %table.id, seconds = started.elapsed().as_secs_f64(), "rows compared");
    for (sink, pass) in sinks.iter_mut().zip(&mut passes) {
        let started = std::time::Instant::now();
        find_extra(reader, sink.as_mut(), table, chunk_rows, &mut pass.suspects).await?;
        tracing::debug!(table = %table.id, sink = sink.name(), seconds = started.elapsed().as_secs_f64(), "sink keys listed");
    }
    Ok(passes)
}

/// Pages through the sink's keys of `table`; keys the source does not have become suspects.
async fn find_extra(
    reader: &mut SourceReader,
    sink: &mut dyn Sink,
    table: &TableSchema,
    page: usize,
    suspects: &mut Suspects,
) -> Result<()> {
    let mut cursor = None;
    loop {
        let (keys, next) = sink.scan_keys(table, cursor, page).await.map_err(EngineError::sink_step(format!(
            "listing the keys of {} in {}",
            table.id,
            sink.name()
        )))?;
        let source = reader
            .read_keys(table, &keys)
            .await
            .map_err(EngineError::source_step(format!("reading {} from the source by key", table.id)))?;
        for (key, row) in keys.into_iter().zip(source) {
            if key.iter().any(Value::is_null) {
                // No source row has a NULL key part, and no sink can address such a key to re-read or
                // repair it: a stray document/row written by hand.
                tracing::warn!(table = %table.id, sink = sink.name(), ?key, "a key in the sink has a NULL part and cannot be a replicated row; skipped");
                continue;
            }
            if row.is_none() {
                suspects.insert(row_bytes(&key), key);
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    #[test]
    fn verdicts_name_the_differing_columns() {
        let col = |n: &str| Column { name: n.into(), kind: ColumnKind::VarChar, unsigned: false, nullable: true };
        let t = TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![col("id"), col("a"), col("b")],
            primary_key: vec![0],
        };
        let row = |a: Value, b: Value| vec![Value::Int(1), a, b];
        let key = [Value::Int(1)];
        let s = |v: &str| Value::String(v.into());
        assert_eq!(verdict(&t, &key, Some(&row(s("x"), s("y"))), Some(&row(s("x"), s("y")))), None);
        let d = verdict(&t, &key, Some(&row(s("x"), Value::Null)), Some(&row(s("x"), s("")))).unwrap();
        assert_eq!((d.kind, d.columns), (Kind::Different, vec!["b".to_string()]));
        assert_eq!(verdict(&t, &key, Some(&row(s("x"), s("y"))), None).unwrap().kind, Kind::Missing);
        assert_eq!(verdict(&t, &key, None, Some(&row(s("x"), s("y")))).unwrap().kind, Kind::Extra);
        assert_eq!(verdict(&t, &key, None, None), None);
    }
}
