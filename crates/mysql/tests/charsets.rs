//! Character sets on the real server: polyrepl's decoder against the server's own conversion for
//! every code, random strings in every decodable character set through both readers, ENUM/SET labels
//! and column names outside ASCII, bytes the server cannot map, and the refusal of the rest.
mod common;

use common::*;
use mysql_async::prelude::*;
use polyrepl_core::{Change, ColumnKind, TableSchema, Value};
use polyrepl_mysql::charset;
use polyrepl_mysql::{current_position, discover_tables, run_startup_checks, CheckError, Snapshot, SourceError};
use polyrepl_mysql::{BinlogOptions, BinlogReader, SourceEvent};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The character sets polyrepl decodes that are not a Unicode form, and the widest code they have.
const LEGACY: [(&str, u8); 23] = [
    ("ascii", 1),
    ("latin1", 1),
    ("latin2", 1),
    ("latin5", 1),
    ("latin7", 1),
    ("cp1250", 1),
    ("cp1251", 1),
    ("cp1256", 1),
    ("cp1257", 1),
    ("cp866", 1),
    ("koi8r", 1),
    ("koi8u", 1),
    ("greek", 1),
    ("hebrew", 1),
    ("macroman", 1),
    ("tis620", 1),
    ("gbk", 2),
    ("gb2312", 2),
    ("big5", 2),
    ("euckr", 2),
    ("sjis", 2),
    ("cp932", 2),
    ("ujis", 3),
];

/// What the server makes of one code: the code's bytes, the server's utf8mb4 text of them, and that
/// text converted back to the character set.
struct ServerCode {
    bytes: Vec<u8>,
    text: Vec<u8>,
    back: Option<Vec<u8>>,
}

impl ServerCode {
    /// The server maps the code to characters: no `?` it did not get, no U+FFFD.
    fn mapped(&self) -> bool {
        let q = |b: &[u8]| b.iter().filter(|&&x| x == b'?').count();
        q(&self.text) <= q(&self.bytes) && std::str::from_utf8(&self.text).is_ok_and(|s| !s.contains('\u{FFFD}'))
    }
}

/// A code's bytes, the server's utf8mb4 text of them, and that text back in the character set.
type Converted = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Every byte, every two bytes with a high first byte (when `width` ≥ 2) and every 0x8F-led three
/// bytes with high second and third bytes (when `width` is 3), as the server converts them.
async fn server_codes(conn: &mut mysql_async::Conn, cs: &str, width: u8) -> Vec<ServerCode> {
    let select = |code: &str| {
        format!(
            "SELECT CHAR({code}), CONVERT(CONVERT(CHAR({code}) USING {cs}) USING utf8mb4), \
             CAST(CONVERT(CONVERT(CONVERT(CHAR({code}) USING {cs}) USING utf8mb4) USING {cs}) AS BINARY)"
        )
    };
    let mut queries = vec![format!("{} FROM seq_0_to_255", select("seq"))];
    if width >= 2 {
        queries.push(format!("{} FROM seq_128_to_255 a, seq_0_to_255 b", select("a.seq * 256 + b.seq")));
    }
    if width == 3 {
        queries.push(format!("{} FROM seq_128_to_255 a, seq_128_to_255 b", select("0x8F0000 + a.seq * 256 + b.seq")));
    }
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<Converted> = conn.query(q).await.unwrap();
        out.extend(rows.into_iter().map(|(bytes, text, back)| ServerCode { bytes, text, back }));
    }
    out
}

#[tokio::test]
async fn every_code_decodes_exactly_as_the_server_converts_it() {
    let mut db = TestDb::create("cscodes").await;
    let mut checked = 0usize;
    for (cs, width) in LEGACY {
        let decoder = charset::by_name(cs).unwrap();
        let mut wrong = Vec::new();
        for code in server_codes(&mut db.conn, cs, width).await {
            let ours = decoder.decode(code.bytes.clone());
            let fine = match (&ours, code.mapped()) {
                (Ok(s), true) => s.as_bytes() == code.text.as_slice(),
                (Err(_), false) => true,
                _ => false,
            };
            assert_eq!(ours.is_ok(), decoder.check(&code.bytes).is_ok(), "{cs}: check and decode disagree");
            if !fine {
                wrong.push(format!(
                    "{:02X?}: server {:?} ours {:?}",
                    code.bytes,
                    String::from_utf8_lossy(&code.text),
                    ours
                ));
            }
            checked += 1;
        }
        assert!(
            wrong.is_empty(),
            "{cs}: {} codes differ from the server, e.g. {:?}",
            wrong.len(),
            &wrong[..5.min(wrong.len())]
        );
    }
    assert!(checked > 200_000, "{checked} codes checked");
    db.drop_db().await;
}

