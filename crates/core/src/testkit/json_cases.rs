//! JSON documents whose numbers an f64 would round or refuse, with odd keys and deep nesting: each source
//! text with the exact compact text a sink that keeps JSON as text must store (serde_json writes an
//! exponent as `e+N`; every other digit stays as written).

/// (source JSON text, the exact text stored).
pub fn json_kept_as_text() -> Vec<(String, String)> {
    let deep = format!("{}1e400{}", "[".repeat(31), "]".repeat(31));
    [
        ("12345678901234567890123", "12345678901234567890123"),
        ("[1e400, -1E-400]", "[1e+400,-1e-400]"),
        ("-0", "-0"),
        ("[-0, -0.0, 1.50, 1.5, 1E2]", "[-0,-0.0,1.50,1.5,1e+2]"),
        ("0.1000000000000000000001", "0.1000000000000000000001"),
        (
            "[9007199254740993, 18446744073709551615, -9223372036854775808, 18446744073709551616]",
            "[9007199254740993,18446744073709551615,-9223372036854775808,18446744073709551616]",
        ),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456789"),
        (
            r#"{"a": [1, {"b": [12345678901234567890123, 0.1000000000000000000001, 1e400]}]}"#,
            r#"{"a":[1,{"b":[12345678901234567890123,0.1000000000000000000001,1e+400]}]}"#,
        ),
        (r#"{"": {"$a": {"b.c": "\u0000"}}}"#, r#"{"":{"$a":{"b.c":"\u0000"}}}"#),
        (r#"{"a\u0000b": 1}"#, r#"{"a\u0000b":1}"#),
    ]
    .iter()
    .map(|(source, stored)| (source.to_string(), stored.to_string()))
    .chain([(deep.clone(), deep.replace("e400", "e+400"))])
    .collect()
}
