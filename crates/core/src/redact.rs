//! Showing connection URLs without their secrets, for logs, metrics and error messages.
//!
//! Invariants:
//! - [`redact_url`] replaces the password of `scheme://user:password@host…` by `***` and leaves every
//!   other character as written; a string it cannot read as such a URL comes back unchanged.
//! - [`url_hosts`] never returns user information, path, query or fragment: only what lies between the
//!   last `@` of the authority and the end of the authority.
//! - Neither parses the URL: they work on what a user typed, even when it is not a valid URL.

/// Placeholder for a hidden password.
pub const HIDDEN: &str = "***";

/// The URL with its password, if any, replaced by `***`: `mysql://u:***@h:1/db`. The password is
/// everything between the first `:` after `://` and the last `@` (so a password holding `@` or `:` is
/// hidden whole); a user without a password is kept.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:{HIDDEN}{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The scheme of `url` (what precedes `://`), if it has one.
pub fn url_scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(scheme, _)| scheme)
}

/// The hosts of `url` as written (`h1:1,h2:2`): the authority without user information, path, query
/// or fragment. The authority ends at the first `/` or `?` after `://` (or the start, without a
/// scheme); user information ends at its last `@`; a `#` after it ends the hosts.
pub fn url_hosts(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    hosts.split('#').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        // The cases of the command line's former copy.
        assert_eq!(redact_url("mysql://u:secret@h:1/db"), "mysql://u:***@h:1/db");
        assert_eq!(redact_url("mongodb://h:1"), "mongodb://h:1");
        assert_eq!(redact_url("mongodb://u@h:1"), "mongodb://u@h:1");
        // Passwords holding the separators, an empty user, and strings that are no URL.
        assert_eq!(redact_url("redis://u:p@ss:w@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("u:secret@h"), "u:secret@h");
        assert_eq!(redact_url("a@b://c:d"), "a@b://c:d");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn hosts_carry_no_credentials_path_or_options() {
        assert_eq!(url_hosts("mongodb://u:secret@h1:1,h2:2/db?authSource=admin"), "h1:1,h2:2");
        assert_eq!(url_hosts("mongodb+srv://a:b@cluster.example.com/?x=1"), "cluster.example.com");
        assert_eq!(url_hosts("mongodb://p%40ss@h:1"), "h:1");
        assert_eq!(url_hosts("redis://h:1#frag"), "h:1");
        assert_eq!(url_hosts("redis://u:p#w@h:1"), "h:1");
        assert_eq!(url_hosts("cassandra://h:9000?replication_factor=3"), "h:9000");
        assert_eq!(url_hosts("u:p@h:1/x"), "h:1");
        assert_eq!(url_scheme("mongodb+srv://h"), Some("mongodb+srv"));
        assert_eq!(url_scheme("h:1"), None);
    }
}
