//! A small JSON5 reader that remembers where every value sits in the text, and an editor that
//! sets one member by rewriting only that span.
//!
//! OpenClaw's config (`openclaw.json`) is JSON5: comments, trailing commas, unquoted keys,
//! single-quoted strings. `keep openclaw setup` must add `secrets.providers.keep` without
//! losing the user's comments or reformatting their file, and `keep doctor --openclaw` must
//! report a SecretRef by its JSON path. No crate in the tree parses JSON5 with spans (the
//! `json5` crate discards comments and positions), so this one is hand-written; it accepts the
//! JSON5 grammar (<https://spec.json5.org>) and reports errors by line and column.

use std::fmt;

use serde_json::Value;

/// A JSON5 syntax error, at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct Error {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What was wrong there.
    pub message: String,
}

/// A parsed value and its byte span `start..end` in the text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Byte offset of the value's first character.
    pub start: usize,
    /// Byte offset just past the value.
    pub end: usize,
    /// The value.
    pub kind: Kind,
}

/// What a [`Node`] holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `{ … }`: members in text order (the closing brace is at the node's `end - 1`).
    Object {
        /// Key, the key's start offset, and the value.
        members: Vec<(String, usize, Node)>,
    },
    /// `[ … ]`.
    Array(Vec<Node>),
    /// A string (escapes decoded).
    String(String),
    /// A number, as JSON (`Infinity` and `NaN` become `null`, which JSON cannot hold).
    Number(Value),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Node {
    /// The value as plain JSON.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Object { members } => Value::Object(
                members
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Kind::Array(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::String(s) => Value::String(s.clone()),
            Kind::Number(n) => n.clone(),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Null => Value::Null,
        }
    }

    /// The member `key` of this object (the last one when a key repeats, as JSON5 says).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Object { members } => members.iter().rev().find(|m| m.0 == key).map(|m| &m.2),
            _ => None,
        }
    }
}

/// Parses a whole JSON5 document (one value, with comments and whitespace around it).
pub fn parse(text: &str) -> Result<Node, Error> {
    let mut p = Parser { text, pos: 0 };
    p.skip_trivia()?;
    let node = p.value(0)?;
    p.skip_trivia()?;
    if p.pos < text.len() {
        return Err(p.error("unexpected text after the end of the document"));
    }
    Ok(node)
}

/// Whether the text has a comment anywhere (outside strings). OpenClaw's own writer drops
/// comments, so `keep openclaw setup` edits such a file itself.
pub fn has_comments(text: &str) -> bool {
    let mut p = Parser { text, pos: 0 };
    let mut found = false;
    // A cheap scan with the same lexer rules: strings are skipped, comments noted.
    while p.pos < text.len() {
        match p.peek() {
            Some('"') | Some('\'') => {
                if p.string().is_err() {
                    return found;
                }
            }
            Some('/') if matches!(p.peek_at(1), Some('/') | Some('*')) => {
                found = true;
                if p.skip_trivia().is_err() {
                    return true;
                }
            }
            Some(c) => p.pos += c.len_utf8(),
            None => break,
        }
    }
    found
}

