//! The services of the stack and their fixed facts: the default four, and two started only when asked
//! for: Kafka, and `mongo-java`, a second MongoDB-wire server.
//!
//! Why a second MongoDB-wire server, as a service of its own rather than a choice for `mongodb`: no real
//! `mongod` can be installed on the machines polyrepl is tested on, and FerretDB 1.x (the default
//! `mongodb` service there) scans the collection for every `_id` query, so the MongoDB sink takes a
//! FerretDB-only write path on it. `mongo-java` is mongo-java-server (Java, in memory, with a real
//! unique `_id` index), announcing MongoDB 5.0: the sink takes the `update`/`delete` command path that
//! users of MongoDB 4.4–7.x get. Being a separate service on its own port (1801) lets both servers run
//! at once, so the test suite runs every MongoDB sink test against each of them. (On the Docker backend,
//! where a real image can be had, the service is a real `mongo:4.4` instead.)

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
    /// mongo-java-server, a second MongoDB-wire server with a real `_id` index: opt-in.
    #[serde(rename = "mongo-java")]
    MongoJava,
}

impl Service {
    /// The default set: what `stack up` starts without `--service` (the demo's servers).
    pub const ALL: [Service; 4] = [Service::Mysql, Service::Mongo, Service::Redis, Service::Cassandra];
    /// Services started only when named (`--service kafka`, `--service mongo-java`, or `--service all`).
    pub const OPT_IN: [Service; 2] = [Service::Kafka, Service::MongoJava];
    /// Every service polyrepl knows, in start order (`--service all`).
    pub const KNOWN: [Service; 6] =
        [Service::Mysql, Service::Mongo, Service::Redis, Service::Cassandra, Service::Kafka, Service::MongoJava];

    /// Short name used in file names, labels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Mongo => "mongodb",
            Service::Redis => "redis",
            Service::Cassandra => "cassandra",
            Service::Kafka => "kafka",
            Service::MongoJava => "mongo-java",
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
            Service::MongoJava => ("--mongo-java-port", "POLYREPL_MONGO_JAVA_PORT"),
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
