//! The pipeline's checkpoint stored in Cassandra itself: table `polyrepl.polyrepl_checkpoints`
//! `(pipeline text PRIMARY KEY, checkpoint text, position text, updated timestamp)`, one row per pipeline.
//!
//! Invariants:
//! - Written only after every data write of the batch succeeded (Cassandra has no transaction spanning
//!   partitions). A crash in between leaves the previous checkpoint, so the batch is replayed — harmless,
//!   because every data write carries a timestamp derived from its source position
//!   ([`crate::timestamp`]): a replayed write can never overwrite a newer one.
//! - Checkpoint writes carry a client timestamp that strictly increases within the process (wall clock
//!   in microseconds, at least the previous one + 1), so two checkpoints written in the same microsecond
//!   still land in order.
//! - The JSON text is the single source of truth; `position` and `updated` are for humans.

use std::time::{SystemTime, UNIX_EPOCH};

use polyrepl_core::{Checkpoint, SinkError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::ddl::create_keyspace;
use crate::error::classify;

/// Keyspace holding polyrepl's own state.
pub const CHECKPOINT_KEYSPACE: &str = "polyrepl";
/// Table holding one checkpoint row per pipeline.
pub const CHECKPOINT_TABLE: &str = "polyrepl_checkpoints";

/// Creates the keyspace and table if absent.
pub async fn ensure(session: &Session, sink: &str, replication: &str) -> Result<(), SinkError> {
    create_keyspace(session, sink, CHECKPOINT_KEYSPACE, replication).await?;
    let cql = format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE} \
         (pipeline text PRIMARY KEY, checkpoint text, position text, updated timestamp)"
    );
    session
        .query_unpaged(cql, &[])
        .await
        .map_err(|e| classify(sink, &format!("creating {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE}"), &e))?;
    Ok(())
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The statement [`store`] runs (prepare it once).
pub fn store_cql() -> String {
    format!(
        "INSERT INTO {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE} (pipeline, checkpoint, position, updated) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
    )
}

/// Stores `checkpoint` for `pipeline` with write timestamp `timestamp` (microseconds), replacing the
/// previous one; `statement` is [`store_cql`] prepared.
pub async fn store(
    session: &Session,
    sink: &str,
    statement: &PreparedStatement,
    pipeline: &str,
    checkpoint: &Checkpoint,
    timestamp: i64,
) -> Result<(), SinkError> {
    let position = format!("{}:{}", checkpoint.position.file, checkpoint.position.offset);
    session
        .execute_unpaged(statement, (pipeline, checkpoint.to_json(), &position, CqlTimestamp(timestamp / 1000), timestamp))
        .await
        .map_err(|e| {
            classify(sink, &format!("storing checkpoint {position} of pipeline '{pipeline}' in {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE}"), &e)
        })?;
    Ok(())
}

/// True when the checkpoint table exists.
async fn table_exists(session: &Session, sink: &str) -> Result<bool, SinkError> {
    let result = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (CHECKPOINT_KEYSPACE, CHECKPOINT_TABLE),
        )
        .await
        .map_err(|e| classify(sink, "looking for the checkpoint table", &e))?
        .into_rows_result()
        .map_err(|e| SinkError::definite(sink, format!("looking for the checkpoint table: {e}")))?;
    Ok(result.rows_num() > 0)
}

/// The checkpoint stored for `pipeline`, if any (none when the table does not exist yet).
pub async fn load(session: &Session, sink: &str, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
    if !table_exists(session, sink).await? {
        return Ok(None);
    }
    let doing = format!("reading the checkpoint of pipeline '{pipeline}'");
    let result = session
        .query_unpaged(
            format!("SELECT checkpoint FROM {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE} WHERE pipeline = ?"),
            (pipeline,),
        )
        .await
        .map_err(|e| classify(sink, &doing, &e))?
        .into_rows_result()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let row = result
        .maybe_first_row::<(Option<String>,)>()
        .map_err(|e| SinkError::definite(sink, format!("{doing}: {e}")))?;
    let Some((text,)) = row else { return Ok(None) };
    let text = text.ok_or_else(|| {
        SinkError::definite(sink, format!("the checkpoint row of pipeline '{pipeline}' in {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE} has no checkpoint text: fix or delete it"))
    })?;
    Checkpoint::from_json(&text).map(Some).map_err(|e| {
        SinkError::definite(sink, format!("the checkpoint of pipeline '{pipeline}' in {CHECKPOINT_KEYSPACE}.{CHECKPOINT_TABLE} is not valid ({e}): fix or delete it"))
    })
}
