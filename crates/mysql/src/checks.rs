//! Start-up checks: refuse to start, with the exact fix, when the server or the tables cannot be
//! replicated correctly.
//!
//! Invariants: every [`CheckError`] message says what is wrong, where (host:port, user, table,
//! column) and the exact statement or config line that fixes it; no password is ever printed.
//! The decision functions ([`check_settings`], [`check_grants`], [`check_tables`]) are pure, so they
//! are tested on fetched values without touching a shared server's GLOBAL settings.

use crate::schema::discover_tables;
use crate::source_url::SourceUrl;
use mysql_async::prelude::*;
use mysql_async::Conn;
use polyrepl_core::{ColumnKind, TableFilter, TableId, TableSchema};
use std::sync::Arc;

/// A reason the source cannot be replicated as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "cannot reach MySQL/MariaDB at {address} as user '{user}': {reason}. Is the server running and \
             listening on TCP {address}? (`polyrepl stack up` starts the local one)"
    )]
    Unreachable { address: String, user: String, reason: String },
    #[error(
        "MySQL/MariaDB at {address} refused user '{user}': {reason}. Check the user and password in the \
             source URL (mysql://user:password@host:port)"
    )]
    AccessDenied { address: String, user: String, reason: String },
    #[error(
        "user '{user}' lacks the {privilege} privilege on {address}, needed to {why}. Fix: \
             GRANT {privilege} ON {on} TO '{user}'@'<host>';"
    )]
    MissingPrivilege { address: String, user: String, privilege: String, on: String, why: String },
    #[error(
        "the binary log is off on {address} (log_bin=OFF): changes cannot be streamed. Fix: start the server \
             with log-bin (my.cnf [mysqld]: `log_bin = binlog` and `server_id = 1`) and restart it"
    )]
    BinlogDisabled { address: String },
    #[error(
        "{variable} is '{found}' on {address}, polyrepl needs '{needed}'. Fix: SET GLOBAL {variable}='{needed}'; \
             and in my.cnf [mysqld]: `{variable} = {needed}` (sessions opened before the change keep the old value)"
    )]
    BinlogSetting { address: String, variable: String, found: String, needed: String },
    #[error(
        "table {table} has no primary key: polyrepl needs one to apply changes by key. Fix: \
             ALTER TABLE {table} ADD PRIMARY KEY (<columns>); or exclude it from the table patterns"
    )]
    NoPrimaryKey { table: String },
    #[error(
        "column {table}.{column} has type {sql_type}, which polyrepl does not replicate. Fix: exclude table \
             {table}, or change the column type"
    )]
    UnsupportedColumn { table: String, column: String, sql_type: String },
    #[error(
        "column {table}.{column} is in character set {charset}, which polyrepl cannot decode exactly ({why}). \
             Fix: ALTER TABLE {quoted} CONVERT TO CHARACTER SET utf8mb4; (or change only this column's \
             character set), or exclude table {table} (--exclude {table})"
    )]
    UnsupportedCharset { table: String, column: String, charset: String, why: &'static str, quoted: String },
    #[error(
        "table pattern '{pattern}' matches no table on {address}. Fix: check the database and table names \
             (SHOW TABLES FROM <db>;) or remove the pattern"
    )]
    UnknownTables { pattern: String, address: String },
    #[error("start-up check on {address} failed while {what}: {reason}")]
    Query { address: String, what: String, reason: String },
}

/// The server facts the checks look at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerSettings {
    /// `host:port` of the server, for messages.
    pub address: String,
    /// `@@version`, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub version: String,
    pub is_mariadb: bool,
    /// Global values; `None` when the server does not know the variable.
    pub log_bin: Option<String>,
    pub binlog_format: Option<String>,
    pub binlog_row_image: Option<String>,
    pub binlog_row_metadata: Option<String>,
}

/// What the checks learnt, for the pipeline: the server and the selected tables.
#[derive(Debug, Clone)]
pub struct StartupReport {
    pub settings: ServerSettings,
    pub tables: Vec<Arc<TableSchema>>,
}

/// Opens a TCP connection, turning failures into [`CheckError::Unreachable`] / [`CheckError::AccessDenied`].
pub async fn connect(url: &SourceUrl) -> Result<Conn, CheckError> {
    match Conn::new(url.opts(false)).await {
        Ok(c) => Ok(c),
        Err(mysql_async::Error::Server(e)) if e.code == 1045 || e.code == 1044 || e.code == 1698 => {
            Err(CheckError::AccessDenied { address: url.address(), user: url.user.clone(), reason: e.message })
        }
        Err(e) => {
            Err(CheckError::Unreachable { address: url.address(), user: url.user.clone(), reason: e.to_string() })
        }
    }
}

