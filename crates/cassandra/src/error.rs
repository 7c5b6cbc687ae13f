//! Turning driver errors into [`SinkError`]s: transient (retry) or definite (stop).
//!
//! Invariants:
//! - Connection failures, timeouts, an unavailable/overloaded/bootstrapping coordinator, read/write
//!   timeouts and failures, and schema-agreement waits are transient: the batch is idempotent, retrying
//!   it is safe and may succeed.
//! - Everything else — syntax or invalid requests, authentication and authorisation, values the
//!   server refuses, a server that is not Cassandra — is definite.

use polyrepl_core::SinkError;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError, MetadataError,
    NewSessionError, PrepareError, RequestAttemptError,
};

fn build(sink: &str, doing: &str, is_transient: bool, error: &dyn std::fmt::Display, hint: &str) -> SinkError {
    let message = format!("{doing}: {error}{hint}");
    if is_transient {
        SinkError::transient(sink, message)
    } else {
        SinkError::definite(sink, message)
    }
}

fn db_error_is_transient(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::TruncateError
            | DbError::ServerError
            | DbError::RateLimitReached { .. }
            | DbError::Unprepared { .. }
    )
}

fn attempt_is_transient(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::DbError(db, _) => db_error_is_transient(db),
        RequestAttemptError::UnableToAllocStreamId | RequestAttemptError::BrokenConnectionError(_) => true,
        _ => false,
    }
}

fn connection_is_transient(e: &ConnectionError) -> bool {
    match e {
        ConnectionError::ConnectionSetupRequestError(setup) => match &setup.error {
            ConnectionSetupRequestErrorKind::DbError(db, _) => db_error_is_transient(db),
            ConnectionSetupRequestErrorKind::BrokenConnection(_)
            | ConnectionSetupRequestErrorKind::UnableToAllocStreamId => true,
            _ => false,
        },
        ConnectionError::UseKeyspaceError(_) => false,
        _ => true,
    }
}

fn pool_is_transient(e: &ConnectionPoolError) -> bool {
    match e {
        ConnectionPoolError::Broken { last_connection_error } => connection_is_transient(last_connection_error),
        ConnectionPoolError::Initializing => true,
        _ => false,
    }
}

fn metadata_is_transient(e: &MetadataError) -> bool {
    match e {
        MetadataError::ConnectionPoolError(p) => pool_is_transient(p),
        MetadataError::FetchError(_) => true,
        _ => false,
    }
}

fn is_authentication(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("authenticat") || t.contains("credentials")
}

/// Builds the sink error for a failed statement; `doing` says what was attempted.
pub fn classify(sink: &str, doing: &str, error: &ExecutionError) -> SinkError {
    let is_transient = match error {
        ExecutionError::LastAttemptError(a) => attempt_is_transient(a),
        ExecutionError::ConnectionPoolError(p) => pool_is_transient(p),
        ExecutionError::PrepareError(p) => prepare_is_transient(p),
        ExecutionError::RequestTimeout(_) | ExecutionError::EmptyPlan | ExecutionError::SchemaAgreementError(_) => true,
        ExecutionError::MetadataError(m) => metadata_is_transient(m),
        _ => false,
    };
    let hint = match error {
        ExecutionError::ConnectionPoolError(_) => " — is Cassandra running and reachable?",
        _ => "",
    };
    build(sink, doing, is_transient, error, hint)
}

fn prepare_is_transient(e: &PrepareError) -> bool {
    match e {
        PrepareError::ConnectionPoolError(p) => pool_is_transient(p),
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
        _ => false,
    }
}

/// Builds the sink error for a failed `PREPARE`.
pub fn classify_prepare(sink: &str, doing: &str, error: &PrepareError) -> SinkError {
    build(sink, doing, prepare_is_transient(error), error, "")
}

/// Builds the sink error for a failed session start.
pub fn classify_session(sink: &str, error: &NewSessionError) -> SinkError {
    let text = error.to_string();
    if is_authentication(&text) {
        return SinkError::definite(
            sink,
            format!("connecting: {text} — check the user name and password in the cassandra:// URL"),
        );
    }
    let is_transient = match error {
        NewSessionError::MetadataError(m) => metadata_is_transient(m),
        NewSessionError::FailedToResolveAnyHostname(_) => true,
        _ => false,
    };
    build(
        sink,
        "connecting",
        is_transient,
        error,
        if is_transient { " — is Cassandra running and reachable?" } else { "" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::frame::types::Consistency;

    #[test]
    fn server_errors_split_by_kind() {
        let overloaded =
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::Overloaded, "busy".into()));
        assert!(classify("s", "writing", &overloaded).is_transient());
        let unavailable = DbError::Unavailable { consistency: Consistency::One, required: 1, alive: 0 };
        assert!(classify(
            "s",
            "w",
            &ExecutionError::LastAttemptError(RequestAttemptError::DbError(unavailable, "x".into()))
        )
        .is_transient());
        let invalid =
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::Invalid, "unknown column".into()));
        let err = classify("s", "writing t", &invalid);
        assert!(!err.is_transient());
        assert!(err.to_string().contains("writing t"), "{err}");
        assert!(classify("s", "w", &ExecutionError::RequestTimeout(std::time::Duration::from_secs(1))).is_transient());
    }
}
