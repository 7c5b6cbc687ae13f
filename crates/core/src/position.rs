//! Where in the source's binlog a change was committed, and how two such points order.
//!
//! Two orders, chosen by what both positions carry:
//! - **By MariaDB GTID state** when both have one (`D-S-N[,D-S-N]`): the sum of the sequence numbers over
//!   every domain, then the part of a large transaction ([`Position::part`]). Along one binlog history
//!   every domain's sequence only grows and each transaction raises one of them, so the sum grows
//!   strictly from commit to commit; and a replica logging what it applies (`log_slave_updates`) has the
//!   same GTIDs at the same points. So positions read from a primary and from a replica promoted in its
//!   place compare as they should, although their binlog files and offsets have nothing in common. Equal
//!   GTID states and parts fall back to file and offset (the points between two commits of one server).
//! - **By binlog file then offset** otherwise (MySQL, or a MariaDB position taken before its first
//!   transaction). MariaDB and MySQL name binlog files with a zero-padded sequence suffix
//!   (`binlog.000042`), compared as numbers.
//!
//! The GTID order assumes what MariaDB's `gtid_strict_mode` enforces: sequence numbers never go backwards
//! in a domain. Positions of two different histories (`RESET MASTER`, an unrelated server) do not
//! compare meaningfully in either order: `polyrepl run` refuses such a checkpoint at start-up.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A point in the binlog: the end of a committed transaction (or the snapshot's hand-over point), or
/// the end of one part of a large transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name, e.g. `binlog.000003`.
    pub file: String,
    /// Byte offset in that file of the next event after this position.
    pub offset: u64,
    /// GTID state at this position, when the server uses GTIDs (MariaDB `D-S-N[,D-S-N]`, MySQL GTID set).
    /// For a part of a large transaction: the state before that transaction.
    pub gtid: Option<String>,
    /// Inside a large transaction emitted in parts: how many of its changes are emitted up to and
    /// including this part (file and offset: the rows event that completed it). `None` between
    /// transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u64>,
}

impl Position {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        Position { file: file.into(), offset, gtid: None, part: None }
    }

    /// The numeric suffix of the binlog file name (`binlog.000042` → 42).
    pub fn file_sequence(&self) -> u64 {
        self.file.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// A strictly increasing number for positions inside one server's binlog history (file sequence
    /// in the high bits, offset in the low 40), for positions without a MariaDB GTID state.
    pub fn ordinal(&self) -> u64 {
        (self.file_sequence() << 40) | (self.offset & ((1 << 40) - 1))
    }

    /// The sum of the sequence numbers of a MariaDB GTID state over its domains: strictly increasing from
    /// commit to commit along a binlog history, and the same on a replica. `None` without a MariaDB
    /// GTID state (none, empty, or a MySQL GTID set).
    pub fn gtid_ordinal(&self) -> Option<u64> {
        let gtid = self.gtid.as_deref().map(str::trim).filter(|g| !g.is_empty())?;
        gtid.split(',').try_fold(0u64, |sum, entry| {
            let mut fields = entry.trim().split('-');
            let (domain, server, seq) = (fields.next()?, fields.next()?, fields.next()?);
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if fields.next().is_some() || !numeric(domain) || !numeric(server) {
                return None;
            }
            sum.checked_add(seq.parse().ok()?)
        })
    }

    /// File and offset, the order inside one server's binlog.
    fn file_order(&self) -> (u64, &str, u64) {
        (self.file_sequence(), &self.file, self.offset)
    }
}

