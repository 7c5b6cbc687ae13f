//! The bench's source data, all from `--seed`: the `snap` table's rows and the `cdc` table's
//! pre-generated binlog range of inserts, updates and deletes on many keys.
//!
//! Both tables have the same shape (integer key, integer, short text, DECIMAL, DATETIME(6), longer
//! text: about 150 bytes a row), so raw, snapshot and cdc figures compare like with like.

use super::Bench;
use anyhow::{Context, Result};
use mysql_async::prelude::*;
use polyrepl_core::Position;
use polyrepl_mysql::binlog::current_position;

/// Rows per multi-row INSERT when filling `snap`.
const FILL_ROWS_PER_STATEMENT: usize = 1_000;
/// Row changes per transaction of the `cdc` workload.
const CDC_CHANGES_PER_TRANSACTION: usize = 200;

/// A small, fast, seeded generator (splitmix64): the same seed gives the same data on every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`, further split by `stream` so phases do not share a sequence.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the data phase produced: the `cdc` range of the binlog and how many row changes it holds.
pub struct Generated {
    /// Position before the first `cdc` transaction.
    pub cdc_from: Position,
    /// Position after the last one.
    pub cdc_to: Position,
    /// Row changes in the range (inserts + updates + deletes, as the server counted affected rows).
    pub cdc_changes: u64,
    /// Of which inserts, updates, deletes.
    pub mix: (u64, u64, u64),
}

/// `CREATE TABLE` of a bench table.
pub fn table_ddl(name: &str) -> String {
    format!(
        "CREATE TABLE `{name}` (id BIGINT NOT NULL PRIMARY KEY, grp INT NOT NULL, name VARCHAR(40) NOT NULL, \
         amount DECIMAL(12,2) NOT NULL, ts DATETIME(6) NOT NULL, note VARCHAR(120) NULL)"
    )
}

/// The SQL values of one generated row.
fn row_values(rng: &mut Rng, id: u64) -> String {
    let secs = 1_700_000_000 + rng.below(30_000_000);
    let ts = polyrepl_core::DateTime::from_epoch(secs as i64, rng.below(1_000_000) as u32, 6).mysql_text();
    let note_len = 20 + rng.below(100) as usize;
    let note: String = (0..note_len).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
    format!(
        "({id},{},'name-{:08x}',{}.{:02},'{ts}','{note}')",
        rng.below(1000),
        rng.next() as u32,
        rng.below(10_000_000),
        rng.below(100)
    )
}

/// A connection to the bench database.
pub async fn connect(bench: &Bench) -> Result<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::from_opts(bench.url.opts(false)).db_name(Some(bench.db.clone()));
    let mut conn =
        mysql_async::Conn::new(opts).await.with_context(|| format!("connecting to {}", bench.url.redacted()))?;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'").await?;
    Ok(conn)
}

