//! The four services of the stack and their fixed facts.

use serde::Serialize;

/// A server that `stack up` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Mysql,
    Mongo,
    Redis,
    Cassandra,
}

impl Service {
    pub const ALL: [Service; 4] = [Service::Mysql, Service::Mongo, Service::Redis, Service::Cassandra];

    /// Short name used in file names, labels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Mongo => "mongodb",
            Service::Redis => "redis",
            Service::Cassandra => "cassandra",
        }
    }

    /// The flag and environment variable that change this service's port.
    pub fn port_flag(self) -> (&'static str, &'static str) {
        match self {
            Service::Mysql => ("--mysql-port", "POLYREPL_MYSQL_PORT"),
            Service::Mongo => ("--mongo-port", "POLYREPL_MONGO_PORT"),
            Service::Redis => ("--redis-port", "POLYREPL_REDIS_PORT"),
            Service::Cassandra => ("--cassandra-port", "POLYREPL_CASSANDRA_PORT"),
        }
    }

    /// How long start-up may take before `up` gives up: Cassandra is slow on a small machine.
    pub fn start_timeout_secs(self) -> u64 {
        match self {
            Service::Cassandra => 180,
            _ => 60,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
