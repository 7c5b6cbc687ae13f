//! Sending a planned batch: its writes spread over lanes sent concurrently, the checkpoint after all.
//!
//! A *lane* is an ordered sequence of pipelines: first the writes of one command each (a row's lone
//! `HSET` or `DEL`, a stream entry, a dead-letter record), sent as they are, since one command is
//! atomic; then the rows of several commands, in MULTI/EXEC transactions. Every key of a batch belongs to exactly
//! one lane, chosen from the key alone, so a key's commands are always sent in order on one lane, and
//! lanes touch disjoint keys and may run at the same time:
//! - single server: [`RedisOptions::connections`] lanes, one connection each (the key's hash slot
//!   modulo the number of connections) — one connection is one TCP stream served by one server
//!   thread, and a single ordered stream left the server idle between replies (issue: snapshot/raw was
//!   0.42 with one MULTI/EXEC per batch);
//! - Redis Cluster: one lane per hash slot the batch touches (a cluster runs a transaction only when
//!   all its keys are in one slot), sent through the cluster connection, which routes it to the slot's
//!   node.
//!
//! Invariants (both modes):
//! - The checkpoint `SET` is sent alone, only after every lane succeeded. A failure or crash before it
//!   leaves the previous checkpoint: the pipeline replays the whole batch, which rewrites the same full
//!   row images and deletes (idempotent) and appends the stream entries again (the stream is at least
//!   once). So: atomic per transaction, checkpoint last, replay-safe. Meanwhile a reader may see part
//!   of a batch, never a partial row: all commands of one row (DEL or HDEL, HSET, PEXPIRE) are in the
//!   same transaction.
//! - A lane's pipelines stay within the chunk bounds (`max_chunk_commands`, `max_chunk_bytes`) and
//!   are sent in order; a stream key's entries all go to one lane, in batch order (all of them single
//!   commands, so in the lane's first pipelines, in order).
//! - Runtime errors inside EXEC (a key of the wrong type) do not undo the other commands — Redis has no
//!   rollback; they are reported as definite errors that say so. polyrepl's own commands cannot hit one
//!   unless another application writes a non-stream value at a stream key.
//! - Before: on a single server a batch and its checkpoint were one MULTI/EXEC. Giving that up for
//!   lanes was decided for speed (issue #15); it costs nothing in correctness, because a replay of
//!   full row images converges (every column is set or removed, see [`crate::plan`]).

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

/// Lanes in flight at once (on a cluster: slot groups; on a single server there are fewer lanes).
const LANES_IN_FLIGHT: usize = 32;

/// One item of a plan: a row write, a stream entry or a dead-letter record, by index.
#[derive(Debug, Clone, Copy)]
enum Item {
    Row(usize),
    Append(usize),
    DeadLetter(usize),
}

/// How keys are assigned to lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// One lane per hash slot (Redis Cluster); a lane's number is its slot.
    PerSlot,
    /// This many lanes, one per connection to a single server; a lane's number is its connection.
    Connections(usize),
}

impl Lanes {
    fn of(self, key: &[u8]) -> u16 {
        match self {
            Lanes::PerSlot => hash_slot(key),
            Lanes::Connections(n) => hash_slot(key) % n.max(1) as u16,
        }
    }
}

/// What a batch sends: per lane its transactions (in order), and the checkpoint `SET`, to send after
/// all of them succeeded.
pub struct LaneWrites {
    /// (lane, its transactions in order), by lane number.
    pub lanes: Vec<(u16, Vec<Pipeline>)>,
    /// The checkpoint write, a single command.
    pub checkpoint: redis::Cmd,
}

