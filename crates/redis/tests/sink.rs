//! Sink behaviour against the real Redis: upsert/update/delete, collapse, replay, checkpoint atomicity,
//! chunking, TTL and the change stream.

mod common;

use std::time::Duration;

use common::*;
use polyrepl_core::{Checkpoint, Sink, Value};
use polyrepl_redis::{RedisOptions, RedisSink};

#[tokio::test]
async fn upsert_update_to_null_and_delete() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let t = simple_table(&db);
        let key = format!("{db}:t:7");
        let mut conn = raw().await;
        sink.apply(&batch(vec![insert(&t, simple_row(7, Some("a")))], 100)).await.unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"7".to_vec()), ("v".into(), b"a".to_vec())]
        );
        sink.apply(&batch(vec![upsert(&t, simple_row(7, Some("b")))], 110)).await.unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"7".to_vec()), ("v".into(), b"b".to_vec())]
        );
        sink.apply(&batch(vec![upsert(&t, simple_row(7, None))], 120)).await.unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"7".to_vec())],
            "the NULLed field vanished"
        );
        assert_eq!(sink.read_rows(&t, &[vec![Value::Int(7)]]).await.unwrap(), vec![Some(simple_row(7, None))]);
        // A field no column has is not polyrepl's (no schema change leaves one: those remove the
        // table's keys): an upsert sets and removes the columns' fields and leaves it as it is.
        let _: () = redis::cmd("HSET").arg(&key).arg("other").arg("x").query_async(&mut conn).await.unwrap();
        sink.apply(&batch(vec![upsert(&t, simple_row(7, Some("c")))], 130)).await.unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"7".to_vec()), ("other".into(), b"x".to_vec()), ("v".into(), b"c".to_vec())]
        );
        sink.apply(&batch(vec![delete(&t, vec![Value::Int(7)])], 140)).await.unwrap();
        assert!(!exists(&mut conn, key.as_bytes()).await);
        assert_eq!(sink.read_rows(&t, &[vec![Value::Int(7)]]).await.unwrap(), vec![None]);
        // Deleting an absent row is fine.
        sink.apply(&batch(vec![delete(&t, vec![Value::Int(7)])], 150)).await.unwrap();
        assert_eq!(
            sink.load_checkpoint(sink.pipeline().to_string().as_str()).await.unwrap(),
            Some(Checkpoint::streaming(position(150)))
        );
    })
    .await;
}

/// An upsert sets every non-NULL column and removes every NULL one, without a DEL: whatever the hash
/// held (an interrupted earlier attempt's later image, the previous row image) it ends exactly the
/// batch's image.
#[tokio::test]
async fn an_upsert_makes_the_hash_exactly_the_row_whatever_it_held() {
    with_sink(RedisOptions { stream: None, ..Default::default() }, |mut sink, db| async move {
        let t = simple_table(&db);
        let key = format!("{db}:t:9");
        let mut conn = raw().await;
        let _: () =
            redis::cmd("HSET").arg(&key).arg("id").arg("9").arg("v").arg("later").query_async(&mut conn).await.unwrap();
        sink.apply(&batch(vec![insert(&t, simple_row(9, None))], 310)).await.unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"9".to_vec())],
            "the NULL column was removed"
        );
        sink.apply(&batch(vec![insert(&t, simple_row(9, Some("x"))), upsert(&t, simple_row(9, Some("y")))], 320))
            .await
            .unwrap();
        assert_eq!(
            hash(&mut conn, key.as_bytes()).await,
            vec![("id".into(), b"9".to_vec()), ("v".into(), b"y".to_vec())]
        );
        // An update alone (the key existed before the batch) that makes v NULL.
        sink.apply(&batch(vec![upsert(&t, simple_row(9, None))], 330)).await.unwrap();
        assert_eq!(hash(&mut conn, key.as_bytes()).await, vec![("id".into(), b"9".to_vec())], "v was removed");
    })
    .await;
}