/// Sets `path` (object keys from the root) to `value` in the JSON5 `text`, touching only the
/// span of the old value, or inserting one member (and the missing parent objects) before the
/// closing brace of the deepest object that exists. Everything else — comments, order,
/// formatting, unrelated keys — stays byte for byte. An empty `text` becomes a new document.
pub fn set(text: &str, path: &[&str], value: &Value) -> Result<String, EditError> {
    if text.trim().is_empty() {
        let mut v = value.clone();
        for key in path.iter().rev() {
            v = Value::Object([((*key).to_owned(), v)].into_iter().collect());
        }
        return Ok(format!("{}\n", pretty(&v, "")));
    }
    let root = parse(text)?;
    let mut node = &root;
    let mut depth = 0;
    while depth < path.len() {
        let Kind::Object { .. } = node.kind else {
            return Err(EditError::NotAnObject(path[..depth].join(".")));
        };
        match node.get(path[depth]) {
            Some(child) => {
                node = child;
                depth += 1;
            }
            None => break,
        }
    }
    if depth == path.len() {
        // Replace the existing value's span.
        let indent = line_indent(text, node.start);
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..node.start]);
        out.push_str(&pretty(value, &indent));
        out.push_str(&text[node.end..]);
        return Ok(out);
    }
    let Kind::Object { members } = &node.kind else {
        return Err(EditError::NotAnObject(path[..depth].join(".")));
    };
    // What to insert: the first missing key, holding the rest of the path.
    let mut v = value.clone();
    for key in path[depth + 1..].iter().rev() {
        v = Value::Object([((*key).to_owned(), v)].into_iter().collect());
    }
    let key = path[depth];
    let close = node.end - 1; // the '}'
    let outer = line_indent(text, node.start);
    let inner = match members.first() {
        Some((_, key_start, _)) => line_indent(text, *key_start),
        None => format!("{outer}  "),
    };
    let member = format!(
        "{}: {}",
        serde_json::to_string(key).unwrap_or_default(),
        pretty(&v, &inner)
    );
    let mut out = String::with_capacity(text.len() + member.len() + 8);
    match members.last() {
        Some((_, _, last)) => {
            // A comma after the last member unless one is there already (JSON5 allows it).
            let after = &text[last.end..close];
            let has_comma = Parser {
                text: after,
                pos: 0,
            }
            .first_significant()
                == Some(',');
            out.push_str(&text[..last.end]);
            if !has_comma {
                out.push(',');
            }
            // Insert at the start of the closing brace's line when the brace stands alone,
            // so a comment after the last member stays where it is.
            let line_start = text[..close].rfind('\n').map(|i| i + 1);
            match line_start {
                Some(ls) if ls > last.end && text[ls..close].trim().is_empty() => {
                    out.push_str(&text[last.end..ls]);
                    out.push_str(&format!("{inner}{member}\n"));
                    out.push_str(&text[ls..]);
                }
                _ => {
                    out.push_str(&text[last.end..close]);
                    out.push_str(&format!("\n{inner}{member}\n{outer}"));
                    out.push_str(&text[close..]);
                }
            }
        }
        None => {
            // `{}` or `{ /* comment */ }`: keep what is inside, then the member.
            let inside = &text[node.start + 1..close];
            out.push_str(&text[..node.start + 1]);
            out.push_str(inside.trim_end_matches([' ', '\t', '\n', '\r']));
            out.push_str(&format!("\n{inner}{member}\n{outer}"));
            out.push_str(&text[close..]);
        }
    }
    Ok(out)
}

/// Why [`set`] could not edit the text.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The text is not valid JSON5.
    #[error(transparent)]
    Syntax(#[from] Error),
    /// A key on the path holds something other than an object (empty: the document itself).
    #[error("{} is not an object", if .0.is_empty() { "the document" } else { .0.as_str() })]
    NotAnObject(String),
}

/// `value` as pretty JSON whose continuation lines start with `indent`.
fn pretty(value: &Value, indent: &str) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.replace('\n', &format!("\n{indent}"))
}

