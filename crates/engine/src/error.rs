//! The engine's error: what failed (source, a sink, the settings) with the message the user needs.

use polyrepl_core::SinkError;
use polyrepl_mysql::{CheckError, SourceError, UrlError};

/// Result alias of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A failure that stops a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A start-up check of the source failed.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The source failed (definitely, or transiently where retrying is not ours to do).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The source URL is malformed.
    #[error(transparent)]
    SourceUrl(#[from] UrlError),
    /// A sink failed definitely while applying.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The source failed while doing `what` (reading rows to compare, to repair…).
    #[error("{what}")]
    SourceStep {
        what: String,
        #[source]
        source: SourceError,
    },
    /// A sink failed while doing `what` (opening, preparing, reading its checkpoint…).
    #[error("{what}")]
    SinkStep {
        what: String,
        #[source]
        source: SinkError,
    },
    /// The settings cannot work (unknown sink scheme, malformed table pattern…).
    #[error("{0}")]
    Settings(String),
    /// A sink table is leased by another pipeline (at start-up), or the lease was lost while running.
    #[error("{0}")]
    Lease(String),
    /// A schema change (or a statement-logged change) on the source that polyrepl cannot follow.
    #[error("{0}")]
    SchemaChange(String),
    /// A task of the engine died (a panic): a bug, reported as such.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Wraps a source error with the step that failed, e.g. "reading d.t from the source".
    pub fn source_step(what: impl Into<String>) -> impl FnOnce(SourceError) -> EngineError {
        let what = what.into();
        move |source| EngineError::SourceStep { what, source }
    }

    /// Wraps a sink error with the step that failed, e.g. "preparing the sink redis://h:1".
    pub fn sink_step(what: impl Into<String>) -> impl FnOnce(SinkError) -> EngineError {
        let what = what.into();
        move |source| EngineError::SinkStep { what, source }
    }
}
