//! `polyrepl stack up|init|status|down`: the Rust replacement of the old container scripts.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use polyrepl_stack::docker::DockerBackend;
use polyrepl_stack::local::LocalBackend;
use polyrepl_stack::{Backend, Service, ServiceStatus, StackConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct StackArgs {
    #[command(subcommand)]
    action: StackAction,
    #[command(flatten)]
    opts: StackOpts,
}

#[derive(Subcommand)]
enum StackAction {
    /// Start every service that is not running and wait until each answers a real query
    /// (the default four; Kafka and the second MongoDB-wire server mongo-java when named, e.g.
    /// --service kafka, or with --service all).
    Up,
    /// Create the demo schema: MySQL polyrepl_demo.events, the MongoDB collection with an index on ts,
    /// the Cassandra keyspace and table. Safe to run again.
    Init,
    /// Show each service: backend, address, pid or container, up or down, version.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop (and for docker, remove) what `up` started, nothing else. Data is kept unless --purge.
    Down {
        /// Also delete the services' data (local: the state directory's data; docker: volumes).
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendChoice {
    /// Docker when an engine answers, local processes otherwise (and whatever `up` used, for status/down).
    Auto,
    /// Child processes from this machine's programs, under --state-dir.
    Local,
    /// Containers through the Docker Engine API.
    Docker,
}

/// Settings shared by the stack commands.
#[derive(Args)]
pub struct StackOpts {
    /// Where servers run.
    #[arg(long, global = true, env = "POLYREPL_BACKEND", value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Data, logs and pid files of the local backend.
    #[arg(long, global = true, env = "POLYREPL_STATE_DIR", default_value = ".polyrepl")]
    state_dir: PathBuf,
    /// Where scripts/install-deps put FerretDB and Cassandra's jars [default: ~/.local/share/polyrepl].
    #[arg(long, global = true, env = "POLYREPL_TOOLS_DIR")]
    tools_dir: Option<PathBuf>,
    /// Only these services (repeatable or comma-separated): mysql, mongodb, redis, cassandra, kafka,
    /// mongo-java (mongo-java-server, a second MongoDB-wire server with a real _id index), or all
    /// [default: mysql, mongodb, redis and cassandra; status and down also take a Kafka or mongo-java this
    /// state dir started].
    #[arg(long = "service", global = true, env = "POLYREPL_SERVICES", value_delimiter = ',', value_parser = parse_service)]
    services: Vec<ServiceArg>,
    /// MySQL/MariaDB port.
    #[arg(long, global = true, env = "POLYREPL_MYSQL_PORT", default_value_t = 5600)]
    mysql_port: u16,
    /// MongoDB-wire port.
    #[arg(long, global = true, env = "POLYREPL_MONGO_PORT", default_value_t = 1800)]
    mongo_port: u16,
    /// Redis port.
    #[arg(long, global = true, env = "POLYREPL_REDIS_PORT", default_value_t = 6379)]
    redis_port: u16,
    /// Cassandra CQL port.
    #[arg(long, global = true, env = "POLYREPL_CASSANDRA_PORT", default_value_t = 9042)]
    cassandra_port: u16,
    /// Cassandra inter-node (storage) port, bound on 127.0.0.1.
    #[arg(long, global = true, env = "POLYREPL_CASSANDRA_STORAGE_PORT", default_value_t = 7000)]
    cassandra_storage_port: u16,
    /// Kafka client port (opt-in service).
    #[arg(long, global = true, env = "POLYREPL_KAFKA_PORT", default_value_t = 9092)]
    kafka_port: u16,
    /// Kafka KRaft controller port, bound on 127.0.0.1.
    #[arg(long, global = true, env = "POLYREPL_KAFKA_CONTROLLER_PORT", default_value_t = 9093)]
    kafka_controller_port: u16,
    /// Port of the second MongoDB-wire server, mongo-java-server (opt-in service mongo-java).
    #[arg(long, global = true, env = "POLYREPL_MONGO_JAVA_PORT", default_value_t = 1801)]
    mongo_java_port: u16,
    /// MySQL user polyrepl connects as (the local stack creates it when it is not root).
    #[arg(long, global = true, env = "POLYREPL_MYSQL_USER", default_value = "root")]
    mysql_user: String,
    /// MySQL password [default: empty, for the local stack's root on 127.0.0.1].
    #[arg(
        long,
        global = true,
        env = "POLYREPL_MYSQL_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    mysql_password: String,
    /// The MySQL/MariaDB server program [default: mariadbd, else mysqld, from PATH or /usr/sbin].
    #[arg(long, global = true, env = "POLYREPL_MYSQLD_BIN")]
    mysqld_bin: Option<PathBuf>,
    /// The MongoDB-wire server program [default: mongod from PATH, else FerretDB from the tools dir].
    #[arg(long, global = true, env = "POLYREPL_MONGO_BIN")]
    mongo_bin: Option<PathBuf>,
    /// The Redis server program [default: redis-server from PATH].
    #[arg(long, global = true, env = "POLYREPL_REDIS_BIN")]
    redis_bin: Option<PathBuf>,
    /// The Java 17 program that runs Cassandra, Kafka and mongo-java-server [default: java from PATH].
    #[arg(long, global = true, env = "POLYREPL_JAVA_BIN")]
    java_bin: Option<PathBuf>,
    /// Directory holding Cassandra's lib/*.jar [default: <tools dir>/cassandra-5.0.6].
    #[arg(long, global = true, env = "POLYREPL_CASSANDRA_HOME")]
    cassandra_home: Option<PathBuf>,
    /// Java heap for Cassandra.
    #[arg(long, global = true, env = "POLYREPL_CASSANDRA_HEAP", default_value = "512m")]
    cassandra_heap: String,
    /// Directory holding Kafka's lib/*.jar [default: <tools dir>/kafka-4.4.0].
    #[arg(long, global = true, env = "POLYREPL_KAFKA_HOME")]
    kafka_home: Option<PathBuf>,
    /// Java heap for Kafka.
    #[arg(long, global = true, env = "POLYREPL_KAFKA_HEAP", default_value = "256m")]
    kafka_heap: String,
    /// Directory holding mongo-java-server's lib/*.jar [default: <tools dir>/mongo-java-server-1.46.0].
    #[arg(long, global = true, env = "POLYREPL_MONGO_JAVA_HOME")]
    mongo_java_home: Option<PathBuf>,
    /// Java heap for mongo-java-server (it holds every document in memory).
    #[arg(long, global = true, env = "POLYREPL_MONGO_JAVA_HEAP", default_value = "1g")]
    mongo_java_heap: String,
}

/// One `--service` value: a service, or `all` of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServiceArg {
    One(Service),
    All,
}

fn parse_service(s: &str) -> Result<ServiceArg, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "mysql" | "mariadb" => Ok(ServiceArg::One(Service::Mysql)),
        "mongo" | "mongodb" => Ok(ServiceArg::One(Service::Mongo)),
        "redis" => Ok(ServiceArg::One(Service::Redis)),
        "cassandra" => Ok(ServiceArg::One(Service::Cassandra)),
        "kafka" => Ok(ServiceArg::One(Service::Kafka)),
        "mongo-java" | "mongo-java-server" => Ok(ServiceArg::One(Service::MongoJava)),
        "all" => Ok(ServiceArg::All),
        other => Err(format!(
            "unknown service '{other}' (expected mysql, mongodb, redis, cassandra, kafka, mongo-java or all)"
        )),
    }
}

