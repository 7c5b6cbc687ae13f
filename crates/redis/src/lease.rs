//! Leases of sink tables ([`polyrepl_core::lease`]) in Redis: one HASH per table at
//! `polyrepl:lease:[prefix]DB:TABLE` (the lease key of the table's rows' key space) with the fields
//! `owner` and `holder`, expiring by Redis's own key expiry (`PEXPIRE`, the server's clock).
//!
//! Invariants:
//! - Taking, renewing and releasing a lease is one Lua script on the lease's one key, so it is atomic
//!   on a single server and on a Redis Cluster alike (a script with one key runs on that key's node).
//! - An expired lease is gone (Redis removed the key), so anyone may take it.

use std::sync::Arc;
use std::time::Duration;

use polyrepl_core::{Lease, LeaseRequest, SinkError, TableSchema};

use crate::connection::RedisConnection;
use crate::error::classify;
use crate::naming::LEASE_KEY_PREFIX;

/// Takes the lease unless another owner holds it (and `take_over` is not `1`): returns
/// `{1, '', '', 0}` when taken, `{0, owner, holder, ms left}` when refused.
const ACQUIRE: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] and ARGV[4] ~= '1' then
  return {0, owner, redis.call('HGET', KEYS[1], 'holder') or '', redis.call('PTTL', KEYS[1])}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'holder', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, '', '', 0}
"#;

/// Deletes the lease when `ARGV[1]` owns it.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Reads the lease: `{owner or '', holder or '', ms left}`.
const READ: &str = r#"
return {redis.call('HGET', KEYS[1], 'owner') or '', redis.call('HGET', KEYS[1], 'holder') or '', redis.call('PTTL', KEYS[1])}
"#;

/// The lease key of `table`'s rows under the row-key prefix `prefix`.
pub fn lease_key(prefix: Option<&str>, table: &TableSchema) -> String {
    format!("{LEASE_KEY_PREFIX}{}{}:{}", prefix.unwrap_or(""), table.id.database, table.id.table)
}

fn eval(script: &str, key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    cmd
}

/// See [`polyrepl_core::Sink::acquire_leases`].
pub async fn acquire(
    conn: &mut RedisConnection,
    sink: &str,
    prefix: Option<&str>,
    tables: &[Arc<TableSchema>],
    request: &LeaseRequest,
) -> Result<Vec<Lease>, SinkError> {
    let ttl_ms = request.ttl.as_millis().clamp(1, i64::MAX as u128) as i64;
    let mut refused = Vec::new();
    for table in tables {
        let key = lease_key(prefix, table);
        let (taken, owner, holder, left): (i64, String, String, i64) = eval(ACQUIRE, &key)
            .arg(&request.owner)
            .arg(&request.holder)
            .arg(ttl_ms)
            .arg(if request.take_over { "1" } else { "0" })
            .query_async(conn)
            .await
            .map_err(|e| classify(sink, &format!("taking the lease {key} of {}", table.id), &e))?;
        if taken == 0 {
            refused.push(Lease { table: table.id.clone(), owner, holder, expires_in: left_of(left) });
        }
    }
    Ok(refused)
}

/// See [`polyrepl_core::Sink::release_leases`].
pub async fn release(
    conn: &mut RedisConnection,
    sink: &str,
    prefix: Option<&str>,
    tables: &[Arc<TableSchema>],
    owner: &str,
) -> Result<(), SinkError> {
    for table in tables {
        let key = lease_key(prefix, table);
        let _: i64 = eval(RELEASE, &key)
            .arg(owner)
            .query_async(conn)
            .await
            .map_err(|e| classify(sink, &format!("releasing the lease {key} of {}", table.id), &e))?;
    }
    Ok(())
}

/// See [`polyrepl_core::Sink::read_leases`].
pub async fn read(
    conn: &mut RedisConnection,
    sink: &str,
    prefix: Option<&str>,
    tables: &[Arc<TableSchema>],
) -> Result<Vec<Lease>, SinkError> {
    let mut leases = Vec::new();
    for table in tables {
        let key = lease_key(prefix, table);
        let (owner, holder, left): (String, String, i64) = eval(READ, &key)
            .query_async(conn)
            .await
            .map_err(|e| classify(sink, &format!("reading the lease {key} of {}", table.id), &e))?;
        if !owner.is_empty() && left != -2 {
            leases.push(Lease { table: table.id.clone(), owner, holder, expires_in: left_of(left) });
        }
    }
    Ok(leases)
}

/// `PTTL`'s answer as a duration (a key without expiry, -1, never expires: shown as a day).
fn left_of(pttl: i64) -> Duration {
    match pttl {
        -1 => Duration::from_secs(86_400),
        ms => Duration::from_millis(ms.max(0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::TableId;

    #[test]
    fn the_lease_key_is_the_row_key_space_of_the_table() {
        let t = TableSchema { id: TableId::new("shop", "orders"), columns: vec![], primary_key: vec![] };
        assert_eq!(lease_key(None, &t), "polyrepl:lease:shop:orders");
        assert_eq!(lease_key(Some("app:"), &t), "polyrepl:lease:app:shop:orders");
    }
}
