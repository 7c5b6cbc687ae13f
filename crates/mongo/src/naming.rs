//! Where a source row lives in MongoDB: database = source database, collection = table,
//! `_id` = the primary key, one field per column named like the column.
//!
//! Invariants:
//! - `_id` of a single-column key is the mapped key value; of a composite key, a sub-document
//!   `{column: value, ...}` in key order (field order is part of equality in MongoDB, so it is fixed).
//! - The same key always gives the same `_id` bytes: writes, deletes and `read_rows` agree.
//! - A column named `_id` is allowed only when it is the whole primary key (it then *is* the `_id`).

use mongodb::bson::{Bson, Document, RawBson, RawDocumentBuf};
use polyrepl_core::{TableSchema, Value};

use crate::checkpoint::{CHECKPOINT_COLLECTION, CHECKPOINT_DATABASE};
use crate::dead_letter::DEAD_LETTER_COLLECTION;
use crate::lease::LEASE_COLLECTION;

/// The collections of database `polyrepl` where polyrepl keeps its own state: a source table that
/// would be stored in one of them is refused.
pub const OWN_COLLECTIONS: &[&str] = &[CHECKPOINT_COLLECTION, LEASE_COLLECTION, DEAD_LETTER_COLLECTION];
use crate::mapping::Mapping;

/// The field holding the primary key in every document.
pub const ID_FIELD: &str = "_id";

/// Why a table cannot be stored in MongoDB.
pub fn check_table(table: &TableSchema) -> Result<(), String> {
    check_names(table)?;
    table.check_primary_key("documents could not be addressed by _id")?;
    if let Some(i) = table.column_index(ID_FIELD) {
        if table.primary_key != [i] {
            return Err(format!(
                "table {} has a column named _id that is not its whole primary key: it would clash with MongoDB's _id",
                table.id
            ));
        }
    }
    for column in &table.columns {
        if column.name.is_empty()
            || column.name.starts_with('$')
            || column.name.contains('.')
            || column.name.contains('\0')
        {
            return Err(format!(
                "column '{}' of {} cannot be a MongoDB field name (empty, starts with '$' or contains '.')",
                column.name, table.id
            ));
        }
    }
    Ok(())
}

/// The part of [`check_table`] about names only: enough to empty or drop a table's collection by name.
pub fn check_names(table: &TableSchema) -> Result<(), String> {
    let db = &table.id.database;
    let coll = &table.id.table;
    if db.is_empty() || db.len() > 63 || db.chars().any(|c| "/\\. \"$*<>:|?\0".contains(c)) {
        return Err(format!(
            "source database name '{db}' is not a valid MongoDB database name (1–63 bytes, none of /\\. \"$*<>:|?)"
        ));
    }
    if coll.is_empty() || coll.contains('$') || coll.contains('\0') || coll.starts_with("system.") {
        return Err(format!(
            "table name '{coll}' of {} is not a valid MongoDB collection name (no '$', not 'system.*')",
            table.id
        ));
    }
    if db == CHECKPOINT_DATABASE && OWN_COLLECTIONS.contains(&coll.as_str()) {
        return Err(format!(
            "table {} would be stored in {CHECKPOINT_DATABASE}.{coll}, where polyrepl keeps its own state \
             (checkpoints, leases, dead letters): exclude the table",
            table.id
        ));
    }
    Ok(())
}

