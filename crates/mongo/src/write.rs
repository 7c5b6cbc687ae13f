//! Sending planned operations to the server as unordered bulk writes.
//!
//! Invariants:
//! - Servers with wire version ≥ 25 (MongoDB 8.0+) get one `Client::bulk_write` (the driver splits it);
//!   older servers and FerretDB get `update` (replacement, `upsert: true`) and `delete` (`limit: 1`)
//!   commands with `ordered: false`, each at most `maxWriteBatchSize` (≤ 100 000) operations and at most
//!   `maxBsonObjectSize` (16 MiB) of statements.
//! - Unordered is safe because the plan holds at most one operation per key; for the same reason a
//!   batch's commands of one kind are sent several at a time (`COMMANDS_IN_FLIGHT`), except on FerretDB.
//! - A reply's `writeErrors` fail the batch (the driver's `Ok` is not trusted).
//! - A single row larger than the server's document limit is a definite error naming it.
//! - FerretDB 1.x gets neither: its `update` (and any query by `_id`) scans the whole collection for
//!   every statement, so 20 000-row collections took minutes per batch. There an upsert is "delete the
//!   keys that may exist (one `$in` delete), then one unordered `insert`"; keys whose first change in
//!   the batch was an insert are inserted directly, and only those that turn out to exist (duplicate
//!   key, i.e. a replay)
//!   are deleted and inserted again. Not atomic per document, but idempotent: a crash between the two
//!   leaves the batch's checkpoint unwritten, so the batch is replayed. Deletes are sized so a command
//!   stays short, and a restarted run waits out a killed run's last command ([`crate::fence`]). A
//!   snapshot batch copied again over rows the collection holds (integer keys) replaces its key range
//!   with one range delete instead (see `integer_id_range`).

use futures::stream::{self, StreamExt};
use mongodb::bson::{doc, Bson, RawArrayBuf, RawDocumentBuf};
use mongodb::options::{DeleteOneModel, ReplaceOneModel, WriteModel};
use mongodb::{Client, Namespace};
use polyrepl_core::SinkError;

use crate::connection::ServerInfo;
use crate::error::{check_write_reply, classify};
use crate::plan::{chunk_ranges, CollectionWrites, WriteOp};

/// Room left in a command for everything but the statements (command name, options, `$db`...).
const COMMAND_OVERHEAD: usize = 16 * 1024;
/// Bytes an array element adds around a statement: type byte and decimal index key with its NUL.
const ARRAY_ELEMENT_OVERHEAD: usize = 8;
/// Commands of one kind a batch keeps in flight at once on servers other than FerretDB. The batch
/// holds one operation per key, so its commands may run in any order; a MongoDB server (and
/// mongo-java-server) applies concurrent commands on several threads, while one command at a time
/// left it waiting on each reply (a 200,000-row copy into mongo-java-server: 2.0–2.2 s against
/// 2.35–2.5 s). Every command is awaited even after one failed: dropping the others would abandon
/// writes the server may still be running, which could then land after the retried batch or a later
/// one (a key's image overtaken by an older one).
const COMMANDS_IN_FLIGHT: usize = 4;
/// Fewest statements a command is cut to when a batch is split over [`COMMANDS_IN_FLIGHT`] commands
/// (smaller commands cost the server more per row than they gain in overlap).
const MIN_STATEMENTS_PER_COMMAND: usize = 1_000;

/// How many statements each command of a kind holds when `count` of them are sent `in_flight` at once:
/// an equal share, at least [`MIN_STATEMENTS_PER_COMMAND`], never above the server's limit.
fn statements_per_command(count: usize, in_flight: usize, max_ops: usize) -> usize {
    if in_flight <= 1 {
        return max_ops;
    }
    count.div_ceil(in_flight).max(MIN_STATEMENTS_PER_COMMAND).min(max_ops).max(1)
}

/// Bounds of one `update`/`delete` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Most operations per command (the server's `maxWriteBatchSize`, at most 100 000).
    pub max_ops: usize,
    /// Most bytes of statements per command (the server's `maxBsonObjectSize` less room for the rest
    /// of the command); a single row larger than this cannot be written.
    pub max_command_bytes: usize,
}

