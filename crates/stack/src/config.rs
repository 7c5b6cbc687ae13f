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
    /// Kafka's client (PLAINTEXT) port.
    pub kafka_port: u16,
    /// Kafka's KRaft controller port; only bound on 127.0.0.1.
    pub kafka_controller_port: u16,
    /// Port of the second MongoDB-wire server (mongo-java-server).
    pub mongo_java_port: u16,
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
    /// Directory holding Kafka's `lib/*.jar`.
    pub kafka_home: Option<PathBuf>,
    /// Java heap for Kafka, e.g. `256m`.
    pub kafka_heap: String,
    /// Directory holding mongo-java-server's `lib/*.jar`.
    pub mongo_java_home: Option<PathBuf>,
    /// Java heap for mongo-java-server (it keeps every document in memory), e.g. `1g`.
    pub mongo_java_heap: String,
    /// Services to act on (the default four, [`Service::ALL`], unless chosen).
    pub services: Vec<Service>,
}

pub const CASSANDRA_VERSION: &str = "5.0.6";
pub const KAFKA_VERSION: &str = "4.4.0";
pub const MONGO_JAVA_SERVER_VERSION: &str = "1.46.0";

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
            kafka_port: 9092,
            kafka_controller_port: 9093,
            mongo_java_port: 1801,
            mysql_user: "root".into(),
            mysql_password: String::new(),
            mysqld_bin: None,
            mongo_bin: None,
            redis_bin: None,
            java_bin: None,
            cassandra_home: None,
            cassandra_heap: "512m".into(),
            kafka_home: None,
            kafka_heap: "256m".into(),
            mongo_java_home: None,
            mongo_java_heap: "1g".into(),
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
            Service::Kafka => self.kafka_port,
            Service::MongoJava => self.mongo_java_port,
        }
    }

    /// The URL a client uses to reach a service (the MySQL one includes the user, never the password).
    pub fn url(&self, s: Service) -> String {
        match s {
            Service::Mysql => format!("mysql://{}@127.0.0.1:{}", self.mysql_user, self.mysql_port),
            Service::Mongo => format!("mongodb://127.0.0.1:{}", self.mongo_port),
            Service::Redis => format!("redis://127.0.0.1:{}", self.redis_port),
            Service::Cassandra => format!("cassandra://127.0.0.1:{}", self.cassandra_port),
            Service::Kafka => format!("kafka://127.0.0.1:{}", self.kafka_port),
            Service::MongoJava => format!("mongodb://127.0.0.1:{}", self.mongo_java_port),
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

    pub fn kafka_home(&self) -> PathBuf {
        self.kafka_home.clone().unwrap_or_else(|| self.tools_dir.join(format!("kafka-{KAFKA_VERSION}")))
    }

    pub fn mongo_java_home(&self) -> PathBuf {
        self.mongo_java_home
            .clone()
            .unwrap_or_else(|| self.tools_dir.join(format!("mongo-java-server-{MONGO_JAVA_SERVER_VERSION}")))
    }

    /// Adds each opt-in service (Kafka, mongo-java) that this state directory has started and not stopped (its pid
    /// file is there), and with `purge` also each one whose data is there: what `status` and `down`
    /// act on when no service is named, so that `down` stops everything `up` started.
    pub fn add_started_opt_ins(&mut self, purge: bool) {
        for s in Service::OPT_IN {
            let dir = self.state_dir.join(s.name());
            if !self.services.contains(&s) && (dir.join("server.pid").exists() || (purge && dir.exists())) {
                self.services.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_is_opt_in_but_status_and_down_take_a_started_one() {
        let state = tempfile::tempdir().unwrap();
        let mut cfg = StackConfig { state_dir: state.path().to_path_buf(), ..StackConfig::default() };
        assert!(!cfg.services.contains(&Service::Kafka), "not in the default set");
        cfg.add_started_opt_ins(true);
        assert_eq!(cfg.services, Service::ALL, "nothing of Kafka's here yet");
        std::fs::create_dir_all(state.path().join("kafka/data")).unwrap();
        cfg.add_started_opt_ins(false);
        assert_eq!(cfg.services, Service::ALL, "stopped: status and down leave it out");
        let mut purge = cfg.clone();
        purge.add_started_opt_ins(true);
        assert_eq!(purge.services.last(), Some(&Service::Kafka), "its data: down --purge deletes it");
        std::fs::write(state.path().join("kafka/server.pid"), "1\njava\n").unwrap();
        cfg.add_started_opt_ins(false);
        cfg.add_started_opt_ins(false);
        assert_eq!(cfg.services.last(), Some(&Service::Kafka), "started: taken once");
        assert_eq!(cfg.services.len(), Service::ALL.len() + 1, "started: taken once");
        std::fs::create_dir_all(state.path().join("mongo-java")).unwrap();
        std::fs::write(state.path().join("mongo-java/server.pid"), "2\njava\n").unwrap();
        cfg.add_started_opt_ins(false);
        assert_eq!(cfg.services, Service::KNOWN, "both opt-ins started: both taken");
    }
}
