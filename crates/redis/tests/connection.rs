//! Connecting: the error kinds the pipeline relies on, and names without secrets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use polyrepl_core::Sink;
use polyrepl_redis::{RedisOptions, RedisSink};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn nothing_listening_is_transient_and_quick() {
    // Bind then drop a listener: a port on which nothing listens.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = RedisSink::connect(&format!("redis://127.0.0.1:{port}"), "p", RedisOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// A server that closes the connection on Redis bytes, as MongoDB does.
#[tokio::test]
async fn a_server_that_hangs_up_is_not_redis() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let err = RedisSink::connect(&format!("redis://127.0.0.1:{port}"), "p", RedisOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not a Redis server"), "{err}");
}

#[tokio::test]
async fn a_web_server_is_not_redis() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let err = RedisSink::connect(&format!("redis://127.0.0.1:{port}"), "p", RedisOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("HTTP"), "{err}");
}

#[tokio::test]
async fn a_silent_server_is_refused_within_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let options = RedisOptions { connect_timeout: Duration::from_millis(300), ..Default::default() };
    let err = RedisSink::connect(&format!("redis://127.0.0.1:{port}"), "p", options).await.err().expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unsupported_urls_are_refused_clearly() {
    for (url, says) in [
        ("rediss+cluster://127.0.0.1:7000", "TLS"),
        ("redis+cluster://127.0.0.1:7000/3", "database 0 only"),
        ("rediss://127.0.0.1:6379", "TLS"),
        ("http://127.0.0.1:6379", "not a Redis URL"),
        ("redis://127.0.0.1:6379/0?ttl=0", "ttl"),
    ] {
        let err = RedisSink::connect(url, "p", RedisOptions::default()).await.err().expect(url);
        assert!(!err.is_transient(), "{url}: {err}");
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
}

/// A cluster URL pointing at a standalone server says so.
#[tokio::test]
async fn a_cluster_url_at_a_standalone_server_is_refused() {
    let address = url().trim_start_matches("redis://").split(['/', '?']).next().unwrap().to_string();
    let err = RedisSink::connect(&format!("redis+cluster://{address}"), "p", RedisOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not a cluster node"), "{err}");
}

#[tokio::test]
async fn the_name_has_no_credentials() {
    let sink = RedisSink::connect(&url(), &unique("p"), RedisOptions::default()).await.unwrap();
    assert_eq!(sink.name(), "redis://127.0.0.1:6379");
    let with_db = RedisSink::connect(&format!("{}/1", url()), &unique("p"), RedisOptions::default()).await.unwrap();
    assert_eq!(with_db.name(), "redis://127.0.0.1:6379/1");
}

/// The MongoDB-protocol server of the stack (FerretDB/MongoDB, `POLYREPL_MONGO_URL`, default port 1800)
/// given as a Redis URL.
#[tokio::test]
async fn the_mongodb_port_is_not_redis() {
    let mongo = std::env::var("POLYREPL_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:1800".into());
    let address = mongo.trim_start_matches("mongodb://").split(['/', '?']).next().unwrap().to_string();
    if tokio::net::TcpStream::connect(&address).await.is_err() {
        eprintln!("SKIPPED: no MongoDB-protocol server at {address} (start it with polyrepl stack up, or set POLYREPL_MONGO_URL)");
        return;
    }
    let started = Instant::now();
    let err =
        RedisSink::connect(&format!("redis://{address}"), "p", RedisOptions::default()).await.err().expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not a Redis server"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
