//! Connecting to a MongoDB-protocol server from a `mongodb://` / `mongodb+srv://` URL, and learning
//! what the server can do.
//!
//! Invariants:
//! - [`sink_name`] never contains credentials or query options: it is safe for logs and metrics.
//! - A connection is only returned after the server answered `hello`; nothing listening at the
//!   address is a transient error (fast: the raw probe sees the refusal at once), something that is
//!   not MongoDB (e.g. Redis) is a definite error that says so.
//! - Features are decided once, from `hello`'s `maxWireVersion` and `buildInfo` (FerretDB announces
//!   itself with `ferretdbVersion`), and drive the mapping's fallbacks and the write path.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::{ClientOptions, ServerAddress, Tls};
use mongodb::Client;
use polyrepl_core::redact::{url_hosts, url_scheme};
use polyrepl_core::SinkError;

use crate::error::classify;
use crate::mapping::ServerFeatures;
use crate::probe::{probe, ProbeOutcome};

/// First wire version of MongoDB 8.0, which has the `bulkWrite` command behind `Client::bulk_write`.
pub const BULK_WRITE_WIRE_VERSION: i32 = 25;
/// First wire version of MongoDB 5.0, which accepts `$`-prefixed and dotted field names.
const DOLLAR_AND_DOT_KEYS_WIRE_VERSION: i32 = 13;
/// Default probe and handshake bound when the URL sets no `connectTimeoutMS`.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connected server told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `maxWireVersion` from `hello`.
    pub max_wire_version: i32,
    /// Largest BSON document the server accepts (`maxBsonObjectSize`, 16 MiB on MongoDB).
    pub max_bson_object_size: usize,
    /// Most write operations in one command (`maxWriteBatchSize`, 100 000 on MongoDB).
    pub max_write_batch_size: usize,
    /// `buildInfo.version`.
    pub version: String,
    /// FerretDB's own version when the server is FerretDB.
    pub ferretdb_version: Option<String>,
    /// What the type mapping may use.
    pub features: ServerFeatures,
    /// Whether `Client::bulk_write` (server 8.0+) is used instead of `update`/`delete` commands.
    pub bulk_write: bool,
}

/// The URL reduced to scheme and hosts: `mongodb://127.0.0.1:1800`. No credentials, no options.
pub fn sink_name(url: &str) -> String {
    format!("{}://{}", url_scheme(url).unwrap_or("mongodb"), url_hosts(url))
}

/// Connects, checks that a MongoDB-protocol server answers, and reads its limits and features.
pub async fn connect(url: &str) -> Result<(Client, String, ServerInfo), SinkError> {
    let name = sink_name(url);
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(SinkError::definite(&name, "the MongoDB URL must start with mongodb:// or mongodb+srv://"));
    }
    let mut options = ClientOptions::parse(url)
        .await
        .map_err(|e| classify(&name, "reading the MongoDB URL (check its syntax and options)", &e))?;
    if options.app_name.is_none() {
        options.app_name = Some("polyrepl".to_string());
    }
    probe_hosts(&name, url, &options).await?;
    let client = Client::with_options(options).map_err(|e| classify(&name, "creating the MongoDB client", &e))?;
    let info = server_info(&client, &name).await?;
    tracing::info!(
        sink = %name,
        version = %info.version,
        ferretdb = ?info.ferretdb_version,
        max_wire_version = info.max_wire_version,
        bulk_write = info.bulk_write,
        "connected to MongoDB"
    );
    if !info.features.decimal128 {
        tracing::warn!(sink = %name, "this server has no decimal128: DECIMAL and BIGINT UNSIGNED above i64 are stored as exact strings");
    }
    Ok((client, name, info))
}

