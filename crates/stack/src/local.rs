//! The local backend: each server runs as a process of its own, started from this machine's programs.
//!
//! Invariants:
//! - Everything lives under the state directory: `<state>/<service>/{data,conf}`, `server.log`, `server.pid`.
//! - `up` starts only what is not already running (a live pid file whose process is that server) and
//!   refuses a port held by anything else; servers bind 127.0.0.1 only.
//! - `down` stops only processes named by our pid files, after checking that the pid still runs the
//!   program we started (pids are reused), and waits until their ports are free.

use crate::error::StackError;
use crate::probe;
use crate::service::Service;
use crate::{Backend, ServiceStatus, StackConfig};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a local server is started with.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Files to write before starting (generated configuration).
    pub files: Vec<(PathBuf, String)>,
    /// One-time initialisation (e.g. `mariadb-install-db`) run when `data` does not exist yet.
    pub initialise: Option<(PathBuf, Vec<String>)>,
}

/// Which MySQL-family server a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFlavor {
    MariaDb,
    Mysql8,
}

/// Which MongoDB-wire server a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MongoFlavor {
    Mongod,
    FerretDb,
}

/// Starts, inspects and stops the stack as local processes.
pub struct LocalBackend {
    cfg: StackConfig,
}

impl LocalBackend {
    pub fn new(cfg: StackConfig) -> Self {
        LocalBackend { cfg }
    }

    fn service_dir(&self, s: Service) -> PathBuf {
        self.cfg.state_dir.join(s.name())
    }
    fn pid_file(&self, s: Service) -> PathBuf {
        self.service_dir(s).join("server.pid")
    }
    fn log_file(&self, s: Service) -> PathBuf {
        self.service_dir(s).join("server.log")
    }

    /// Starts every configured service that is not running yet and waits until each answers a query.
    /// `progress` receives one human line per event (starting, still waiting, ready).
    pub async fn up(&self, progress: &(dyn Fn(String) + Sync)) -> Result<Vec<ServiceStatus>, StackError> {
        ensure_writable(&self.cfg.state_dir)?;
        // Check everything first, so that a bad setting starts nothing.
        let mut to_start = Vec::new();
        for &s in &self.cfg.services {
            if let Some(pid) = self.running_pid(s) {
                progress(format!("{s}: already running (pid {pid})"));
                continue;
            }
            let spec = self.launch_spec(s)?;
            for port in self.ports_of(s) {
                if probe::port_in_use(port) {
                    let (flag, env) = if port == self.cfg.port(s) {
                        s.port_flag()
                    } else if s == Service::Cassandra {
                        ("--cassandra-storage-port", "POLYREPL_CASSANDRA_STORAGE_PORT")
                    } else {
                        ("--kafka-controller-port", "POLYREPL_KAFKA_CONTROLLER_PORT")
                    };
                    return Err(StackError::PortTaken { service: s.name(), port, flag, env });
                }
            }
            to_start.push((s, spec));
        }
        let mut started = Vec::new();
        for (s, spec) in to_start {
            if spec.initialise.is_some() && !self.service_dir(s).join("data").exists() {
                progress(format!("{s}: first start: initialising its data directory"));
            }
            progress(format!("{s}: starting {} on 127.0.0.1:{}", spec.program.display(), self.cfg.port(s)));
            let child = self.start(s, &spec)?;
            started.push((s, child));
        }
        let waits = started.into_iter().map(|(s, child)| self.wait_ready(s, child, progress));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        if self.cfg.services.contains(&Service::Mysql) {
            self.ensure_mysql_user().await?;
        }
        Ok(self.status().await)
    }

    /// The state of every configured service.
    pub async fn status(&self) -> Vec<ServiceStatus> {
        let mut out = Vec::new();
        for &s in &self.cfg.services {
            let pid = self.running_pid(s);
            let answer = probe::version(&self.cfg, s).await;
            let (up, version, detail) = match (&pid, answer) {
                (Some(_), Ok(v)) => (true, Some(v), None),
                (Some(_), Err(e)) => (false, None, Some(format!("process runs but does not answer: {e}"))),
                (None, Ok(v)) => (true, Some(v), Some("answering, but not started by this state directory".into())),
                (None, Err(_)) => (false, None, None),
            };
            out.push(ServiceStatus {
                service: s,
                backend: Backend::Local,
                address: format!("127.0.0.1:{}", self.cfg.port(s)),
                handle: pid.map(|p| p.to_string()),
                up,
                version,
                detail,
            });
        }
        out
    }

