//! [`MongoSink`]: the [`Sink`] implementation tying connection, mapping, planning, writing and
//! checkpoints together.
//!
//! Invariants:
//! - `apply` writes data first and the checkpoint second (see [`crate::checkpoint`]); a failure at any
//!   step returns an error without storing the checkpoint, so the pipeline retries the whole batch.
//! - `read_rows` decodes with the same [`Mapping`] that wrote, so a row read back equals the source row
//!   (up to the documented exceptions of the mapping).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use polyrepl_core::{
    Batch, Change, Checkpoint, DeadLetter, Lease, LeaseRequest, LeftOut, Row, RowPolicy, Sink, SinkError, StagedBatch,
    TableSchema, Value,
};

use crate::checkpoint::{self, CHECKPOINT_COLLECTION, CHECKPOINT_DATABASE};
use crate::connection::{connect, ServerInfo};
use crate::error::classify;
use crate::fence::{ids_per_delete, wait_out_previous_run, DocCounts};
use crate::mapping::{Mapping, MappingCounts, MappingStats};
use crate::naming::{check_names, check_table, document_id, id_bytes, ID_FIELD};
use crate::plan::{plan, CollectionWrites, WriteOp};
use crate::write::{send, WriteLimits};

/// Keys per `find` in `read_rows`.
const READ_CHUNK: usize = 1000;
/// MongoDB's error code for "collection already exists".
const NAMESPACE_EXISTS: i32 = 48;

/// A MongoDB (or FerretDB) sink: one database per source database, one collection per table,
/// one document per row with `_id` = primary key.
pub struct MongoSink {
    client: Client,
    name: String,
    pipeline: String,
    server: ServerInfo,
    limits: WriteLimits,
    mapping: Mapping,
    /// The key scan in progress (`scan_keys`), so a listing reads one server cursor.
    scan: crate::scan::ScanState,
    /// FerretDB: document counts that size delete commands, the prepared collections, and whether a
    /// killed run's last command has been waited out yet ([`crate::fence`]).
    doc_counts: DocCounts,
    collections: Vec<(String, String)>,
    fenced: bool,
    /// What to do with a row MongoDB cannot hold (`--on-unmappable`).
    policy: RowPolicy,
}

impl MongoSink {
    /// Connects to `url` (`mongodb://…` or `mongodb+srv://…`) for the pipeline named `pipeline`, whose
    /// checkpoint `apply` stores. Fails transiently when nothing answers at the address, definitely
    /// when the URL is invalid or the server is not MongoDB.
    pub async fn connect(url: &str, pipeline: &str) -> Result<MongoSink, SinkError> {
        let (client, name, server) = connect(url).await?;
        let mapping = Mapping::new(server.features, Arc::new(MappingStats::default()));
        let limits = WriteLimits::for_server(&server);
        Ok(MongoSink {
            client,
            name,
            pipeline: pipeline.to_string(),
            server,
            limits,
            mapping,
            scan: Default::default(),
            doc_counts: DocCounts::default(),
            collections: Vec::new(),
            fenced: false,
            policy: RowPolicy::default(),
        })
    }

    /// This sink, treating rows MongoDB cannot hold (a document over the server's size limit) as
    /// `policy` says ([`polyrepl_core::unmappable`]; dead letters go to
    /// `polyrepl._polyrepl_dead_letters`, [`crate::dead_letter`]).
    pub fn with_row_policy(mut self, policy: RowPolicy) -> MongoSink {
        self.policy = policy;
        self
    }

    /// Lowers the per-command bounds of `update`/`delete` commands (never above the server's own
    /// limits), e.g. to keep commands small on a slow link. Not used with MongoDB 8.0's `bulkWrite`,
    /// which the driver splits itself.
    pub fn limit_commands(&mut self, max_ops: usize, max_command_bytes: usize) {
        self.limits = WriteLimits::for_server(&self.server).lowered_to(max_ops, max_command_bytes);
    }

    /// The per-command bounds in use.
    pub fn write_limits(&self) -> WriteLimits {
        self.limits
    }

    /// The pipeline name checkpoints are stored under.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// What the server reported at connection (version, limits, features).
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// The driver client, e.g. for `stack init` to create indexes.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Counts of values stored in a fallback form so far (zero dates, long decimals, JSON as text).
    pub fn mapping_counts(&self) -> MappingCounts {
        self.mapping.stats().snapshot()
    }

