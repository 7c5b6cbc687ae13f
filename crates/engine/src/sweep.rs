//! The `--resnapshot` sweep: before the tables are copied again, delete from every sink the rows the source
//! no longer has (the copy itself only writes rows that exist).
//!
//! Invariants:
//! - Runs after the new snapshot's position P is fixed and before any table is copied. A key is deleted
//!   only when the source lacks it *now*; a key deleted after P is deleted again by streaming (deletes
//!   are idempotent), and a key that reappears after P is re-inserted by streaming from P.
//! - Deletes go through the pipeline like any change, at position P with the checkpoint "snapshot at P,
//!   nothing copied yet", so a crash mid-sweep resumes the re-snapshot (and sweeps again) instead of
//!   streaming from the purged position the sinks held before.
//! - Memory is bounded by one page of keys per sink and table.

use crate::checkpoints::nothing_copied;
use crate::error::{EngineError, Result};
use crate::registry::open_sink;
use crate::settings::RunConfig;
use polyrepl_core::{Batch, Change, Op, Position, TableSchema};
use polyrepl_mysql::reader::SourceReader;
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Keys listed from a sink per page.
const PAGE: usize = 1_000;

/// Sends deletes (at `position`) of every key some sink holds and the source lacks. Returns the number
/// of deletes, or `None` when the pipeline stopped.
pub async fn sweep(
    cfg: &RunConfig,
    url: &SourceUrl,
    tables: &[Arc<TableSchema>],
    position: &Position,
    tx: &mpsc::Sender<Batch>,
) -> Result<Option<u64>> {
    let mut source = SourceReader::connect(url).await?;
    let mut deleted = 0u64;
    for sink_url in &cfg.sinks {
        // Its own connection, used only to list keys: the pipeline's sinks are busy applying.
        let mut sink = open_sink(sink_url, &cfg.name).await?;
        for table in tables {
            let mut cursor = None;
            loop {
                let step = format!("listing the keys of {} in {}", table.id, sink.name());
                let (keys, next) = sink.scan_keys(table, cursor, PAGE).await.map_err(EngineError::sink_step(step))?;
                let rows = source.read_keys(table, &keys).await?;
                let changes: Vec<Change> = keys
                    .into_iter()
                    .zip(rows)
                    .filter(|(_, row)| row.is_none())
                    .map(|(key, _)| Change {
                        position: position.clone(),
                        seq: 0,
                        table: table.clone(),
                        op: Op::Delete,
                        key,
                        after: None,
                        source_ts: 0,
                    })
                    .collect();
                if !changes.is_empty() {
                    deleted += changes.len() as u64;
                    tracing::info!(sink = sink.name(), table = %table.id, rows = changes.len(), "--resnapshot: deleting rows the source no longer has");
                    if tx.send(Batch::new(changes, nothing_copied(position))).await.is_err() {
                        return Ok(None);
                    }
                }
                cursor = next;
                if cursor.is_none() {
                    break;
                }
            }
        }
    }
    source.close().await;
    Ok(Some(deleted))
}
