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
//! The number: `ordinal * 1024 + min(seq, 1023)` while `ordinal < 2^52` (binlog file sequence < 4096),
//! beyond that `2^62 + (ordinal − 2^52)`: still strictly increasing in the position (seq no longer breaks
//! ties, which is harmless because changes to one key inside one transaction are collapsed to the last
//! before writing, and the parts of a large transaction each have their own, increasing position), and below `i64::MAX` up to binlog file
//! sequence 4 198 399. Positions from a different binlog history (another server, `RESET MASTER`) are
//! not comparable: drop the keyspaces before replicating from such a source.

use polyrepl_core::Position;

/// Changes per transaction that get distinct timestamps.
pub const SEQ_SLOTS: u64 = 1024;
/// Ordinals below this use `ordinal * SEQ_SLOTS + seq`.
const FINE_LIMIT: u64 = 1 << 52;
/// First timestamp of the coarse range, above every fine timestamp.
const COARSE_BASE: u64 = 1 << 62;

/// The `USING TIMESTAMP` of a change at `position` with index `seq` in its transaction.
pub fn write_timestamp(position: &Position, seq: u32) -> Result<i64, String> {
    let ordinal = position.ordinal();
    let t = if ordinal < FINE_LIMIT {
        ordinal * SEQ_SLOTS + u64::from(seq).min(SEQ_SLOTS - 1)
    } else {
        COARSE_BASE.checked_add(ordinal - FINE_LIMIT).filter(|&t| t <= i64::MAX as u64).ok_or_else(|| {
            format!("binlog position {position} is too far into the binlog history for a Cassandra write timestamp")
        })?
    };
    Ok(t as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(file: u64, offset: u64, seq: u32) -> i64 {
        write_timestamp(&Position::new(format!("binlog.{file:06}"), offset), seq).unwrap()
    }

    #[test]
    fn strictly_increasing_in_position_then_seq() {
        assert!(ts(1, 100, 0) < ts(1, 100, 1));
        assert!(ts(1, 100, 1022) < ts(1, 100, 1023));
        assert_eq!(ts(1, 100, 1023), ts(1, 100, 50_000), "seq beyond the slots is clamped");
        assert!(ts(1, 100, u32::MAX) < ts(1, 101, 0));
        assert!(ts(1, (1 << 40) - 1, 5) < ts(2, 4, 0));
        assert!(ts(4095, (1 << 40) - 1, 1023) < ts(4096, 0, 0), "the coarse range starts above the fine one");
        assert!(ts(4096, 0, 0) < ts(4096, 1, 0));
        assert!(ts(999_999, 1 << 39, 0) > 0);
        assert!(write_timestamp(&Position::new("binlog.9999999", 0), 0).is_err());
        assert!(write_timestamp(&Position::new("binlog.4198399", (1 << 40) - 1), 0).is_ok());
    }
}
