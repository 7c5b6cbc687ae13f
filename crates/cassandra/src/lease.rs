//! Leases of sink tables ([`polyrepl_core::lease`]) in Cassandra: table `polyrepl.polyrepl_leases`
//! `(sink_table text PRIMARY KEY, owner text, holder text)`, one row per table written to
//! (`sink_table` = `keyspace.table`), its cells written `USING TTL` (the server's clock expires them).
//!
//! Invariants:
//! - Every change of a lease is a lightweight transaction (Paxos) on its row: `UPDATE … IF owner = ?`
//!   naming the owner the writer expects (itself, nobody — `null` — or, taking over, the one it saw),
//!   so two pipelines starting together can never both win. Plain writes are never mixed in.
//! - An expired lease is gone (its cells expired), so anyone may take it. The TTL is whole seconds,
//!   rounded up.

use std::sync::Arc;
use std::time::Duration;

use polyrepl_core::{Lease, LeaseRequest, SinkError, TableId, TableSchema};
use scylla::client::session::Session;
use scylla::value::{CqlValue, Row as CqlRow};

use crate::checkpoint::CHECKPOINT_KEYSPACE;
use crate::ddl::create_keyspace;
use crate::error::classify;

/// Table holding one lease row per sink table.
pub const LEASE_TABLE: &str = "polyrepl_leases";

/// Conditional writes tried before giving up on a lease that keeps changing under us.
const ATTEMPTS: usize = 5;

/// Creates the keyspace and table if absent.
pub async fn ensure(session: &Session, sink: &str, replication: &str) -> Result<(), SinkError> {
    create_keyspace(session, sink, CHECKPOINT_KEYSPACE, replication).await?;
    let cql = format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_KEYSPACE}.{LEASE_TABLE} (sink_table text PRIMARY KEY, owner text, holder text)"
    );
    session
        .query_unpaged(cql, &[])
        .await
        .map_err(|e| classify(sink, &format!("creating {CHECKPOINT_KEYSPACE}.{LEASE_TABLE}"), &e))?;
    Ok(())
}

/// The row key of `table`'s lease.
pub fn lease_id(table: &TableId) -> String {
    format!("{}.{}", table.database, table.table)
}

fn text(value: Option<CqlValue>) -> Option<String> {
    match value {
        Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => Some(s),
        _ => None,
    }
}

/// Writes the lease when its current owner is `expected` (`None`: nobody); `Ok(None)` when written,
/// `Ok(Some(owner))` with the owner found instead.
async fn write_if(
    session: &Session,
    sink: &str,
    id: &str,
    request: &LeaseRequest,
    expected: Option<&str>,
) -> Result<Option<Option<String>>, SinkError> {
    let ttl = request.ttl.as_secs_f64().ceil().clamp(1.0, 630_720_000.0) as i32;
    let doing = format!("taking the lease of {id} in {CHECKPOINT_KEYSPACE}.{LEASE_TABLE}");
    let update = format!(
        "UPDATE {CHECKPOINT_KEYSPACE}.{LEASE_TABLE} USING TTL ? SET owner = ?, holder = ? WHERE sink_table = ?"
    );
    let result = match expected {
        Some(owner) => {
            session
                .query_unpaged(format!("{update} IF owner = ?"), (ttl, &request.owner, &request.holder, id, owner))
                .await
        }
        None => {
            session.query_unpaged(format!("{update} IF owner = null"), (ttl, &request.owner, &request.holder, id)).await
        }
    }
    .map_err(|e| classify(sink, &doing, &e))?;
    let rows = result.into_rows_result().map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let specs = rows.column_specs();
    let applied = specs.get_by_name("[applied]").map(|(i, _)| i);
    let owner = specs.get_by_name("owner").map(|(i, _)| i);
    let row = rows
        .maybe_first_row::<CqlRow>()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?
        .ok_or_else(|| SinkError::definite(sink, format!("{doing}: no answer to the conditional update")))?;
    let mut columns = row.columns;
    let was_applied = applied.and_then(|i| columns.get(i).cloned().flatten());
    if matches!(was_applied, Some(CqlValue::Boolean(true))) {
        return Ok(None);
    }
    Ok(Some(owner.and_then(|i| text(columns.get_mut(i).and_then(Option::take)))))
}

/// See [`polyrepl_core::Sink::acquire_leases`].
pub async fn acquire(
    session: &Session,
    sink: &str,
    tables: &[Arc<TableSchema>],
    request: &LeaseRequest,
) -> Result<Vec<Lease>, SinkError> {
    let mut refused = Vec::new();
    for table in tables {
        let id = lease_id(&table.id);
        // The usual case first: renewing one's own lease.
        let mut expected = Some(request.owner.clone());
        let mut taken = false;
        for _ in 0..ATTEMPTS {
            match write_if(session, sink, &id, request, expected.as_deref()).await? {
                None => {
                    taken = true;
                    break;
                }
                Some(None) => expected = None,
                Some(Some(owner)) if owner == request.owner || request.take_over => expected = Some(owner),
                Some(Some(_)) => match read_one(session, sink, &table.id).await? {
                    Some(lease) if lease.owner != request.owner => {
                        refused.push(lease);
                        taken = true; // settled: refused
                        break;
                    }
                    found => expected = found.map(|l| l.owner),
                },
            }
        }
        if !taken {
            return Err(SinkError::transient(
                sink,
                format!("taking the lease of {}: it changed under {ATTEMPTS} conditional updates", table.id),
            ));
        }
    }
    Ok(refused)
}

/// See [`polyrepl_core::Sink::release_leases`].
pub async fn release(session: &Session, sink: &str, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
    for table in tables {
        session
            .query_unpaged(
                format!("DELETE FROM {CHECKPOINT_KEYSPACE}.{LEASE_TABLE} WHERE sink_table = ? IF owner = ?"),
                (lease_id(&table.id), owner),
            )
            .await
            .map_err(|e| classify(sink, &format!("releasing the lease of {}", table.id), &e))?;
    }
    Ok(())
}

/// See [`polyrepl_core::Sink::read_leases`].
pub async fn read(session: &Session, sink: &str, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
    let mut leases = Vec::new();
    for table in tables {
        leases.extend(read_one(session, sink, &table.id).await?);
    }
    Ok(leases)
}

async fn read_one(session: &Session, sink: &str, table: &TableId) -> Result<Option<Lease>, SinkError> {
    let doing = format!("reading the lease of {table}");
    let result = session
        .query_unpaged(
            format!("SELECT owner, holder, TTL(owner) FROM {CHECKPOINT_KEYSPACE}.{LEASE_TABLE} WHERE sink_table = ?"),
            (lease_id(table),),
        )
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .into_rows_result()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let row = result
        .maybe_first_row::<(Option<String>, Option<String>, Option<i32>)>()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    Ok(row.and_then(|(owner, holder, ttl)| {
        Some(Lease {
            table: table.clone(),
            owner: owner?,
            holder: holder.unwrap_or_default(),
            // TTL() counts whole seconds left, rounded down.
            expires_in: Duration::from_secs(ttl.unwrap_or(0).max(1) as u64),
        })
    }))
}
