//! Rows left out of Cassandra under `--on-unmappable dead-letter` ([`polyrepl_core::unmappable`]):
//! table `polyrepl.polyrepl_dead_letters` `(pipeline text, id text, sink text, source_table text,
//! key text, op text, position text, gtid text, seq int, reason text, record text, at timestamp,
//! PRIMARY KEY ((pipeline), id))`, one row per row left out.
//!
//! Invariants:
//! - Written after the batch's data and before its checkpoint, so a stored checkpoint means the
//!   batch's dead letters are stored too.
//! - `id` is stable per change ([`polyrepl_core::DeadLetter::id`]): a replayed batch rewrites the same
//!   row. `record` (the whole record as JSON) is what is read back; the other columns are for people.

use polyrepl_core::{DeadLetter, SinkError};
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

use crate::checkpoint::{now_micros, CHECKPOINT_KEYSPACE};
use crate::ddl::create_keyspace;
use crate::error::classify;

/// Table holding the dead-letter records of every pipeline.
pub const DEAD_LETTER_TABLE: &str = "polyrepl_dead_letters";

/// Where the records go, for messages.
pub const PLACE: &str = "the Cassandra table polyrepl.polyrepl_dead_letters";

/// Creates the keyspace and table if absent.
pub async fn ensure(session: &Session, sink: &str, replication: &str) -> Result<(), SinkError> {
    create_keyspace(session, sink, CHECKPOINT_KEYSPACE, replication).await?;
    let cql = format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_KEYSPACE}.{DEAD_LETTER_TABLE} (pipeline text, id text, sink text, \
         source_table text, key text, op text, position text, gtid text, seq int, reason text, record text, \
         at timestamp, PRIMARY KEY ((pipeline), id))"
    );
    session
        .query_unpaged(cql, &[])
        .await
        .map_err(|e| classify(sink, &format!("creating {CHECKPOINT_KEYSPACE}.{DEAD_LETTER_TABLE}"), &e))?;
    Ok(())
}

/// Stores `letters`.
pub async fn store(session: &Session, sink: &str, letters: &[DeadLetter]) -> Result<(), SinkError> {
    let cql = format!(
        "INSERT INTO {CHECKPOINT_KEYSPACE}.{DEAD_LETTER_TABLE} (pipeline, id, sink, source_table, key, op, position, \
         gtid, seq, reason, record, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    for letter in letters {
        let values = (
            &letter.pipeline,
            letter.id(),
            &letter.sink,
            letter.table.to_string(),
            letter.key.to_string(),
            format!("{:?}", letter.op).to_lowercase(),
            format!("{}:{}", letter.position.file, letter.position.offset),
            letter.position.gtid.clone(),
            letter.seq as i32,
            &letter.reason,
            letter.to_json(),
            CqlTimestamp(now_micros() / 1000),
        );
        session.query_unpaged(cql.as_str(), values).await.map_err(|e| {
            classify(
                sink,
                &format!("storing the dead letter of {} in {CHECKPOINT_KEYSPACE}.{DEAD_LETTER_TABLE}", letter.table),
                &e,
            )
        })?;
    }
    Ok(())
}

/// The records `pipeline` stored.
pub async fn load(session: &Session, sink: &str, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
    let doing = format!("reading the dead letters of pipeline '{pipeline}'");
    let result = session
        .query_unpaged(
            format!("SELECT record FROM {CHECKPOINT_KEYSPACE}.{DEAD_LETTER_TABLE} WHERE pipeline = ?"),
            (pipeline,),
        )
        .await
        .map_err(|e| classify(sink, &doing, &e))?;
    let rows = result.into_rows_result().map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let mut letters = Vec::new();
    for row in rows.rows::<(Option<String>,)>().map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))? {
        let (record,) = row.map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
        let record = record.unwrap_or_default();
        letters.push(DeadLetter::from_json(&record).map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?);
    }
    Ok(letters)
}
