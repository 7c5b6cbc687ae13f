//! Rows events → changes of the open transaction, decoded with the table's
//! [`RowPlan`](crate::rowimage::RowPlan).
//!
//! Invariants:
//! - rows of a table id without a table map are an error; rows of a table outside the filter are
//!   skipped;
//! - every column must be in every image (`binlog_row_image=FULL`);
//! - changes get their position and seq at commit, or when a large transaction's part is emitted
//!   (`transaction`);
//! - an update that changes the primary key becomes `Delete(old key)` + `Insert(new row)`;
//! - debug builds decode every rows event again with the reference decoder (`reference`) and fail
//!   loudly if the two differ.

use super::table_map::MappedTable;
use super::{reference, BinlogDecoder, SourceEvent};
use crate::error::Result;
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use polyrepl_core::{Change, Op, Position, TableSchema, Value};
use std::sync::Arc;

impl BinlogDecoder {
    /// A rows event: its changes join the pending ones; a large transaction's part when enough are
    /// pending.
    pub(super) fn on_rows(&mut self, ev: &Event) -> Result<Option<SourceEvent>> {
        let Some(EventData::RowsEvent(rows)) =
            ev.read_data().map_err(|e| self.stream_error(ev, format!("bad rows event: {e}")))?
        else {
            return Err(self.stream_error(ev, "rows event without a body"));
        };
        let mapped = match self.table_ids.get(&rows.table_id()) {
            None => {
                return Err(self.stream_error(ev, format!("rows for table id {} without a table map", rows.table_id())))
            }
            Some(None) => return Ok(None),
            Some(Some(m)) => m.clone(),
        };
        let mut out = std::mem::take(&mut self.pending);
        if out.capacity() == 0 {
            // Most transactions are alike: size for the last one.
            out.reserve(self.last_len);
        }
        let res = decode_rows(&rows, &mapped, &mut out);
        self.pending = out;
        res.map_err(|m| self.stream_error(ev, m))?;
        Ok(self.take_part(ev.header().log_pos() as u64, ev.header().timestamp()))
    }
}

/// Decodes a rows event into changes (position/seq are set at commit) with the table's
/// [`RowPlan`](crate::rowimage::RowPlan). Debug builds also decode it with mysql_common's row parser
/// ([`reference::compare`]) and fail loudly if the two differ, so every integration test checks the
/// fast path against the reference.
fn decode_rows(
    rows: &RowsEventData<'_>,
    mapped: &MappedTable,
    out: &mut Vec<Change>,
) -> std::result::Result<(), String> {
    let schema = &mapped.schema;
    let kind = row_op(rows)?;
    let n = schema.columns.len();
    // Every column must be in every image (binlog_row_image=FULL), as the reference requires.
    for (bits, image) in [(rows.columns_before_image(), "before"), (rows.columns_after_image(), "after")] {
        let Some(bits) = bits else { continue };
        let present = bits.count_ones();
        if present != n || rows.num_columns() as usize != n {
            return Err(not_full(schema, image, present));
        }
    }
    let first = out.len();
    let mut buf = rows.rows_data();
    let read = |buf: &mut &[u8]| mapped.plan.read_row(schema, buf);
    // Only the key of a before image is used: its other columns are checked, not built.
    let read_key = |buf: &mut &[u8]| mapped.plan.read_key(schema, buf);
    while !buf.is_empty() {
        match kind {
            Op::Insert => {
                let after = read(&mut buf)?;
                out.push(blank(schema, Op::Insert, Change::key_of(schema, &after), Some(after)));
            }
            Op::Delete => {
                let key = read_key(&mut buf)?;
                out.push(blank(schema, Op::Delete, key, None));
            }
            Op::Update => {
                let old_key = read_key(&mut buf)?;
                let after = read(&mut buf)?;
                push_update(schema, old_key, after, out);
            }
        }
    }
    if cfg!(debug_assertions) {
        reference::compare(rows, mapped, &out[first..])?;
    }
    Ok(())
}

/// The operation of a rows event.
fn row_op(rows: &RowsEventData<'_>) -> std::result::Result<Op, String> {
    Ok(match rows {
        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
        RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err("partial JSON update rows: SET GLOBAL binlog_row_value_options=''".into())
        }
    })
}

/// The error of an image without every column.
fn not_full(schema: &TableSchema, image: &str, present: usize) -> String {
    format!(
        "{} image of {} has {} of {} columns: the server does not log full row images. \
         Fix: SET GLOBAL binlog_row_image='FULL'; and in my.cnf `binlog_row_image = FULL`",
        image,
        schema.id,
        present,
        schema.columns.len()
    )
}

/// A change without its position (set at commit).
pub(super) fn blank(schema: &Arc<TableSchema>, op: Op, key: Vec<Value>, after: Option<Vec<Value>>) -> Change {
    Change {
        position: Position { file: String::new(), offset: 0, gtid: None, part: None },
        seq: 0,
        table: schema.clone(),
        op,
        key,
        after,
        source_ts: 0,
    }
}

/// An update; one that changes the primary key becomes delete(old key) + insert(new row).
fn push_update(schema: &Arc<TableSchema>, old_key: Vec<Value>, after: Vec<Value>, out: &mut Vec<Change>) {
    let new_key = Change::key_of(schema, &after);
    if old_key != new_key {
        out.push(blank(schema, Op::Delete, old_key, None));
        out.push(blank(schema, Op::Insert, new_key, Some(after)));
    } else {
        out.push(blank(schema, Op::Update, new_key, Some(after)));
    }
}