/// Reads the global binlog settings and the version.
pub async fn read_settings(conn: &mut Conn, address: &str) -> Result<ServerSettings, CheckError> {
    let q = |what: &str, e: mysql_async::Error| CheckError::Query {
        address: address.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let version: Option<String> = conn.query_first("SELECT @@version").await.map_err(|e| q("reading @@version", e))?;
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin','binlog_format','binlog_row_image','binlog_row_metadata')",
        )
        .await
        .map_err(|e| q("reading the binlog variables", e))?;
    let get = |name: &str| rows.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let version = version.unwrap_or_default();
    Ok(ServerSettings {
        address: address.to_string(),
        is_mariadb: version.to_ascii_lowercase().contains("mariadb"),
        version,
        log_bin: get("log_bin"),
        binlog_format: get("binlog_format"),
        binlog_row_image: get("binlog_row_image"),
        binlog_row_metadata: get("binlog_row_metadata"),
    })
}

/// The first of [`settings_problems`].
fn first(problems: Vec<CheckError>) -> Result<(), CheckError> {
    problems.into_iter().next().map_or(Ok(()), Err)
}

/// Binlog on, ROW format, FULL row image, FULL row metadata.
pub fn check_settings(s: &ServerSettings) -> Result<(), CheckError> {
    first(settings_problems(s))
}

/// Everything [`check_settings`] would refuse, in the same order (for `polyrepl check`).
pub fn settings_problems(s: &ServerSettings) -> Vec<CheckError> {
    let mut problems = Vec::new();
    let on = s.log_bin.as_deref().map(|v| v.eq_ignore_ascii_case("ON") || v == "1").unwrap_or(false);
    if !on {
        problems.push(CheckError::BinlogDisabled { address: s.address.clone() });
    }
    let need = |variable: &str, found: &Option<String>, needed: &str| -> Option<CheckError> {
        match found {
            Some(v) if v.eq_ignore_ascii_case(needed) => None,
            other => Some(CheckError::BinlogSetting {
                address: s.address.clone(),
                variable: variable.to_string(),
                found: other
                    .clone()
                    .unwrap_or_else(|| "unknown to this server version (MySQL ≥ 8.0 or MariaDB ≥ 10.5 needed)".into()),
                needed: needed.to_string(),
            }),
        }
    };
    problems.extend(need("binlog_format", &s.binlog_format, "ROW"));
    problems.extend(need("binlog_row_image", &s.binlog_row_image, "FULL"));
    problems.extend(need("binlog_row_metadata", &s.binlog_row_metadata, "FULL"));
    problems
}

/// Checks `SHOW GRANTS` lines for REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and
/// SELECT on every selected table. Grants through roles are not followed.
pub fn check_grants(
    grants: &[String],
    address: &str,
    user: &str,
    is_mariadb: bool,
    tables: &[TableId],
) -> Result<(), CheckError> {
    first(grant_problems(grants, address, user, is_mariadb, tables))
}

/// Everything [`check_grants`] would refuse, in the same order; one SELECT problem per database.
pub fn grant_problems(
    grants: &[String],
    address: &str,
    user: &str,
    is_mariadb: bool,
    tables: &[TableId],
) -> Vec<CheckError> {
    let mut problems = Vec::new();
    let parsed: Vec<(Vec<String>, String)> = grants.iter().filter_map(|g| parse_grant(g)).collect();
    let has_global = |privs: &[&str]| {
        parsed.iter().any(|(p, on)| {
            on == "*.*" && p.iter().any(|x| x == "ALL PRIVILEGES" || x == "ALL" || privs.contains(&x.as_str()))
        })
    };
    let missing = |privilege: &str, on: &str, why: &str| CheckError::MissingPrivilege {
        address: address.to_string(),
        user: user.to_string(),
        privilege: privilege.to_string(),
        on: on.to_string(),
        why: why.to_string(),
    };
    if !has_global(&["REPLICATION SLAVE", "REPLICATION REPLICA"]) {
        problems.push(missing("REPLICATION SLAVE", "*.*", "read the binlog"));
    }
    if !has_global(&["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]) {
        let p = if is_mariadb { "BINLOG MONITOR" } else { "REPLICATION CLIENT" };
        problems.push(missing(p, "*.*", "read binlog positions (SHOW MASTER STATUS)"));
    }
    let mut databases_without_select: Vec<&str> = Vec::new();
    for t in tables {
        let db_on = format!("`{}`.*", t.database);
        let table_on = format!("`{}`.`{}`", t.database, t.table);
        let ok = parsed.iter().any(|(p, on)| {
            (on == "*.*" || on.eq_ignore_ascii_case(&db_on) || on.eq_ignore_ascii_case(&table_on))
                && p.iter().any(|x| x == "SELECT" || x == "ALL PRIVILEGES" || x == "ALL")
        });
        // One GRANT per database fixes every table in it: say it once.
        if !ok && !databases_without_select.contains(&t.database.as_str()) {
            databases_without_select.push(&t.database);
            problems.push(missing("SELECT", &db_on, &format!("snapshot table {t}")));
        }
    }
    problems
}

/// `GRANT a, b (col) ON x.y TO ...` → (["A", "B"], "x.y"); `None` for role grants.
fn parse_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let on_at = rest.find(" ON ")?;
    let (privs, after) = (&rest[..on_at], &rest[on_at + 4..]);
    let target = after.split(" TO ").next()?.trim().to_string();
    let mut without_columns = String::new();
    let mut depth = 0;
    for c in privs.chars() {
        match c {
            '(' => {
                // A column-level grant covers only some columns: it does not count as the privilege.
                if depth == 0 {
                    without_columns.push_str(" ON SOME COLUMNS");
                }
                depth += 1
            }
            ')' => depth -= 1,
            _ if depth == 0 => without_columns.push(c),
            _ => {}
        }
    }
    let privs = without_columns.split(',').map(|p| p.trim().to_ascii_uppercase()).filter(|p| !p.is_empty()).collect();
    Some((privs, target))
}