#[tokio::test]
async fn refused_charsets_are_the_ones_without_an_exact_table() {
    let refused: Vec<&str> =
        ["armscii8", "cp850", "cp852", "dec8", "geostd8", "hp8", "keybcs2", "macce", "swe7", "eucjpms", "gb18030"]
            .into_iter()
            .filter(|cs| charset::by_name(cs).and_then(|c| c.refused()).is_some())
            .collect();
    assert_eq!(refused.len(), 11, "{refused:?}");
    // Every character set of the server is known, and every collation id maps to its character set.
    let mut db = TestDb::create("csids").await;
    let rows: Vec<(String, u64)> = db
        .conn
        .query("SELECT CHARACTER_SET_NAME, ID FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY")
        .await
        .unwrap();
    assert!(rows.len() > 1000, "{}", rows.len());
    for (cs, id) in rows {
        assert_eq!(charset::by_id(id as u16).map(|c| c.name), Some(cs.as_str()), "collation id {id}");
    }
    db.drop_db().await;
}

/// A small seeded generator (xorshift), so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn string(&mut self, alphabet: &[char], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

/// The characters the server stores in `cs` and gives back unchanged (decoded from a code that it
/// converts back to the same code).
async fn round_trip_alphabet(conn: &mut mysql_async::Conn, cs: &str, width: u8) -> Vec<char> {
    let mut chars: Vec<char> = server_codes(conn, cs, width)
        .await
        .into_iter()
        .filter(|c| c.mapped() && c.back.as_deref() == Some(c.bytes.as_slice()))
        .filter_map(|c| {
            let s = String::from_utf8(c.text).ok()?;
            let mut it = s.chars();
            let first = it.next()?;
            (it.next().is_none()).then_some(first)
        })
        .filter(|c| *c != '\0')
        .collect();
    chars.sort_unstable();
    chars.dedup();
    chars
}

/// Random characters of the Unicode planes a Unicode character set holds (no surrogates, no NUL).
fn unicode_alphabet(rng: &mut Rng, supplementary: bool) -> Vec<char> {
    let mut out: Vec<char> =
        "aZ09 ~éßøĳžÆΩжאبअกあア中한€’😀".chars().filter(|c| supplementary || (*c as u32) < 0x10000).collect();
    while out.len() < 400 {
        let limit = if supplementary { 0x10FFFF } else { 0xFFFF };
        if let Some(c) = char::from_u32(1 + (rng.next() % limit as u64) as u32) {
            out.push(c);
        }
    }
    out
}

/// One column per decodable character set: its name, SQL type and character set.
fn columns() -> Vec<(String, String, &'static str)> {
    let mut cols = Vec::new();
    for (cs, _) in LEGACY {
        cols.push((format!("v_{cs}"), format!("VARCHAR(60) CHARACTER SET {cs}"), cs));
    }
    for cs in ["utf8mb4", "utf8mb3", "ucs2", "utf16", "utf16le", "utf32"] {
        cols.push((format!("v_{cs}"), format!("VARCHAR(60) CHARACTER SET {cs}"), cs));
        cols.push((format!("t_{cs}"), format!("TEXT CHARACTER SET {cs}"), cs));
        cols.push((format!("c_{cs}"), format!("CHAR(30) CHARACTER SET {cs}"), cs));
    }
    cols.push(("t_latin1".into(), "MEDIUMTEXT CHARACTER SET latin1".into(), "latin1"));
    cols.push(("c_latin1".into(), "CHAR(30) CHARACTER SET latin1".into(), "latin1"));
    cols.push(("t_sjis".into(), "TEXT CHARACTER SET sjis".into(), "sjis"));
    cols.push(("c_big5".into(), "CHAR(20) CHARACTER SET big5".into(), "big5"));
    cols
}

/// Strings every row set must hold: the characters where windows-1252 and ISO-8859-1 differ, CJK, and
/// characters outside the Basic Multilingual Plane.
fn explicit(cs: &str) -> Option<&'static str> {
    Some(match cs {
        "latin1" => "’ € ‚ „ … ‰ Š Œ Ž ‘ “ ” • – — ˜ ™ š œ ž Ÿ",
        "gbk" => "中文汉字测试，你好",
        "gb2312" => "简体中文测试",
        "big5" => "繁體中文測試，你好",
        "sjis" | "cp932" => "日本語テキスト、ｶﾀｶﾅ",
        "ujis" => "日本語のテキスト",
        "euckr" => "한국어 텍스트",
        "utf8mb4" | "utf16" | "utf16le" | "utf32" => "😀𝄞𠀋 and 𐍈",
        "cp1251" | "koi8r" | "cp866" => "Привет",
        "greek" => "Καλημέρα",
        _ => return None,
    })
}

