//! Settings of the stack: ports, programs, credentials and where state lives.
//! The CLI fills this from flags and `POLYREPL_*` variables; defaults are the demo's.

use crate::Service;
use serde::Serialize;
use std::path::PathBuf;

/// Where the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Child processes under the state directory.
    Local,
    /// Containers through the Docker Engine API.
    Docker,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Local => "local",
            Backend::Docker => "docker",
        })
    }
}

/// Everything `stack` needs to know.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Data, logs and pid files of the local backend.
    pub state_dir: PathBuf,
    /// Where `scripts/install-deps` puts FerretDB and Cassandra's jars.
    pub tools_dir: PathBuf,
    pub mysql_port: u16,
    pub mongo_port: u16,
    pub redis_port: u16,
    pub cassandra_port: u16,
    /// Cassandra's inter-node (storage) port; only bound on 127.0.0.1.
    pub cassandra_storage_port: u16,
    pub mysql_user: String,
    pub mysql_password: String,
    /// Server program overrides; `None` = look up the default.
    pub mysqld_bin: Option<PathBuf>,
    pub mongo_bin: Option<PathBuf>,
    pub redis_bin: Option<PathBuf>,
    pub java_bin: Option<PathBuf>,
    /// Directory holding Cassandra's `lib/*.jar`.
    pub cassandra_home: Option<PathBuf>,
    /// Java heap for Cassandra, e.g. `512m`.
    pub cassandra_heap: String,
    /// Services to act on (all four by default).
    pub services: Vec<Service>,
}

pub const CASSANDRA_VERSION: &str = "5.0.6";

impl Default for StackConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        StackConfig {
            state_dir: PathBuf::from(".polyrepl"),
            tools_dir: home.join(".local/share/polyrepl"),
            mysql_port: 5600,
            mongo_port: 1800,
            redis_port: 6379,
            cassandra_port: 9042,
            cassandra_storage_port: 7000,
            mysql_user: "root".into(),
            mysql_password: String::new(),
            mysqld_bin: None,
            mongo_bin: None,
            redis_bin: None,
            java_bin: None,
            cassandra_home: None,
            cassandra_heap: "512m".into(),
            services: Service::ALL.to_vec(),
        }
    }
}

impl StackConfig {
    pub fn port(&self, s: Service) -> u16 {
        match s {
            Service::Mysql => self.mysql_port,
            Service::Mongo => self.mongo_port,
            Service::Redis => self.redis_port,
            Service::Cassandra => self.cassandra_port,
        }
    }

    /// The URL a client uses to reach a service (the MySQL one includes the user, never the password).
    pub fn url(&self, s: Service) -> String {
        match s {
            Service::Mysql => format!("mysql://{}@127.0.0.1:{}", self.mysql_user, self.mysql_port),
            Service::Mongo => format!("mongodb://127.0.0.1:{}", self.mongo_port),
            Service::Redis => format!("redis://127.0.0.1:{}", self.redis_port),
            Service::Cassandra => format!("cassandra://127.0.0.1:{}", self.cassandra_port),
        }
    }

    /// The MySQL URL with credentials, for connecting (never printed).
    pub fn mysql_connect_url(&self) -> String {
        let auth = if self.mysql_password.is_empty() {
            self.mysql_user.clone()
        } else {
            format!("{}:{}", self.mysql_user, self.mysql_password)
        };
        format!("mysql://{auth}@127.0.0.1:{}?prefer_socket=false", self.mysql_port)
    }

    pub fn cassandra_home(&self) -> PathBuf {
        self.cassandra_home.clone().unwrap_or_else(|| self.tools_dir.join(format!("cassandra-{CASSANDRA_VERSION}")))
    }
}
