//! Requests a running pipeline takes while it streams, through the run's HTTP address: "copy these
//! tables again" (`polyrepl snapshot --table`) and "rewrite these rows from the source"
//! (`polyrepl verify --repair --through`).
//!
//! Invariants:
//! - the stream takes requests between events, never by interrupting a read (a binlog read cut short
//!   could lose the event it was reading), so a request waits at most one event or heartbeat;
//! - a copy asked for this way rewrites the table's rows in place, in order with the stream (an online
//!   copy without dropping the table first): readers of the sinks never see the table empty. Rows the
//!   source no longer has are not removed by it (`polyrepl verify --repair` does that);
//! - a repair reads the rows in a consistent snapshot and enters the stream at that snapshot's position,
//!   like a copy's chunk: it can never overwrite a newer change of the stream (`verify --repair`
//!   writing on its own could, while the pipeline runs). The answer comes once the rows are read.

use polyrepl_core::{TableId, Value};
use tokio::sync::{mpsc, oneshot};

/// A request to the running pipeline, with where to send its answer.
pub enum Request {
    /// Copy these tables again; the answer lists the tables whose copy starts (or is already running),
    /// or says why none can.
    Copy { tables: Vec<TableId>, reply: oneshot::Sender<Result<Vec<TableId>, String>> },
    /// Rewrite the rows with these keys from the source (a delete where the source has none); the answer
    /// says, per key, whether the source has the row.
    Repair { table: TableId, keys: Vec<Vec<Value>>, reply: oneshot::Sender<Result<Vec<bool>, String>> },
}

/// The sending side, held by the HTTP server.
#[derive(Clone)]
pub struct Controller(mpsc::Sender<Request>);

/// The receiving side, held by the stream.
pub struct Inbox(Option<mpsc::Receiver<Request>>);

/// A connected pair.
pub fn channel() -> (Controller, Inbox) {
    let (tx, rx) = mpsc::channel(16);
    (Controller(tx), Inbox(Some(rx)))
}

impl Inbox {
    /// An inbox nobody can send to (runs without an HTTP address).
    pub fn none() -> Inbox {
        Inbox(None)
    }

    /// The next waiting request, without waiting.
    pub fn try_next(&mut self) -> Option<Request> {
        self.0.as_mut()?.try_recv().ok()
    }
}

impl Controller {
    /// Asks the pipeline to copy `tables` again; `Err` when it refuses or is gone.
    pub async fn copy(&self, tables: Vec<TableId>) -> Result<Vec<TableId>, String> {
        self.ask(|reply| Request::Copy { tables, reply }).await
    }

    /// Asks the pipeline to rewrite `keys` of `table` from the source, in order with its stream.
    pub async fn repair(&self, table: TableId, keys: Vec<Vec<Value>>) -> Result<Vec<bool>, String> {
        self.ask(|reply| Request::Repair { table, keys, reply }).await
    }

    /// Sends the request `make` builds around its reply channel, and waits for the answer.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Request) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.0.send(make(reply)).await.map_err(|_| {
            "the pipeline is not streaming (it stopped, or is still in its initial snapshot)".to_string()
        })?;
        answer.await.map_err(|_| "the pipeline stopped before answering".to_string())?
    }
}
