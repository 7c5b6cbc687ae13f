//! Keyspaces and tables: created from the source schema, widened when the source adds columns.
//!
//! Invariants:
//! - `CREATE KEYSPACE/TABLE IF NOT EXISTS` only: an existing keyspace keeps its replication, an existing
//!   table its data. Creation is idempotent and safe to race with another polyrepl.
//! - What Cassandra holds is read from `system_schema.columns`, never assumed: a column the source has and
//!   the table lacks is added (`ALTER TABLE … ADD`, one statement for all of them); a column whose CQL type
//!   differs from the mapping, or a partition key other than the source's primary key, is a definite
//!   error that says what to do — polyrepl never drops or retypes a column.
//! - Columns the table has and the source lacks (a source `DROP COLUMN`) are left alone: they keep their
//!   old values and are not written any more.
//! - With a time bucket ([`crate::connection::TimeBucket`]) a table whose schema has the bucketed column
//!   also gets the regular column `polyrepl_bucket text` (in `CREATE TABLE`, or added like a source
//!   column) and the Storage-Attached Index `<table>_polyrepl_bucket` on it (`IF NOT EXISTS`). A source
//!   column of that name, or an existing `polyrepl_bucket` of another type, is a definite error.
//! - A schema (its column list) is checked against Cassandra once; later changes with the same column
//!   list cost a comparison, not a query.

use std::collections::{HashMap, HashSet};

use polyrepl_core::{Column, ColumnKind, SinkError, TableId, TableSchema};
use scylla::client::session::Session;

use crate::connection::TimeBucket;
use crate::error::classify;
use crate::mapping::cql_type;
use crate::naming::{qualified, quote};

/// A table as Cassandra describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    /// Column name → CQL type as `system_schema.columns` reports it.
    pub columns: HashMap<String, String>,
    /// Partition key columns in order.
    pub partition_key: Vec<String>,
    /// Clustering columns in order (none in a table polyrepl creates).
    pub clustering_key: Vec<String>,
}

/// What the sink knows of Cassandra's keyspaces and tables.
#[derive(Debug, Default)]
pub struct Catalog {
    keyspaces: HashSet<String>,
    tables: HashMap<TableId, TableState>,
    /// Column lists already checked against (and present in) the table.
    verified: HashMap<TableId, Vec<Column>>,
}

impl Catalog {
    /// Makes sure the keyspace and table exist and hold every column of `schema` with the mapped type,
    /// and, when `bucket`, the time-bucket column and its index.
    pub async fn ensure(
        &mut self,
        session: &Session,
        sink: &str,
        replication: &str,
        schema: &TableSchema,
        bucket: bool,
    ) -> Result<(), SinkError> {
        if self.verified.get(&schema.id).is_some_and(|c| *c == schema.columns) {
            return Ok(());
        }
        if bucket && schema.columns.iter().any(|c| c.name == TimeBucket::COLUMN) {
            return Err(SinkError::definite(
                sink,
                format!("table {}: the source has a column named '{}', which the time_bucket option needs for itself: drop the option or exclude the table", schema.id, TimeBucket::COLUMN),
            ));
        }
        if !self.keyspaces.contains(&schema.id.database) {
            create_keyspace(session, sink, &schema.id.database, replication).await?;
            self.keyspaces.insert(schema.id.database.clone());
        }
        let mut state = read_table(session, sink, &schema.id).await?;
        if state.is_none() {
            run(
                session,
                sink,
                &create_table_cql(schema, bucket).map_err(|e| SinkError::definite(sink, e))?,
                &format!("creating table {}", schema.id),
            )
            .await?;
            state = read_table(session, sink, &schema.id).await?;
        }
        let mut state = state.ok_or_else(|| {
            SinkError::definite(sink, format!("table {} is still absent after CREATE TABLE", schema.id))
        })?;
        let missing = reconcile(&state, schema).map_err(|e| SinkError::definite(sink, e))?;
        if !missing.is_empty() {
            let cql = add_columns_cql(schema, &missing).map_err(|e| SinkError::definite(sink, e))?;
            let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(sink, table = %schema.id, columns = ?names, "adding columns the source table gained");
            let added = run(session, sink, &cql, &format!("adding column(s) {names:?} to {}", schema.id)).await;
            // Another writer may have added them meanwhile: what counts is the table afterwards.
            state = read_table(session, sink, &schema.id).await?.unwrap_or(state);
            let still_missing = reconcile(&state, schema).map_err(|e| SinkError::definite(sink, e))?;
            if !still_missing.is_empty() {
                added?;
                return Err(SinkError::definite(
                    sink,
                    format!("table {}: columns {names:?} are still absent after ALTER TABLE", schema.id),
                ));
            }
        }
        if bucket {
            ensure_bucket(session, sink, schema, &mut state).await?;
        }
        self.tables.insert(schema.id.clone(), state);
        self.verified.insert(schema.id.clone(), schema.columns.clone());
        Ok(())
    }

