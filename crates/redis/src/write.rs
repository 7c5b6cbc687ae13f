//! Sending a planned batch as MULTI/EXEC transactions, the checkpoint last.
//!
//! Invariants, single server (standalone Redis):
//! - A batch normally is one transaction: its row writes, its stream entries and the checkpoint `SET`
//!   are applied together or not at all (Redis runs a transaction's commands back to back; a command
//!   refused while queueing — permission, syntax, out of memory — aborts all of it with EXECABORT).
//! - A batch bigger than the chunk bounds (`max_chunk_commands`, `max_chunk_bytes`) becomes several
//!   transactions sent in order; only the last carries the checkpoint. Each chunk is idempotent on its
//!   own (full-row DEL + HSET, DEL), so a failure between chunks leaves the old checkpoint and some of
//!   the batch's rows already written; the pipeline retries the whole batch, which rewrites them with
//!   the same values. Until then a reader may see part of the batch (never a partial row). Stream entries
//!   of chunks that were applied are appended again on that retry (the stream is at least once).
//!
//! Invariants, Redis Cluster ([`cluster_writes`]) — atomicity is relaxed to one hash slot:
//! - A cluster runs a transaction only when all its keys are in one hash slot, and the keys of a batch
//!   (`DB:TABLE:PK`, no hash tag) spread over all slots. So the batch's commands are grouped by the slot
//!   of their key: one MULTI/EXEC per slot (several in order when a slot's group exceeds the chunk
//!   bounds), each carrying that slot's row writes and the stream entries of the stream keys in that
//!   slot, in batch order. Slot groups touch disjoint keys, so they are sent concurrently.
//! - The checkpoint `SET` (its own key, its own slot) is sent alone, only after every slot transaction
//!   succeeded. A failure or crash before it leaves the previous checkpoint: the pipeline replays the
//!   whole batch, which rewrites the same full row images and deletes (idempotent) and appends the
//!   stream entries again (at least once, as on a single server). So: per-slot atomic, checkpoint last,
//!   replay-safe. Meanwhile a reader may see part of a batch (never a partial row).
//!
//! Both modes:
//! - All commands of one row (DEL or HDEL, HSET, PEXPIRE) are always in the same transaction.
//! - Runtime errors inside EXEC (a key of the wrong type) do not undo the other commands — Redis has no
//!   rollback; they are reported as definite errors that say so. polyrepl's own commands cannot hit one
//!   unless another application writes a non-stream value at a stream key.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use polyrepl_core::{Checkpoint, SinkError};
use redis::aio::ConnectionLike;
use redis::Pipeline;

use crate::error::classify;
use crate::mapping::FieldArg;
use crate::naming::{checkpoint_key, hash_slot};
use crate::options::RedisOptions;
use crate::plan::{chunk_ranges, Plan, RowWrite};

/// Slot groups in flight at once in cluster mode.
const CLUSTER_CONCURRENCY: usize = 32;

/// One item of a plan: a row write, a stream entry or a dead-letter record, by index.
#[derive(Debug, Clone, Copy)]
enum Item {
    Row(usize),
    Append(usize),
    DeadLetter(usize),
}

/// Builds the transactions for `plan` on a single server: chunks in order, the checkpoint `SET` in
/// the last.
pub fn transactions(plan: &Plan, options: &RedisOptions, pipeline: &str, checkpoint: &Checkpoint) -> Vec<Pipeline> {
    let items: Vec<Item> = (0..plan.rows.len())
        .map(Item::Row)
        .chain((0..plan.appends.len()).map(Item::Append))
        .chain((0..plan.dead_letters.len()).map(Item::DeadLetter))
        .collect();
    let mut txs = chunked(plan, &items, options);
    if let Some(last) = txs.last_mut() {
        last.cmd("SET").arg(checkpoint_key(pipeline)).arg(checkpoint.to_json()).ignore();
    }
    txs
}

