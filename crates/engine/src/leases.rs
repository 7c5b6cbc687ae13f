//! A run's leases on the sink tables it writes ([`polyrepl_core::lease`]): taken at start-up, renewed
//! while the run goes on, released when it stops cleanly.
//!
//! Invariants:
//! - Before any sink is prepared, every selected table's lease is taken in every sink, under the run's
//!   name. A table another pipeline holds stops the start with an error naming the table, the owner and
//!   the fix; the leases this attempt took are given back.
//! - The keeper has its own connection to each sink (the pipeline's connections are busy applying) and
//!   renews every lease every third of its length. A lease found held by another pipeline at renewal
//!   (it was taken over, or expired while this run could not reach the sink) stops the run: the two
//!   must never write the same rows. A sink that cannot be reached is retried at the next renewal.
//! - The same name is the same owner: a run restarted after `kill -9` gets its leases back at once.
//! - Tables are the ones selected when the run started; a table created later is leased from the next
//!   start.

use std::sync::Arc;
use std::time::Duration;

use polyrepl_core::{Lease, LeaseRequest, Sink, TableSchema};

use crate::error::{EngineError, Result};
use crate::registry::open_sink;
use crate::settings::RunConfig;

/// The leases of one run, and the connections that keep them.
pub struct LeaseKeeper {
    sinks: Vec<Box<dyn Sink>>,
    tables: Vec<Arc<TableSchema>>,
    request: LeaseRequest,
}

impl LeaseKeeper {
    /// Opens a connection to every sink of `cfg` and takes the lease of every one of `tables` for
    /// `cfg.name` (taking them over from another pipeline when `cfg.take_over`). Fails, giving back what
    /// it took, when another pipeline holds one.
    pub async fn acquire(cfg: &RunConfig, tables: &[Arc<TableSchema>]) -> Result<LeaseKeeper> {
        let mut request = LeaseRequest::new(&cfg.name, cfg.lease_ttl);
        request.take_over = cfg.take_over;
        let mut keeper = LeaseKeeper { sinks: Vec::new(), tables: tables.to_vec(), request };
        for url in &cfg.sinks {
            keeper.sinks.push(open_sink(url, &cfg.name).await?);
        }
        let mut refused = Vec::new();
        for sink in keeper.sinks.iter_mut() {
            let step = format!("taking the leases of {} table(s) in {}", tables.len(), sink.name());
            let held = sink.acquire_leases(tables, &keeper.request).await.map_err(EngineError::sink_step(step))?;
            if cfg.take_over {
                for lease in &held {
                    tracing::warn!(sink = sink.name(), %lease, "--take-over: the lease is still held, not taken");
                }
            }
            refused.extend(held.into_iter().map(|lease| (sink.name().to_string(), lease)));
        }
        if !refused.is_empty() {
            keeper.release().await;
            return Err(EngineError::Lease(refusal(&cfg.name, cfg.lease_ttl, &refused)));
        }
        if cfg.take_over {
            tracing::warn!(pipeline = %cfg.name, "--take-over: this run owns its tables now; any other pipeline writing them stops at its next lease renewal");
        }
        // From now on renewals never take over: a lease taken from us is lost, not taken back.
        keeper.request.take_over = false;
        Ok(keeper)
    }

    /// Renews every lease every third of its length, until one is found held by another pipeline:
    /// returns that error (it never returns otherwise).
    pub async fn keep(&mut self) -> EngineError {
        let every = (self.request.ttl / 3).max(Duration::from_millis(100));
        let mut failing = vec![false; self.sinks.len()];
        loop {
            tokio::time::sleep(every).await;
            for (i, sink) in self.sinks.iter_mut().enumerate() {
                match sink.acquire_leases(&self.tables, &self.request).await {
                    Ok(lost) if lost.is_empty() => {
                        if std::mem::take(&mut failing[i]) {
                            tracing::info!(sink = sink.name(), "leases renewed again");
                        }
                    }
                    Ok(lost) => return EngineError::Lease(loss(&self.request.owner, sink.name(), &lost)),
                    Err(e) if e.is_transient() => {
                        if !std::mem::replace(&mut failing[i], true) {
                            tracing::warn!(sink = sink.name(), error = %e, "cannot renew the leases; trying again at the next renewal");
                        }
                    }
                    Err(e) => return EngineError::sink_step(format!("renewing the leases in {}", sink.name()))(e),
                }
            }
        }
    }

    /// Gives the leases back (a clean stop); a failure is only logged: they expire anyway.
    pub async fn release(mut self) {
        for sink in self.sinks.iter_mut() {
            if let Err(e) = sink.release_leases(&self.tables, &self.request.owner).await {
                tracing::warn!(sink = sink.name(), error = %e, "could not release the leases; they expire on their own");
            }
        }
    }
}

