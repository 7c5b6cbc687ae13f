//! Leases: which pipeline owns a sink table, so that two pipelines never write the same rows.
//!
//! A lease is stored in the sink itself, one record per sink table (MongoDB: a document, Redis: a key,
//! Cassandra: a row), naming the owning pipeline (`--name`) and expiring unless renewed. A pipeline
//! takes the lease of every table it writes at start-up and renews it while it runs
//! ([`crate::Sink::acquire_leases`]).
//!
//! Invariants:
//! - The owner is the pipeline's name: a pipeline restarted under the same name (after `kill -9`) gets
//!   its own leases back at once, without waiting for them to expire.
//! - A lease held by another owner is taken only when it has expired, or when the request says
//!   `take_over` (the operator's explicit choice); each sink decides this in one atomic step on its
//!   server (a Lua script, a conditional update, a lightweight transaction), so two pipelines starting
//!   together can never both win.
//! - Releasing removes only the caller's own leases.

use std::time::Duration;

use crate::TableId;

/// What a pipeline asks for when it takes (or renews) its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The owning pipeline: its name (`--name`).
    pub owner: String,
    /// Who runs it, for messages: `host:pid`.
    pub holder: String,
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
    /// Take the lease even when another owner holds it and it has not expired.
    pub take_over: bool,
}

impl LeaseRequest {
    /// A request for `owner` by this process (`host:pid`), lasting `ttl`, without taking over.
    pub fn new(owner: impl Into<String>, ttl: Duration) -> LeaseRequest {
        LeaseRequest { owner: owner.into(), holder: this_process(), ttl, take_over: false }
    }
}

/// A lease held on a sink table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The source table whose sink table the lease covers.
    pub table: TableId,
    /// The owning pipeline's name.
    pub owner: String,
    /// Who runs it (`host:pid`), as the owner said when it took the lease.
    pub holder: String,
    /// Time left before the lease expires (as the sink's server or clock sees it).
    pub expires_in: Duration,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is leased by pipeline '{}' (running at {}, lease expires in {} s unless renewed)",
            self.table,
            self.owner,
            if self.holder.is_empty() { "an unknown place" } else { &self.holder },
            self.expires_in.as_secs_f64().ceil() as u64
        )
    }
}

/// `host:pid` of this process (the host name from the kernel, `unknown-host` when unreadable).
pub fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_says_who_holds_it_and_for_how_long() {
        let lease = Lease {
            table: TableId::new("shop", "orders"),
            owner: "a".into(),
            holder: "h:1".into(),
            expires_in: Duration::from_millis(2_100),
        };
        assert_eq!(
            lease.to_string(),
            "shop.orders is leased by pipeline 'a' (running at h:1, lease expires in 3 s unless renewed)"
        );
        let request = LeaseRequest::new("p", Duration::from_secs(30));
        assert!(request.holder.ends_with(&format!(":{}", std::process::id())), "{}", request.holder);
        assert!(!request.take_over);
    }
}