/// The whitespace at the start of the line holding `pos`.
fn line_indent(text: &str, pos: usize) -> String {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// Limits nesting so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, message: impl fmt::Display) -> Error {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Error {
            line,
            column,
            message: message.to_string(),
        }
    }

    /// Skips whitespace (JSON5's, which includes U+FEFF and the Unicode space separators) and
    /// comments.
    fn skip_trivia(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('/') if self.peek_at(1) == Some('/') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' || c == '\r' || c == '\u{2028}' || c == '\u{2029}' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some('/') if self.peek_at(1) == Some('*') => {
                    let start = self.pos;
                    match self.text[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        None => {
                            self.pos = start;
                            return Err(self.error("a /* comment is never closed"));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The first character that is not whitespace or a comment, without consuming it.
    fn first_significant(mut self) -> Option<char> {
        self.skip_trivia().ok()?;
        self.peek()
    }

    fn value(&mut self, depth: usize) -> Result<Node, Error> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let start = self.pos;
        let kind = match self.peek() {
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') | Some('\'') => Kind::String(self.string()?),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number()?,
            Some(c) if is_id_start(c) => {
                let word = self.identifier()?;
                match word.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "null" => Kind::Null,
                    "Infinity" | "NaN" => Kind::Number(Value::Null),
                    _ => {
                        self.pos = start;
                        return Err(
                            self.error(format!("{word:?} is not a value (strings need quotes)"))
                        );
                    }
                }
            }
            Some(c) => return Err(self.error(format!("unexpected {c:?}"))),
            None => return Err(self.error("the document ends where a value should be")),
        };
        Ok(Node {
            start,
            end: self.pos,
            kind,
        })
    }

    fn object(&mut self, depth: usize) -> Result<Kind, Error> {
        self.bump(); // '{'
        let mut members = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some('}') => {
                    self.bump();
                    return Ok(Kind::Object { members });
                }
                None => return Err(self.error("an object is never closed (missing '}')")),
                _ => {}
            }
            let key_start = self.pos;
            let key = match self.peek() {
                Some('"') | Some('\'') => self.string()?,
                Some(c) if is_id_start(c) => self.identifier()?,
                Some(c) => return Err(self.error(format!("expected a key, found {c:?}"))),
                None => return Err(self.error("an object is never closed (missing '}')")),
            };
            self.skip_trivia()?;
            if self.bump() != Some(':') {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.error(format!("expected ':' after the key {key:?}")));
            }
            self.skip_trivia()?;
            let value = self.value(depth + 1)?;
            members.push((key, key_start, value));
            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                Some(c) => {
                    return Err(
                        self.error(format!("expected ',' or '}}' in an object, found {c:?}"))
                    );
                }
                None => return Err(self.error("an object is never closed (missing '}')")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Kind, Error> {
        self.bump(); // '['
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(Kind::Array(items));
                }
                None => return Err(self.error("an array is never closed (missing ']')")),
                _ => {}
            }
            items.push(self.value(depth + 1)?);
            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                Some(c) => {
                    return Err(self.error(format!("expected ',' or ']' in an array, found {c:?}")));
                }
                None => return Err(self.error("an array is never closed (missing ']')")),
            }
        }
    }

    fn string(&mut self) -> Result<String, Error> {
        let start = self.pos;
        let Some(quote) = self.bump() else {
            return Err(self.error("expected a string"));
        };
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                self.pos = start;
                return Err(self.error("a string is never closed"));
            };
            match c {
                c if c == quote => return Ok(out),
                '\n' | '\r' => {
                    self.pos = start;
                    return Err(self.error("a string runs past the end of its line"));
                }
                '\\' => {
                    let Some(e) = self.bump() else {
                        return Err(self.error("a string is never closed"));
                    };
                    match e {
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'v' => out.push('\u{b}'),
                        '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => out.push('\0'),
                        'x' => {
                            let n = self.hex(2)?;
                            out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                        }
                        'u' => {
                            let hi = self.hex(4)?;
                            let c = if (0xd800..0xdc00).contains(&hi)
                                && self.text[self.pos..].starts_with("\\u")
                            {
                                self.pos += 2;
                                let lo = self.hex(4)?;
                                char::from_u32(
                                    0x10000
                                        + ((hi - 0xd800) << 10)
                                        + (lo.wrapping_sub(0xdc00) & 0x3ff),
                                )
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or('\u{fffd}'));
                        }
                        // A line continuation: the escaped line break is dropped.
                        '\n' | '\u{2028}' | '\u{2029}' => {}
                        '\r' => {
                            if self.peek() == Some('\n') {
                                self.bump();
                            }
                        }
                        c if c.is_ascii_digit() => {
                            return Err(self.error("a digit cannot be escaped in a string"));
                        }
                        c => out.push(c),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex(&mut self, n: usize) -> Result<u32, Error> {
        let digits = self.text.get(self.pos..self.pos + n).unwrap_or("");
        match u32::from_str_radix(digits, 16) {
            Ok(v) if digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()) => {
                self.pos += n;
                Ok(v)
            }
            _ => Err(self.error(format!("expected {n} hex digits after the escape"))),
        }
    }

    fn identifier(&mut self) -> Result<String, Error> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_id_continue(c) {
                self.bump();
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error("expected a name"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn number(&mut self) -> Result<Kind, Error> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.bump();
                true
            }
            Some('+') => {
                self.bump();
                false
            }
            _ => false,
        };
        if self.peek().is_some_and(is_id_start) {
            let word = self.identifier()?;
            return match word.as_str() {
                "Infinity" | "NaN" => Ok(Kind::Number(Value::Null)),
                _ => {
                    self.pos = start;
                    Err(self.error("not a number"))
                }
            };
        }
        let body_start = self.pos;
        if self.text[self.pos..].starts_with("0x") || self.text[self.pos..].starts_with("0X") {
            self.pos += 2;
            let hex_start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let n = u64::from_str_radix(&self.text[hex_start..self.pos], 16).map_err(|_| {
                self.error("a hexadecimal number needs digits after 0x (and must fit 64 bits)")
            })?;
            let n = if negative {
                Value::from(-(n as i128) as f64)
            } else {
                Value::from(n)
            };
            return Ok(Kind::Number(n));
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E'))
            || (matches!(self.peek(), Some('+') | Some('-'))
                && matches!(self.text[..self.pos].chars().last(), Some('e') | Some('E')))
        {
            self.bump();
        }
        let body = &self.text[body_start..self.pos];
        // JSON5 allows `.5` and `5.`; Rust's float parser takes both once a 0 is added.
        let normal = format!(
            "{}{}{}",
            if negative { "-" } else { "" },
            if body.starts_with('.') { "0" } else { "" },
            body.replace(".e", ".0e").replace(".E", ".0E")
        );
        let normal = normal
            .strip_suffix('.')
            .map_or(normal.clone(), |s| s.to_owned());
        if let Ok(i) = normal.parse::<i64>() {
            return Ok(Kind::Number(Value::from(i)));
        }
        match normal.parse::<f64>() {
            Ok(f) if !body.is_empty() => Ok(Kind::Number(
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            )),
            _ => {
                self.pos = start;
                Err(self.error(format!(
                    "{:?} is not a number",
                    &self.text[start..start + body.len().max(1)]
                )))
            }
        }
    }
}

fn is_id_start(c: char) -> bool {
    c == '$' || c == '_' || c.is_alphabetic()
}

fn is_id_continue(c: char) -> bool {
    is_id_start(c) || c.is_alphanumeric() || c == '\u{200c}' || c == '\u{200d}'
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const OPENCLAW: &str = r#"// OpenClaw config, edited by hand
{
  /* the gateway */
  gateway: { port: 18789, bind: 'loopback', },
  models: {
    providers: {
      openai: {
        baseUrl: "https://api.openai.com/v1",
        apiKey: { source: "exec", provider: "keep", id: "agents/a/llm#api_key" }, // from keep
      },
    },
  },
  hex: 0x1F, half: .5, big: +1e3, inf: -Infinity, "quoted key": 'it\'s',
}
"#;

    #[test]
    fn parses_comments_trailing_commas_unquoted_keys_and_json5_numbers() {
        let v = parse(OPENCLAW).unwrap().to_json();
        assert_eq!(v["gateway"], json!({"port": 18789, "bind": "loopback"}));
        assert_eq!(
            v["models"]["providers"]["openai"]["apiKey"]["id"],
            "agents/a/llm#api_key"
        );
        assert_eq!(v["hex"], 31);
        assert_eq!(v["half"], 0.5);
        assert_eq!(v["big"], 1000.0);
        assert_eq!(v["inf"], Value::Null);
        assert_eq!(v["quoted key"], "it's");
    }

    #[test]
    fn strings_decode_json5_escapes() {
        let v = parse(
            r#"{ a: "x\u00e9\x41\n\
y", b: '\"', c: "\uD83D\uDE00" }"#,
        )
        .unwrap()
        .to_json();
        assert_eq!(v["a"], "xéA\ny");
        assert_eq!(v["b"], "\"");
        assert_eq!(v["c"], "😀");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let e = parse("{\n  a: 1,\n  b: nope,\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 6), "{e}");
        assert!(e.to_string().contains("\"nope\" is not a value"), "{e}");
        let e = parse("{ a: 1 /* open").unwrap_err();
        assert!(e.message.contains("never closed"), "{e}");
        let e = parse("{ a: 1 } x").unwrap_err();
        assert!(e.message.contains("after the end"), "{e}");
        assert!(parse("{ a: 'unterminated }").is_err());
        assert!(parse("[1 2]").is_err());
        assert!(parse(&"[".repeat(500)).is_err());
    }

    #[test]
    fn set_inserts_missing_objects_and_keeps_every_comment_and_byte_around_them() {
        let provider = json!({"source": "exec", "command": "/home/u/.local/lib/keep/keep"});
        let out = set(OPENCLAW, &["secrets", "providers", "keep"], &provider).unwrap();
        // Everything that was there is still there, in order.
        let mut rest = out.as_str();
        for line in OPENCLAW.lines().filter(|l| l.trim() != "}") {
            let i = rest
                .find(line)
                .unwrap_or_else(|| panic!("lost {line:?}:\n{out}"));
            rest = &rest[i + line.len()..];
        }
        let v = parse(&out).unwrap().to_json();
        assert_eq!(v["secrets"]["providers"]["keep"], provider);
        assert_eq!(v["gateway"]["port"], 18789);
        // Inserted with the file's own two-space indentation, before the final brace.
        assert!(
            out.contains("\n  \"secrets\": {\n    \"providers\": {\n"),
            "{out}"
        );
        assert!(out.ends_with("}\n}\n"), "{out}");
    }

    #[test]
    fn set_replaces_an_existing_value_in_place_and_is_stable() {
        let text = "{\n  // keep's provider\n  secrets: { providers: { keep: { source: 'exec' }, other: {source: 'env'} } }, // tail\n}\n";
        let new = json!({"source": "exec", "jsonOnly": true});
        let out = set(text, &["secrets", "providers", "keep"], &new).unwrap();
        assert!(out.starts_with("{\n  // keep's provider\n  secrets: { providers: { keep: {"));
        assert!(
            out.contains("other: {source: 'env'} } }, // tail\n}\n"),
            "{out}"
        );
        let v = parse(&out).unwrap().to_json();
        assert_eq!(v["secrets"]["providers"]["keep"], new);
        assert_eq!(v["secrets"]["providers"]["other"]["source"], "env");
        // Setting the same value again changes nothing.
        assert_eq!(
            set(&out, &["secrets", "providers", "keep"], &new).unwrap(),
            out
        );
    }

    #[test]
    fn set_handles_empty_objects_missing_commas_and_empty_files() {
        let out = set("{}", &["a", "b"], &json!(1)).unwrap();
        assert_eq!(parse(&out).unwrap().to_json(), json!({"a": {"b": 1}}));
        let out = set("{ x: 1 }", &["a"], &json!(true)).unwrap();
        assert_eq!(parse(&out).unwrap().to_json(), json!({"x": 1, "a": true}));
        let out = set("{\n  x: 1 // no comma\n}", &["a"], &json!(2)).unwrap();
        assert!(out.contains("x: 1, // no comma"), "{out}");
        assert_eq!(parse(&out).unwrap().to_json(), json!({"x": 1, "a": 2}));
        let out = set("{\n  x: 1,\n}", &["a"], &json!(2)).unwrap();
        assert_eq!(out, "{\n  x: 1,\n  \"a\": 2\n}");
        let out = set("", &["s", "p"], &json!({"k": 1})).unwrap();
        assert_eq!(
            parse(&out).unwrap().to_json(),
            json!({"s": {"p": {"k": 1}}})
        );
        let out = set("{ /* nothing yet */ }", &["a"], &json!(1)).unwrap();
        assert!(out.contains("/* nothing yet */"), "{out}");
        assert!(matches!(
            set("{ secrets: 3 }", &["secrets", "providers"], &json!(1)),
            Err(EditError::NotAnObject(p)) if p == "secrets"
        ));
        assert!(matches!(
            set("[1]", &["a"], &json!(1)),
            Err(EditError::NotAnObject(_))
        ));
    }

    #[test]
    fn comments_are_found_outside_strings_only() {
        assert!(has_comments(OPENCLAW));
        assert!(has_comments("{a: 1 /* x */}"));
        assert!(!has_comments(r#"{"url": "https://x//y", "c": "/* no */"}"#));
    }
}
