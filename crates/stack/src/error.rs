//! Errors of the stack commands: each says what is wrong, where, and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{service}: port {port} on 127.0.0.1 is already taken by another process that polyrepl did not start.\n  Stop that process, or choose another port with {flag} (or the {env} environment variable).")]
    PortTaken { service: &'static str, port: u16, flag: &'static str, env: &'static str },

    #[error("{service}: the program '{program}' was not found.\n  {hint}\n  Or point polyrepl at it with {flag} (or {env}).")]
    MissingBinary { service: &'static str, program: String, hint: String, flag: &'static str, env: &'static str },

    #[error("the state directory {path} is not writable ({reason}).\n  Choose another with --state-dir (or POLYREPL_STATE_DIR).")]
    StateDirNotWritable { path: PathBuf, reason: String },

    #[error("{service}: the server did not answer within {secs} s after start.\n  Its log is {log}; the last lines:\n{tail}")]
    NotReady { service: &'static str, secs: u64, log: PathBuf, tail: String },

    #[error(
        "{service}: the server process exited during start-up ({status}).\n  Its log is {log}; the last lines:\n{tail}"
    )]
    Exited { service: &'static str, status: String, log: PathBuf, tail: String },

    #[error("{service}: {message}")]
    Service { service: &'static str, message: String },

    #[error("no Docker engine answers ({reason}).\n  The docker backend needs a running Docker Engine; use `--backend local` (the default where no engine runs) instead.")]
    NoDockerEngine { reason: String },

    #[error("{0}")]
    Io(String),
}

impl StackError {
    pub fn service(service: &'static str, message: impl std::fmt::Display) -> Self {
        StackError::Service { service, message: message.to_string() }
    }
}
