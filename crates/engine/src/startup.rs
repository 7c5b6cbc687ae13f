//! Start-up: the source checked, every sink connected and prepared, every checkpoint loaded.
//!
//! Nothing is written to the source; sinks only get their collections/tables created. Every sink is
//! connected, and the lease of every selected table taken in every sink ([`crate::leases`]), before any
//! is prepared, so a wrong URL or another pipeline on the same tables never leaves collections
//! half-created.

use crate::error::{EngineError, Result};
use crate::history;
use crate::leases::LeaseKeeper;
use crate::pipeline::SinkSlot;
use crate::registry::open_sink_with;
use crate::settings::RunConfig;
use polyrepl_core::redact::redact_url;
use polyrepl_core::{Position, RowPolicy, Sink, TableFilter, TableSchema};
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::Arc;

/// Everything a run needs, checked and connected.
pub struct Prepared {
    pub url: SourceUrl,
    pub filter: TableFilter,
    pub tables: Vec<Arc<TableSchema>>,
    pub slots: Vec<SinkSlot>,
    /// The run's leases on its sink tables: renewed while it runs, released when it stops cleanly.
    pub leases: LeaseKeeper,
    /// With `--resnapshot`: some sink's checkpoint came from another binlog history
    /// ([`crate::history`]), so the sink tables are emptied before the copy.
    pub history_changed: bool,
}

/// Checks the source, opens and prepares every sink and loads its checkpoint (ignored with
/// `--resnapshot`, which copies everything again).
pub async fn prepare(cfg: &RunConfig) -> Result<Prepared> {
    let url = SourceUrl::parse(&cfg.source)?;
    let filter = TableFilter::new(&cfg.tables, &cfg.exclude).map_err(EngineError::Settings)?;
    let report = polyrepl_mysql::checks::run_startup_checks(&url, &filter).await?;
    let mut sinks = Vec::new();
    for sink_url in &cfg.sinks {
        sinks.push(open_sink_with(sink_url, &cfg.name, RowPolicy::new(cfg.on_unmappable)).await?);
    }
    let leases = LeaseKeeper::acquire(cfg, &report.tables).await?;
    let source_end = polyrepl_mysql::current_position(&url).await?;
    match open_slots(cfg, &url, sinks, &report.tables, &source_end).await {
        Ok((slots, history_changed)) => {
            Ok(Prepared { url, filter, tables: report.tables, slots, leases, history_changed })
        }
        Err(e) => {
            leases.release().await;
            Err(e)
        }
    }
}

/// Prepares every sink and loads its checkpoint, refusing one from another binlog history than the
/// source's (which ends at `source_end`) unless `--resnapshot`; says whether there was such a one.
async fn open_slots(
    cfg: &RunConfig,
    url: &SourceUrl,
    mut sinks: Vec<Box<dyn Sink>>,
    tables: &[Arc<TableSchema>],
    source_end: &Position,
) -> Result<(Vec<SinkSlot>, bool)> {
    let mut history_changed = false;
    // Why each checkpoint position seen is not of the source's history (one look-up per position).
    let mut judged: Vec<(Position, Option<String>)> = Vec::new();
    for sink in sinks.iter_mut() {
        let step = format!("preparing the sink {}", sink.name());
        sink.prepare(tables).await.map_err(EngineError::sink_step(step))?;
    }
    let mut slots = Vec::new();
    for mut sink in sinks {
        let step = format!("reading the checkpoint of {}", sink.name());
        let held = sink.load_checkpoint(&cfg.name).await.map_err(EngineError::sink_step(step))?;
        let foreign = match held.as_ref().map(|c| &c.position) {
            None => None,
            Some(p) => match judged.iter().find(|(q, _)| q == p) {
                Some((_, why)) => why.clone(),
                None => {
                    let why = match history::foreign_to(p, source_end) {
                        Some(why) => Some(why),
                        None => history::lost_on_source(url, p, cfg.server_id).await,
                    };
                    judged.push((p.clone(), why.clone()));
                    why
                }
            },
        };
        if let Some(why) = foreign {
            if !cfg.resnapshot {
                return Err(EngineError::Settings(format!(
                    "{}: the checkpoint of pipeline '{}' is not from the source's binlog history: {why}. The source \
                     was reset (RESET MASTER), lost transactions in a failover, or is another server, so streaming \
                     from the checkpoint would skip or misread changes. Fix: polyrepl run --resnapshot with the same flags (the sink tables are \
                     emptied and copied again)",
                    sink.name(),
                    cfg.name
                )));
            }
            tracing::warn!(sink = sink.name(), %why, "--resnapshot from another binlog history: the sink tables are emptied first");
            history_changed = true;
        }
        let resume_from = if cfg.resnapshot { None } else { held.clone() };
        match &resume_from {
            _ if cfg.resnapshot => tracing::info!(
                sink = sink.name(),
                held = ?held.map(|c| c.position.to_string()),
                "--resnapshot: copying every table again"
            ),
            Some(c) => tracing::info!(
                sink = sink.name(),
                position = %c.position,
                snapshot_in_progress = c.snapshot.is_some(),
                "resuming"
            ),
            None => tracing::info!(sink = sink.name(), "no checkpoint: starting with a snapshot"),
        }
        slots.push(SinkSlot { sink, resume_from });
    }
    tracing::debug!(source = %redact_url(&cfg.source), sinks = slots.len(), "start-up checks passed");
    Ok((slots, history_changed))
}
