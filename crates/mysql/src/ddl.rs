//! Classifies the statement of a binlog QUERY event by what it does to tables.
//!
//! With ROW format, row changes arrive as row events; a query event is DDL, transaction control, or DML
//! logged as a statement (STATEMENT/MIXED format). Replication must hear about every table created,
//! dropped, truncated, renamed or altered, and about statement-logged DML, so it can resync or refuse.
//!
//! Invariants:
//! - The statement is first parsed by sqlparser (MySQL dialect). Where that fails, or yields a statement
//!   that is not about tables, sqlparser's own tokenizer recognises the statement from its leading
//!   keywords and table names; its lists are the one place that says what is unrelated. Never regexes.
//! - A statement is reported as [`Classified::Unknown`] rather than guessed: the fallback only accepts
//!   shapes it fully understands, and an ALTER operation it cannot name counts as changing rows.
//! - Deliberately ignored (reported as no tables): temporary tables (never replicated), users, grants,
//!   routines, triggers, views and events (their effects on rows reach the binlog as row events),
//!   database creation, and session/transaction statements.
//! - Multi-table UPDATE/DELETE report the tables written; where a written table cannot be told apart
//!   (an unqualified column, an unknown alias), every table of the statement is reported.

use polyrepl_core::TableId;
use sqlparser::ast::{
    AlterTable, AlterTableOperation as Op, AssignmentTarget, Delete, FromTable, ObjectName, ObjectNamePart, ObjectType,
    RenameTableNameKind, Statement, TableConstraint, TableFactor, TableObject, TableWithJoins, Update,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// What a statement logged as a query event does to tables, as far as replication cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableDdl {
    /// CREATE TABLE (also IF NOT EXISTS, CREATE OR REPLACE, ... LIKE other, ... AS SELECT / ... SELECT).
    Create(TableId),
    /// DROP TABLE a, b: one per table (IF EXISTS too). DROP TEMPORARY TABLE is not reported.
    Drop(TableId),
    Truncate(TableId),
    /// RENAME TABLE a TO b, c TO d (one per pair, in order); ALTER TABLE a RENAME [TO|AS] b.
    Rename {
        from: TableId,
        to: TableId,
    },
    /// Any other ALTER TABLE (and CREATE/DROP INDEX ... ON t). `rows_may_change` is false only when
    /// every operation is known not to change stored values or keys: ADD/DROP INDEX/KEY (not PRIMARY KEY),
    /// RENAME INDEX/KEY, ALTER INDEX VISIBLE/INVISIBLE, table options like COMMENT=, AUTO_INCREMENT=,
    /// ENGINE=, ROW_FORMAT=, ALGORITHM=, LOCK=, FORCE. Everything else (ADD/DROP/MODIFY/CHANGE/ALTER COLUMN,
    /// PRIMARY KEY changes, CONVERT TO CHARACTER SET, any PARTITION operation, anything unrecognised) is true.
    Alter {
        table: TableId,
        rows_may_change: bool,
    },
    /// DROP DATABASE / DROP SCHEMA db.
    DropDatabase(String),
    /// A data-changing statement logged as a statement (binlog_format STATEMENT or MIXED):
    /// INSERT / REPLACE / UPDATE / DELETE / LOAD DATA into this table (multi-table UPDATE/DELETE: one per
    /// table written). Reported so the caller can refuse it for replicated tables.
    StatementDml(TableId),
}

/// The outcome of classifying one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// What it does to tables, in statement order (empty: nothing table-related, e.g. CREATE USER, GRANT,
    /// CREATE PROCEDURE/FUNCTION/TRIGGER/VIEW/EVENT, SET, FLUSH, ANALYZE/OPTIMIZE TABLE, CREATE DATABASE,
    /// DROP TEMPORARY TABLE, CREATE TEMPORARY TABLE).
    Tables(Vec<TableDdl>),
    /// A statement that could not be understood. `names` are every identifier the tokenizer saw in it
    /// (unquoted: backticks removed), so the caller can tell whether it may concern a replicated table.
    Unknown { names: Vec<String> },
}