/// Every include pattern matches a table; every table has a primary key and supported columns.
pub fn check_tables(tables: &[TableSchema], include_patterns: &[String], address: &str) -> Result<(), CheckError> {
    first(table_problems(tables, include_patterns, address))
}

/// Everything [`check_tables`] would refuse, in the same order: every pattern, every table, every
/// column.
pub fn table_problems(tables: &[TableSchema], include_patterns: &[String], address: &str) -> Vec<CheckError> {
    let mut problems = Vec::new();
    for pattern in include_patterns {
        let Ok(one) = TableFilter::new(std::slice::from_ref(pattern), &[]) else { continue };
        if !tables.iter().any(|t| one.matches(&t.id)) {
            problems.push(CheckError::UnknownTables { pattern: pattern.clone(), address: address.to_string() });
        }
    }
    for t in tables {
        if t.primary_key.is_empty() {
            problems.push(CheckError::NoPrimaryKey { table: t.id.to_string() });
        }
        for c in t.columns.iter().filter(|c| matches!(c.kind, ColumnKind::Unsupported(_))) {
            if let Some((charset, why)) = crate::charset::refused_charset(&c.kind) {
                problems.push(CheckError::UnsupportedCharset {
                    table: t.id.to_string(),
                    column: c.name.clone(),
                    charset,
                    why,
                    quoted: crate::schema::quote_table(&t.id),
                });
                continue;
            }
            let ColumnKind::Unsupported(sql_type) = &c.kind else { unreachable!() };
            problems.push(CheckError::UnsupportedColumn {
                table: t.id.to_string(),
                column: c.name.clone(),
                sql_type: sql_type.to_uppercase(),
            });
        }
    }
    problems
}

/// Runs every check in order (connection, settings, privileges, tables) and returns the server
/// settings and the selected tables' schemas.
pub async fn run_startup_checks(url: &SourceUrl, filter: &TableFilter) -> Result<StartupReport, CheckError> {
    let address = url.address();
    let mut conn = connect(url).await?;
    let settings = read_settings(&mut conn, &address).await?;
    check_settings(&settings)?;
    let tables = discover_tables(&mut conn, filter, &address).await.map_err(|e| CheckError::Query {
        address: address.clone(),
        what: "reading information_schema".into(),
        reason: e.to_string(),
    })?;
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(|e| CheckError::Query {
        address: address.clone(),
        what: "SHOW GRANTS".into(),
        reason: e.to_string(),
    })?;
    let ids: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
    check_grants(&grants, &address, &url.user, settings.is_mariadb, &ids)?;
    check_tables(&tables, &filter.include_patterns(), &address)?;
    let _ = conn.disconnect().await;
    Ok(StartupReport { settings, tables: tables.into_iter().map(Arc::new).collect() })
}

/// What [`review_source`] found: what could be read, and every problem.
#[derive(Debug, Clone, Default)]
pub struct SourceReview {
    /// `None` when the server could not be reached or its settings read.
    pub settings: Option<ServerSettings>,
    /// The selected tables that exist.
    pub tables: Vec<TableSchema>,
    pub problems: Vec<CheckError>,
}

