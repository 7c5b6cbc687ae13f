//! A sink outage while `polyrepl run` streams into two sinks: a dedicated sink server (started with
//! `polyrepl stack`, so the shared servers other tests use are never touched) is stopped for ~30 s
//! and started again (data kept) under a writer making ~20 changes/s. The other sink (the shared
//! Redis) must keep applying during the outage; without being restarted, polyrepl must retry the
//! stopped sink with backoff, logging one line when it goes and one when it is back, and bring both
//! sinks to exactly the source table: nothing lost, nothing extra, no stale value.
//!
//! 1. MongoDB (FerretDB) outage. 2. Cassandra outage.
//!
//! Each test creates its own random source database on the shared MariaDB; the dedicated server is
//! purged (`stack down --purge`), and the source database, the Redis keys `DB:*` and the pipeline's
//! Redis checkpoint are dropped at the end, also after a failure.
//!
//! Servers: MariaDB 127.0.0.1:5600 and Redis 127.0.0.1:6379 (shared), plus FerretDB / Cassandra as
//! `polyrepl stack up --backend local` starts them.

mod common;

use common::*;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mysql_async::prelude::*;
use polyrepl_core::Sink;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyrepl");
const OUTAGE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Mongo,
    Cassandra,
}

/// A sink server of this test's own, on free ports with a temporary state directory; purged on drop.
struct OwnSink {
    kind: Kind,
    port: u16,
    args: Vec<String>,
    state: tempfile::TempDir,
}

impl OwnSink {
    fn stack(state: &Path, args: &[String], verb: &[&str]) -> Output {
        Command::new(BIN)
            .arg("stack")
            .args(verb)
            .args(["--backend", "local"])
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .output()
            .expect("run polyrepl stack")
    }

    fn run(&self, verb: &[&str]) {
        let out = Self::stack(self.state.path(), &self.args, verb);
        assert!(
            out.status.success(),
            "polyrepl stack {verb:?} {:?} failed:\n{}{}",
            self.args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(kind: Kind) -> OwnSink {
        let port = free_port();
        let args: Vec<String> = match kind {
            Kind::Mongo => vec!["--service".into(), "mongodb".into(), "--mongo-port".into(), port.to_string()],
            Kind::Cassandra => vec![
                "--service".into(),
                "cassandra".into(),
                "--cassandra-port".into(),
                port.to_string(),
                "--cassandra-storage-port".into(),
                free_port().to_string(),
                "--cassandra-heap".into(),
                "384m".into(),
            ],
        };
        let s = OwnSink { kind, port, args, state: tempfile::tempdir().unwrap() };
        s.run(&["up"]);
        s
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::Mongo => format!("mongodb://127.0.0.1:{}", self.port),
            Kind::Cassandra => format!("cassandra://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for OwnSink {
    fn drop(&mut self) {
        let _ = Self::stack(self.state.path(), &self.args, &["down", "--purge"]);
    }
}

/// Drops the Redis keys `DB:*` and the pipeline's Redis checkpoint at the end, even after a failure.
struct RedisCleanup {
    db: String,
    pipeline: String,
}

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.db, std::slice::from_ref(&self.pipeline), false);
    }
}

async fn redis_conn() -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(REDIS).ok()?;
    tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await.ok()?.ok()
}

/// The streamed GTID sequence (of `domain`) of the Redis checkpoint of `pipeline`.
async fn redis_seq(pipeline: &str, domain: u64) -> Option<u64> {
    let mut conn = redis_conn().await?;
    let text: Option<String> =
        redis::cmd("GET").arg(format!("polyrepl:checkpoint:{pipeline}")).query_async(&mut conn).await.ok()?;
    let cp: serde_json::Value = serde_json::from_str(&text?).ok()?;
    snapshot_complete(&cp).then_some(())?;
    checkpoint_gtid_seq(&cp, domain)
}