/// Classifies `statement` (from a binlog query event); unqualified table names belong to `default_db`
/// (the query event's current database). Identifiers keep their case; backquotes are removed.
pub fn classify(statement: &str, default_db: &str) -> Classified {
    let parsed = Parser::parse_sql(&MySqlDialect {}, statement).ok();
    if let Some(tables) = parsed.and_then(|stmts| from_statements(&stmts, default_db)) {
        return Classified::Tables(tables);
    }
    let Ok(tokens) = Tokenizer::new(&MySqlDialect {}, statement).tokenize() else {
        // Only an unterminated quote or comment gets here; split by hand so the caller still sees names.
        let words = statement.split(|c: char| c.is_whitespace() || "`.,;()".contains(c));
        return Classified::Unknown { names: dedup(words.filter(|w| !w.is_empty()).map(String::from)) };
    };
    let mut toks: Vec<Token> = tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    while toks.last() == Some(&Token::SemiColon) {
        toks.pop();
    }
    match from_tokens(&toks, default_db) {
        Some(tables) => Classified::Tables(tables),
        // Keywords are kept too: MySQL lets a table be called `status`, `data` or `user` unquoted.
        None => Classified::Unknown {
            names: dedup(toks.iter().filter_map(|t| if let Token::Word(w) = t { Some(w.value.clone()) } else { None })),
        },
    }
}

fn dedup<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn alter(table: TableId, rows_may_change: bool) -> TableDdl {
    TableDdl::Alter { table, rows_may_change }
}

/// An ALTER's operations other than renames decide `rows_may_change`; renames follow, chained.
fn alter_then_rename(table: TableId, op_changes: Vec<bool>, renames: Vec<TableId>) -> Vec<TableDdl> {
    let mut out = Vec::new();
    if !op_changes.is_empty() || renames.is_empty() {
        out.push(alter(table.clone(), op_changes.contains(&true)));
    }
    let mut from = table;
    for to in renames {
        out.push(TableDdl::Rename { from: std::mem::replace(&mut from, to.clone()), to });
    }
    out
}

// ---- the parsed path: None means "not understood here", and the tokenizer fallback runs ----

fn from_statements(stmts: &[Statement], db: &str) -> Option<Vec<TableDdl>> {
    stmts.iter().map(|s| from_statement(s, db)).collect::<Option<Vec<_>>>().map(|v| v.concat())
}

fn from_statement(s: &Statement, db: &str) -> Option<Vec<TableDdl>> {
    let id = |n: &ObjectName| table_id(n, db);
    Some(match s {
        Statement::CreateTable(c) if c.temporary => vec![],
        Statement::CreateTable(c) => vec![TableDdl::Create(id(&c.name)?)],
        Statement::Drop { object_type: ObjectType::Table, temporary: true, .. } => vec![],
        Statement::Drop { object_type: ObjectType::Table, names, .. } => {
            names.iter().map(|n| id(n).map(TableDdl::Drop)).collect::<Option<_>>()?
        }
        Statement::Drop { object_type: ObjectType::Database | ObjectType::Schema, names, .. } => {
            names.iter().map(|n| Some(TableDdl::DropDatabase(single_ident(n)?))).collect::<Option<_>>()?
        }
        Statement::Drop { object_type: ObjectType::Index, table: Some(t), names, .. } => {
            let primary = names.iter().filter_map(single_ident).any(|i| i.eq_ignore_ascii_case("PRIMARY"));
            vec![alter(id(t)?, primary)]
        }
        Statement::CreateIndex(c) => vec![alter(id(&c.table_name)?, c.unique)],
        Statement::Truncate(t) => {
            t.table_names.iter().map(|t| id(&t.name).map(TableDdl::Truncate)).collect::<Option<_>>()?
        }
        Statement::RenameTable(pairs) => pairs
            .iter()
            .map(|p| Some(TableDdl::Rename { from: id(&p.old_name)?, to: id(&p.new_name)? }))
            .collect::<Option<_>>()?,
        Statement::AlterTable(a) => alter_table(a, db)?,
        Statement::Insert(i) => match &i.table {
            TableObject::TableName(n) => vec![TableDdl::StatementDml(id(n)?)],
            _ => return None,
        },
        Statement::Update(u) => written_by_update(u, db)?,
        Statement::Delete(d) => written_by_delete(d, db)?,
        Statement::LoadData { table_name, .. } => vec![TableDdl::StatementDml(id(table_name)?)],
        _ => return None,
    })
}