/// A MariaDB GTID state `D-S-N,D-S-N` → domain → (server id, sequence number).
pub fn parse_gtid_state(s: &str) -> Result<BTreeMap<u32, (u32, u64)>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let parse = |x: Option<&str>| x.and_then(|v| v.parse::<u64>().ok());
        match (parse(it.next()), parse(it.next()), parse(it.next()), it.next()) {
            (Some(d), Some(srv), Some(n), None) if d <= u32::MAX as u64 && srv <= u32::MAX as u64 => {
                out.insert(d as u32, (srv as u32, n));
            }
            _ => return Err(format!("GTID position '{s}' is not of the form domain-server-seq[,...] (MariaDB)")),
        }
    }
    Ok(out)
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Two positions at the same point compare equal even when only one carries the GTID state there (a
/// chunk read at a position has none until the stream reaches it): the order is the binlog's, not
/// `==`'s, which also compares the GTID text.
impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_file = || self.file_order().cmp(&other.file_order()).then_with(|| self.part.cmp(&other.part));
        match (self.gtid_ordinal(), other.gtid_ordinal()) {
            (Some(a), Some(b)) => {
                a.cmp(&b).then_with(|| self.part.unwrap_or(0).cmp(&other.part.unwrap_or(0))).then_with(by_file)
            }
            _ => by_file(),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(g) = &self.gtid {
            write!(f, " (gtid {g})")?;
        }
        if let Some(n) = self.part {
            write!(f, " (part: {n} changes of the next transaction)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, offset: u64, gtid: &str, part: Option<u64>) -> Position {
        Position { file: file.into(), offset, gtid: Some(gtid.into()), part }
    }

    #[test]
    fn orders_by_file_sequence_then_offset() {
        let a = Position::new("binlog.000009", 900);
        let b = Position::new("binlog.000010", 4);
        let c = Position::new("binlog.000010", 120);
        assert!(a < b && b < c);
        assert!(a.ordinal() < b.ordinal() && b.ordinal() < c.ordinal());
    }

    #[test]
    fn mariadb_positions_order_by_gtid_whatever_the_files() {
        // The primary's files number higher than the promoted replica's.
        let on_primary = at("primary-bin.000031", 9_000, "0-1-41", None);
        let on_replica_same = at("replica-bin.000002", 300, "0-1-41", None);
        let on_replica_next = at("replica-bin.000002", 700, "0-2-42", None);
        assert!(on_primary < on_replica_next);
        assert!(on_replica_same < on_replica_next);
        // Several domains: the sum of the sequences.
        assert!(at("b.000009", 4, "0-1-10,1-1-5", None) < at("b.000001", 4, "0-1-10,1-3-6", None));
    }

    #[test]
    fn parts_sit_between_the_commit_before_and_their_own() {
        let before = at("b.000003", 500, "0-1-41", None);
        let first_part = at("b.000003", 90_000, "0-1-41", Some(20_000));
        let second_part = at("b.000003", 180_000, "0-1-41", Some(40_000));
        let commit = at("b.000003", 200_000, "0-1-42", None);
        assert!(before < first_part && first_part < second_part && second_part < commit);
        // The same parts read from another server (other offsets) compare by how many changes they end at.
        let elsewhere = at("r.000001", 1_000, "0-1-41", Some(20_000));
        assert!(elsewhere < second_part && before < elsewhere);
    }

    #[test]
    fn the_same_point_with_and_without_its_gtid_state_is_equal_in_order() {
        let bare = Position::new("b.000003", 500);
        let known = at("b.000003", 500, "0-1-41", None);
        assert_eq!(bare.cmp(&known), Ordering::Equal);
        assert!(bare <= known && known <= bare);
    }

    #[test]
    fn gtid_ordinal_reads_mariadb_states_only() {
        assert_eq!(at("b.1", 4, "0-1-41", None).gtid_ordinal(), Some(41));
        assert_eq!(at("b.1", 4, "0-1-41, 7-3-9", None).gtid_ordinal(), Some(50));
        assert_eq!(at("b.1", 4, "", None).gtid_ordinal(), None);
        assert_eq!(Position::new("b.1", 4).gtid_ordinal(), None);
        let mysql = at("b.1", 4, "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", None);
        assert_eq!(mysql.gtid_ordinal(), None, "a MySQL GTID set orders by file and offset");
    }

    #[test]
    fn gtid_state_round_trip() {
        let s = parse_gtid_state("0-1-42,3-7-9").unwrap();
        assert_eq!(s.get(&3), Some(&(7, 9)));
        assert!(parse_gtid_state("0-1").is_err());
        assert!(parse_gtid_state("").unwrap().is_empty());
    }

    #[test]
    fn a_position_without_part_reads_as_before() {
        let old: Position = serde_json::from_str(r#"{"file":"b.000001","offset":4,"gtid":"0-1-1"}"#).unwrap();
        assert_eq!(old.part, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("part"));
    }
}
