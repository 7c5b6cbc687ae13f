//! Paging through the primary keys stored for a table, for `polyrepl verify` (rows the source lacks).
//!
//! Invariants:
//! - A scan is one `find` sorted by `_id` with only `_id` projected, read page by page from the same
//!   driver cursor ([`ScanState`] holds it between calls), so the server scans the collection once
//!   (FerretDB answers a range query on `_id` with a full scan: a fresh query per page would make the
//!   listing quadratic).
//! - The cursor handed out is the BSON bytes of `{k: last _id}` ([`crate::naming::id_bytes`]); when it is
//!   not the one the held driver cursor continues (another table, an interleaved scan, a server cursor
//!   that expired), the scan resumes with `find({_id: {$gt: last}})`, which sees every document that
//!   existed for the whole scan exactly once.
//! - An `_id` is turned back into key values with the same mapping that wrote it ([`Mapping::from_bson`]);
//!   a composite `_id` is read field by field by key-column name, so a document written by hand with
//!   the fields in another order still yields its key.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::FindOptions;
use mongodb::{Client, Cursor};
use polyrepl_core::{SinkError, TableId, TableSchema, Value};

use crate::error::classify;
use crate::mapping::Mapping;
use crate::naming::{id_bytes, ID_FIELD};

/// The driver cursor of the scan in progress, and the scan cursor it continues. (In a mutex only to be
/// `Sync`, which the sink's futures need; it is never locked across an await.)
#[derive(Default)]
pub struct ScanState {
    open: std::sync::Mutex<Option<HeldScan>>,
}

type HeldScan = (TableId, Vec<u8>, Cursor<Document>);

/// One page of keys of `table` after `cursor` (see the module notes), and the next cursor.
pub async fn scan_keys(
    state: &mut ScanState,
    client: &Client,
    sink: &str,
    mapping: &Mapping,
    table: &TableSchema,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
    let limit = limit.max(1);
    let doing = format!("scanning the keys of {}", table.id);
    let taken = state.open.lock().unwrap_or_else(|e| e.into_inner()).take();
    let held = match taken {
        Some((id, issued, found)) if id == table.id && cursor.as_ref() == Some(&issued) => Some(found),
        _ => None,
    };
    let mut found = match held {
        Some(found) => found,
        None => open(client, sink, table, cursor.as_deref(), limit, &doing).await?,
    };
    let mut keys = Vec::with_capacity(limit);
    let mut last: Option<Bson> = None;
    while keys.len() < limit {
        let document = match found.try_next().await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok((keys, None)),
            Err(e) if last.is_none() && cursor.is_some() => {
                // The held server cursor may have expired: resume from the cursor's key once.
                tracing::debug!(sink, table = %table.id, error = %e, "scan cursor lost; resuming after the last key");
                found = open(client, sink, table, cursor.as_deref(), limit, &doing).await?;
                match found.try_next().await.map_err(|e| classify(sink, &doing, &e))? {
                    Some(d) => d,
                    None => return Ok((keys, None)),
                }
            }
            Err(e) => return Err(classify(sink, &doing, &e)),
        };
        let Some(id) = document.get(ID_FIELD) else { continue };
        keys.push(key_of_id(mapping, table, id));
        last = Some(id.clone());
    }
    let next = last.map(|id| id_bytes(&id));
    if let Some(issued) = &next {
        *state.open.lock().unwrap_or_else(|e| e.into_inner()) = Some((table.id.clone(), issued.clone(), found));
    }
    Ok((keys, next))
}

/// A `find` of `table`'s `_id`s in order, after the key in `cursor` when given.
async fn open(
    client: &Client,
    sink: &str,
    table: &TableSchema,
    cursor: Option<&[u8]>,
    limit: usize,
    doing: &str,
) -> Result<Cursor<Document>, SinkError> {
    let filter = match cursor {
        None => Document::new(),
        Some(bytes) => {
            let last = Document::from_reader(bytes).ok().and_then(|d| d.get("k").cloned()).ok_or_else(|| {
                SinkError::definite(sink, format!("{doing}: the scan cursor is not one this sink made"))
            })?;
            doc! { ID_FIELD: { "$gt": last } }
        }
    };
    let options = FindOptions::builder()
        .projection(doc! { ID_FIELD: 1 })
        .sort(doc! { ID_FIELD: 1 })
        .batch_size(limit.min(u32::MAX as usize) as u32)
        .build();
    let collection = client.database(&table.id.database).collection::<Document>(&table.id.table);
    collection.find(filter).with_options(options).await.map_err(|e| classify(sink, doing, &e))
}

/// The key values (in key order) an `_id` stands for. A field missing from a composite `_id` reads as
/// NULL, which no source key has (callers cannot address such a document by key).
pub fn key_of_id(mapping: &Mapping, table: &TableSchema, id: &Bson) -> Vec<Value> {
    if let [index] = table.primary_key[..] {
        return vec![mapping.from_bson(&table.columns[index], id)];
    }
    let fields = id.as_document();
    table
        .key_columns()
        .map(|column| match fields.and_then(|d| d.get(&column.name)) {
            Some(bson) => mapping.from_bson(column, bson),
            None => Value::Null,
        })
        .collect()
}