fn single_ident(n: &ObjectName) -> Option<String> {
    match n.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i.value.clone()),
        _ => None,
    }
}

fn table_id(n: &ObjectName, db: &str) -> Option<TableId> {
    let parts: Vec<&str> = n.0.iter().map(|p| p.as_ident().map(|i| i.value.as_str())).collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some(TableId::new(db, *t)),
        [d, t] => Some(TableId::new(*d, *t)),
        _ => None,
    }
}

fn alter_table(a: &AlterTable, db: &str) -> Option<Vec<TableDdl>> {
    let (mut changes, mut renames) = (Vec::new(), Vec::new());
    for op in &a.operations {
        match op {
            Op::RenameTable { table_name: RenameTableNameKind::To(n) | RenameTableNameKind::As(n) } => {
                renames.push(table_id(n, db)?)
            }
            op => changes.push(!op_keeps_rows(op)),
        }
    }
    Some(alter_then_rename(table_id(&a.name, db)?, changes, renames))
}

/// A UNIQUE key is not harmless: ALTER IGNORE deletes duplicates, and without a primary key it may
/// become the table's key. Foreign keys may cascade changes that row events never show.
fn op_keeps_rows(op: &Op) -> bool {
    match op {
        Op::AddConstraint { constraint: TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_), .. } => true,
        Op::DropIndex { name } => !name.value.eq_ignore_ascii_case("PRIMARY"),
        Op::AutoIncrement { .. } | Op::Algorithm { .. } | Op::Lock { .. } => true,
        _ => false,
    }
}

/// Base tables among `factors`, with their aliases.
fn relations<'a>(factors: impl Iterator<Item = &'a TableFactor>, db: &str) -> Vec<(Option<String>, TableId)> {
    let base = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => {
            Some((alias.as_ref().map(|a| a.name.value.clone()), table_id(name, db)?))
        }
        _ => None,
    };
    factors.filter_map(base).collect()
}

/// The FROM items and everything joined to them.
fn joined<'a>(items: impl Iterator<Item = &'a TableWithJoins>) -> impl Iterator<Item = &'a TableFactor> {
    items.flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
}

/// The tables a `[db.]name` reference (alias or table name) may denote; all of them when it matches none.
fn resolve(rels: &[(Option<String>, TableId)], qualifier: &[String]) -> Vec<TableId> {
    let hit = |(alias, id): &&(Option<String>, TableId)| match qualifier {
        [name] => alias.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(name)) || id.table.eq_ignore_ascii_case(name),
        [db, name] => id.database.eq_ignore_ascii_case(db) && id.table.eq_ignore_ascii_case(name),
        _ => false,
    };
    let hits: Vec<TableId> = rels.iter().filter(hit).map(|(_, id)| id.clone()).collect();
    if hits.is_empty() {
        rels.iter().map(|(_, id)| id.clone()).collect()
    } else {
        hits
    }
}

fn idents(n: &ObjectName) -> Vec<String> {
    n.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone())).collect()
}

fn written_by_update(u: &Update, db: &str) -> Option<Vec<TableDdl>> {
    let rels = relations(joined(std::iter::once(&u.table)), db);
    let written = u.assignments.iter().flat_map(|a| match &a.target {
        AssignmentTarget::ColumnName(col) => resolve(&rels, idents(col).split_last().map_or(&[][..], |(_, q)| q)),
        AssignmentTarget::Tuple(_) => resolve(&rels, &[]),
    });
    let written = dedup(written);
    (!written.is_empty()).then(|| written.into_iter().map(TableDdl::StatementDml).collect())
}

fn written_by_delete(d: &Delete, db: &str) -> Option<Vec<TableDdl>> {
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
    let written = if d.tables.is_empty() {
        relations(from.iter().map(|t| &t.relation), db).into_iter().map(|(_, id)| id).collect()
    } else {
        let rels = relations(joined(from.iter().chain(d.using.iter().flatten())), db);
        dedup(d.tables.iter().flat_map(|t| resolve(&rels, &idents(t))))
    };
    (!written.is_empty()).then(|| written.into_iter().map(TableDdl::StatementDml).collect())
}

