//! Sending a planned batch: its writes spread over lanes sent concurrently, the checkpoint after all.
//!
//! A *lane* is an ordered sequence of chunks: first the writes of one command each (a row's lone
//! `HSET` or `DEL`, a stream entry, a dead-letter record), sent as they are, since one command is
//! atomic; then the rows of several commands, in MULTI/EXEC transactions. Every key of a batch belongs
//! to exactly one lane, chosen from the key alone, so a key's commands are always sent in order on one
//! lane, and lanes touch disjoint keys and may run at the same time:
//! - single server: [`RedisOptions::connections`] lanes, one writing connection each (the key's hash
//!   slot modulo the number of connections), chunks encoded as RESP bytes ([`crate::resp`]) — one
//!   connection is one TCP stream served by one server thread, and a single ordered stream left the
//!   server idle between replies (issue: snapshot/raw was 0.42 with one MULTI/EXEC per batch);
//! - Redis Cluster: one lane per hash slot the batch touches (a cluster runs a transaction only when
//!   all its keys are in one slot), chunks as redis-rs pipelines sent through the cluster connection,
//!   which routes them to the slot's node.
//!
//! Both encodings come from the same code ([`LaneBuffer`]) and are the same bytes (unit test).
//!
//! Invariants (both modes):
//! - The checkpoint `SET` is sent alone, only after every lane succeeded. A failure or crash before it
//!   leaves the previous checkpoint: the pipeline replays the whole batch, which rewrites the same full
//!   row images and deletes (idempotent) and appends the stream entries again (the stream is at least
//!   once). So: atomic per transaction, checkpoint last, replay-safe. Meanwhile a reader may see part
//!   of a batch, never a partial row: all commands of one row (DEL or HDEL, HSET, PEXPIRE) are in the
//!   same transaction.
//! - A lane's chunks stay within the chunk bounds (`max_chunk_commands`, `max_chunk_bytes`) and
//!   are sent in order; a stream key's entries all go to one lane, in batch order (all of them single
//!   commands, so in the lane's first chunks, in order).
//! - Runtime errors inside EXEC (a key of the wrong type) do not undo the other commands — Redis has no
//!   rollback; they are reported as definite errors that say so. polyrepl's own commands cannot hit one
//!   unless another application writes a non-stream value at a stream key.
//! - Before: on a single server a batch and its checkpoint were one MULTI/EXEC. Giving that up for
//!   lanes was decided for speed (issue #15); it costs nothing in correctness, because a replay of
//!   full row images converges (every column is set or removed, see [`crate::plan`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::TryStreamExt;
use polyrepl_core::{Checkpoint, SinkError, Value};
use redis::{Pipeline, RedisResult};

use crate::connection::RedisConnection;
use crate::error::classify;
use crate::mapping::FieldArg;
use crate::naming::{checkpoint_key, hash_slot};
use crate::options::RedisOptions;
use crate::plan::{chunk_ranges, Plan, RowWrite};
use crate::resp::Encoded;

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

/// What a lane's commands are written into: redis-rs pipelines (a cluster, whose client routes them
/// by slot) or RESP bytes (a single server, [`crate::resp`]). Both get the same commands.
pub trait LaneBuffer: Sized + Send + Sync {
    /// An empty chunk with room for about `commands` commands of `bytes` bytes; a MULTI/EXEC
    /// transaction when `atomic`.
    fn begin(commands: usize, bytes: usize, atomic: bool) -> Self;
    /// Starts the command `name`, `args` arguments to follow.
    fn command(&mut self, name: &str, args: usize);
    fn arg(&mut self, arg: &[u8]);
    /// A non-NULL value's field bytes as one argument.
    fn field(&mut self, value: &Value);
    /// Closes the chunk begun with the same `atomic`.
    fn end(&mut self, atomic: bool);
}

impl LaneBuffer for Pipeline {
    fn begin(commands: usize, _bytes: usize, atomic: bool) -> Self {
        let mut pipeline = Pipeline::with_capacity(commands + 1);
        if atomic {
            pipeline.atomic();
        }
        pipeline
    }
    fn command(&mut self, name: &str, _args: usize) {
        self.cmd(name).ignore();
    }
    fn arg(&mut self, arg: &[u8]) {
        Pipeline::arg(self, arg);
    }
    fn field(&mut self, value: &Value) {
        Pipeline::arg(self, FieldArg(value));
    }
    fn end(&mut self, _atomic: bool) {}
}

impl LaneBuffer for Encoded {
    fn begin(_commands: usize, bytes: usize, atomic: bool) -> Self {
        let mut encoded = Encoded::with_capacity(bytes + 64);
        if atomic {
            encoded.command("MULTI", 0);
        }
        encoded
    }
    fn command(&mut self, name: &str, args: usize) {
        Encoded::command(self, name, args);
    }
    fn arg(&mut self, arg: &[u8]) {
        Encoded::arg(self, arg);
    }
    fn field(&mut self, value: &Value) {
        Encoded::field(self, value);
    }
    fn end(&mut self, atomic: bool) {
        if atomic {
            Encoded::command(self, "EXEC", 0);
        }
    }
}