/// Groups `plan` into lanes (see the module notes).
pub fn lane_writes(
    plan: &Plan,
    options: &RedisOptions,
    pipeline: &str,
    checkpoint: &Checkpoint,
    lanes: Lanes,
) -> LaneWrites {
    let mut groups: BTreeMap<u16, Vec<Item>> = BTreeMap::new();
    for (i, write) in plan.rows.iter().enumerate() {
        groups.entry(lanes.of(write.key())).or_default().push(Item::Row(i));
    }
    for (i, append) in plan.appends.iter().enumerate() {
        groups.entry(lanes.of(append.key.as_bytes())).or_default().push(Item::Append(i));
    }
    for (i, letter) in plan.dead_letters.iter().enumerate() {
        groups.entry(lanes.of(letter.key.as_bytes())).or_default().push(Item::DeadLetter(i));
    }
    let ttl = options.ttl.is_some();
    let lanes = groups
        .into_iter()
        .map(|(lane, items)| {
            // A write of one command is atomic by itself; only rows of several commands (DEL or HDEL
            // with HSET, PEXPIRE) need MULTI/EXEC, which costs the server a queued copy and a reply per
            // command (snapshot rows are a single HSET each).
            let (single, several): (Vec<Item>, Vec<Item>) =
                items.into_iter().partition(|item| !matches!(item, Item::Row(i) if plan.rows[*i].commands(ttl) > 1));
            let mut txs = Vec::new();
            for (items, atomic) in [(single, false), (several, true)] {
                if !items.is_empty() {
                    txs.extend(chunked(plan, &items, options, atomic));
                }
            }
            (lane, txs)
        })
        .collect();
    let mut set = redis::cmd("SET");
    set.arg(checkpoint_key(pipeline)).arg(checkpoint.to_json());
    LaneWrites { lanes, checkpoint: set }
}