// ---- the tokenizer fallback: statement shapes sqlparser's grammar lacks ----

/// Objects whose creation, change or removal never touches a table's rows.
const UNRELATED_OBJECTS: &str = "USER ROLE VIEW TRIGGER PROCEDURE FUNCTION EVENT SERVER TABLESPACE LOGFILE";
const SCHEMA: &str = "DATABASE SCHEMA";
/// Statements that never touch a table's rows.
const UNRELATED_STATEMENTS: &str = "GRANT REVOKE SET FLUSH ANALYZE OPTIMIZE BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE XA";
/// Table options that change neither stored values nor keys (ENGINE is checked apart).
const HARMLESS_OPTIONS: &str = "COMMENT AUTO_INCREMENT ROW_FORMAT ALGORITHM LOCK KEY_BLOCK_SIZE STATS_PERSISTENT \
                                STATS_AUTO_RECALC STATS_SAMPLE_PAGES PACK_KEYS CHECKSUM DELAY_KEY_WRITE CHARSET COLLATE";

fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// A position in a statement's significant tokens (no whitespace, no comments).
struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(toks: &'a [Token]) -> Self {
        Cursor { toks, pos: 0 }
    }
    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn next(&mut self) -> Option<&'a Token> {
        self.pos += 1;
        self.toks.get(self.pos - 1)
    }
    fn eat_token(&mut self, tok: &Token) -> bool {
        let hit = self.toks.get(self.pos) == Some(tok);
        self.pos += usize::from(hit);
        hit
    }
    /// Consumes the space-separated keywords `kws` if they all come next, in order.
    fn eat(&mut self, kws: &str) -> bool {
        let (rest, n) = (self.toks.get(self.pos..).unwrap_or_default(), kws.split(' ').count());
        let all = rest.len() >= n && kws.split(' ').zip(rest).all(|(kw, t)| is_kw(t, kw));
        self.pos += if all { n } else { 0 };
        all
    }
    /// Consumes one of the space-separated keywords `kws`.
    fn eat_any(&mut self, kws: &str) -> bool {
        kws.split(' ').any(|kw| self.eat(kw))
    }
    fn skip_past(&mut self, kws: &str) -> Option<()> {
        while !self.eat(kws) {
            self.next()?;
        }
        Some(())
    }
    fn ident(&mut self) -> Option<String> {
        match self.next()? {
            Token::Word(w) => Some(w.value.clone()),
            _ => None,
        }
    }
    /// `name` or `db.name`.
    fn table(&mut self, db: &str) -> Option<TableId> {
        let first = self.ident()?;
        if self.eat_token(&Token::Period) {
            return Some(TableId::new(first, self.ident()?));
        }
        Some(TableId::new(db, first))
    }
    /// Skips one of OR REPLACE, ONLINE, IGNORE, DEFINER = user, ALGORITHM = x, SQL SECURITY x, which may
    /// stand before the object kind.
    fn skip_prefix(&mut self) -> bool {
        if self.eat("DEFINER") && self.eat_token(&Token::Eq) {
            self.next(); // the user, then `@host` or `()`
            if self.eat_token(&Token::AtSign) {
                self.next();
            } else if self.eat_token(&Token::LParen) {
                self.eat_token(&Token::RParen);
            }
            return true;
        }
        if (self.eat("ALGORITHM") && self.eat_token(&Token::Eq)) || self.eat("SQL SECURITY") {
            return self.next().is_some();
        }
        self.eat("OR REPLACE") || self.eat_any("ONLINE OFFLINE IGNORE AGGREGATE")
    }
}

