//! Requests to a running `polyrepl run`'s HTTP address (`polyrepl snapshot`, `verify --repair --through`).
//!
//! One small HTTP/1.1 POST on a local address: written by hand on a tokio socket rather than pulling an
//! HTTP client crate into the binary for it.

use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs a JSON `body` to `path` on `addr`; returns the status code and the response body.
pub async fn post(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.with_context(|| {
            format!("cannot reach a running polyrepl at {addr}: is `polyrepl run --metrics-addr {addr}` running?")
        })?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .with_context(|| format!("{addr} did not answer within 60 s"))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        bail!("{addr} did not answer with HTTP: {head}");
    };
    Ok((status, body.to_string()))
}
