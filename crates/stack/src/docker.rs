//! The docker backend: the same services as containers (mysql:8.0, mongo:7, redis:7, cassandra:5, and
//! apache/kafka:4.4.0 and mongo:4.4 as `mongo-java` when asked for) through the Docker Engine API. Containers carry the label `dev.polyrepl.stack=<state dir>`, and `down`
//! removes exactly the containers with that label. No engine runs on polyrepl's CI machine: the container
//! specs are unit-tested, the engine calls are not exercised there.

use crate::{Backend, Service, ServiceStatus, StackConfig, StackError};
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, PortBinding};
use std::collections::HashMap;

pub const LABEL: &str = "dev.polyrepl.stack";

/// The image, container name, environment, command and port of one service's container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub body: ContainerCreateBody,
}

/// What the container for `s` is created with.
pub fn container_spec(cfg: &StackConfig, s: Service) -> ContainerSpec {
    let (image, inner_port, env, cmd, health): (&str, u16, Vec<String>, Vec<String>, Vec<String>) = match s {
        Service::Mysql => (
            "mysql:8.0",
            3306,
            vec!["MYSQL_ALLOW_EMPTY_PASSWORD=yes".into(), "MYSQL_ROOT_HOST=%".into()],
            [
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--gtid-mode=ON",
                "--enforce-gtid-consistency=ON",
            ]
            .map(String::from)
            .to_vec(),
            vec!["CMD-SHELL".into(), "mysql -uroot -e 'SELECT 1'".into()],
        ),
        Service::Mongo => (
            "mongo:7",
            27017,
            vec![],
            vec![],
            vec!["CMD".into(), "mongosh".into(), "--quiet".into(), "--eval".into(), "db.runCommand({ping:1})".into()],
        ),
        Service::Redis => (
            "redis:7",
            6379,
            vec![],
            vec!["redis-server".into(), "--save".into(), "".into(), "--appendonly".into(), "no".into()],
            vec!["CMD".into(), "redis-cli".into(), "ping".into()],
        ),
        Service::Cassandra => (
            "cassandra:5",
            9042,
            vec!["MAX_HEAP_SIZE=512M".into(), "HEAP_NEWSIZE=128M".into()],
            vec![],
            vec!["CMD-SHELL".into(), "cqlsh -e 'SELECT release_version FROM system.local'".into()],
        ),
        // The second MongoDB-wire server: locally mongo-java-server, a stand-in for a real mongod of the
        // 4.4–7.x line where none can be installed; where Docker runs, the real one takes its place on
        // the same port (4.4: the oldest the driver supports, the same update/delete command path).
        Service::MongoJava => (
            "mongo:4.4",
            27017,
            vec![],
            vec![],
            vec!["CMD".into(), "mongo".into(), "--quiet".into(), "--eval".into(), "db.runCommand({ping:1})".into()],
        ),
        // Written by analogy with the local backend's settings and the image's documented KAFKA_*
        // variables (each becomes a server.properties line); not run here: no Docker engine on the
        // machine polyrepl is tested on. Clients on the host reach PLAINTEXT (advertised as the host
        // port); the health check and the broker itself use INTERNAL, advertised inside the container.
        Service::Kafka => (
            "apache/kafka:4.4.0",
            9092,
            vec![
                "KAFKA_NODE_ID=1".into(),
                "KAFKA_PROCESS_ROLES=broker,controller".into(),
                "KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093".into(),
                "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://localhost:9093,INTERNAL://localhost:19092".into(),
                format!(
                    "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:{},INTERNAL://localhost:19092",
                    cfg.kafka_port
                ),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT"
                    .into(),
                "KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER".into(),
                "KAFKA_INTER_BROKER_LISTENER_NAME=INTERNAL".into(),
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1".into(),
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1".into(),
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1".into(),
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR=1".into(),
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR=1".into(),
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0".into(),
                format!("KAFKA_HEAP_OPTS=-Xms{0} -Xmx{0}", cfg.kafka_heap),
            ],
            vec![],
            vec!["CMD-SHELL".into(), "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:19092 --list".into()],
        ),
    };
    let host_port = cfg.port(s);
    let port_key = format!("{inner_port}/tcp");
    let bindings = HashMap::from([(
        port_key.clone(),
        Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port.to_string()) }]),
    )]);
    let labels = HashMap::from([
        (LABEL.to_string(), cfg.state_dir.display().to_string()),
        ("dev.polyrepl.service".to_string(), s.name().to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.into()),
        env: Some(env),
        cmd: if cmd.is_empty() { None } else { Some(cmd) },
        labels: Some(labels),
        exposed_ports: Some(vec![port_key]),
        healthcheck: Some(HealthConfig {
            test: Some(health),
            interval: Some(2_000_000_000), // nanoseconds
            timeout: Some(5_000_000_000),
            retries: Some(90),
            start_period: Some(5_000_000_000),
            start_interval: None,
        }),
        host_config: Some(HostConfig { port_bindings: Some(bindings), ..Default::default() }),
        ..Default::default()
    };
    ContainerSpec { name: format!("polyrepl-{}-{}", s.name(), host_port), image: image.into(), body }
}

/// Starts, inspects and stops the stack as Docker containers.
pub struct DockerBackend {
    cfg: StackConfig,
    docker: bollard::Docker,
}