fn from_tokens(toks: &[Token], db: &str) -> Option<Vec<TableDdl>> {
    let mut c = Cursor::new(toks);
    let Some(Token::Word(lead)) = c.next() else {
        return toks.is_empty().then(Vec::new); // nothing but comments
    };
    match lead.value.to_ascii_uppercase().as_str() {
        "ALTER" => alter_tokens(c, db),
        "CREATE" => create_tokens(c, db),
        "DROP" => drop_tokens(c, db),
        "RENAME" if c.eat_any("TABLE TABLES") => rename_tokens(c, db),
        "RENAME" => c.eat("USER").then(Vec::new),
        "TRUNCATE" => {
            c.eat("TABLE");
            let t = c.table(db)?;
            c.at_end().then(|| vec![TableDdl::Truncate(t)])
        }
        "INSERT" | "REPLACE" => {
            while c.eat_any("LOW_PRIORITY DELAYED HIGH_PRIORITY IGNORE") {}
            c.eat("INTO");
            Some(vec![TableDdl::StatementDml(c.table(db)?)])
        }
        "LOAD" => {
            c.skip_past("INTO TABLE")?;
            Some(vec![TableDdl::StatementDml(c.table(db)?)])
        }
        "UPDATE" | "DELETE" => reparse_dml(toks, db),
        lead if UNRELATED_STATEMENTS.split(' ').any(|s| s == lead) => Some(vec![]),
        _ => None,
    }
}

/// MySQL's UPDATE/DELETE modifiers and comma-joined UPDATE tables are beyond sqlparser's grammar;
/// without the modifiers and with `t1, t2` read as the same-meaning `t1 CROSS JOIN t2` it parses them.
fn reparse_dml(toks: &[Token], db: &str) -> Option<Vec<TableDdl>> {
    let mut rewritten = vec![toks[0].clone()];
    let rest = toks[1..].iter().skip_while(|t| ["LOW_PRIORITY", "QUICK", "IGNORE"].iter().any(|kw| is_kw(t, kw)));
    let (mut depth, mut in_table_list) = (0, is_kw(&toks[0], "UPDATE"));
    for t in rest {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            t if depth == 0 && is_kw(t, "SET") => in_table_list = false,
            Token::Comma if depth == 0 && in_table_list => {
                rewritten.extend([Token::make_keyword("CROSS"), Token::make_keyword("JOIN")]);
                continue;
            }
            _ => {}
        }
        rewritten.push(t.clone());
    }
    let stmts = Parser::new(&MySqlDialect {}).with_tokens(rewritten).parse_statements().ok()?;
    from_statements(&stmts, db)
}

fn alter_tokens(mut c: Cursor, db: &str) -> Option<Vec<TableDdl>> {
    while c.skip_prefix() {}
    if !c.eat("TABLE") {
        return (c.eat_any(UNRELATED_OBJECTS) || c.eat_any(SCHEMA)).then(Vec::new);
    }
    c.eat("IF EXISTS");
    let table = c.table(db)?;
    let (mut changes, mut renames) = (Vec::new(), Vec::new());
    for op in split_ops(&c.toks[c.pos..]) {
        match rename_target(op, db) {
            Some(to) => renames.push(to),
            None => changes.push(!op_tokens_keep_rows(op)),
        }
    }
    Some(alter_then_rename(table, changes, renames))
}

/// ALTER TABLE operations are separated by commas outside parentheses.
fn split_ops(toks: &[Token]) -> Vec<&[Token]> {
    let (mut ops, mut start, mut depth) = (Vec::new(), 0, 0i32);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                ops.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    ops.push(&toks[start..]);
    ops
}

/// `RENAME [TO|AS] name` (not RENAME INDEX/KEY/COLUMN).
fn rename_target(op: &[Token], db: &str) -> Option<TableId> {
    let mut c = Cursor::new(op);
    if !c.eat("RENAME") || c.eat_any("INDEX KEY COLUMN") {
        return None;
    }
    c.eat_any("TO AS");
    let to = c.table(db)?;
    c.at_end().then_some(to)
}

fn op_tokens_keep_rows(op: &[Token]) -> bool {
    let mut c = Cursor::new(op);
    if c.at_end() {
        return true; // a bare `ALTER TABLE t`
    }
    if c.eat("ADD") {
        return c.eat_any("INDEX KEY FULLTEXT SPATIAL");
    }
    if c.eat("DROP") {
        if !c.eat_any("INDEX KEY") {
            return false;
        }
        c.eat("IF EXISTS");
        return c.ident().is_some_and(|i| !i.eq_ignore_ascii_case("PRIMARY"));
    }
    if c.eat("RENAME") {
        return c.eat_any("INDEX KEY");
    }
    if c.eat("ALTER") {
        return c.eat("INDEX"); // only visibility can be altered
    }
    if c.eat_any("DISABLE ENABLE") {
        return c.eat("KEYS") && c.at_end();
    }
    if c.eat("FORCE") {
        return c.at_end();
    }
    table_options_keep_rows(c)
}

