//! Start-up checks against the real server.
mod common;

use common::*;
use polyrepl_core::TableFilter;
use polyrepl_mysql::checks::{check_settings, connect, read_settings};
use polyrepl_mysql::{run_startup_checks, CheckError, SourceUrl};

#[tokio::test]
async fn accepts_good_tables_and_refuses_bad_ones_by_name() {
    let mut db = TestDb::create("checks").await;
    db.exec("CREATE TABLE good (id INT PRIMARY KEY, v VARCHAR(10))").await;
    db.exec("CREATE TABLE nopk (id INT, v VARCHAR(10))").await;
    db.exec("CREATE TABLE geo (id INT PRIMARY KEY, g GEOMETRY)").await;

    let report = run_startup_checks(&url(), &db.filter("good")).await.expect("good table passes");
    assert_eq!(report.tables.len(), 1);
    assert!(report.settings.is_mariadb);

    let e = run_startup_checks(&url(), &db.filter("nopk")).await.unwrap_err();
    assert_eq!(e, CheckError::NoPrimaryKey { table: format!("{}.nopk", db.name) });
    assert!(e.to_string().contains("ADD PRIMARY KEY"));

    let e = run_startup_checks(&url(), &db.filter("geo")).await.unwrap_err();
    assert!(
        matches!(&e, CheckError::UnsupportedColumn { column, sql_type, .. } if column == "g" && sql_type == "GEOMETRY"),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{}.geo.g", db.name)), "{e}");

    let e = run_startup_checks(&url(), &db.filter("missing")).await.unwrap_err();
    assert!(
        matches!(&e, CheckError::UnknownTables { pattern, .. } if pattern == &format!("{}.missing", db.name)),
        "{e}"
    );

    let all = TableFilter::new(&[format!("{}.*", db.name)], &[format!("{}.geo", db.name)]).unwrap();
    let e = run_startup_checks(&url(), &all).await.unwrap_err();
    assert!(matches!(e, CheckError::NoPrimaryKey { .. }));
    db.drop_db().await;
}

#[tokio::test]
async fn connection_failures_say_where_and_who() {
    let bad_pass = SourceUrl::parse("mysql://root:definitely-wrong@127.0.0.1:5600").unwrap();
    match connect(&bad_pass).await {
        Err(e @ CheckError::AccessDenied { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("127.0.0.1:5600") && msg.contains("'root'") && !msg.contains("definitely-wrong"),
                "{msg}"
            );
        }
        // Some installs let root in by any password over TCP: then the check has nothing to refuse.
        Err(e) => panic!("expected AccessDenied, got {e}"),
        Ok(_) => {}
    }
    let closed = SourceUrl::parse("mysql://root@127.0.0.1:1").unwrap();
    let Err(e) = connect(&closed).await else { panic!("port 1 is closed") };
    assert!(matches!(e, CheckError::Unreachable { .. }) && e.to_string().contains("127.0.0.1:1"), "{e}");
}

#[tokio::test]
async fn the_dev_server_settings_pass_and_session_values_are_not_what_counts() {
    let mut conn = connect(&url()).await.unwrap();
    let s = read_settings(&mut conn, "127.0.0.1:5600").await.unwrap();
    assert_eq!(check_settings(&s), Ok(()), "{s:?}");
    // The decision on a NO_LOG value (unit-tested in detail in the crate) names the fix.
    let e = check_settings(&polyrepl_mysql::ServerSettings { binlog_row_metadata: Some("MINIMAL".into()), ..s })
        .unwrap_err();
    assert!(e.to_string().contains("SET GLOBAL binlog_row_metadata='FULL'"));
}