/// Creates the database and tables, fills `snap` and writes the `cdc` workload.
pub async fn generate(bench: &Bench) -> Result<Generated> {
    let args = &bench.args;
    let mut admin = mysql_async::Conn::new(bench.url.opts(false))
        .await
        .with_context(|| format!("connecting to {}", bench.url.redacted()))?;
    admin
        .query_drop(format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4", bench.db))
        .await
        .context("creating the bench database")?;
    admin.disconnect().await?;
    let mut conn = connect(bench).await?;
    for t in ["snap", "cdc", "lag"] {
        let ddl = if t == "lag" {
            "CREATE TABLE `lag` (id BIGINT NOT NULL PRIMARY KEY, v BIGINT NOT NULL, written_us BIGINT NOT NULL)"
                .to_string()
        } else {
            table_ddl(t)
        };
        conn.query_drop(ddl).await.with_context(|| format!("creating table {t}"))?;
    }

    let started = std::time::Instant::now();
    let mut rng = Rng::new(args.seed, 1);
    let mut id = 0u64;
    while (id as usize) < args.rows {
        let n = FILL_ROWS_PER_STATEMENT.min(args.rows - id as usize);
        let values: Vec<String> = (0..n)
            .map(|_| {
                id += 1;
                row_values(&mut rng, id)
            })
            .collect();
        conn.query_drop(format!("INSERT INTO snap VALUES {}", values.join(","))).await.context("filling snap")?;
    }
    bench.note(format!("snap: {} rows written in {:.1} s", args.rows, started.elapsed().as_secs_f64()));

    let started = std::time::Instant::now();
    start_a_binlog_file(bench, &mut conn).await;
    let cdc_from = current_position(&bench.url).await?;
    let mut rng = Rng::new(args.seed, 2);
    let (mut live, mut next_id) = (Vec::<u64>::new(), 1u64);
    let (mut inserts, mut updates, mut deletes) = (0u64, 0u64, 0u64);
    while ((inserts + updates + deletes) as usize) < args.cdc_changes {
        let want = CDC_CHANGES_PER_TRANSACTION.min(args.cdc_changes - (inserts + updates + deletes) as usize);
        let (mut ins, mut upd, mut del) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..want {
            let r = rng.below(100);
            if r < 50 || live.len() < 2 * want {
                ins.push(row_values(&mut rng, next_id));
                next_id += 1;
            } else {
                // A key not touched yet in this transaction: swap-remove it from the live set.
                let i = rng.below(live.len() as u64) as usize;
                let key = live.swap_remove(i);
                if r < 85 {
                    upd.push(key)
                } else {
                    del.push(key)
                }
            }
        }
        let mut tx = conn.start_transaction(Default::default()).await?;
        if !ins.is_empty() {
            tx.query_drop(format!("INSERT INTO cdc VALUES {}", ins.join(","))).await.context("cdc inserts")?;
            inserts += tx.affected_rows();
        }
        if !upd.is_empty() {
            let keys = join(&upd);
            tx.query_drop(format!("UPDATE cdc SET grp = grp + 1, amount = amount + 0.01, ts = ts + INTERVAL 1 SECOND, note = CONCAT('u', LEFT(IFNULL(note, ''), 100)) WHERE id IN ({keys})"))
                .await
                .context("cdc updates")?;
            updates += tx.affected_rows();
        }
        if !del.is_empty() {
            tx.query_drop(format!("DELETE FROM cdc WHERE id IN ({})", join(&del))).await.context("cdc deletes")?;
            deletes += tx.affected_rows();
        }
        tx.commit().await?;
        live.extend((next_id - ins.len() as u64)..next_id);
        live.extend(upd);
    }
    let cdc_to = current_position(&bench.url).await?;
    start_a_binlog_file(bench, &mut conn).await;
    conn.disconnect().await?;
    let cdc_changes = inserts + updates + deletes;
    bench.note(format!(
        "cdc: {cdc_changes} changes ({inserts} inserts, {updates} updates, {deletes} deletes) written in {:.1} s, binlog {cdc_from} → {cdc_to}",
        started.elapsed().as_secs_f64()
    ));
    Ok(Generated { cdc_from, cdc_to, cdc_changes, mix: (inserts, updates, deletes) })
}

/// Makes the server start a new binlog file, so that a stream started by GTID at a measured range
/// (the cdc range, the end of the binlog after a snapshot) finds its place at once: MariaDB reads a
/// binlog file from its start up to the GTID it is asked for, and after the `snap` fill that read
/// alone took 70 ms of a 0.3 s cdc round on the bench machine — start-up, not throughput. Without the
/// privilege the bench goes on, with a note.
async fn start_a_binlog_file(bench: &Bench, conn: &mut mysql_async::Conn) {
    if let Err(e) = conn.query_drop("FLUSH BINARY LOGS").await {
        bench.note(format!("could not start a new binlog file ({e}); stream start-up may weigh on the cdc figures"));
    }
}

fn join(keys: &[u64]) -> String {
    keys.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows() {
        let (mut a, mut b) = (Rng::new(7, 1), Rng::new(7, 1));
        assert_eq!(row_values(&mut a, 1), row_values(&mut b, 1));
        assert_ne!(row_values(&mut a, 2), row_values(&mut Rng::new(8, 1), 2));
    }
}
