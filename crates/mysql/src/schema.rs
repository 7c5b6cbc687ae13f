//! Discovery of the selected tables from information_schema → [`TableSchema`].
//!
//! Invariants:
//! - columns come in ORDINAL_POSITION order (the order of binlog row images);
//! - `primary_key` lists column indexes in key order (SEQ_IN_INDEX), empty when the table has none
//!   (the start-up checks refuse such tables);
//! - the [`ColumnKind`] built here equals the one the binlog decoder builds from a table map of the
//!   same table, so snapshot and binlog changes carry equal schemas;
//! - MariaDB's JSON is LONGTEXT with a `json_valid(col)` CHECK constraint: it is reported as
//!   [`ColumnKind::Json`].

use crate::error::{Result, SourceError};
use mysql_async::prelude::*;
use mysql_async::Conn;
use polyrepl_core::{Column, ColumnKind, TableFilter, TableId, TableSchema};
use std::collections::{BTreeMap, HashSet};

/// Databases that are never replicated.
const SYSTEM_DATABASES: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// Reads every base table matched by `filter`, sorted by `database.table`.
pub async fn discover_tables(conn: &mut Conn, filter: &TableFilter, server: &str) -> Result<Vec<TableSchema>> {
    let db_clause = match filter.databases() {
        Some(dbs) if !dbs.is_empty() => {
            format!("t.TABLE_SCHEMA IN ({})", dbs.iter().map(|d| quote_literal(d)).collect::<Vec<_>>().join(","))
        }
        _ => format!(
            "t.TABLE_SCHEMA NOT IN ({})",
            SYSTEM_DATABASES.iter().map(|d| quote_literal(d)).collect::<Vec<_>>().join(",")
        ),
    };
    let columns_sql = format!(
        "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, \
         c.NUMERIC_PRECISION, c.NUMERIC_SCALE, c.DATETIME_PRECISION, c.CHARACTER_SET_NAME \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE t.TABLE_TYPE = 'BASE TABLE' AND {db_clause} \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION"
    );
    let rows: Vec<mysql_async::Row> = conn
        .query(columns_sql)
        .await
        .map_err(|e| SourceError::query("reading information_schema.COLUMNS", server, e))?;

    let mut tables: BTreeMap<TableId, Vec<Column>> = BTreeMap::new();
    for row in rows {
        let get = |i: usize| -> Option<String> { text_at(&row, i) };
        let num = |i: usize| -> Option<u64> { get(i).and_then(|s| s.parse().ok()) };
        let id = TableId::new(get(0).unwrap_or_default(), get(1).unwrap_or_default());
        if !filter.matches(&id) {
            continue;
        }
        let data_type = get(3).unwrap_or_default().to_ascii_lowercase();
        let column_type = get(4).unwrap_or_default();
        let kind = column_kind(&data_type, &column_type, num(6), num(7), num(8), get(9).as_deref());
        let column = Column {
            name: get(2).unwrap_or_default(),
            unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
            nullable: get(5).as_deref() == Some("YES"),
            kind,
        };
        tables.entry(id).or_default().push(column);
    }
    if tables.is_empty() {
        return Ok(Vec::new());
    }

    let keys_sql = format!(
        "SELECT s.TABLE_SCHEMA, s.TABLE_NAME, s.COLUMN_NAME FROM information_schema.STATISTICS s \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.TABLE_SCHEMA AND t.TABLE_NAME = s.TABLE_NAME \
         WHERE s.INDEX_NAME = 'PRIMARY' AND {db_clause} ORDER BY s.TABLE_SCHEMA, s.TABLE_NAME, s.SEQ_IN_INDEX"
    );
    let key_rows: Vec<mysql_async::Row> = conn
        .query(keys_sql)
        .await
        .map_err(|e| SourceError::query("reading information_schema.STATISTICS", server, e))?;
    let mut keys: BTreeMap<TableId, Vec<String>> = BTreeMap::new();
    for row in key_rows {
        let id = TableId::new(text_at(&row, 0).unwrap_or_default(), text_at(&row, 1).unwrap_or_default());
        keys.entry(id).or_default().push(text_at(&row, 2).unwrap_or_default());
    }

    let json_columns = mariadb_json_columns(conn, &db_clause, server).await?;

    let mut out = Vec::with_capacity(tables.len());
    for (id, mut columns) in tables {
        for c in columns.iter_mut() {
            if matches!(c.kind, ColumnKind::Text) && json_columns.contains(&(id.clone(), c.name.clone())) {
                c.kind = ColumnKind::Json;
            }
        }
        let primary_key = keys
            .get(&id)
            .map(|names| names.iter().filter_map(|n| columns.iter().position(|c| &c.name == n)).collect())
            .unwrap_or_default();
        out.push(TableSchema { id, columns, primary_key });
    }
    Ok(out)
}