/// What a batch sends to a Redis Cluster: per hash slot the transactions of that slot (in order), and
/// the checkpoint `SET`, to send after all of them succeeded.
pub struct ClusterWrites {
    /// (slot, its transactions in order), by slot number.
    pub slots: Vec<(u16, Vec<Pipeline>)>,
    /// The checkpoint write, a single command.
    pub checkpoint: redis::Cmd,
}

/// Groups `plan` by hash slot for a Redis Cluster (see the module notes).
pub fn cluster_writes(plan: &Plan, options: &RedisOptions, pipeline: &str, checkpoint: &Checkpoint) -> ClusterWrites {
    let mut groups: BTreeMap<u16, Vec<Item>> = BTreeMap::new();
    for (i, write) in plan.rows.iter().enumerate() {
        groups.entry(hash_slot(write.key())).or_default().push(Item::Row(i));
    }
    for (i, append) in plan.appends.iter().enumerate() {
        groups.entry(hash_slot(append.key.as_bytes())).or_default().push(Item::Append(i));
    }
    for (i, letter) in plan.dead_letters.iter().enumerate() {
        groups.entry(hash_slot(letter.key.as_bytes())).or_default().push(Item::DeadLetter(i));
    }
    let slots = groups.into_iter().map(|(slot, items)| (slot, chunked(plan, &items, options))).collect();
    let mut set = redis::cmd("SET");
    set.arg(checkpoint_key(pipeline)).arg(checkpoint.to_json());
    ClusterWrites { slots, checkpoint: set }
}

/// `items` as MULTI/EXEC transactions within the chunk bounds (at least one, possibly empty, with
/// room left for the checkpoint `SET`).
fn chunked(plan: &Plan, items: &[Item], options: &RedisOptions) -> Vec<Pipeline> {
    let ttl_ms = options.ttl.map(|t| t.as_millis().clamp(1, i64::MAX as u128) as i64);
    let sizes: Vec<(usize, usize)> = items
        .iter()
        .map(|item| match *item {
            Item::Row(i) => (plan.rows[i].commands(ttl_ms.is_some()), plan.rows[i].bytes()),
            Item::Append(i) => (1, plan.appends[i].key.len() + plan.appends[i].event.len() + 32),
            Item::DeadLetter(i) => {
                let letter = &plan.dead_letters[i];
                (1, letter.key.len() + letter.field.len() + letter.json.len() + 32)
            }
        })
        .collect();
    // Room for MULTI, EXEC and the checkpoint SET.
    let max_commands = options.max_chunk_commands.saturating_sub(3).max(1);
    let mut ranges = chunk_ranges(&sizes, max_commands, options.max_chunk_bytes);
    if ranges.is_empty() {
        ranges.push(0..0);
    }
    ranges
        .into_iter()
        .map(|range| {
            let commands: usize = sizes[range.clone()].iter().map(|(c, _)| c).sum();
            let mut tx = redis::Pipeline::with_capacity(commands + 1);
            tx.atomic();
            for item in &items[range] {
                match *item {
                    Item::Row(i) => add_row(&mut tx, &plan.rows[i], ttl_ms),
                    Item::Append(i) => {
                        let append = &plan.appends[i];
                        let maxlen = options.stream.unwrap_or(usize::MAX);
                        tx.cmd("XADD")
                            .arg(&append.key)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(maxlen)
                            .arg("*")
                            .arg("event")
                            .arg(&append.event)
                            .ignore();
                    }
                    Item::DeadLetter(i) => {
                        let letter = &plan.dead_letters[i];
                        tx.cmd("HSET").arg(&letter.key).arg(&letter.field).arg(&letter.json).ignore();
                    }
                }
            }
            tx
        })
        .collect()
}

