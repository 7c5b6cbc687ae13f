//! Where a row lives in Cassandra, and which source tables Cassandra can name.
//!
//! Layout: keyspace = source database, table = source table, same column names (always written as quoted
//! identifiers, so case and any character survive), `PRIMARY KEY ((pk columns…))`: the whole source key
//! is the partition key, so one row = one partition.
//!
//! Invariants:
//! - Keyspace and table names must be 1–48 characters of `[A-Za-z0-9_]` (Cassandra's rule); other names
//!   are refused with a definite error that says so, never mangled into a name that could collide.
//! - A table without a primary key is refused: a row could not be addressed idempotently.

use polyrepl_core::TableSchema;

use crate::checkpoint::{CHECKPOINT_KEYSPACE, CHECKPOINT_TABLE};
use crate::dead_letter::DEAD_LETTER_TABLE;
use crate::lease::LEASE_TABLE;

/// The tables of keyspace `polyrepl` where polyrepl keeps its own state: a source table that would be
/// stored in one of them is refused.
pub const OWN_TABLES: &[&str] = &[CHECKPOINT_TABLE, LEASE_TABLE, DEAD_LETTER_TABLE];
use crate::mapping::cql_type;

/// Longest keyspace or table name Cassandra accepts.
const MAX_NAME: usize = 48;

/// A CQL quoted identifier: `"name"` with inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"keyspace"."table"` of a source table.
pub fn qualified(table: &TableSchema) -> String {
    format!("{}.{}", quote(&table.id.database), quote(&table.id.table))
}

/// Checks that Cassandra can hold `table`: names, a primary key, and a mapping for every column.
pub fn check_table(table: &TableSchema) -> Result<(), String> {
    check_names(table)?;
    table.check_primary_key("its rows could not be addressed in Cassandra")?;
    for column in &table.columns {
        cql_type(column).map_err(|e| format!("{}: {e} — exclude the table", table.id))?;
    }
    Ok(())
}

/// The part of [`check_table`] about names only: enough to truncate or drop a table by name.
pub fn check_names(table: &TableSchema) -> Result<(), String> {
    for (what, name) in [("keyspace (source database)", &table.id.database), ("table", &table.id.table)] {
        if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "{}: Cassandra cannot name a {what} '{name}': only 1–{MAX_NAME} letters, digits and underscores are allowed \
                 (exclude this table, or rename it in the source)",
                table.id
            ));
        }
    }
    if table.id.database == CHECKPOINT_KEYSPACE && OWN_TABLES.contains(&table.id.table.as_str()) {
        return Err(format!(
            "table {} would be stored in {CHECKPOINT_KEYSPACE}.{}, where polyrepl keeps its own state \
             (checkpoints, leases, dead letters): exclude the table",
            table.id, table.id.table
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    fn table(db: &str, name: &str, pk: Vec<usize>) -> TableSchema {
        TableSchema {
            id: TableId::new(db, name),
            columns: vec![Column { name: "id".into(), kind: ColumnKind::Int, unsigned: false, nullable: false }],
            primary_key: pk,
        }
    }

    #[test]
    fn names_are_quoted_and_checked() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified(&table("Shop", "orders", vec![0])), "\"Shop\".\"orders\"");
        assert!(check_table(&table("shop", "orders", vec![0])).is_ok());
        assert!(check_table(&table("shop-1", "orders", vec![0])).unwrap_err().contains("shop-1"));
        assert!(check_table(&table("shop", "orders", vec![])).unwrap_err().contains("no primary key"));
        assert!(check_table(&table(&"x".repeat(49), "t", vec![0])).is_err());
        for own in OWN_TABLES {
            let own = check_table(&table("polyrepl", own, vec![0])).unwrap_err();
            assert!(own.contains("keeps its own state"), "{own}");
        }
        assert!(check_table(&table("Polyrepl", "polyrepl_checkpoints", vec![0])).is_ok(), "a quoted name differs");
    }
}