    /// Forgets what is known of table `id` (it was dropped): the next `ensure` or `existing` reads
    /// Cassandra again.
    pub fn forget(&mut self, id: &TableId) {
        self.tables.remove(id);
        self.verified.remove(id);
    }

    /// The table as Cassandra holds it, without creating anything; `None` when it does not exist.
    pub async fn existing(
        &mut self,
        session: &Session,
        sink: &str,
        id: &TableId,
    ) -> Result<Option<&TableState>, SinkError> {
        if !self.tables.contains_key(id) {
            match read_table(session, sink, id).await? {
                Some(state) => {
                    self.tables.insert(id.clone(), state);
                }
                None => return Ok(None),
            }
        }
        Ok(self.tables.get(id))
    }
}

/// Adds the `polyrepl_bucket text` column when the table lacks it, then its SAI index.
async fn ensure_bucket(
    session: &Session,
    sink: &str,
    schema: &TableSchema,
    state: &mut TableState,
) -> Result<(), SinkError> {
    let name = TimeBucket::COLUMN;
    if !state.columns.contains_key(name) {
        tracing::info!(sink, table = %schema.id, "adding the time-bucket column {name}");
        let added = run(
            session,
            sink,
            &format!("ALTER TABLE {} ADD ({} text)", qualified(schema), quote(name)),
            &format!("adding column {name} to {}", schema.id),
        )
        .await;
        *state = read_table(session, sink, &schema.id).await?.unwrap_or_else(|| state.clone());
        if !state.columns.contains_key(name) {
            added?;
            return Err(SinkError::definite(
                sink,
                format!("table {}: column {name} is still absent after ALTER TABLE", schema.id),
            ));
        }
    }
    match state.columns.get(name).map(String::as_str) {
        Some("text") => {}
        other => {
            return Err(SinkError::definite(
                sink,
                format!("table {}: column '{name}' is {other:?} in Cassandra, but the time_bucket option writes text there: drop or fix the Cassandra column", schema.id),
            ))
        }
    }
    run(session, sink, &bucket_index_cql(schema), &format!("creating the index on {name} of {}", schema.id)).await
}

/// `CREATE CUSTOM INDEX IF NOT EXISTS "t_polyrepl_bucket" ON "ks"."t" ("polyrepl_bucket") USING 'StorageAttachedIndex'`.
pub fn bucket_index_cql(schema: &TableSchema) -> String {
    format!(
        "CREATE CUSTOM INDEX IF NOT EXISTS {} ON {} ({}) USING 'StorageAttachedIndex'",
        quote(&format!("{}_{}", schema.id.table, TimeBucket::COLUMN)),
        qualified(schema),
        quote(TimeBucket::COLUMN)
    )
}

/// Runs one schema statement (the driver waits for schema agreement afterwards).
async fn run(session: &Session, sink: &str, cql: &str, doing: &str) -> Result<(), SinkError> {
    session.query_unpaged(cql, &[]).await.map_err(|e| classify(sink, doing, &e))?;
    Ok(())
}

/// `TRUNCATE "ks"."t"` of an existing table, after turning its automatic snapshot off (best effort:
/// the table option `allow_auto_snapshot` exists from Cassandra 4.1), so emptying a table frees its disk.
pub async fn truncate_table(session: &Session, sink: &str, schema: &TableSchema) -> Result<(), SinkError> {
    no_auto_snapshot(session, schema).await;
    run(session, sink, &format!("TRUNCATE {}", qualified(schema)), &format!("truncating {}", schema.id)).await
}

