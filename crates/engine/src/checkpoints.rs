//! Every rule about checkpoints, in one place: where a run starts, what a sink already holds.
//!
//! A sink's [`Checkpoint`] is stored in the sink with its data. While a snapshot runs it says "snapshot
//! at position P, these tables done, this table up to this key"; once the snapshot is complete it says
//! "every change up to position P".
//!
//! Rules (each has a unit test below):
//! 1. **Nothing copied yet.** A sink without a checkpoint needs a snapshot; so does a sink whose
//!    checkpoint is a snapshot in progress ([`StartPlan::needs_snapshot`]).
//! 2. **Resume point across sinks.** Streaming starts at the smallest position any sink needs: the
//!    smallest streaming checkpoint, or the snapshot's position where one runs ([`StartPlan`]). A
//!    restarted snapshot continues after what *every* sink holds ([`snapshot_resume_point`]): tables done
//!    in all of them, the current table's last key only when all agree; a sink with nothing means a copy
//!    from the beginning. The position stays the earliest snapshot position held, so streaming from it
//!    replays every change made since any row was copied.
//! 3. **Already applied.** A sink skips a batch it holds: every snapshot chunk once its snapshot is
//!    complete, and every streamed transaction at or before its streaming position
//!    ([`already_applied`]). Nothing else is skipped: a sink in the middle of a snapshot applies every
//!    chunk it is sent (chunks are idempotent full-row images).
//! 4. **The snapshot hand-over.** Snapshot chunks carry the snapshot's position and progress; once every
//!    table is copied, one empty batch carries [`Checkpoint::streaming`] at that position, after which
//!    the sink streams from it ([`snapshot_complete`]).
//! 5. **A re-snapshot's sweep** runs at the new snapshot's position with the checkpoint
//!    [`nothing_copied`]; a run that finds such a checkpoint sweeps again before copying
//!    ([`StartPlan::sweep_again`]), since the sweep may have been cut short.

use polyrepl_core::{Checkpoint, Position, SnapshotProgress};

/// True when a sink that holds `held` already has the effect of a batch whose checkpoint is `batch`.
pub fn already_applied(batch: &Checkpoint, held: &Option<Checkpoint>) -> bool {
    match (held, &batch.snapshot) {
        (None, _) => false,
        // A sink whose snapshot is complete holds every snapshot chunk…
        (Some(h), Some(_)) => h.snapshot.is_none(),
        // …and every streamed transaction up to its position.
        (Some(h), None) => h.snapshot.is_none() && batch.position <= h.position,
    }
}

/// The snapshot to resume, given each sink's checkpoint; `None` when no sink has one in progress
/// (a new snapshot starts at a new position).
pub fn snapshot_resume_point(checkpoints: &[Option<Checkpoint>]) -> Option<Checkpoint> {
    let in_progress: Vec<(&Checkpoint, &SnapshotProgress)> =
        checkpoints.iter().flatten().filter_map(|c| c.snapshot.as_ref().map(|p| (c, p))).collect();
    let position = in_progress.iter().map(|(c, _)| c.position.clone()).min()?;
    let anyone_empty = checkpoints.iter().any(Option::is_none);
    let progress = if anyone_empty {
        SnapshotProgress { done: vec![], current: None }
    } else {
        let first = in_progress[0].1;
        // A sink whose snapshot is complete holds every table; it does not limit the others. Keys are
        // compared for equality only: ordering them here could disagree with the server's collation.
        let done = first.done.iter().filter(|t| in_progress.iter().all(|(_, p)| p.done.contains(t))).cloned().collect();
        let current = first.current.clone().filter(|c| in_progress.iter().all(|(_, p)| p.current.as_ref() == Some(c)));
        SnapshotProgress { done, current }
    };
    Some(Checkpoint { position, snapshot: Some(progress) })
}

/// The checkpoint of a snapshot at `position` once every table is copied: the hand-over to streaming.
pub fn snapshot_complete(position: &Position) -> Checkpoint {
    Checkpoint::streaming(position.clone())
}

/// The checkpoint of a re-snapshot that has copied nothing yet (its sweep runs under it).
pub fn nothing_copied(position: &Position) -> Checkpoint {
    Checkpoint { position: position.clone(), snapshot: Some(SnapshotProgress { done: vec![], current: None }) }
}

