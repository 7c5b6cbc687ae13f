//! The sink against a REAL Redis Cluster started by this test: three masters, no replicas, on free
//! local ports, in a temporary directory; stopped (and the directory removed) when the test ends, even
//! when it fails. Needs `redis-server` and `redis-cli` (Debian `redis-server`, `redis-tools`); without
//! them the test prints a loud `SKIPPED:` line and passes.
//!
//! One test function on purpose: one cluster start (a few seconds), then the checks in order — connect
//! (`redis+cluster://` and a plain `redis://` seed), types round trip, upsert/update/delete over keys
//! spanning every master, checkpoint stored last and loaded, replay harmless, stream entries in their
//! own slot's transactions, and a failed slot leaving the checkpoint where it was.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    batch, column, datetime, delete, insert, position, simple_row, simple_table, table, unique, unsigned, upsert,
};
use polyrepl_core::testkit::conformance::{run_all, Capabilities, Oversize, Subject};
use polyrepl_core::{Checkpoint, ColumnKind as K, Sink, Value};
use polyrepl_redis::{RedisOptions, RedisSink};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// Three cluster nodes as child processes; killed and their directory removed on drop.
struct LocalCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl LocalCluster {
    fn seeds(&self) -> String {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port > 55_000 || taken.contains(&port) || taken.contains(&(port + 10_000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Waits until `check` is true, polling every 100 ms, at most `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node_reply(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<String>(&mut conn).await.ok()
}

/// Starts the cluster, or says why it cannot (missing binaries).
async fn start_cluster() -> Result<LocalCluster, String> {
    for tool in ["redis-server", "redis-cli"] {
        if Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(format!("{tool} not found on PATH (install Debian's redis-server and redis-tools)"));
        }
    }
    let dir = std::env::temp_dir().join(unique("polyrepl-redis-cluster"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster = LocalCluster { ports: Vec::new(), children: Vec::new(), dir: dir.clone() };
    for _ in 0..3 {
        let port = free_port(&cluster.ports);
        cluster.ports.push(port);
        let log = std::fs::File::create(dir.join(format!("redis-{port}.log"))).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf"), "--dir"])
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no"])
            // A limit the conformance kit's unmappable row (1.5 MiB) really passes.
            .args(["--proto-max-bulk-len", "1mb"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        cluster.children.push(child);
    }
    for &port in &cluster.ports {
        wait_until(Duration::from_secs(15), &format!("redis-server on port {port}"), || async move {
            node_reply(port, &["PING"]).await.as_deref() == Some("PONG")
        })
        .await;
    }
    let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let output = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    assert!(
        output.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for &port in &cluster.ports {
        wait_until(Duration::from_secs(30), &format!("cluster_state:ok on port {port}"), || async move {
            node_reply(port, &["CLUSTER", "INFO"]).await.is_some_and(|info| info.contains("cluster_state:ok"))
        })
        .await;
    }
    Ok(cluster)
}

async fn raw_cluster(cluster: &LocalCluster) -> ClusterConnection {
    let seeds: Vec<String> = cluster.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    ClusterClient::new(seeds).unwrap().get_async_connection().await.unwrap()
}

async fn hash(conn: &mut ClusterConnection, key: &str) -> Vec<(String, Vec<u8>)> {
    let map: HashMap<String, Vec<u8>> = redis::cmd("HGETALL").arg(key).query_async(conn).await.unwrap();
    let mut fields: Vec<_> = map.into_iter().collect();
    fields.sort();
    fields
}

async fn exists(conn: &mut ClusterConnection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await.unwrap() == 1
}

#[tokio::test]
async fn the_sink_works_on_a_real_redis_cluster() {
    let cluster = match start_cluster().await {
        Ok(c) => c,
        Err(why) => {
            eprintln!("\n**********\nSKIPPED: Redis Cluster test not run: {why}\n**********\n");
            return;
        }
    };
    let mut raw = raw_cluster(&cluster).await;
    let pipeline = unique("pipe");

    // Connect: an explicit cluster URL, and a plain redis:// URL of one node (used as the seed).
    let url = format!("redis+cluster://{}", cluster.seeds());
    let mut sink = RedisSink::connect(&url, &pipeline, RedisOptions::default()).await.unwrap();
    assert!(sink.is_cluster());
    assert_eq!(sink.name(), url);
    let seeded =
        RedisSink::connect(&format!("redis://127.0.0.1:{}", cluster.ports[2]), &pipeline, RedisOptions::default())
            .await
            .unwrap();
    assert!(seeded.is_cluster(), "a redis:// seed in cluster mode switches to cluster mode");
    let err = RedisSink::connect(&format!("redis://127.0.0.1:{}/2", cluster.ports[0]), "p", RedisOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("database 0 only"), "{err}");
    assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), None);

    // Types round trip through read_rows.
    let db = unique("prt");
    let decimal = format!("-{}.{}", "9".repeat(35), "9".repeat(30));
    let cases = [
        (unsigned("u64", K::BigInt), Value::UInt(u64::MAX)),
        (column("dec", K::Decimal { precision: 65, scale: 30 }), Value::Decimal(decimal)),
        (column("s", K::VarChar), Value::String("héllo 😀 Ω:{tag}".into())),
        (column("blob", K::Blob), Value::Bytes(vec![0, 1, 0, 0xff, 0xfe, 0])),
        (column("dt6", K::DateTime { fsp: 6 }), Value::DateTime(datetime(9999, 12, 31, 23, 59, 59, 999_999, 6))),
        (column("j", K::Json), Value::Json(serde_json::json!({"a": [1, -2.5, null], "e": "😀"}))),
        (
            column("set", K::Set { labels: vec!["a".into(), "b".into(), "c".into()] }),
            Value::Set(vec!["a".into(), "c".into()]),
        ),
        (column("nul", K::VarChar), Value::Null),
    ];
    let mut columns = vec![column("id", K::BigInt)];
    columns.extend(cases.iter().map(|c| c.0.clone()));
    let types = table(&db, "types", columns, vec![0]);
    sink.prepare(std::slice::from_ref(&types)).await.unwrap();
    let rows: Vec<Vec<Value>> = (1..=20)
        .map(|id| {
            let mut r = vec![Value::Int(id)];
            r.extend(cases.iter().map(|c| if id % 2 == 0 { Value::Null } else { c.1.clone() }));
            r
        })
        .collect();
    sink.apply(&batch(rows.iter().cloned().map(|r| insert(&types, r)).collect(), 100)).await.unwrap();
    let keys: Vec<Vec<Value>> = (1..=21).map(|id| vec![Value::Int(id)]).collect();
    let back = sink.read_rows(&types, &keys).await.unwrap();
    let mut expected: Vec<Option<Vec<Value>>> = rows.into_iter().map(Some).collect();
    expected.push(None);
    assert_eq!(back, expected);
    assert_eq!(hash(&mut raw, &format!("{db}:types:2")).await, vec![("id".to_string(), b"2".to_vec())]);
    assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(Checkpoint::streaming(position(100))));

    // Upsert / update / delete across many keys: they must land on every master.
    let t = simple_table(&db);
    let n = 400;
    sink.apply(&batch((0..n).map(|i| insert(&t, simple_row(i, Some(&format!("v{i}"))))).collect(), 200)).await.unwrap();
    let slots: BTreeSet<u16> =
        (0..n).map(|i| polyrepl_redis::naming::hash_slot(format!("{db}:t:{i}").as_bytes())).collect();
    assert!(slots.len() > 300, "keys spread over many slots ({})", slots.len());
    for &port in &cluster.ports {
        let size: i64 = {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
        };
        assert!(size > 50, "node {port} holds {size} keys: the rows should spread over every master");
    }
    let mut changes = Vec::new();
    for i in 0..n {
        match i % 4 {
            0 => changes.push(upsert(&t, simple_row(i, Some("updated")))),
            1 => changes.push(upsert(&t, simple_row(i, None))),
            2 => changes.push(delete(&t, vec![Value::Int(i)])),
            _ => {}
        }
    }
    changes.push(insert(&t, simple_row(10_000, Some("new"))));
    let second = batch(changes, 300);
    sink.apply(&second).await.unwrap();
    let expect = |i: i64| match i % 4 {
        0 => Some(simple_row(i, Some("updated"))),
        1 => Some(simple_row(i, None)),
        2 => None,
        _ => Some(simple_row(i, Some(&format!("v{i}")))),
    };
    let check_all = |rows: Vec<Option<Vec<Value>>>| {
        for (i, r) in rows.into_iter().enumerate() {
            assert_eq!(r, expect(i as i64), "row {i}");
        }
    };
    let keys: Vec<Vec<Value>> = (0..n).map(|i| vec![Value::Int(i)]).collect();
    check_all(sink.read_rows(&t, &keys).await.unwrap());
    assert_eq!(
        hash(&mut raw, &format!("{db}:t:0")).await,
        vec![("id".into(), b"0".to_vec()), ("v".into(), b"updated".to_vec())]
    );
    assert_eq!(hash(&mut raw, &format!("{db}:t:1")).await, vec![("id".into(), b"1".to_vec())]);
    assert!(!exists(&mut raw, &format!("{db}:t:2")).await);
    assert_eq!(
        hash(&mut raw, &format!("{db}:t:10000")).await,
        vec![("id".into(), b"10000".to_vec()), ("v".into(), b"new".to_vec())]
    );
    let stored: String =
        redis::cmd("GET").arg(format!("polyrepl:checkpoint:{pipeline}")).query_async(&mut raw).await.unwrap();
    assert_eq!(Checkpoint::from_json(&stored).unwrap(), Checkpoint::streaming(position(300)));

    // Replaying the same batch (as after a crash before the checkpoint) changes nothing.
    sink.apply(&second).await.unwrap();
    check_all(sink.read_rows(&t, &keys).await.unwrap());
    assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(Checkpoint::streaming(position(300))));
    // A fresh sink (a restart) sees the same checkpoint.
    let mut restarted = RedisSink::connect(&url, &pipeline, RedisOptions::default()).await.unwrap();
    assert_eq!(restarted.load_checkpoint(&pipeline).await.unwrap(), Some(Checkpoint::streaming(position(300))));

    // The change stream, with TTL, tiny chunks (the stream key's slot group spans many transactions).
    let spipe = unique("pipe");
    let options = RedisOptions {
        stream: Some(100_000),
        ttl: Some(Duration::from_secs(600)),
        max_chunk_commands: 8,
        ..Default::default()
    };
    let mut streamed = RedisSink::connect(&url, &spipe, options).await.unwrap();
    let st = table(&db, "s", vec![column("id", K::Int), column("v", K::VarChar)], vec![0]);
    streamed.prepare(std::slice::from_ref(&st)).await.unwrap();
    let sb = batch((0..50).map(|i| insert(&st, simple_row(i, Some("x")))).collect(), 400);
    streamed.apply(&sb).await.unwrap();
    let stream_key = format!("polyrepl:stream:{db}:s");
    let xlen = |raw: &mut ClusterConnection| {
        let mut raw = raw.clone();
        let key = stream_key.clone();
        async move { redis::cmd("XLEN").arg(&key).query_async::<i64>(&mut raw).await.unwrap() }
    };
    assert_eq!(xlen(&mut raw).await, 50);
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&stream_key).arg("-").arg("+").query_async(&mut raw).await.unwrap();
    let seqs: Vec<u64> = entries
        .iter()
        .map(|(_, fields)| serde_json::from_str::<serde_json::Value>(&fields[0].1).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>(), "stream entries keep batch order");
    let ttl: i64 = redis::cmd("PTTL").arg(format!("{db}:s:7")).query_async(&mut raw).await.unwrap();
    assert!(ttl > 0 && ttl <= 600_000, "ttl {ttl}");
    streamed.apply(&sb).await.unwrap();
    assert_eq!(xlen(&mut raw).await, 100, "a replay appends the entries again (at least once)");
    assert_eq!(streamed.load_checkpoint(&spipe).await.unwrap(), Some(Checkpoint::streaming(position(400))));

    // A slot that fails leaves the checkpoint where it was: another table's stream key holds a string.
    let bad = table(&db, "bad", vec![column("id", K::Int), column("v", K::VarChar)], vec![0]);
    let bad_stream = format!("polyrepl:stream:{db}:bad");
    let _: () = redis::cmd("SET").arg(&bad_stream).arg("not a stream").query_async(&mut raw).await.unwrap();
    let err = streamed.prepare(std::slice::from_ref(&bad)).await.expect_err("prepare sees the wrong type");
    assert!(err.to_string().contains("not a stream"), "{err}");
    let failing = batch(vec![insert(&st, simple_row(1000, Some("y"))), insert(&bad, simple_row(1, Some("z")))], 500);
    let err = streamed.apply(&failing).await.expect_err("a slot transaction fails");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert!(err.to_string().contains("checkpoint not written"), "{err}");
    assert_eq!(
        streamed.load_checkpoint(&spipe).await.unwrap(),
        Some(Checkpoint::streaming(position(400))),
        "checkpoint unchanged"
    );
    // Once the obstacle is gone, the replayed batch goes through.
    let _: () = redis::cmd("DEL").arg(&bad_stream).query_async(&mut raw).await.unwrap();
    streamed.apply(&failing).await.unwrap();
    assert_eq!(streamed.load_checkpoint(&spipe).await.unwrap(), Some(Checkpoint::streaming(position(500))));
    assert_eq!(streamed.read_rows(&bad, &[vec![Value::Int(1)]]).await.unwrap(), vec![Some(simple_row(1, Some("z")))]);

    // truncate_table and drop_table reach the keys on every master.
    let rows_on_nodes = |pattern: String| {
        let ports = cluster.ports.clone();
        async move {
            let mut total = 0;
            for port in ports {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap();
                total += keys.len();
            }
            total
        }
    };
    assert!(rows_on_nodes(format!("{db}:t:*")).await > 300);
    sink.truncate_table(&t).await.unwrap();
    assert_eq!(rows_on_nodes(format!("{db}:t:*")).await, 0, "truncate_table left rows on a master");
    assert!(sink.read_rows(&t, &keys).await.unwrap().iter().all(Option::is_none));
    assert!(rows_on_nodes(format!("{db}:types:*")).await > 0, "truncate_table touched another table");
    streamed.drop_table(&st).await.unwrap();
    assert_eq!(rows_on_nodes(format!("{db}:s:*")).await, 0, "drop_table left rows on a master");
    assert!(!exists(&mut raw, &stream_key).await, "drop_table left the change stream");

    // The conformance kit, but for scan_keys (not supported on a cluster: a definite error).
    let kit_pipeline = unique("pipe");
    let mut kit_sink = RedisSink::connect(&url, &kit_pipeline, RedisOptions::default()).await.unwrap();
    assert_eq!(kit_sink.limits().bulk, 1 << 20, "the sink read the cluster's proto-max-bulk-len");
    let reopen_url = url.clone();
    let reopen_pipeline = kit_pipeline.clone();
    let (policy_url, policy_pipeline) = (url.clone(), kit_pipeline.clone());
    let subject = Subject {
        label: format!("redis cluster {url}"),
        pipeline: kit_pipeline.clone(),
        capabilities: Capabilities { no_key_scan: true, ..Default::default() },
        reopen: Box::new(move || {
            let (url, pipeline) = (reopen_url.clone(), reopen_pipeline.clone());
            Box::pin(async move {
                Box::new(RedisSink::connect(&url, &pipeline, RedisOptions::default()).await.unwrap()) as Box<dyn Sink>
            })
        }),
        open_with_policy: Box::new(move |policy| {
            let (url, pipeline) = (policy_url.clone(), policy_pipeline.clone());
            Box::pin(async move {
                Box::new(
                    RedisSink::connect(&url, &pipeline, RedisOptions::default()).await.unwrap().with_row_policy(policy),
                ) as Box<dyn Sink>
            })
        }),
        oversize: Some(Oversize::Value((3 << 20) / 2)),
    };
    run_all(&mut kit_sink, &subject, &unique("prt")).await;

    drop(cluster);
}
