//! Binlog streaming into the pipeline, with reconnects.
//!
//! Invariants:
//! - Every transaction on a replicated table becomes one batch with the checkpoint "streamed up to its
//!   commit position", in binlog order.
//! - A lost source (transient error, or a stream the server closed) is retried with capped backoff
//!   from the last position handed to the pipeline: nothing is skipped, and a transaction read twice
//!   is skipped by the sinks that hold it ([`crate::checkpoints::already_applied`]).
//! - Heartbeats move the checkpoints past transactions on other tables (at most every
//!   [`HEARTBEAT_CHECKPOINT_EVERY`]), so a restart need not read them again.
//! - On shutdown, the last position handed over is sent as a final checkpoint.
//! - Online copies ([`crate::online`]) read their chunks between transactions and hand each over at its
//!   position; schema changes ([`crate::schema_changes`]) become layout operations at theirs. Every
//!   checkpoint carries the copies' progress as handed over.

use crate::control::{Inbox, Request};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::online::OnlineCopies;
use crate::schema_changes::{follow, shorten};
use crate::settings::{RunConfig, HEARTBEAT_CHECKPOINT_EVERY, SOURCE_FIRST_BACKOFF, SOURCE_MAX_BACKOFF};
use polyrepl_core::{Batch, Change, Position, TableFilter};
use polyrepl_mysql::binlog::{BinlogOptions, BinlogReader, SourceEvent};
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Streams after `from` (every sink holds what is before it), reading from `read_from` (earlier when a
/// sink holds part of a large transaction or an XA transaction is prepared there), until the end of the
/// binlog (`--stop-at-end`, once no online copy is left), shutdown, a definite error, or the pipeline
/// stopping. Online copies run between transactions.
#[allow(clippy::too_many_arguments)]
pub async fn stream(
    cfg: &RunConfig,
    url: &SourceUrl,
    filter: &TableFilter,
    mut from: Position,
    read_from: Position,
    online: &mut OnlineCopies,
    inbox: &mut Inbox,
    tx: &mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    let mut backoff = SOURCE_FIRST_BACKOFF;
    let mut last_heartbeat_checkpoint = Instant::now();
    // The reader's hold (see `BinlogReader::hold`): where reading must start again, before `from`.
    let mut hold = Some(read_from).filter(|r| *r < from);
    // Sends a batch, its checkpoint carrying the hold; returns from `stream` when the pipeline has
    // stopped (its error is reported by the caller).
    macro_rules! send {
        ($batch:expr) => {
            let mut batch = $batch;
            batch.checkpoint.resume = hold.clone().filter(|h| *h < batch.checkpoint.position);
            if tx.send(batch).await.is_err() {
                return Ok(());
            }
        };
    }
    loop {
        let mut options = BinlogOptions::new(cfg.server_id);
        options.part_changes = cfg.transaction_part_changes;
        if cfg.stop_at_end {
            options = options.stop_at_end();
        }
        let restart_at = hold.clone().filter(|h| *h < from).unwrap_or_else(|| from.clone());
        let mut reader = match BinlogReader::start(url, &restart_at, filter.clone(), options).await {
            Ok(r) => r,
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                tracing::warn!(error = %e, "source unavailable; retrying");
                if !wait(&mut backoff, shutdown).await {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if restart_at < from {
            tracing::info!(position = %restart_at, held_up_to = %from, "streaming from the binlog (re-reading from the start of a transaction held in part or prepared)");
        } else {
            tracing::info!(position = %from, "streaming from the binlog");
        }
        reader.wake_at(online.waiting_at().cloned());
        loop {
            while let Some(request) = inbox.try_next() {
                take(request, online);
            }
            // Between transactions: the next chunk of an online copy, handed over at once when nothing
            // was committed since, else when the stream reaches the position it was read at.
            if let Some(at) = online.read_next(&from).await? {
                match online.due_at(&from, &from, metrics) {
                    Some(chunk) => {
                        send!(chunk);
                        continue;
                    }
                    None => reader.wake_at(Some(at)),
                }
            }
            let event = tokio::select! {
                e = reader.next_event() => e,
                _ = shutdown.changed() => {
                    send!(Batch::new(vec![], online.checkpoint_at(from.clone())));
                    return Ok(());
                }
            };
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) if cfg.stop_at_end && !online.busy() => return Ok(()),
                // The end of the binlog with copies left: read on from where the stream got to.
                Ok(None) if cfg.stop_at_end => break,
                // A transient error, or (following the binlog) a stream the server closed, e.g. on a
                // shutdown or restart: a lost source, not the end of the work. Reconnect from `from`.
                Err(e) if !e.is_transient() => return Err(e.into()),
                lost @ (Ok(None) | Err(_)) => {
                    let reason =
                        lost.err().map_or_else(|| "the server closed the binlog stream".to_string(), |e| e.to_string());
                    tracing::warn!(%reason, position = %from, "lost the source; reconnecting");
                    if !wait(&mut backoff, shutdown).await {
                        return Ok(());
                    }
                    break;
                }
            };
            backoff = SOURCE_FIRST_BACKOFF;
            // Until the reader is past `from` again it re-reads what it held: the hold stays.
            hold = match (reader.position() < &from, hold.take(), reader.hold().cloned()) {
                (true, old, new) => old.into_iter().chain(new).min(),
                (false, _, new) => new,
            };
            let at = event.position().clone();
            // Read again from a hold before `from`: what is at or before `from` was handed over.
            if at <= from && !matches!(event, SourceEvent::Heartbeat { .. } | SourceEvent::Reached { .. }) {
                continue;
            }
            // A chunk read before this event was committed goes first.
            if let Some(chunk) = online.due_before(&at, &from, metrics) {
                send!(chunk);
            }
            match event {
                SourceEvent::Transaction { position, changes } => {
                    record_read(metrics, &changes, &position, 1);
                    from = position.clone();
                    send!(Batch::new(changes, online.checkpoint_at(position)));
                }
                // A large transaction's part: applied now, its start held until its commit.
                SourceEvent::Part { position, changes } => {
                    record_read(metrics, &changes, &position, 0);
                    from = position.clone();
                    send!(Batch::new(changes, online.checkpoint_at(position)));
                }
                SourceEvent::Heartbeat { position } => {
                    metrics.source.heartbeats.fetch_add(1, Relaxed);
                    *metrics.source.position.lock().unwrap() = Some(position.to_string());
                    if position > from && last_heartbeat_checkpoint.elapsed() > HEARTBEAT_CHECKPOINT_EVERY {
                        from = position.clone();
                        last_heartbeat_checkpoint = Instant::now();
                        send!(Batch::new(vec![], online.checkpoint_at(position)));
                    }
                }
                SourceEvent::Ddl { position, database, statement } => {
                    let followed =
                        follow(&statement, &database, &position, filter, online, cfg.keep_dropped_tables).await?;
                    if followed.relevant {
                        tracing::info!(%position, statement = %shorten(&statement), "schema change followed");
                        from = from.max(position.clone());
                        send!(Batch::table_ops(followed.ops, online.checkpoint_at(position)));
                    } else {
                        tracing::debug!(%position, %database, statement = %shorten(&statement), "DDL on the source");
                    }
                }
                // Every transaction up to `position` is handed over: a chunk read there may go.
                SourceEvent::Reached { position } => from = from.max(position),
            }
            if let Some(chunk) = online.due_at(&from.clone().max(at), &from, metrics) {
                from = from.max(chunk.checkpoint.position.clone());
                send!(chunk);
            }
        }
    }
}

/// Takes a request of the pipeline's controller ([`crate::control`]).
fn take(request: Request, online: &mut OnlineCopies) {
    match request {
        Request::Copy { tables, reply } => {
            let unknown: Vec<String> =
                tables.iter().filter(|t| !online.schemas.contains_key(t)).map(ToString::to_string).collect();
            let answer = if unknown.is_empty() {
                for table in &tables {
                    online.copy_again(table);
                    tracing::info!(%table, "copy asked for: the table is copied again online");
                }
                Ok(tables)
            } else {
                Err(format!("not replicated by this pipeline: {}", unknown.join(", ")))
            };
            let _ = reply.send(answer);
        }
        Request::Repair { table, keys, reply } => online.queue_repair(&table, keys, reply),
    }
}

/// Sleeps `backoff` (then doubles it up to the cap); false when shutdown came first.
async fn wait(backoff: &mut Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(*backoff) => true,
        _ = shutdown.changed() => false,
    };
    *backoff = (*backoff * 2).min(SOURCE_MAX_BACKOFF);
    slept
}

fn record_read(metrics: &Metrics, changes: &[Change], position: &Position, transactions: u64) {
    let s = &metrics.source;
    s.changes_read.fetch_add(changes.len() as u64, Relaxed);
    s.transactions_read.fetch_add(transactions, Relaxed);
    if let Some(ts) = changes.iter().map(|c| c.source_ts).max() {
        s.last_source_ts.fetch_max(ts as u64, Relaxed);
    }
    *s.position.lock().unwrap() = Some(position.to_string());
    let mut per_table = s.per_table.lock().unwrap();
    for c in changes {
        *per_table.entry(c.table.id.to_string()).or_default() += 1;
    }
}
