//! Table map events → table shapes: which table a table id names in the following rows events, and
//! how to read its row images.
//!
//! Invariants:
//! - the table map's optional metadata (`binlog_row_metadata=FULL`) is the source of truth for column
//!   names, signedness, ENUM/SET labels and the primary key; MariaDB JSON columns (BLOB in the table
//!   map) are the ones the reader looked up in information_schema;
//! - a table map with a new shape (after an ALTER TABLE) yields a new `Arc<TableSchema>`; the same
//!   shape (same table-map body) reuses the last one;
//! - a table outside the filter maps its id to `None` (its rows are skipped); a selected table with
//!   an unsupported column type or no primary key is an error;
//! - text, ENUM and SET columns are read in their own character set ([`crate::charset`]): ENUM/SET
//!   labels are decoded here with the table map's ENUM/SET charsets, column names as UTF-8 (the
//!   server's system charset), and a column in a character set that cannot be decoded exactly is
//!   [`ColumnKind::Unsupported`], refused like any other unsupported type.

use super::BinlogDecoder;
use crate::charset;
use crate::decode::BINARY_CHARSET;
use crate::error::Result;
use crate::rowimage::{MapColumn, RowPlan};
use mysql_async::binlog::events::{Event, OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::consts::ColumnType;
use polyrepl_core::{Column, ColumnKind, TableId, TableSchema};
use std::sync::Arc;

/// A table's shape as decoded from a table map.
#[derive(Debug)]
pub(super) struct MappedTable {
    /// The table's schema, shared by its changes.
    pub(super) schema: Arc<TableSchema>,
    /// Character set id per column (0 for columns that are not character columns).
    pub(super) charsets: Vec<u16>,
    /// Length of each BINARY(n) column (`None` for other columns).
    pub(super) binary_len: Vec<Option<usize>>,
    /// How to read its row images (made once per shape).
    pub(super) plan: RowPlan,
    /// The table map itself, for the reference decoder debug builds compare against.
    pub(super) tme: TableMapEvent<'static>,
}

impl BinlogDecoder {
    /// A table map event: maps its table id to the table's shape, made anew when the shape is new.
    pub(super) fn on_table_map(&mut self, ev: &Event) -> Result<()> {
        let tme: TableMapEvent<'_> =
            ev.read_event().map_err(|e| self.stream_error(ev, format!("bad table map: {e}")))?;
        let id = TableId::new(tme.database_name().into_owned(), tme.table_name().into_owned());
        if !self.filter.matches(&id) {
            self.table_ids.insert(tme.table_id(), None);
            return Ok(());
        }
        let fingerprint = ev.data().get(8..).unwrap_or_default().to_vec();
        if let Some((fp, mapped)) = self.shapes.get(&id) {
            if *fp == fingerprint {
                self.table_ids.insert(tme.table_id(), Some(mapped.clone()));
                return Ok(());
            }
        }
        let json_columns = self.json_columns.get(&id).cloned().unwrap_or_default();
        let mapped = Arc::new(map_table(&id, &tme, &json_columns).map_err(|m| self.stream_error(ev, m))?);
        if let Some(c) = mapped.schema.columns.iter().find(|c| matches!(c.kind, ColumnKind::Unsupported(_))) {
            let message = match charset::refused_charset(&c.kind) {
                Some((cs, why)) => format!(
                    "column {id}.{} is in character set {cs}, which polyrepl cannot decode exactly ({why}). Fix: \
                     ALTER TABLE {} CONVERT TO CHARACTER SET utf8mb4; or exclude the table",
                    c.name,
                    crate::schema::quote_table(&id)
                ),
                None => format!("column {id}.{} has an unsupported type {:?}", c.name, c.kind),
            };
            return Err(self.stream_error(ev, message));
        }
        if mapped.schema.primary_key.is_empty() {
            return Err(self.stream_error(
                ev,
                format!("table {id} has no primary key in the binlog's table map: it cannot be replicated by key"),
            ));
        }
        tracing::debug!(table = %id, columns = mapped.schema.columns.len(), "new table shape");
        self.shapes.insert(id, (fingerprint, mapped.clone()));
        self.table_ids.insert(tme.table_id(), Some(mapped));
        Ok(())
    }

    /// The id of the table `tme` maps when it is selected and its shape is new (needs mapping).
    pub(super) fn new_shape(&self, ev: &Event, tme: &TableMapEvent<'_>) -> Option<TableId> {
        let id = TableId::new(tme.database_name().into_owned(), tme.table_name().into_owned());
        if !self.filter.matches(&id) {
            return None;
        }
        match self.shapes.get(&id) {
            Some((fp, _)) if fp.as_slice() == ev.data().get(8..).unwrap_or_default() => None,
            _ => Some(id),
        }
    }
}

/// Builds the table's schema from a table map and its optional metadata.
fn map_table(
    id: &TableId,
    tme: &TableMapEvent<'_>,
    json_columns: &[String],
) -> std::result::Result<MappedTable, String> {
    let n = tme.columns_count() as usize;
    let mut names = Vec::new();
    let mut signedness: Vec<bool> = Vec::new();
    // Labels as raw bytes in their column's character set, decoded below.
    let mut enum_labels: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut set_labels: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut primary_key: Vec<usize> = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| format!("bad table-map metadata of {id}: {e}"))? {
            OptionalMetadataField::ColumnName(cn) => {
                for name in cn.iter_names() {
                    let name = name.map_err(|e| e.to_string())?;
                    let name = String::from_utf8(name.name_raw().to_vec())
                        .map_err(|_| format!("a column name of {id} in the table map is not UTF-8"))?;
                    names.push(name);
                }
            }
            OptionalMetadataField::Signedness(bits) => signedness = bits.iter().by_vals().collect(),
            OptionalMetadataField::EnumStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(|e| e.to_string())?;
                    enum_labels.push(v.values().iter().map(|l| l.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(|e| e.to_string())?;
                    set_labels.push(v.values().iter().map(|l| l.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(pk) => {
                for i in pk.iter_indexes() {
                    primary_key.push(i.map_err(|e| e.to_string())? as usize);
                }
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                for k in pk.iter_keys() {
                    primary_key.push(k.map_err(|e| e.to_string())?.column_index() as usize);
                }
            }
            _ => {}
        }
    }
    if names.len() != n {
        return Err(format!(
            "the table map of {id} has no column names: the server does not log full row metadata. \
             Fix: SET GLOBAL binlog_row_metadata='FULL'; and in my.cnf `binlog_row_metadata = FULL`"
        ));
    }
    let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| e.to_string())?;
    let mut charset_iter = extractor.iter_charset();
    let mut enum_set_charset_iter = extractor.iter_enum_and_set_charset();
    let mut signed_iter = signedness.into_iter();
    let mut enum_iter = enum_labels.into_iter();
    let mut set_iter = set_labels.into_iter();
    let nulls = tme.null_bitmask();

    let mut columns = Vec::with_capacity(n);
    let mut charsets = Vec::with_capacity(n);
    let mut binary_len = Vec::with_capacity(n);
    let mut map_columns = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let raw = tme.get_raw_column_type(i).map_err(|e| format!("{id}.{name}: {e}"))?.ok_or("column out of range")?;
        let real = tme.get_column_type(i).map_err(|e| format!("{id}.{name}: {e}"))?.ok_or("column out of range")?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let unsigned = if raw.is_numeric_type() { signed_iter.next().unwrap_or(false) } else { false };
        let unsigned_raw = unsigned;
        let charset = if real.is_character_type() {
            charset_iter.next().transpose().map_err(|e| e.to_string())?.unwrap_or(0)
        } else if real.is_enum_or_set_type() {
            enum_set_charset_iter.next().transpose().map_err(|e| e.to_string())?.unwrap_or(0)
        } else {
            0
        };
        // ENUM/SET labels in the column's character set → UTF-8.
        let labels = |raw: Option<Vec<Vec<u8>>>, what: &str| -> std::result::Result<Vec<String>, String> {
            raw.ok_or(format!("no {what} labels for {id}.{name}"))?
                .into_iter()
                .map(|l| charset::decode(l, charset).map_err(|e| format!("a {what} label of {id}.{name}: {e}")))
                .collect()
        };
        let m = |k: usize| meta.get(k).copied().unwrap_or(0);
        use ColumnType::*;
        let mut blen = None;
        let kind = match real {
            MYSQL_TYPE_TINY => ColumnKind::TinyInt,
            MYSQL_TYPE_SHORT => ColumnKind::SmallInt,
            MYSQL_TYPE_INT24 => ColumnKind::MediumInt,
            MYSQL_TYPE_LONG => ColumnKind::Int,
            MYSQL_TYPE_LONGLONG => ColumnKind::BigInt,
            MYSQL_TYPE_FLOAT => ColumnKind::Float,
            MYSQL_TYPE_DOUBLE => ColumnKind::Double,
            MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal { precision: m(0), scale: m(1) },
            MYSQL_TYPE_STRING if charset == BINARY_CHARSET => {
                let (b0, b1) = (m(0) as usize, m(1) as usize);
                blen = Some(if (b0 & 0x30) != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 });
                ColumnKind::Binary
            }
            MYSQL_TYPE_STRING => ColumnKind::Char,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING if charset == BINARY_CHARSET => ColumnKind::VarBinary,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => ColumnKind::VarChar,
            MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
                if json_columns.contains(&name) {
                    ColumnKind::Json
                } else if charset == BINARY_CHARSET {
                    ColumnKind::Blob
                } else {
                    ColumnKind::Text
                }
            }
            MYSQL_TYPE_JSON => ColumnKind::Json,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
            MYSQL_TYPE_TIME => ColumnKind::Time { fsp: 0 },
            MYSQL_TYPE_TIME2 => ColumnKind::Time { fsp: m(0).min(6) },
            MYSQL_TYPE_DATETIME => ColumnKind::DateTime { fsp: 0 },
            MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime { fsp: m(0).min(6) },
            MYSQL_TYPE_TIMESTAMP => ColumnKind::Timestamp { fsp: 0 },
            MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp { fsp: m(0).min(6) },
            MYSQL_TYPE_YEAR => ColumnKind::Year,
            MYSQL_TYPE_BIT => ColumnKind::Bit { bits: (m(1) as u16 * 8 + m(0) as u16).clamp(1, 64) },
            MYSQL_TYPE_ENUM => {
                let raw = enum_iter.next();
                match charset::unsupported_kind_by_id("enum", charset) {
                    Some(refused) => refused,
                    None => ColumnKind::Enum { labels: labels(raw, "ENUM")? },
                }
            }
            MYSQL_TYPE_SET => {
                let raw = set_iter.next();
                match charset::unsupported_kind_by_id("set", charset) {
                    Some(refused) => refused,
                    None => ColumnKind::Set { labels: labels(raw, "SET")? },
                }
            }
            MYSQL_TYPE_GEOMETRY => ColumnKind::Unsupported("geometry".into()),
            other => ColumnKind::Unsupported(format!("{other:?}")),
        };
        // A text column in a character set that cannot be decoded exactly, named as information_schema
        // names its type.
        let text_type = match (&kind, real) {
            (ColumnKind::Char, _) => Some("char"),
            (ColumnKind::VarChar, _) => Some("varchar"),
            (ColumnKind::Text, _) => {
                Some(["tinytext", "text", "mediumtext", "longtext"][(m(0).clamp(1, 4) - 1) as usize])
            }
            _ => None,
        };
        let kind = match text_type.and_then(|t| charset::unsupported_kind_by_id(t, charset)) {
            Some(refused) => refused,
            None => kind,
        };
        // YEAR is counted among numeric columns (MariaDB marks it unsigned): not a signed/unsigned type.
        let unsigned = unsigned && kind != ColumnKind::Year;
        let nullable = nulls.get(i).map(|b| *b).unwrap_or(true);
        columns.push(Column { name, kind, unsigned, nullable });
        charsets.push(charset);
        binary_len.push(blen);
        // What mysql_common's row parser would be given for this column (`unsigned` before the YEAR rule).
        let map_unsigned = if real.is_numeric_type() { unsigned_raw } else { false };
        map_columns.push(MapColumn { col_type: real, meta, charset, binary_len: blen, map_unsigned });
    }
    let plan = RowPlan::new(&columns, &map_columns);
    drop(map_columns);
    if primary_key.iter().any(|&k| k >= n) {
        return Err(format!("primary key of {id} names a column out of range"));
    }
    Ok(MappedTable {
        schema: Arc::new(TableSchema { id: id.clone(), columns, primary_key }),
        charsets,
        binary_len,
        plan,
        tme: tme.clone().into_owned(),
    })
}