/// True when `progress` is the state [`nothing_copied`] stores: a sweep may have been cut short.
pub fn is_nothing_copied(progress: &SnapshotProgress) -> bool {
    progress.done.is_empty() && progress.current.is_none()
}

/// How a run starts, decided from the checkpoints the sinks hold when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartPlan {
    /// Some sink has no checkpoint, or a snapshot in progress: a snapshot runs first.
    pub needs_snapshot: bool,
    /// The snapshot to continue (its position and what every sink holds of it), if one was in progress.
    pub resume_snapshot: Option<Checkpoint>,
    /// A re-snapshot's sweep may have been cut short: sweep again before copying.
    pub sweep_again: bool,
    /// The smallest streaming checkpoint: where streaming starts, unless a snapshot's position is
    /// earlier (see [`StartPlan::stream_from`]).
    pub smallest_streaming: Option<Position>,
}

impl StartPlan {
    /// The plan for sinks holding `checkpoints` (`None`: a sink with no checkpoint, or one told to
    /// copy everything again).
    pub fn from_checkpoints(checkpoints: &[Option<Checkpoint>]) -> StartPlan {
        StartPlan {
            needs_snapshot: checkpoints.iter().any(|c| c.as_ref().is_none_or(|c| c.snapshot.is_some())),
            resume_snapshot: snapshot_resume_point(checkpoints),
            sweep_again: checkpoints.iter().flatten().any(|c| c.snapshot.as_ref().is_some_and(is_nothing_copied)),
            smallest_streaming: checkpoints
                .iter()
                .flatten()
                .filter(|c| c.snapshot.is_none())
                .map(|c| c.position.clone())
                .min(),
        }
    }

