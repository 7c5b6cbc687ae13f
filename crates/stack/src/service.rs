//! The services of the stack and their fixed facts: the default four, and Kafka, started only when asked for.

use serde::Serialize;

/// A server that `stack up` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Mysql,
    Mongo,
    Redis,
    Cassandra,
    /// Apache Kafka (KRaft, one node): opt-in, not part of the default set.
    Kafka,
}

impl Service {
    /// The default set: what `stack up` starts without `--service` (the demo's servers).
    pub const ALL: [Service; 4] = [Service::Mysql, Service::Mongo, Service::Redis, Service::Cassandra];
    /// Services started only when named (`--service kafka`, or `--service all`).
    pub const OPT_IN: [Service; 1] = [Service::Kafka];
    /// Every service polyrepl knows, in start order (`--service all`).
    pub const KNOWN: [Service; 5] =
        [Service::Mysql, Service::Mongo, Service::Redis, Service::Cassandra, Service::Kafka];

    /// Short name used in file names, labels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Mongo => "mongodb",
            Service::Redis => "redis",
            Service::Cassandra => "cassandra",
            Service::Kafka => "kafka",
        }
    }

    /// The flag and environment variable that change this service's port.
    pub fn port_flag(self) -> (&'static str, &'static str) {
        match self {
            Service::Mysql => ("--mysql-port", "POLYREPL_MYSQL_PORT"),
            Service::Mongo => ("--mongo-port", "POLYREPL_MONGO_PORT"),
            Service::Redis => ("--redis-port", "POLYREPL_REDIS_PORT"),
            Service::Cassandra => ("--cassandra-port", "POLYREPL_CASSANDRA_PORT"),
            Service::Kafka => ("--kafka-port", "POLYREPL_KAFKA_PORT"),
        }
    }

    /// How long start-up may take before `up` gives up: Cassandra is slow on a small machine.
    pub fn start_timeout_secs(self) -> u64 {
        match self {
            Service::Cassandra => 180,
            Service::Kafka => 90,
            _ => 60,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
