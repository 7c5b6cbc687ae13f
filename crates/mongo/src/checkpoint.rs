//! The pipeline's checkpoint stored in the sink itself: database `polyrepl`, collection
//! `_polyrepl_checkpoints`, one document per pipeline:
//! `{_id: <pipeline>, checkpoint: <core::Checkpoint as JSON text>, position: "file:offset", updated: <date>}`.
//!
//! Invariants:
//! - Written only after every data write of the batch succeeded (FerretDB has no multi-document
//!   transactions). A crash in between leaves the previous checkpoint, so the batch is replayed — harmless,
//!   because its upserts and deletes of full row images are idempotent and batches are applied in order.
//! - The JSON text is the single source of truth; `position` and `updated` are for humans.

use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::Client;
use polyrepl_core::{Checkpoint, SinkError};

use crate::error::classify;

/// Database holding polyrepl's own state.
pub const CHECKPOINT_DATABASE: &str = "polyrepl";
/// Collection holding one checkpoint document per pipeline.
pub const CHECKPOINT_COLLECTION: &str = "_polyrepl_checkpoints";

fn collection(client: &Client) -> mongodb::Collection<Document> {
    client.database(CHECKPOINT_DATABASE).collection(CHECKPOINT_COLLECTION)
}

/// Stores `checkpoint` for `pipeline`, replacing the previous one.
pub async fn store(client: &Client, sink: &str, pipeline: &str, checkpoint: &Checkpoint) -> Result<(), SinkError> {
    let position = format!("{}:{}", checkpoint.position.file, checkpoint.position.offset);
    let document = doc! {
        "_id": pipeline,
        "checkpoint": checkpoint.to_json(),
        "position": position.as_str(),
        "updated": BsonDateTime::now(),
    };
    collection(client)
        .replace_one(doc! { "_id": pipeline }, document)
        .upsert(true)
        .await
        .map_err(|e| classify(sink, &format!("storing checkpoint {position} of pipeline '{pipeline}' in {CHECKPOINT_DATABASE}.{CHECKPOINT_COLLECTION}"), &e))?;
    Ok(())
}

/// The checkpoint stored for `pipeline`, if any.
pub async fn load(client: &Client, sink: &str, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
    let found = collection(client)
        .find_one(doc! { "_id": pipeline })
        .await
        .map_err(|e| classify(sink, &format!("reading the checkpoint of pipeline '{pipeline}'"), &e))?;
    let Some(document) = found else { return Ok(None) };
    let text = document.get_str("checkpoint").map_err(|_| {
        SinkError::definite(sink, format!("the checkpoint document of pipeline '{pipeline}' in {CHECKPOINT_DATABASE}.{CHECKPOINT_COLLECTION} has no 'checkpoint' string: fix or delete it"))
    })?;
    Checkpoint::from_json(text).map(Some).map_err(|e| {
        SinkError::definite(sink, format!("the checkpoint of pipeline '{pipeline}' in {CHECKPOINT_DATABASE}.{CHECKPOINT_COLLECTION} is not valid ({e}): fix or delete it"))
    })
}
