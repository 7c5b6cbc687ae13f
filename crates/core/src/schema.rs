//! The shape of a replicated table: column names, kinds and the primary key.
//!
//! Built from the binlog's table-map optional metadata (`binlog_row_metadata=FULL`) or, for the
//! snapshot, from information_schema; both must agree on names and key order.

use serde::{Deserialize, Serialize};

/// `database.table` of the source; sinks derive their own names from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId {
    pub database: String,
    pub table: String,
}

impl TableId {
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        TableId { database: database.into(), table: table.into() }
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// The family of a column's SQL type: enough for a sink to create a table or pick a mapping
/// when no value is at hand (values themselves carry their exact form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Float,
    Double,
    /// DECIMAL(precision, scale)
    Decimal {
        precision: u8,
        scale: u8,
    },
    Char,
    VarChar,
    Text,
    Binary,
    VarBinary,
    Blob,
    Date,
    /// TIME(fsp)
    Time {
        fsp: u8,
    },
    /// DATETIME(fsp)
    DateTime {
        fsp: u8,
    },
    /// TIMESTAMP(fsp)
    Timestamp {
        fsp: u8,
    },
    Year,
    Json,
    /// BIT(bits)
    Bit {
        bits: u16,
    },
    Enum {
        labels: Vec<String>,
    },
    Set {
        labels: Vec<String>,
    },
    /// A type polyrepl does not map (e.g. GEOMETRY): the column is refused by name at start-up.
    Unsupported(String),
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub unsigned: bool,
    pub nullable: bool,
}

/// A table's columns in source order, and its primary key as indexes into `columns`, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub id: TableId,
    pub columns: Vec<Column>,
    pub primary_key: Vec<usize>,
}

impl TableSchema {
    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The primary-key columns, in key order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.primary_key.iter().map(move |&i| &self.columns[i])
    }

    /// Checks that the table has a primary key whose columns exist, as every sink needs to address a
    /// row. `consequence` says what a missing key prevents, e.g. "its rows could not be addressed by a
    /// Redis key".
    pub fn check_primary_key(&self, consequence: &str) -> Result<(), String> {
        if self.primary_key.is_empty() {
            return Err(format!(
                "table {} has no primary key: {consequence}. Fix: add a primary key in the source, or exclude the table",
                self.id
            ));
        }
        if let Some(&i) = self.primary_key.iter().find(|&&i| i >= self.columns.len()) {
            return Err(format!(
                "table {}: primary key column index {i} is outside the table's {} columns",
                self.id,
                self.columns.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: usize, primary_key: Vec<usize>) -> TableSchema {
        let column =
            |i: usize| Column { name: format!("c{i}"), kind: ColumnKind::Int, unsigned: false, nullable: false };
        TableSchema { id: TableId::new("d", "t"), columns: (0..columns).map(column).collect(), primary_key }
    }

    #[test]
    fn a_primary_key_must_exist_and_name_existing_columns() {
        assert!(table(2, vec![1, 0]).check_primary_key("x").is_ok());
        let none = table(2, vec![]).check_primary_key("its rows could not be addressed").unwrap_err();
        assert!(none.contains("table d.t has no primary key: its rows could not be addressed"), "{none}");
        assert!(none.contains("exclude the table"), "{none}");
        let outside = table(2, vec![0, 2]).check_primary_key("x").unwrap_err();
        assert!(outside.contains("index 2 is outside the table's 2 columns"), "{outside}");
    }
}
