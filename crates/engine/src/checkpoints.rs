//! Every rule about checkpoints, in one place: where a run starts, what a sink already holds.
//!
//! A sink's [`Checkpoint`] is stored in the sink with its data. While a snapshot runs it says "snapshot
//! at position P, these tables done, this table up to this key"; once the snapshot is complete it says
//! "every change up to position P".
//!
//! Rules (each has a unit test below):
//! 1. **Nothing copied yet.** A sink without a checkpoint needs a snapshot; so does a sink whose
//!    checkpoint is a snapshot in progress. While no sink streams, that is the initial snapshot
//!    ([`StartPlan::needs_snapshot`]); once one does, online copies (rule 6).
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
//! 6. **Online copies.** Once any sink streams, nothing stops it again: a sink with nothing (a new sink,
//!    or one whose checkpoint was lost) and a sink in the middle of the initial snapshot get every table
//!    copied online, while every sink keeps streaming ([`StartPlan::copies`]). So do tables the
//!    selection newly matches, and copies in progress continue after the last key every sink holds
//!    (from the first row where sinks disagree). Online chunks are full row images at their own
//!    position, in stream order, so every sink can take them; a chunk at exactly a sink's position
//!    carries copy progress the sink may not hold, so it is skipped only when the progress is the
//!    same (rule 3).

use polyrepl_core::{Checkpoint, Position, SnapshotProgress, TableCopy, TableFilter, TableId, Value};

/// True when a sink that holds `held` already has the effect of a batch whose checkpoint is `batch`.
pub fn already_applied(batch: &Checkpoint, held: &Option<Checkpoint>) -> bool {
    match (held, &batch.snapshot) {
        (None, _) => false,
        // A sink whose snapshot is complete holds every snapshot chunk…
        (Some(h), Some(_)) => h.snapshot.is_none(),
        // …and every streamed transaction up to its position (at its position: the same copy progress).
        (Some(h), None) => {
            h.snapshot.is_none()
                && (batch.position < h.position || (batch.position == h.position && batch.copies == h.copies))
        }
    }
}

/// The online copies a run starts with, given each sink's checkpoint, the selected tables (in order)
/// (rule 6). Empty when no sink streams yet (the initial snapshot copies everything).
pub fn online_copies(checkpoints: &[Option<Checkpoint>], tables: &[TableId]) -> Vec<TableCopy> {
    let streaming: Vec<&Checkpoint> = checkpoints.iter().flatten().filter(|c| c.snapshot.is_none()).collect();
    if streaming.is_empty() {
        return vec![];
    }
    let anyone_needs_all = checkpoints.iter().any(|c| c.as_ref().is_none_or(|c| c.snapshot.is_some()));
    // The selections the sinks' tables were copied under (checkpoints of older versions record none).
    let earlier_selections: Vec<TableFilter> =
        streaming.iter().filter_map(|c| TableFilter::from_spec(c.selection.as_deref()?).ok()).collect();
    tables
        .iter()
        .filter_map(|table| {
            // Each streaming sink's progress in a copy of `table`, `None` where it copies none.
            let progress: Vec<Option<&Option<Vec<Value>>>> = streaming
                .iter()
                .map(|c| c.copies.iter().find(|copy| &copy.table == table).map(|copy| &copy.after))
                .collect();
            let in_progress = progress.iter().any(Option::is_some);
            let newly_selected = earlier_selections.iter().any(|old| !old.matches(table));
            if !(anyone_needs_all || in_progress || newly_selected) {
                return None;
            }
            // Resume after the last key only when every sink holding part of the copy agrees and no sink
            // needs the whole table (keys are compared for equality: the server's collation orders them).
            let whole_table_somewhere = anyone_needs_all || progress.iter().any(Option::is_none);
            let mut keys = progress.iter().flatten();
            let first = keys.next().cloned().cloned().flatten();
            let agree = keys.all(|k| k.as_ref() == first.as_ref());
            let after = if whole_table_somewhere || !agree { None } else { first };
            Some(TableCopy { table: table.clone(), after })
        })
        .collect()
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
    Some(Checkpoint::snapshotting(position, progress))
}

