//! A raw MongoDB wire-protocol handshake, to tell "nothing listens there" from "something that is not
//! MongoDB listens there" before the driver hides both behind a server-selection timeout.
//!
//! Invariants:
//! - Sends one OP_MSG `hello` and reads only the 16-byte reply header; never writes anything else.
//!   Any well-formed reply header counts, even one carrying a command error.
//! - A reply header with our `responseTo` and opcode OP_MSG/OP_REPLY means MongoDB (or a compatible
//!   server such as FerretDB). Anything else that answers is "not MongoDB" — a definite error.
//! - Bounded by `timeout` at every step; never hangs.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probed address turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A MongoDB wire-protocol server answered.
    MongoDb,
    /// Nothing could be reached there (refused, unresolvable, timed out connecting).
    Unreachable(String),
    /// Something answered (or hung up) but not as a MongoDB server; the text says what was seen.
    NotMongoDb(String),
}

const OP_REPLY: i32 = 1;
const OP_MSG: i32 = 2013;
/// Our request id; its bytes contain no newline, so line-based servers do not mistake it for a command.
const REQUEST_ID: i32 = 0x504C_5931;

fn hello_message() -> Vec<u8> {
    let body = mongodb::bson::to_vec(&mongodb::bson::doc! { "hello": 1, "$db": "admin" }).unwrap_or_default();
    let length = (16 + 4 + 1 + body.len()) as i32;
    let mut msg = Vec::with_capacity(length as usize);
    msg.extend_from_slice(&length.to_le_bytes());
    msg.extend_from_slice(&REQUEST_ID.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&OP_MSG.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes()); // flag bits
    msg.push(0); // section kind 0: body
    msg.extend_from_slice(&body);
    msg
}

/// Probes `host:port` with a MongoDB handshake, each step bounded by `timeout`.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let address = format!("{host}:{port}");
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => return ProbeOutcome::Unreachable(format!("connecting to {address} timed out after {timeout:?}")),
        Ok(Err(e)) => return ProbeOutcome::Unreachable(format!("cannot connect to {address}: {e}")),
        Ok(Ok(s)) => s,
    };
    if let Err(e) = tokio::time::timeout(timeout, stream.write_all(&hello_message()))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
    {
        return ProbeOutcome::Unreachable(format!("sending a handshake to {address} failed: {e}"));
    }
    let mut header = [0u8; 16];
    let mut filled = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while filled < header.len() {
        match tokio::time::timeout_at(deadline, stream.read(&mut header[filled..])).await {
            Err(_) => {
                return ProbeOutcome::NotMongoDb(if filled == 0 {
                    let guess = identify_silent_server(host, port).await;
                    format!("{address} accepted a connection but did not answer the MongoDB handshake within {timeout:?}{guess}")
                } else {
                    format!("{address} answered the MongoDB handshake with {}", preview(&header[..filled]))
                })
            }
            Ok(Err(e)) => {
                return ProbeOutcome::NotMongoDb(format!(
                    "{address} broke the connection instead of answering the MongoDB handshake ({e}); a server requiring TLS does this too: add tls=true to the URL"
                ))
            }
            Ok(Ok(0)) => {
                return ProbeOutcome::NotMongoDb(if filled == 0 {
                    format!("{address} closed the connection without answering the MongoDB handshake (not a MongoDB server, or one that requires TLS: then add tls=true to the URL)")
                } else {
                    format!("{address} answered the MongoDB handshake with {}", preview(&header[..filled]))
                })
            }
            Ok(Ok(n)) => filled += n,
        }
    }
    let field = |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (length, response_to, opcode) = (field(0), field(8), field(12));
    if response_to == REQUEST_ID && (opcode == OP_MSG || opcode == OP_REPLY) && (16..=64 << 20).contains(&length) {
        ProbeOutcome::MongoDb
    } else {
        ProbeOutcome::NotMongoDb(format!("{address} answered the MongoDB handshake with {}", preview(&header)))
    }
}

/// A server that stays silent on a MongoDB handshake may be line-based: Redis, for one, waits for a
/// newline that its C-string scan never finds past the handshake's NUL bytes. One inline `PING` on a
/// fresh connection tells; the answer only improves the error message.
async fn identify_silent_server(host: &str, port: u16) -> &'static str {
    let attempt = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 16];
        let n = stream.read(&mut reply).await.ok()?;
        Some(reply[..n].to_vec())
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Ok(Some(reply))
            if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") || reply.starts_with(b"-ERR") =>
        {
            " — it answers the Redis protocol: this URL points at a Redis server"
        }
        _ => "",
    }
}

/// Describes the first bytes a non-MongoDB server sent, recognising common protocols.
fn preview(bytes: &[u8]) -> String {
    let text: String = bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
    let guess = match bytes.first() {
        Some(b'-' | b'+' | b'$' | b'*' | b':') => " — that is the Redis protocol: this URL points at a Redis server",
        _ if bytes.starts_with(b"HTTP/") => " — that is HTTP: this URL points at a web server",
        _ => "",
    };
    format!("bytes that are not MongoDB's wire protocol: {text:?}{guess}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_redis_replies() {
        assert!(preview(b"-ERR unknown").contains("Redis"));
        assert!(preview(b"HTTP/1.1 400").contains("HTTP"));
    }

    #[test]
    fn hello_message_has_no_newline_in_its_header() {
        let msg = hello_message();
        assert!(!msg[..16].contains(&b'\n'));
        assert_eq!(i32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize, msg.len());
    }
}
