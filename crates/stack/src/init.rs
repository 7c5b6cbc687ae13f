//! `stack init`: the demo schema in every service, idempotent (safe to run again).
//!
//! The shapes follow the sinks' type mapping, so that `polyrepl run` finds what it would create itself:
//! MySQL `polyrepl_demo.events(id BIGINT AUTO_INCREMENT PK, ts DATETIME(6), uuid CHAR(36))`,
//! MongoDB collection `polyrepl_demo.events` with an index on `ts`, Cassandra table
//! `polyrepl_demo.events(id bigint PK, ts text, uuid text)` (DATETIME(6) keeps microseconds as text).

use crate::{Service, StackConfig, StackError};
use std::time::Duration;

pub const DEMO_DATABASE: &str = "polyrepl_demo";
pub const DEMO_TABLE: &str = "events";

/// Creates the demo schema in each configured service; returns one line per service.
pub async fn init(cfg: &StackConfig) -> Result<Vec<String>, StackError> {
    let mut done = Vec::new();
    for &s in &cfg.services {
        let line = match s {
            Service::Mysql => init_mysql(cfg).await?,
            Service::Mongo | Service::MongoJava => init_mongo(cfg, s).await?,
            Service::Redis => "redis: nothing to create (keys appear as rows replicate)".to_string(),
            Service::Cassandra => init_cassandra(cfg).await?,
            Service::Kafka => "kafka: nothing to create (topics appear as the sink writes)".to_string(),
        };
        done.push(line);
    }
    Ok(done)
}

async fn init_mysql(cfg: &StackConfig) -> Result<String, StackError> {
    use mysql_async::prelude::Queryable;
    let err = |e: mysql_async::Error| {
        StackError::service("mysql", format!("cannot create the demo schema at {}: {e}", cfg.url(Service::Mysql)))
    };
    let opts = mysql_async::Opts::from_url(&cfg.mysql_connect_url()).map_err(|e| StackError::service("mysql", e))?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(err)?;
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {DEMO_DATABASE}")).await.map_err(err)?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {DEMO_DATABASE}.{DEMO_TABLE} (\
         id BIGINT AUTO_INCREMENT PRIMARY KEY, ts DATETIME(6) NOT NULL, uuid CHAR(36) NOT NULL\
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    ))
    .await
    .map_err(err)?;
    let _ = conn.disconnect().await;
    Ok(format!("mysql: database {DEMO_DATABASE}, table {DEMO_TABLE}"))
}

/// The demo collection in a MongoDB-wire service (`mongodb`, or the second server `mongo-java`).
async fn init_mongo(cfg: &StackConfig, service: Service) -> Result<String, StackError> {
    use mongodb::bson::doc;
    let url = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=5000&directConnection=true", cfg.port(service));
    let err = |e: mongodb::error::Error| {
        StackError::service(service.name(), format!("cannot create the demo collection at {url}: {e}"))
    };
    let client = mongodb::Client::with_uri_str(&url).await.map_err(err)?;
    let db = client.database(DEMO_DATABASE);
    let existing = db.list_collection_names().await.map_err(err)?;
    if !existing.iter().any(|c| c == DEMO_TABLE) {
        db.create_collection(DEMO_TABLE).await.map_err(err)?;
    }
    db.run_command(doc! {"createIndexes": DEMO_TABLE, "indexes": [{"key": {"ts": 1}, "name": "ts_1"}]})
        .await
        .map_err(err)?;
    Ok(format!("{service}: collection {DEMO_DATABASE}.{DEMO_TABLE}, index ts_1"))
}

async fn init_cassandra(cfg: &StackConfig) -> Result<String, StackError> {
    let addr = format!("127.0.0.1:{}", cfg.cassandra_port);
    let err = |e: String| StackError::service("cassandra", format!("cannot create the demo keyspace at {addr}: {e}"));
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&addr)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| err(e.to_string()))?;
    for cql in [
        format!("CREATE KEYSPACE IF NOT EXISTS {DEMO_DATABASE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        format!("CREATE TABLE IF NOT EXISTS {DEMO_DATABASE}.{DEMO_TABLE} (id bigint PRIMARY KEY, ts text, uuid text)"),
    ] {
        session.query_unpaged(cql, &[]).await.map_err(|e| err(e.to_string()))?;
    }
    Ok(format!("cassandra: keyspace {DEMO_DATABASE}, table {DEMO_TABLE}"))
}