impl WriteLimits {
    /// The largest limits the server allows.
    pub fn for_server(server: &ServerInfo) -> WriteLimits {
        WriteLimits {
            max_ops: server.max_write_batch_size.clamp(1, 100_000),
            max_command_bytes: server.max_bson_object_size.saturating_sub(COMMAND_OVERHEAD).max(1024),
        }
    }

    /// These limits, lowered to `max_ops` and `max_command_bytes` where those are smaller (never raised
    /// above what the server allows).
    pub fn lowered_to(self, max_ops: usize, max_command_bytes: usize) -> WriteLimits {
        WriteLimits {
            max_ops: self.max_ops.min(max_ops.max(1)),
            max_command_bytes: self.max_command_bytes.min(max_command_bytes.max(1)),
        }
    }
}

/// Applies every planned operation. `delete_caps[i]` bounds the ids of one FerretDB delete command
/// for `writes[i]` (see [`crate::fence`]); other servers ignore it. `snapshot` when the batch is made of
/// snapshot chunks.
pub async fn send(
    client: &Client,
    sink: &str,
    server: &ServerInfo,
    limits: WriteLimits,
    writes: &[CollectionWrites],
    delete_caps: &[usize],
    snapshot: bool,
) -> Result<(), SinkError> {
    if server.bulk_write {
        send_bulk_write(client, sink, writes).await
    } else if server.ferretdb_version.is_some() {
        for (i, group) in writes.iter().enumerate() {
            let cap = delete_caps.get(i).copied().unwrap_or(limits.max_ops);
            send_delete_insert(client, sink, limits, cap, group, snapshot).await?;
        }
        Ok(())
    } else {
        for group in writes {
            send_commands(client, sink, limits, group).await?;
        }
        Ok(())
    }
}

/// MongoDB 8.0+: one client-level bulk write across collections.
async fn send_bulk_write(client: &Client, sink: &str, writes: &[CollectionWrites]) -> Result<(), SinkError> {
    let mut models: Vec<WriteModel> = Vec::new();
    for group in writes {
        let namespace = Namespace::new(group.database.clone(), group.collection.clone());
        for op in &group.ops {
            models.push(match op {
                WriteOp::Upsert { id, document, .. } => {
                    let replacement = document.to_document().map_err(|e| {
                        SinkError::definite(
                            sink,
                            format!("decoding the row with _id {id} of {}.{}: {e}", group.database, group.collection),
                        )
                    })?;
                    ReplaceOneModel::builder()
                        .namespace(namespace.clone())
                        .filter(doc! { "_id": id.clone() })
                        .replacement(replacement)
                        .upsert(true)
                        .build()
                        .into()
                }
                WriteOp::Delete { id } => DeleteOneModel::builder()
                    .namespace(namespace.clone())
                    .filter(doc! { "_id": id.clone() })
                    .build()
                    .into(),
            });
        }
    }
    if models.is_empty() {
        return Ok(());
    }
    let count = models.len();
    client
        .bulk_write(models)
        .ordered(false)
        .await
        .map_err(|e| classify(sink, &format!("bulk-writing {count} operations"), &e))?;
    Ok(())
}