/// What a batch sends: per lane its chunks (in order), and the checkpoint `SET`, to send after all of
/// them succeeded.
pub struct LaneWrites<B> {
    /// (lane, its chunks in order), by lane number.
    pub lanes: Vec<(u16, Vec<B>)>,
    /// The checkpoint write, a single command.
    pub checkpoint: redis::Cmd,
}

/// Groups `plan` into lanes (see the module notes).
pub fn lane_writes<B: LaneBuffer>(
    plan: &Plan,
    options: &RedisOptions,
    pipeline: &str,
    checkpoint: &Checkpoint,
    lanes: Lanes,
) -> LaneWrites<B> {
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
            // A write of one command is atomic by itself; only rows of several commands (DEL with
            // HSET, HSET with HDEL, PEXPIRE) need MULTI/EXEC, which costs the server a queued copy
            // and a reply per command.
            let (single, several): (Vec<Item>, Vec<Item>) =
                items.into_iter().partition(|item| !matches!(item, Item::Row(i) if plan.rows[*i].commands(ttl) > 1));
            let mut chunks = Vec::new();
            for (items, atomic) in [(single, false), (several, true)] {
                if !items.is_empty() {
                    chunks.extend(chunked(plan, &items, options, atomic));
                }
            }
            (lane, chunks)
        })
        .collect();
    let mut set = redis::cmd("SET");
    set.arg(checkpoint_key(pipeline)).arg(checkpoint.to_json());
    LaneWrites { lanes, checkpoint: set }
}

/// `items` as chunks within the chunk bounds (at least one, possibly empty, with room left for the
/// checkpoint `SET`), each a MULTI/EXEC transaction when `atomic`.
fn chunked<B: LaneBuffer>(plan: &Plan, items: &[Item], options: &RedisOptions, atomic: bool) -> Vec<B> {
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
    let maxlen = options.stream.unwrap_or(usize::MAX).to_string();
    ranges
        .into_iter()
        .map(|range| {
            let (commands, bytes) =
                sizes[range.clone()].iter().fold((0, 0), |(c, b), (commands, bytes)| (c + commands, b + bytes));
            let mut chunk = B::begin(commands, bytes, atomic);
            for item in &items[range] {
                match *item {
                    Item::Row(i) => add_row(&mut chunk, &plan.rows[i], ttl_ms),
                    Item::Append(i) => {
                        let append = &plan.appends[i];
                        chunk.command("XADD", 7);
                        for arg in [append.key.as_bytes(), b"MAXLEN", b"~", maxlen.as_bytes(), b"*", b"event"] {
                            chunk.arg(arg);
                        }
                        chunk.arg(append.event.as_bytes());
                    }
                    Item::DeadLetter(i) => {
                        let letter = &plan.dead_letters[i];
                        chunk.command("HSET", 3);
                        chunk.arg(letter.key.as_bytes());
                        chunk.arg(letter.field.as_bytes());
                        chunk.arg(letter.json.as_bytes());
                    }
                }
            }
            chunk.end(atomic);
            chunk
        })
        .collect()
}

fn add_row<B: LaneBuffer>(chunk: &mut B, write: &RowWrite, ttl_ms: Option<i64>) {
    let RowWrite::Upsert { key, replace, row, .. } = write else {
        chunk.command("DEL", 1);
        chunk.arg(write.key());
        return;
    };
    let fields = row.iter().filter(|v| !v.is_null()).count();
    if *replace || fields == 0 {
        chunk.command("DEL", 1);
        chunk.arg(key);
    }
    if fields == 0 {
        return; // HSET without fields would abort the whole transaction
    }
    chunk.command("HSET", 1 + 2 * fields);
    chunk.arg(key);
    for (name, value) in write.fields() {
        chunk.arg(name.as_bytes());
        chunk.field(value);
    }
    let nulls = row.len() - fields;
    if !*replace && nulls > 0 {
        chunk.command("HDEL", 1 + nulls);
        chunk.arg(key);
        for name in write.nulls() {
            chunk.arg(name.as_bytes());
        }
    }
    if let Some(ms) = ttl_ms {
        chunk.command("PEXPIRE", 2);
        chunk.arg(key);
        chunk.arg(itoa::Buffer::new().format(ms).as_bytes());
    }
}

/// Where a batch's lanes are sent.
#[async_trait]
pub trait LaneSender<B>: Send + Sync {
    /// Sends one chunk of `lane`.
    async fn send(&self, lane: u16, chunk: &B) -> RedisResult<()>;
    /// Starts every lane afresh (after a failure that likely broke them all: a restarted server).
    async fn reset(&self) {}
}

