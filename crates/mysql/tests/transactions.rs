//! Transactions as the server means them: savepoints rolled back exactly, XA transactions applied at
//! their commit and dropped at their rollback (across a resume), large transactions emitted in parts
//! with their start held; a snapshot that waits while an XA transaction is prepared.
mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::Conn;
use polyrepl_core::{Op, Position, Value};
use polyrepl_mysql::{current_position, discover_tables, BinlogOptions, BinlogReader, SourceEvent};
use std::sync::Arc;

/// Every event of table `t` to the end of the binlog, with the reader's hold after each, decoded with
/// parts of `part_changes`.
async fn read_t_with_holds(from: &Position, db: &TestDb, part_changes: usize) -> Vec<(SourceEvent, Option<Position>)> {
    let mut options = BinlogOptions::new(server_id());
    options.part_changes = part_changes;
    read_with_holds(from, db.filter("t"), options).await
}

/// Held by every test of this file: each reads the binlog, and a reader that starts
/// between another test's XA PREPARE and its XA COMMIT stops (its rows are unknown), by design.
static XA_WINDOW: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn second_connection(db: &TestDb) -> Conn {
    let mut conn = Conn::new(url().opts(false)).await.unwrap();
    conn.query_drop(format!("USE `{}`", db.name)).await.unwrap();
    conn
}

#[tokio::test]
async fn rolled_back_savepoints_leave_nothing_and_the_rest_commits() {
    let _alone = XA_WINDOW.lock().await;
    let mut db = TestDb::create("savepoint").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB").await;
    // A non-transactional table in the transaction makes the server log the savepoints and the
    // rolled-back rows.
    db.exec("CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM").await;
    let from = current_position(&url()).await.unwrap();
    for sql in [
        "BEGIN",
        "INSERT INTO t VALUES (1, 1)",
        "SAVEPOINT a",
        "INSERT INTO t VALUES (2, 2)",
        "INSERT INTO m VALUES (1)",
        "SAVEPOINT b",
        "UPDATE t SET v = 20 WHERE id = 2",
        "ROLLBACK TO SAVEPOINT a", // drops 2 and b
        "INSERT INTO t VALUES (3, 3)",
        "SAVEPOINT `we``ird`",
        "DELETE FROM t WHERE id = 1",
        "INSERT INTO m VALUES (2)",
        "ROLLBACK TO `we``ird`",
        "UPDATE t SET v = 30 WHERE id = 3",
        "COMMIT",
    ] {
        db.exec(sql).await;
    }
    let events = read_to_end(&from, db.filter("t")).await;
    let txs = transactions(&events);
    assert_eq!(txs.len(), 1, "{events:?}");
    assert_eq!(op_keys(&txs[0].1), vec![(Op::Insert, 1), (Op::Insert, 3), (Op::Update, 3)]);
    let v = &txs[0].1[2].after.as_ref().unwrap()[1];
    assert_eq!(*v, Value::Int(30));
    db.drop_db().await;
}