/// Before MongoDB 8.0: `insert` of the documents first written in the batch (`fresh`: most likely
/// absent; an insert costs the server less than an upsert, which looks the `_id` up first), then
/// `update` (replacement, upsert) of the others and of the fresh ones that were there after all (a
/// replay), and `delete` commands, per collection. The batch holds one operation per key, so their
/// order does not matter.
async fn send_commands(
    client: &Client,
    sink: &str,
    limits: WriteLimits,
    group: &CollectionWrites,
) -> Result<(), SinkError> {
    let namespace = format!("{}.{}", group.database, group.collection);
    let fresh: Vec<(&Bson, &RawDocumentBuf)> = group
        .ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::Upsert { id, document, fresh: true } => Some((id, document)),
            _ => None,
        })
        .collect();
    let existing = if fresh.is_empty() {
        Vec::new()
    } else {
        insert_documents(client, sink, limits, COMMANDS_IN_FLIGHT, group, &fresh, true).await?
    };
    let mut upserts: Vec<(&Bson, RawDocumentBuf)> = Vec::new();
    let mut deletes: Vec<(&Bson, RawDocumentBuf)> = Vec::new();
    let statement = |id: &Bson| {
        let query = RawDocumentBuf::from_document(&doc! { "_id": id.clone() })
            .map_err(|e| SinkError::definite(sink, format!("encoding a write to {namespace} for _id {id}: {e}")))?;
        let mut statement = RawDocumentBuf::new();
        statement.append("q", query);
        Ok::<_, SinkError>(statement)
    };
    let replays = existing.iter().map(|&i| fresh[i]);
    let others = group.ops.iter().filter_map(|op| match op {
        WriteOp::Upsert { id, document, fresh: false } => Some((id, Some(document))),
        WriteOp::Upsert { fresh: true, .. } => None,
        WriteOp::Delete { id } => Some((id, None)),
    });
    for (id, document) in replays.map(|(id, document)| (id, Some(document))).chain(others) {
        let mut statement = statement(id)?;
        match document {
            Some(document) => {
                statement.append("u", document.clone());
                statement.append("upsert", true);
                upserts.push((id, statement));
            }
            None => {
                statement.append("limit", 1);
                deletes.push((id, statement));
            }
        }
    }
    let database = client.database(&group.database);
    let max_bytes = limits.max_command_bytes;
    for (command, field, statements) in [("update", "updates", upserts), ("delete", "deletes", deletes)] {
        let sizes: Vec<usize> =
            statements.iter().map(|(_, raw)| raw.as_bytes().len() + ARRAY_ELEMENT_OVERHEAD).collect();
        let per_command = statements_per_command(statements.len(), COMMANDS_IN_FLIGHT, limits.max_ops);
        let mut commands = Vec::new();
        for range in chunk_ranges(&sizes, per_command, max_bytes) {
            let chunk = &statements[range];
            if let [(id, raw)] = chunk {
                if raw.as_bytes().len() + ARRAY_ELEMENT_OVERHEAD > max_bytes {
                    return Err(SinkError::definite(
                        sink,
                        format!(
                            "the row with _id {id} of {namespace} is {} bytes as a write, more than the {max_bytes}-byte command limit (the server's document limit less command overhead): MongoDB cannot store it",
                            raw.as_bytes().len()
                        ),
                    ));
                }
            }
            let mut array = RawArrayBuf::new();
            for (_, raw) in chunk {
                array.push(raw.clone());
            }
            let mut body = RawDocumentBuf::new();
            body.append(command, group.collection.as_str());
            body.append(field, array);
            body.append("ordered", false);
            // Owned, so the futures below borrow nothing per item (the send future must be `Send`).
            let ids: Vec<Bson> = chunk.iter().map(|(id, _)| (*id).clone()).collect();
            commands.push((format!("{command} of {} document(s) in {namespace}", chunk.len()), ids, body));
        }
        let database = &database;
        send_all(commands, COMMANDS_IN_FLIGHT, |(doing, ids, body)| async move {
            let reply = database.run_raw_command(body).await.map_err(|e| classify(sink, &doing, &e))?;
            let ids: Vec<&Bson> = ids.iter().collect();
            check_write_reply(sink, &doing, &reply, &ids)
        })
        .await?;
    }
    Ok(())
}

/// Duplicate key: the document already exists.
const DUPLICATE_KEY: i32 = 11000;

