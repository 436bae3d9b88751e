//! Vault's JSON policy form (HCL's JSON syntax), which hvac and Terraform send when a policy
//! is given as a dict or an object:
//!
//! ```json
//! { "path": { "secret/data/openclaw/*": { "capabilities": ["read", "list"] } } }
//! ```
//!
//! As Vault's HCL 1 parser reads it, `path` may also be a list of such objects, and a rule may
//! be a list of attribute objects; a top-level `name` is accepted and ignored. Every rule goes
//! through the same checks as the HCL syntax ([`crate::parse::check_rule`]), so the two forms
//! grant exactly the same. JSON keeps no source positions, so a rule's line is where its
//! pattern is first written in the text.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{PolicyError, Position};
use crate::parse::{RawAttr, RawRule, RawValue};

/// A JSON value with object entries in order and duplicates kept (a plain map would drop a
/// repeated key silently).
enum Json {
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    Other,
}

impl<'de> de::Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Obj(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// True when `source` is in the JSON form: its first non-blank character is `{` (an HCL body
/// cannot start with one), as Vault's parser decides.
pub(crate) fn is_json(source: &str) -> bool {
    source.trim_start().starts_with('{')
}

/// Where `needle`, written as a JSON string, first appears at or after byte `from`; callers
/// move past each find, so a repeated key is found at its second place.
fn find(source: &str, needle: &str, from: usize) -> Option<(usize, Position)> {
    let quoted = serde_json::to_string(needle).ok()?;
    let i = from + source.get(from..)?.find(&quoted)?;
    Some((i, Position::from_offset(source, i)))
}

fn error(source: &str, at: usize, message: String) -> PolicyError {
    let p = Position::from_offset(source, at);
    PolicyError::Json {
        line: p.line,
        column: p.column,
        message,
    }
}

const FORM: &str = r#"expected {"path": {"<pattern>": {"capabilities": ["read", ...]}}} (Vault's JSON policy form)"#;

/// The rules of a JSON policy, in order, unchecked.
pub(crate) fn rules(source: &str) -> Result<Vec<RawRule>, PolicyError> {
    let top: Json = serde_json::from_str(source).map_err(|e| PolicyError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Json::Obj(entries) = top else {
        return Err(error(source, 0, FORM.into()));
    };
    let mut out = Vec::new();
    let mut cursor = 0;
    for (key, value) in entries {
        let (key_at, key_pos) =
            find(source, &key, cursor).unwrap_or((cursor, Position::from_offset(source, cursor)));
        cursor = key_at + 1;
        match (key.as_str(), value) {
            ("name", Json::Str(_)) => {}
            ("name", _) => {
                return Err(PolicyError::InvalidValue {
                    path: String::new(),
                    attribute: "name".into(),
                    expected: "a string",
                    at: Some(key_pos),
                });
            }
            ("path", value) => {
                let blocks = match value {
                    Json::Obj(rules) => vec![rules],
                    Json::Arr(items) => items
                        .into_iter()
                        .map(|i| match i {
                            Json::Obj(rules) => Some(rules),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            error(source, key_at, format!("`path` holds objects; {FORM}"))
                        })?,
                    _ => {
                        return Err(error(
                            source,
                            key_at,
                            format!("`path` holds objects; {FORM}"),
                        ));
                    }
                };
                for rules in blocks {
                    for (pattern, body) in rules {
                        let (at, pos) = find(source, &pattern, cursor)
                            .unwrap_or((cursor, Position::from_offset(source, cursor)));
                        cursor = at + 1;
                        let bodies = match body {
                            Json::Obj(attrs) => vec![attrs],
                            Json::Arr(items) => items
                                .into_iter()
                                .map(|i| match i {
                                    Json::Obj(attrs) => Some(attrs),
                                    _ => None,
                                })
                                .collect::<Option<Vec<_>>>()
                                .ok_or_else(|| {
                                    error(
                                        source,
                                        at,
                                        format!(
                                            "path {pattern:?} holds an object of attributes; {FORM}"
                                        ),
                                    )
                                })?,
                            _ => {
                                return Err(error(
                                    source,
                                    at,
                                    format!(
                                        "path {pattern:?} holds an object of attributes; {FORM}"
                                    ),
                                ));
                            }
                        };
                        for attrs in bodies {
                            out.push(rule(source, &pattern, at, pos, attrs, &mut cursor)?);
                        }
                    }
                }
            }
            (other, Json::Obj(_)) => {
                return Err(PolicyError::UnknownBlock {
                    identifier: other.to_owned(),
                    at: Some(key_pos),
                });
            }
            (other, _) => {
                return Err(PolicyError::UnknownAttribute {
                    path: None,
                    attribute: other.to_owned(),
                    at: Some(key_pos),
                });
            }
        }
    }
    Ok(out)
}

fn rule(
    source: &str,
    pattern: &str,
    at: usize,
    pos: Position,
    attrs: Vec<(String, Json)>,
    cursor: &mut usize,
) -> Result<RawRule, PolicyError> {
    let mut seen: Vec<String> = Vec::new();
    let mut raw = Vec::new();
    for (key, value) in attrs {
        let (key_at, key_pos) = find(source, &key, *cursor).unwrap_or((at, pos));
        *cursor = key_at + 1;
        if seen.contains(&key) {
            // HCL refuses a repeated attribute too: one rule cannot say two things.
            return Err(error(
                source,
                key_at,
                format!("path {pattern:?} gives `{key}` twice; give it once"),
            ));
        }
        seen.push(key.clone());
        let value = match value {
            Json::Str(s) => RawValue::Str(s),
            Json::Arr(items) => items
                .into_iter()
                .map(|i| match i {
                    Json::Str(s) => Some((s, Some(key_pos))),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map_or(RawValue::Other, RawValue::StrList),
            Json::Obj(_) | Json::Other => RawValue::Other,
        };
        raw.push(RawAttr {
            key,
            value,
            at: Some(key_pos),
        });
    }
    Ok(RawRule {
        pattern: pattern.to_owned(),
        at: Some(pos),
        attrs: raw,
    })
}