/// A CHAR column gives its value back without trailing spaces.
fn stored(value: &str, sql_type: &str) -> String {
    if sql_type.starts_with("CHAR") {
        value.trim_end_matches(' ').to_string()
    } else {
        value.to_string()
    }
}

/// The rows of `table` as the snapshot reads them, by key.
async fn snapshot_rows(schema: &Arc<TableSchema>) -> BTreeMap<i64, Vec<Value>> {
    let mut rows = BTreeMap::new();
    for c in snapshot_changes(schema, 7).await {
        let Value::Int(k) = c.key[0] else { panic!("key {:?}", c.key) };
        rows.insert(k, c.after.unwrap());
    }
    rows
}

/// The last after image of every key the binlog changes carry, and the binlog's schema.
fn binlog_rows(changes: &[Change]) -> (BTreeMap<i64, Vec<Value>>, Arc<TableSchema>) {
    let mut rows = BTreeMap::new();
    for c in changes {
        let Value::Int(k) = c.key[0] else { panic!("key {:?}", c.key) };
        rows.insert(k, c.after.clone().expect("inserts and updates only"));
    }
    (rows, changes[0].table.clone())
}

#[tokio::test]
async fn random_strings_in_every_charset_read_the_same_through_snapshot_and_binlog() {
    let seed = std::env::var("POLYREPL_CHARSET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| random_u32() as u64 | 1);
    eprintln!("seed {seed} (POLYREPL_CHARSET_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let mut db = TestDb::create("csprop").await;
    db.exec("SET SESSION sql_mode = 'STRICT_ALL_TABLES'").await;
    let cols = columns();
    let mut alphabets: BTreeMap<&str, Vec<char>> = BTreeMap::new();
    for (cs, width) in LEGACY {
        let a = round_trip_alphabet(&mut db.conn, cs, width).await;
        assert!(a.len() > if width == 1 { 90 } else { 5000 }, "{cs}: {} characters", a.len());
        alphabets.insert(cs, a);
    }
    for cs in ["utf8mb4", "utf16", "utf16le", "utf32"] {
        alphabets.insert(cs, unicode_alphabet(&mut rng, true));
    }
    for cs in ["utf8mb3", "ucs2"] {
        alphabets.insert(cs, unicode_alphabet(&mut rng, false));
    }
    let defs: Vec<String> = cols.iter().map(|(n, t, _)| format!("`{n}` {t}")).collect();
    db.exec(&format!("CREATE TABLE cs (id INT PRIMARY KEY, {})", defs.join(", "))).await;
    let from = current_position(&url()).await.unwrap();

    // Row 0 holds the explicit strings; the others random ones; then half of them change.
    let max_len = |t: &str| match t {
        t if t.starts_with("CHAR(20)") => 20,
        t if t.starts_with("CHAR(30)") => 30,
        _ => 60,
    };
    let mut written: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for id in 0..40i64 {
        let row: Vec<String> = cols
            .iter()
            .map(|(_, t, cs)| match (id, explicit(cs)) {
                (0, Some(s)) if s.chars().count() <= max_len(t) => s.to_string(),
                _ => rng.string(&alphabets[cs], max_len(t)),
            })
            .collect();
        written.insert(id, row);
    }
    let marks = vec!["?"; cols.len() + 1].join(", ");
    for (id, row) in &written {
        let mut params: Vec<mysql_async::Value> = vec![(*id).into()];
        params.extend(row.iter().map(|s| s.as_str().into()));
        db.conn.exec_drop(format!("INSERT INTO cs VALUES ({marks})"), params).await.unwrap();
    }
    let sets = cols.iter().map(|(n, _, _)| format!("`{n}` = ?")).collect::<Vec<_>>().join(", ");
    for id in (0..40i64).filter(|i| i % 2 == 1) {
        let row: Vec<String> = cols.iter().map(|(_, t, cs)| rng.string(&alphabets[cs], max_len(t))).collect();
        let mut params: Vec<mysql_async::Value> = row.iter().map(|s| s.as_str().into()).collect();
        params.push(id.into());
        db.conn.exec_drop(format!("UPDATE cs SET {sets} WHERE id = ?"), params).await.unwrap();
        written.insert(id, row);
    }

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let schema = Arc::new(discover_tables(&mut conn, &db.filter("cs"), "test").await.unwrap().remove(0));
    let snap = snapshot_rows(&schema).await;
    let changes: Vec<Change> =
        transactions(&read_to_end(&from, db.filter("cs")).await).into_iter().flat_map(|(_, c)| c).collect();
    assert_eq!(changes.len(), 60, "40 inserts and 20 updates");
    let (binlog, binlog_schema) = binlog_rows(&changes);
    assert_eq!(binlog_schema.columns, schema.columns, "table map and information_schema agree");

    for (id, row) in &written {
        for (j, (name, t, cs)) in cols.iter().enumerate() {
            let expected = Value::String(stored(&row[j], t));
            assert_eq!(snap[id][j + 1], expected, "snapshot row {id} column {name} ({cs}), seed {seed}");
            assert_eq!(binlog[id][j + 1], expected, "binlog row {id} column {name} ({cs}), seed {seed}");
        }
    }
    assert_eq!(snap, binlog);
    db.drop_db().await;
}

#[tokio::test]
async fn enum_set_labels_and_column_names_outside_ascii_agree_on_both_paths() {
    let mut db = TestDb::create("cslabels").await;
    db.exec("SET SESSION sql_mode = 'STRICT_ALL_TABLES'").await;
    db.exec(
        "CREATE TABLE lab (id INT PRIMARY KEY,
           `näme_é` VARCHAR(20) CHARACTER SET latin1,
           `列` ENUM('café','naïve','€uro','’quote') CHARACTER SET latin1,
           `ŝet` SET('α','β','γ') CHARACTER SET greek,
           e16 ENUM('ä','ж','z') CHARACTER SET utf16,
           s32 SET('x','ω','ж') CHARACTER SET utf32,
           ej ENUM('日本','語') CHARACTER SET sjis,
           emoji SET('😀','b','a') CHARACTER SET utf8mb4,
           e4 ENUM('b','𝄞') CHARACTER SET utf16le)",
    )
    .await;
    let from = current_position(&url()).await.unwrap();
    db.exec(
        "INSERT INTO lab VALUES (1, 'Zoë’s', '€uro', 'α,γ', 'ж', 'ω,ж', '語', '😀,a', '𝄞'),
                                (2, '', '’quote', '', 'ä', 'x', '日本', '', 'b')",
    )
    .await;

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let schema = Arc::new(discover_tables(&mut conn, &db.filter("lab"), "test").await.unwrap().remove(0));
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "näme_é", "列", "ŝet", "e16", "s32", "ej", "emoji", "e4"]);
    let labels = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(schema.columns[2].kind, ColumnKind::Enum { labels: labels(&["café", "naïve", "€uro", "’quote"]) });
    assert_eq!(schema.columns[4].kind, ColumnKind::Enum { labels: labels(&["ä", "ж", "z"]) });

    let snap = snapshot_rows(&schema).await;
    let changes: Vec<Change> =
        transactions(&read_to_end(&from, db.filter("lab")).await).into_iter().flat_map(|(_, c)| c).collect();
    let (binlog, binlog_schema) = binlog_rows(&changes);
    assert_eq!(
        binlog_schema.columns[..7],
        schema.columns[..7],
        "names and labels from the table map equal information_schema's"
    );
    // The server's catalog prints a label character outside the BMP as `?` (and refuses two such
    // labels as duplicates); the table map has it, and the values are exact on both paths.
    assert_eq!(schema.columns[7].kind, ColumnKind::Set { labels: labels(&["?", "b", "a"]) });
    assert_eq!(binlog_schema.columns[7].kind, ColumnKind::Set { labels: labels(&["😀", "b", "a"]) });
    assert_eq!(binlog_schema.columns[8].kind, ColumnKind::Enum { labels: labels(&["b", "𝄞"]) });

    let set = |v: &[&str]| Value::Set(labels(v));
    let s = |v: &str| Value::String(v.into());
    let e = |v: &str| Value::Enum(v.into());
    let expected = BTreeMap::from([
        (
            1,
            vec![
                Value::Int(1),
                s("Zoë’s"),
                e("€uro"),
                set(&["α", "γ"]),
                e("ж"),
                set(&["ω", "ж"]),
                e("語"),
                set(&["😀", "a"]),
                e("𝄞"),
            ],
        ),
        (2, vec![Value::Int(2), s(""), e("’quote"), set(&[]), e("ä"), set(&["x"]), e("日本"), set(&[]), e("b")]),
    ]);
    assert_eq!(snap, expected, "snapshot");
    assert_eq!(binlog, expected, "binlog");
    db.drop_db().await;
}

