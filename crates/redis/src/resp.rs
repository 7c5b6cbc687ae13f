//! The single-server write path in RESP bytes: a lane's commands encoded once, straight from the row
//! values ([`Encoded`]), and sent on a connection of the sink's own ([`LaneConnection`]).
//!
//! Why not redis-rs's `Pipeline` here: it copies every argument into a `Cmd`, then every `Cmd` into the
//! packed request, and hands the request to a connection task that collects a reply value per command.
//! Profiled on the bench's 200,000-row snapshot into Redis, building and sending the pipelines was over
//! a third of polyrepl's CPU, and on a machine where polyrepl, MariaDB and redis-server share the cores
//! that CPU is taken from redis-server (issue #15). The cluster path keeps redis-rs's pipelines: its
//! client routes them by hash slot.
//!
//! Invariants:
//! - [`Encoded::replies`] is the number of top-level replies the server sends for its bytes: one per
//!   command, MULTI's `+OK`, every queued command's `+QUEUED` and EXEC's array included.
//! - The bytes are exactly what redis-rs would send for the same commands (unit test), so the server
//!   sees the same requests as before.
//! - Replies are read in RESP2 (the lane never sends `HELLO 3`); every error reply, also one inside
//!   EXEC's array, fails the send as a `RedisError` built by redis-rs's own parser, so it is classified
//!   like any other Redis error ([`crate::error::classify`]).
//! - A connection whose replies might be out of step — an I/O error, a timeout, an unreadable reply,
//!   an error reply, a send cancelled half way — is dropped; the next send opens a new one (TCP or
//!   Unix socket, `AUTH` and `SELECT` as the URL says). Re-sending a lane's writes is safe: they are
//!   idempotent ([`crate::write`]).

use std::time::Duration;

use polyrepl_core::Value;
use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, RedisResult};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::sync::Mutex;

/// Commands as RESP bytes, and how many replies they get.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub replies: usize,
}

impl Encoded {
    /// Room for about `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Encoded {
        Encoded { bytes: Vec::with_capacity(bytes), replies: 0 }
    }

    /// Starts the command `name` with `args` arguments to follow.
    pub fn command(&mut self, name: &str, args: usize) {
        self.replies += 1;
        self.header(b'*', args + 1);
        self.arg(name.as_bytes());
    }

    /// One argument.
    pub fn arg(&mut self, arg: &[u8]) {
        self.header(b'$', arg.len());
        self.bytes.extend_from_slice(arg);
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// A non-NULL value as one argument: its field bytes ([`crate::mapping::to_field`]).
    pub fn field(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.arg(s.as_bytes()),
            Value::Bytes(b) => self.arg(b),
            v => self.arg(v.text().as_deref().unwrap_or_default().as_bytes()),
        }
    }

    fn header(&mut self, kind: u8, n: usize) {
        // Most lengths have one or two digits: written as bytes, not through a formatter and a copy.
        match n {
            0..=9 => self.bytes.extend_from_slice(&[kind, b'0' + n as u8, b'\r', b'\n']),
            10..=99 => {
                self.bytes.extend_from_slice(&[kind, b'0' + (n / 10) as u8, b'0' + (n % 10) as u8, b'\r', b'\n'])
            }
            _ => {
                self.bytes.push(kind);
                self.bytes.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                self.bytes.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// A byte stream to the server.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One writing connection to a single server, opened on first use and again after a failure.
pub struct LaneConnection {
    info: ConnectionInfo,
    connect_timeout: Duration,
    response_timeout: Duration,
    stream: Mutex<Option<BufStream<Box<dyn Io>>>>,
}

impl LaneConnection {
    /// A connection to the server `info` names (not opened yet).
    pub fn new(info: ConnectionInfo, connect_timeout: Duration, response_timeout: Duration) -> LaneConnection {
        LaneConnection { info, connect_timeout, response_timeout, stream: Mutex::new(None) }
    }

    /// Sends `commands` and reads their replies, within the response timeout; fails on the first error
    /// reply (after reading them all).
    pub async fn send(&self, commands: &Encoded) -> RedisResult<()> {
        let mut guard = self.stream.lock().await;
        // Out of the slot for the exchange, back only once it completed: a send cancelled half way
        // (its batch's other lane failed, its task was aborted) drops the connection rather than leave
        // its replies to the next send; so does a failed one.
        let mut stream = match guard.take() {
            Some(stream) => stream,
            None => self.open().await?,
        };
        let outcome = match tokio::time::timeout(self.response_timeout, exchange(&mut stream, commands)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete reply within {:?}", self.response_timeout),
            ))),
        };
        if outcome.is_ok() {
            *guard = Some(stream);
        }
        outcome
    }

    /// Closes the connection (the next send opens a new one): after another lane of the server failed,
    /// this one's socket is likely dead too.
    pub async fn reset(&self) {
        *self.stream.lock().await = None;
    }

    async fn open(&self) -> RedisResult<BufStream<Box<dyn Io>>> {
        let connecting = async {
            let io: Box<dyn Io> = match self.info.addr() {
                ConnectionAddr::Tcp(host, port) => {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    tcp.set_nodelay(true)?;
                    Box::new(tcp)
                }
                #[cfg(unix)]
                ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                other => {
                    return Err(RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "unsupported address for a writing connection",
                        other.to_string(),
                    )))
                }
            };
            Ok(io)
        };
        let io = tokio::time::timeout(self.connect_timeout, connecting).await.map_err(|_| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting timed out after {:?}", self.connect_timeout),
            ))
        })??;
        let mut stream = BufStream::new(io);
        let settings = self.info.redis_settings();
        let mut hello = Encoded::default();
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => {
                    hello.command("AUTH", 2);
                    hello.arg(user.as_bytes());
                }
                None => hello.command("AUTH", 1),
            }
            hello.arg(password.as_bytes());
        }
        if settings.db() != 0 {
            hello.command("SELECT", 1);
            hello.arg(settings.db().to_string().as_bytes());
        }
        if hello.replies > 0 {
            exchange(&mut stream, &hello).await?;
        }
        Ok(stream)
    }
}

