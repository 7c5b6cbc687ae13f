//! `Sink::scan_keys` of the MongoDB sink against the real server: every stored key comes back exactly
//! once over several pages (also when two scans interleave), single and composite keys decoded to the
//! source values.

mod common;

use common::*;
use polyrepl_core::{ColumnKind as K, Sink, TableSchema, Value};

/// Every key of `table`, paging `limit` at a time; also returns how many pages it took.
async fn all_keys(sink: &mut dyn Sink, table: &TableSchema, limit: usize) -> (Vec<Vec<Value>>, usize) {
    let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let (page, next) = sink.scan_keys(table, cursor, limit).await.unwrap();
        assert!(page.len() <= limit, "a page holds at most the limit");
        keys.extend(page);
        pages += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => return (keys, pages),
        }
    }
}

fn sorted(mut keys: Vec<Vec<Value>>) -> Vec<String> {
    let mut out: Vec<String> = keys.drain(..).map(|k| format!("{k:?}")).collect();
    out.sort();
    out
}

#[tokio::test]
async fn scan_keys_pages_through_single_and_composite_keys() {
    with_sink(|mut sink, db| async move {
        let single = table(&db, "single", vec![column("id", K::BigInt), column("v", K::VarChar)], vec![0]);
        // Key order (region, id) differs from column order (id, region).
        let composite = table(&db, "composite", vec![column("id", K::Int), column("region", K::VarChar)], vec![1, 0]);
        let empty = table(&db, "empty", vec![column("id", K::Int)], vec![0]);
        sink.prepare(&[single.clone(), composite.clone(), empty.clone()]).await.unwrap();
        let mut changes = Vec::new();
        let mut want_single = Vec::new();
        for id in 0..23i64 {
            changes.push(insert(&single, vec![Value::Int(id * 1000 - 5000), Value::String(format!("v{id}"))]));
            want_single.push(vec![Value::Int(id * 1000 - 5000)]);
        }
        let mut want_composite = Vec::new();
        for (i, region) in ["eu", "us", "e:u", "ü🙂"].iter().enumerate() {
            for id in 0..3i64 {
                changes.push(insert(&composite, vec![Value::Int(id + i as i64), Value::String(region.to_string())]));
                want_composite.push(vec![Value::String(region.to_string()), Value::Int(id + i as i64)]);
            }
        }
        sink.apply(&batch(changes, 1)).await.unwrap();

        let (keys, pages) = all_keys(&mut sink, &single, 5).await;
        assert_eq!(sorted(keys), sorted(want_single.clone()));
        assert!(pages >= 5, "23 keys by 5 take at least 5 pages, took {pages}");
        let (keys, _) = all_keys(&mut sink, &composite, 4).await;
        assert_eq!(sorted(keys), sorted(want_composite.clone()));
        assert_eq!(all_keys(&mut sink, &empty, 10).await.0, Vec::<Vec<Value>>::new());

        // Two scans interleaved page by page: each resumes from its own cursor (by `_id` range).
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut ca, mut cb): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            if !a_done {
                let (page, next) = sink.scan_keys(&single, ca.take(), 4).await.unwrap();
                a.extend(page);
                a_done = next.is_none();
                ca = next;
            }
            if !b_done {
                let (page, next) = sink.scan_keys(&composite, cb.take(), 5).await.unwrap();
                b.extend(page);
                b_done = next.is_none();
                cb = next;
            }
        }
        assert_eq!(sorted(a), sorted(want_single));
        assert_eq!(sorted(b), sorted(want_composite));
    })
    .await;
}