/// FerretDB: replace documents by deleting the keys that may exist and inserting the new images.
async fn send_delete_insert(
    client: &Client,
    sink: &str,
    limits: WriteLimits,
    max_ids: usize,
    group: &CollectionWrites,
    snapshot: bool,
) -> Result<(), SinkError> {
    let stale: Vec<Bson> = group
        .ops
        .iter()
        .filter(|op| !matches!(op, WriteOp::Upsert { fresh: true, .. }))
        .map(|op| op.id().clone())
        .collect();
    delete_ids(client, sink, limits, max_ids, group, &stale).await?;
    let mut documents: Vec<(&Bson, &RawDocumentBuf)> = Vec::new();
    for op in &group.ops {
        if let WriteOp::Upsert { id, document, .. } = op {
            documents.push((id, document));
        }
    }
    let existing = insert_documents(client, sink, limits, 1, group, &documents, true).await?;
    if existing.len() > max_ids && snapshot {
        if let Some((low, high)) = integer_id_range(group) {
            // A snapshot copied again over rows the collection already holds: one range delete (one
            // scan) instead of a `$in` delete per `max_ids` duplicates (a scan each, times the ids).
            delete_range(client, sink, group, low, high).await?;
            insert_documents(client, sink, limits, 1, group, &documents, false).await?;
            return Ok(());
        }
    }
    if !existing.is_empty() {
        // A replay: those keys were inserted before. Replace them the same way.
        let ids: Vec<Bson> = existing.iter().map(|&i| documents[i].0.clone()).collect();
        delete_ids(client, sink, limits, max_ids, group, &ids).await?;
        let again: Vec<(&Bson, &RawDocumentBuf)> = existing.iter().map(|&i| documents[i]).collect();
        insert_documents(client, sink, limits, 1, group, &again, false).await?;
    }
    Ok(())
}

/// `[lowest, highest]` `_id` of a group that holds only fresh upserts with integer `_id`s, else `None`.
///
/// Why a snapshot batch may delete that whole range: it holds whole chunks, i.e. every source row of
/// consecutive primary-key ranges at the snapshot position; integer keys order the same in MySQL and
/// in BSON; so the range holds only keys of those chunks, and a document there that the batch does not
/// have is a row the source did not have at the snapshot position (which the copy must not keep).
fn integer_id_range(group: &CollectionWrites) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    for op in &group.ops {
        let id = match op {
            WriteOp::Upsert { id: Bson::Int32(i), fresh: true, .. } => i64::from(*i),
            WriteOp::Upsert { id: Bson::Int64(i), fresh: true, .. } => *i,
            _ => return None,
        };
        range = Some(range.map_or((id, id), |(low, high)| (low.min(id), high.max(id))));
    }
    range
}

/// Deletes every document whose `_id` is in `[low, high]` (one collection scan on FerretDB).
async fn delete_range(
    client: &Client,
    sink: &str,
    group: &CollectionWrites,
    low: i64,
    high: i64,
) -> Result<(), SinkError> {
    let command = doc! {
        "delete": group.collection.as_str(),
        "deletes": [ { "q": { "_id": { "$gte": low, "$lte": high } }, "limit": 0 } ],
        "ordered": false,
    };
    let doing = format!("delete of the _id range {low}..={high} in {}.{}", group.database, group.collection);
    let reply = client.database(&group.database).run_command(command).await.map_err(|e| classify(sink, &doing, &e))?;
    check_write_reply(sink, &doing, &reply, &[])
}

/// Deletes every document whose `_id` is in `ids`, with `$in` statements of at most `max_ids` ids (one
/// collection scan each on FerretDB).
async fn delete_ids(
    client: &Client,
    sink: &str,
    limits: WriteLimits,
    max_ids: usize,
    group: &CollectionWrites,
    ids: &[Bson],
) -> Result<(), SinkError> {
    let namespace = format!("{}.{}", group.database, group.collection);
    let sizes: Vec<usize> = ids.iter().map(|id| id_size(id) + ARRAY_ELEMENT_OVERHEAD).collect();
    for range in chunk_ranges(&sizes, limits.max_ops.min(max_ids.max(1)), limits.max_command_bytes) {
        let chunk: Vec<Bson> = ids[range].to_vec();
        let count = chunk.len();
        let command = doc! {
            "delete": group.collection.as_str(),
            "deletes": [ { "q": { "_id": { "$in": chunk } }, "limit": 0 } ],
            "ordered": false,
        };
        let doing = format!("delete of up to {count} document(s) in {namespace}");
        let reply =
            client.database(&group.database).run_command(command).await.map_err(|e| classify(sink, &doing, &e))?;
        check_write_reply(sink, &doing, &reply, &[])?;
    }
    Ok(())
}

