//! Binlog streaming: row operations, transactions, rollback, DDL mid-stream, rotate, resume.
mod common;

use common::*;
use polyrepl_core::{Op, Position, Value};
use polyrepl_mysql::{current_position, SourceEvent};

#[tokio::test]
async fn streams_committed_transactions_in_order_and_resumes_exactly() {
    let mut db = TestDb::create("binlog").await;
    db.exec("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), qty INT)").await;
    db.exec("CREATE TABLE other (id INT PRIMARY KEY)").await;
    let from = current_position(&url()).await.unwrap();

    db.exec("INSERT INTO items VALUES (1, 'a', 1)").await; // tx 0
    db.exec("INSERT INTO items VALUES (2, 'b', 2), (3, 'c', 3), (4, 'd', 4)").await; // tx 1
    db.exec("UPDATE items SET qty = 10 WHERE id = 1").await; // tx 2
    db.exec("UPDATE items SET id = 100 WHERE id = 2").await; // tx 3: key change
    db.exec("DELETE FROM items WHERE id = 3").await; // tx 4
    db.exec("INSERT INTO other VALUES (1)").await; // not selected: no transaction
    db.exec("BEGIN").await; // tx 5
    db.exec("INSERT INTO items VALUES (5, 'e', 5)").await;
    db.exec("UPDATE items SET name = 'E' WHERE id = 5").await;
    db.exec("INSERT INTO other VALUES (2)").await;
    db.exec("DELETE FROM items WHERE id = 4").await;
    db.exec("COMMIT").await;
    db.exec("BEGIN").await; // rolled back: no trace
    db.exec("INSERT INTO items VALUES (6, 'f', 6)").await;
    db.exec("ROLLBACK").await;
    db.exec("ALTER TABLE items ADD COLUMN note VARCHAR(20) DEFAULT 'x'").await;
    db.exec("INSERT INTO items VALUES (7, 'g', 7, 'hello')").await; // tx 6: new shape
    db.exec("FLUSH BINARY LOGS").await;
    db.exec("INSERT INTO items VALUES (8, 'h', 8, NULL)").await; // tx 7: next file

    let events = read_to_end(&from, db.filter("items")).await;
    let txs = transactions(&events);
    let ops: Vec<Vec<(Op, i64)>> = txs.iter().map(|(_, c)| op_keys(c)).collect();
    assert_eq!(
        ops,
        vec![
            vec![(Op::Insert, 1)],
            vec![(Op::Insert, 2), (Op::Insert, 3), (Op::Insert, 4)],
            vec![(Op::Update, 1)],
            vec![(Op::Delete, 2), (Op::Insert, 100)],
            vec![(Op::Delete, 3)],
            vec![(Op::Insert, 5), (Op::Update, 5), (Op::Delete, 4)],
            vec![(Op::Insert, 7)],
            vec![(Op::Insert, 8)],
        ]
    );
    // Values, seq, positions.
    let (_, tx2) = &txs[2];
    assert_eq!(tx2[0].after.as_ref().unwrap(), &vec![Value::Int(1), Value::String("a".into()), Value::Int(10)]);
    let (_, tx5) = &txs[5];
    assert_eq!(tx5.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(tx5[1].after.as_ref().unwrap()[1], Value::String("E".into()));
    assert!(tx5[2].after.is_none());
    for (pos, changes) in &txs {
        assert!(changes.iter().all(|c| &c.position == pos && c.source_ts > 0));
        assert!(pos.gtid.is_some(), "MariaDB positions carry the GTID state");
    }
    assert!(txs.windows(2).all(|w| w[0].0 < w[1].0), "positions increase");
    // DDL surfaced; new shape after it.
    assert!(events
        .iter()
        .any(|e| matches!(e, SourceEvent::Ddl { statement, .. } if statement.contains("ADD COLUMN note"))));
    let old_schema = &txs[5].1[0].table;
    let new_schema = &txs[6].1[0].table;
    assert_eq!(old_schema.columns.len(), 3);
    assert_eq!(new_schema.columns.len(), 4);
    assert_eq!(txs[6].1[0].after.as_ref().unwrap()[3], Value::String("hello".into()));
    assert_eq!(txs[7].1[0].after.as_ref().unwrap()[3], Value::Null);
    // Rotate: the last transaction is in a later file.
    assert!(txs[7].0.file_sequence() > txs[6].0.file_sequence(), "{} vs {}", txs[7].0, txs[6].0);

    // Resume from a saved position, by file+offset and by GTID: exactly the later transactions.
    let saved = txs[3].0.clone();
    let by_file = Position { gtid: None, ..saved.clone() };
    let by_gtid = Position { file: String::new(), offset: 4, gtid: saved.gtid.clone(), part: None };
    for resume_from in [by_file, by_gtid] {
        let again = transactions(&read_to_end(&resume_from, db.filter("items")).await);
        let again_ops: Vec<Vec<(Op, i64)>> = again.iter().map(|(_, c)| op_keys(c)).collect();
        assert_eq!(again_ops, ops[4..].to_vec(), "resume from {resume_from}");
        let positions: Vec<&Position> = again.iter().map(|(p, _)| p).collect();
        let expected: Vec<&Position> = txs[4..].iter().map(|(p, _)| p).collect();
        assert_eq!(positions, expected, "same positions after resume from {resume_from}");
    }
    db.drop_db().await;
}

#[tokio::test]
async fn heartbeats_arrive_on_an_idle_stream() {
    let db = TestDb::create("hb").await;
    let from = current_position(&url()).await.unwrap();
    let options = polyrepl_mysql::BinlogOptions {
        heartbeat: std::time::Duration::from_millis(200),
        ..polyrepl_mysql::BinlogOptions::new(server_id())
    };
    let mut reader = polyrepl_mysql::BinlogReader::start(&url(), &from, db.filter("nothing"), options).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(SourceEvent::Heartbeat { position }) = reader.next_event().await.unwrap() {
                return position;
            }
        }
    })
    .await
    .expect("a heartbeat within 10 s");
    assert!(!ev.file.is_empty());
    reader.close().await.unwrap();
    db.drop_db().await;
}