    /// Stops what `up` started (and nothing else); with `purge`, also deletes the data.
    pub async fn down(&self, purge: bool, progress: &(dyn Fn(String) + Sync)) -> Result<(), StackError> {
        for &s in self.cfg.services.iter().rev() {
            match self.running_pid(s) {
                Some(pid) => {
                    progress(format!("{s}: stopping pid {pid}"));
                    stop_process(pid, Duration::from_secs(60)).await;
                    for port in self.ports_of(s) {
                        wait_port_free(port, Duration::from_secs(20)).await;
                    }
                    progress(format!("{s}: stopped"));
                }
                None => progress(format!("{s}: not running")),
            }
            let _ = fs::remove_file(self.pid_file(s));
            if purge {
                let dir = self.service_dir(s);
                if dir.exists() {
                    fs::remove_dir_all(&dir)
                        .map_err(|e| StackError::Io(format!("cannot delete {}: {e}", dir.display())))?;
                    progress(format!("{s}: data deleted ({})", dir.display()));
                }
            }
        }
        if purge {
            let _ = fs::remove_dir(&self.cfg.state_dir); // only if now empty
        }
        Ok(())
    }

    /// Ports a service listens on.
    fn ports_of(&self, s: Service) -> Vec<u16> {
        match s {
            Service::Cassandra => vec![self.cfg.cassandra_port, self.cfg.cassandra_storage_port],
            Service::Kafka => vec![self.cfg.kafka_port, self.cfg.kafka_controller_port],
            _ => vec![self.cfg.port(s)],
        }
    }

    /// The pid from our pid file when that process still runs the server we started.
    fn running_pid(&self, s: Service) -> Option<i32> {
        let text = fs::read_to_string(self.pid_file(s)).ok()?;
        let mut lines = text.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let program = lines.next().unwrap_or("").trim().to_string();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let exe = Path::new(&program).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        (!exe.is_empty() && cmdline.contains(&exe) && !is_zombie(pid)).then_some(pid)
    }

    /// Builds how the service is started, checking that its programs exist.
    pub fn launch_spec(&self, s: Service) -> Result<LaunchSpec, StackError> {
        let dir = std::path::absolute(self.service_dir(s)).map_err(|e| StackError::Io(e.to_string()))?;
        match s {
            Service::Mysql => {
                let (program, flavor) = self.mysql_program()?;
                Ok(mysql_spec(&program, flavor, &dir, self.cfg.mysql_port))
            }
            Service::Mongo => {
                let (program, flavor) = self.mongo_program()?;
                Ok(mongo_spec(&program, flavor, &dir, self.cfg.mongo_port))
            }
            Service::Redis => {
                let program =
                    resolve_program(&self.cfg.redis_bin, || find_program("redis-server")).ok_or_else(|| {
                        StackError::MissingBinary {
                            service: "redis",
                            program: wanted(&self.cfg.redis_bin, "redis-server"),
                            hint: "It comes with Debian's package redis-server (scripts/install-deps installs it)."
                                .into(),
                            flag: "--redis-bin",
                            env: "POLYREPL_REDIS_BIN",
                        }
                    })?;
                Ok(redis_spec(&program, &dir, self.cfg.redis_port))
            }
            Service::Kafka => {
                let java = resolve_program(&self.cfg.java_bin, || find_program("java")).ok_or_else(|| {
                    StackError::MissingBinary {
                        service: "kafka",
                        program: wanted(&self.cfg.java_bin, "java"),
                        hint: "Kafka 4 runs on Java 17: Debian's package openjdk-17-jre-headless.".into(),
                        flag: "--java-bin",
                        env: "POLYREPL_JAVA_BIN",
                    }
                })?;
                let home = self.cfg.kafka_home();
                if find_jar(&home.join("lib"), "kafka_2.13-").is_none() {
                    return Err(StackError::MissingBinary {
                        service: "kafka",
                        program: format!("{}/lib/kafka_2.13-*.jar", home.display()),
                        hint: "Run scripts/install-deps: it fetches Kafka's jars from Maven Central.".into(),
                        flag: "--kafka-home",
                        env: "POLYREPL_KAFKA_HOME",
                    });
                }
                Ok(kafka_spec(
                    &java,
                    &home,
                    &dir,
                    self.cfg.kafka_port,
                    self.cfg.kafka_controller_port,
                    &self.cfg.kafka_heap,
                    &new_kafka_cluster_id(),
                ))
            }
            Service::MongoJava => {
                let java = resolve_program(&self.cfg.java_bin, || find_program("java")).ok_or_else(|| {
                    StackError::MissingBinary {
                        service: "mongo-java",
                        program: wanted(&self.cfg.java_bin, "java"),
                        hint: "mongo-java-server runs on Java 17: Debian's package openjdk-17-jre-headless.".into(),
                        flag: "--java-bin",
                        env: "POLYREPL_JAVA_BIN",
                    }
                })?;
                let home = self.cfg.mongo_java_home();
                if find_jar(&home.join("lib"), "mongo-java-server-memory-backend-").is_none() {
                    return Err(StackError::MissingBinary {
                        service: "mongo-java",
                        program: format!("{}/lib/mongo-java-server-memory-backend-*.jar", home.display()),
                        hint: "Run scripts/install-deps: it fetches mongo-java-server's jars from Maven Central."
                            .into(),
                        flag: "--mongo-java-home",
                        env: "POLYREPL_MONGO_JAVA_HOME",
                    });
                }
                Ok(mongo_java_spec(&java, &home, &dir, self.cfg.mongo_java_port, &self.cfg.mongo_java_heap))
            }
            Service::Cassandra => {
                let java = resolve_program(&self.cfg.java_bin, || find_program("java")).ok_or_else(|| {
                    StackError::MissingBinary {
                        service: "cassandra",
                        program: wanted(&self.cfg.java_bin, "java"),
                        hint: "Cassandra 5.0 runs on Java 17: Debian's package openjdk-17-jre-headless.".into(),
                        flag: "--java-bin",
                        env: "POLYREPL_JAVA_BIN",
                    }
                })?;
                let home = self.cfg.cassandra_home();
                if !has_cassandra_jar(&home) {
                    return Err(StackError::MissingBinary {
                        service: "cassandra",
                        program: format!("{}/lib/cassandra-all-*.jar", home.display()),
                        hint: "Run scripts/install-deps: it fetches Cassandra's jars from Maven Central.".into(),
                        flag: "--cassandra-home",
                        env: "POLYREPL_CASSANDRA_HOME",
                    });
                }
                Ok(cassandra_spec(
                    &java,
                    &home,
                    &dir,
                    self.cfg.cassandra_port,
                    self.cfg.cassandra_storage_port,
                    &self.cfg.cassandra_heap,
                ))
            }
        }
    }

