//! A `--config` file with a `[[sink]]` section: its `[sink.options]` reach the sink as URL options.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn a_sink_section_s_options_reach_the_sink() {
    let db = TestDb::create("cfgfile").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c')").await;
    let pipeline = db.pipeline("cfgfile");
    let prefix = format!("{}:", unique("pfx"));
    let (_dir, file) = config_file(format!(
        r#"
source = "{MYSQL}"
tables = ["{db}.*"]
name = "{pipeline}"

[[sink]]
url = "{REDIS}"
[sink.options]
prefix = "{prefix}"
stream = 100
"#,
        db = db.name
    ));
    let args: Vec<String> =
        ["run", "--config", file.to_str().unwrap(), "--stop-at-end"].iter().map(|s| s.to_string()).collect();
    let (status, log) = run_to_end(&args, Duration::from_secs(120)).await;
    let rows = redis_keys(REDIS, &format!("{prefix}{}:t:*", db.name)).await;
    let stream = format!("polyrepl:stream:{}:t", db.name);
    let streams = redis_keys(REDIS, &stream).await;
    // Clean up before asserting, so a failure leaves nothing behind.
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut garbage = rows.clone();
    garbage.extend(streams.clone());
    garbage.push(format!("polyrepl:checkpoint:{pipeline}"));
    redis::cmd("DEL").arg(&garbage).query_async::<()>(&mut conn).await.unwrap();

    assert!(status.success(), "run failed:\n{log}");
    assert_eq!(rows.len(), 3, "the rows land under the prefix the section gave: {rows:?}\n{log}");
    assert_eq!(streams, vec![stream], "the change stream the section asked for exists\n{log}");
}
