//! Vault's lenient request fields, read one way everywhere and HTTP-free.
//!
//! Vault clients do not agree on JSON types: vaultrs sends numbers as strings, hvac sends
//! durations as `"1h"` or as seconds, Terraform sends lists as comma-separated strings and
//! booleans as `"true"`. Vault itself accepts all of these, so keep does too, with one reader
//! per field kind here: the API handlers, cert auth roles and PKI roles all call these, so a
//! field means the same thing wherever it appears.
//!
//! A reader returns `Ok(None)` when the field is absent or `null`, and a [`FieldError`] naming
//! the field and what it must be otherwise; the API layer turns that into a 400 with the
//! error's text as the message.

use serde_json::{Map, Value};

/// A field whose value cannot be read as its kind. Its text is `"{field} {problem}"`, the
/// message clients get in the 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// The field's name as the client sent it.
    pub field: String,
    /// What its value must be.
    pub problem: Problem,
}

/// What a field's value must be (the second half of a [`FieldError`]'s message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// [`opt_u64`].
    #[error("must be a non-negative integer")]
    NonNegativeInteger,
    /// [`versions`].
    #[error("must be a list of version numbers")]
    VersionList,
    /// [`opt_duration_secs`].
    #[error("must be a duration such as 30m or 3600")]
    Duration,
    /// [`ttl`].
    #[error("must be seconds or a duration such as 1h or 30m")]
    Ttl,
    /// [`string_list`].
    #[error("must be a list of strings or a comma-separated string")]
    StringList,
    /// [`boolean`].
    #[error("must be true or false")]
    Boolean,
}

impl FieldError {
    fn new(field: &str, problem: Problem) -> FieldError {
        FieldError {
            field: field.to_owned(),
            problem,
        }
    }
}

/// Go's `strconv.ParseBool`, which Vault uses for every boolean given as a string: `1`, `t`,
/// `T`, `TRUE`, `true`, `True` are true; `0`, `f`, `F`, `FALSE`, `false`, `False` are false;
/// nothing else is a boolean (no trimming, no `yes`).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A value read as a boolean the way Vault reads one: JSON `true`/`false`, a string
/// [`parse_bool`] reads, or `""` (false, as Vault's decoder has it). `None`: not a boolean.
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.is_empty() => Some(false),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// Reads a boolean field ([`to_bool`]).
pub fn boolean(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, FieldError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => to_bool(v)
            .map(Some)
            .ok_or_else(|| FieldError::new(field, Problem::Boolean)),
    }
}

/// Reads a non-negative integer sent as a number or a string; `""` counts as absent.
pub fn opt_u64(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, FieldError> {
    let bad = || FieldError::new(field, Problem::NonNegativeInteger);
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// The pieces of a comma-separated list, trimmed, empty pieces dropped (`"a, b,"` is `a`, `b`).
fn comma_separated(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// Reads a list field: a JSON array of strings, a comma-separated string, or `""` for empty.
/// Entries are trimmed and empty ones dropped.
pub fn string_list(m: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, FieldError> {
    let bad = || FieldError::new(field, Problem::StringList);
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(comma_separated(s).map(str::to_owned).collect())),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_owned()),
                _ => Err(bad()),
            })
            .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// Reads KV's `versions`: `[1, 2]`, `["1", "2"]`, `"1,2"` or `1`; absent means none.
pub fn versions(m: &Map<String, Value>) -> Result<Vec<u64>, FieldError> {
    let bad = || FieldError::new("versions", Problem::VersionList);
    match m.get("versions") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64().ok_or_else(bad),
                Value::String(s) => s.trim().parse().map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect(),
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v]).ok_or_else(bad),
        Some(Value::String(s)) => comma_separated(s)
            .map(|x| x.parse().map_err(|_| bad()))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The one duration rule: whole seconds as a number or a string (`3600`, `"3600"`), or a Go
/// duration string (`"1h"`, `"1h30m"`, `"90s"`); never negative. `None` when it is neither.
/// (Callers handle the empty string: what it means depends on the field.)
pub fn duration_secs(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            if let Ok(n) = s.trim().parse::<u64>() {
                return Some(n);
            }
            let d = keep_pki::duration::parse_duration(s).ok()?;
            u64::try_from(d.whole_seconds())
                .ok()
                .filter(|_| !d.is_negative())
        }
        _ => None,
    }
}

/// Reads an optional duration setting (KV's `delete_version_after`) in seconds; `""` counts as
/// absent (the setting is left as it is).
pub fn opt_duration_secs(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, FieldError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => duration_secs(v)
            .map(Some)
            .ok_or_else(|| FieldError::new(field, Problem::Duration)),
    }
}