fn add_row(tx: &mut Pipeline, write: &RowWrite, ttl_ms: Option<i64>) {
    let RowWrite::Upsert { key, born, .. } = write else {
        tx.cmd("DEL").arg(write.key()).ignore();
        return;
    };
    let has_fields = write.fields().next().is_some();
    if !born || !has_fields {
        tx.cmd("DEL").arg(key).ignore();
    }
    if !has_fields {
        return; // HSET without fields would abort the whole transaction
    }
    // Sized up front: growing the command's buffer argument by argument was a large part of the
    // sink's time.
    let (fields, bytes) = write.fields().fold((0, 0), |(n, b), (name, _)| (n + 1, b + name.len() + 24));
    let mut hset = redis::Cmd::with_capacity(2 + 2 * fields, 4 + key.len() + bytes.max(write.bytes()));
    hset.arg("HSET").arg(key);
    for (name, value) in write.fields() {
        hset.arg(name).arg(FieldArg(value));
    }
    tx.add_command(hset).ignore();
    if *born && write.nulls().next().is_some() {
        tx.cmd("HDEL").arg(key);
        for name in write.nulls() {
            tx.arg(name);
        }
        tx.ignore();
    }
    if let Some(ms) = ttl_ms {
        tx.cmd("PEXPIRE").arg(key).arg(ms).ignore();
    }
}

/// Sends the transactions in order; stops at the first failure.
pub async fn send<C: ConnectionLike + Send>(
    conn: &mut C,
    sink: &str,
    transactions: &[Pipeline],
    what: &str,
) -> Result<(), SinkError> {
    let total = transactions.len();
    for (n, tx) in transactions.iter().enumerate() {
        tx.query_async::<()>(conn).await.map_err(|e| {
            let part = if total > 1 { format!(" (transaction {} of {total})", n + 1) } else { String::new() };
            classify(sink, &format!("writing {what}{part}"), &e)
        })?;
    }
    Ok(())
}

