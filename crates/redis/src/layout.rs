//! Removing a table from Redis: `truncate_table` deletes its row hashes, `drop_table` also its change
//! stream.
//!
//! Invariants:
//! - A table's rows are exactly the keys starting with `[prefix]DB:TABLE:` ([`crate::naming`]; database
//!   and table names cannot contain `:`, so no other table's key starts so). They are found with
//!   `SCAN … MATCH <that prefix, glob-escaped>* COUNT n` in pages and deleted with `UNLINK` page by page
//!   (the memory is freed in the background). SCAN returns every key present for the whole scan at
//!   least once, and a key deleted meanwhile is not a problem, so a table no batch writes to meanwhile
//!   ends empty. Deleting absent keys is a no-op: both operations are idempotent.
//! - Redis Cluster: a table's keys spread over every master, and SCAN only sees the keys of the node
//!   it runs on, so every master is scanned (routed through a slot it owns, learned with
//!   `CLUSTER SLOTS`), and each page's keys are unlinked one `UNLINK` per hash slot (a multi-key
//!   command must stay within one slot).
//! - The checkpoint keys are never touched (they belong to pipelines, not to tables); the change stream
//!   `polyrepl:stream:DB:TABLE` is history, not rows: `truncate_table` keeps it, `drop_table` deletes it.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use polyrepl_core::{SinkError, TableSchema};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use crate::connection::RedisConnection;
use crate::error::classify;
use crate::naming::{hash_slot, stream_key};
use crate::scan::{glob_escape, table_prefix, SCAN_WORK_MAX};

/// `UNLINK`s in flight at once on a cluster (one per hash slot of a page).
const CLUSTER_UNLINKS_IN_FLIGHT: usize = 64;

/// Deletes every row key of `table` (see the module notes).
pub async fn delete_rows(
    conn: &mut RedisConnection,
    sink: &str,
    prefix: Option<&str>,
    table: &TableSchema,
) -> Result<(), SinkError> {
    let pattern = [glob_escape(&table_prefix(prefix, table)), b"*".to_vec()].concat();
    let doing = format!("removing the rows of {}", table.id);
    match conn {
        RedisConnection::Single(_) => scan_and_unlink(conn, sink, &doing, &pattern, None).await,
        RedisConnection::Cluster(_) => {
            for slot in master_slots(conn, sink, &doing).await? {
                scan_and_unlink(conn, sink, &doing, &pattern, Some(slot)).await?;
            }
            Ok(())
        }
    }
}

/// Deletes the change-stream key of `table` (absent or not).
pub async fn delete_stream(conn: &mut RedisConnection, sink: &str, table: &TableSchema) -> Result<(), SinkError> {
    let key = stream_key(table);
    redis::cmd("UNLINK")
        .arg(&key)
        .query_async::<i64>(conn)
        .await
        .map_err(|e| classify(sink, &format!("removing the change stream {key} of {}", table.id), &e))?;
    Ok(())
}

/// SCANs the keys matching `pattern` (on the master owning `slot` when on a cluster) and unlinks them
/// page by page.
async fn scan_and_unlink(
    conn: &mut RedisConnection,
    sink: &str,
    doing: &str,
    pattern: &[u8],
    slot: Option<u16>,
) -> Result<(), SinkError> {
    let mut cursor: u64 = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_WORK_MAX);
        let (next, keys): (u64, Vec<Vec<u8>>) = match (&mut *conn, slot) {
            (RedisConnection::Cluster(c), Some(slot)) => {
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
                let reply = c.route_command(scan, routing).await.map_err(|e| classify(sink, doing, &e))?;
                redis::from_redis_value(reply)
                    .map_err(|e| SinkError::definite(sink, format!("{doing}: SCAN answered {e}")))?
            }
            _ => scan.query_async(&mut *conn).await.map_err(|e| classify(sink, doing, &e))?,
        };
        if !keys.is_empty() {
            if conn.is_cluster() {
                unlink_by_slot(conn, sink, doing, keys).await?;
            } else {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<i64>(&mut *conn)
                    .await
                    .map_err(|e| classify(sink, doing, &e))?;
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// One `UNLINK` per hash slot of `keys`, several at once.
async fn unlink_by_slot(conn: &RedisConnection, sink: &str, doing: &str, keys: Vec<Vec<u8>>) -> Result<(), SinkError> {
    let mut by_slot: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
    for key in keys {
        by_slot.entry(hash_slot(&key)).or_default().push(key);
    }
    let results: Vec<Result<i64, redis::RedisError>> = futures::stream::iter(by_slot.into_values())
        .map(|keys| {
            let mut conn = conn.clone();
            async move { redis::cmd("UNLINK").arg(&keys).query_async::<i64>(&mut conn).await }
        })
        .buffer_unordered(CLUSTER_UNLINKS_IN_FLIGHT)
        .collect()
        .await;
    for result in results {
        result.map_err(|e| classify(sink, doing, &e))?;
    }
    Ok(())
}

/// One slot of every master of the cluster (the first of the lowest range it owns), from `CLUSTER SLOTS`.
async fn master_slots(conn: &mut RedisConnection, sink: &str, doing: &str) -> Result<Vec<u16>, SinkError> {
    let reply: redis::Value =
        redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await.map_err(|e| classify(sink, doing, &e))?;
    let ranges = parse_cluster_slots(&reply).ok_or_else(|| {
        SinkError::definite(sink, format!("{doing}: CLUSTER SLOTS answered something unexpected: {reply:?}"))
    })?;
    let mut seen = BTreeSet::new();
    let mut slots = Vec::new();
    let mut ranges = ranges;
    ranges.sort();
    for (start, master) in ranges {
        if seen.insert(master) {
            slots.push(start);
        }
    }
    Ok(slots)
}

/// `(first slot, master "host:port")` of every range of a `CLUSTER SLOTS` reply.
fn parse_cluster_slots(reply: &redis::Value) -> Option<Vec<(u16, String)>> {
    let redis::Value::Array(ranges) = reply else { return None };
    ranges
        .iter()
        .map(|range| {
            let redis::Value::Array(parts) = range else { return None };
            let start = match parts.first()? {
                redis::Value::Int(n) => u16::try_from(*n).ok()?,
                _ => return None,
            };
            let redis::Value::Array(master) = parts.get(2)? else { return None };
            let host: String = redis::from_redis_value_ref(master.first()?).ok()?;
            let port: i64 = redis::from_redis_value_ref(master.get(1)?).ok()?;
            Some((start, format!("{host}:{port}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn cluster_slots_give_one_range_start_per_master() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![Value::BulkString(host.into()), Value::Int(port), Value::BulkString(b"id".to_vec())])
        };
        let range = |a: i64, b: i64, master: Value| Value::Array(vec![Value::Int(a), Value::Int(b), master]);
        let reply = Value::Array(vec![
            range(5461, 10922, node("10.0.0.2", 7001)),
            range(0, 5460, node("10.0.0.1", 7000)),
            range(10923, 16383, node("10.0.0.1", 7000)),
        ]);
        let mut parsed = parse_cluster_slots(&reply).unwrap();
        parsed.sort();
        assert_eq!(
            parsed,
            vec![(0, "10.0.0.1:7000".into()), (5461, "10.0.0.2:7001".into()), (10923, "10.0.0.1:7000".into())]
        );
        assert_eq!(parse_cluster_slots(&Value::Int(1)), None);
    }
}
