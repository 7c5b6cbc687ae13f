//! Paging through the primary keys stored for a table, for `polyrepl verify` (rows the source lacks).
//!
//! Invariants:
//! - A page is `SELECT key columns FROM "ks"."t"` read with the driver's paging (page size = `limit`),
//!   resumed from Cassandra's own paging state: one row is one partition (the whole source key is the
//!   partition key, [`crate::naming`]), so every stored row's key comes back exactly once, in token order.
//! - The cursor is the raw paging state; `None` when Cassandra says there are no more pages.
//! - Only key columns are read, so the `time_bucket` column ([`crate::connection::TimeBucket`]) never
//!   matters here; a table that does not exist in Cassandra has no keys.
//! - Key values are decoded with the mapping that wrote them ([`from_cql`]).

use polyrepl_core::{SinkError, TableSchema, Value};
use scylla::client::session::Session;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::value::Row as CqlRow;

use crate::error::classify;
use crate::mapping::from_cql;
use crate::naming::{qualified, quote};
use crate::write::Statements;

/// `SELECT "k1", "k2" FROM "ks"."t"`: every stored key of `table`.
pub fn scan_cql(table: &TableSchema) -> String {
    let names: Vec<String> = table.key_columns().map(|c| quote(&c.name)).collect();
    format!("SELECT {} FROM {}", names.join(", "), qualified(table))
}

/// One page of keys of `table` after `cursor` (see the module notes), and the next cursor. The caller
/// has checked that the table exists.
pub async fn scan_keys(
    session: &Session,
    statements: &mut Statements,
    sink: &str,
    table: &TableSchema,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
    let mut statement = statements.get(session, sink, &scan_cql(table)).await?;
    statement.set_page_size(limit.clamp(1, i32::MAX as usize) as i32);
    let state = match cursor {
        None => PagingState::start(),
        Some(bytes) => PagingState::new_from_raw_bytes(bytes),
    };
    let doing = format!("scanning the keys of {}", table.id);
    let (result, paging) =
        session.execute_single_page(&statement, &[] as &[i32], state).await.map_err(|e| classify(sink, &doing, &e))?;
    let rows = result.into_rows_result().map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let columns: Vec<_> = table.key_columns().collect();
    let mut keys = Vec::new();
    for row in rows.rows::<CqlRow>().map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))? {
        let row = row.map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
        keys.push(columns.iter().zip(row.columns).map(|(c, cell)| from_cql(c, cell)).collect());
    }
    let next = match paging {
        PagingStateResponse::HasMorePages { state } => state.as_bytes_slice().map(|b| b.to_vec()),
        PagingStateResponse::NoMorePages => None,
    };
    Ok((keys, next))
}