    fn mysql_program(&self) -> Result<(PathBuf, MysqlFlavor), StackError> {
        let program = resolve_program(&self.cfg.mysqld_bin, || find_program("mariadbd").or_else(|| find_program("mysqld")))
            .ok_or_else(|| StackError::MissingBinary {
                service: "mysql",
                program: wanted(&self.cfg.mysqld_bin, "mariadbd"),
                hint: "It comes with Debian's package mariadb-server (scripts/install-deps installs it); a MySQL 8 mysqld works too.".into(),
                flag: "--mysqld-bin",
                env: "POLYREPL_MYSQLD_BIN",
            })?;
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let flavor = if name.contains("mariadb") {
            MysqlFlavor::MariaDb
        } else {
            let out = Command::new(&program).arg("--version").output();
            match out {
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains("MariaDB") => MysqlFlavor::MariaDb,
                _ => MysqlFlavor::Mysql8,
            }
        };
        Ok((program, flavor))
    }

    fn mongo_program(&self) -> Result<(PathBuf, MongoFlavor), StackError> {
        let program = resolve_program(&self.cfg.mongo_bin, || {
            find_program("mongod")
                .or_else(|| Some(self.cfg.tools_dir.join("bin/ferretdb")).filter(|p| p.is_file()))
                .or_else(|| find_program("ferretdb"))
        })
        .ok_or_else(|| StackError::MissingBinary {
            service: "mongodb",
            program: wanted(&self.cfg.mongo_bin, "mongod or ferretdb"),
            hint: format!(
                "Run scripts/install-deps: it builds FerretDB v1.24.2 from its Go module into {}/bin.",
                self.cfg.tools_dir.display()
            ),
            flag: "--mongo-bin",
            env: "POLYREPL_MONGO_BIN",
        })?;
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let flavor = if name.contains("ferretdb") { MongoFlavor::FerretDb } else { MongoFlavor::Mongod };
        Ok((program, flavor))
    }

