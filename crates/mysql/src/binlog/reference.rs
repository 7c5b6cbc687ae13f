//! The reference decoder: mysql_common's row parser and [`from_binlog`] per value, what polyrepl
//! used before the row-image decoder ([`RowPlan`](crate::rowimage::RowPlan)). It is slower; debug
//! builds decode every rows event with both and fail loudly if they differ, so every integration
//! test checks the fast path against it.
//!
//! Invariants: it yields the same changes as `rows` (op, key and after image; position and seq are
//! set at commit), including the primary-key update split into `Delete` + `Insert`.

use super::rows::blank;
use super::table_map::MappedTable;
use crate::decode::from_binlog;
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use polyrepl_core::{Change, Op, Value};

/// Decodes `rows` again with the reference decoder and fails if its changes differ from `fast`
/// (the row-image decoder's changes of the same event).
pub(super) fn compare(rows: &RowsEventData<'_>, mapped: &MappedTable, fast: &[Change]) -> Result<(), String> {
    let schema = &mapped.schema;
    let mut reference = Vec::new();
    decode_rows_reference(rows, &mapped.tme, mapped, &mut reference)?;
    let same = fast.len() == reference.len()
        && fast.iter().zip(&reference).all(|(a, b)| a.op == b.op && a.key == b.key && a.after == b.after);
    if !same {
        return Err(format!(
            "internal: the row-image decoder and mysql_common's disagree on a rows event of {}: {:?} vs {:?}",
            schema.id,
            fast.iter().map(|c| (&c.op, &c.key, &c.after)).collect::<Vec<_>>(),
            reference.iter().map(|c| (&c.op, &c.key, &c.after)).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// The reference decoder: mysql_common's `BinlogRow` per image, then [`from_binlog`] per value (what
/// polyrepl used before [`RowPlan`](crate::rowimage::RowPlan); debug builds compare every rows event against it).
fn decode_rows_reference(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'static>,
    mapped: &MappedTable,
    out: &mut Vec<Change>,
) -> std::result::Result<(), String> {
    let schema = &mapped.schema;
    let kind = match rows {
        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
        RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err("partial JSON update rows: SET GLOBAL binlog_row_value_options=''".into())
        }
    };
    let decode = |row: mysql_async::binlog::row::BinlogRow, image: &str| -> std::result::Result<Vec<Value>, String> {
        if row.len() != schema.columns.len() {
            return Err(format!(
                "{} image of {} has {} of {} columns: the server does not log full row images. \
                 Fix: SET GLOBAL binlog_row_image='FULL'; and in my.cnf `binlog_row_image = FULL`",
                image,
                schema.id,
                row.len(),
                schema.columns.len()
            ));
        }
        let mut values = Vec::with_capacity(schema.columns.len());
        for (i, raw) in row.unwrap().into_iter().enumerate() {
            let column = &schema.columns[i];
            let v = from_binlog(column, raw, mapped.charsets[i], mapped.binary_len[i])
                .map_err(|m| format!("cannot decode {}.{}: {m}", schema.id, column.name))?;
            values.push(v);
        }
        Ok(values)
    };
    let blank = |op: Op, key: Vec<Value>, after: Option<Vec<Value>>| blank(schema, op, key, after);
    for item in rows.rows(tme) {
        let (before, after) = item.map_err(|e| format!("cannot parse a row of {}: {e}", schema.id))?;
        match kind {
            Op::Insert => {
                let after = decode(after.ok_or("insert without an after image")?, "after")?;
                out.push(blank(Op::Insert, Change::key_of(schema, &after), Some(after)));
            }
            Op::Delete => {
                let before = decode(before.ok_or("delete without a before image")?, "before")?;
                out.push(blank(Op::Delete, Change::key_of(schema, &before), None));
            }
            Op::Update => {
                let before = decode(before.ok_or("update without a before image")?, "before")?;
                let after = decode(after.ok_or("update without an after image")?, "after")?;
                let old_key = Change::key_of(schema, &before);
                let new_key = Change::key_of(schema, &after);
                if old_key != new_key {
                    out.push(blank(Op::Delete, old_key, None));
                    out.push(blank(Op::Insert, new_key, Some(after)));
                } else {
                    out.push(blank(Op::Update, new_key, Some(after)));
                }
            }
        }
    }
    Ok(())
}