#[tokio::test]
async fn checkpoint_lands_with_the_data() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let pipeline = sink.pipeline().to_string();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), None);
        let t = simple_table(&db);
        let b = batch(vec![insert(&t, simple_row(1, Some("a")))], 400);
        sink.apply(&b).await.unwrap();
        let mut conn = raw().await;
        assert!(exists(&mut conn, format!("{db}:t:1").as_bytes()).await);
        let text: String =
            redis::cmd("GET").arg(format!("polyrepl:checkpoint:{pipeline}")).query_async(&mut conn).await.unwrap();
        assert_eq!(Checkpoint::from_json(&text).unwrap(), b.checkpoint);
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(b.checkpoint));
        // A corrupt checkpoint is a definite error, never silently ignored.
        let _: () = redis::cmd("SET")
            .arg(format!("polyrepl:checkpoint:{pipeline}"))
            .arg("{oops")
            .query_async(&mut conn)
            .await
            .unwrap();
        let err = sink.load_checkpoint(&pipeline).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("not valid"), "{err}");
    })
    .await;
}

/// A checkpoint the server refuses fails the batch loudly (definite, naming the checkpoint), and no
/// checkpoint is stored: the rows were written on their lanes first (the checkpoint always goes last),
/// so a retry after fixing the ACL replays them, which converges. A user whose ACL allows the row keys
/// but not the checkpoint key shows it.
#[tokio::test]
async fn a_refused_checkpoint_fails_the_batch_and_stores_no_checkpoint() {
    let database = unique("prt");
    let pipeline = unique("pipe");
    let user = unique("polyrepl_test");
    let password = unique("pw");
    let mut admin = raw().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{database}:*"))
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let base = url();
    let with_user = base.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    let outcome = async {
        let mut sink = RedisSink::connect(&with_user, &pipeline, RedisOptions::default()).await.unwrap();
        assert!(!sink.name().contains(&password), "{}", sink.name());
        let t = simple_table(&database);
        let err = sink
            .apply(&batch(vec![insert(&t, simple_row(1, Some("a"))), insert(&t, simple_row(2, Some("b")))], 500))
            .await
            .unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("writing the checkpoint") && err.to_string().contains("NoPerm"), "{err}");
        assert_eq!(keys(&mut admin, &format!("{database}:*")).await.len(), 2, "the rows go before the checkpoint");
        assert!(!exists(&mut admin, format!("polyrepl:checkpoint:{pipeline}").as_bytes()).await);

        // And a wrong password is a definite error that says what to check.
        let wrong = base.replacen("redis://", &format!("redis://{user}:not-{password}@"), 1);
        let err =
            RedisSink::connect(&wrong, &pipeline, RedisOptions::default()).await.err().expect("wrong password refused");
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("password"), "{err}");
        assert!(!err.to_string().contains(&password), "{err}");
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _: () = redis::cmd("ACL").arg("DELUSER").arg(&user).query_async(&mut admin).await.unwrap();
    cleanup(&database, None, &pipeline).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn a_huge_batch_is_split_with_the_checkpoint_last() {
    let options = RedisOptions { max_chunk_commands: 50, stream: Some(1000), ..Default::default() };
    with_sink(options, |mut sink, db| async move {
        let t = simple_table(&db);
        let changes = (0..500).map(|i| insert(&t, simple_row(i, Some(&format!("v{i}"))))).collect();
        let b = batch(changes, 600);
        sink.apply(&b).await.unwrap();
        let mut conn = raw().await;
        assert_eq!(keys(&mut conn, &format!("{db}:t:*")).await.len(), 500);
        let keys_: Vec<Vec<Value>> = (0..500).map(|i| vec![Value::Int(i)]).collect();
        let rows = sink.read_rows(&t, &keys_).await.unwrap();
        assert!(rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.as_ref() == Some(&simple_row(i as i64, Some(&format!("v{i}"))))));
        let xlen: usize =
            redis::cmd("XLEN").arg(format!("polyrepl:stream:{db}:t")).query_async(&mut conn).await.unwrap();
        assert_eq!(xlen, 500);
        let pipeline = sink.pipeline().to_string();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(b.checkpoint.clone()));
    })
    .await;
}

#[tokio::test]
async fn ttl_is_set_on_written_rows() {
    with_sink(
        RedisOptions {
            ttl: Some(Duration::from_secs(60)),
            key_prefix: Some(unique("pfx") + ":"),
            ..Default::default()
        },
        |mut sink, db| async move {
            let prefix = sink.options().key_prefix.clone().unwrap();
            let t = simple_table(&db);
            sink.apply(&batch(vec![insert(&t, simple_row(1, Some("a")))], 700)).await.unwrap();
            let mut conn = raw().await;
            let key = format!("{prefix}{db}:t:1");
            assert_eq!(sink.row_key(&t, &[Value::Int(1)]).unwrap(), key.as_bytes());
            let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
            assert!(pttl > 50_000 && pttl <= 60_000, "PTTL {pttl}");
            assert!(!exists(&mut conn, format!("{db}:t:1").as_bytes()).await, "the prefix is applied");
            assert_eq!(sink.read_rows(&t, &[vec![Value::Int(1)]]).await.unwrap(), vec![Some(simple_row(1, Some("a")))]);
        },
    )
    .await;
}

