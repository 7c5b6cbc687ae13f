//! Connecting: wrong port is a quick transient error, a server that is not MongoDB a clear definite one.

mod common;

use polyrepl_core::Sink;
use polyrepl_mongo::MongoSink;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn connects_and_names_itself_without_credentials() {
    common::on_each_server(|server| async move {
        let sink = MongoSink::connect(&server.url, "names").await.expect("server under test reachable");
        assert!(sink.name().starts_with("mongodb://"), "{}", sink.name());
        assert!(!sink.name().contains('@') && !sink.name().contains('?'));
        assert!(sink.server().max_wire_version > 0);
        eprintln!("{}: {:?}", server.label, sink.server());
    })
    .await;
}

#[tokio::test]
async fn a_wrong_port_is_a_quick_transient_error() {
    // A port that nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let url = format!("mongodb://user:secret@127.0.0.1:{port}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000");
    let err = MongoSink::connect(&url, "p").await.err().expect("nothing listens there");
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_not_mongodb_is_a_clear_definite_error() {
    // Something that speaks HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    let url = format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000");
    let started = Instant::now();
    let err = MongoSink::connect(&url, "p").await.err().expect("not MongoDB");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not a MongoDB server") && err.to_string().contains("HTTP"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_redis_url_is_a_clear_definite_error() {
    let address = std::env::var("POLYREPL_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".to_string());
    if std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(1)).is_err() {
        eprintln!("!!! SKIPPED: no Redis server at {address} (set POLYREPL_REDIS_ADDR); the HTTP case still covers foreign servers");
        return;
    }
    let started = Instant::now();
    let err =
        MongoSink::connect(&format!("mongodb://{address}/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"), "p")
            .await
            .err()
            .expect("Redis is not MongoDB");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not a MongoDB server") && err.to_string().contains("Redis"), "{err}");
    eprintln!("Redis URL gives: {err} (after {:?})", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));
}