impl StackOpts {
    /// The stack configuration these flags describe.
    pub fn config(&self) -> StackConfig {
        let mut cfg = StackConfig {
            state_dir: self.state_dir.clone(),
            mysql_port: self.mysql_port,
            mongo_port: self.mongo_port,
            redis_port: self.redis_port,
            cassandra_port: self.cassandra_port,
            cassandra_storage_port: self.cassandra_storage_port,
            kafka_port: self.kafka_port,
            kafka_controller_port: self.kafka_controller_port,
            mongo_java_port: self.mongo_java_port,
            mysql_user: self.mysql_user.clone(),
            mysql_password: self.mysql_password.clone(),
            mysqld_bin: self.mysqld_bin.clone(),
            mongo_bin: self.mongo_bin.clone(),
            redis_bin: self.redis_bin.clone(),
            java_bin: self.java_bin.clone(),
            cassandra_home: self.cassandra_home.clone(),
            cassandra_heap: self.cassandra_heap.clone(),
            kafka_home: self.kafka_home.clone(),
            kafka_heap: self.kafka_heap.clone(),
            mongo_java_home: self.mongo_java_home.clone(),
            mongo_java_heap: self.mongo_java_heap.clone(),
            ..StackConfig::default()
        };
        if let Some(t) = &self.tools_dir {
            cfg.tools_dir = t.clone();
        }
        if self.services.contains(&ServiceArg::All) {
            cfg.services = Service::KNOWN.to_vec();
        } else if !self.services.is_empty() {
            cfg.services =
                Service::KNOWN.into_iter().filter(|&s| self.services.contains(&ServiceArg::One(s))).collect();
        }
        cfg
    }

