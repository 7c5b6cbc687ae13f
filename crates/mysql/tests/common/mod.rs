//! Shared helpers of the integration tests: a randomly named database on the dev server, dropped at
//! the end, and collection of binlog events with a timeout.
#![allow(dead_code)]

use mysql_async::prelude::*;
use mysql_async::Conn;
use polyrepl_core::{Position, TableFilter};
use polyrepl_mysql::{BinlogOptions, BinlogReader, SourceEvent, SourceUrl};
use std::time::Duration;

pub const URL: &str = "mysql://root@127.0.0.1:5600";

pub fn url() -> SourceUrl {
    SourceUrl::parse(&std::env::var("POLYREPL_TEST_MYSQL").unwrap_or_else(|_| URL.to_string())).unwrap()
}

/// A number that differs between tests and runs (no rand dependency needed).
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// A unique binlog server id for a test reader.
pub fn server_id() -> u32 {
    100_000 + random_u32() % 1_000_000_000
}

/// A database created for one test; call `drop_db` at the end.
pub struct TestDb {
    pub name: String,
    pub conn: Conn,
}

impl TestDb {
    pub async fn create(prefix: &str) -> TestDb {
        let name = format!("t_{prefix}_{:08x}", random_u32());
        let mut conn = Conn::new(url().opts(false)).await.expect("the dev MariaDB on 127.0.0.1:5600 must be running");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            .await
            .unwrap();
        conn.query_drop(format!("USE `{name}`")).await.unwrap();
        conn.query_drop("SET NAMES utf8mb4, SESSION time_zone = '+00:00', SESSION sql_mode = ''").await.unwrap();
        TestDb { name, conn }
    }

    pub async fn exec(&mut self, sql: &str) {
        self.conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn filter(&self, table: &str) -> TableFilter {
        TableFilter::new(&[format!("{}.{table}", self.name)], &[]).unwrap()
    }

    pub async fn drop_db(mut self) {
        let _ = self.conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)).await;
        let _ = self.conn.disconnect().await;
    }
}

/// Reads from `from` to the end of the binlog (non-blocking dump), within 30 s.
pub async fn read_to_end(from: &Position, filter: TableFilter) -> Vec<SourceEvent> {
    read_with_holds(from, filter, BinlogOptions::new(server_id())).await.into_iter().map(|(ev, _)| ev).collect()
}

/// Every event from `from` to the end of the binlog (`options` with `stop_at_end`), each with the
/// reader's hold after it, within 30 s.
pub async fn read_with_holds(
    from: &Position,
    filter: TableFilter,
    options: BinlogOptions,
) -> Vec<(SourceEvent, Option<Position>)> {
    let mut reader =
        BinlogReader::start(&url(), from, filter, options.stop_at_end()).await.expect("binlog stream starts");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, reader.next_event()).await.expect("binlog read timed out");
        match next.expect("binlog event decodes") {
            Some(ev) => out.push((ev, reader.hold().cloned())),
            None => break,
        }
    }
    out
}

/// (op, key) of changes to a table with one INT key, for compact assertions.
pub fn op_keys(changes: &[polyrepl_core::Change]) -> Vec<(polyrepl_core::Op, i64)> {
    changes
        .iter()
        .map(|c| match c.key.as_slice() {
            [polyrepl_core::Value::Int(k)] => (c.op, *k),
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

/// Only the transactions.
pub fn transactions(events: &[SourceEvent]) -> Vec<(Position, Vec<polyrepl_core::Change>)> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Transaction { position, changes } => Some((position.clone(), changes.clone())),
            _ => None,
        })
        .collect()
}

/// Every row of `schema`'s table as the snapshot reads it, in chunks of `chunk_rows`, in key order.
pub async fn snapshot_changes(
    schema: &std::sync::Arc<polyrepl_core::TableSchema>,
    chunk_rows: usize,
) -> Vec<polyrepl_core::Change> {
    let mut snap = polyrepl_mysql::Snapshot::begin(&url(), chunk_rows).await.unwrap();
    let mut out = Vec::new();
    let mut chunks = snap.table_chunks(schema.clone(), None);
    while let Some(chunk) = chunks.next_chunk().await.unwrap() {
        out.extend(chunk);
    }
    snap.finish().await.unwrap();
    out
}