impl DockerBackend {
    /// Connects to the local engine; a clear error when none answers.
    pub async fn connect(cfg: StackConfig) -> Result<Self, StackError> {
        let docker = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| StackError::NoDockerEngine { reason: e.to_string() })?;
        docker.ping().await.map_err(|e| StackError::NoDockerEngine { reason: e.to_string() })?;
        Ok(DockerBackend { cfg, docker })
    }

    /// True when a Docker engine answers on this machine.
    pub async fn available() -> bool {
        match bollard::Docker::connect_with_local_defaults() {
            Ok(d) => d.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    /// Creates (pulling images as needed) and starts each container, then waits until each answers.
    pub async fn up(&self, progress: &(dyn Fn(String) + Sync)) -> Result<Vec<ServiceStatus>, StackError> {
        use bollard::query_parameters::{
            CreateContainerOptionsBuilder, CreateImageOptionsBuilder, StartContainerOptions,
        };
        use futures::StreamExt;
        let err = |e: bollard::errors::Error| StackError::Io(format!("docker: {e}"));
        for &s in &self.cfg.services {
            let spec = container_spec(&self.cfg, s);
            if self.docker.inspect_container(&spec.name, None).await.is_err() {
                progress(format!("{s}: pulling {}", spec.image));
                let mut pull = self.docker.create_image(
                    Some(CreateImageOptionsBuilder::new().from_image(&spec.image).build()),
                    None,
                    None,
                );
                while let Some(r) = pull.next().await {
                    r.map_err(err)?;
                }
                let opts = CreateContainerOptionsBuilder::new().name(&spec.name).build();
                self.docker.create_container(Some(opts), spec.body.clone()).await.map_err(err)?;
            }
            progress(format!("{s}: starting container {}", spec.name));
            self.docker.start_container(&spec.name, None::<StartContainerOptions>).await.map_err(err)?;
        }
        for &s in &self.cfg.services {
            let start = std::time::Instant::now();
            loop {
                if let Ok(v) = crate::probe::version(&self.cfg, s).await {
                    progress(format!("{s}: ready in {:.1} s ({v})", start.elapsed().as_secs_f64()));
                    break;
                }
                if start.elapsed().as_secs() > s.start_timeout_secs() + 60 {
                    return Err(StackError::service(
                        s.name(),
                        "the container did not answer in time; see `docker logs`",
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Ok(self.status().await)
    }

    pub async fn status(&self) -> Vec<ServiceStatus> {
        let mut out = Vec::new();
        for &s in &self.cfg.services {
            let spec = container_spec(&self.cfg, s);
            let id = self.docker.inspect_container(&spec.name, None).await.ok().and_then(|c| c.id);
            let answer = crate::probe::version(&self.cfg, s).await;
            out.push(ServiceStatus {
                service: s,
                backend: Backend::Docker,
                address: format!("127.0.0.1:{}", self.cfg.port(s)),
                handle: id.map(|i| i.chars().take(12).collect()),
                up: answer.is_ok(),
                version: answer.as_ref().ok().cloned(),
                detail: answer.err(),
            });
        }
        out
    }

    /// Removes the containers this state directory's `up` created (found by label), with their volumes if `purge`.
    pub async fn down(&self, purge: bool, progress: &(dyn Fn(String) + Sync)) -> Result<(), StackError> {
        use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
        let err = |e: bollard::errors::Error| StackError::Io(format!("docker: {e}"));
        let filter = HashMap::from([("label".to_string(), vec![format!("{LABEL}={}", self.cfg.state_dir.display())])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filter).build()))
            .await
            .map_err(err)?;
        for c in list {
            let id = c.id.unwrap_or_default();
            progress(format!("removing container {}", c.names.unwrap_or_default().join(",")));
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(purge).build();
            self.docker.remove_container(&id, Some(opts)).await.map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_container_has_cdc_settings_and_loopback_port() {
        let cfg = StackConfig::default();
        let spec = container_spec(&cfg, Service::Mysql);
        assert_eq!(spec.image, "mysql:8.0");
        let cmd = spec.body.cmd.unwrap();
        assert!(cmd.contains(&"--binlog-row-metadata=FULL".to_string()) && cmd.contains(&"--gtid-mode=ON".to_string()));
        let b = spec.body.host_config.unwrap().port_bindings.unwrap();
        let bound = b["3306/tcp"].as_ref().unwrap()[0].clone();
        assert_eq!((bound.host_ip.as_deref(), bound.host_port.as_deref()), (Some("127.0.0.1"), Some("5600")));
        assert_eq!(spec.body.labels.unwrap()[LABEL], ".polyrepl");
    }

    #[test]
    fn every_service_has_an_image_and_a_healthcheck() {
        let cfg = StackConfig::default();
        let images: Vec<String> = Service::KNOWN.iter().map(|&s| container_spec(&cfg, s).image).collect();
        assert_eq!(images, ["mysql:8.0", "mongo:7", "redis:7", "cassandra:5", "apache/kafka:4.4.0", "mongo:4.4"]);
        for s in Service::KNOWN {
            assert!(container_spec(&cfg, s).body.healthcheck.unwrap().test.unwrap().len() >= 2);
        }
    }

    #[test]
    fn kafka_container_is_one_kraft_node_advertised_on_the_host_port() {
        let cfg = StackConfig { kafka_port: 19092, ..StackConfig::default() };
        let spec = container_spec(&cfg, Service::Kafka);
        let env = spec.body.env.unwrap();
        for e in [
            "KAFKA_PROCESS_ROLES=broker,controller",
            "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:19092,INTERNAL://localhost:19092",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0",
        ] {
            assert!(env.iter().any(|x| x == e), "missing {e}: {env:?}");
        }
        let b = spec.body.host_config.unwrap().port_bindings.unwrap();
        let bound = b["9092/tcp"].as_ref().unwrap()[0].clone();
        assert_eq!((bound.host_ip.as_deref(), bound.host_port.as_deref()), (Some("127.0.0.1"), Some("19092")));
        assert_eq!(spec.name, "polyrepl-kafka-19092");
    }
}