    /// Writes config files, initialises data on first start, and spawns the server in its own
    /// process group (so a Ctrl-C aimed at polyrepl does not reach it).
    fn start(&self, s: Service, spec: &LaunchSpec) -> Result<Child, StackError> {
        let dir = self.service_dir(s);
        let io = |e: std::io::Error, what: &str| StackError::Io(format!("{s}: {what}: {e}"));
        fs::create_dir_all(&dir).map_err(|e| io(e, "cannot create its directory"))?;
        for (path, text) in &spec.files {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io(e, "cannot create a config directory"))?;
            }
            fs::write(path, text).map_err(|e| io(e, "cannot write its configuration"))?;
        }
        let log = self.log_file(s);
        if let Some((program, args)) = &spec.initialise {
            if !dir.join("data").exists() {
                let out = Command::new(program)
                    .args(args)
                    .output()
                    .map_err(|e| io(e, &format!("cannot run {}", program.display())))?;
                if !out.status.success() {
                    let _ = fs::remove_dir_all(dir.join("data"));
                    return Err(StackError::service(
                        s.name(),
                        format!(
                            "initialising the data directory with {} failed:\n{}{}",
                            program.display(),
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    ));
                }
            }
        }
        fs::create_dir_all(dir.join("data")).map_err(|e| io(e, "cannot create its data directory"))?;
        let log_out =
            fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| io(e, "cannot open its log"))?;
        let log_err = log_out.try_clone().map_err(|e| io(e, "cannot open its log"))?;
        let child = Command::new(&spec.program)
            .args(&spec.args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| io(e, &format!("cannot start {}", spec.program.display())))?;
        fs::write(self.pid_file(s), format!("{}\n{}\n", child.id(), spec.program.display()))
            .map_err(|e| io(e, "cannot write its pid file"))?;
        Ok(child)
    }

    /// Polls the server with a real query until it answers, it exits, or its start timeout passes.
    async fn wait_ready(
        &self,
        s: Service,
        mut child: Child,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<(), StackError> {
        let started = Instant::now();
        let limit = Duration::from_secs(s.start_timeout_secs());
        let mut next_note = Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = fs::remove_file(self.pid_file(s));
                return Err(StackError::Exited {
                    service: s.name(),
                    status: status.to_string(),
                    log: self.log_file(s),
                    tail: tail(&self.log_file(s), 15),
                });
            }
            if let Ok(version) = probe::version(&self.cfg, s).await {
                progress(format!("{s}: ready in {:.1} s ({version})", started.elapsed().as_secs_f64()));
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(StackError::NotReady {
                    service: s.name(),
                    secs: limit.as_secs(),
                    log: self.log_file(s),
                    tail: tail(&self.log_file(s), 15),
                });
            }
            if started.elapsed() >= next_note {
                progress(format!("{s}: still waiting for it to answer… {} s", started.elapsed().as_secs()));
                next_note += Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Gives the configured MySQL user a TCP login on the fresh server when it is not password-less root.
    async fn ensure_mysql_user(&self) -> Result<(), StackError> {
        use mysql_async::prelude::Queryable;
        let cfg = &self.cfg;
        if cfg.mysql_user == "root" && cfg.mysql_password.is_empty() {
            return Ok(());
        }
        if probe::version(cfg, Service::Mysql).await.is_ok() {
            return Ok(()); // the configured login works already
        }
        let root = format!("mysql://root@127.0.0.1:{}?prefer_socket=false", cfg.mysql_port);
        let err = |e: mysql_async::Error| {
            StackError::service("mysql", format!("cannot set up the user '{}': {e}", cfg.mysql_user))
        };
        let mut conn = mysql_async::Conn::from_url(root).await.map_err(err)?;
        let user = cfg.mysql_user.replace('\'', "''");
        let pass = cfg.mysql_password.replace('\'', "''");
        conn.query_drop(format!("CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{pass}'"))
            .await
            .map_err(err)?;
        conn.query_drop(format!("ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY '{pass}'")).await.map_err(err)?;
        conn.query_drop(format!("GRANT ALL PRIVILEGES ON *.* TO '{user}'@'127.0.0.1' WITH GRANT OPTION"))
            .await
            .map_err(err)?;
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// MariaDB/MySQL with binary logging for CDC: ROW format, FULL row image, FULL row metadata, GTIDs.
pub fn mysql_spec(program: &Path, flavor: MysqlFlavor, dir: &Path, port: u16) -> LaunchSpec {
    let data = dir.join("data");
    let d = |p: &str| dir.join(p).display().to_string();
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", data.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", socket_path(dir, port)),
        format!("--pid-file={}", d("mysqld.pid")),
        format!("--log-bin={}", data.join("binlog").display()),
        "--binlog-format=ROW".into(),
        "--binlog-row-image=FULL".into(),
        "--binlog-row-metadata=FULL".into(),
        "--server-id=1".into(),
        "--max-connections=500".into(),
        "--innodb-buffer-pool-size=256M".into(),
        format!("--log-error={}", d("server.log")),
        // Its own temporary directory: files the server keeps in a shared /tmp can be removed under it.
        format!("--tmpdir={}", d("tmp")),
    ];
    if running_as_root() {
        args.push("--user=root".into());
    }
    let initialise = match flavor {
        MysqlFlavor::MariaDb => {
            args.push("--gtid-strict-mode=ON".into());
            // Made a replica (`CHANGE MASTER TO … MASTER_USE_GTID=slave_pos`), it logs what it applies
            // with the primary's GTIDs, so polyrepl can follow it once it is promoted (not dynamic).
            args.push("--log-slave-updates=ON".into());
            let install = program.with_file_name("mariadb-install-db");
            let install =
                if install.is_file() { install } else { find_program("mariadb-install-db").unwrap_or(install) };
            let mut init = vec![
                "--no-defaults".to_string(),
                format!("--datadir={}", data.display()),
                "--auth-root-authentication-method=normal".into(),
                "--skip-test-db".into(),
                // Passed on to the bootstrap server, whose temporary tables vanished from a shared /tmp
                // once (install failed with "Unknown table 'mysql.tmp_user_sys'").
                format!("--tmpdir={}", d("tmp")),
            ];
            if running_as_root() {
                init.push("--user=root".into());
            }
            (install, init)
        }
        MysqlFlavor::Mysql8 => {
            args.extend(["--gtid-mode=ON".into(), "--enforce-gtid-consistency=ON".into(), "--mysqlx=OFF".into()]);
            let mut init = vec![
                "--no-defaults".to_string(),
                "--initialize-insecure".into(),
                format!("--datadir={}", data.display()),
            ];
            if running_as_root() {
                init.push("--user=root".into());
            }
            (program.to_path_buf(), init)
        }
    };
    // Writing this file creates the temporary directory before the server starts.
    let files = vec![(dir.join("tmp").join("README"), "MariaDB/MySQL temporary files (--tmpdir)\n".to_string())];
    LaunchSpec { program: program.to_path_buf(), args, files, initialise: Some(initialise) }
}

/// A Unix socket path must fit in 108 bytes; deep state directories fall back to /tmp.
fn socket_path(dir: &Path, port: u16) -> String {
    let p = dir.join("mysqld.sock").display().to_string();
    if p.len() < 100 {
        p
    } else {
        format!("/tmp/polyrepl-mysql-{port}.sock")
    }
}

/// mongod, or FerretDB on its SQLite backend with telemetry off.
pub fn mongo_spec(program: &Path, flavor: MongoFlavor, dir: &Path, port: u16) -> LaunchSpec {
    let data = dir.join("data");
    let args = match flavor {
        MongoFlavor::Mongod => vec![
            "--dbpath".into(),
            data.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--bind_ip".into(),
            "127.0.0.1".into(),
        ],
        MongoFlavor::FerretDb => vec![
            "--handler=sqlite".into(),
            format!("--sqlite-url=file:{}/", data.display()),
            format!("--listen-addr=127.0.0.1:{port}"),
            format!("--state-dir={}", dir.display()),
            "--telemetry=disable".into(),
            // FerretDB's debug HTTP listener would take a fixed port (8088): let the OS pick one.
            "--debug-addr=127.0.0.1:0".into(),
            "--log-level=warn".into(),
        ],
    };
    LaunchSpec { program: program.to_path_buf(), args, files: vec![], initialise: None }
}

/// The single-file Java program that runs mongo-java-server (see its header), built into polyrepl.
pub const MONGO_JAVA_LAUNCHER: &str = include_str!("../java/MongoJavaServer.java");

/// mongo-java-server with its in-memory backend, bound to 127.0.0.1 and announcing MongoDB 5.0 (see the
/// launcher's header for why that version): the
/// launcher (written to `conf/` at each start) run as a single-file source program by `java`, the jars
/// on the class path, logs (SLF4J simple: INFO, connections only from WARN) on stderr, i.e. the stack's
/// `server.log`. Holds every
/// document in the heap: nothing survives a restart.
pub fn mongo_java_spec(java: &Path, home: &Path, dir: &Path, port: u16, heap: &str) -> LaunchSpec {
    let launcher = dir.join("conf").join("MongoJavaServer.java");
    let args = vec![
        "-Xms64m".to_string(),
        format!("-Xmx{heap}"),
        "-Djava.awt.headless=true".into(),
        "-Djava.net.preferIPv4Stack=true".into(),
        "-Dorg.slf4j.simpleLogger.showDateTime=true".into(),
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ".into(),
        // Not two lines per client connection (the tests open thousands).
        "-Dorg.slf4j.simpleLogger.log.de.bwaldvogel.mongo.wire.MongoWireProtocolHandler=warn".into(),
        "-cp".into(),
        format!("{}/*", home.join("lib").display()),
        launcher.display().to_string(),
        "127.0.0.1".into(),
        port.to_string(),
        "5.0".into(),
    ];
    LaunchSpec {
        program: java.to_path_buf(),
        args,
        files: vec![(launcher, MONGO_JAVA_LAUNCHER.to_string())],
        initialise: None,
    }
}

/// Redis without persistence (the stack is for development and tests).
pub fn redis_spec(program: &Path, dir: &Path, port: u16) -> LaunchSpec {
    let args = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.join("data").display().to_string(),
        "--daemonize".into(),
        "no".into(),
    ];
    LaunchSpec { program: program.to_path_buf(), args, files: vec![], initialise: None }
}