/// The checkpoint of a snapshot at `position` once every table is copied: the hand-over to streaming.
pub fn snapshot_complete(position: &Position, selection: &TableFilter) -> Checkpoint {
    Checkpoint { selection: Some(selection.spec()), ..Checkpoint::streaming(position.clone()) }
}

/// The checkpoint of a re-snapshot that has copied nothing yet (its sweep runs under it).
pub fn nothing_copied(position: &Position) -> Checkpoint {
    Checkpoint::snapshotting(position.clone(), SnapshotProgress { done: vec![], current: None })
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
    /// The smallest position a sink needs streamed ([`streams_from`]): where streaming starts, unless a
    /// snapshot's position is earlier (see [`StartPlan::stream_from`]).
    pub smallest_streaming: Option<Position>,
    /// The earliest point a streaming sink must read from again ([`Checkpoint::read_from`]): before
    /// `smallest_streaming` while some sink holds part of a large transaction, or an XA transaction is
    /// prepared but not committed.
    pub smallest_read_from: Option<Position>,
    /// The online copies streaming starts with (rule 6).
    pub copies: Vec<TableCopy>,
}

/// The checkpoints streaming must start early enough for: the streaming ones, and — once some sink
/// streams, so that the others get online copies (rule 6) — those of snapshots in progress. Such a sink
/// holds rows as of its snapshot's position; a copy only writes rows that still exist, so a row deleted
/// since then leaves it only by the stream's delete.
fn streams_from(checkpoints: &[Option<Checkpoint>], anyone_streams: bool) -> impl Iterator<Item = &Checkpoint> {
    checkpoints.iter().flatten().filter(move |c| c.snapshot.is_none() || anyone_streams)
}

impl StartPlan {
    /// The plan for sinks holding `checkpoints` (`None`: a sink with no checkpoint, or one told to
    /// copy everything again).
    pub fn from_checkpoints(checkpoints: &[Option<Checkpoint>]) -> StartPlan {
        let anyone_streams = checkpoints.iter().flatten().any(|c| c.snapshot.is_none());
        StartPlan {
            // Once a sink streams, sinks that need tables get them by online copies (rule 6).
            needs_snapshot: !anyone_streams
                && checkpoints.iter().any(|c| c.as_ref().is_none_or(|c| c.snapshot.is_some())),
            resume_snapshot: snapshot_resume_point(checkpoints),
            sweep_again: checkpoints.iter().flatten().any(|c| c.snapshot.as_ref().is_some_and(is_nothing_copied)),
            smallest_streaming: streams_from(checkpoints, anyone_streams).map(|c| c.position.clone()).min(),
            smallest_read_from: streams_from(checkpoints, anyone_streams).map(|c| c.read_from().clone()).min(),
            copies: vec![],
        }
    }

    /// This plan with the online copies the selected `tables` need (rule 6).
    pub fn with_online_copies(self, checkpoints: &[Option<Checkpoint>], tables: &[TableId]) -> StartPlan {
        StartPlan { copies: online_copies(checkpoints, tables), ..self }
    }

    /// Where streaming starts once the snapshot (if any) is done at `snapshot_position`: the smaller of
    /// that and the smallest streaming checkpoint. `None` only when there is neither.
    pub fn stream_from(&self, snapshot_position: Option<&Position>) -> Option<Position> {
        match (self.smallest_streaming.as_ref(), snapshot_position) {
            (Some(a), Some(b)) => Some(a.min(b).clone()),
            (a, b) => a.or(b).cloned(),
        }
    }

