//! A minimal JSON value and writer for `--json` output (no dependency needed for this much).

use core::fmt::{self, Write};

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys keep their insertion order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(key, value)` pairs.
    pub fn object<const N: usize>(pairs: [(&str, Json); N]) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A string, or `null` for `None`.
    pub fn opt_str(s: Option<&str>) -> Json {
        s.map_or(Json::Null, |s| Json::Str(s.to_owned()))
    }

    /// An unsigned number.
    pub fn uint(n: impl Into<u64>) -> Json {
        Json::Int(i64::try_from(n.into()).unwrap_or(i64::MAX))
    }

    /// Appends `key: value` to an object (no effect on other values).
    pub fn push(&mut self, key: &str, value: Json) {
        if let Json::Object(pairs) = self {
            pairs.push((key.to_owned(), value));
        }
    }

    fn write_indented(&self, out: &mut String, indent: usize) -> fmt::Result {
        let pad = |out: &mut String, n: usize| {
            for _ in 0..n {
                out.push_str("  ");
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => write!(out, "{b}")?,
            Json::Int(n) => write!(out, "{n}")?,
            Json::Str(s) => write_str(out, s)?,
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 1);
                    item.write_indented(out, indent + 1)?;
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Object(pairs) if pairs.is_empty() => out.push_str("{}"),
            Json::Object(pairs) => {
                out.push_str("{\n");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    pad(out, indent + 1);
                    write_str(out, k)?;
                    out.push_str(": ");
                    v.write_indented(out, indent + 1)?;
                    out.push_str(if i + 1 < pairs.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
        }
        Ok(())
    }
}

fn write_str(out: &mut String, s: &str) -> fmt::Result {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_indented(&mut s, 0)?;
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        let mut v = Json::object([
            ("name", Json::Str("a \"b\"\\\n\u{1}é".into())),
            ("n", Json::Int(-3)),
            ("list", Json::Array(vec![Json::Bool(true), Json::Null])),
            ("empty", Json::Array(vec![])),
        ]);
        v.push("obj", Json::object([("x", Json::uint(7u32))]));
        assert_eq!(
            v.to_string(),
            "{\n  \"name\": \"a \\\"b\\\"\\\\\\n\\u0001é\",\n  \"n\": -3,\n  \"list\": [\n    true,\n    \
             null\n  ],\n  \"empty\": [],\n  \"obj\": {\n    \"x\": 7\n  }\n}"
        );
        assert_eq!(Json::opt_str(None), Json::Null);
        assert_eq!(Json::uint(u64::MAX), Json::Int(i64::MAX));
    }
}