/// Options Cassandra 5.0 needs on Java 17 (module access it uses through reflection), as its own
/// `jvm17-server.options` sets them.
const CASSANDRA_JVM17_OPTIONS: &[&str] = &[
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.math=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
];

/// Cassandra as a single local node: small heap, generated cassandra.yaml bound to 127.0.0.1, no JMX.
pub fn cassandra_spec(java: &Path, home: &Path, dir: &Path, port: u16, storage_port: u16, heap: &str) -> LaunchSpec {
    let conf = dir.join("conf");
    let data = dir.join("data");
    let lib = home.join("lib");
    let mut args = vec![
        format!("-Xms{heap}"),
        format!("-Xmx{heap}"),
        "-XX:+UseG1GC".into(),
        "-Xss512k".into(),
        "-XX:+HeapDumpOnOutOfMemoryError".into(),
        "-Djdk.attach.allowAttachSelf=true".into(),
        "-Djava.net.preferIPv4Stack=true".into(),
    ];
    args.extend(CASSANDRA_JVM17_OPTIONS.iter().map(|s| s.to_string()));
    if let Some(jamm) = find_jar(&lib, "jamm-") {
        args.push(format!("-javaagent:{}", jamm.display())); // object sizes for memtables
    }
    args.extend([
        format!("-Dcassandra.config=file://{}", conf.join("cassandra.yaml").display()),
        format!("-Dlogback.configurationFile={}", conf.join("logback.xml").display()),
        format!("-Dcassandra.logdir={}", dir.display()),
        format!("-Dcassandra.storagedir={}", data.display()),
        "-Dcassandra-foreground=yes".into(),
        // A single node: nothing to wait for.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0".into(),
        "-Dcassandra.superuser_setup_delay_ms=0".into(),
        "-cp".into(),
        format!("{}:{}/*", conf.display(), lib.display()),
        "org.apache.cassandra.service.CassandraDaemon".into(),
    ]);
    let d = |p: &str| data.join(p).display().to_string();
    let yaml = format!(
        "# Generated by polyrepl stack up; rewritten at each start.\n\
cluster_name: polyrepl\n\
num_tokens: 1\n\
partitioner: org.apache.cassandra.dht.Murmur3Partitioner\n\
data_file_directories: [{data}]\n\
commitlog_directory: {commitlog}\n\
saved_caches_directory: {caches}\n\
hints_directory: {hints}\n\
cdc_raw_directory: {cdc}\n\
commitlog_sync: periodic\n\
commitlog_sync_period: 10000ms\n\
seed_provider:\n  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n    parameters:\n      - seeds: \"127.0.0.1:{storage_port}\"\n\
listen_address: 127.0.0.1\n\
rpc_address: 127.0.0.1\n\
storage_port: {storage_port}\n\
native_transport_port: {port}\n\
start_native_transport: true\n\
endpoint_snitch: SimpleSnitch\n\
authenticator: AllowAllAuthenticator\n\
authorizer: AllowAllAuthorizer\n\
batch_size_warn_threshold: 64KiB\n\
batch_size_fail_threshold: 640KiB\n",
        data = d("data"),
        commitlog = d("commitlog"),
        caches = d("saved_caches"),
        hints = d("hints"),
        cdc = d("cdc_raw"),
    );
    let logback = format!(
        "<configuration>\n  <appender name=\"FILE\" class=\"ch.qos.logback.core.FileAppender\">\n    <file>{}</file>\n    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>\n  </appender>\n  <root level=\"INFO\"><appender-ref ref=\"FILE\"/></root>\n</configuration>\n",
        dir.join("system.log").display()
    );
    LaunchSpec {
        program: java.to_path_buf(),
        args,
        files: vec![(conf.join("cassandra.yaml"), yaml), (conf.join("logback.xml"), logback)],
        initialise: None,
    }
}