#[tokio::test]
async fn url_options_apply() {
    let database = unique("prt");
    let pipeline = unique("pipe");
    let prefix = unique("u") + ":";
    let url = format!("{}/0?prefix={}&ttl=2s&stream=100", url(), prefix.replace(':', "%3A"));
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let mut sink = RedisSink::connect(&url, &pipeline, RedisOptions::default()).await.unwrap();
        assert_eq!(sink.options().key_prefix.as_deref(), Some(prefix.as_str()));
        assert_eq!(sink.options().ttl, Some(Duration::from_secs(2)));
        assert_eq!(sink.options().stream, Some(100));
        assert!(!sink.name().contains('?'), "{}", sink.name());
        let t = simple_table(&database);
        sink.apply(&batch(vec![insert(&t, simple_row(1, Some("a")))], 800)).await.unwrap();
        let mut conn = raw().await;
        let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}{database}:t:1")).query_async(&mut conn).await.unwrap();
        assert!(pttl > 0 && pttl <= 2000, "PTTL {pttl}");
    }))
    .await;
    cleanup(&database, Some(&prefix), &pipeline).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn the_change_stream_gets_every_change_and_is_trimmed() {
    with_sink(RedisOptions { stream: Some(50), ..Default::default() }, |mut sink, db| async move {
        let t = simple_table(&db);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        for n in 0..5u64 {
            let changes = (0..100).map(|i| upsert(&t, simple_row(i, Some(&format!("r{n}"))))).collect();
            sink.apply(&batch(changes, 1000 + n)).await.unwrap();
        }
        sink.apply(&batch(vec![insert(&t, simple_row(1, Some("x"))), upsert(&t, simple_row(1, None)), delete(&t, vec![Value::Int(1)])], 2000)).await.unwrap();
        let mut conn = raw().await;
        let stream = format!("polyrepl:stream:{db}:t");
        let xlen: usize = redis::cmd("XLEN").arg(&stream).query_async(&mut conn).await.unwrap();
        assert!((50..503).contains(&xlen), "MAXLEN ~ 50 trims the 503 entries (approximately): XLEN {xlen}");
        // The last three entries, oldest first: every change, not collapsed.
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE").arg(&stream).arg("+").arg("-").arg("COUNT").arg(3).query_async(&mut conn).await.unwrap();
        let events: Vec<serde_json::Value> = entries.iter().rev().map(|(_, f)| {
            assert_eq!(f[0].0, "event");
            serde_json::from_str(&f[0].1).unwrap()
        }).collect();
        assert_eq!(
            events[0],
            serde_json::json!({"op": "insert", "before": null, "after": {"id": "1", "v": "x"}, "key": {"id": "1"},
                               "position": "binlog.000001:2000", "gtid": null, "seq": 0, "snapshot": false, "ts": 1_732_450_000})
        );
        assert_eq!(events[1]["after"], serde_json::json!({"id": "1", "v": null}));
        assert_eq!(events[1]["seq"], 1);
        assert_eq!(events[2]["op"], "delete");
        assert_eq!(events[2]["after"], serde_json::Value::Null);
        // A stream key holding something else is refused at prepare.
        let other = simple_table(&format!("{db}x"));
        let _: () = redis::cmd("SET").arg(format!("polyrepl:stream:{db}x:t")).arg("not a stream").query_async(&mut conn).await.unwrap();
        let err = sink.prepare(&[other]).await.unwrap_err();
        let _: () = redis::cmd("DEL").arg(format!("polyrepl:stream:{db}x:t")).query_async(&mut conn).await.unwrap();
        assert!(!err.is_transient() && err.to_string().contains("not a stream"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn tables_without_a_key_are_refused() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let t = table(&db, "nokey", vec![column("v", polyrepl_core::ColumnKind::Int)], vec![]);
        let err = sink.prepare(&[t]).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("no primary key"), "{err}");
    })
    .await;
}
