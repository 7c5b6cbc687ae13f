//! `polyrepl stack`: stands up MariaDB/MySQL, a MongoDB-wire server, Redis and Cassandra for a developer,
//! and Apache Kafka when asked for (`--service kafka`).
//!
//! Two backends share one [`StackConfig`]: [`local`] starts each server as a process of its own under a
//! state directory; [`docker`] runs the same services as labelled containers. Readiness always means
//! "answers a real query" ([`probe`]), never just "the port is open".

pub mod config;
pub mod docker;
pub mod error;
pub mod init;
pub mod local;
pub mod probe;
pub mod service;

pub use config::{Backend, StackConfig};
pub use error::StackError;
pub use service::Service;

/// One line of `stack status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStatus {
    pub service: Service,
    pub backend: Backend,
    pub address: String,
    /// Process id (local) or container id (docker), when known.
    pub handle: Option<String>,
    pub up: bool,
    /// The server's own version string, when it answered.
    pub version: Option<String>,
    /// Why it is down or not answering, when known.
    pub detail: Option<String>,
}