/// Kafka as one KRaft node that is both broker and controller, bound to 127.0.0.1: a static
/// controller quorum of itself (`controller.quorum.voters`, so a changed controller port needs no
/// re-format), replication factor 1 and min ISR 1 for the internal topics, no rebalance delay, small
/// heap, logs on stdout (the stack's `server.log`), temporary files (native libraries the compression
/// codecs unpack) in its own `tmp`. The storage is formatted once, before the first start
/// (`kafka.tools.StorageTool format` with a fresh cluster id), when `data` does not exist yet.
pub fn kafka_spec(
    java: &Path,
    home: &Path,
    dir: &Path,
    port: u16,
    controller_port: u16,
    heap: &str,
    cluster_id: &str,
) -> LaunchSpec {
    let conf = dir.join("conf");
    let data = dir.join("data");
    let tmp = dir.join("tmp");
    let properties = conf.join("server.properties");
    let log4j = conf.join("log4j2.properties");
    let classpath = format!("{}/*", home.join("lib").display());
    let jvm = |heap_args: bool| {
        let mut a: Vec<String> = Vec::new();
        if heap_args {
            a.extend([
                format!("-Xms{heap}"),
                format!("-Xmx{heap}"),
                // As Kafka's own kafka-run-class.sh starts it.
                "-XX:+UseG1GC".into(),
                "-XX:MaxGCPauseMillis=20".into(),
                "-XX:InitiatingHeapOccupancyPercent=35".into(),
                "-XX:+ExplicitGCInvokesConcurrent".into(),
            ]);
        }
        a.extend([
            "-Djava.awt.headless=true".into(),
            "-Djava.net.preferIPv4Stack=true".into(),
            format!("-Djava.io.tmpdir={}", tmp.display()),
            format!("-Dlog4j2.configurationFile={}", log4j.display()),
            format!("-Dkafka.logs.dir={}", dir.display()),
            "-cp".into(),
            classpath.clone(),
        ]);
        a
    };
    let mut args = jvm(true);
    args.extend(["kafka.Kafka".into(), properties.display().to_string()]);
    let mut format = jvm(false);
    format.extend([
        "kafka.tools.StorageTool".into(),
        "format".into(),
        "--config".into(),
        properties.display().to_string(),
        "--cluster-id".into(),
        cluster_id.into(),
    ]);
    let server_properties = format!(
        "# Generated by polyrepl stack up; rewritten at each start.\n\
process.roles=broker,controller\n\
node.id=1\n\
controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
controller.listener.names=CONTROLLER\n\
inter.broker.listener.name=PLAINTEXT\n\
log.dirs={data}\n\
num.partitions=1\n\
default.replication.factor=1\n\
offsets.topic.replication.factor=1\n\
transaction.state.log.replication.factor=1\n\
transaction.state.log.min.isr=1\n\
share.coordinator.state.topic.replication.factor=1\n\
share.coordinator.state.topic.min.isr=1\n\
group.initial.rebalance.delay.ms=0\n",
        data = data.display(),
    );
    // INFO on stdout, without the configuration dumps (hundreds of lines at every start and for every
    // internal client); the request and state-change loggers only from WARN.
    let log4j_properties = "# Generated by polyrepl stack up; rewritten at each start.\n\
status = warn\n\
appender.out.type = Console\n\
appender.out.name = STDOUT\n\
appender.out.layout.type = PatternLayout\n\
appender.out.layout.pattern = [%d] %p %m (%c)%n\n\
rootLogger.level = INFO\n\
rootLogger.appenderRef.out.ref = STDOUT\n\
logger.config.name = org.apache.kafka.common.config.AbstractConfig\n\
logger.config.level = WARN\n\
logger.request.name = kafka.request.logger\n\
logger.request.level = WARN\n\
logger.state.name = state.change.logger\n\
logger.state.level = WARN\n"
        .to_string();
    LaunchSpec {
        program: java.to_path_buf(),
        args,
        files: vec![
            (properties, server_properties),
            (log4j, log4j_properties),
            // Writing this file creates the temporary directory before the server starts.
            (tmp.join("README"), "Kafka's temporary files (-Djava.io.tmpdir)\n".to_string()),
        ],
        initialise: Some((java.to_path_buf(), format)),
    }
}