/// The streamed GTID sequence (of `domain`) of the dedicated sink's checkpoint of `pipeline`
/// (a new client each time: the server may have restarted).
async fn own_seq(own: &OwnSink, pipeline: &str, domain: u64) -> Option<u64> {
    let read = async {
        let cp = match own.kind {
            Kind::Mongo => {
                let client = mongodb::Client::with_uri_str(own.url()).await.ok()?;
                let cp = checkpoint(&client, pipeline).await;
                client.shutdown().await;
                cp?
            }
            Kind::Cassandra => {
                let session = scylla::client::session_builder::SessionBuilder::new()
                    .known_node(format!("127.0.0.1:{}", own.port))
                    .build()
                    .await
                    .ok()?;
                let result = session
                    .query_unpaged(
                        "SELECT checkpoint FROM polyrepl.polyrepl_checkpoints WHERE pipeline = ?",
                        (pipeline,),
                    )
                    .await
                    .ok()?
                    .into_rows_result()
                    .ok()?;
                let (text,) = result.maybe_first_row::<(Option<String>,)>().ok()??;
                serde_json::from_str(&text?).ok()?
            }
        };
        snapshot_complete(&cp).then_some(())?;
        checkpoint_gtid_seq(&cp, domain)
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok()?
}

/// The integer keys the sink holds for `db.table`.
async fn sink_keys(own: &OwnSink, redis: bool, db: &str, table: &str) -> Option<BTreeSet<i64>> {
    if redis {
        let mut conn = redis_conn().await?;
        return redis_int_keys(&mut conn, &format!("{db}:{table}:")).await;
    }
    match own.kind {
        Kind::Mongo => {
            let client = mongodb::Client::with_uri_str(own.url()).await.ok()?;
            let docs: Vec<Document> = client
                .database(db)
                .collection::<Document>(table)
                .find(doc! {})
                .projection(doc! { "_id": 1 })
                .await
                .ok()?
                .try_collect()
                .await
                .ok()?;
            Some(
                docs.iter()
                    .map(|d| match d.get("_id") {
                        Some(Bson::Int32(v)) => *v as i64,
                        Some(Bson::Int64(v)) => *v,
                        other => panic!("unexpected _id {other:?}"),
                    })
                    .collect(),
            )
        }
        Kind::Cassandra => {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_node(format!("127.0.0.1:{}", own.port))
                .build()
                .await
                .ok()?;
            let result = session
                .query_unpaged(format!("SELECT \"id\" FROM \"{db}\".\"{table}\""), &[])
                .await
                .ok()?
                .into_rows_result()
                .ok()?;
            result.rows::<(i32,)>().ok()?.map(|r| r.map(|(id,)| id as i64)).collect::<Result<BTreeSet<_>, _>>().ok()
        }
    }
}

async fn outage_test(kind: Kind) {
    let t0 = Instant::now();
    let own = OwnSink::up(kind);
    let own_url = own.url();
    eprintln!("dedicated {kind:?} on port {} up after {:.1} s", own.port, t0.elapsed().as_secs_f64());

    let db = Arc::new(TestDb::create("sinkout").await);
    let pipeline = unique("sinkout");
    let _redis_cleanup = RedisCleanup { db: db.name.clone(), pipeline: pipeline.clone() };
    db.exec("CREATE TABLE flow (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL)").await;
    db.exec("INSERT INTO flow SELECT seq, CONCAT('start-', seq), 0 FROM seq_1_to_200").await;

    let tables = format!("{}.*", db.name);
    let args: Vec<String> =
        ["run", "--source", MYSQL, "--tables", &tables, "--sink", &own_url, "--sink", REDIS, "--name", &pipeline]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut p = Polyrepl::spawn(&args);

    // The writer: one change every 50 ms; publishes the GTID of its last commit.
    let stop = Arc::new(AtomicBool::new(false));
    let last_seq = Arc::new(AtomicU64::new(0));
    let domain = Arc::new(AtomicU64::new(0));
    let (_, seed) = Rng::from_entropy();
    eprintln!("writer seed {seed}");
    let writer = {
        let (db, stop, last_seq, domain) = (db.clone(), stop.clone(), last_seq.clone(), domain.clone());
        tokio::spawn(async move {
            let mut rng = Rng::seeded(seed);
            let mut conn = db.conn().await;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let (mut next_id, mut op) = (200u64, 0u64);
            while !stop.load(SeqCst) {
                tick.tick().await; // pacing, not synchronisation
                let sql = flow_writer_step(&mut rng, &mut next_id, op);
                conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                if conn.affected_rows() > 0 {
                    let (d, s) = last_gtid(&mut conn).await;
                    domain.store(d, SeqCst);
                    last_seq.store(s, SeqCst);
                }
                op += 1;
            }
            conn.disconnect().await.unwrap();
            op
        })
    };
    let written = || (domain.load(SeqCst), last_seq.load(SeqCst));

    // Both sinks caught up before the outage.
    wait_for("the writer's first commit", Duration::from_secs(10), || async {
        (last_seq.load(SeqCst) > 0).then_some(())
    })
    .await;
    let target = written();
    wait_for(&format!("both sinks at GTID seq {}", target.1), Duration::from_secs(30), || {
        p.assert_running();
        let (own, pipeline) = (&own, &pipeline);
        async move {
            let (o, r) = tokio::join!(own_seq(own, pipeline, target.0), redis_seq(pipeline, target.0));
            (o? >= target.1 && r? >= target.1).then_some(())
        }
    })
    .await;
    eprintln!("caught up (GTID seq {}) after {:.1} s", target.1, t0.elapsed().as_secs_f64());

    // The outage: stop the dedicated server (data kept); Redis must keep applying meanwhile.
    let down_at = Instant::now();
    own.run(&["down"]);
    let at_down = written();
    eprintln!("{kind:?} down ({:.1} s to stop); writer at GTID seq {}", down_at.elapsed().as_secs_f64(), at_down.1);
    let mut timeline = Vec::new();
    let mut at_10s = None;
    let mut redis_at_end = None;
    while down_at.elapsed() < OUTAGE {
        p.assert_running();
        let r = redis_seq(&pipeline, at_down.0).await;
        timeline.push(format!("{:>4.1}s written {} redis {r:?}", down_at.elapsed().as_secs_f64(), written().1));
        if at_10s.is_none() && down_at.elapsed() >= Duration::from_secs(10) {
            at_10s = Some(written().1);
        }
        redis_at_end = r;
        tokio::time::sleep(Duration::from_millis(1000)).await; // observing during a timed outage
    }
    eprintln!("during the outage:\n{}", timeline.join("\n"));
    let at_10s = at_10s.expect("outage shorter than 10 s");
    let r = redis_at_end.expect("no Redis checkpoint during the outage");
    assert!(
        r >= at_10s && r > at_down.1,
        "Redis stalled during the {kind:?} outage: its checkpoint is at GTID seq {r}, the writer had reached {at_10s} 10 s in ({} at the stop)",
        at_down.1
    );

    let up_at = Instant::now();
    own.run(&["up"]);
    eprintln!(
        "{kind:?} up again ({:.1} s to start; outage {:.1} s)",
        up_at.elapsed().as_secs_f64(),
        down_at.elapsed().as_secs_f64()
    );
    p.assert_running();

    // Keep writing for a moment after it is back, then stop the writer and wait for both sinks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, SeqCst);
    let ops = writer.await.unwrap();
    let last = written();
    wait_for(&format!("both sinks at the writer's last GTID seq {}", last.1), Duration::from_secs(45), || {
        p.assert_running();
        let (own, pipeline) = (&own, &pipeline);
        async move {
            let (o, r) = tokio::join!(own_seq(own, pipeline, last.0), redis_seq(pipeline, last.0));
            (o? >= last.1 && r? >= last.1).then_some(())
        }
    })
    .await;
    eprintln!("both sinks at GTID seq {} {:.1} s after the restart", last.1, up_at.elapsed().as_secs_f64());

    // Exact equality with the source, read back through each sink's own mapping.
    let schema = source_schema(&db, "flow").await;
    let mut own_reader: Box<dyn Sink> = match kind {
        Kind::Mongo => {
            Box::new(polyrepl_mongo::MongoSink::connect(&own_url, "outage-reader").await.expect("MongoSink"))
        }
        Kind::Cassandra => Box::new(
            polyrepl_cassandra::CassandraSink::connect(&own_url, "outage-reader", Default::default())
                .await
                .expect("CassandraSink"),
        ),
    };
    let mut redis_reader =
        polyrepl_redis::RedisSink::connect(REDIS, "outage-reader", Default::default()).await.expect("RedisSink");
    let expected = source_rows_by_id(&db, &schema).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        p.assert_running();
        let (ko, kr) = tokio::join!(sink_keys(&own, false, &db.name, "flow"), sink_keys(&own, true, &db.name, "flow"));
        let d_own = sink_differences(own_reader.as_mut(), &format!("{kind:?}"), ko, &expected, &schema).await;
        let d_redis = sink_differences(&mut redis_reader, "Redis", kr, &expected, &schema).await;
        match (d_own, d_redis) {
            (None, None) => break,
            (a, b) if Instant::now() > deadline => {
                panic!(
                    "the sinks never matched the source after the outage:\n{}\n{}\n{}",
                    a.unwrap_or_default(),
                    b.unwrap_or_default(),
                    p.log()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    eprintln!(
        "FIGURE {kind:?} outage {:.0} s: writer made {ops} changes; {} rows equal in {kind:?} and Redis; total {:.1} s",
        OUTAGE.as_secs_f64(),
        expected.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(ops >= 300, "the writer made too few changes ({ops})");

    // Still the same process; one line when the sink went, one when it came back, naming it.
    p.assert_running();
    let log = p.log();
    let went: Vec<&str> = log.lines().filter(|l| l.contains("sink unavailable; retrying with backoff")).collect();
    let came: Vec<&str> = log.lines().filter(|l| l.contains("sink is back; applying again")).collect();
    assert_eq!(went.len(), 1, "one warning when {kind:?} went away, got:\n{}\n--- log:\n{log}", went.join("\n"));
    assert_eq!(came.len(), 1, "one line when {kind:?} came back, got:\n{}\n--- log:\n{log}", came.join("\n"));
    let port = format!(":{}", own.port);
    assert!(
        went[0].contains(&port) && came[0].contains(&port),
        "the lines name the {kind:?} sink:\n{}\n{}",
        went[0],
        came[0]
    );
    eprintln!("logged:\n{}\n{}", went[0], came[0]);

    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM should stop cleanly, got {status}:\n{}", p.log());
}

/// 1. FerretDB stopped for 30 s and started again under a writer: Redis keeps applying, MongoDB
///    catches up, both end equal to the source, one log line each way, polyrepl never exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_outage_is_retried_and_loses_nothing() {
    outage_test(Kind::Mongo).await;
}

/// 2. Cassandra stopped for 30 s and started again under a writer: same guarantees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cassandra_outage_is_retried_and_loses_nothing() {
    outage_test(Kind::Cassandra).await;
}