#[tokio::test]
async fn bytes_the_server_cannot_map_are_an_error_naming_the_column_on_both_paths() {
    let mut db = TestDb::create("csbad").await;
    db.exec("CREATE TABLE bad (id INT PRIMARY KEY, w VARCHAR(10) CHARACTER SET cp1250)").await;
    let from = current_position(&url()).await.unwrap();
    // A binary string goes into a single-byte column unconverted: 0x81 is no cp1250 character.
    db.exec("INSERT INTO bad VALUES (1, X'41812E')").await;
    let shown: Option<String> = db.conn.query_first("SELECT CONVERT(w USING utf8mb4) FROM bad").await.unwrap();
    assert_eq!(shown.as_deref(), Some("A?."), "the server itself cannot show it");

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let schema = Arc::new(discover_tables(&mut conn, &db.filter("bad"), "test").await.unwrap().remove(0));
    let mut snap = Snapshot::begin(&url(), 10).await.unwrap();
    let e = snap.read_chunk(&schema, None).await.unwrap_err();
    assert!(matches!(&e, SourceError::Decode { column, .. } if column == "w"), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot decode {}.bad.w (snapshot): invalid cp1250 text: bytes 0x81 at offset 1 are not a character",
            db.name
        )
    );
    snap.finish().await.unwrap();

    let e = first_binlog_error(&from, &db, "bad").await;
    assert!(
        e.contains(&format!(
            "cannot decode {}.bad.w: invalid cp1250 text: bytes 0x81 at offset 1 are not a character",
            db.name
        )),
        "{e}"
    );
    db.drop_db().await;
}