/// Inserts the documents unordered, `in_flight` commands at a time; returns the indexes (into
/// `documents`) that already existed when `tolerate_existing`, and fails on any other refusal.
async fn insert_documents(
    client: &Client,
    sink: &str,
    limits: WriteLimits,
    in_flight: usize,
    group: &CollectionWrites,
    documents: &[(&Bson, &RawDocumentBuf)],
    tolerate_existing: bool,
) -> Result<Vec<usize>, SinkError> {
    let namespace = format!("{}.{}", group.database, group.collection);
    let sizes: Vec<usize> = documents.iter().map(|(_, raw)| raw.as_bytes().len() + ARRAY_ELEMENT_OVERHEAD).collect();
    let per_command = statements_per_command(documents.len(), in_flight, limits.max_ops);
    let mut commands = Vec::new();
    for range in chunk_ranges(&sizes, per_command, limits.max_command_bytes) {
        let start = range.start;
        let chunk = &documents[range];
        if let [(id, raw)] = chunk {
            if raw.as_bytes().len() + ARRAY_ELEMENT_OVERHEAD > limits.max_command_bytes {
                return Err(SinkError::definite(sink, format!("the row with _id {id} of {namespace} is {} bytes, more than the {}-byte command limit: MongoDB cannot store it", raw.as_bytes().len(), limits.max_command_bytes)));
            }
        }
        let mut array = RawArrayBuf::new();
        for (_, raw) in chunk {
            array.push((*raw).clone());
        }
        let mut body = RawDocumentBuf::new();
        body.append("insert", group.collection.as_str());
        body.append("documents", array);
        body.append("ordered", false);
        // Owned, so the futures below borrow nothing per item (the send future must be `Send`).
        let ids: Vec<Bson> = chunk.iter().map(|(id, _)| (*id).clone()).collect();
        commands.push((start, format!("insert of {} document(s) in {namespace}", chunk.len()), ids, body));
    }
    let database = client.database(&group.database);
    let database = &database;
    let existing = send_all(commands, in_flight, |(start, doing, ids, body)| async move {
        let reply = database.run_raw_command(body).await.map_err(|e| classify(sink, &doing, &e))?;
        let mut existing = Vec::new();
        let mut rest = reply.clone();
        if tolerate_existing {
            if let Ok(errors) = reply.get_array("writeErrors") {
                let mut others = Vec::new();
                for e in errors {
                    match e.as_document() {
                        Some(d) if d.get_i32("code").ok() == Some(DUPLICATE_KEY) => {
                            if let Some(i) = d.get_i32("index").ok().and_then(|i| usize::try_from(i).ok()) {
                                existing.push(start + i);
                            }
                        }
                        _ => others.push(e.clone()),
                    }
                }
                if others.is_empty() {
                    rest.remove("writeErrors");
                } else {
                    rest.insert("writeErrors", others);
                }
            }
        }
        let ids: Vec<&Bson> = ids.iter().collect();
        check_write_reply(sink, &doing, &rest, &ids)?;
        Ok(existing)
    })
    .await?;
    let mut existing: Vec<usize> = existing.into_iter().flatten().collect();
    // Commands finish in any order; callers pair these indexes with `documents` in order.
    existing.sort_unstable();
    Ok(existing)
}

/// Sends `commands` with `send`, `in_flight` at a time; their results in the order they finished, or
/// the first error — once every command has finished (see [`COMMANDS_IN_FLIGHT`]: none is abandoned).
async fn send_all<C, R, F, Fut>(commands: Vec<C>, in_flight: usize, send: F) -> Result<Vec<R>, SinkError>
where
    F: FnMut(C) -> Fut,
    Fut: std::future::Future<Output = Result<R, SinkError>>,
{
    stream::iter(commands).map(send).buffer_unordered(in_flight.max(1)).collect::<Vec<_>>().await.into_iter().collect()
}

/// Bytes an `_id` takes in a command, for chunking.
fn id_size(id: &Bson) -> usize {
    match RawDocumentBuf::from_document(&doc! { "_id": id.clone() }) {
        Ok(raw) => raw.as_bytes().len(),
        Err(_) => 64,
    }
}