/// Sends a cluster batch: the slot groups concurrently (each group's transactions in order), then —
/// only when all succeeded — the checkpoint. Stops at the first failure without writing the checkpoint.
pub async fn send_cluster<C: ConnectionLike + Clone + Send + 'static>(
    conn: &C,
    sink: &str,
    writes: &ClusterWrites,
    what: &str,
) -> Result<(), SinkError> {
    let slots = writes.slots.len();
    futures::stream::iter(writes.slots.iter().map(Ok))
        .try_for_each_concurrent(CLUSTER_CONCURRENCY, |(slot, txs)| {
            let mut conn = conn.clone();
            async move {
                let total = txs.len();
                for (n, tx) in txs.iter().enumerate() {
                    tx.query_async::<()>(&mut conn).await.map_err(|e| {
                        let part = if total > 1 { format!(", transaction {} of {total}", n + 1) } else { String::new() };
                        classify(sink, &format!("writing {what} (hash slot {slot} of {slots} slot(s) touched{part}; checkpoint not written, the batch will be replayed)"), &e)
                    })?;
                }
                Ok::<(), SinkError>(())
            }
        })
        .await?;
    let mut conn = conn.clone();
    writes.checkpoint.query_async::<()>(&mut conn).await.map_err(|e| {
        classify(
            sink,
            &format!("writing the checkpoint after {what} (the data is written; the batch will be replayed)"),
            &e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StreamAppend;
    use polyrepl_core::{Column, ColumnKind, Position, Value};

    /// One INT column `a`, and the rows `a = 1` and `a = NULL` to borrow.
    fn column_a() -> Vec<Column> {
        vec![Column { name: "a".into(), kind: ColumnKind::Int, unsigned: false, nullable: true }]
    }
    const ONE: [Value; 1] = [Value::Int(1)];
    const NULL: [Value; 1] = [Value::Null];

    fn commands(tx: &Pipeline) -> Vec<String> {
        tx.cmd_iter()
            .map(|c| {
                String::from_utf8_lossy(
                    c.args_iter()
                        .next()
                        .map(|a| match a {
                            redis::Arg::Simple(b) => b,
                            _ => &[][..],
                        })
                        .unwrap_or(&[]),
                )
                .into_owned()
            })
            .collect()
    }

    #[test]
    fn checkpoint_goes_in_the_last_transaction_only() {
        let columns = column_a();
        let rows = (0..10)
            .map(|i| RowWrite::Upsert { key: format!("k{i}").into_bytes(), columns: &columns, row: &ONE, born: false })
            .collect();
        let plan =
            Plan { rows, appends: vec![StreamAppend { key: "s".into(), event: "{}".into() }], ..Default::default() };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let txs = transactions(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(txs.len(), 5);
        for tx in &txs[..4] {
            assert!(!commands(tx).contains(&"SET".to_string()));
        }
        assert_eq!(commands(&txs[4]), ["DEL", "HSET", "DEL", "HSET", "XADD", "SET"]);
        let empty = transactions(
            &Plan::default(),
            &RedisOptions::default(),
            "p",
            &Checkpoint::streaming(Position::new("b.000001", 4)),
        );
        assert_eq!(empty.len(), 1);
        assert_eq!(commands(&empty[0]), ["SET"]);
    }

    /// The key of every command of `tx` (its first argument after the command name).
    fn keys(tx: &Pipeline) -> Vec<Vec<u8>> {
        tx.cmd_iter()
            .filter_map(|c| match c.args_iter().nth(1) {
                Some(redis::Arg::Simple(b)) => Some(b.to_vec()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cluster_writes_are_grouped_by_slot_with_the_checkpoint_apart() {
        let columns = column_a();
        let rows: Vec<RowWrite> = (0..200)
            .map(|i| RowWrite::Upsert {
                key: format!("d:t:{i}").into_bytes(),
                columns: &columns,
                row: &ONE,
                born: false,
            })
            .collect();
        let appends = (0..30)
            .map(|i| StreamAppend { key: "polyrepl:stream:d:t".into(), event: format!("{{\"seq\":{i}}}") })
            .collect();
        let plan = Plan { rows, appends, ..Default::default() };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let writes = cluster_writes(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        let mut seen_rows = 0;
        let mut seen_appends = 0;
        for (slot, txs) in &writes.slots {
            assert!(!txs.is_empty());
            for tx in txs {
                assert!(!commands(tx).contains(&"SET".to_string()), "no checkpoint in slot transactions");
                for key in keys(tx) {
                    assert_eq!(hash_slot(&key), *slot, "every key of a transaction is in its slot");
                }
                seen_rows += commands(tx).iter().filter(|c| *c == "HSET").count();
                seen_appends += commands(tx).iter().filter(|c| *c == "XADD").count();
            }
        }
        assert_eq!((seen_rows, seen_appends), (200, 30));
        let stream_slot = hash_slot(b"polyrepl:stream:d:t");
        let stream_txs = &writes.slots.iter().find(|(s, _)| *s == stream_slot).unwrap().1;
        assert!(stream_txs.len() >= 6, "the stream's 30 entries are chunked within their slot");
        assert_eq!(writes.checkpoint.args_iter().count(), 3, "SET key value");
        assert!(writes.slots.windows(2).all(|w| w[0].0 < w[1].0), "one group per slot, by slot number");
        let empty =
            cluster_writes(&Plan::default(), &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert!(empty.slots.is_empty());
    }

    #[test]
    fn ttl_adds_pexpire_and_empty_rows_only_delete() {
        let columns = column_a();
        let plan = Plan {
            rows: vec![
                RowWrite::Upsert { key: b"k".to_vec(), columns: &columns, row: &ONE, born: false },
                RowWrite::Upsert { key: b"e".to_vec(), columns: &columns, row: &NULL, born: false },
            ],
            appends: vec![],
            ..Default::default()
        };
        let options = RedisOptions { ttl: Some(std::time::Duration::from_secs(2)), ..Default::default() };
        let txs = transactions(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(commands(&txs[0]), ["DEL", "HSET", "PEXPIRE", "DEL", "SET"]);
        // A born key: no DEL; its NULL columns are removed.
        let two = [Value::Int(2), Value::Null];
        let mut columns = column_a();
        columns.push(Column { name: "b".into(), ..columns[0].clone() });
        let plan = Plan {
            rows: vec![RowWrite::Upsert { key: b"n".to_vec(), columns: &columns, row: &two, born: true }],
            appends: vec![],
            ..Default::default()
        };
        let txs =
            transactions(&plan, &RedisOptions::default(), "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(commands(&txs[0]), ["HSET", "HDEL", "SET"]);
    }
}
