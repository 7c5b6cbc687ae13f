//! Turning redis crate errors into [`SinkError`]s: transient (retry) or definite (stop).
//!
//! Invariants:
//! - I/O failures (refused, reset, broken pipe, timeouts) and the server's "not now" replies (`LOADING`,
//!   `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY` during a fail-over, `OOM`) are transient:
//!   retrying the same idempotent batch is safe and may succeed. So are a cluster's redirections
//!   (`MOVED`, `ASK`) that reach us, e.g. inside a transaction queued while a slot migrated.
//! - An aborted transaction (`EXECABORT`) is transient only when every command it refused was refused for
//!   a transient reason (e.g. `OOM`); a permission (`NOPERM`) or syntax refusal is definite.
//! - Authentication failures (`WRONGPASS`, `NOAUTH`), bad URLs, wrong types and anything else are definite,
//!   and the message says what to check.

use polyrepl_core::SinkError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Server error codes after which the same command may succeed when retried.
const TRANSIENT_CODES: &[&str] =
    &["LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "OOM", "MOVED", "ASK"];

fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Builds the sink error for a failed redis call; `doing` says what was attempted.
pub fn classify(sink: &str, doing: &str, error: &RedisError) -> SinkError {
    let code = error.code().unwrap_or("");
    let auth = error.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH");
    let transient = !auth
        && match error.kind() {
            ErrorKind::Io => true,
            ErrorKind::Server(ServerErrorKind::ExecAbort) => {
                let nested = error.clone().into_server_errors().unwrap_or_else(|| std::sync::Arc::from([]));
                !nested.is_empty() && nested.iter().all(|(_, e)| is_transient_code(e.code()))
            }
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask,
            ) => true,
            _ => is_transient_code(code) || error.is_timeout() || error.is_connection_dropped(),
        };
    let hint = if auth {
        " — check the user name and password in the Redis URL (redis://USER:PASSWORD@HOST:PORT)"
    } else if code == "NOPERM" || nested_codes(error).iter().any(|c| c == "NOPERM") {
        " — the Redis user lacks a permission (ACL): it needs DEL, HSET, PEXPIRE, XADD, SET, GET, HGETALL, MULTI, EXEC on the row, stream and polyrepl:checkpoint:* keys"
    } else if code == "WRONGTYPE" || nested_codes(error).iter().any(|c| c == "WRONGTYPE") {
        " — a key polyrepl writes holds a value of another type (another application uses the same key names?); the transaction's other writes were applied"
    } else if error.kind() == ErrorKind::Io {
        " — is the Redis server running and reachable?"
    } else {
        ""
    };
    let message = format!("{doing}: {}{hint}", describe(error));
    if transient {
        SinkError::Transient { sink: sink.to_string(), message }
    } else {
        SinkError::Definite { sink: sink.to_string(), message }
    }
}

/// The codes of the server errors inside a pipeline or aborted-transaction error.
fn nested_codes(error: &RedisError) -> Vec<String> {
    error
        .clone()
        .into_server_errors()
        .map(|errors| errors.iter().map(|(_, e)| e.code().to_string()).collect())
        .unwrap_or_default()
}

/// The error with the server's refusals spelled out.
fn describe(error: &RedisError) -> String {
    match error.clone().into_server_errors() {
        Some(errors) if errors.len() > 1 || error.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) => {
            let first = errors
                .iter()
                .take(3)
                .map(|(i, e)| format!("command {i}: {} {}", e.code(), e.details().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            let aborted = if error.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort) {
                "the transaction was aborted (nothing of it was applied)"
            } else {
                "the server refused"
            };
            format!("{aborted}: {} error(s); {first}", errors.len())
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_is_transient_and_auth_is_definite() {
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert!(classify("s", "x", &io).is_transient());
        let auth = redis::make_extension_error("WRONGPASS".into(), Some("invalid username-password pair".into()));
        let e = classify("s", "x", &auth);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("password"), "{e}");
        let oom = redis::make_extension_error("OOM".into(), Some("command not allowed".into()));
        assert!(classify("s", "x", &oom).is_transient());
    }
}
