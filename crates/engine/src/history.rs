//! Whether a sink's checkpoint belongs to the source's binlog history.
//!
//! A checkpoint is a point in one server's binlog. After `RESET MASTER`, or pointed at another server
//! with its own history, the same position names other transactions (or none): streaming from it would
//! skip changes or read wrong ones, and Cassandra's position-derived write timestamps would go
//! backwards, so every new write would lose to the old ones. So a run refuses such a checkpoint with
//! the fix (`--resnapshot`), and a `--resnapshot` after a history change empties the sink tables before
//! copying, so the new history's writes count in every sink.
//!
//! The test: the checkpoint must not be ahead of where the source's binlog ends now. With MariaDB GTIDs,
//! no domain's sequence number in the checkpoint may exceed the server's, and every domain of the
//! checkpoint must exist there; without GTIDs (or with MySQL GTID sets), the file and offset must not be
//! past the server's current ones. A replica promoted after a failover has the same GTIDs and binlog
//! files of its own: positions with MariaDB GTIDs order by GTID ([`Position`]), so its files may number
//! lower than the checkpoint's.

use polyrepl_core::{parse_gtid_state, Position};
use polyrepl_mysql::source_url::SourceUrl;
use polyrepl_mysql::SourceError;

/// Why the source's binlog does not hold the transactions up to `held`, a MariaDB GTID position that
/// [`foreign_to`] accepts: the same sequence numbers can name other transactions (a failover to a
/// replica that had not received the last ones, then wrote its own). The server knows: it refuses a
/// replica asking to start after a GTID its binlog lacks. `None` when it has them (or `held` has no
/// MariaDB GTIDs).
pub async fn lost_on_source(url: &SourceUrl, held: &Position, server_id: u32) -> Option<String> {
    held.gtid_ordinal()?;
    match polyrepl_mysql::binlog::check_in_history(url, held, server_id).await {
        Ok(()) => None,
        Err(SourceError::NotInHistory { message, .. }) => {
            Some(format!("the source's binlog lacks transactions the checkpoint holds ({message})"))
        }
        // Anything else (a purged binlog, a lost connection) is not this question's answer: streaming
        // from the checkpoint meets it again and says so (and `--resnapshot` does not need that binlog).
        Err(e) => {
            tracing::debug!(error = %e, position = %held, "could not ask the source whether it holds the checkpoint's transactions");
            None
        }
    }
}

/// Why `held` cannot be a point of the binlog history that ends at `now`; `None` when it can be.
pub fn foreign_to(held: &Position, now: &Position) -> Option<String> {
    let gtids =
        |p: &Position| p.gtid.as_deref().filter(|g| !g.trim().is_empty()).and_then(|g| parse_gtid_state(g).ok());
    if let (Some(held_state), Some(now_state)) = (gtids(held), gtids(now)) {
        for (domain, (_, seq)) in held_state {
            match now_state.get(&domain) {
                None => {
                    return Some(format!(
                        "GTID domain {domain} of the checkpoint (sequence {seq}) is not in the source's binlog"
                    ))
                }
                Some((_, now_seq)) if *now_seq < seq => {
                    return Some(format!(
                    "the checkpoint holds GTID {domain}-*-{seq}, but the source's binlog ends at {domain}-*-{now_seq}"
                ))
                }
                Some(_) => {}
            }
        }
        return None;
    }
    (held > now).then(|| format!("the checkpoint is at {held}, past the end of the source's binlog ({now})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, offset: u64, gtid: Option<&str>) -> Position {
        Position { file: file.into(), offset, gtid: gtid.map(str::to_string), part: None }
    }

    #[test]
    fn a_checkpoint_ahead_of_the_source_is_from_another_history() {
        // RESET MASTER: file names and sequence numbers start again.
        let reset = at("binlog.000001", 900, Some("0-1-3"));
        assert!(foreign_to(&at("binlog.000018", 5000, Some("0-1-235800")), &reset).unwrap().contains("0-*-235800"));
        assert!(foreign_to(&at("binlog.000018", 5000, None), &at("binlog.000001", 900, None)).is_some());
        // Another server with a domain the checkpoint never saw is fine; one missing a domain is not.
        assert!(foreign_to(&at("b.000002", 4, Some("0-1-10")), &at("b.000003", 4, Some("0-1-10,1-2-5"))).is_none());
        assert!(foreign_to(&at("b.000002", 4, Some("0-1-10,1-2-5")), &at("b.000009", 4, Some("0-1-10"))).is_some());
    }

    #[test]
    fn a_checkpoint_behind_the_source_is_of_its_history() {
        assert!(
            foreign_to(&at("binlog.000003", 500, Some("0-1-40")), &at("binlog.000003", 900, Some("0-1-41"))).is_none()
        );
        // A promoted replica: same GTIDs, its own file numbers, lower or higher.
        assert!(
            foreign_to(&at("binlog.000018", 5000, Some("0-1-40")), &at("binlog.000020", 77, Some("0-2-45"))).is_none()
        );
        assert!(
            foreign_to(&at("binlog.000018", 5000, Some("0-1-40")), &at("binlog.000002", 77, Some("0-2-45"))).is_none()
        );
        assert!(foreign_to(&at("binlog.000003", 500, None), &at("binlog.000003", 500, None)).is_none());
    }
}