/// Reads one table (e.g. after a DDL), `None` when it does not exist.
pub async fn discover_table(conn: &mut Conn, id: &TableId, server: &str) -> Result<Option<TableSchema>> {
    // Read the database and pick the table: a table name containing '*' must not act as a glob.
    let filter = TableFilter::new(&[format!("{}.*", id.database)], &[]).map_err(SourceError::Usage)?;
    Ok(discover_tables(conn, &filter, server).await?.into_iter().find(|t| &t.id == id))
}

/// `(table, column)` of MariaDB JSON columns: a CHECK constraint `json_valid(`col`)`.
/// MySQL has a real JSON type and no TABLE_NAME in CHECK_CONSTRAINTS: it yields nothing here.
async fn mariadb_json_columns(conn: &mut Conn, db_clause: &str, server: &str) -> Result<HashSet<(TableId, String)>> {
    let sql = format!(
        "SELECT cc.CONSTRAINT_SCHEMA, cc.TABLE_NAME, cc.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS cc \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = cc.CONSTRAINT_SCHEMA AND t.TABLE_NAME = cc.TABLE_NAME \
         WHERE {db_clause}"
    );
    let rows: Vec<mysql_async::Row> = match conn.query(sql).await {
        Ok(r) => r,
        // MySQL: CHECK_CONSTRAINTS has no TABLE_NAME column (unknown column 1054) — no MariaDB JSON there.
        Err(mysql_async::Error::Server(e)) if e.code == 1054 || e.code == 1109 => return Ok(HashSet::new()),
        Err(e) => return Err(SourceError::query("reading information_schema.CHECK_CONSTRAINTS", server, e)),
    };
    let mut out = HashSet::new();
    for row in rows {
        let id = TableId::new(text_at(&row, 0).unwrap_or_default(), text_at(&row, 1).unwrap_or_default());
        if let Some(col) = text_at(&row, 2).as_deref().and_then(json_valid_column) {
            out.insert((id, col));
        }
    }
    Ok(out)
}

/// The column of a `json_valid(`col`)` check clause.
fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause.trim().strip_prefix("json_valid(")?.strip_suffix(')')?.trim();
    let name = inner.strip_prefix('`')?.strip_suffix('`')?;
    Some(name.replace("``", "`"))
}

/// The [`ColumnKind`] of an information_schema column. A text, ENUM or SET column in a character set
/// polyrepl cannot decode exactly is [`ColumnKind::Unsupported`] (see [`crate::charset::unsupported_kind`]).
pub fn column_kind(
    data_type: &str,
    column_type: &str,
    numeric_precision: Option<u64>,
    numeric_scale: Option<u64>,
    datetime_precision: Option<u64>,
    charset: Option<&str>,
) -> ColumnKind {
    let kind =
        column_kind_of_type(data_type, column_type, numeric_precision, numeric_scale, datetime_precision, charset);
    match (&kind, charset) {
        (
            ColumnKind::Char
            | ColumnKind::VarChar
            | ColumnKind::Text
            | ColumnKind::Enum { .. }
            | ColumnKind::Set { .. },
            Some(cs),
        ) => crate::charset::unsupported_kind(data_type, cs).unwrap_or(kind),
        _ => kind,
    }
}