/// A run of `option [=] value` table options, none of which rewrites stored values.
fn table_options_keep_rows(mut c: Cursor) -> bool {
    while !c.at_end() {
        c.eat("DEFAULT");
        let known = if c.eat("CHARACTER") {
            c.eat("SET")
        } else if c.eat("ENGINE") {
            // Switching to BLACKHOLE discards every stored row without a row event.
            c.eat_token(&Token::Eq);
            !c.eat("BLACKHOLE")
        } else {
            c.eat_any(HARMLESS_OPTIONS)
        };
        c.eat_token(&Token::Eq);
        if !known || c.next().is_none() {
            return false;
        }
    }
    true
}

fn create_tokens(mut c: Cursor, db: &str) -> Option<Vec<TableDdl>> {
    while c.skip_prefix() {}
    if c.eat("TEMPORARY") {
        return c.eat("TABLE").then(Vec::new);
    }
    if c.eat("TABLE") {
        c.eat("IF NOT EXISTS");
        return Some(vec![TableDdl::Create(c.table(db)?)]);
    }
    let unique = c.eat("UNIQUE");
    c.eat_any("FULLTEXT SPATIAL");
    if c.eat("INDEX") {
        c.skip_past("ON")?;
        return Some(vec![alter(c.table(db)?, unique)]);
    }
    (c.eat_any(UNRELATED_OBJECTS) || c.eat_any(SCHEMA)).then(Vec::new)
}

fn drop_tokens(mut c: Cursor, db: &str) -> Option<Vec<TableDdl>> {
    let temporary = c.eat("TEMPORARY");
    if c.eat_any("TABLE TABLES") {
        c.eat("IF EXISTS");
        let mut tables = vec![c.table(db)?];
        while c.eat_token(&Token::Comma) {
            tables.push(c.table(db)?);
        }
        c.eat_any("RESTRICT CASCADE");
        let drops = if temporary { vec![] } else { tables.into_iter().map(TableDdl::Drop).collect() };
        return c.at_end().then_some(drops);
    }
    if temporary {
        return None;
    }
    if c.eat_any(SCHEMA) {
        c.eat("IF EXISTS");
        let name = c.ident()?;
        return c.at_end().then(|| vec![TableDdl::DropDatabase(name)]);
    }
    if c.eat("INDEX") {
        c.eat("IF EXISTS");
        let primary = c.ident()?.eq_ignore_ascii_case("PRIMARY");
        c.skip_past("ON")?;
        return Some(vec![alter(c.table(db)?, primary)]);
    }
    c.eat_any(UNRELATED_OBJECTS).then(Vec::new)
}