    /// Where reading the binlog starts: [`StartPlan::stream_from`], or earlier where a sink must read a
    /// transaction again from its start (its changes up to `stream_from` are skipped as held).
    pub fn read_from(&self, snapshot_position: Option<&Position>) -> Option<Position> {
        let from = self.stream_from(snapshot_position)?;
        Some(self.smallest_read_from.as_ref().map_or(from.clone(), |r| r.min(&from).clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{TableId, Value};

    fn at(offset: u64, done: &[&str], current: Option<(&str, i64)>) -> Option<Checkpoint> {
        let id = |t: &str| TableId::new("db", t);
        Some(Checkpoint::snapshotting(
            Position::new("binlog.000001", offset),
            SnapshotProgress {
                done: done.iter().map(|t| id(t)).collect(),
                current: current.map(|(t, k)| (id(t), vec![Value::Int(k)])),
            },
        ))
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
        assert!(StartPlan::from_checkpoints(&[None, None]).needs_snapshot);
        assert!(StartPlan::from_checkpoints(&[None, at(4, &[], Some(("t", 1)))]).needs_snapshot);
        assert!(!StartPlan::from_checkpoints(&[streaming("b.000001", 9), streaming("b.000002", 4)]).needs_snapshot);
        // Once a sink streams, the others get online copies instead (rule 6).
        assert!(!StartPlan::from_checkpoints(&[streaming("b.000001", 9), None]).needs_snapshot);
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
    fn reading_starts_at_a_held_transaction_start_and_skips_what_every_sink_holds() {
        let held = Some(Checkpoint {
            resume: Some(Position::new("b.000002", 300)),
            ..Checkpoint::streaming(Position::new("b.000002", 900))
        });
        let plan = StartPlan::from_checkpoints(&[held.clone(), streaming("b.000002", 700)]);
        assert_eq!(plan.stream_from(None), Some(Position::new("b.000002", 700)), "held by every sink up to here");
        assert_eq!(plan.read_from(None), Some(Position::new("b.000002", 300)), "read again from the held start");
        assert_eq!(plan.read_from(Some(&Position::new("b.000001", 4))), Some(Position::new("b.000001", 4)));
        // A resume point at or after the position means nothing.
        let late = Checkpoint {
            resume: Some(Position::new("b.000003", 4)),
            ..Checkpoint::streaming(Position::new("b.000002", 9))
        };
        assert_eq!(late.read_from(), &Position::new("b.000002", 9));
        // The parts before the held position are skipped; later ones are applied.
        assert!(already_applied(&Checkpoint::streaming(Position::new("b.000002", 800)), &held));
        assert!(!already_applied(&Checkpoint::streaming(Position::new("b.000002", 901)), &held));
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
        let done = snapshot_complete(&p, &TableFilter::new(&["db.*".into()], &[]).unwrap());
        assert_eq!(done.selection.as_deref(), Some("db.*;"));
        assert_eq!(done.snapshot, None);
        assert_eq!(done.position, p);
        // A sink that stored the hand-over skips every chunk of that snapshot, but no later transaction.
        assert!(already_applied(&cp("b.000003", 77, true), &Some(done.clone())));
        assert!(!already_applied(&cp("b.000003", 78, false), &Some(done.clone())));
        assert!(
            already_applied(&Checkpoint { selection: None, ..done.clone() }, &Some(done)),
            "selection is no progress"
        );
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

    // Rule 6
    fn copying(file: &str, off: u64, copies: &[(&str, Option<i64>)], selection: Option<&str>) -> Option<Checkpoint> {
        Some(Checkpoint {
            copies: copies
                .iter()
                .map(|(t, k)| TableCopy { table: TableId::new("db", *t), after: k.map(|k| vec![Value::Int(k)]) })
                .collect(),
            selection: selection.map(str::to_string),
            ..Checkpoint::streaming(Position::new(file, off))
        })
    }

    fn ids(names: &[&str]) -> Vec<TableId> {
        names.iter().map(|t| TableId::new("db", *t)).collect()
    }

    fn plan(checkpoints: &[Option<Checkpoint>], tables: &[&str]) -> Vec<(String, Option<i64>)> {
        let plan = StartPlan::from_checkpoints(checkpoints).with_online_copies(checkpoints, &ids(tables));
        plan.copies
            .into_iter()
            .map(|c| {
                let key = c.after.map(|k| match k[0] {
                    Value::Int(i) => i,
                    _ => unreachable!(),
                });
                (c.table.table, key)
            })
            .collect()
    }

    #[test]
    fn a_sink_joining_streaming_sinks_gets_every_table_online_and_nobody_stops_streaming() {
        let cps = [streaming("b.000002", 4), None];
        let p = StartPlan::from_checkpoints(&cps);
        assert!(!p.needs_snapshot, "no initial snapshot once a sink streams");
        assert_eq!(plan(&cps, &["a", "b"]), vec![("a".into(), None), ("b".into(), None)]);
        // A sink in the middle of the initial snapshot joins the same way…
        let cps = [streaming("b.000002", 4), at(100, &["a"], Some(("b", 5)))];
        assert!(!StartPlan::from_checkpoints(&cps).needs_snapshot);
        assert_eq!(plan(&cps, &["a", "b"]), vec![("a".into(), None), ("b".into(), None)]);
        // …and streaming starts at its snapshot's position: the rows it holds are as of then, and the
        // copy cannot delete one deleted since.
        assert_eq!(StartPlan::from_checkpoints(&cps).stream_from(None), Some(Position::new("binlog.000001", 100)));
        assert_eq!(StartPlan::from_checkpoints(&cps).read_from(None), Some(Position::new("binlog.000001", 100)));
        // Nobody streams yet: the initial snapshot copies, no online copy.
        assert_eq!(plan(&[None, at(100, &["a"], None)], &["a"]), vec![]);
        assert!(StartPlan::from_checkpoints(&[None]).needs_snapshot);
    }

    #[test]
    fn copies_resume_after_the_key_every_sink_holds() {
        let agree =
            [copying("b.000002", 9, &[("a", Some(50))], None), copying("b.000002", 4, &[("a", Some(50))], None)];
        assert_eq!(plan(&agree, &["a", "b"]), vec![("a".into(), Some(50))]);
        let disagree =
            [copying("b.000002", 9, &[("a", Some(60))], None), copying("b.000002", 4, &[("a", Some(50))], None)];
        assert_eq!(plan(&disagree, &["a", "b"]), vec![("a".into(), None)]);
        // A sink that holds the table completely does not limit the others.
        let one = [copying("b.000002", 9, &[("a", Some(60))], None), streaming("b.000002", 20)];
        assert_eq!(plan(&one, &["a"]), vec![("a".into(), None)], "the finished sink's copy ended: from the start");
        // A copy of a table no longer selected (or gone) is dropped.
        assert_eq!(plan(&[copying("b.000002", 9, &[("gone", Some(1))], None)], &["a"]), vec![]);
    }

    #[test]
    fn tables_the_selection_newly_matches_are_copied() {
        let cps = [copying("b.000002", 9, &[], Some("db.a;")), copying("b.000002", 9, &[], Some("db.*;db.c"))];
        assert_eq!(plan(&cps, &["a", "b", "c"]), vec![("b".into(), None), ("c".into(), None)]);
        // Checkpoints from before the selection was recorded: nothing is assumed new.
        assert_eq!(plan(&[streaming("b.000002", 9)], &["a", "b"]), vec![]);
    }

    #[test]
    fn a_chunk_at_a_sinks_position_is_skipped_only_with_the_same_progress() {
        let held = copying("b.000002", 500, &[("a", Some(10))], None);
        let same = copying("b.000002", 500, &[("a", Some(10))], None).unwrap();
        let further = copying("b.000002", 500, &[("a", Some(20))], None).unwrap();
        let done = copying("b.000002", 500, &[], None).unwrap();
        assert!(already_applied(&same, &held));
        assert!(!already_applied(&further, &held));
        assert!(!already_applied(&done, &held));
        assert!(already_applied(&copying("b.000002", 499, &[("a", Some(20))], None).unwrap(), &held));
    }
}
