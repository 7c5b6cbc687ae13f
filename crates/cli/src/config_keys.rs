//! The keys a `--config` file may hold, and the unknown ones with the key most likely meant.
//!
//! The known keys are read from the serde definitions themselves ([`fields_of`]), so a setting added to
//! the file's shape is known here without a second list to keep in step.

use crate::config::{FileConfig, SinkSection};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;

/// Names accepted besides the fields (serde `alias`es).
const ALIASES: &[&str] = &["metrics_addr"];

/// A key of the config file polyrepl does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    /// The section it is in (`[[sink]] #2`), `None` at the top level.
    pub section: Option<String>,
    /// The known key it is most likely a typo of.
    pub suggestion: Option<String>,
    /// Every key accepted where it is, for when there is no close one.
    pub known: Vec<&'static str>,
}

impl UnknownKey {
    /// What to do about it.
    pub fn fix(&self) -> String {
        match &self.suggestion {
            Some(s) => format!("rename it to `{s}`, or remove it"),
            None => format!("remove it; the keys accepted there are {}", self.known.join(", ")),
        }
    }
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown key `{}`", self.key)?;
        if let Some(section) = &self.section {
            write!(f, " in {section}")?;
        }
        match &self.suggestion {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => write!(f, " (known keys: {})", self.known.join(", ")),
        }
    }
}

/// Removes the keys [`FileConfig`] and its `[[sink]]` sections do not know from `table`, and returns
/// them in file order (top level first).
pub fn take_unknown(table: &mut toml::Table) -> Vec<UnknownKey> {
    let mut top: Vec<&'static str> = fields_of::<FileConfig>().to_vec();
    top.extend(ALIASES);
    let mut unknown = take(table, &top, None);
    if let Some(toml::Value::Array(sections)) = table.get_mut("sink") {
        let known = fields_of::<SinkSection>();
        for (i, section) in sections.iter_mut().enumerate() {
            if let toml::Value::Table(section) = section {
                unknown.extend(take(section, known, Some(format!("[[sink]] #{}", i + 1))));
            }
        }
    }
    unknown
}

fn take(table: &mut toml::Table, known: &[&'static str], section: Option<String>) -> Vec<UnknownKey> {
    let keys: Vec<String> = table.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
    keys.into_iter()
        .map(|k| {
            table.remove(&k);
            let suggestion = closest(&k, known).map(str::to_string);
            UnknownKey { key: k, section: section.clone(), suggestion, known: known.to_vec() }
        })
        .collect()
}

/// The known key nearest to `key` in edit distance, when near enough to be a typo (at most 2 edits,
/// and fewer than half the key's letters); ties go to the candidate of the same length.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&key, k), k.len().abs_diff(key.len()), *k))
        .filter(|(d, _, _)| *d <= 2 && *d * 2 < key.chars().count().max(2))
        .min()
        .map(|(_, _, k)| k)
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The field names of a struct deriving `Deserialize`, as serde itself knows them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields.unwrap_or_default()
}

/// A deserializer that only records the field list a struct asks for, then stops.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only struct field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("field names read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_key_meant() {
        let top = {
            let mut k = fields_of::<FileConfig>().to_vec();
            k.extend(ALIASES);
            k
        };
        assert!(top.contains(&"source") && top.contains(&"on_unmappable") && top.contains(&"sink"), "{top:?}");
        assert_eq!(closest("sinkz", &top), Some("sinks"));
        assert_eq!(closest("tabels", &top), Some("tables"));
        assert_eq!(closest("Source", &top), Some("source"));
        assert_eq!(closest("batch_change", &top), Some("batch_changes"));
        assert_eq!(closest("zzz", &top), None);
        assert_eq!(closest("ttl", fields_of::<SinkSection>()), None, "3 letters, 2 edits from `url`: not a typo");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_unknown_key_is_taken_out_with_its_place() {
        let mut table: toml::Table = toml::from_str(
            "sinkz = [\"redis://h:1\"]\nsource = \"mysql://a@h:1\"\n[[sink]]\nurl = \"redis://h\"\n\
             [[sink]]\nurl = \"redis://h\"\noptoins = {}\n",
        )
        .unwrap();
        let unknown = take_unknown(&mut table);
        let text: Vec<String> = unknown.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            text,
            [
                "unknown key `sinkz` (did you mean `sinks`?)",
                "unknown key `optoins` in [[sink]] #2 (did you mean `options`?)"
            ]
        );
        assert!(!table.contains_key("sinkz"));
        toml::Value::Table(table).try_into::<FileConfig>().expect("what is left is a valid file");
    }
}
