//! The two renderings of what `verify` found ([`polyrepl_engine::verify`]): a human table and one JSON
//! document.
//!
//! Keys are shown as their values' MySQL text (binary values as `0x…` hex); in JSON, integers are
//! numbers, NULL is null and every other value is that text. Lists of keys are capped by `--show-keys`;
//! counts are never capped.

use polyrepl_core::Value;
use polyrepl_engine::verify::outcome::{remaining_total, Difference, Kind, PairReport};
use serde_json::{json, Value as Json};

/// A key as people read it: `7`, or `(eu, 7)` for a composite key.
pub fn key_text(key: &[Value]) -> String {
    let parts: Vec<String> = key.iter().map(value_text).collect();
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", parts.join(", "))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        v => v.mysql_text().unwrap_or_else(|| "NULL".into()),
    }
}

/// A key as a JSON array of its values.
pub fn key_json(key: &[Value]) -> Json {
    Json::Array(
        key.iter()
            .map(|v| match v {
                Value::Null => Json::Null,
                Value::Int(i) => json!(i),
                Value::UInt(u) => json!(u),
                v => Json::String(value_text(v)),
            })
            .collect(),
    )
}

/// The human report: one block per table × sink, then the final `verify: …` line.
pub fn human(reports: &[PairReport], show_keys: usize) -> String {
    let mut out = String::new();
    for r in reports {
        let f = &r.found;
        out.push_str(&format!(
            "{} → {}: {} compared, {} missing, {} extra, {} different\n",
            r.table,
            r.sink,
            r.compared,
            PairReport::count(f, Kind::Missing),
            PairReport::count(f, Kind::Extra),
            PairReport::count(f, Kind::Different)
        ));
        list_keys(&mut out, f, show_keys);
        if let Some(rep) = r.repaired.filter(|_| !r.found.is_empty()) {
            out.push_str(&format!(
                "  repaired: {} upserted, {} deleted; {} still differ\n",
                rep.upserted,
                rep.deleted,
                r.remaining.len()
            ));
            if !r.remaining.is_empty() {
                list_keys(&mut out, &r.remaining, show_keys);
            }
        }
        for note in &r.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    let remaining = remaining_total(reports);
    let repaired: u64 = reports.iter().filter_map(|r| r.repaired).map(|r| r.upserted + r.deleted).sum();
    if repaired > 0 {
        out.push_str(&format!("repair: {repaired} row(s) written\n"));
    }
    if remaining == 0 {
        out.push_str("verify: consistent\n");
    } else {
        let pairs = reports.iter().filter(|r| !r.remaining.is_empty()).count();
        out.push_str(&format!("verify: {remaining} differences in {pairs} table/sink pairs\n"));
    }
    out
}

fn list_keys(out: &mut String, list: &[Difference], show_keys: usize) {
    for (kind, label) in [(Kind::Missing, "missing"), (Kind::Extra, "extra"), (Kind::Different, "different")] {
        let of_kind: Vec<&Difference> = list.iter().filter(|d| d.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let shown: Vec<String> = of_kind
            .iter()
            .take(show_keys)
            .map(|d| {
                if d.columns.is_empty() {
                    key_text(&d.key)
                } else {
                    format!("{} [{}]", key_text(&d.key), d.columns.join(", "))
                }
            })
            .collect();
        let more = of_kind.len().saturating_sub(show_keys);
        let tail = if more > 0 { format!(" … and {more} more") } else { String::new() };
        out.push_str(&format!("  {label}: {}{tail}\n", shown.join("; ")));
    }
}

/// The JSON report (schema in the README's `polyrepl verify` section).
pub fn json(reports: &[PairReport], show_keys: usize) -> Json {
    let pairs: Vec<Json> = reports
        .iter()
        .map(|r| {
            let mut pair = json!({
                "table": r.table.to_string(),
                "sink": r.sink,
                "compared": r.compared,
            });
            add_differences(&mut pair, &r.found, show_keys);
            pair["repaired"] = match r.repaired {
                Some(rep) => {
                    let mut rem =
                        json!({ "upserted": rep.upserted, "deleted": rep.deleted, "remaining": r.remaining.len() });
                    add_differences(&mut rem, &r.remaining, show_keys);
                    rem
                }
                None => Json::Null,
            };
            pair["notes"] = json!(r.notes);
            pair
        })
        .collect();
    let remaining = remaining_total(reports);
    json!({
        "consistent": remaining == 0,
        "differences": remaining,
        "pairs_with_differences": reports.iter().filter(|r| !r.remaining.is_empty()).count(),
        "pairs": pairs,
    })
}

fn add_differences(into: &mut Json, list: &[Difference], show_keys: usize) {
    let keys = |kind: Kind| -> Vec<Json> {
        list.iter().filter(|d| d.kind == kind).take(show_keys).map(|d| key_json(&d.key)).collect()
    };
    into["missing"] = json!(PairReport::count(list, Kind::Missing));
    into["extra"] = json!(PairReport::count(list, Kind::Extra));
    into["different"] = json!(PairReport::count(list, Kind::Different));
    into["missing_keys"] = json!(keys(Kind::Missing));
    into["extra_keys"] = json!(keys(Kind::Extra));
    into["different_rows"] = Json::Array(
        list.iter()
            .filter(|d| d.kind == Kind::Different)
            .take(show_keys)
            .map(|d| json!({ "key": key_json(&d.key), "columns": d.columns }))
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyrepl_core::TableId;

    fn report() -> PairReport {
        let d = |key: Vec<Value>, kind, columns: &[&str]| Difference {
            key,
            kind,
            columns: columns.iter().map(|s| s.to_string()).collect(),
        };
        let found = vec![
            d(vec![Value::Int(5)], Kind::Missing, &[]),
            d(vec![Value::String("eu".into()), Value::Bytes(vec![0xab])], Kind::Extra, &[]),
            d(vec![Value::Int(7)], Kind::Different, &["name", "price"]),
            d(vec![Value::Int(8)], Kind::Missing, &[]),
        ];
        PairReport {
            table: TableId::new("shop", "t"),
            sink: "redis://h:1".into(),
            compared: 10,
            remaining: found.clone(),
            found,
            repaired: None,
            notes: vec![],
        }
    }

    #[test]
    fn human_report_lists_capped_keys_and_the_final_line() {
        let text = human(&[report()], 1);
        assert!(text.contains("shop.t → redis://h:1: 10 compared, 2 missing, 1 extra, 1 different"), "{text}");
        assert!(text.contains("  missing: 5 … and 1 more"), "{text}");
        assert!(text.contains("  extra: (eu, 0xab)"), "{text}");
        assert!(text.contains("  different: 7 [name, price]"), "{text}");
        assert!(text.ends_with("verify: 4 differences in 1 table/sink pairs\n"), "{text}");
        let ok = PairReport { found: vec![], remaining: vec![], ..report() };
        assert!(human(&[ok], 10).ends_with("verify: consistent\n"));
    }

    #[test]
    fn json_report_has_counts_and_keys() {
        let j = json(&[report()], 10);
        assert_eq!(j["consistent"], false);
        assert_eq!(j["differences"], 4);
        let p = &j["pairs"][0];
        assert_eq!((p["missing"].clone(), p["extra"].clone(), p["different"].clone()), (json!(2), json!(1), json!(1)));
        assert_eq!(p["missing_keys"], json!([[5], [8]]));
        assert_eq!(p["extra_keys"], json!([["eu", "0xab"]]));
        assert_eq!(p["different_rows"], json!([{ "key": [7], "columns": ["name", "price"] }]));
        assert_eq!(p["repaired"], Json::Null);
    }
}