    /// The live counters behind [`MongoSink::mapping_counts`], e.g. for a metrics exporter.
    pub fn mapping_stats(&self) -> Arc<MappingStats> {
        self.mapping.stats().clone()
    }

    /// Creates a collection, accepting that it exists already.
    async fn create_collection(&self, database: &str, collection: &str) -> Result<(), SinkError> {
        match self.client.database(database).create_collection(collection).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS) => Ok(()),
            Err(e) => Err(classify(&self.name, &format!("creating collection {database}.{collection}"), &e)),
        }
    }
}

/// A batch's write commands, its dead-letter records and its checkpoint, ready to send.
struct MongoStaged {
    client: Client,
    sink: String,
    pipeline: String,
    server: ServerInfo,
    limits: WriteLimits,
    writes: Vec<CollectionWrites>,
    delete_caps: Vec<usize>,
    snapshot: bool,
    letters: Vec<DeadLetter>,
    checkpoint: Checkpoint,
    policy: RowPolicy,
    left_out: LeftOut,
}

#[async_trait]
impl StagedBatch for MongoStaged {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        let s = *self;
        send(&s.client, &s.sink, &s.server, s.limits, &s.writes, &s.delete_caps, s.snapshot).await?;
        crate::dead_letter::store(&s.client, &s.sink, &s.letters).await?;
        checkpoint::store(&s.client, &s.sink, &s.pipeline, &s.checkpoint).await?;
        s.policy.record_left_out(&s.sink, &s.left_out);
        Ok(())
    }
}

