//! `polyrepl stack up --service kafka` end to end: Kafka 4.4 (one KRaft node) on free ports in a state
//! directory of its own, formatted and started cold, asked for its metadata on the wire, given a topic
//! and a record with Kafka's own Java tools, stopped by a plain `stack down` (no --service), started
//! warm with the record still there, and purged by a plain `stack down --purge`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyrepl");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// Where scripts/install-deps put Kafka's jars (the same lookup as `stack up`).
fn kafka_lib() -> PathBuf {
    let home = std::env::var_os("POLYREPL_KAFKA_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let tools = std::env::var_os("POLYREPL_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".local/share/polyrepl")
        });
        tools.join("kafka-4.4.0")
    });
    home.join("lib")
}

struct Kafka {
    state: PathBuf,
    port: u16,
    controller_port: u16,
}

impl Kafka {
    /// `polyrepl stack <args> --state-dir … --backend local --kafka-port … --kafka-controller-port …`.
    fn polyrepl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--backend", "local"])
            .args(["--kafka-port", &self.port.to_string()])
            .args(["--kafka-controller-port", &self.controller_port.to_string()])
            .env_remove("POLYREPL_SERVICES")
            .output()
            .expect("run polyrepl")
    }

    /// Runs one of Kafka's own tools (`java -cp '<lib>/*' <class> <args>`), with `stdin` as its input.
    fn tool(&self, class: &str, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let tmp = self.state.join("tool-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let bootstrap = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new("java")
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .arg("-cp")
            .arg(format!("{}/*", kafka_lib().display()))
            .arg(class)
            .args(["--bootstrap-server", &bootstrap])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run java");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn consume_one(&self, topic: &str) -> String {
        let o = self.tool(
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            &[
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                "1",
                "--timeout-ms",
                "60000",
                "--formatter-property",
                "print.key=true",
            ],
            "",
        );
        assert!(o.status.success(), "console consumer failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.state.join("kafka/server.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }
}

/// Stops the broker even when an assertion failed halfway.
impl Drop for Kafka {
    fn drop(&mut self) {
        if self.state.join("kafka/server.pid").exists() {
            let _ = self.polyrepl(&["stack", "down", "--purge", "--service", "kafka"]);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_up_produce_consume_restart_and_purge() {
    let lib = kafka_lib();
    let has_jar = std::fs::read_dir(&lib)
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-4.4.0")))
        .unwrap_or(false);
    if !has_jar || Command::new("java").arg("-version").output().is_err() {
        eprintln!(
            "SKIPPED: kafka_up_produce_consume_restart_and_purge: no Kafka 4.4.0 jars in {} or no java (run scripts/install-deps)",
            lib.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kafka { state: dir.path().join("state"), port: free_port(), controller_port: free_port() };

    // Cold: formats the storage, then starts.
    let t = Instant::now();
    let up = k.polyrepl(&["stack", "up", "--service", "kafka"]);
    let cold = t.elapsed();
    assert!(up.status.success(), "stack up failed:\n{}", text(&up));
    assert!(text(&up).contains("kafka: ready in"), "{}", text(&up));
    assert!(k.state.join("kafka/data/meta.properties").exists(), "storage not formatted");
    let props = std::fs::read_to_string(k.state.join("kafka/conf/server.properties")).unwrap();
    assert!(props
        .contains(&format!("listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}", k.port, k.controller_port)));
    let pid = k.pid();
    eprintln!("kafka: cold stack up {:.1} s, broker RSS {} MiB", cold.as_secs_f64(), rss_kib(pid) / 1024);

    // Status: up, pid, version 4.4.0.
    let status = k.polyrepl(&["stack", "status", "--json", "--service", "kafka"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let s = &json.as_array().unwrap()[0];
    assert_eq!((s["service"].as_str(), s["up"].as_bool()), (Some("kafka"), Some(true)), "{s}");
    assert_eq!(s["handle"].as_str(), Some(pid.to_string().as_str()), "{s}");
    assert!(s["version"].as_str().unwrap().starts_with("Kafka 4.4.0, KRaft cluster "), "{s}");
    assert_eq!(s["address"].as_str(), Some(format!("127.0.0.1:{}", k.port).as_str()));

    // On the wire: one registered broker, advertised on loopback and the port asked for.
    let meta = polyrepl_stack::probe::kafka_metadata(k.port).await.unwrap();
    assert_eq!(meta.brokers, vec![(1, "127.0.0.1".to_string(), i32::from(k.port))]);
    assert_eq!(meta.controller_id, 1);

    // A topic, one record in, the same record out.
    let create = k.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--create", "--topic", "lifecycle", "--partitions", "1", "--replication-factor", "1"],
        "",
    );
    assert!(create.status.success() && text(&create).contains("Created topic lifecycle"), "{}", text(&create));
    let produce = k.tool(
        "org.apache.kafka.tools.ConsoleProducer",
        &["--topic", "lifecycle", "--reader-property", "parse.key=true", "--reader-property", "key.separator=:"],
        "k7:seven\n",
    );
    assert!(produce.status.success(), "console producer failed:\n{}", text(&produce));
    assert_eq!(k.consume_one("lifecycle"), "k7\tseven");

    // A second up leaves the running broker alone.
    let again = k.polyrepl(&["stack", "up", "--service", "kafka"]);
    assert!(again.status.success() && text(&again).contains("kafka: already running"), "{}", text(&again));

    // A plain `stack down` stops the Kafka this state directory started too.
    let down = k.polyrepl(&["stack", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("kafka: stopped"), "{}", text(&down));
    assert!(!listening(k.port) && !listening(k.controller_port), "kafka still listens after down");
    let status = k.polyrepl(&["stack", "status", "--service", "kafka"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));

    // Warm: no format, the record is still there.
    let t = Instant::now();
    let up = k.polyrepl(&["stack", "up", "--service", "kafka"]);
    let warm = t.elapsed();
    assert!(up.status.success(), "warm stack up failed:\n{}", text(&up));
    eprintln!("kafka: warm stack up {:.1} s, broker RSS {} MiB", warm.as_secs_f64(), rss_kib(k.pid()) / 1024);
    assert_eq!(k.consume_one("lifecycle"), "k7\tseven");

    // A plain `stack down --purge` stops it and deletes its data.
    let purge = k.polyrepl(&["stack", "down", "--purge"]);
    assert!(purge.status.success(), "{}", text(&purge));
    assert!(!k.state.join("kafka").exists(), "kafka data left after --purge:\n{}", text(&purge));
    assert!(!listening(k.port) && !listening(k.controller_port));
}

#[test]
fn kafka_controller_port_taken_is_refused_by_name() {
    let state = tempfile::tempdir().unwrap();
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    // A stand-in Kafka home and Java: the port check comes before anything runs.
    let home = state.path().join("kafka-home");
    std::fs::create_dir_all(home.join("lib")).unwrap();
    std::fs::write(home.join("lib/kafka_2.13-4.4.0.jar"), b"").unwrap();
    let o = Command::new(BIN)
        .args(["stack", "up", "--backend", "local", "--service", "kafka", "--java-bin", BIN, "--kafka-home"])
        .arg(&home)
        .args(["--kafka-port", &free_port().to_string(), "--kafka-controller-port", &port.to_string()])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains(&format!("port {port}"))
            && t.contains("--kafka-controller-port")
            && t.contains("POLYREPL_KAFKA_CONTROLLER_PORT"),
        "{t}"
    );
}
