//! Turning driver errors and server replies into [`SinkError`]s: transient (retry) or definite (stop).
//!
//! Invariants:
//! - Network, timeout, server-selection, pool-cleared and "primary changing" failures are transient:
//!   retrying the same idempotent batch is safe and may succeed.
//! - Everything else (bad data, refused documents, authentication, wrong server, bad URL) is definite.
//! - A command reply with `writeErrors`/`writeConcernError` is a failure even though the driver
//!   returned `Ok`: [`check_write_reply`] turns it into an error naming the first offending `_id`.

use mongodb::bson::{Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use polyrepl_core::SinkError;

/// Server error codes after which the same write may succeed when retried.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (timeout waiting for replication)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    117,   // ConflictingOperationInProgress
    133,   // FailedToSatisfyReadPreference
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    202,   // NetworkInterfaceExceededTimeLimit
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Labels the server or driver puts on errors worth retrying.
const TRANSIENT_LABELS: &[&str] =
    &["RetryableWriteError", "TransientTransactionError", "NetworkError", "SystemOverloadedError"];

fn is_transient_code(code: i32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Builds the sink error for a failed driver call; `doing` says what was attempted, e.g.
/// "writing 120 upserts to shop.orders".
pub fn classify(sink: &str, doing: &str, error: &DriverError) -> SinkError {
    let transient = TRANSIENT_LABELS.iter().any(|l| error.contains_label(l))
        || match &*error.kind {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. } => true,
            ErrorKind::Command(c) => is_transient_code(c.code),
            ErrorKind::Write(WriteFailure::WriteConcernError(c)) => is_transient_code(c.code),
            ErrorKind::Write(WriteFailure::WriteError(w)) => is_transient_code(w.code),
            ErrorKind::BulkWrite(b) => {
                b.write_errors.values().all(|w| is_transient_code(w.code))
                    && b.write_concern_errors.iter().all(|w| is_transient_code(w.code))
            }
            _ => false,
        };
    let hint = match &*error.kind {
        ErrorKind::ServerSelection { .. } => " — is the server running and reachable at this address?",
        ErrorKind::Authentication { .. } => " — check the user name, password and authSource in the URL",
        _ => "",
    };
    let message = format!("{doing}: {}{hint}", describe(error));
    if transient {
        SinkError::Transient { sink: sink.to_string(), message }
    } else {
        SinkError::Definite { sink: sink.to_string(), message }
    }
}

/// The driver error's message without the noise of its Debug form.
fn describe(error: &DriverError) -> String {
    match &*error.kind {
        ErrorKind::Command(c) => format!("server error {} ({}): {}", c.code, c.code_name, c.message),
        ErrorKind::BulkWrite(b) => {
            let first = b.write_errors.iter().min_by_key(|(i, _)| **i);
            match first {
                Some((i, w)) => format!(
                    "{} write(s) refused; first: operation {i}, code {}: {}",
                    b.write_errors.len(),
                    w.code,
                    w.message
                ),
                None => format!("write concern failed: {:?}", b.write_concern_errors.first().map(|w| &w.message)),
            }
        }
        _ => error.to_string(),
    }
}

/// Checks the reply of an `update`/`delete` command: `writeErrors` and `writeConcernError` are
/// failures even with `ok: 1`. `ids` are the `_id`s of the operations in command order, to name
/// the offending one.
pub fn check_write_reply(sink: &str, doing: &str, reply: &Document, ids: &[&Bson]) -> Result<(), SinkError> {
    if let Ok(errors) = reply.get_array("writeErrors") {
        if !errors.is_empty() {
            let mut all_transient = true;
            let mut first: Option<String> = None;
            for error in errors {
                let Some(error) = error.as_document() else { continue };
                let code = error.get_i32("code").unwrap_or(-1);
                all_transient &= is_transient_code(code);
                if first.is_none() {
                    let index = error.get_i32("index").ok().and_then(|i| usize::try_from(i).ok());
                    let id =
                        index.and_then(|i| ids.get(i)).map(|id| shorten(&id.to_string())).unwrap_or_else(|| "?".into());
                    let message = error.get_str("errmsg").unwrap_or("no message");
                    first = Some(format!("_id {id}: code {code}: {message}"));
                }
            }
            let message = format!(
                "{doing}: the server refused {} of {} operation(s); first: {}",
                errors.len(),
                ids.len(),
                first.unwrap_or_default()
            );
            return Err(if all_transient {
                SinkError::transient(sink, message)
            } else {
                SinkError::definite(sink, message)
            });
        }
    }
    if let Ok(wce) = reply.get_document("writeConcernError") {
        let code = wce.get_i32("code").unwrap_or(-1);
        let message = format!("{doing}: write concern failed, code {code}: {}", wce.get_str("errmsg").unwrap_or(""));
        return Err(if is_transient_code(code) {
            SinkError::transient(sink, message)
        } else {
            SinkError::definite(sink, message)
        });
    }
    Ok(())
}

/// At most 200 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn write_errors_in_an_ok_reply_are_errors() {
        let reply = doc! { "ok": 1.0, "n": 1, "writeErrors": [ { "index": 1, "code": 2, "errmsg": "nested arrays" } ] };
        let a = Bson::Int32(1);
        let b = Bson::Int32(2);
        let err = check_write_reply("s", "writing", &reply, &[&a, &b]).unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("_id 2"), "{err}");
        let reply = doc! { "ok": 1.0, "writeErrors": [ { "index": 0, "code": 91, "errmsg": "shutting down" } ] };
        assert!(check_write_reply("s", "writing", &reply, &[&a]).unwrap_err().is_transient());
        assert!(check_write_reply("s", "writing", &doc! { "ok": 1.0, "n": 2 }, &[&a, &b]).is_ok());
    }
}
