//! `Sink::scan_keys` of the Redis sink against the real server: every stored row key of the table (and
//! only of that table) comes back over several pages, composite keys with `:` and `\` unescaped, with
//! and without a key prefix.

mod common;

use common::*;
use polyrepl_core::{ColumnKind as K, Sink, TableSchema, Value};
use polyrepl_redis::RedisOptions;

/// Every key of `table`, paging `limit` at a time, deduplicated (SCAN may repeat a key).
async fn all_keys(sink: &mut dyn Sink, table: &TableSchema, limit: usize) -> Vec<String> {
    let (mut keys, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = sink.scan_keys(table, cursor, limit).await.unwrap();
        keys.extend(page.into_iter().map(|k| format!("{k:?}")));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

fn sorted(keys: Vec<Vec<Value>>) -> Vec<String> {
    let mut out: Vec<String> = keys.into_iter().map(|k| format!("{k:?}")).collect();
    out.sort();
    out
}

async fn scan_case(options: RedisOptions) {
    with_sink(options, |mut sink, db| async move {
        let single = table(&db, "single", vec![column("id", K::BigInt), column("v", K::VarChar)], vec![0]);
        // A table whose name starts like the other's: its keys must not show up in `single`'s scan.
        let lookalike = table(&db, "single2", vec![column("id", K::BigInt)], vec![0]);
        let composite = table(
            &db,
            "composite",
            vec![column("id", K::Int), column("region", K::VarChar), column("b", K::VarBinary)],
            vec![1, 0, 2],
        );
        sink.prepare(&[single.clone(), lookalike.clone(), composite.clone()]).await.unwrap();
        let mut changes = Vec::new();
        let mut want_single = Vec::new();
        for id in 0..40i64 {
            changes.push(insert(&single, vec![Value::Int(id - 3), Value::String(format!("v{id}"))]));
            want_single.push(vec![Value::Int(id - 3)]);
        }
        changes.push(insert(&lookalike, vec![Value::Int(1)]));
        let mut want_composite = Vec::new();
        for (i, region) in ["eu", "a:b", "back\\slash", "*?[x]", ""].iter().enumerate() {
            let b = vec![i as u8, b':', 0xff];
            changes.push(insert(
                &composite,
                vec![Value::Int(i as i64), Value::String(region.to_string()), Value::Bytes(b.clone())],
            ));
            want_composite.push(vec![Value::String(region.to_string()), Value::Int(i as i64), Value::Bytes(b)]);
        }
        sink.apply(&batch(changes, 1)).await.unwrap();
        assert_eq!(all_keys(&mut sink, &single, 7).await, sorted(want_single));
        assert_eq!(all_keys(&mut sink, &composite, 2).await, sorted(want_composite));
    })
    .await;
}

#[tokio::test]
async fn scan_keys_finds_every_row_key_of_the_table() {
    scan_case(RedisOptions::default()).await;
}

#[tokio::test]
async fn scan_keys_honours_the_key_prefix() {
    scan_case(RedisOptions { key_prefix: Some("app*:".into()), ..Default::default() }).await;
}