/// `DROP TABLE IF EXISTS "ks"."t"` (with its indexes), after turning its automatic snapshot off (best
/// effort, as for [`truncate_table`]).
pub async fn drop_table(session: &Session, sink: &str, schema: &TableSchema) -> Result<(), SinkError> {
    no_auto_snapshot(session, schema).await;
    run(session, sink, &format!("DROP TABLE IF EXISTS {}", qualified(schema)), &format!("dropping {}", schema.id)).await
}

/// `ALTER TABLE … WITH allow_auto_snapshot = false`; errors (an older Cassandra, an absent table) ignored.
async fn no_auto_snapshot(session: &Session, schema: &TableSchema) {
    let cql = format!("ALTER TABLE {} WITH allow_auto_snapshot = false", qualified(schema));
    if let Err(e) = session.query_unpaged(cql, &[]).await {
        tracing::debug!(table = %schema.id, error = %e, "allow_auto_snapshot not set");
    }
}

/// `CREATE KEYSPACE IF NOT EXISTS`.
pub async fn create_keyspace(
    session: &Session,
    sink: &str,
    keyspace: &str,
    replication: &str,
) -> Result<(), SinkError> {
    let cql = format!("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {replication}", quote(keyspace));
    run(session, sink, &cql, &format!("creating keyspace {keyspace}")).await
}

/// Reads a table's columns from `system_schema.columns`; `None` when it has none (absent).
pub async fn read_table(session: &Session, sink: &str, id: &TableId) -> Result<Option<TableState>, SinkError> {
    let doing = format!("reading the columns of {id} from system_schema");
    let result = session
        .query_unpaged(
            "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (&id.database, &id.table),
        )
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .into_rows_result()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let mut columns = HashMap::new();
    let mut partition: Vec<(i32, String)> = Vec::new();
    let mut clustering: Vec<(i32, String)> = Vec::new();
    for row in result
        .rows::<(String, String, i32, String)>()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?
    {
        let (name, kind, position, cql_type) = row.map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
        if kind == "partition_key" {
            partition.push((position, name.clone()));
        } else if kind == "clustering" {
            clustering.push((position, name.clone()));
        }
        columns.insert(name, cql_type);
    }
    if columns.is_empty() {
        return Ok(None);
    }
    partition.sort();
    clustering.sort();
    Ok(Some(TableState {
        columns,
        partition_key: partition.into_iter().map(|(_, n)| n).collect(),
        clustering_key: clustering.into_iter().map(|(_, n)| n).collect(),
    }))
}

/// Checks an existing table against the schema; returns the columns it lacks.
pub fn reconcile<'a>(state: &TableState, schema: &'a TableSchema) -> Result<Vec<&'a Column>, String> {
    let key: Vec<String> = schema.key_columns().map(|c| c.name.clone()).collect();
    if state.partition_key != key || !state.clustering_key.is_empty() {
        return Err(format!(
            "table {} exists in Cassandra with partition key {:?} and clustering columns {:?}, but the source's primary key is {key:?}: \
             drop the Cassandra table (polyrepl recreates it) or exclude the source table",
            schema.id, state.partition_key, state.clustering_key
        ));
    }
    let mut missing = Vec::new();
    for column in &schema.columns {
        let wanted = cql_type(column).map_err(|e| format!("{}: {e}", schema.id))?;
        match state.columns.get(&column.name) {
            None => missing.push(column),
            Some(have) if have == wanted => {}
            Some(have) if matches!(column.kind, ColumnKind::Time { .. }) && have == "time" => {
                return Err(format!(
                    "table {}: column '{}' is a CQL time, made by an earlier polyrepl; a CQL time holds one day \
                     only, so polyrepl now stores MySQL TIME (-838:59:59 … 838:59:59) as bigint microseconds. \
                     Fix: drop the Cassandra table, then run `polyrepl run --resnapshot` with the same flags to \
                     copy it again",
                    schema.id, column.name
                ))
            }
            Some(have) => {
                return Err(format!(
                    "table {}: column '{}' is {have} in Cassandra, but polyrepl maps its source type ({:?}{}) to {wanted}: \
                     the source column's type changed, or the table was created by hand — drop or fix the Cassandra table",
                    schema.id,
                    column.name,
                    column.kind,
                    if column.unsigned { " UNSIGNED" } else { "" }
                ))
            }
        }
    }
    Ok(missing)
}

