//! Detects, before streaming, that the binlog a position needs is gone from the server.
//!
//! MariaDB asked to stream from a GTID older than its oldest binlog does not always refuse: with the
//! replica's strict mode off it may start at the oldest file it has, silently skipping the purged
//! transactions. So polyrepl checks itself: the GTID state at the start of the oldest binlog
//! (`BINLOG_GTID_POS(first_file, 4)`, the file's GTID list) must not be ahead of the position in any
//! domain. A file/offset position must name a file the server still lists.

use crate::binlog::parse_gtid_state;
use crate::error::{Result, SourceError};
use mysql_async::prelude::*;
use mysql_async::Conn;
use polyrepl_core::Position;

/// Errors with [`SourceError::BinlogPurged`] when streaming from `from` would skip purged changes.
pub async fn check_not_purged(conn: &mut Conn, server: &str, from: &Position, mariadb: bool) -> Result<()> {
    let logs: Vec<mysql_async::Row> =
        conn.query("SHOW BINARY LOGS").await.map_err(|e| SourceError::query("SHOW BINARY LOGS", server, e))?;
    let Some(first) = logs.first().and_then(|r| r.get::<String, _>(0)) else { return Ok(()) };
    let first_seq = Position::new(first.clone(), 4).file_sequence();
    let gone =
        |message: String| SourceError::BinlogPurged { server: server.to_string(), position: from.clone(), message };
    let by_gtid = mariadb && from.gtid.as_deref().is_some_and(|g| !g.trim().is_empty());
    if !by_gtid {
        if from.file_sequence() < first_seq {
            return Err(gone(format!("the oldest binlog is {first}, the position is in {}", from.file)));
        }
        return Ok(());
    }
    let start: Option<String> = conn
        .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, 4)", (first.clone(),))
        .await
        .map_err(|e| SourceError::query("SELECT BINLOG_GTID_POS of the oldest binlog", server, e))?
        .flatten();
    let start = parse_gtid_state(start.as_deref().unwrap_or("")).map_err(SourceError::Usage)?;
    let wanted = parse_gtid_state(from.gtid.as_deref().unwrap_or("")).map_err(SourceError::Usage)?;
    for (domain, (_, oldest_seq)) in start {
        let have = wanted.get(&domain).map_or(0, |(_, seq)| *seq);
        if have < oldest_seq {
            return Err(gone(format!(
                "the oldest binlog {first} starts after GTID {domain}-*-{oldest_seq}, and polyrepl has applied domain {domain} only up to sequence {have}"
            )));
        }
    }
    Ok(())
}