/// The `_id` for `key` (values in key order) of `table`.
pub fn document_id(mapping: &Mapping, table: &TableSchema, key: &[Value]) -> Result<Bson, String> {
    if key.len() != table.primary_key.len() {
        return Err(format!(
            "table {}: a change carries {} key values but the primary key has {} columns",
            table.id,
            key.len(),
            table.primary_key.len()
        ));
    }
    if key.iter().any(Value::is_null) {
        return Err(format!("table {}: a change has a NULL primary-key value", table.id));
    }
    let mut parts: Vec<Bson> =
        table.primary_key.iter().zip(key).map(|(&i, v)| mapping.to_bson(&table.columns[i], v)).collect();
    // A zero date has no BSON form (it maps to null): as a key it would merge distinct rows.
    if let Some(at) = parts.iter().position(|b| *b == Bson::Null) {
        return Err(format!(
            "table {}: primary key column '{}' holds {}, which has no MongoDB form and cannot be part of an _id. \
             Fix: give the row a real value in the source, or exclude the table",
            table.id,
            table.columns[table.primary_key[at]].name,
            key[at].mysql_text().unwrap_or_else(|| "NULL".into())
        ));
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    let mut id = Document::new();
    for (&index, bson) in table.primary_key.iter().zip(parts) {
        id.insert(table.columns[index].name.clone(), bson);
    }
    Ok(Bson::Document(id))
}

/// The full document for `row` (values in column order): `_id` first, then one field per column.
pub fn row_document(mapping: &Mapping, table: &TableSchema, id: Bson, row: &[Value]) -> Result<Document, String> {
    check_row_len(table, row)?;
    let mut doc = Document::new();
    doc.insert(ID_FIELD, id);
    for (column, value) in table.columns.iter().zip(row) {
        if column.name == ID_FIELD {
            continue;
        }
        doc.insert(column.name.clone(), mapping.to_bson(column, value));
    }
    Ok(doc)
}

/// A row must hold one value per column of its table.
fn check_row_len(table: &TableSchema, row: &[Value]) -> Result<(), String> {
    if row.len() != table.columns.len() {
        return Err(format!(
            "table {}: a row has {} values but the table has {} columns",
            table.id,
            row.len(),
            table.columns.len()
        ));
    }
    Ok(())
}

/// [`row_document`] built straight as raw BSON, the form every write command sends: no ordered map of
/// owned field names to build and serialize afterwards (that was a third of the sink's time).
pub fn row_raw_document(
    mapping: &Mapping,
    table: &TableSchema,
    id: &Bson,
    row: &[Value],
) -> Result<RawDocumentBuf, String> {
    check_row_len(table, row)?;
    let mut doc = RawDocumentBuf::new();
    let encoding =
        |what: &str, e: mongodb::bson::raw::Error| format!("table {}: encoding {what} as BSON: {e}", table.id);
    doc.append(ID_FIELD, RawBson::try_from(id.clone()).map_err(|e| encoding(ID_FIELD, e))?);
    for (column, value) in table.columns.iter().zip(row) {
        if column.name == ID_FIELD {
            continue;
        }
        mapping.append_raw(&mut doc, &column.name, column, value).map_err(|e| encoding(&column.name, e))?;
    }
    Ok(doc)
}

/// Bytes that identify an `_id` exactly (BSON equality of the value, including its type).
pub fn id_bytes(id: &Bson) -> Vec<u8> {
    // The common `_id`s written by hand (one per change of every batch); the bytes are those of the
    // wrapper document below, `{k: id}` (unit test).
    let wrapped = |tag: u8, value: &[u8]| {
        let len = 4 + 1 + 2 + value.len() + 1;
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&(len as i32).to_le_bytes());
        bytes.extend_from_slice(&[tag, b'k', 0]);
        bytes.extend_from_slice(value);
        bytes.push(0);
        bytes
    };
    match id {
        Bson::Int32(v) => return wrapped(0x10, &v.to_le_bytes()),
        Bson::Int64(v) => return wrapped(0x12, &v.to_le_bytes()),
        // Under 1 MiB every length below fits BSON's i32 (a key's text is at most a few KiB).
        Bson::String(s) if s.len() < 1 << 20 => {
            let mut value = Vec::with_capacity(4 + s.len() + 1);
            value.extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
            value.extend_from_slice(s.as_bytes());
            value.push(0);
            return wrapped(0x02, &value);
        }
        _ => {}
    }
    match RawBson::try_from(id.clone()) {
        Ok(raw) => {
            let mut wrapper = RawDocumentBuf::new();
            wrapper.append("k", raw);
            wrapper.into_bytes()
        }
        Err(_) => format!("{id:?}").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    fn table(db: &str, name: &str) -> TableSchema {
        let id = Column { name: "id".into(), kind: ColumnKind::Int, unsigned: false, nullable: false };
        TableSchema { id: TableId::new(db, name), columns: vec![id], primary_key: vec![0] }
    }

    #[test]
    fn id_bytes_written_by_hand_are_the_wrapper_document() {
        let ids = [Bson::Int32(-7), Bson::Int64(i64::MIN), Bson::String("ké\0y".into()), Bson::String(String::new())];
        for id in ids {
            let mut wrapper = RawDocumentBuf::new();
            wrapper.append("k", RawBson::try_from(id.clone()).unwrap());
            assert_eq!(id_bytes(&id), wrapper.into_bytes(), "{id:?}");
        }
    }

    #[test]
    fn raw_rows_are_the_bytes_of_the_document_rows() {
        use polyrepl_core::{Date, DateTime};
        let column = |name: &str, kind: ColumnKind| Column { name: name.into(), kind, unsigned: false, nullable: true };
        let table = TableSchema {
            id: TableId::new("d", "t"),
            columns: vec![
                column("id", ColumnKind::BigInt),
                column("s", ColumnKind::VarChar),
                column("b", ColumnKind::VarBinary),
                column("dt6", ColumnKind::DateTime { fsp: 6 }),
                column("ts6", ColumnKind::Timestamp { fsp: 6 }),
                column("dt3", ColumnKind::DateTime { fsp: 3 }),
                column("zero", ColumnKind::DateTime { fsp: 6 }),
                column("n", ColumnKind::Int),
                column("none", ColumnKind::Int),
            ],
            primary_key: vec![0],
        };
        let at = |year, fsp| DateTime {
            date: Date { year, month: 2, day: 3 },
            hour: 4,
            minute: 5,
            second: 6,
            micros: 789_012,
            fsp,
        };
        let row = vec![
            Value::Int(1),
            Value::String("a\0é".into()),
            Value::Bytes(vec![0, 255]),
            Value::DateTime(at(2024, 6)),
            Value::Timestamp(at(1999, 6)),
            Value::DateTime(at(2024, 3)),
            Value::DateTime(DateTime { date: Date { year: 0, month: 0, day: 0 }, ..at(0, 6) }),
            Value::Int(-5),
            Value::Null,
        ];
        let mapping = Mapping::new(crate::mapping::ServerFeatures::MONGODB, Default::default());
        let id = Bson::Int64(1);
        let expected =
            RawDocumentBuf::from_document(&row_document(&mapping, &table, id.clone(), &row).unwrap()).unwrap();
        assert_eq!(row_raw_document(&mapping, &table, &id, &row).unwrap().as_bytes(), expected.as_bytes());
    }

    #[test]
    fn names_mongodb_cannot_hold_or_polyrepl_uses_are_refused() {
        assert!(check_table(&table("shop", "orders")).is_ok());
        assert!(check_table(&table("sh.op", "orders")).is_err());
        assert!(check_table(&table("shop", "system.x")).is_err());
        for own in OWN_COLLECTIONS {
            let own = check_table(&table(CHECKPOINT_DATABASE, own)).unwrap_err();
            assert!(own.contains("keeps its own state"), "{own}");
        }
        assert!(
            check_table(&table(CHECKPOINT_DATABASE, "orders")).is_ok(),
            "other tables of a database named polyrepl"
        );
    }
}
