//! A sink's overflow on disk, so that one slow sink never holds the others back.
//!
//! Every sink has a bounded queue in memory ([`crate::pipeline`]). When a sink's queue is full, the
//! batches it has no room for are appended to its spill file instead of making the reader wait; the
//! queue carries a token in their place, so the sink still sees every batch in source order. The sink
//! reads spilled batches back when it reaches their token, and merges them like queued ones, so a
//! lagging sink catches up in large applies on its own while the other sinks stream on. Once it has
//! room again, new batches go through memory again: it has rejoined.
//!
//! Invariants:
//! - Order: a batch is spilled or queued by the one batcher, in source order, and its token takes its
//!   place in the queue; batches come back in the order they were written (the file is a FIFO).
//! - Bounded: the file holds at most `limit` bytes; beyond that the batcher waits for room in memory,
//!   as it did before spilling existed (so a stopped sink still stops everything, only much later).
//! - Nothing to recover: the file is unlinked as soon as it is created, so it vanishes with the
//!   process, even after `kill -9`. Spilled batches are not yet applied, so the sink's checkpoint is
//!   before them and a restart reads them from the binlog again.
//! - Table schemas are not written: a record names them by index into the schemas this spill has
//!   seen (kept in memory; they are few and shared), so a read batch points at the very same
//!   `Arc<TableSchema>` the reader made.
//! - Disk space is given back whenever the reader catches up with the writer (the file is emptied).

use polyrepl_core::{Batch, Change, Checkpoint, Op, Position, Row, TableOp, TableSchema, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One sink's spill file and what it needs to read it back.
pub struct Spill {
    file: File,
    /// Where the next record is written, and where the next one to read starts.
    write_at: u64,
    read_at: u64,
    /// Records written and not yet read.
    pending: usize,
    limit: u64,
    schemas: Vec<Arc<TableSchema>>,
    /// Index in `schemas` by the schema's address: every address belongs to an `Arc` held in
    /// `schemas`, so it cannot be reused by another schema meanwhile.
    schema_index: HashMap<usize, u32>,
}

/// A change as written: its table by index.
#[derive(Serialize)]
struct ChangeOut<'a> {
    position: &'a Position,
    seq: u32,
    table: u32,
    op: Op,
    key: &'a [Value],
    after: Option<&'a [Value]>,
    source_ts: u32,
}

#[derive(Deserialize)]
struct ChangeIn {
    position: Position,
    seq: u32,
    table: u32,
    op: Op,
    key: Vec<Value>,
    after: Option<Row>,
    source_ts: u32,
}

/// A layout operation as written: 0 prepare, 1 truncate, 2 drop; its table by index.
type OpRecord = (u8, u32);

#[derive(Serialize)]
struct RecordOut<'a> {
    changes: Vec<ChangeOut<'a>>,
    checkpoint: &'a Checkpoint,
    table_ops: Vec<OpRecord>,
}

#[derive(Deserialize)]
struct RecordIn {
    changes: Vec<ChangeIn>,
    checkpoint: Checkpoint,
    table_ops: Vec<OpRecord>,
}