/// The start-up refusal: which tables, whose, and the fix.
fn refusal(name: &str, ttl: Duration, refused: &[(String, Lease)]) -> String {
    let mut lines: Vec<String> = refused.iter().take(10).map(|(sink, lease)| format!("  {sink}: {lease}")).collect();
    if refused.len() > 10 {
        lines.push(format!("  … and {} more", refused.len() - 10));
    }
    let owners: std::collections::BTreeSet<&str> = refused.iter().map(|(_, l)| l.owner.as_str()).collect();
    let owners: Vec<String> = owners.into_iter().map(|o| format!("'{o}'")).collect();
    format!(
        "pipeline '{name}' cannot start: {} sink table(s) it would write belong to another pipeline, and two \
         pipelines writing the same tables overwrite each other's newer rows with older ones:\n{}\nFix: stop \
         pipeline {} (a clean stop gives its tables back at once; a crashed one's lease expires {} s after its \
         last renewal), or run this one under that --name, or leave these tables out (--exclude), or take the \
         tables over explicitly with --take-over (or take_over = true in --config): the other pipeline then \
         stops at its next renewal",
        refused.len(),
        lines.join("\n"),
        owners.join(", "),
        ttl.as_secs()
    )
}

/// The message when a renewal finds leases held by another pipeline.
fn loss(name: &str, sink: &str, lost: &[Lease]) -> String {
    let lines: Vec<String> = lost.iter().take(10).map(|lease| format!("  {sink}: {lease}")).collect();
    format!(
        "pipeline '{name}' stops: it lost the lease of {} table(s) to another pipeline (taken over with \
         --take-over, or expired while this run could not renew it), and two pipelines must not write the \
         same tables:\n{}\nFix: run one pipeline per set of tables; start this one again once the other is \
         stopped, or with --take-over",
        lost.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::TableId;

    fn lease(owner: &str) -> Lease {
        Lease {
            table: TableId::new("shop", "orders"),
            owner: owner.into(),
            holder: "h:1".into(),
            expires_in: Duration::from_secs(20),
        }
    }

    #[test]
    fn the_refusal_names_the_table_the_owner_and_the_fixes() {
        let text = refusal("b", Duration::from_secs(30), &[("redis://h:1".into(), lease("a"))]);
        for needle in [
            "pipeline 'b' cannot start",
            "redis://h:1: shop.orders is leased by pipeline 'a'",
            "stop pipeline 'a'",
            "--take-over",
            "take_over = true",
            "30 s",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let text = loss("a", "redis://h:1", &[lease("b")]);
        assert!(text.contains("pipeline 'a' stops") && text.contains("leased by pipeline 'b'"), "{text}");
    }

    #[tokio::test]
    async fn a_second_pipeline_is_refused_and_the_same_name_comes_back() {
        // No sink of the registry lives in memory: the keeper is built around a memory sink directly.
        let (sink, _handle) = polyrepl_core::testkit::memory_sink::MemorySink::new("memory", "a");
        let tables = vec![Arc::new(TableSchema { id: TableId::new("d", "t"), columns: vec![], primary_key: vec![0] })];
        let mut a = LeaseKeeper {
            sinks: vec![Box::new(sink)],
            tables: tables.clone(),
            request: LeaseRequest::new("a", Duration::from_millis(300)),
        };
        assert!(a.sinks[0].acquire_leases(&tables, &a.request).await.unwrap().is_empty());
        let mut b_request = LeaseRequest::new("b", Duration::from_secs(30));
        let refused = a.sinks[0].acquire_leases(&tables, &b_request).await.unwrap();
        assert_eq!(refused.len(), 1);
        assert!(refusal("b", Duration::from_secs(30), &[("memory".into(), refused[0].clone())]).contains("'a'"));
        // Renewals keep the lease alive past its length…
        let keeping = tokio::time::timeout(Duration::from_millis(900), a.keep()).await;
        assert!(keeping.is_err(), "keep returned while nobody took the lease");
        assert_eq!(a.sinks[0].acquire_leases(&tables, &b_request).await.unwrap().len(), 1, "renewed");
        // …until another pipeline takes it over: the next renewal stops the run.
        b_request.take_over = true;
        assert!(a.sinks[0].acquire_leases(&tables, &b_request).await.unwrap().is_empty());
        let lost = tokio::time::timeout(Duration::from_secs(2), a.keep()).await.expect("keep stops");
        assert!(lost.to_string().contains("lost the lease"), "{lost}");
    }
}