/// A fresh Kafka cluster id: 16 random bytes in URL-safe base64 without padding (22 characters), as
/// `kafka-storage random-uuid` makes them; the first bit is cleared so that it never starts with '-'.
pub fn new_kafka_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    if fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_err() {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            ^ (u128::from(std::process::id()) << 64);
        bytes = seed.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    kafka_cluster_id(&bytes)
}

fn kafka_cluster_id(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn has_cassandra_jar(home: &Path) -> bool {
    find_jar(&home.join("lib"), "cassandra-all-").is_some()
}

fn find_jar(lib: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(lib).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
        p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".jar"))
    })
}

/// The program a missing-binary error names: the configured path, else the default name.
fn wanted(explicit: &Option<PathBuf>, default: &str) -> String {
    explicit.as_ref().map_or_else(|| default.to_string(), |p| p.display().to_string())
}

/// An explicitly configured program (which must exist), else the default lookup.
fn resolve_program(explicit: &Option<PathBuf>, default: impl FnOnce() -> Option<PathBuf>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.clone()).filter(|p| p.is_file()),
        None => default(),
    }
}

/// Looks a program up on PATH, then in the sbin directories Debian puts servers in.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Creates the directory and proves we can write in it.
fn ensure_writable(dir: &Path) -> Result<(), StackError> {
    let fail = |e: std::io::Error| StackError::StateDirNotWritable { path: dir.to_path_buf(), reason: e.to_string() };
    fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    fs::write(&probe, b"ok").map_err(fail)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

/// SIGTERM, then SIGKILL if the process has not exited within `grace`.
async fn stop_process(pid: i32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let start = Instant::now();
    while alive(pid) && start.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
        while alive(pid) && start.elapsed() < grace + Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_port_free(port: u16, limit: Duration) {
    let start = Instant::now();
    while probe::port_in_use(port) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `n` lines of a log file, indented, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_is_started_for_row_cdc() {
        let spec = mysql_spec(Path::new("/usr/sbin/mariadbd"), MysqlFlavor::MariaDb, Path::new("/s/mysql"), 5600);
        for flag in [
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--log-slave-updates=ON",
            "--port=5600",
            "--bind-address=127.0.0.1",
        ] {
            assert!(spec.args.iter().any(|a| a == flag), "missing {flag}");
        }
        let (install, init) = spec.initialise.unwrap();
        assert!(install.ends_with("mariadb-install-db"));
        assert!(
            init.iter().any(|a| a == "--tmpdir=/s/mysql/tmp"),
            "the install's server gets the stack's tmpdir too: {init:?}"
        );
    }

    #[test]
    fn mysql8_gets_gtid_mode() {
        let spec = mysql_spec(Path::new("/usr/sbin/mysqld"), MysqlFlavor::Mysql8, Path::new("/s/mysql"), 5600);
        assert!(spec.args.iter().any(|a| a == "--gtid-mode=ON"));
        assert!(spec.initialise.unwrap().1.iter().any(|a| a == "--initialize-insecure"));
    }

    #[test]
    fn cassandra_yaml_binds_loopback_and_given_ports() {
        let spec = cassandra_spec(Path::new("java"), Path::new("/h"), Path::new("/s/cassandra"), 9043, 7001, "256m");
        let yaml = &spec.files[0].1;
        assert!(yaml.contains("native_transport_port: 9043") && yaml.contains("storage_port: 7001"));
        assert!(yaml.contains("listen_address: 127.0.0.1") && yaml.contains("rpc_address: 127.0.0.1"));
        assert!(spec.args.contains(&"-Xmx256m".to_string()));
    }

    #[test]
    fn kafka_is_one_kraft_node_on_loopback() {
        let spec = kafka_spec(
            Path::new("/usr/bin/java"),
            Path::new("/t/kafka-4.4.0"),
            Path::new("/s/kafka"),
            19092,
            19093,
            "256m",
            "AbCdEfGhIjKlMnOpQrStUw",
        );
        let props = &spec.files.iter().find(|(p, _)| p.ends_with("conf/server.properties")).unwrap().1;
        for line in [
            "process.roles=broker,controller",
            "node.id=1",
            "controller.quorum.voters=1@127.0.0.1:19093",
            "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
            "advertised.listeners=PLAINTEXT://127.0.0.1:19092",
            "controller.listener.names=CONTROLLER",
            "log.dirs=/s/kafka/data",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
        ] {
            assert!(props.lines().any(|l| l == line), "missing {line} in:\n{props}");
        }
        assert_eq!(spec.program, Path::new("/usr/bin/java"));
        let has = |args: &[String], a: &str| args.iter().any(|x| x == a);
        for a in
            ["-Xmx256m", "-Djava.io.tmpdir=/s/kafka/tmp", "-Dlog4j2.configurationFile=/s/kafka/conf/log4j2.properties"]
        {
            assert!(has(&spec.args, a), "missing {a}: {:?}", spec.args);
        }
        assert_eq!(
            &spec.args[spec.args.len() - 4..],
            ["-cp", "/t/kafka-4.4.0/lib/*", "kafka.Kafka", "/s/kafka/conf/server.properties"]
        );
        let (program, format) = spec.initialise.unwrap();
        assert_eq!(program, Path::new("/usr/bin/java"));
        assert_eq!(
            &format[format.len() - 6..],
            [
                "kafka.tools.StorageTool",
                "format",
                "--config",
                "/s/kafka/conf/server.properties",
                "--cluster-id",
                "AbCdEfGhIjKlMnOpQrStUw"
            ]
        );
        assert!(has(&format, "-Djava.io.tmpdir=/s/kafka/tmp") && !format.iter().any(|a| a.starts_with("-Xm")));
        assert!(spec.files.iter().any(|(p, _)| p == Path::new("/s/kafka/tmp/README")));
    }

    #[test]
    fn mongo_java_server_runs_the_built_in_launcher_on_loopback() {
        let spec = mongo_java_spec(
            Path::new("/usr/bin/java"),
            Path::new("/t/mongo-java-server-1.46.0"),
            Path::new("/s/mongo-java"),
            1801,
            "1g",
        );
        assert_eq!(spec.program, Path::new("/usr/bin/java"));
        assert!(spec.args.contains(&"-Xmx1g".to_string()));
        assert_eq!(
            &spec.args[spec.args.len() - 6..],
            [
                "-cp",
                "/t/mongo-java-server-1.46.0/lib/*",
                "/s/mongo-java/conf/MongoJavaServer.java",
                "127.0.0.1",
                "1801",
                "5.0"
            ]
        );
        assert_eq!(
            spec.files,
            vec![(PathBuf::from("/s/mongo-java/conf/MongoJavaServer.java"), MONGO_JAVA_LAUNCHER.into())]
        );
        assert!(MONGO_JAVA_LAUNCHER.contains("new MongoServer(new MemoryBackend()"));
        assert!(spec.initialise.is_none(), "in memory: nothing to initialise");
    }

    #[test]
    fn kafka_cluster_ids_are_22_url_safe_characters() {
        // 16 bytes of 0xfb.. as Java's Base64.getUrlEncoder().withoutPadding() encodes them.
        assert_eq!(kafka_cluster_id(&[0xfb; 16]), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(kafka_cluster_id(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        for _ in 0..50 {
            let id = new_kafka_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-') && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }

    #[test]
    fn long_state_dirs_get_a_short_socket() {
        let deep = Path::new("/x").join("y".repeat(120));
        assert!(socket_path(&deep, 5600).starts_with("/tmp/"));
    }
}