impl Spill {
    /// An empty spill file in `dir`, holding at most `limit` bytes.
    pub fn create(dir: &Path, limit: u64) -> io::Result<Spill> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(Spill {
            file,
            write_at: 0,
            read_at: 0,
            pending: 0,
            limit,
            schemas: Vec::new(),
            schema_index: HashMap::new(),
        })
    }

    /// Bytes written and not yet read back.
    pub fn bytes(&self) -> u64 {
        self.write_at - self.read_at
    }

    /// Batches written and not yet read back.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Appends `batch`; `Ok(false)` when it would pass the limit (nothing written).
    pub fn push(&mut self, batch: &Batch) -> io::Result<bool> {
        // A full file refuses before the batch is encoded: the batcher asks again every 100 ms.
        if self.bytes() >= self.limit {
            return Ok(false);
        }
        let changes = batch
            .changes
            .iter()
            .map(|c| ChangeOut {
                position: &c.position,
                seq: c.seq,
                table: self.index_of(&c.table),
                op: c.op,
                key: &c.key,
                after: c.after.as_deref(),
                source_ts: c.source_ts,
            })
            .collect();
        let table_ops = batch
            .table_ops
            .iter()
            .map(|op| {
                let kind = match op {
                    TableOp::Prepare(_) => 0,
                    TableOp::Truncate(_) => 1,
                    TableOp::Drop(_) => 2,
                };
                (kind, self.index_of(op.table()))
            })
            .collect();
        let record = RecordOut { changes, checkpoint: &batch.checkpoint, table_ops };
        let body = rmp_serde::to_vec_named(&record).map_err(io::Error::other)?;
        let len = u32::try_from(body.len()).map_err(|_| io::Error::other("a batch over 4 GiB cannot be spilled"))?;
        if self.bytes() + 4 + body.len() as u64 > self.limit {
            return Ok(false);
        }
        let mut framed = Vec::with_capacity(4 + body.len());
        framed.extend_from_slice(&len.to_le_bytes());
        framed.extend_from_slice(&body);
        self.file.write_all_at(&framed, self.write_at)?;
        self.write_at += framed.len() as u64;
        self.pending += 1;
        Ok(true)
    }

    /// Reads the oldest batch back (`None` when there is none).
    pub fn pop(&mut self) -> io::Result<Option<Batch>> {
        if self.pending == 0 {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, self.read_at)?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.file.read_exact_at(&mut body, self.read_at + 4)?;
        self.read_at += 4 + body.len() as u64;
        self.pending -= 1;
        if self.pending == 0 {
            // Caught up: give the disk space back.
            self.file.set_len(0)?;
            (self.read_at, self.write_at) = (0, 0);
        }
        let record: RecordIn = rmp_serde::from_slice(&body).map_err(io::Error::other)?;
        let table = |i: u32| {
            self.schemas
                .get(i as usize)
                .cloned()
                .ok_or_else(|| io::Error::other(format!("spilled batch names table #{i}, which this spill never saw")))
        };
        let changes = record
            .changes
            .into_iter()
            .map(|c| {
                Ok(Change {
                    position: c.position,
                    seq: c.seq,
                    table: table(c.table)?,
                    op: c.op,
                    key: c.key,
                    after: c.after,
                    source_ts: c.source_ts,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let table_ops = record
            .table_ops
            .into_iter()
            .map(|(kind, i)| {
                let t = table(i)?;
                Ok(match kind {
                    0 => TableOp::Prepare(t),
                    1 => TableOp::Truncate(t),
                    _ => TableOp::Drop(t),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Some(Batch { changes, checkpoint: record.checkpoint, table_ops }))
    }

    fn index_of(&mut self, table: &Arc<TableSchema>) -> u32 {
        let key = Arc::as_ptr(table) as usize;
        if let Some(&i) = self.schema_index.get(&key) {
            return i;
        }
        let i = self.schemas.len() as u32;
        self.schemas.push(table.clone());
        self.schema_index.insert(key, i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::{Column, ColumnKind, TableId};

    fn table(name: &str) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId::new("d", name),
            columns: vec![
                Column { name: "id".into(), kind: ColumnKind::Int, unsigned: false, nullable: false },
                Column { name: "doc".into(), kind: ColumnKind::Json, unsigned: false, nullable: true },
            ],
            primary_key: vec![0],
        })
    }

    fn batch(t: &Arc<TableSchema>, from: i64, n: i64) -> Batch {
        let changes = (from..from + n)
            .map(|i| Change {
                position: Position::new("binlog.000001", 100 + i as u64),
                seq: i as u32,
                table: t.clone(),
                op: if i % 3 == 0 { Op::Delete } else { Op::Update },
                key: vec![Value::Int(i)],
                after: (i % 3 != 0).then(|| {
                    vec![
                        Value::Int(i),
                        Value::Json(serde_json::from_str(r#"{"n":12345678901234567890123,"a":[1.5]}"#).unwrap()),
                    ]
                }),
                source_ts: 7,
            })
            .collect();
        Batch::new(changes, Checkpoint::streaming(Position::new("binlog.000001", 100 + (from + n) as u64)))
    }

    #[test]
    fn batches_come_back_in_order_with_the_same_schemas_and_values() {
        let dir = std::env::temp_dir();
        let mut spill = Spill::create(&dir, 1 << 20).unwrap();
        let (a, b) = (table("a"), table("b"));
        let first = batch(&a, 0, 10);
        let second = Batch::table_ops(vec![TableOp::Truncate(b.clone())], first.checkpoint.clone());
        let third = batch(&b, 10, 5);
        for x in [&first, &second, &third] {
            assert!(spill.push(x).unwrap());
        }
        assert_eq!(spill.pending(), 3);
        let back = spill.pop().unwrap().unwrap();
        assert_eq!(back.checkpoint, first.checkpoint);
        assert_eq!(back.changes.len(), 10);
        for (x, y) in back.changes.iter().zip(&first.changes) {
            assert!(Arc::ptr_eq(&x.table, &a), "the very same schema");
            assert_eq!((&x.position, x.seq, x.op, &x.key, &x.after), (&y.position, y.seq, y.op, &y.key, &y.after));
        }
        let back = spill.pop().unwrap().unwrap();
        assert!(matches!(&back.table_ops[..], [TableOp::Truncate(t)] if Arc::ptr_eq(t, &b)));
        assert!(spill.bytes() > 0);
        let back = spill.pop().unwrap().unwrap();
        assert_eq!(back.changes.len(), 5);
        assert!(spill.pop().unwrap().is_none());
        assert_eq!(spill.bytes(), 0, "caught up: the file is emptied");
    }

    #[test]
    fn the_limit_refuses_a_batch_and_writes_nothing() {
        let mut spill = Spill::create(&std::env::temp_dir(), 4096).unwrap();
        let t = table("a");
        assert!(spill.push(&batch(&t, 0, 5)).unwrap());
        let before = spill.bytes();
        assert!(!spill.push(&batch(&t, 5, 500)).unwrap(), "over the limit");
        assert_eq!((spill.bytes(), spill.pending()), (before, 1));
        assert_eq!(spill.pop().unwrap().unwrap().changes.len(), 5);
    }
}