#[tokio::test]
async fn xa_transactions_apply_at_their_commit_and_vanish_at_their_rollback() {
    let _alone = XA_WINDOW.lock().await;
    let mut db = TestDb::create("xa").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    let from = current_position(&url()).await.unwrap();
    let tag = random_u32();
    let (x1, x2) = (format!("'c{tag}'"), format!("'r{tag}'"));
    for sql in [
        format!("XA START {x1}"),
        "INSERT INTO t VALUES (1, 1)".to_string(),
        "INSERT INTO t VALUES (2, 2)".to_string(),
        format!("XA END {x1}"),
        format!("XA PREPARE {x1}"),
    ] {
        db.exec(&sql).await;
    }
    // Committed while x1 is prepared: it comes first.
    let mut other = second_connection(&db).await;
    other.query_drop("INSERT INTO t VALUES (10, 10)").await.unwrap();
    let after_prepare = current_position(&url()).await.unwrap();
    for sql in [
        format!("XA COMMIT {x1}"),
        format!("XA START {x2}"),
        "INSERT INTO t VALUES (3, 3)".to_string(),
        format!("XA END {x2}"),
        format!("XA PREPARE {x2}"),
        format!("XA ROLLBACK {x2}"),
        "XA START 'one'".to_string(),
        "INSERT INTO t VALUES (4, 4)".to_string(),
        "XA END 'one'".to_string(),
        "XA COMMIT 'one' ONE PHASE".to_string(),
    ] {
        db.exec(&sql).await;
    }
    let events = read_t_with_holds(&from, &db, 1000).await;
    let txs = committed_op_keys(&events);
    assert_eq!(txs, vec![vec![(Op::Insert, 10)], vec![(Op::Insert, 1), (Op::Insert, 2)], vec![(Op::Insert, 4)]]);
    // While x1 was prepared, the reader held its start; once it committed, nothing.
    let ten = events
        .iter()
        .position(
            |(e, _)| matches!(e, SourceEvent::Transaction { changes, .. } if op_keys(changes) == [(Op::Insert, 10)]),
        )
        .unwrap();
    let held = events[ten].1.clone().expect("x1's start held while it is prepared");
    assert!(held < *events[ten].0.position() && held >= from, "hold {held} from {from}");
    assert!(events.last().unwrap().1.is_none(), "nothing held at the end: {:?}", events.last());

    // Reading from the hold gives x1 again, at its commit; reading from after its prepare cannot know
    // x1's rows: a loud error, not a silent loss.
    let again = transactions(&read_to_end(&held, db.filter("t")).await);
    assert!(again.iter().any(|(_, c)| op_keys(c) == [(Op::Insert, 1), (Op::Insert, 2)]), "{again:?}");
    let mut reader =
        BinlogReader::start(&url(), &after_prepare, db.filter("t"), BinlogOptions::new(server_id()).stop_at_end())
            .await
            .unwrap();
    let err = loop {
        match reader.next_event().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the XA COMMIT of an unknown transaction must be an error"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("XA COMMIT") && err.contains("--resnapshot"), "{err}");
    db.drop_db().await;
}

#[tokio::test]
async fn a_large_transaction_comes_in_parts_with_its_start_held() {
    let _alone = XA_WINDOW.lock().await;
    let mut db = TestDb::create("parts").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(200))").await;
    db.exec("INSERT INTO t VALUES (0, 'before')").await;
    let from = current_position(&url()).await.unwrap();
    let before_big = from.clone();
    // ~5,000 rows of ~200 bytes: many rows events of at most 8 KiB each.
    db.exec("INSERT INTO t SELECT seq, REPEAT('x', 200) FROM seq_1_to_5000").await;
    db.exec("INSERT INTO t VALUES (6000, 'after')").await;
    let events = read_t_with_holds(&from, &db, 1000).await;
    let mut parts = 0;
    let mut seen: Vec<i64> = Vec::new();
    let mut last: Option<Position> = None;
    let mut commit = None;
    let mut held: Option<Position> = None;
    for (event, hold) in &events {
        match event {
            SourceEvent::Part { position, changes } => {
                parts += 1;
                assert!(changes.len() >= 1000, "a part holds at least part_changes changes");
                assert!(changes.iter().all(|c| c.position == *position));
                assert!(last.as_ref().is_none_or(|l| l < position), "parts in increasing positions");
                assert!(*position > before_big);
                // The transaction's start is held (other tests may commit between `from` and it).
                let hold = hold.as_ref().expect("the transaction's start is held");
                assert!(*hold >= before_big && hold < position, "hold {hold} part {position}");
                assert!(held.get_or_insert(hold.clone()) == hold, "the same start held for every part");
                last = Some(position.clone());
                seen.extend(op_keys(changes).into_iter().map(|(_, k)| k));
            }
            SourceEvent::Transaction { position, changes } if commit.is_none() => {
                assert!(last.as_ref().is_some_and(|l| l < position), "the commit after every part");
                // Its start is no longer held (another test's XA transaction prepared meanwhile may be).
                assert!(held.is_some() && hold.as_ref() != held.as_ref(), "the start still held after the commit");
                seen.extend(op_keys(changes).into_iter().map(|(_, k)| k));
                commit = Some(position.clone());
            }
            _ => {}
        }
    }
    assert!(parts >= 4, "5,000 changes in parts of 1,000: {parts} parts");
    assert_eq!(seen, (1..=5000).collect::<Vec<i64>>(), "every change once, in order");
    db.drop_db().await;
}

#[tokio::test]
async fn a_snapshot_waits_while_an_xa_transaction_is_prepared_and_streams_on_after_its_commit() {
    let _alone = XA_WINDOW.lock().await;
    let mut db = TestDb::create("xasnap").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let schema = Arc::new(discover_tables(&mut conn, &db.filter("t"), "test").await.unwrap().remove(0));
    // Prepared on a connection that then goes: MariaDB lets another connection commit a prepared XA
    // transaction only once the one that prepared it is gone.
    let xid = format!("'s{}'", random_u32());
    let mut xa = second_connection(&db).await;
    for sql in [
        format!("XA START {xid}"),
        "INSERT INTO t VALUES (2, 2)".to_string(),
        format!("XA END {xid}"),
        format!("XA PREPARE {xid}"),
    ] {
        xa.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    xa.disconnect().await.unwrap();

    let snapshot = tokio::spawn(async move { snapshot_changes(&schema, 100).await });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let waited = !snapshot.is_finished();
    let before_commit = current_position(&url()).await.unwrap();
    // Committed before any assertion, so a failure leaves no prepared transaction on the server.
    second_connection(&db).await.query_drop(format!("XA COMMIT {xid}")).await.unwrap();
    assert!(waited, "the snapshot must not open while an XA transaction is prepared");

    let rows = tokio::time::timeout(std::time::Duration::from_secs(30), snapshot)
        .await
        .expect("the snapshot opens once the XA transaction is committed")
        .unwrap();
    assert_eq!(op_keys(&rows), vec![(Op::Insert, 1), (Op::Insert, 2)], "the snapshot holds the committed XA row");
    let position = rows[0].position.clone();
    assert!(position > before_commit, "snapshot at {position}, XA COMMIT after {before_commit}");

    // Streaming from the snapshot's position: no unknown XA COMMIT, and the XA row not again.
    db.exec("INSERT INTO t VALUES (3, 3)").await;
    let events = read_t_with_holds(&position, &db, 1000).await;
    let txs = committed_op_keys(&events);
    assert_eq!(txs, vec![vec![(Op::Insert, 3)]], "{events:?}");
    assert!(events.last().unwrap().1.is_none(), "nothing held at the end: {:?}", events.last());
    db.drop_db().await;
}

/// The `(op, key)`s of each committed transaction among events read with their holds.
fn committed_op_keys(events: &[(SourceEvent, Option<Position>)]) -> Vec<Vec<(Op, i64)>> {
    events
        .iter()
        .filter_map(|(e, _)| match e {
            SourceEvent::Transaction { changes, .. } => Some(op_keys(changes)),
            _ => None,
        })
        .collect()
}
