//! The source connection URL: `mysql://user:pass@host:port[/db]`.
//!
//! Invariant: the password never leaves this module in printable form — `Display`/`Debug` and
//! [`SourceUrl::redacted`] show `***` in its place.

use mysql_async::{Opts, OptsBuilder};
use polyrepl_core::redact::redact_url;

/// Default port of the demo stack's MySQL/MariaDB.
pub const DEFAULT_PORT: u16 = 5600;

/// A parsed `mysql://` (or `mariadb://`) source URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceUrl {
    pub user: String,
    password: Option<String>,
    pub host: String,
    pub port: u16,
    /// Default database of the connection, if the URL names one.
    pub database: Option<String>,
}

/// A URL that could not be parsed; the message says what is wrong (never the password).
#[derive(Debug, thiserror::Error)]
#[error("invalid source URL '{shown}': {reason} (expected mysql://user:password@host:port[/database])")]
pub struct UrlError {
    shown: String,
    reason: String,
}

impl SourceUrl {
    /// Parses `mysql://user[:password]@host[:port][/database]`. Query parameters are ignored.
    pub fn parse(s: &str) -> Result<SourceUrl, UrlError> {
        let fail = |shown: String, reason: &str| UrlError { shown, reason: reason.to_string() };
        let parsed = match url::Url::parse(s) {
            Ok(u) => u,
            Err(e) => return Err(fail(redact_url(s), &e.to_string())),
        };
        let shown = {
            let mut u = parsed.clone();
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        };
        if parsed.scheme() != "mysql" && parsed.scheme() != "mariadb" {
            return Err(fail(shown, "the scheme must be mysql:// or mariadb://"));
        }
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => return Err(fail(shown, "no host")),
        };
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("x={}", v.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = if parsed.username().is_empty() { "root".to_string() } else { decode(parsed.username()) };
        let password = parsed.password().map(decode);
        let database = parsed.path().trim_start_matches('/').split('/').next().filter(|d| !d.is_empty()).map(decode);
        Ok(SourceUrl { user, password, host, port: parsed.port().unwrap_or(DEFAULT_PORT), database })
    }

    /// `mysql://user:***@host:port/db` — safe for logs and error messages.
    pub fn redacted(&self) -> String {
        let pass = if self.password.is_some() { ":***" } else { "" };
        let db = self.database.as_deref().map(|d| format!("/{d}")).unwrap_or_default();
        format!("mysql://{}{}@{}:{}{}", self.user, pass, self.host, self.port, db)
    }

    /// `host:port`, for error messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connection options for mysql_async: TCP only (`prefer_socket=false`), no default database
    /// unless `with_db`.
    pub fn opts(&self, with_db: bool) -> Opts {
        let mut b = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .prefer_socket(false);
        if with_db {
            b = b.db_name(self.database.clone());
        }
        Opts::from(b)
    }

    /// The password, for building connection options (never print it).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl std::fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceUrl({})", self.redacted())
    }
}

impl std::str::FromStr for SourceUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let u = SourceUrl::parse("mysql://app:s%40cret@db.local:3307/shop").unwrap();
        assert_eq!(u.user, "app");
        assert_eq!(u.password(), Some("s@cret"));
        assert_eq!(u.host, "db.local");
        assert_eq!(u.port, 3307);
        assert_eq!(u.database.as_deref(), Some("shop"));
        assert_eq!(u.redacted(), "mysql://app:***@db.local:3307/shop");
        assert!(!format!("{u} {u:?}").contains("cret"));

        let d = SourceUrl::parse("mysql://root@127.0.0.1").unwrap();
        assert_eq!((d.port, d.password(), d.database.clone()), (5600, None, None));
        assert_eq!(d.redacted(), "mysql://root@127.0.0.1:5600");
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = SourceUrl::parse("postgres://u:topsecret@h/db").unwrap_err().to_string();
        assert!(e.contains("scheme") && !e.contains("topsecret"), "{e}");
        let e = SourceUrl::parse("mysql://u:topsecret@:99999").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
    }
}
