//! Schema changes on the source, followed by the sinks in order with the stream.
//!
//! A DDL statement from the binlog is classified by a SQL parser ([`polyrepl_mysql::ddl`]); what it does
//! to selected tables becomes layout operations ([`TableOp`]) that every sink runs at the statement's
//! position, and online copies ([`OnlineCopies`]) of the tables whose rows must be read again:
//!
//! | statement on a selected table | sinks | copy |
//! |---|---|---|
//! | `TRUNCATE` | rows removed | — |
//! | `DROP TABLE` (`DROP DATABASE`) | table removed (kept with `--keep-dropped-tables`) | — |
//! | `CREATE TABLE` | table (re)created empty | whole table |
//! | `RENAME TABLE a TO b` | `a` removed | `b`, when selected |
//! | `ALTER TABLE` that may change stored values or keys | table removed and created anew | whole table |
//! | `ALTER TABLE` that changes neither (indexes, comments, options) | — | — |
//!
//! Invariants:
//! - a table is (re)created with the shape the server describes *now*: a later ALTER of the same table
//!   is followed when the stream reaches it;
//! - a selected table the run does not know (created and renamed or dropped again before the stream
//!   reached its CREATE) is still dropped and truncated by name: the stream carries its rows meanwhile;
//! - nothing is dropped silently: a statement-logged DML on a selected table (STATEMENT or MIXED
//!   session), and a statement the parser cannot read that names a selected table, stop the run with
//!   the statement and the fix.

use crate::error::{EngineError, Result};
use crate::online::OnlineCopies;
use polyrepl_core::{Position, TableFilter, TableId, TableOp, TableSchema};
use polyrepl_mysql::ddl::{classify, Classified, TableDdl};
use std::sync::Arc;

/// What the run does about one statement.
pub struct Followed {
    /// Layout operations for every sink, in order (empty: nothing to do in the sinks).
    pub ops: Vec<TableOp>,
    /// The statement concerned a selected table (the checkpoint should say it was followed).
    pub relevant: bool,
}

/// Follows `statement` (committed at `position`, current database `database`).
pub async fn follow(
    statement: &str,
    database: &str,
    position: &Position,
    filter: &TableFilter,
    online: &mut OnlineCopies,
    keep_dropped: bool,
) -> Result<Followed> {
    let steps = match classify(statement, database) {
        Classified::Tables(steps) => steps,
        Classified::Unknown { names } => {
            let named = online.schemas.keys().find(|id| names.iter().any(|n| n == &id.table));
            return match named {
                Some(table) => Err(cannot_follow(statement, position, table, "polyrepl cannot tell what it does")),
                None => Ok(Followed { ops: vec![], relevant: false }),
            };
        }
    };
    let mut ops = Vec::new();
    let mut relevant = false;
    for step in steps {
        match step {
            TableDdl::Truncate(id) => {
                if let Some(schema) = known_or_selected(&id, filter, online) {
                    ops.push(TableOp::Truncate(schema));
                    relevant = true;
                }
            }
            TableDdl::Drop(id) => relevant |= drop(&id, filter, online, keep_dropped, &mut ops),
            TableDdl::DropDatabase(db) => {
                let mut gone: Vec<TableId> = online.schemas.keys().filter(|id| id.database == db).cloned().collect();
                gone.sort_by_key(|id| id.to_string());
                for id in gone {
                    relevant |= drop(&id, filter, online, keep_dropped, &mut ops);
                }
            }
            TableDdl::Create(id) if filter.matches(&id) => {
                relevant = true;
                let found = online.discover(&id).await?;
                copy_anew(&id, found, statement, position, filter, online, &mut ops)?;
            }
            TableDdl::Create(_) => {}
            TableDdl::Rename { from, to } => {
                relevant |= drop(&from, filter, online, keep_dropped, &mut ops);
                if filter.matches(&to) {
                    relevant = true;
                    let found = online.discover(&to).await?;
                    copy_anew(&to, found, statement, position, filter, online, &mut ops)?;
                }
            }
            TableDdl::Alter { table, rows_may_change } if filter.matches(&table) => {
                let before = online.schemas.get(&table).cloned();
                let Some(after) = online.discover(&table).await? else {
                    // Gone since: the DROP or RENAME that removed it is followed when the stream gets there.
                    continue;
                };
                if before.as_deref() == Some(&*after) && !rows_may_change {
                    tracing::info!(%table, %position, "ALTER TABLE changes no stored value: nothing to copy");
                    continue;
                }
                relevant = true;
                copy_anew(&table, Some(after), statement, position, filter, online, &mut ops)?;
            }
            TableDdl::Alter { .. } => {}
            TableDdl::StatementDml(table) if filter.matches(&table) => {
                return Err(EngineError::SchemaChange(format!(
                    "a statement-logged change to {table} at {position}: `{}`. polyrepl reads row images and \
                     cannot replay SQL, so these rows would never reach the sinks. Fix: make every session \
                     that writes replicated tables log rows (SET GLOBAL binlog_format=ROW, and reconnect \
                     the writers; check for SET SESSION binlog_format), then copy the tables again with \
                     `polyrepl run --resnapshot` and the same flags.",
                    shorten(statement)
                )));
            }
            TableDdl::StatementDml(_) => {}
        }
    }
    Ok(Followed { ops, relevant })
}