/// Reads a TTL in seconds; `0` and `""` both mean "use the default" (`Some(0)`), as in Vault.
pub fn ttl(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, FieldError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(0)),
        Some(v) => duration_secs(v)
            .map(Some)
            .ok_or_else(|| FieldError::new(field, Problem::Ttl)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn one(field: &str, v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(field.to_owned(), v);
        m
    }

    /// Go's `strconv.ParseBool`, value by value, and the JSON forms around it.
    #[test]
    fn booleans_follow_go_parse_bool() {
        let table: [(Value, Option<bool>); 27] = [
            (json!("1"), Some(true)),
            (json!("t"), Some(true)),
            (json!("T"), Some(true)),
            (json!("TRUE"), Some(true)),
            (json!("true"), Some(true)),
            (json!("True"), Some(true)),
            (json!("0"), Some(false)),
            (json!("f"), Some(false)),
            (json!("F"), Some(false)),
            (json!("FALSE"), Some(false)),
            (json!("false"), Some(false)),
            (json!("False"), Some(false)),
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            // Vault's decoder reads an empty string as false.
            (json!(""), Some(false)),
            // Not booleans to ParseBool.
            (json!("tRUE"), None),
            (json!("yes"), None),
            (json!("no"), None),
            (json!("on"), None),
            (json!(" true"), None),
            (json!("true "), None),
            (json!("2"), None),
            (json!("-1"), None),
            (json!(1), None),
            (json!(0), None),
            (json!([true]), None),
            (json!({}), None),
        ];
        for (v, want) in table {
            let got = boolean(&one("flag", v.clone()), "flag");
            match want {
                Some(b) => assert_eq!(got, Ok(Some(b)), "{v}"),
                None => {
                    let e = got.unwrap_err();
                    assert_eq!(e.to_string(), "flag must be true or false", "{v}");
                }
            }
            if let Value::String(s) = &v
                && !s.is_empty()
            {
                assert_eq!(parse_bool(s), want, "parse_bool({s:?})");
            }
        }
        assert_eq!(boolean(&Map::new(), "flag"), Ok(None));
        assert_eq!(boolean(&one("flag", Value::Null), "flag"), Ok(None));
    }

    #[test]
    fn integers_from_numbers_and_strings() {
        assert_eq!(opt_u64(&one("n", json!(7)), "n"), Ok(Some(7)));
        assert_eq!(opt_u64(&one("n", json!("7")), "n"), Ok(Some(7)));
        assert_eq!(opt_u64(&one("n", json!("")), "n"), Ok(None));
        assert_eq!(opt_u64(&Map::new(), "n"), Ok(None));
        for bad in [json!(-1), json!(1.5), json!("x"), json!(" 7"), json!(true)] {
            let e = opt_u64(&one("cas", bad.clone()), "cas").unwrap_err();
            assert_eq!(e.to_string(), "cas must be a non-negative integer", "{bad}");
        }
    }

    #[test]
    fn string_lists_from_arrays_and_commas() {
        let read = |v: Value| string_list(&one("names", v), "names");
        assert_eq!(
            read(json!("a, b,,c ")),
            Ok(Some(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            read(json!([" a", "", "b"])),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(read(json!("")), Ok(Some(vec![])));
        assert_eq!(read(Value::Null), Ok(None));
        for bad in [json!(1), json!(["a", 1]), json!({})] {
            assert_eq!(
                read(bad.clone()).unwrap_err().to_string(),
                "names must be a list of strings or a comma-separated string",
                "{bad}"
            );
        }
    }

    #[test]
    fn versions_in_every_form() {
        let read = |v: Value| versions(&one("versions", v));
        assert_eq!(read(json!([1, "2"])), Ok(vec![1, 2]));
        assert_eq!(read(json!("1, 2,")), Ok(vec![1, 2]));
        assert_eq!(read(json!(3)), Ok(vec![3]));
        assert_eq!(versions(&Map::new()), Ok(vec![]));
        for bad in [json!("1,x"), json!([-1]), json!([true]), json!({})] {
            assert_eq!(
                read(bad.clone()).unwrap_err().to_string(),
                "versions must be a list of version numbers",
                "{bad}"
            );
        }
    }

    /// One duration rule; the two readers differ only in what `""` means and in their message.
    #[test]
    fn durations_and_ttls() {
        for (v, secs) in [
            (json!(90), 90),
            (json!("90"), 90),
            (json!(" 90 "), 90),
            (json!("1h"), 3600),
            (json!("1h30m"), 5400),
            (json!("30m"), 1800),
            (json!(0), 0),
        ] {
            assert_eq!(ttl(&one("ttl", v.clone()), "ttl"), Ok(Some(secs)), "{v}");
            assert_eq!(
                opt_duration_secs(&one("d", v.clone()), "d"),
                Ok(Some(secs)),
                "{v}"
            );
        }
        assert_eq!(ttl(&one("ttl", json!(" ")), "ttl"), Ok(Some(0)));
        assert_eq!(opt_duration_secs(&one("d", json!(" ")), "d"), Ok(None));
        assert_eq!(ttl(&Map::new(), "ttl"), Ok(None));
        assert_eq!(opt_duration_secs(&Map::new(), "d"), Ok(None));
        for bad in [
            json!("-1h"),
            json!(-5),
            json!("soon"),
            json!(1.5),
            json!(true),
        ] {
            assert_eq!(
                ttl(&one("token_ttl", bad.clone()), "token_ttl")
                    .unwrap_err()
                    .to_string(),
                "token_ttl must be seconds or a duration such as 1h or 30m",
                "{bad}"
            );
            assert_eq!(
                opt_duration_secs(
                    &one("delete_version_after", bad.clone()),
                    "delete_version_after"
                )
                .unwrap_err()
                .to_string(),
                "delete_version_after must be a duration such as 30m or 3600",
                "{bad}"
            );
        }
    }
}