/// The checks of [`run_startup_checks`] without stopping at the first problem (for `polyrepl check`):
/// every check that can still run does. Read-only: only SELECT and SHOW statements.
pub async fn review_source(url: &SourceUrl, filter: &TableFilter) -> SourceReview {
    let address = url.address();
    let mut review = SourceReview::default();
    let mut conn = match connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            review.problems.push(e);
            return review;
        }
    };
    let query = |what: &str, e: &dyn std::fmt::Display| CheckError::Query {
        address: address.clone(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    match read_settings(&mut conn, &address).await {
        Ok(settings) => {
            review.problems.extend(settings_problems(&settings));
            review.settings = Some(settings);
        }
        Err(e) => review.problems.push(e),
    }
    let is_mariadb = review.settings.as_ref().is_some_and(|s| s.is_mariadb);
    match discover_tables(&mut conn, filter, &address).await {
        Ok(tables) => review.tables = tables,
        Err(e) => review.problems.push(query("reading information_schema", &e)),
    }
    match conn.query::<String, _>("SHOW GRANTS").await {
        Ok(grants) => {
            let ids: Vec<TableId> = review.tables.iter().map(|t| t.id.clone()).collect();
            review.problems.extend(grant_problems(&grants, &address, &url.user, is_mariadb, &ids));
        }
        Err(e) => review.problems.push(query("SHOW GRANTS", &e)),
    }
    review.problems.extend(table_problems(&review.tables, &filter.include_patterns(), &address));
    let _ = conn.disconnect().await;
    review
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServerSettings {
        ServerSettings {
            address: "127.0.0.1:5600".into(),
            version: "10.11.6-MariaDB".into(),
            is_mariadb: true,
            log_bin: Some("ON".into()),
            binlog_format: Some("ROW".into()),
            binlog_row_image: Some("FULL".into()),
            binlog_row_metadata: Some("FULL".into()),
        }
    }

    #[test]
    fn settings_decisions_name_the_fix() {
        assert_eq!(check_settings(&good()), Ok(()));
        let e = check_settings(&ServerSettings { binlog_row_metadata: Some("NO_LOG".into()), ..good() }).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("SET GLOBAL binlog_row_metadata='FULL'") && msg.contains("binlog_row_metadata = FULL"),
            "{msg}"
        );
        let e = check_settings(&ServerSettings { binlog_format: Some("MIXED".into()), ..good() }).unwrap_err();
        assert!(e.to_string().contains("binlog_format is 'MIXED'"));
        let e = check_settings(&ServerSettings { binlog_row_image: Some("MINIMAL".into()), ..good() }).unwrap_err();
        assert!(e.to_string().contains("binlog_row_image"));
        let e = check_settings(&ServerSettings { log_bin: Some("OFF".into()), ..good() }).unwrap_err();
        assert!(matches!(e, CheckError::BinlogDisabled { .. }));
    }

    #[test]
    fn every_problem_is_collected_and_the_first_is_what_start_up_refuses() {
        let bad = ServerSettings {
            log_bin: Some("OFF".into()),
            binlog_format: Some("MIXED".into()),
            binlog_row_metadata: None,
            ..good()
        };
        let all = settings_problems(&bad);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(check_settings(&bad), Err(all[0].clone()));
        let t = [TableId::new("a", "x"), TableId::new("a", "y"), TableId::new("b", "z")];
        let none = vec!["GRANT USAGE ON *.* TO `cdc`@`%`".to_string()];
        let all = grant_problems(&none, "h:1", "cdc", false, &t);
        let text: Vec<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(all.len(), 4, "REPLICATION SLAVE, REPLICATION CLIENT, SELECT on a.* and b.*: {text:?}");
        assert!(text[2].contains("`a`.*") && text[3].contains("`b`.*"), "{text:?}");
    }

    #[test]
    fn grants_decisions() {
        let t = [TableId::new("shop", "orders")];
        let all = vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION".to_string()];
        assert_eq!(check_grants(&all, "h:1", "root", true, &t), Ok(()));
        let partial = vec![
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%`".to_string(),
            "GRANT SELECT (id, name), INSERT ON `shop`.`orders` TO `cdc`@`%`".to_string(),
        ];
        let e = check_grants(&partial, "h:1", "cdc", true, &t).unwrap_err();
        assert!(e.to_string().contains("GRANT SELECT ON `shop`.*"), "{e}");
        let mut ok = partial.clone();
        ok.push("GRANT SELECT ON `shop`.* TO `cdc`@`%`".into());
        assert_eq!(check_grants(&ok, "h:1", "cdc", true, &t), Ok(()));
        let no_repl = vec!["GRANT SELECT ON *.* TO `cdc`@`%`".to_string()];
        assert!(check_grants(&no_repl, "h:1", "cdc", false, &t).unwrap_err().to_string().contains("REPLICATION SLAVE"));
        let no_client = vec!["GRANT SELECT, REPLICATION SLAVE ON *.* TO `cdc`@`%`".to_string()];
        assert!(check_grants(&no_client, "h:1", "cdc", true, &t).unwrap_err().to_string().contains("BINLOG MONITOR"));
    }
}