/// The error the binlog reader stops with (it must stop with one).
async fn first_binlog_error(from: &polyrepl_core::Position, db: &TestDb, table: &str) -> String {
    let mut reader = BinlogReader::start(&url(), from, db.filter(table), BinlogOptions::new(server_id()).stop_at_end())
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), reader.next_event()).await.expect("binlog read");
        match next {
            Err(e) => return e.to_string(),
            Ok(None) => panic!("the binlog reader decoded {table} without an error"),
            Ok(Some(SourceEvent::Transaction { changes, .. })) => {
                assert!(changes.iter().all(|c| c.table.id.table != table), "{changes:?}")
            }
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_column_in_a_charset_without_an_exact_table_is_refused_at_start_up_and_in_the_stream() {
    let mut db = TestDb::create("csrefuse").await;
    db.exec("CREATE TABLE arm (id INT PRIMARY KEY, fine VARCHAR(5) CHARACTER SET latin1, `hay` VARCHAR(5) CHARACTER SET armscii8)")
        .await;
    let e = run_startup_checks(&url(), &db.filter("arm")).await.unwrap_err();
    assert!(
        matches!(&e, CheckError::UnsupportedCharset { column, charset, .. } if column == "hay" && charset == "armscii8"),
        "{e:?}"
    );
    let table = format!("{}.arm", db.name);
    assert_eq!(
        e.to_string(),
        format!(
            "column {table}.hay is in character set armscii8, which polyrepl cannot decode exactly (encoding_rs has \
             no table for it). Fix: ALTER TABLE `{}`.`arm` CONVERT TO CHARACTER SET utf8mb4; (or change only this \
             column's character set), or exclude table {table} (--exclude {table})",
            db.name
        )
    );
    db.exec("CREATE TABLE jp (id INT PRIMARY KEY, e ENUM('a','b') CHARACTER SET eucjpms)").await;
    let e = run_startup_checks(&url(), &db.filter("jp")).await.unwrap_err();
    assert!(
        matches!(&e, CheckError::UnsupportedCharset { column, charset, .. } if column == "e" && charset == "eucjpms"),
        "{e}"
    );

    // A table converted to it while the stream runs stops the stream with the same fix.
    db.exec("CREATE TABLE later (id INT PRIMARY KEY, v VARCHAR(5))").await;
    let from = current_position(&url()).await.unwrap();
    db.exec("ALTER TABLE later CONVERT TO CHARACTER SET keybcs2").await;
    db.exec("INSERT INTO later VALUES (1, 'x')").await;
    let e = first_binlog_error(&from, &db, "later").await;
    assert!(
        e.contains(&format!("column {}.later.v is in character set keybcs2", db.name))
            && e.contains(&format!("ALTER TABLE `{}`.`later` CONVERT TO CHARACTER SET utf8mb4", db.name)),
        "{e}"
    );
    db.drop_db().await;
}
