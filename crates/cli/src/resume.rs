//! Where a restarted snapshot picks up, from the checkpoints the sinks hold.
//!
//! Sinks apply batches independently, so after a crash they can be at different points of the same
//! snapshot — or one may hold nothing yet. Resuming from any single sink's progress would skip, for a
//! sink that is behind, the chunks it never applied. So the copy resumes from what *every* sink has:
//! tables done in all of them, and the current table's last key only when all agree on it (otherwise
//! that table is copied again from its start: chunks are idempotent full-row images, and comparing keys
//! here could disagree with the server's collation). A sink with no checkpoint at all means a copy
//! from the beginning. The position stays the earliest snapshot position held, so streaming from it
//! replays every change made since any row was copied.

use polyrepl_core::{Checkpoint, SnapshotProgress};

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
        // A sink whose snapshot is complete holds every table; it does not limit the others.
        let done = first.done.iter().filter(|t| in_progress.iter().all(|(_, p)| p.done.contains(t))).cloned().collect();
        let current = first.current.clone().filter(|c| in_progress.iter().all(|(_, p)| p.current.as_ref() == Some(c)));
        SnapshotProgress { done, current }
    };
    Some(Checkpoint { position, snapshot: Some(progress) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Position, TableId, Value};

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
        let streaming = Some(Checkpoint::streaming(Position::new("binlog.000002", 4)));
        let p = snapshot_resume_point(&[streaming.clone(), at(100, &["a"], Some(("b", 1)))]).unwrap();
        assert_eq!(p.snapshot.unwrap().current.map(|c| c.1), Some(vec![Value::Int(1)]));
        assert_eq!(snapshot_resume_point(&[streaming, None]), None);
    }
}
