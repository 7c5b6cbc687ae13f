//! FerretDB 1.x: keeping a killed run's last command from landing after the restarted run's writes.
//!
//! Why: FerretDB keeps executing a command after its client is gone, and its `delete` first reads the
//! ids its filter matches and deletes them in a second step. A run killed during a long `$in` delete
//! leaves that delete running; if the restarted run writes one of those ids again before the second
//! step, the row is gone. A `$in` delete costs (documents in the collection × ids): 20 000 ids took
//! 20 s on a 50 000-document collection here.
//!
//! Invariants:
//! - A delete command's cost is bounded: at most [`ids_per_delete`] ids per `$in`, so that documents ×
//!   ids stays within [`DELETE_BUDGET`] comparisons (never fewer than [`MIN_IDS`] ids); a range delete
//!   (a snapshot copied again) costs one scan, less than the fence's own read below.
//! - Before its first write a sink on FerretDB waits out the longest command the previous run can have
//!   had in flight ([`wait_out_previous_run`]): it reads with a filter shaped like the largest delete
//!   the rule allows on its largest collection — the same scan and comparisons as that command, started
//!   after it — then waits half as long again plus [`FENCE_MARGIN`].
//! - Document counts come from `collStats` (cheap on FerretDB), refreshed every [`COUNT_REFRESH`], and
//!   count every inserted document in between (an over-estimate, so deletes only get smaller).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use polyrepl_core::SinkError;

use crate::error::classify;

/// Most `$in` comparisons (documents × ids) one delete command may cost: about 2 s on this 2-core machine.
pub const DELETE_BUDGET: u64 = 50_000_000;
/// Fewest ids per delete command, however large the collection (a command also scans every document).
pub const MIN_IDS: usize = 100;
/// Added to the fence's wait, for the killed command's second step and for noise.
pub const FENCE_MARGIN: Duration = Duration::from_millis(500);
/// The server's error code for a collection that does not exist.
pub(crate) const NAMESPACE_NOT_FOUND: i32 = 26;
/// How long a `collStats` count is used before it is read again.
pub const COUNT_REFRESH: Duration = Duration::from_secs(30);

/// Ids per `$in` delete on a collection of `documents` documents, at most `max_ops`.
pub fn ids_per_delete(documents: u64, max_ops: usize) -> usize {
    let by_budget = DELETE_BUDGET / documents.max(1);
    (by_budget.min(usize::MAX as u64) as usize).clamp(MIN_IDS, max_ops.max(MIN_IDS))
}

/// Document counts per collection (database, collection).
#[derive(Debug, Default)]
pub struct DocCounts {
    counts: HashMap<(String, String), (u64, Instant)>,
}

impl DocCounts {
    /// The collection's document count, read with `collStats` when unknown or older than `COUNT_REFRESH`.
    pub async fn get(
        &mut self,
        client: &Client,
        sink: &str,
        database: &str,
        collection: &str,
    ) -> Result<u64, SinkError> {
        let key = (database.to_string(), collection.to_string());
        if let Some(&(count, at)) = self.counts.get(&key) {
            if at.elapsed() < COUNT_REFRESH {
                return Ok(count);
            }
        }
        let doing = format!("reading the document count of {database}.{collection}");
        let stats = match client.database(database).run_command(doc! { "collStats": collection }).await {
            Ok(stats) => stats,
            // A collection not created yet holds nothing (FerretDB answers with empty stats anyway).
            Err(e) if matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND) => {
                doc! { "count": 0 }
            }
            Err(e) => return Err(classify(sink, &doing, &e)),
        };
        let count = match stats.get("count") {
            Some(Bson::Int32(n)) => (*n).max(0) as u64,
            Some(Bson::Int64(n)) => (*n).max(0) as u64,
            Some(Bson::Double(n)) => n.max(0.0) as u64,
            _ => 0,
        };
        self.counts.insert(key, (count, Instant::now()));
        Ok(count)
    }

    /// Forgets the collection's count (it was emptied or dropped): the next `get` reads it again.
    pub fn forget(&mut self, database: &str, collection: &str) {
        self.counts.remove(&(database.to_string(), collection.to_string()));
    }

    /// Counts `inserted` more documents in the collection (until the next refresh).
    pub fn add(&mut self, database: &str, collection: &str, inserted: u64) {
        if let Some((count, _)) = self.counts.get_mut(&(database.to_string(), collection.to_string())) {
            *count += inserted;
        }
    }
}

/// Waits until a command the previous run sent before it was killed can no longer land (see the
/// module notes); returns how long that took.
pub async fn wait_out_previous_run(
    client: &Client,
    sink: &str,
    collections: &[(String, String)],
    counts: &mut DocCounts,
    max_ops: usize,
) -> Result<Duration, SinkError> {
    let started = Instant::now();
    let mut largest: Option<(&str, &str, u64)> = None;
    for (database, collection) in collections {
        let count = counts.get(client, sink, database, collection).await?;
        if largest.is_none_or(|(_, _, most)| count > most) {
            largest = Some((database, collection, count));
        }
    }
    let Some((database, collection, count)) = largest.filter(|l| l.2 > 0) else {
        return Ok(started.elapsed());
    };
    let coll = client.database(database).collection::<Document>(collection);
    let doing = format!("waiting out a killed run's last command on {database}.{collection}");
    // Real ids, so the comparisons cost what the deletes' comparisons cost.
    let ids: Vec<Bson> = coll
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .limit(ids_per_delete(count, max_ops) as i64)
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .try_filter_map(|d| async move { Ok(d.get("_id").cloned()) })
        .try_collect()
        .await
        .map_err(|e| classify(sink, &doing, &e))?;
    let probe = Instant::now();
    let _: Vec<Document> = coll
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "_id": 1 })
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .try_collect()
        .await
        .map_err(|e| classify(sink, &doing, &e))?;
    let probe = probe.elapsed();
    tokio::time::sleep(probe / 2 + FENCE_MARGIN).await;
    let waited = started.elapsed();
    if waited > Duration::from_secs(2) {
        tracing::info!(sink, seconds = waited.as_secs_f64(), collection = %format!("{database}.{collection}"), "waited for a previous run's last FerretDB command to finish before writing");
    }
    Ok(waited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_shrink_as_collections_grow() {
        assert_eq!(ids_per_delete(0, 100_000), 100_000);
        assert_eq!(ids_per_delete(5_000, 100_000), 10_000);
        assert_eq!(ids_per_delete(50_000, 100_000), 1_000);
        assert_eq!(ids_per_delete(10_000_000, 100_000), MIN_IDS);
        assert_eq!(ids_per_delete(5_000, 2_000), 2_000);
    }
}