/// A cluster: every lane through the cluster connection, which routes a chunk to its slot's node.
#[async_trait]
impl LaneSender<Pipeline> for RedisConnection {
    async fn send(&self, _lane: u16, chunk: &Pipeline) -> RedisResult<()> {
        chunk.query_async::<()>(&mut self.clone()).await
    }
}

/// Sends a batch's lanes concurrently (each lane's chunks in order), then — only when all succeeded —
/// the checkpoint on `checkpoint_on`. Stops at the first failure without writing the checkpoint.
pub async fn send_lanes<B: LaneBuffer, S: LaneSender<B>>(
    sender: &S,
    checkpoint_on: &RedisConnection,
    sink: &str,
    writes: &LaneWrites<B>,
    what: &str,
) -> Result<(), SinkError> {
    let count = writes.lanes.len();
    futures::stream::iter(writes.lanes.iter().map(Ok))
        .try_for_each_concurrent(LANES_IN_FLIGHT, |(lane, chunks)| async move {
            let total = chunks.len();
            for (n, chunk) in chunks.iter().enumerate() {
                sender.send(*lane, chunk).await.map_err(|e| {
                    let part = if total > 1 { format!(", part {} of {total}", n + 1) } else { String::new() };
                    classify(sink, &format!("writing {what} (lane {lane} of {count} touched{part}; checkpoint not written, the batch will be replayed)"), &e)
                })?;
            }
            Ok::<(), SinkError>(())
        })
        .await?;
    writes.checkpoint.query_async::<()>(&mut checkpoint_on.clone()).await.map_err(|e| {
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
    use crate::plan::{DeadLetterWrite, StreamAppend};
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
            .map(|i| RowWrite::Upsert {
                key: format!("k{i}").into_bytes(),
                columns: &columns,
                row: &ONE,
                replace: true,
            })
            .collect();
        let appends = (0..10).map(|i| StreamAppend { key: "s".into(), event: format!("{{\"seq\":{i}}}") }).collect();
        let plan = Plan { rows, appends, ..Default::default() };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let writes = lane_writes::<Pipeline>(
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
        let empty = lane_writes::<Pipeline>(
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
        let writes = lane_writes::<Pipeline>(
            &plan,
            &options,
            "p",
            &Checkpoint::streaming(Position::new("b.000001", 4)),
            Lanes::PerSlot,
        );
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
        let empty = lane_writes::<Pipeline>(
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

    #[test]
    fn single_server_bytes_are_the_cluster_pipelines_packed() {
        let mut columns = column_a();
        columns.push(Column { name: "b".into(), ..columns[0].clone() });
        let (full, half) = ([Value::Int(1), Value::String("x\r\ny".into())], [Value::Int(2), Value::Null]);
        let rows = (0..30)
            .map(|i| RowWrite::Upsert {
                key: format!("d:t:{i}").into_bytes(),
                columns: &columns,
                row: if i % 3 == 0 { &half } else { &full },
                replace: i % 5 == 0,
            })
            .chain([RowWrite::Delete { key: b"d:t:gone".to_vec() }])
            .collect();
        let appends = (0..4).map(|i| StreamAppend { key: "s".into(), event: format!("{{\"seq\":{i}}}") }).collect();
        let dead_letters = vec![DeadLetterWrite { key: "dl".into(), field: "f".into(), json: "{}".into() }];
        let plan = Plan { rows, appends, dead_letters };
        let checkpoint = Checkpoint::streaming(Position::new("b.000001", 4));
        for options in [
            RedisOptions { max_chunk_commands: 8, ..Default::default() },
            RedisOptions { ttl: Some(std::time::Duration::from_secs(9)), stream: Some(100), ..Default::default() },
        ] {
            let pipelines = lane_writes::<Pipeline>(&plan, &options, "p", &checkpoint, Lanes::Connections(4));
            let encoded = lane_writes::<Encoded>(&plan, &options, "p", &checkpoint, Lanes::Connections(4));
            assert_eq!(pipelines.lanes.len(), encoded.lanes.len());
            for ((lane, txs), (same_lane, chunks)) in pipelines.lanes.iter().zip(&encoded.lanes) {
                assert_eq!(lane, same_lane);
                assert_eq!(txs.len(), chunks.len());
                for (tx, chunk) in txs.iter().zip(chunks) {
                    assert_eq!(tx.get_packed_pipeline(), chunk.bytes, "lane {lane}");
                    let replies = tx.len() + if tx.is_transaction() { 2 } else { 0 };
                    assert_eq!(chunk.replies, replies, "lane {lane}");
                }
            }
        }
    }

    /// The transactions of `plan` on one connection.
    fn one_lane(plan: &Plan, options: &RedisOptions) -> Vec<Pipeline> {
        let checkpoint = Checkpoint::streaming(Position::new("b.000001", 4));
        let mut writes = lane_writes::<Pipeline>(plan, options, "p", &checkpoint, Lanes::Connections(1));
        assert_eq!(writes.lanes.len(), 1);
        writes.lanes.pop().unwrap().1
    }
}
