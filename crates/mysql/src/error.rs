//! The source's error type: every message says what failed, where, and what to do.
//!
//! Errors are split the way a caller must react: [`SourceError::is_transient`] ones (network,
//! server restart, stalled stream) are retried with backoff; every other one is definite — stop and
//! show the message, retrying cannot help.

use crate::checks::CheckError;
use polyrepl_core::Position;

/// Result alias of this crate.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// A failure of the MySQL/MariaDB source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A start-up check failed (server settings, privileges, tables).
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A statement failed on the server.
    #[error("{what} failed on {server}: {source}")]
    Query {
        what: String,
        server: String,
        #[source]
        source: mysql_async::Error,
    },
    /// A value could not be decoded into a polyrepl value.
    #[error("cannot decode {table}.{column} ({context}): {message}")]
    Decode { table: String, column: String, context: String, message: String },
    /// The binlog holds an event polyrepl cannot decode; skipping it could lose changes.
    #[error("unsupported binlog event type {event_type} ({name}) at {position}: {hint}")]
    UnsupportedEvent { event_type: u8, name: &'static str, position: Position, hint: String },
    /// The binlog stream broke its own rules (truncated event, rows without a table map...).
    #[error("binlog stream error at {position}: {message}")]
    Stream { position: Position, message: String },
    /// No event (not even a heartbeat) arrived within the allowed time.
    #[error("binlog stream from {server} stalled: no event for {seconds}s (will reconnect)")]
    Stalled { server: String, seconds: u64 },
    /// The binlog at the position the sinks need is gone from the server (purged or reset): the
    /// changes since then cannot be streamed, only re-copied.
    #[error(
        "the binlog that polyrepl needs is no longer on {server}: it must resume at {position}, but {message}. \
         The binlog was purged (PURGE BINARY LOGS, binlog_expire_logs_seconds / \
         expire_logs_days, RESET MASTER) before polyrepl read it, so the changes made since then cannot be \
         streamed, and polyrepl will not skip them. Copy the tables again with `polyrepl run --resnapshot` \
         and the same flags: it re-snapshots every table into every sink, removes rows the source no longer \
         has, then streams from the new snapshot. Nothing was written to the sinks."
    )]
    BinlogPurged { server: String, position: Position, message: String },
    /// The server's binlog history does not hold the transactions the sinks hold: a failover to a
    /// replica that had not received all of them (lost on the source, kept in the sinks), or another
    /// server.
    #[error(
        "the sinks hold changes up to {position}, and {server} does not have those transactions: {message}. \
         This happens after a failover to a replica that had not received every transaction the old primary \
         committed (they are lost on the source, but the sinks hold them), or when the source is another \
         server. Streaming on would leave rows in the sinks the source never had. Copy the tables again with \
         `polyrepl run --resnapshot` and the same flags: it re-snapshots every table into every sink from \
         this server, removes rows it does not have, then streams on. Nothing was written to the sinks from \
         this server."
    )]
    NotInHistory { server: String, position: Position, message: String },
    /// The caller asked for something that cannot work (bad position, table not in the snapshot...).
    #[error("{0}")]
    Usage(String),
}

impl SourceError {
    /// True when retrying (after reconnecting) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Stalled { .. } => true,
            SourceError::Query { source, .. } => is_transient_driver_error(source),
            _ => false,
        }
    }

    /// The server's error code, when the server refused a statement (e.g. 1146: no such table).
    pub fn server_code(&self) -> Option<u16> {
        match self {
            SourceError::Query { source: mysql_async::Error::Server(s), .. } => Some(s.code),
            _ => None,
        }
    }

    pub(crate) fn query(what: impl Into<String>, server: &str, source: mysql_async::Error) -> Self {
        SourceError::Query { what: what.into(), server: server.to_string(), source }
    }

    /// The error of a binlog stream from `position`: [`SourceError::NotInHistory`] when the server has
    /// no such GTID, [`SourceError::BinlogPurged`] when it says it no longer has that binlog (both error
    /// 1236, ER_MASTER_FATAL_ERROR_READING_BINLOG).
    pub(crate) fn binlog_read(
        what: impl Into<String>,
        server: &str,
        position: &Position,
        source: mysql_async::Error,
    ) -> Self {
        match &source {
            // MariaDB: "…requested to start from GTID d-s-n, which is not in the master's binlog".
            mysql_async::Error::Server(s) if s.code == 1236 && s.message.contains("not in the master's binlog") => {
                SourceError::NotInHistory {
                    server: server.to_string(),
                    position: position.clone(),
                    message: format!("the server answered \"{}\"", s.message.trim()),
                }
            }
            mysql_async::Error::Server(s) if s.code == 1236 => SourceError::BinlogPurged {
                server: server.to_string(),
                position: position.clone(),
                message: format!("the server answered \"{}\"", s.message.trim()),
            },
            _ => SourceError::query(what, server, source),
        }
    }
}

/// Network and I/O failures are transient; server errors (bad SQL, no privilege) are not, except
/// the ones a restarting or overloaded server gives.
pub(crate) fn is_transient_driver_error(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(_) => false,
        mysql_async::Error::Server(s) => matches!(
            s.code,
            1040 /* too many connections */ | 1053 /* shutdown in progress */ | 1205 /* lock wait timeout */
                | 1213 /* deadlock */ | 2006 | 2013 /* gone away / lost connection */
        ),
        _ => false,
    }
}
