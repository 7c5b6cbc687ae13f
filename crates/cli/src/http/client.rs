//! Requests to a running `polyrepl run`'s HTTP address (`polyrepl status`, `snapshot`,
//! `verify --repair --through`).
//!
//! One small HTTP/1.1 request on a local address: written by hand on a tokio socket rather than pulling
//! an HTTP client crate into the binary for it.

use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A command's `--http-addr`, or POLYREPL_METRICS_ADDR (its older name), or an error saying what to pass.
pub fn pipeline_addr(flag: Option<String>) -> Result<String> {
    flag.or_else(crate::config::legacy_http_addr_env).context(
        "no pipeline address given: pass --http-addr HOST:PORT, the address a `polyrepl run --http-addr HOST:PORT` serves",
    )
}

/// POSTs a JSON `body` to `path` on `addr`; returns the status code and the response body.
pub async fn post(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &request, Duration::from_secs(60)).await
}

/// GETs `path` on `addr` within `timeout`; returns the status code and the response body.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, &request, timeout).await
}

/// Sends `request` and reads the whole answer (the server closes the connection).
async fn exchange(addr: &str, request: &str, timeout: Duration) -> Result<(u16, String)> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.with_context(|| {
            format!("cannot reach a running polyrepl at {addr}: is `polyrepl run --http-addr {addr}` running?")
        })?;
        socket.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{addr} did not answer within {} s", timeout.as_secs()))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        bail!("{addr} did not answer with HTTP: {head}");
    };
    Ok((status, body.to_string()))
}
