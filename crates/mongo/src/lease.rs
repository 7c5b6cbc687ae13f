//! Leases of sink tables ([`polyrepl_core::lease`]) in MongoDB: database `polyrepl`, collection
//! `_polyrepl_leases`, one document per collection written to:
//! `{_id: "<database>.<collection>", owner: <pipeline>, holder: "host:pid", expires: <date>}`.
//!
//! Invariants:
//! - Taking a lease is one `update` with upsert whose filter matches only a lease that is the owner's
//!   or has expired: when another owner holds a live one, the upsert's insert of the same `_id` fails
//!   with a duplicate key, so two pipelines starting together can never both win. Taking over is the
//!   same update without the condition.
//! - Expiry is a date written by the owner's clock and compared with the taker's: hosts running
//!   pipelines against the same MongoDB must agree on the time (within a few seconds of the lease's
//!   length). MongoDB database names cannot contain `.`, so the `_id` names one collection.
//! - Expired documents are left in place (a later lease overwrites them); releasing deletes one's own.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::Client;
use polyrepl_core::{Lease, LeaseRequest, SinkError, TableId, TableSchema};

use crate::checkpoint::CHECKPOINT_DATABASE;
use crate::error::classify;

/// Collection holding one lease document per sink collection.
pub const LEASE_COLLECTION: &str = "_polyrepl_leases";

/// MongoDB's duplicate-key error.
const DUPLICATE_KEY: i32 = 11000;

fn collection(client: &Client) -> mongodb::Collection<Document> {
    client.database(CHECKPOINT_DATABASE).collection(LEASE_COLLECTION)
}

/// The lease `_id` of `table`'s collection.
pub fn lease_id(table: &TableId) -> String {
    format!("{}.{}", table.database, table.table)
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// See [`polyrepl_core::Sink::acquire_leases`].
pub async fn acquire(
    client: &Client,
    sink: &str,
    tables: &[Arc<TableSchema>],
    request: &LeaseRequest,
) -> Result<Vec<Lease>, SinkError> {
    let leases = collection(client);
    let mut refused = Vec::new();
    for table in tables {
        let id = lease_id(&table.id);
        let doing = format!("taking the lease of {} in {CHECKPOINT_DATABASE}.{LEASE_COLLECTION}", table.id);
        // A refusal whose lease is gone when read back (expired or released in between) tries again.
        for attempt in 1..=3 {
            let now = BsonDateTime::now();
            let expires = BsonDateTime::from_millis(now.timestamp_millis().saturating_add(millis(request.ttl)));
            let filter = if request.take_over {
                doc! { "_id": &id }
            } else {
                doc! { "_id": &id, "$or": [{ "owner": &request.owner }, { "expires": { "$lte": now } }] }
            };
            let update = doc! { "$set": { "owner": &request.owner, "holder": &request.holder, "expires": expires } };
            match leases.update_one(filter, update).upsert(true).await {
                Ok(_) => break,
                Err(e) if is_duplicate_key(&e) => match read_one(client, sink, &table.id).await? {
                    Some(lease) => {
                        refused.push(lease);
                        break;
                    }
                    None if attempt < 3 => continue,
                    None => {
                        return Err(SinkError::transient(sink, format!("{doing}: it changed under three attempts")))
                    }
                },
                Err(e) => return Err(classify(sink, &doing, &e)),
            }
        }
    }
    Ok(refused)
}

/// See [`polyrepl_core::Sink::release_leases`].
pub async fn release(client: &Client, sink: &str, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
    let leases = collection(client);
    for table in tables {
        leases
            .delete_one(doc! { "_id": lease_id(&table.id), "owner": owner })
            .await
            .map_err(|e| classify(sink, &format!("releasing the lease of {}", table.id), &e))?;
    }
    Ok(())
}

/// See [`polyrepl_core::Sink::read_leases`].
pub async fn read(client: &Client, sink: &str, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
    let ids: Vec<String> = tables.iter().map(|t| lease_id(&t.id)).collect();
    let doing = format!("reading leases in {CHECKPOINT_DATABASE}.{LEASE_COLLECTION}");
    let documents: Vec<Document> = collection(client)
        .find(doc! { "_id": { "$in": &ids } })
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .try_collect()
        .await
        .map_err(|e| classify(sink, &doing, &e))?;
    let now = BsonDateTime::now().timestamp_millis();
    Ok(tables
        .iter()
        .filter_map(|t| {
            let id = lease_id(&t.id);
            let document = documents.iter().find(|d| d.get_str("_id").ok() == Some(id.as_str()))?;
            lease_of(&t.id, document, now)
        })
        .collect())
}

async fn read_one(client: &Client, sink: &str, table: &TableId) -> Result<Option<Lease>, SinkError> {
    let found = collection(client)
        .find_one(doc! { "_id": lease_id(table) })
        .await
        .map_err(|e| classify(sink, &format!("reading the lease of {table}"), &e))?;
    Ok(found.and_then(|d| lease_of(table, &d, BsonDateTime::now().timestamp_millis())))
}

/// The lease a document records, unless it has expired at `now` (epoch milliseconds).
fn lease_of(table: &TableId, document: &Document, now: i64) -> Option<Lease> {
    let expires = document.get_datetime("expires").ok()?.timestamp_millis();
    (expires > now).then(|| Lease {
        table: table.clone(),
        owner: document.get_str("owner").unwrap_or_default().to_string(),
        holder: document.get_str("holder").unwrap_or_default().to_string(),
        expires_in: Duration::from_millis((expires - now) as u64),
    })
}
