//! Write timestamps (`USING TIMESTAMP`) derived from the source position, which make replays harmless.
//!
//! Cassandra keeps, per cell and per row, the write with the highest timestamp (a delete wins a tie).
//! Every data write carries `write_timestamp(change.position, change.seq)`, so a write's effect depends
//! only on where the change sits in the binlog, not on when it is applied:
//! - replaying an old batch after a newer one changes nothing: its timestamps are smaller;
//! - a delete, then a re-insert of the same key in a later transaction: the later transaction has a
//!   strictly greater position, hence a strictly greater timestamp, and the row lives again;
//! - snapshot rows all carry the snapshot's hand-over position with seq 0, below every streamed change
//!   after it (streamed transactions commit at strictly greater positions).
//!
//! A snapshot resumed after a crash copies rows at a *newer* state than its (older) hand-over position
//! says. That still converges: streaming restarts at the hand-over position and replays every change
//! committed since, each with a greater timestamp than any snapshot row, so every key changed after the
//! hand-over ends at its last change, and every key not changed since holds its snapshot row, which is
//! right.
//!
//! Two ranges, one per way positions order ([`Position`]'s module doc):
//! - **MariaDB GTID positions**, `[2^62, 2^63)`: `2^62 + n * 2^24 + min(seq, 2^24 − 1)`, where `n` is the
//!   sum of the GTID state's sequence numbers ([`Position::gtid_ordinal`]), plus one for a part of a
//!   large transaction (whose state is the one before it: its parts then sit with the transaction's own
//!   commit, above the commit before), and `seq` is the change's index in its whole transaction. The
//!   same change read from a primary or from the replica promoted in its place gets the same
//!   timestamp, so a failover keeps every timestamp increasing. Good up to GTID sequence sums of 2^38
//!   (2.7·10^11 transactions); changes beyond the 16,777,216th of one transaction share a timestamp
//!   (harmless unless one key is changed again that deep into it, in another part).
//! - **File and offset**, `[0, 2^62)`, for positions without a MariaDB GTID state (MySQL; MariaDB
//!   before its first transaction): `ordinal * 1024 + min(seq, 1023)` while the binlog file sequence is
//!   below 2048, beyond that `2^61 + (ordinal − 2^51)` (seq no longer breaks ties, harmless because
//!   changes to one key inside one transaction are collapsed to the last before writing, and the parts
//!   of a large transaction each have their own offset), up to binlog file sequence 2 099 199.
//!
//! A MariaDB position without GTIDs is only ever followed by ones with GTIDs, which sit in the upper
//! range: still increasing. Positions from a different binlog history (another server's, `RESET MASTER`)
//! are not comparable: `polyrepl run` refuses them, and `--resnapshot` then empties the tables
//! (`TRUNCATE`, whatever the timestamps) before copying.

use polyrepl_core::Position;

/// Changes per transaction that get distinct timestamps in the file-and-offset range.
pub const SEQ_SLOTS: u64 = 1024;
/// Ordinals below this use `ordinal * SEQ_SLOTS + seq`.
const FINE_LIMIT: u64 = 1 << 51;
/// First timestamp of the coarse file-and-offset range, above every fine timestamp.
const COARSE_BASE: u64 = 1 << 61;
/// First timestamp of the GTID range, above every file-and-offset timestamp.
const GTID_BASE: u64 = 1 << 62;
/// Changes per transaction that get distinct timestamps in the GTID range.
const GTID_SEQ_SLOTS: u64 = 1 << 24;

/// The `USING TIMESTAMP` of a change at `position` with index `seq` in its transaction.
pub fn write_timestamp(position: &Position, seq: u32) -> Result<i64, String> {
    let too_far =
        || format!("binlog position {position} is too far into the binlog history for a Cassandra write timestamp");
    let t = if let Some(gtid_ordinal) = position.gtid_ordinal() {
        let n = gtid_ordinal + u64::from(position.part.is_some());
        n.checked_mul(GTID_SEQ_SLOTS)
            .and_then(|t| t.checked_add(u64::from(seq).min(GTID_SEQ_SLOTS - 1)))
            .filter(|&t| t < GTID_BASE)
            .ok_or_else(too_far)?
            + GTID_BASE
    } else {
        let ordinal = position.ordinal();
        if ordinal < FINE_LIMIT {
            ordinal * SEQ_SLOTS + u64::from(seq).min(SEQ_SLOTS - 1)
        } else {
            Some(COARSE_BASE + (ordinal - FINE_LIMIT)).filter(|&t| t < GTID_BASE).ok_or_else(too_far)?
        }
    };
    Ok(t as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(file: u64, offset: u64, seq: u32) -> i64 {
        write_timestamp(&Position::new(format!("binlog.{file:06}"), offset), seq).unwrap()
    }

    fn gts(file: &str, gtid: &str, part: Option<u64>, seq: u32) -> i64 {
        let position = Position { file: file.into(), offset: 77, gtid: Some(gtid.into()), part };
        write_timestamp(&position, seq).unwrap()
    }

    #[test]
    fn strictly_increasing_in_position_then_seq() {
        assert!(ts(1, 100, 0) < ts(1, 100, 1));
        assert!(ts(1, 100, 1022) < ts(1, 100, 1023));
        assert_eq!(ts(1, 100, 1023), ts(1, 100, 50_000), "seq beyond the slots is clamped");
        assert!(ts(1, 100, u32::MAX) < ts(1, 101, 0));
        assert!(ts(1, (1 << 40) - 1, 5) < ts(2, 4, 0));
        assert!(ts(2047, (1 << 40) - 1, 1023) < ts(2048, 0, 0), "the coarse range starts above the fine one");
        assert!(ts(2048, 0, 0) < ts(2048, 1, 0));
        assert!(ts(999_999, 1 << 39, 0) > 0);
        assert!(write_timestamp(&Position::new("binlog.9999999", 0), 0).is_err());
        assert!(write_timestamp(&Position::new("binlog.2099199", (1 << 40) - 1), 0).is_ok());
    }

    #[test]
    fn gtid_positions_give_the_same_timestamps_on_every_server_and_increase() {
        // The same commit read from the primary and from the promoted replica.
        assert_eq!(gts("primary.000040", "0-1-41", None, 3), gts("replica.000002", "0-1-41", None, 3));
        // Commit before < the transaction's parts < its commit; seq counts through the whole transaction.
        let before = gts("b.1", "0-1-41", None, 1_000_000);
        let first_part = gts("b.1", "0-1-41", Some(20_000), 0);
        let second_part = gts("b.1", "0-1-41", Some(40_000), 39_999);
        let commit = gts("b.1", "0-1-42", None, 40_000);
        assert!(before < first_part && first_part < second_part && second_part < commit);
        // Above every file-and-offset timestamp: a MariaDB position before the first GTID comes first.
        assert!(ts(2_099_199, (1 << 40) - 1, 0) < gts("b.1", "0-1-1", None, 0));
        // Several domains: the sum grows with every commit in any of them.
        assert!(gts("b.1", "0-1-10,1-2-5", None, 9) < gts("b.1", "0-1-10,1-2-6", None, 0));
        let far = Position { file: "b.1".into(), offset: 4, gtid: Some(format!("0-1-{}", 1u64 << 38)), part: None };
        assert!(write_timestamp(&far, 0).is_err());
    }
}
