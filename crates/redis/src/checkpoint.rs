//! The pipeline's checkpoint stored in Redis itself: key `polyrepl:checkpoint:<pipeline>`, a STRING
//! holding [`Checkpoint::to_json`].
//!
//! Invariants:
//! - Single server: written by the `SET` at the end of the batch's (last) MULTI/EXEC transaction,
//!   together with the batch's data: both land or neither does. Redis Cluster: written alone, after
//!   every hash slot's transaction of the batch succeeded (see [`crate::write`]). Either way a stored
//!   checkpoint means all of its batch is stored.
//! - The JSON text is the single source of truth; an unreadable checkpoint is a definite error that
//!   names the key, never silently ignored (ignoring it would replay from the start).

use polyrepl_core::{Checkpoint, SinkError};
use redis::aio::ConnectionLike;

use crate::error::classify;
use crate::naming::checkpoint_key;

/// The checkpoint stored for `pipeline`, if any.
pub async fn load<C: ConnectionLike + Send>(
    conn: &mut C,
    sink: &str,
    pipeline: &str,
) -> Result<Option<Checkpoint>, SinkError> {
    let key = checkpoint_key(pipeline);
    let text: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await
        .map_err(|e| classify(sink, &format!("reading the checkpoint of pipeline '{pipeline}' (GET {key})"), &e))?;
    let Some(text) = text else { return Ok(None) };
    let parsed = std::str::from_utf8(&text)
        .map_err(|e| e.to_string())
        .and_then(|t| Checkpoint::from_json(t).map_err(|e| e.to_string()));
    parsed.map(Some).map_err(|e| {
        SinkError::definite(
            sink,
            format!("the checkpoint of pipeline '{pipeline}' at key {key} is not valid ({e}): fix or delete it"),
        )
    })
}
