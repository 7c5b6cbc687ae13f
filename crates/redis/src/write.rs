//! Sending a planned batch as MULTI/EXEC transactions, the checkpoint in the last one.
//!
//! Invariants:
//! - A batch normally is one transaction: its row writes, its stream entries and the checkpoint `SET`
//!   are applied together or not at all (Redis runs a transaction's commands back to back; a command
//!   refused while queueing — permission, syntax, out of memory — aborts all of it with EXECABORT).
//! - A batch bigger than the chunk bounds (`max_chunk_commands`, `max_chunk_bytes`) becomes several
//!   transactions sent in order; only the last carries the checkpoint. Each chunk is idempotent on its
//!   own (full-row DEL + HSET, DEL), so a failure between chunks leaves the old checkpoint and some of
//!   the batch's rows already written; the pipeline retries the whole batch, which rewrites them with
//!   the same values. Until then a reader may see part of the batch (never a partial row). Stream entries
//!   of chunks that were applied are appended again on that retry (the stream is at least once).
//! - All commands of one row (DEL, HSET, PEXPIRE) are always in the same transaction.
//! - Runtime errors inside EXEC (a key of the wrong type) do not undo the other commands — Redis has no
//!   rollback; they are reported as definite errors that say so. polyrepl's own commands cannot hit one
//!   unless another application writes a non-stream value at a stream key.

use polyrepl_core::{Checkpoint, SinkError};
use redis::aio::ConnectionManager;
use redis::Pipeline;

use crate::error::classify;
use crate::naming::checkpoint_key;
use crate::options::RedisOptions;
use crate::plan::{chunk_ranges, Plan, RowWrite};

/// Builds the transactions for `plan`: chunks in order, the checkpoint `SET` in the last.
pub fn transactions(plan: &Plan, options: &RedisOptions, pipeline: &str, checkpoint: &Checkpoint) -> Vec<Pipeline> {
    let ttl_ms = options.ttl.map(|t| t.as_millis().clamp(1, i64::MAX as u128) as i64);
    let mut sizes: Vec<(usize, usize)> = plan.rows.iter().map(|w| (w.commands(ttl_ms.is_some()), w.bytes())).collect();
    sizes.extend(plan.appends.iter().map(|a| (1, a.key.len() + a.event.len() + 32)));
    // Room for MULTI, EXEC and the checkpoint SET.
    let max_commands = options.max_chunk_commands.saturating_sub(3).max(1);
    let mut ranges = chunk_ranges(&sizes, max_commands, options.max_chunk_bytes);
    if ranges.is_empty() {
        ranges.push(0..0);
    }
    let last = ranges.len() - 1;
    ranges
        .into_iter()
        .enumerate()
        .map(|(n, range)| {
            let mut tx = redis::pipe();
            tx.atomic();
            for i in range {
                match plan.rows.get(i) {
                    Some(write) => add_row(&mut tx, write, ttl_ms),
                    None => {
                        let append = &plan.appends[i - plan.rows.len()];
                        let maxlen = options.stream.unwrap_or(usize::MAX);
                        tx.cmd("XADD").arg(&append.key).arg("MAXLEN").arg("~").arg(maxlen).arg("*").arg("event").arg(&append.event).ignore();
                    }
                }
            }
            if n == last {
                tx.cmd("SET").arg(checkpoint_key(pipeline)).arg(checkpoint.to_json()).ignore();
            }
            tx
        })
        .collect()
}

fn add_row(tx: &mut Pipeline, write: &RowWrite, ttl_ms: Option<i64>) {
    tx.cmd("DEL").arg(write.key()).ignore();
    if let RowWrite::Upsert { key, fields } = write {
        if fields.is_empty() {
            return; // HSET without fields would abort the whole transaction
        }
        tx.cmd("HSET").arg(key);
        for (name, value) in fields {
            tx.arg(name).arg(value);
        }
        tx.ignore();
        if let Some(ms) = ttl_ms {
            tx.cmd("PEXPIRE").arg(key).arg(ms).ignore();
        }
    }
}

/// Sends the transactions in order; stops at the first failure.
pub async fn send(conn: &mut ConnectionManager, sink: &str, transactions: &[Pipeline], what: &str) -> Result<(), SinkError> {
    let total = transactions.len();
    for (n, tx) in transactions.iter().enumerate() {
        tx.query_async::<()>(conn).await.map_err(|e| {
            let part = if total > 1 { format!(" (transaction {} of {total})", n + 1) } else { String::new() };
            classify(sink, &format!("writing {what}{part}"), &e)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StreamAppend;
    use polyrepl_core::Position;

    fn commands(tx: &Pipeline) -> Vec<String> {
        tx.cmd_iter().map(|c| String::from_utf8_lossy(c.args_iter().next().map(|a| match a { redis::Arg::Simple(b) => b, _ => &[][..] }).unwrap_or(&[])).into_owned()).collect()
    }

    #[test]
    fn checkpoint_goes_in_the_last_transaction_only() {
        let rows = (0..10).map(|i| RowWrite::Upsert { key: format!("k{i}").into_bytes(), fields: vec![("a".into(), b"1".to_vec())] }).collect();
        let plan = Plan { rows, appends: vec![StreamAppend { key: "s".into(), event: "{}".into() }] };
        let options = RedisOptions { max_chunk_commands: 8, ..Default::default() };
        let txs = transactions(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(txs.len(), 5);
        for tx in &txs[..4] {
            assert!(!commands(tx).contains(&"SET".to_string()));
        }
        assert_eq!(commands(&txs[4]), ["DEL", "HSET", "DEL", "HSET", "XADD", "SET"]);
        let empty = transactions(&Plan::default(), &RedisOptions::default(), "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(empty.len(), 1);
        assert_eq!(commands(&empty[0]), ["SET"]);
    }

    #[test]
    fn ttl_adds_pexpire_and_empty_rows_only_delete() {
        let plan = Plan {
            rows: vec![RowWrite::Upsert { key: b"k".to_vec(), fields: vec![("a".into(), b"1".to_vec())] }, RowWrite::Upsert { key: b"e".to_vec(), fields: vec![] }],
            appends: vec![],
        };
        let options = RedisOptions { ttl: Some(std::time::Duration::from_secs(2)), ..Default::default() };
        let txs = transactions(&plan, &options, "p", &Checkpoint::streaming(Position::new("b.000001", 4)));
        assert_eq!(commands(&txs[0]), ["DEL", "HSET", "PEXPIRE", "DEL", "SET"]);
    }
}