fn rename_tokens(mut c: Cursor, db: &str) -> Option<Vec<TableDdl>> {
    let mut out = Vec::new();
    loop {
        let from = c.table(db)?;
        if !c.eat("TO") {
            return None;
        }
        out.push(TableDdl::Rename { from, to: c.table(db)? });
        if !c.eat_token(&Token::Comma) {
            return c.at_end().then_some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TableDdl::*;

    fn t(table: &str) -> TableId {
        match table.split_once('.') {
            Some((db, table)) => TableId::new(db, table),
            None => TableId::new("db", table),
        }
    }
    fn tables(sql: &str) -> Vec<TableDdl> {
        match classify(sql, "db") {
            Classified::Tables(tables) => tables,
            other => panic!("{sql}: {other:?}"),
        }
    }
    fn check(cases: &[(&str, &[TableDdl])]) {
        for (sql, expected) in cases {
            assert_eq!(tables(sql), *expected, "{sql}");
        }
    }
    fn check_alter(rows_may_change: bool, statements: &[&str]) {
        for sql in statements {
            assert_eq!(tables(sql), [Alter { table: t("t"), rows_may_change }], "{sql}");
        }
    }

    #[test]
    fn mariadb_generated_comments() {
        check(&[
            ("DROP TABLE `t` /* generated by server */", &[Drop(t("t"))]),
            ("DROP TABLE IF EXISTS `d2`.`t` /* generated by server */", &[Drop(t("d2.t"))]),
        ]);
    }

    #[test]
    fn executable_comments_and_trailing_semicolons() {
        check_alter(
            false,
            &["/*!40000 ALTER TABLE `t` DISABLE KEYS */", "/* x */ /*!40000 ALTER TABLE t ENABLE KEYS */ ;\n"],
        );
        check(&[("TRUNCATE t;;  ", &[Truncate(t("t"))])]);
    }

    #[test]
    fn mariadb_alter_online_and_ignore() {
        check_alter(false, &["ALTER ONLINE TABLE t ADD INDEX i (c)", "ALTER IGNORE TABLE t ALGORITHM=INPLACE"]);
        check_alter(true, &["alter online table t modify c int", "ALTER IGNORE TABLE t ADD UNIQUE KEY u (c)"]);
    }

    #[test]
    fn create_table_forms() {
        let create: &[TableDdl] = &[Create(t("t"))];
        check(&[
            ("CREATE OR REPLACE TABLE t (a INT)", create),
            ("CREATE TABLE t LIKE u", create),
            ("CREATE TABLE IF NOT EXISTS t (a INT)", create),
            ("CREATE TABLE t AS SELECT * FROM u", create),
            ("CREATE TABLE t SELECT * FROM u", create),
            ("CREATE TABLE t (id INT) ENGINE=InnoDB PARTITION BY HASH(id) PARTITIONS 4", create),
            ("CREATE TEMPORARY TABLE t (a INT)", &[]),
        ]);
    }

    #[test]
    fn rename_table_swap() {
        let sql = "RENAME TABLE `db`.`t` TO `db`.`_t_old`, `db`.`_t_gho` TO `db`.`t`";
        check(&[(sql, &[Rename { from: t("t"), to: t("_t_old") }, Rename { from: t("_t_gho"), to: t("t") }])]);
    }

    #[test]
    fn column_key_charset_and_partition_changes_may_change_rows() {
        check_alter(
            true,
            &[
                "ALTER TABLE t MODIFY c VARCHAR(10)",
                "ALTER TABLE t CHANGE c d INT",
                "ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 5",
                "ALTER TABLE t ADD COLUMN c INT, ENGINE=InnoDB",
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
                "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4",
                "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)",
                "ALTER TABLE t DROP INDEX `PRIMARY`",
                "ALTER TABLE t TRUNCATE PARTITION p0",
                "ALTER TABLE t ADD PARTITION (PARTITION p1 VALUES LESS THAN (10))",
                "ALTER TABLE t ENGINE=InnoDB PARTITION BY HASH(id)",
                "ALTER TABLE t ENGINE=BLACKHOLE",
                "CREATE UNIQUE INDEX i ON t (c)",
            ],
        );
    }

    #[test]
    fn index_and_table_option_changes_keep_rows() {
        check_alter(
            false,
            &[
                "ALTER TABLE t ADD INDEX i (c)",
                "ALTER TABLE t ADD KEY k (c), DROP KEY k2",
                "ALTER TABLE t ADD FULLTEXT INDEX f (c), DROP INDEX i",
                "ALTER TABLE t RENAME INDEX i TO j",
                "ALTER TABLE t ALTER INDEX i INVISIBLE",
                "ALTER TABLE t COMMENT='a, b', ENGINE=InnoDB ROW_FORMAT=DYNAMIC",
                "ALTER TABLE t AUTO_INCREMENT=5, ALGORITHM=INPLACE, LOCK=NONE",
                "ALTER TABLE t DEFAULT CHARSET=utf8mb4",
                "ALTER TABLE t FORCE",
                "CREATE INDEX i ON t (c)",
                "DROP INDEX i ON t",
            ],
        );
    }

    #[test]
    fn truncate_drop_and_drop_database() {
        check(&[
            ("TRUNCATE t", &[Truncate(t("t"))]),
            ("truncate table d2.t", &[Truncate(t("d2.t"))]),
            ("DROP TABLE a, db2.b", &[Drop(t("a")), Drop(t("db2.b"))]),
            ("DROP TEMPORARY TABLE IF EXISTS a", &[]),
            ("DROP /*!40005 TEMPORARY */ TABLE IF EXISTS `a`", &[]), // MySQL's log of a session's temporary tables
            ("DROP DATABASE d2", &[DropDatabase("d2".into())]),
            ("drop schema if exists `d2`", &[DropDatabase("d2".into())]),
        ]);
    }

    #[test]
    fn unrelated_statements_touch_no_table() {
        for sql in [
            "CREATE DATABASE x",
            "GRANT SELECT ON db.* TO 'u'@'%'",
            "CREATE USER 'u'@'%' IDENTIFIED BY 'p'",
            "DROP USER 'u'@'%'",
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
            "CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN SELECT 1; END",
            "CREATE DEFINER=`root`@`localhost` EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM t",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            "CREATE ALGORITHM=MERGE VIEW v AS SELECT * FROM t",
            "SET @a = 1",
            "FLUSH PRIVILEGES",
            "ANALYZE TABLE t",
            "OPTIMIZE TABLE t",
            "BEGIN",
            "/* only a comment */",
        ] {
            assert_eq!(tables(sql), [], "{sql}");
        }
    }

    #[test]
    fn statement_dml() {
        let dml: &[TableDdl] = &[StatementDml(t("t"))];
        check(&[
            ("INSERT INTO t VALUES (1)", dml),
            ("REPLACE INTO t VALUES (1)", dml),
            ("UPDATE t SET a=1", dml),
            ("DELETE FROM d2.t WHERE a=1", &[StatementDml(t("d2.t"))]),
            ("INSERT INTO t SELECT * FROM u", dml),
            ("DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE a=1", dml),
            ("UPDATE LOW_PRIORITY IGNORE t SET a=1", dml),
            ("LOAD DATA LOCAL INFILE '/x.csv' INTO TABLE t FIELDS TERMINATED BY ','", dml),
        ]);
    }

    #[test]
    fn multi_table_dml_reports_tables_written() {
        let both: &[TableDdl] = &[StatementDml(t("t1")), StatementDml(t("t2"))];
        check(&[
            ("UPDATE t1 AS a, t2 b SET a.x = b.x WHERE a.id = b.id", &[StatementDml(t("t1"))]),
            ("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t2.y = 1", &[StatementDml(t("t2"))]),
            ("UPDATE t1, t2 SET x = 1", both), // either may hold x
            ("DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", &[StatementDml(t("t1"))]),
            ("DELETE FROM t1, t2 USING t1 JOIN t2 JOIN t3", both),
        ]);
    }

    #[test]
    fn alter_rename_table() {
        check(&[
            ("ALTER TABLE t RENAME TO u", &[Rename { from: t("t"), to: t("u") }]),
            ("ALTER ONLINE TABLE t RENAME d2.u", &[Rename { from: t("t"), to: t("d2.u") }]),
            ("ALTER TABLE t ADD c INT, RENAME AS u", &[alter(t("t"), true), Rename { from: t("t"), to: t("u") }]),
        ]);
    }

    #[test]
    fn quoted_identifiers_and_case_are_kept() {
        let odd = TableId::new("my.db", "odd name");
        check(&[
            ("alter table `my.db`.`odd name` add column c int", &[Alter { table: odd, rows_may_change: true }]),
            ("drop table `A b`, `x.y`", &[Drop(t("A b")), Drop(TableId::new("db", "x.y"))]),
            ("rename table `Weird``Name` to `T`", &[Rename { from: t("Weird`Name"), to: t("T") }]),
        ]);
    }

    #[test]
    fn unknown_statements_list_their_names() {
        let names = |sql| match classify(sql, "db") {
            Classified::Unknown { names } => names,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(names("REPAIR TABLE `orders`"), ["REPAIR", "TABLE", "orders"]);
        assert_eq!(names("CALL `refresh`(1)"), ["CALL", "refresh"]);
        assert_eq!(names("INSERT INTO `t` VALUES ('unterminated"), ["INSERT", "INTO", "t", "VALUES", "'unterminated"]);
    }
}