/// `CREATE TABLE IF NOT EXISTS "ks"."t" ("a" int, …[, "polyrepl_bucket" text], PRIMARY KEY (("a", …)))`.
pub fn create_table_cql(schema: &TableSchema, bucket: bool) -> Result<String, String> {
    let mut parts = Vec::with_capacity(schema.columns.len() + 2);
    for column in &schema.columns {
        parts.push(format!("{} {}", quote(&column.name), cql_type(column)?));
    }
    if bucket {
        parts.push(format!("{} text", quote(TimeBucket::COLUMN)));
    }
    let key: Vec<String> = schema.key_columns().map(|c| quote(&c.name)).collect();
    parts.push(format!("PRIMARY KEY (({}))", key.join(", ")));
    Ok(format!("CREATE TABLE IF NOT EXISTS {} ({})", qualified(schema), parts.join(", ")))
}

/// `ALTER TABLE "ks"."t" ADD ("c" int, …)`.
pub fn add_columns_cql(schema: &TableSchema, columns: &[&Column]) -> Result<String, String> {
    let mut parts = Vec::with_capacity(columns.len());
    for column in columns {
        parts.push(format!("{} {}", quote(&column.name), cql_type(column)?));
    }
    Ok(format!("ALTER TABLE {} ADD ({})", qualified(schema), parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::ColumnKind;

    fn schema(columns: &[(&str, ColumnKind)], pk: Vec<usize>) -> TableSchema {
        TableSchema {
            id: TableId::new("db", "t"),
            columns: columns
                .iter()
                .map(|(n, k)| Column { name: n.to_string(), kind: k.clone(), unsigned: false, nullable: true })
                .collect(),
            primary_key: pk,
        }
    }

    #[test]
    fn statements_quote_everything() {
        let s = schema(&[("Id", ColumnKind::Int), ("we\"ird", ColumnKind::Text), ("k2", ColumnKind::Date)], vec![0, 2]);
        assert_eq!(
            create_table_cql(&s, false).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"db\".\"t\" (\"Id\" int, \"we\"\"ird\" text, \"k2\" date, PRIMARY KEY ((\"Id\", \"k2\")))"
        );
        assert_eq!(
            create_table_cql(&s, true).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"db\".\"t\" (\"Id\" int, \"we\"\"ird\" text, \"k2\" date, \"polyrepl_bucket\" text, PRIMARY KEY ((\"Id\", \"k2\")))"
        );
        assert_eq!(
            bucket_index_cql(&s),
            "CREATE CUSTOM INDEX IF NOT EXISTS \"t_polyrepl_bucket\" ON \"db\".\"t\" (\"polyrepl_bucket\") USING 'StorageAttachedIndex'"
        );
        assert_eq!(add_columns_cql(&s, &[&s.columns[1]]).unwrap(), "ALTER TABLE \"db\".\"t\" ADD (\"we\"\"ird\" text)");
    }

    #[test]
    fn reconcile_finds_missing_and_refuses_mismatches() {
        let s = schema(&[("id", ColumnKind::Int), ("v", ColumnKind::Text), ("w", ColumnKind::Double)], vec![0]);
        let state = TableState {
            columns: [("id", "int"), ("v", "text"), ("old", "blob")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            partition_key: vec!["id".into()],
            clustering_key: vec![],
        };
        let missing = reconcile(&state, &s).unwrap();
        assert_eq!(missing.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["w"]);
        let mut wrong_type = state.clone();
        wrong_type.columns.insert("v".into(), "int".into());
        assert!(reconcile(&wrong_type, &s).unwrap_err().contains("column 'v' is int"));
        let mut wrong_key = state.clone();
        wrong_key.partition_key = vec!["v".into()];
        assert!(reconcile(&wrong_key, &s).unwrap_err().contains("partition key"));
        // A TIME column an earlier polyrepl made as a CQL time: the fix is said.
        let timed = schema(&[("id", ColumnKind::Int), ("t", ColumnKind::Time { fsp: 0 })], vec![0]);
        let mut old_time = state;
        old_time.columns.insert("t".into(), "time".into());
        let err = reconcile(&old_time, &timed).unwrap_err();
        assert!(err.contains("bigint microseconds") && err.contains("--resnapshot"), "{err}");
    }
}