/// [`column_kind`] by type alone.
fn column_kind_of_type(
    data_type: &str,
    column_type: &str,
    numeric_precision: Option<u64>,
    numeric_scale: Option<u64>,
    datetime_precision: Option<u64>,
    charset: Option<&str>,
) -> ColumnKind {
    let fsp = datetime_precision.unwrap_or(0).min(6) as u8;
    match data_type {
        "tinyint" => ColumnKind::TinyInt,
        "smallint" => ColumnKind::SmallInt,
        "mediumint" => ColumnKind::MediumInt,
        "int" | "integer" => ColumnKind::Int,
        "bigint" => ColumnKind::BigInt,
        "float" => ColumnKind::Float,
        "double" | "real" | "double precision" => ColumnKind::Double,
        "decimal" | "numeric" => ColumnKind::Decimal {
            precision: numeric_precision.unwrap_or(10).min(65) as u8,
            scale: numeric_scale.unwrap_or(0).min(38) as u8,
        },
        // A binary charset on a character type happens on MariaDB for `CHAR(..) BINARY`-like columns.
        "char" if charset == Some("binary") => ColumnKind::Binary,
        "varchar" if charset == Some("binary") => ColumnKind::VarBinary,
        "char" => ColumnKind::Char,
        "varchar" => ColumnKind::VarChar,
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnKind::Text,
        "binary" => ColumnKind::Binary,
        "varbinary" => ColumnKind::VarBinary,
        "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Blob,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time { fsp },
        "datetime" => ColumnKind::DateTime { fsp },
        "timestamp" => ColumnKind::Timestamp { fsp },
        "year" => ColumnKind::Year,
        "json" => ColumnKind::Json,
        "bit" => ColumnKind::Bit { bits: numeric_precision.unwrap_or(1).clamp(1, 64) as u16 },
        "enum" => ColumnKind::Enum { labels: parse_labels(column_type) },
        "set" => ColumnKind::Set { labels: parse_labels(column_type) },
        other => ColumnKind::Unsupported(other.to_string()),
    }
}

/// Labels of `enum('a','b''c')` / `set(...)` as COLUMN_TYPE prints them (quotes doubled, and on
/// MariaDB backslash escapes).
pub fn parse_labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else { return Vec::new() };
    let body = &column_type[open + 1..];
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        loop {
            match chars.next() {
                None => break,
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                Some('\'') => break,
                Some('\\') => match chars.next() {
                    Some('n') => label.push('\n'),
                    Some('t') => label.push('\t'),
                    Some('0') => label.push('\0'),
                    Some(o) => label.push(o),
                    None => break,
                },
                Some(o) => label.push(o),
            }
        }
        labels.push(label);
    }
    labels
}

/// `'text'` with quotes and backslashes escaped, for building information_schema queries.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `` `name` `` with backticks doubled.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// `` `db`.`table` ``.
pub fn quote_table(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.database), quote_ident(&id.table))
}

/// A text cell of an information_schema row (`None` for NULL).
fn text_at(row: &mysql_async::Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        mysql_async::Value::Int(v) => Some(v.to_string()),
        mysql_async::Value::UInt(v) => Some(v.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_kinds() {
        assert_eq!(parse_labels("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(parse_labels("set('x','')"), vec!["x", ""]);
        assert_eq!(
            column_kind("decimal", "decimal(65,30)", Some(65), Some(30), None, None),
            ColumnKind::Decimal { precision: 65, scale: 30 }
        );
        assert_eq!(column_kind("varchar", "varbinary(10)", None, None, None, Some("binary")), ColumnKind::VarBinary);
        assert_eq!(
            column_kind("geometry", "geometry", None, None, None, None),
            ColumnKind::Unsupported("geometry".into())
        );
        assert_eq!(json_valid_column("json_valid(`doc`)").as_deref(), Some("doc"));
        assert_eq!(column_kind("varchar", "varchar(5)", None, None, None, Some("latin1")), ColumnKind::VarChar);
        assert_eq!(
            column_kind("char", "char(5)", None, None, None, Some("armscii8")),
            ColumnKind::Unsupported("char character set armscii8".into())
        );
        assert!(matches!(
            column_kind("enum", "enum('a')", None, None, None, Some("keybcs2")),
            ColumnKind::Unsupported(_)
        ));
    }
}