/// Runs the raw handshake against every plain TCP host (not SRV, TLS, proxy or Unix socket).
async fn probe_hosts(name: &str, url: &str, options: &ClientOptions) -> Result<(), SinkError> {
    let tls = matches!(options.tls, Some(Tls::Enabled(_)));
    if url.starts_with("mongodb+srv://") || tls || url.to_ascii_lowercase().contains("proxyhost=") {
        return Ok(());
    }
    let timeout =
        options.connect_timeout.filter(|t| !t.is_zero()).unwrap_or(DEFAULT_PROBE_TIMEOUT).min(DEFAULT_PROBE_TIMEOUT);
    let mut unreachable = Vec::new();
    let mut foreign = Vec::new();
    for host in &options.hosts {
        let ServerAddress::Tcp { host, port } = host else { return Ok(()) };
        match probe(host, port.unwrap_or(27017), timeout).await {
            ProbeOutcome::MongoDb => return Ok(()),
            ProbeOutcome::Unreachable(why) => unreachable.push(why),
            ProbeOutcome::NotMongoDb(why) => foreign.push(why),
        }
    }
    if !foreign.is_empty() {
        return Err(SinkError::definite(
            name,
            format!("not a MongoDB server: {} — check the host and port of the MongoDB URL", foreign.join("; ")),
        ));
    }
    if !unreachable.is_empty() {
        return Err(SinkError::transient(name, format!("{} — is MongoDB running there?", unreachable.join("; "))));
    }
    Ok(())
}

/// `hello` (or `isMaster` on old servers) and `buildInfo`.
async fn server_info(client: &Client, name: &str) -> Result<ServerInfo, SinkError> {
    let admin = client.database("admin");
    let hello = match admin.run_command(doc! { "hello": 1 }).await {
        Ok(reply) => reply,
        Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(_)) => admin
            .run_command(doc! { "isMaster": 1 })
            .await
            .map_err(|e| classify(name, "asking the server who it is (isMaster)", &e))?,
        Err(e) => return Err(classify(name, "asking the server who it is (hello)", &e)),
    };
    let build = admin.run_command(doc! { "buildInfo": 1 }).await.unwrap_or_default();
    Ok(server_info_from(&hello, &build))
}

/// Decides limits and features from the `hello` and `buildInfo` replies.
pub fn server_info_from(hello: &Document, build: &Document) -> ServerInfo {
    let int = |doc: &Document, key: &str| -> Option<i64> {
        doc.get(key)
            .and_then(|v| v.as_i32().map(i64::from).or_else(|| v.as_i64()).or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let max_wire_version = int(hello, "maxWireVersion").unwrap_or(0) as i32;
    let ferretdb_version = build.get_str("ferretdbVersion").ok().map(str::to_string);
    let ferretdb_1 = ferretdb_version.as_deref().is_some_and(|v| v.trim_start_matches('v').starts_with("1."));
    let features = if ferretdb_1 {
        ServerFeatures::FERRETDB_1
    } else {
        ServerFeatures {
            decimal128: true,
            nested_arrays: true,
            dollar_and_dot_keys: max_wire_version >= DOLLAR_AND_DOT_KEYS_WIRE_VERSION,
        }
    };
    ServerInfo {
        max_wire_version,
        max_bson_object_size: int(hello, "maxBsonObjectSize").filter(|&v| v > 0).unwrap_or(16 << 20) as usize,
        max_write_batch_size: int(hello, "maxWriteBatchSize").filter(|&v| v > 0).unwrap_or(100_000).min(100_000)
            as usize,
        version: build.get_str("version").unwrap_or("unknown").to_string(),
        ferretdb_version,
        features,
        bulk_write: max_wire_version >= BULK_WRITE_WIRE_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_has_no_credentials_or_options() {
        assert_eq!(sink_name("mongodb://u:secret@h1:1,h2:2/db?authSource=admin"), "mongodb://h1:1,h2:2");
        assert_eq!(sink_name("mongodb://127.0.0.1:1800"), "mongodb://127.0.0.1:1800");
        assert_eq!(sink_name("mongodb+srv://a:b@cluster.example.com/?x=1"), "mongodb+srv://cluster.example.com");
        assert_eq!(sink_name("mongodb://p%40ss@h:1"), "mongodb://h:1");
    }

    #[test]
    fn features_follow_the_server() {
        let ferret = server_info_from(
            &doc! { "maxWireVersion": 21 },
            &doc! { "version": "7.0.42", "ferretdbVersion": "v1.24.2" },
        );
        assert_eq!(ferret.features, ServerFeatures::FERRETDB_1);
        assert!(!ferret.bulk_write);
        let mongo8 = server_info_from(
            &doc! { "maxWireVersion": 25, "maxBsonObjectSize": 16777216 },
            &doc! { "version": "8.0.4" },
        );
        assert_eq!(mongo8.features, ServerFeatures::MONGODB);
        assert!(mongo8.bulk_write);
        let mongo44 = server_info_from(&doc! { "maxWireVersion": 9 }, &doc! {});
        assert!(!mongo44.features.dollar_and_dot_keys && mongo44.features.decimal128);
    }
}
