//! Asks each server a real question: readiness and `status` rest on an answer, not an open port.

use crate::{Service, StackConfig};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Queries the service once and returns its version string, or why it did not answer.
pub async fn version(cfg: &StackConfig, service: Service) -> Result<String, String> {
    let port = cfg.port(service);
    let fut = async {
        match service {
            Service::Mysql => mysql_version(cfg).await,
            Service::Mongo => mongo_version(port).await,
            Service::Redis => redis_version(port).await,
            Service::Cassandra => cassandra_version(port).await,
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

async fn mysql_version(cfg: &StackConfig) -> Result<String, String> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(&cfg.mysql_connect_url()).map_err(|e| e.to_string())?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| e.to_string())?;
    let v: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    let v = v.unwrap_or_default();
    Ok(if v.contains("MariaDB") { format!("MariaDB {v}") } else { format!("MySQL {v}") })
}

async fn mongo_version(port: u16) -> Result<String, String> {
    use mongodb::bson::doc;
    let url = format!(
        "mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000&directConnection=true"
    );
    let client = mongodb::Client::with_uri_str(&url).await.map_err(|e| e.to_string())?;
    let info = client.database("admin").run_command(doc! {"buildInfo": 1}).await.map_err(|e| e.to_string())?;
    let mongo = info.get_str("version").unwrap_or("?").to_string();
    Ok(match info.get_str("ferretdbVersion") {
        Ok(f) => format!("FerretDB {f} (MongoDB {mongo} wire)"),
        Err(_) => format!("MongoDB {mongo}"),
    })
}

async fn redis_version(port: u16) -> Result<String, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.map_err(|e| e.to_string())?;
    let v = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
    Ok(format!("Redis {v}"))
}

async fn cassandra_version(port: u16) -> Result<String, String> {
    // The driver logs every refused connection loudly: knock first.
    if !port_in_use(port) {
        return Err(format!("nothing listens on 127.0.0.1:{port}"));
    }
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(format!("127.0.0.1:{port}"))
        .connection_timeout(Duration::from_secs(2))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let (v,): (String,) = rows.first_row::<(String,)>().map_err(|e| e.to_string())?;
    Ok(format!("Cassandra {v}"))
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}
