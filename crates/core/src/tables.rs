//! Which source tables to replicate: `db.table`, `db.*` patterns, with exclusions.

use crate::TableId;

/// Include/exclude patterns of the form `db.table`, `db.*` or `*.*` (`*` matches any name).
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

impl TableFilter {
    /// Parses the patterns; an error names the malformed one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        fn parse(p: &str) -> Result<(String, String), String> {
            match p.split_once('.') {
                Some((d, t)) if !d.is_empty() && !t.is_empty() => Ok((d.to_string(), t.to_string())),
                _ => Err(format!("table pattern '{p}' is not of the form db.table or db.*")),
            }
        }
        Ok(TableFilter {
            include: include.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
        })
    }

    /// True when the table is included and not excluded.
    pub fn matches(&self, t: &TableId) -> bool {
        let hit = |(d, n): &(String, String)| glob(d, &t.database) && glob(n, &t.table);
        self.include.iter().any(hit) && !self.exclude.iter().any(hit)
    }

    /// The include patterns as given (`db.table`, `db.*`), e.g. to report one that matches no table.
    pub fn include_patterns(&self) -> Vec<String> {
        self.include.iter().map(|(d, t)| format!("{d}.{t}")).collect()
    }

    /// The selection as one line (`include,include;exclude,exclude`), stored in checkpoints; read back by
    /// [`TableFilter::from_spec`].
    pub fn spec(&self) -> String {
        let join = |v: &[(String, String)]| v.iter().map(|(d, t)| format!("{d}.{t}")).collect::<Vec<_>>().join(",");
        format!("{};{}", join(&self.include), join(&self.exclude))
    }

    /// The filter a [`TableFilter::spec`] line describes.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let (include, exclude) = spec.split_once(';').unwrap_or((spec, ""));
        let list = |s: &str| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>();
        TableFilter::new(&list(include), &list(exclude))
    }

    /// The databases named by the include patterns (`None` when a pattern is `*.…`).
    pub fn databases(&self) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for (d, _) in &self.include {
            if d.contains('*') {
                return None;
            }
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        Some(out)
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && name.len() >= head.len()
                && (0..=name.len() - head.len()).any(|i| glob(tail, &name[head.len() + i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude_and_wildcards() {
        let f = TableFilter::new(&["shop.*".into(), "crm.users".into()], &["shop.tmp_*".into()]).unwrap();
        assert!(f.matches(&TableId::new("shop", "orders")));
        assert!(!f.matches(&TableId::new("shop", "tmp_x")));
        assert!(f.matches(&TableId::new("crm", "users")));
        assert!(!f.matches(&TableId::new("crm", "leads")));
        assert_eq!(f.databases(), Some(vec!["shop".to_string(), "crm".to_string()]));
        assert!(TableFilter::new(&["shop".into()], &[]).is_err());
    }

    #[test]
    fn a_spec_reads_back_as_the_same_selection() {
        let f = TableFilter::new(&["shop.*".into(), "crm.users".into()], &["shop.tmp_*".into()]).unwrap();
        assert_eq!(f.spec(), "shop.*,crm.users;shop.tmp_*");
        let back = TableFilter::from_spec(&f.spec()).unwrap();
        assert_eq!(back.spec(), f.spec());
        assert!(!back.matches(&TableId::new("shop", "tmp_x")));
        assert_eq!(TableFilter::from_spec("a.b;").unwrap().spec(), "a.b;");
    }
}
