//! Behaviour of `MongoSink::apply` and friends against the real server: upsert/update/delete,
//! collapse per key, composite keys, replay, checkpoints, chunking, refusals.

mod common;

use common::*;
use mongodb::bson::{doc, Bson};
use polyrepl_core::{Checkpoint, ColumnKind as K, Position, Sink, SnapshotProgress, TableId, Value};
use std::sync::Arc;

fn people(db: &str) -> Arc<polyrepl_core::TableSchema> {
    table(db, "people", vec![column("id", K::BigInt), column("name", K::VarChar), column("age", K::Int)], vec![0])
}

fn person(id: i64, name: &str, age: i64) -> Vec<Value> {
    vec![Value::Int(id), Value::String(name.into()), Value::Int(age)]
}

#[tokio::test]
async fn upsert_then_update_then_delete() {
    with_sink(|mut sink, db| async move {
        let t = people(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        sink.prepare(std::slice::from_ref(&t)).await.expect("prepare is idempotent");
        let names = sink.client().database(&db).list_collection_names().await.unwrap();
        assert!(names.contains(&"people".to_string()), "{names:?}");

        sink.apply(&batch(vec![insert(&t, person(1, "ada", 36)), insert(&t, person(2, "bob", 40))], 1)).await.unwrap();
        assert_eq!(
            document(&sink, &db, "people", 1).await.unwrap(),
            doc! { "_id": 1, "id": 1, "name": "ada", "age": 36 }
        );
        sink.apply(&batch(vec![upsert(&t, person(1, "ada lovelace", 37))], 2)).await.unwrap();
        assert_eq!(
            document(&sink, &db, "people", 1).await.unwrap(),
            doc! { "_id": 1, "id": 1, "name": "ada lovelace", "age": 37 }
        );
        sink.apply(&batch(vec![delete(&t, vec![Value::Int(1)]), delete(&t, vec![Value::Int(99)])], 3)).await.unwrap();
        assert_eq!(document(&sink, &db, "people", 1).await, None);
        let rows = sink.read_rows(&t, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await.unwrap();
        assert_eq!(rows, vec![None, Some(person(2, "bob", 40))]);
    })
    .await;
}

#[tokio::test]
async fn composite_keys_become_sub_documents_in_key_order() {
    with_sink(|mut sink, db| async move {
        // Key order (region, id) differs from column order (id, region).
        let t = table(
            &db,
            "orders",
            vec![
                column("id", K::Int),
                column("region", K::VarChar),
                column("total", K::Decimal { precision: 8, scale: 2 }),
            ],
            vec![1, 0],
        );
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let row = |id: i64, region: &str, total: &str| {
            vec![Value::Int(id), Value::String(region.into()), Value::Decimal(total.into())]
        };
        sink.apply(&batch(
            vec![
                insert(&t, row(1, "eu", "10.50")),
                insert(&t, row(1, "us", "20.00")),
                insert(&t, row(2, "eu", "0.01")),
            ],
            1,
        ))
        .await
        .unwrap();
        let stored = document(&sink, &db, "orders", doc! { "region": "eu", "id": 1 }).await.expect("composite _id");
        assert_eq!(stored.get_document("_id").unwrap().keys().collect::<Vec<_>>(), vec!["region", "id"]);
        assert_eq!(stored.get_str("region").unwrap(), "eu");
        sink.apply(&batch(vec![delete(&t, vec![Value::String("us".into()), Value::Int(1)])], 2)).await.unwrap();
        let keys = vec![
            vec![Value::String("eu".into()), Value::Int(1)],
            vec![Value::String("us".into()), Value::Int(1)],
            vec![Value::String("eu".into()), Value::Int(2)],
        ];
        let rows = sink.read_rows(&t, &keys).await.unwrap();
        assert_eq!(rows, vec![Some(row(1, "eu", "10.50")), None, Some(row(2, "eu", "0.01"))]);
    })
    .await;
}

#[tokio::test]
async fn checkpoint_is_stored_after_the_data_and_loads_back() {
    with_sink(|mut sink, db| async move {
        let pipeline = sink.pipeline().to_string();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), None, "nothing stored yet");
        let t = people(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let snapshotting = Checkpoint::snapshotting(
            Position { file: "binlog.000042".into(), offset: 1234, gtid: Some("0-1-77".into()), part: None },
            SnapshotProgress {
                done: vec![TableId::new(&db, "done_table")],
                current: Some((t.id.clone(), vec![Value::Int(7)])),
            },
        );
        let b = polyrepl_core::Batch::new(vec![insert(&t, person(7, "seven", 7))], snapshotting.clone());
        sink.apply(&b).await.unwrap();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(snapshotting.clone()));
        let stored = sink
            .client()
            .database("polyrepl")
            .collection::<mongodb::bson::Document>("_polyrepl_checkpoints")
            .find_one(doc! { "_id": &pipeline })
            .await
            .unwrap()
            .expect("checkpoint document");
        assert_eq!(stored.get_str("position").unwrap(), "binlog.000042:1234");
        assert!(matches!(stored.get("updated"), Some(Bson::DateTime(_))));
        assert_eq!(Checkpoint::from_json(stored.get_str("checkpoint").unwrap()).unwrap(), snapshotting);

        // An empty batch still moves the checkpoint forward.
        sink.apply(&batch(vec![], 5000)).await.unwrap();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap().unwrap().position, position(5000));
        assert_eq!(sink.load_checkpoint("no-such-pipeline-xyz").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn batches_are_split_into_bounded_commands() {
    with_sink(|mut sink, db| async move {
        let full = sink.write_limits();
        // What the server advertises (maxWriteBatchSize): 100 000 on MongoDB 3.6+ and FerretDB, 1 000 on
        // mongo-java-server.
        assert_eq!(full.max_ops, sink.server().max_write_batch_size.min(100_000));
        assert!(full.max_ops == 100_000 || server().label == "mongo-java", "{full:?}");
        assert!(full.max_command_bytes <= 16 * 1024 * 1024 && full.max_command_bytes > 16 * 1024 * 1024 - 64 * 1024);
        // Small bounds force many commands (real 16 MiB chunks are too slow for a FerretDB test).
        sink.limit_commands(7, 20 * 1024);
        let t = table(&db, "blobs", vec![column("id", K::Int), column("payload", K::Blob)], vec![0]);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let payload = |i: i64| Value::Bytes(vec![(i % 251) as u8; 4096]);
        let mut changes: Vec<_> = (0..60).map(|i| insert(&t, vec![Value::Int(i), payload(i)])).collect();
        changes.extend((0..20).map(|i| delete(&t, vec![Value::Int(i * 3)])));
        sink.apply(&batch(changes, 1)).await.unwrap();
        let count = sink
            .client()
            .database(&db)
            .collection::<mongodb::bson::Document>("blobs")
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(count, 40);
        let back = sink.read_rows(&t, &[vec![Value::Int(59)], vec![Value::Int(57)]]).await.unwrap();
        assert_eq!(back, vec![Some(vec![Value::Int(59), payload(59)]), None]);

        // A row larger than one command is refused by name, definitely.
        let huge = insert(&t, vec![Value::Int(1000), Value::Bytes(vec![1; 64 * 1024])]);
        let err = sink.apply(&batch(vec![huge], 2)).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains(r#"row {"id":1000}"#), "{err}");
    })
    .await;
}

/// A batch larger than one command is sent as several commands at once (not on FerretDB): replayed
/// over rows it had already written, with new rows, updates and deletes mixed in, it converges to its
/// images — the duplicates each command meets are rewritten, whichever command finishes first.
#[tokio::test]
async fn a_replayed_batch_sent_as_concurrent_commands_converges() {
    with_sink(|mut sink, db| async move {
        let t = people(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        const WRITTEN: i64 = 2_500;
        const ALL: i64 = 4_000;
        sink.apply(&batch((1..=WRITTEN).map(|i| insert(&t, person(i, "first", 1))).collect(), 1)).await.unwrap();
        // Inserts of every key (most of them already there), then an update and a delete of some.
        let mut changes: Vec<_> = (1..=ALL).map(|i| insert(&t, person(i, "replayed", 2))).collect();
        changes.extend((1..=ALL).filter(|i| i % 7 == 0).map(|i| upsert(&t, person(i, "updated", 3))));
        changes.extend((1..=ALL).filter(|i| i % 11 == 0).map(|i| delete(&t, vec![Value::Int(i)])));
        sink.apply(&batch(changes, 2)).await.unwrap();
        let docs = documents(&sink, &db, "people").await;
        let expected = (1..=ALL).filter(|i| i % 11 != 0).count();
        assert_eq!(docs.len(), expected);
        let keys: Vec<Vec<Value>> = (1..=ALL).map(|i| vec![Value::Int(i)]).collect();
        let rows = sink.read_rows(&t, &keys).await.unwrap();
        for (i, row) in (1..=ALL).zip(rows) {
            let want = if i % 11 == 0 {
                None
            } else if i % 7 == 0 {
                Some(person(i, "updated", 3))
            } else {
                Some(person(i, "replayed", 2))
            };
            assert_eq!(row, want, "key {i}");
        }
    })
    .await;
}

#[tokio::test]
async fn bad_changes_are_definite_errors_and_store_no_checkpoint() {
    with_sink(|mut sink, db| async move {
        let pipeline = sink.pipeline().to_string();
        let no_key = table(&db, "nokey", vec![column("a", K::Int)], vec![]);
        let err = sink.prepare(std::slice::from_ref(&no_key)).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("no primary key"), "{err}");

        let t = people(&db);
        let mut short = insert(&t, person(1, "x", 1));
        short.after = Some(vec![Value::Int(1)]);
        let err = sink.apply(&batch(vec![short], 9)).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("1 values"), "{err}");
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), None);

        let clash = table(&db, "clash", vec![column("k", K::Int), column("_id", K::Int)], vec![0]);
        let err = sink.prepare(&[clash]).await.unwrap_err();
        assert!(err.to_string().contains("_id"), "{err}");
    })
    .await;
}

/// Sends `command` on a raw connection and closes it without reading the reply: what the server sees
/// when polyrepl is killed in the middle of a command.
async fn send_and_vanish(command: mongodb::bson::Document) {
    use tokio::io::AsyncWriteExt;
    let address = url().trim_start_matches("mongodb://").split(['/', '?']).next().unwrap().to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = mongodb::bson::to_vec(&command).unwrap();
    // OP_MSG: length, request id, response to, opcode 2013; flags; one kind-0 section.
    let length = (16 + 4 + 1 + body.len()) as i32;
    let mut message = Vec::with_capacity(length as usize);
    for word in [length, 1, 0, 2013, 0] {
        message.extend_from_slice(&word.to_le_bytes());
    }
    message.push(0);
    message.extend_from_slice(&body);
    socket.write_all(&message).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(socket);
}

/// FerretDB 1.x goes on executing a killed client's delete, which reads the matching ids first and
/// deletes them later: a restarted run must not write before that delete is over, or the rows it writes
/// again vanish.
#[tokio::test]
async fn a_killed_runs_delete_cannot_remove_rows_the_restarted_run_writes() {
    with_sink(|mut sink, db| async move {
        if sink.server().ferretdb_version.is_none() {
            eprintln!("SKIPPED: a_killed_runs_delete_cannot_remove_rows_the_restarted_run_writes needs FerretDB 1.x (the fence is FerretDB's)");
            return;
        }
        let t = people(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        const ROWS: i64 = 20_000;
        let rows: Vec<_> = (1..=ROWS).map(|i| insert(&t, person(i, "before", 1))).collect();
        sink.apply(&batch(rows, 1)).await.unwrap();
        // The largest delete a run sends on this collection, killed after 200 ms.
        let ids = polyrepl_mongo::fence::ids_per_delete(ROWS as u64, sink.write_limits().max_ops) as i64;
        let doomed: Vec<i64> = (1..=ids).collect();
        send_and_vanish(doc! { "delete": "people", "deletes": [ { "q": { "_id": { "$in": doomed } }, "limit": 0 } ], "ordered": false, "$db": &db }).await;
        assert!(document(&sink, &db, "people", ids).await.is_some(), "the killed delete finished too fast to test anything");

        // The restarted run updates a row in that delete's list.
        let mut restarted = polyrepl_mongo::MongoSink::connect(&url(), sink.pipeline()).await.unwrap();
        restarted.prepare(std::slice::from_ref(&t)).await.unwrap();
        restarted.apply(&batch(vec![upsert(&t, person(5, "after restart", 2))], 2)).await.unwrap();

        let started = std::time::Instant::now();
        while document(&sink, &db, "people", ids).await.is_some() {
            assert!(started.elapsed().as_secs() < 120, "the killed delete never finished");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(
            document(&sink, &db, "people", 5).await,
            Some(doc! { "_id": 5, "id": 5, "name": "after restart", "age": 2 }),
            "the restarted run's write was removed by the killed run's delete"
        );
    })
    .await;
}

/// A snapshot copied again over a collection that already holds its rows (`--resnapshot`, a new
/// pipeline name) replaces each batch's key range with one range delete on FerretDB: the rows come out
/// exactly as the batch has them, and a row of the range the batch does not have (gone from the
/// source) is gone too.
#[tokio::test]
async fn a_snapshot_copied_again_replaces_its_key_ranges_exactly() {
    with_sink(|mut sink, db| async move {
        if sink.server().ferretdb_version.is_none() {
            eprintln!("SKIPPED: a_snapshot_copied_again_replaces_its_key_ranges_exactly tests FerretDB's range path");
            return;
        }
        let t = people(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let snapshot_batch = |changes| {
            polyrepl_core::Batch::new(
                changes,
                Checkpoint::snapshotting(
                    position(1),
                    SnapshotProgress { done: vec![], current: Some((t.id.clone(), vec![Value::Int(1)])) },
                ),
            )
        };
        const ROWS: i64 = 20_000;
        sink.apply(&snapshot_batch((1..=ROWS).map(|i| insert(&t, person(i, "first copy", 1))).collect()))
            .await
            .unwrap();
        // The copy again: keys 1..=5000 but 1500, which the source no longer has.
        let again: Vec<_> =
            (1..=5_000).filter(|&i| i != 1_500).map(|i| insert(&t, person(i, "second copy", 2))).collect();
        assert!(
            again.len() > polyrepl_mongo::fence::ids_per_delete(ROWS as u64, sink.write_limits().max_ops),
            "enough duplicates for the range path"
        );
        sink.apply(&snapshot_batch(again)).await.unwrap();
        let docs = documents(&sink, &db, "people").await;
        assert_eq!(docs.len() as i64, ROWS - 1);
        let name_of = |id: i64| {
            docs.iter()
                .find(|d| {
                    d.get("_id").and_then(Bson::as_i64).or(d.get("_id").and_then(Bson::as_i32).map(i64::from))
                        == Some(id)
                })
                .map(|d| d.get_str("name").unwrap().to_string())
        };
        assert_eq!(name_of(1).as_deref(), Some("second copy"));
        assert_eq!(name_of(5_000).as_deref(), Some("second copy"));
        assert_eq!(name_of(1_500), None, "the row the source no longer has is gone");
        assert_eq!(name_of(5_001).as_deref(), Some("first copy"), "rows outside the batch's range are untouched");
        assert_eq!(name_of(ROWS).as_deref(), Some("first copy"));
    })
    .await;
}