/// Writes `commands`, then reads every reply; the first error reply is the result.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut BufStream<S>, commands: &Encoded) -> RedisResult<()> {
    stream.write_all(&commands.bytes).await?;
    stream.flush().await?;
    let mut first_error = None;
    let mut line = Vec::with_capacity(64);
    for _ in 0..commands.replies {
        read_reply(stream, &mut line, &mut first_error).await?;
    }
    first_error.map_or(Ok(()), Err)
}

/// Reads one RESP2 reply, keeping the first error reply found in it in `first_error`.
async fn read_reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufStream<S>,
    line: &mut Vec<u8>,
    first_error: &mut Option<RedisError>,
) -> RedisResult<()> {
    // Arrays nest (EXEC's holds a reply per queued command): count what is still to read.
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        line.clear();
        if stream.read_until(b'\n', line).await? == 0 {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(unreadable(line));
        }
        match line[0] {
            b'+' | b':' => {}
            b'-' => {
                if first_error.is_none() {
                    *first_error = Some(match redis::parse_redis_value(line)?.extract_error() {
                        Err(e) => e,
                        Ok(_) => unreadable(line),
                    });
                }
            }
            b'$' => {
                let len = length(line)?;
                if len >= 0 {
                    let mut skip = vec![0; len as usize + 2];
                    stream.read_exact(&mut skip).await?;
                }
            }
            b'*' => pending += length(line)?.max(0) as usize,
            _ => return Err(unreadable(line)),
        }
    }
    Ok(())
}

/// The length in a `$N` or `*N` line (`-1`: null).
fn length(line: &[u8]) -> RedisResult<i64> {
    std::str::from_utf8(&line[1..line.len() - 2]).ok().and_then(|n| n.parse().ok()).ok_or_else(|| unreadable(line))
}

fn unreadable(line: &[u8]) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unreadable reply from the server",
        String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_what_redis_rs_packs() {
        let mut ours = Encoded::default();
        ours.command("MULTI", 0);
        ours.command("HSET", 5);
        ours.arg(b"k:1");
        ours.arg(b"a");
        ours.field(&Value::Int(-42));
        ours.arg(b"b");
        ours.field(&Value::Bytes(vec![0, 13, 10, 255]));
        ours.command("SET", 2);
        ours.arg(&[b'x'; 10]);
        ours.arg(&[b'y'; 1234]);
        ours.command("EXEC", 0);
        let mut theirs = redis::pipe();
        theirs.atomic().cmd("HSET").arg("k:1").arg("a").arg("-42").arg("b").arg(&[0u8, 13, 10, 255][..]);
        theirs.cmd("SET").arg(&[b'x'; 10][..]).arg(&[b'y'; 1234][..]);
        assert_eq!(ours.bytes, theirs.get_packed_pipeline());
        assert_eq!(ours.replies, 4, "+OK, two +QUEUED, EXEC's array");
    }

    /// Replies as a server sends them, through a socket pair.
    async fn replies(server_says: &[u8], count: usize) -> RedisResult<()> {
        let (ours, mut server) = tokio::io::duplex(4096);
        server.write_all(server_says).await.unwrap();
        let mut stream = BufStream::new(ours);
        let mut first_error = None;
        let mut line = Vec::new();
        for _ in 0..count {
            read_reply(&mut stream, &mut line, &mut first_error).await?;
        }
        first_error.map_or(Ok(()), Err)
    }

    #[tokio::test]
    async fn replies_are_read_whole_and_errors_found_even_inside_exec() {
        replies(b"+OK\r\n:1\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n*1\r\n+x\r\n*-1\r\n", 6).await.unwrap();
        let e = replies(b"+OK\r\n+QUEUED\r\n*2\r\n:1\r\n-WRONGTYPE Operation against a key\r\n", 3).await.unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
        let e = replies(b"-NOAUTH Authentication required.\r\n:1\r\n", 2).await.unwrap_err();
        assert_eq!(e.code(), Some("NOAUTH"), "the first error wins: {e}");
        assert_eq!(replies(b"?what\r\n", 1).await.unwrap_err().kind(), ErrorKind::Parse);
    }
}