    /// Where streaming starts once the snapshot (if any) is done at `snapshot_position`: the smaller of
    /// that and the smallest streaming checkpoint. `None` only when there is neither.
    pub fn stream_from(&self, snapshot_position: Option<&Position>) -> Option<Position> {
        match (self.smallest_streaming.as_ref(), snapshot_position) {
            (Some(a), Some(b)) => Some(a.min(b).clone()),
            (a, b) => a.or(b).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{TableId, Value};

    fn at(offset: u64, done: &[&str], current: Option<(&str, i64)>) -> Option<Checkpoint> {
        let id = |t: &str| TableId::new("db", t);
        Some(Checkpoint {
            position: Position::new("binlog.000001", offset),
            snapshot: Some(SnapshotProgress {
                done: done.iter().map(|t| id(t)).collect(),
                current: current.map(|(t, k)| (id(t), vec![Value::Int(k)])),
            }),
        })
    }

    fn streaming(file: &str, offset: u64) -> Option<Checkpoint> {
        Some(Checkpoint::streaming(Position::new(file, offset)))
    }

    /// A streaming checkpoint, or one of a snapshot that has copied nothing yet, at `file:off`.
    fn cp(file: &str, off: u64, snap: bool) -> Checkpoint {
        let position = Position::new(file, off);
        if snap {
            nothing_copied(&position)
        } else {
            Checkpoint::streaming(position)
        }
    }

    // Rule 1
    #[test]
    fn a_sink_with_nothing_or_a_snapshot_in_progress_needs_a_snapshot() {
        assert!(StartPlan::from_checkpoints(&[streaming("b.000001", 9), None]).needs_snapshot);
        assert!(StartPlan::from_checkpoints(&[streaming("b.000001", 9), at(4, &[], Some(("t", 1)))]).needs_snapshot);
        assert!(!StartPlan::from_checkpoints(&[streaming("b.000001", 9), streaming("b.000002", 4)]).needs_snapshot);
    }

    // Rule 2
    #[test]
    fn streaming_starts_at_the_smallest_position_any_sink_needs() {
        let plan = StartPlan::from_checkpoints(&[streaming("b.000002", 4), streaming("b.000001", 900), None]);
        assert_eq!(plan.smallest_streaming, Some(Position::new("b.000001", 900)));
        // A snapshot at an earlier position starts streaming there; a later one does not.
        assert_eq!(plan.stream_from(Some(&Position::new("b.000001", 100))), Some(Position::new("b.000001", 100)));
        assert_eq!(plan.stream_from(Some(&Position::new("b.000003", 4))), Some(Position::new("b.000001", 900)));
        let fresh = StartPlan::from_checkpoints(&[None]);
        assert_eq!(fresh.stream_from(None), None);
        assert_eq!(fresh.stream_from(Some(&Position::new("b.000003", 4))), Some(Position::new("b.000003", 4)));
    }

    #[test]
    fn agreeing_sinks_resume_after_their_last_key() {
        let p = snapshot_resume_point(&[at(100, &["a"], Some(("b", 50))), at(100, &["a"], Some(("b", 50)))]).unwrap();
        assert_eq!(p.snapshot.unwrap(), at(100, &["a"], Some(("b", 50))).unwrap().snapshot.unwrap());
    }

    #[test]
    fn a_sink_behind_limits_the_resume_point() {
        let p =
            snapshot_resume_point(&[at(100, &["a", "b"], Some(("c", 9))), at(100, &["a"], Some(("b", 50)))]).unwrap();
        let s = p.snapshot.unwrap();
        assert_eq!(s.done, vec![TableId::new("db", "a")]);
        assert_eq!(s.current, None, "disagreeing sinks copy the current table again from its start");
    }

    #[test]
    fn a_sink_without_checkpoint_means_from_the_beginning_at_the_earliest_position() {
        let p = snapshot_resume_point(&[at(300, &["a"], None), None, at(200, &["a"], None)]).unwrap();
        assert_eq!(p.position.offset, 200);
        assert_eq!(p.snapshot.unwrap(), SnapshotProgress { done: vec![], current: None });
    }

    #[test]
    fn complete_sinks_do_not_hold_back_and_nothing_in_progress_means_none() {
        let p = snapshot_resume_point(&[streaming("binlog.000002", 4), at(100, &["a"], Some(("b", 1)))]).unwrap();
        assert_eq!(p.snapshot.unwrap().current.map(|c| c.1), Some(vec![Value::Int(1)]));
        assert_eq!(snapshot_resume_point(&[streaming("binlog.000002", 4), None]), None);
    }

    // Rule 3
    #[test]
    fn a_sink_skips_exactly_what_it_holds() {
        let held = Some(cp("b.000002", 500, false));
        assert!(already_applied(&cp("b.000002", 500, false), &held));
        assert!(already_applied(&cp("b.000001", 900, false), &held));
        assert!(!already_applied(&cp("b.000002", 501, false), &held));
        assert!(already_applied(&cp("b.000001", 4, true), &held), "snapshot chunks are held once the snapshot is done");
        let mid_snapshot = Some(cp("b.000001", 4, true));
        assert!(!already_applied(&cp("b.000001", 4, true), &mid_snapshot));
        assert!(!already_applied(&cp("b.000001", 4, false), &mid_snapshot));
        assert!(!already_applied(&cp("b.000001", 4, false), &None));
    }

    // Rule 4
    #[test]
    fn the_hand_over_is_a_streaming_checkpoint_at_the_snapshot_position() {
        let p = Position::new("b.000003", 77);
        let done = snapshot_complete(&p);
        assert_eq!(done.snapshot, None);
        assert_eq!(done.position, p);
        // A sink that stored the hand-over skips every chunk of that snapshot, but no later transaction.
        assert!(already_applied(&cp("b.000003", 77, true), &Some(done.clone())));
        assert!(!already_applied(&cp("b.000003", 78, false), &Some(done)));
    }

    // Rule 5
    #[test]
    fn a_checkpoint_that_copied_nothing_means_sweep_again() {
        let p = Position::new("b.000004", 4);
        let swept = nothing_copied(&p);
        assert!(is_nothing_copied(swept.snapshot.as_ref().unwrap()));
        assert!(StartPlan::from_checkpoints(&[Some(swept), streaming("b.000001", 4)]).sweep_again);
        assert!(!StartPlan::from_checkpoints(&[at(4, &["a"], None)]).sweep_again);
        assert!(!StartPlan::from_checkpoints(&[None]).sweep_again);
    }
}