#[async_trait]
impl Sink for MongoSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        }
        self.create_collection(CHECKPOINT_DATABASE, CHECKPOINT_COLLECTION).await?;
        for table in tables {
            self.create_collection(&table.id.database, &table.id.table).await?;
            let collection = (table.id.database.clone(), table.id.table.clone());
            if !self.collections.contains(&collection) {
                self.collections.push(collection);
            }
        }
        Ok(())
    }

    /// On FerretDB, yes. It deletes by first reading the matching ids and deleting them in a later step,
    /// and keeps executing a command after its client is gone, so a killed run's long delete could remove
    /// rows the restarted run wrote again — merged applies made such deletes seconds long and lost rows in
    /// the crash test. Now every delete command is sized to a bounded cost and a restarted sink waits out
    /// the killed run's last command ([`crate::fence`]), so larger applies are safe, and on FerretDB they
    /// are much faster (fewer collection scans, more changes to one key collapse).
    /// On MongoDB, no: whether it stops a vanished client's write is not tested here, so applies stay small.
    fn merges_waiting_batches(&self) -> bool {
        self.server.ferretdb_version.is_some()
    }

    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        let planned = plan(&self.mapping, batch, self.limits.max_command_bytes)
            .map_err(|m| SinkError::definite(&self.name, m))?;
        self.policy.check(&self.name, &planned.unmappable, crate::dead_letter::PLACE)?;
        let writes = planned.groups;
        let mut delete_caps = Vec::new();
        if self.server.ferretdb_version.is_some() {
            if !self.fenced {
                wait_out_previous_run(
                    &self.client,
                    &self.name,
                    &self.collections,
                    &mut self.doc_counts,
                    self.limits.max_ops,
                )
                .await?;
                self.fenced = true;
            }
            for group in &writes {
                let documents =
                    self.doc_counts.get(&self.client, &self.name, &group.database, &group.collection).await?;
                delete_caps.push(ids_per_delete(documents, self.limits.max_ops));
            }
        }
        // Counted when staged: the counts only size FerretDB's delete commands, and a batch that fails
        // is applied again.
        for group in &writes {
            let upserts = group.ops.iter().filter(|op| matches!(op, WriteOp::Upsert { .. })).count();
            self.doc_counts.add(&group.database, &group.collection, upserts as u64);
        }
        Ok(Box::new(MongoStaged {
            client: self.client.clone(),
            sink: self.name.clone(),
            pipeline: self.pipeline.clone(),
            server: self.server.clone(),
            limits: self.limits,
            writes,
            delete_caps,
            snapshot: batch.checkpoint.snapshot.is_some(),
            letters: self.policy.dead_letters(&self.name, &self.pipeline, &planned.unmappable),
            checkpoint: batch.checkpoint.clone(),
            policy: self.policy.clone(),
            left_out: self.policy.left_out(&planned.unmappable),
        }))
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        checkpoint::load(&self.client, &self.name, pipeline).await
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        let ids = keys
            .iter()
            .map(|key| document_id(&self.mapping, table, key))
            .collect::<Result<Vec<Bson>, String>>()
            .map_err(|m| SinkError::definite(&self.name, m))?;
        let collection = self.client.database(&table.id.database).collection::<Document>(&table.id.table);
        let mut found: HashMap<Vec<u8>, Row> = HashMap::new();
        for chunk in ids.chunks(READ_CHUNK) {
            let doing = format!("reading {} row(s) of {}", chunk.len(), table.id);
            let mut cursor = collection
                .find(doc! { ID_FIELD: { "$in": chunk.to_vec() } })
                .await
                .map_err(|e| classify(&self.name, &doing, &e))?;
            while let Some(document) = cursor.try_next().await.map_err(|e| classify(&self.name, &doing, &e))? {
                let row = self.row_of(table, &document);
                // Re-derive the _id from the decoded row, so a server that normalises number types
                // still matches the key that was asked for.
                let key = Change::key_of(table, &row);
                let id = document_id(&self.mapping, table, &key)
                    .unwrap_or_else(|_| document.get(ID_FIELD).cloned().unwrap_or(Bson::Null));
                found.insert(id_bytes(&id), row);
            }
        }
        Ok(ids.iter().map(|id| found.get(&id_bytes(id)).cloned()).collect())
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        check_table(table).map_err(|m| SinkError::definite(&self.name, m))?;
        crate::scan::scan_keys(&mut self.scan, &self.client, &self.name, &self.mapping, table, cursor, limit).await
    }

    /// `delete_many({})` on the table's collection: the collection and its indexes stay. An absent
    /// collection is left absent.
    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        let collection = self.client.database(&table.id.database).collection::<Document>(&table.id.table);
        collection
            .delete_many(doc! {})
            .await
            .map_err(|e| classify(&self.name, &format!("removing every row of {}", table.id), &e))?;
        self.doc_counts.forget(&table.id.database, &table.id.table);
        Ok(())
    }

    /// Drops the table's collection (with its indexes); an absent collection is not an error.
    ///
    /// An absent collection is not dropped at all: MongoDB before 7.0 answers that `drop` with error 26
    /// (NamespaceNotFound, which the driver's `drop` takes for success), but mongo-java-server answers
    /// it with an error that has no `code`, which the driver cannot read ("missing field `code`").
    /// A collection dropped by someone else between the check and the `drop` still gives error 26.
    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        let database = self.client.database(&table.id.database);
        let exists = database
            .list_collection_names()
            .filter(doc! { "name": &table.id.table })
            .await
            .map_err(|e| classify(&self.name, &format!("looking for the collection of {}", table.id), &e))?
            .iter()
            .any(|name| name == &table.id.table);
        let collection = database.collection::<Document>(&table.id.table);
        match if exists { collection.drop().await } else { Ok(()) } {
            Ok(()) => {}
            Err(e) if matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == crate::fence::NAMESPACE_NOT_FOUND) =>
                {}
            Err(e) => return Err(classify(&self.name, &format!("dropping the collection of {}", table.id), &e)),
        }
        self.doc_counts.forget(&table.id.database, &table.id.table);
        self.collections.retain(|(d, c)| !(d == &table.id.database && c == &table.id.table));
        Ok(())
    }

    /// One conditional upsert per table in `polyrepl._polyrepl_leases` ([`crate::lease`]).
    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::acquire(&self.client, &self.name, tables, request).await
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::release(&self.client, &self.name, tables, owner).await
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
        self.check_lease_names(tables)?;
        crate::lease::read(&self.client, &self.name, tables).await
    }

    fn row_policy(&self) -> &RowPolicy {
        &self.policy
    }

    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
        crate::dead_letter::load(&self.client, &self.name, pipeline).await
    }
}

impl MongoSink {
    fn check_lease_names(&self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        for table in tables {
            check_names(table).map_err(|m| SinkError::definite(&self.name, m))?;
        }
        Ok(())
    }

    /// Decodes a stored document into a row in column order (a missing field reads as NULL).
    fn row_of(&self, table: &TableSchema, document: &Document) -> Row {
        table
            .columns
            .iter()
            .map(|column| match document.get(&column.name) {
                Some(bson) => self.mapping.from_bson(column, bson),
                None => Value::Null,
            })
            .collect()
    }
}