/// `items` as pipelines within the chunk bounds (at least one, possibly empty, with room left for the
/// checkpoint `SET`), each a MULTI/EXEC transaction when `atomic`.
fn chunked(plan: &Plan, items: &[Item], options: &RedisOptions, atomic: bool) -> Vec<Pipeline> {
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
            if atomic {
                tx.atomic();
            }
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
    let RowWrite::Upsert { key, replace, .. } = write else {
        tx.cmd("DEL").arg(write.key()).ignore();
        return;
    };
    let has_fields = write.fields().next().is_some();
    if *replace || !has_fields {
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
    if !*replace && write.nulls().next().is_some() {
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

/// Sends a batch's lanes concurrently (each lane's transactions in order, on `connection(lane)`), then
/// — only when all succeeded — the checkpoint on `connection(0)`. Stops at the first failure without
/// writing the checkpoint.
pub async fn send_lanes<C: ConnectionLike + Send>(
    connection: impl Fn(u16) -> C,
    sink: &str,
    writes: &LaneWrites,
    what: &str,
) -> Result<(), SinkError> {
    let count = writes.lanes.len();
    futures::stream::iter(writes.lanes.iter().map(Ok))
        .try_for_each_concurrent(LANES_IN_FLIGHT, |(lane, txs)| {
            let mut conn = connection(*lane);
            async move {
                let total = txs.len();
                for (n, tx) in txs.iter().enumerate() {
                    tx.query_async::<()>(&mut conn).await.map_err(|e| {
                        let part = if total > 1 { format!(", transaction {} of {total}", n + 1) } else { String::new() };
                        classify(sink, &format!("writing {what} (lane {lane} of {count} touched{part}; checkpoint not written, the batch will be replayed)"), &e)
                    })?;
                }
                Ok::<(), SinkError>(())
            }
        })
        .await?;
    let mut conn = connection(0);
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
    fn single_server_lanes_split_by_key_with_the_checkpoint_apart() {
        let columns = column_a();
        let rows = (0..40)
            .map(|i| RowWrite::Upsert { key: format!("k{i}").into_bytes(), columns: &columns, row: &ONE, replace: true })
            .collect();
        let appends = (0..10).map(|i| StreamAppend { key: "s".into(), event: format!("{{\"seq\":{i}}}") }).collect();
        let plan = Plan { rows, appends, ..Default::default() };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let writes = lane_writes(
            &plan,
            &options,
            "p",
            &Checkpoint::streaming(Position::new("b.000001", 4)),
            Lanes::Connections(4),
        );
        assert_eq!(writes.lanes.len(), 4, "40 keys reach every one of 4 lanes");
        let mut seen = Vec::new();
        for (lane, txs) in &writes.lanes {
            assert!(*lane < 4);
            for tx in txs {
                assert!(!commands(tx).contains(&"SET".to_string()), "no checkpoint in a lane");
                for key in keys(tx) {
                    assert_eq!(Lanes::Connections(4).of(&key), *lane, "a key always goes to its own lane");
                    seen.push(key);
                }
            }
        }
        assert_eq!(seen.iter().filter(|k| k.starts_with(b"k")).count(), 80, "DEL + HSET per row");
        // The stream's entries stay in one lane, in order, chunked within the bounds.
        let stream_lane = Lanes::Connections(4).of(b"s");
        let events: Vec<_> = writes.lanes.iter().filter(|(l, _)| *l == stream_lane).flat_map(|(_, t)| t).collect();
        assert!(events.len() > 1);
        assert_eq!(writes.checkpoint.args_iter().count(), 3, "SET key value");
        let empty = lane_writes(
            &Plan::default(),
            &RedisOptions::default(),
            "p",
            &Checkpoint::streaming(Position::new("b.000001", 4)),
            Lanes::Connections(4),
        );
        assert!(empty.lanes.is_empty(), "an empty batch writes only its checkpoint");
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
                replace: true,
            })
            .collect();
        let appends = (0..30)
            .map(|i| StreamAppend { key: "polyrepl:stream:d:t".into(), event: format!("{{\"seq\":{i}}}") })
            .collect();
        let plan = Plan { rows, appends, ..Default::default() };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let writes =
            lane_writes(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)), Lanes::PerSlot);
        let mut seen_rows = 0;
        let mut seen_appends = 0;
        for (slot, txs) in &writes.lanes {
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
        let stream_txs = &writes.lanes.iter().find(|(s, _)| *s == stream_slot).unwrap().1;
        assert!(stream_txs.len() >= 6, "the stream's 30 entries are chunked within their slot");
        assert_eq!(writes.checkpoint.args_iter().count(), 3, "SET key value");
        assert!(writes.lanes.windows(2).all(|w| w[0].0 < w[1].0), "one group per slot, by slot number");
        let empty = lane_writes(
            &Plan::default(),
            &options,
            "p",
            &Checkpoint::streaming(Position::new("b.000001", 4)),
            Lanes::PerSlot,
        );
        assert!(empty.lanes.is_empty());
    }

    #[test]
    fn ttl_adds_pexpire_and_empty_rows_only_delete() {
        let columns = column_a();
        let plan = Plan {
            rows: vec![
                RowWrite::Upsert { key: b"k".to_vec(), columns: &columns, row: &ONE, replace: true },
                RowWrite::Upsert { key: b"e".to_vec(), columns: &columns, row: &NULL, replace: true },
            ],
            appends: vec![],
            ..Default::default()
        };
        let options = RedisOptions { ttl: Some(std::time::Duration::from_secs(2)), ..Default::default() };
        let txs = one_lane(&plan, &options);
        // The empty row is one DEL, sent as it is; the other's three commands are one transaction.
        assert_eq!(
            txs.iter().map(|tx| (commands(tx), tx.is_transaction())).collect::<Vec<_>>(),
            [(vec!["DEL".to_string()], false), (vec!["DEL".into(), "HSET".into(), "PEXPIRE".into()], true)]
        );
        // A key not replaced: no DEL; its NULL columns are removed.
        let two = [Value::Int(2), Value::Null];
        let mut columns = column_a();
        columns.push(Column { name: "b".into(), ..columns[0].clone() });
        let plan = Plan {
            rows: vec![RowWrite::Upsert { key: b"n".to_vec(), columns: &columns, row: &two, replace: false }],
            appends: vec![],
            ..Default::default()
        };
        let txs = one_lane(&plan, &RedisOptions::default());
        assert_eq!(txs.len(), 1);
        assert_eq!(commands(&txs[0]), ["HSET", "HDEL"]);
        assert!(txs[0].is_transaction(), "a row's HSET and HDEL in one transaction");
    }

    /// The transactions of `plan` on one connection.
    fn one_lane(plan: &Plan, options: &RedisOptions) -> Vec<Pipeline> {
        let checkpoint = Checkpoint::streaming(Position::new("b.000001", 4));
        let mut writes = lane_writes(plan, options, "p", &checkpoint, Lanes::Connections(1));
        assert_eq!(writes.lanes.len(), 1);
        writes.lanes.pop().unwrap().1
    }
}
