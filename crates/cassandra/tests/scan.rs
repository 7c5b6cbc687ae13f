//! `Sink::scan_keys` of the Cassandra sink against the real server: every stored key comes back exactly
//! once over several pages (driver paging state as the cursor), single and composite keys, with the
//! time-bucket option, and no keys for a table Cassandra does not have.

mod common;

use common::*;
use polyrepl_core::{ColumnKind as K, Date, DateTime, Sink, TableSchema, Value};

/// Every key of `table`, paging `limit` at a time (not deduplicated: Cassandra must not repeat a key).
async fn all_keys(sink: &mut dyn Sink, table: &TableSchema, limit: usize) -> Vec<String> {
    let (mut keys, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = sink.scan_keys(table, cursor, limit).await.unwrap();
        assert!(page.len() <= limit);
        keys.extend(page.into_iter().map(|k| format!("{k:?}")));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    keys.sort();
    keys
}

fn sorted(keys: Vec<Vec<Value>>) -> Vec<String> {
    let mut out: Vec<String> = keys.into_iter().map(|k| format!("{k:?}")).collect();
    out.sort();
    out
}

#[tokio::test]
async fn scan_keys_pages_through_single_and_composite_keys() {
    with_sink_query("time_bucket=ts:day", |mut sink, ks| async move {
        let ts = |d: u8| {
            Value::DateTime(DateTime {
                date: Date { year: 2025, month: 3, day: d },
                hour: 1,
                minute: 2,
                second: 3,
                micros: 0,
                fsp: 0,
            })
        };
        let single = table(&ks, "single", vec![column("id", K::BigInt), column("ts", K::DateTime { fsp: 0 })], vec![0]);
        let composite = table(&ks, "composite", vec![column("id", K::Int), column("region", K::VarChar)], vec![1, 0]);
        let absent = table(&ks, "absent", vec![column("id", K::Int)], vec![0]);
        sink.prepare(&[single.clone(), composite.clone()]).await.unwrap();
        let mut changes = Vec::new();
        let mut want_single = Vec::new();
        for id in 0..23i64 {
            changes.push(insert(&single, vec![Value::Int(id * 7 - 50), ts(1 + (id % 20) as u8)]));
            want_single.push(vec![Value::Int(id * 7 - 50)]);
        }
        let mut want_composite = Vec::new();
        for region in ["eu", "us", "e:u"] {
            for id in 0..4i64 {
                changes.push(insert(&composite, vec![Value::Int(id), Value::String(region.to_string())]));
                want_composite.push(vec![Value::String(region.to_string()), Value::Int(id)]);
            }
        }
        sink.apply(&batch(changes, 1)).await.unwrap();
        assert_eq!(all_keys(&mut sink, &single, 5).await, sorted(want_single));
        assert_eq!(all_keys(&mut sink, &composite, 5).await, sorted(want_composite));
        assert!(all_keys(&mut sink, &absent, 5).await.is_empty());
    })
    .await;
}
