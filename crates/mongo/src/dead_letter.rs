//! Rows left out of MongoDB under `--on-unmappable dead-letter` ([`polyrepl_core::unmappable`]):
//! database `polyrepl`, collection `_polyrepl_dead_letters`, one document per row left out:
//! `{_id: "<pipeline>|<record id>", pipeline, sink, table: "db.table", key: <key as JSON text>, op,
//! position: "file:offset", gtid, seq, reason, record: <the whole record as JSON text>, at: <date>}`.
//!
//! Invariants:
//! - Written after the batch's data and before its checkpoint (FerretDB has no multi-document
//!   transactions), so a stored checkpoint means the batch's dead letters are stored too.
//! - The `_id` is stable per change ([`polyrepl_core::DeadLetter::id`]): a replayed batch replaces
//!   the same document.
//! - `record` is the source of truth for reading back; the other fields are for people and queries.

use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::Client;
use polyrepl_core::{DeadLetter, SinkError};

use crate::checkpoint::CHECKPOINT_DATABASE;
use crate::error::classify;

/// Collection holding the dead-letter records of every pipeline.
pub const DEAD_LETTER_COLLECTION: &str = "_polyrepl_dead_letters";

/// Where the records go, for messages.
pub const PLACE: &str = "the MongoDB collection polyrepl._polyrepl_dead_letters";

fn collection(client: &Client) -> mongodb::Collection<Document> {
    client.database(CHECKPOINT_DATABASE).collection(DEAD_LETTER_COLLECTION)
}

/// Stores `letters`, replacing records of the same changes.
pub async fn store(client: &Client, sink: &str, letters: &[DeadLetter]) -> Result<(), SinkError> {
    for letter in letters {
        let id = format!("{}|{}", letter.pipeline, letter.id());
        let document = doc! {
            "_id": &id,
            "pipeline": &letter.pipeline,
            "sink": &letter.sink,
            "table": letter.table.to_string(),
            "key": letter.key.to_string(),
            "op": format!("{:?}", letter.op).to_lowercase(),
            "position": format!("{}:{}", letter.position.file, letter.position.offset),
            "gtid": letter.position.gtid.clone(),
            "seq": i64::from(letter.seq),
            "reason": &letter.reason,
            "record": letter.to_json(),
            "at": BsonDateTime::now(),
        };
        collection(client).replace_one(doc! { "_id": &id }, document).upsert(true).await.map_err(|e| {
            classify(
                sink,
                &format!(
                    "storing the dead letter of {} in {CHECKPOINT_DATABASE}.{DEAD_LETTER_COLLECTION}",
                    letter.table
                ),
                &e,
            )
        })?;
    }
    Ok(())
}

/// The records `pipeline` stored.
pub async fn load(client: &Client, sink: &str, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
    let doing = format!("reading the dead letters of pipeline '{pipeline}'");
    let documents: Vec<Document> = collection(client)
        .find(doc! { "pipeline": pipeline })
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .try_collect()
        .await
        .map_err(|e| classify(sink, &doing, &e))?;
    documents
        .iter()
        .map(|d| {
            let text = d.get_str("record").map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
            DeadLetter::from_json(text).map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))
        })
        .collect()
}