/// The schema of a table the run knows, or (for a selected table it does not: one created and gone
/// again before the stream got to its CREATE, whose rows the stream still carries) one that names it.
fn known_or_selected(id: &TableId, filter: &TableFilter, online: &OnlineCopies) -> Option<Arc<TableSchema>> {
    match online.schemas.get(id) {
        Some(schema) => Some(schema.clone()),
        None if filter.matches(id) => {
            Some(Arc::new(TableSchema { id: id.clone(), columns: vec![], primary_key: vec![] }))
        }
        None => None,
    }
}

/// Removes a selected table: its copy stops, the sinks drop it (unless asked to keep what they hold).
fn drop(id: &TableId, filter: &TableFilter, online: &mut OnlineCopies, keep: bool, ops: &mut Vec<TableOp>) -> bool {
    let Some(schema) = known_or_selected(id, filter, online) else { return false };
    online.schemas.remove(id);
    online.forget(id);
    if keep {
        tracing::info!(table = %id, "table dropped on the source; the sinks keep its rows (--keep-dropped-tables)");
    } else {
        ops.push(TableOp::Drop(schema));
    }
    true
}

/// The table is dropped in the sinks, created there with its current shape (`found`, as the server
/// describes it now; `None` when it no longer exists), and copied online.
#[allow(clippy::result_large_err)] // the engine's one error type, as every async step here returns it
fn copy_anew(
    id: &TableId,
    found: Option<Arc<TableSchema>>,
    statement: &str,
    position: &Position,
    filter: &TableFilter,
    online: &mut OnlineCopies,
    ops: &mut Vec<TableOp>,
) -> Result<()> {
    let Some(schema) = found else {
        // Gone since: its DROP or RENAME comes later in the stream. What the sinks hold of it goes now.
        drop(id, filter, online, false, ops);
        return Ok(());
    };
    let old = online.schemas.get(id).cloned();
    schema.check_primary_key("its rows cannot be replicated by key").map_err(|why| {
        cannot_follow(statement, position, id, &format!("{why}; add a primary key, or leave it out with --exclude"))
    })?;
    tracing::info!(table = %id, %position, "schema change: the table is created anew in the sinks and copied online");
    ops.push(TableOp::Drop(old.unwrap_or_else(|| schema.clone())));
    ops.push(TableOp::Prepare(schema.clone()));
    online.restart(schema);
    Ok(())
}

fn cannot_follow(statement: &str, position: &Position, table: &TableId, why: &str) -> EngineError {
    EngineError::SchemaChange(format!(
        "cannot follow `{}` at {position} on the replicated table {table}: {why}. The sinks would diverge \
         from the source, so polyrepl stops here (nothing after this statement was applied). Fix: copy the \
         tables again from a position after it with `polyrepl run --resnapshot` and the same flags.",
        shorten(statement)
    ))
}

/// The statement on one line, cut to a length an error message or a log line can hold.
pub fn shorten(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}