    /// True when no `--service` was given.
    fn default_services(&self) -> bool {
        self.services.is_empty()
    }

    /// The backend to use: as asked; for `auto`, the one `up` recorded, else Docker if an engine answers.
    async fn backend(&self) -> Backend {
        match self.backend {
            BackendChoice::Local => Backend::Local,
            BackendChoice::Docker => Backend::Docker,
            BackendChoice::Auto => {
                match std::fs::read_to_string(self.state_dir.join("backend")).ok().as_deref().map(str::trim) {
                    Some("docker") => Backend::Docker,
                    Some("local") => Backend::Local,
                    _ if DockerBackend::available().await => Backend::Docker,
                    _ => Backend::Local,
                }
            }
        }
    }
}

fn say(line: String) {
    eprintln!("  {line}");
}

pub async fn run(args: StackArgs) -> Result<ExitCode> {
    let mut cfg = args.opts.config();
    // Without --service, status and down also cover an opt-in service (Kafka, mongo-java) this state dir
    // started.
    if args.opts.default_services() {
        match args.action {
            StackAction::Status { .. } => cfg.add_started_opt_ins(false),
            StackAction::Down { purge } => cfg.add_started_opt_ins(purge),
            StackAction::Up | StackAction::Init => {}
        }
    }
    let backend = args.opts.backend().await;
    match args.action {
        StackAction::Up => {
            eprintln!("stack up ({backend} backend, state in {})", cfg.state_dir.display());
            let statuses = match backend {
                Backend::Local => LocalBackend::new(cfg.clone()).up(&say).await?,
                Backend::Docker => DockerBackend::connect(cfg.clone()).await?.up(&say).await?,
            };
            std::fs::write(cfg.state_dir.join("backend"), backend.to_string())?;
            print_table(&statuses);
            Ok(exit_for(&statuses))
        }
        StackAction::Init => {
            for line in polyrepl_stack::init::init(&cfg).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StackAction::Status { json } => {
            let statuses = match backend {
                Backend::Local => LocalBackend::new(cfg).status().await,
                Backend::Docker => DockerBackend::connect(cfg).await?.status().await,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print_table(&statuses);
            }
            Ok(exit_for(&statuses))
        }
        StackAction::Down { purge } => {
            eprintln!("stack down ({backend} backend{})", if purge { ", purging data" } else { "" });
            match backend {
                Backend::Local => LocalBackend::new(cfg.clone()).down(purge, &say).await?,
                Backend::Docker => DockerBackend::connect(cfg.clone()).await?.down(purge, &say).await?,
            }
            if !purge {
                let _ = std::fs::remove_file(cfg.state_dir.join("backend"));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// 0 when every service is up, 1 otherwise (so scripts can wait on `stack status`).
fn exit_for(statuses: &[ServiceStatus]) -> ExitCode {
    if statuses.iter().all(|s| s.up) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_table(statuses: &[ServiceStatus]) {
    println!("{:<10} {:<8} {:<17} {:<14} {:<5} VERSION", "SERVICE", "BACKEND", "ADDRESS", "PID/CONTAINER", "STATE");
    for s in statuses {
        println!(
            "{:<10} {:<8} {:<17} {:<14} {:<5} {}",
            s.service.name(),
            s.backend.to_string(),
            s.address,
            s.handle.as_deref().unwrap_or("-"),
            if s.up { "up" } else { "down" },
            s.version.as_deref().or(s.detail.as_deref()).unwrap_or("-")
        );
    }
}
