//! `{{cert.…}}` templates in path patterns, rendered per request from the caller's verified
//! certificate.
//!
//! One policy such as
//!
//! ```hcl
//! path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read"] }
//! ```
//!
//! confines every agent to its own subtree. This is keep's analogue of Vault's identity
//! templating (`{{identity.entity.name}}`), which needs Vault's identity store; keep has the
//! certificate instead, so only the four `cert.*` names below exist and every other name is a
//! parse error.
//!
//! # Why a bad value drops the rule instead of rendering it
//!
//! A certificate field is substituted into a *pattern*, so a value containing pattern syntax
//! would widen the grant: a common name of `*` would turn `agents/{{cert.common_name}}` into
//! `agents/*`; one containing `/` or `..` could reach another agent's subtree. Such values, and
//! missing or empty ones, make the rule grant nothing for that request, and the evaluation
//! reason says which rule was dropped and why. Nothing is ever escaped or truncated into a
//! "close enough" path.

use std::fmt;

/// The caller's identity, as far as templates can see it.
///
/// The server fills this from the `PeerIdentity` it derived from a certificate that rustls
/// already verified; nothing here is read from unverified bytes. Borrowed so a request costs
/// no copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateContext<'a> {
    /// The subject common name, if the certificate has one (`{{cert.common_name}}`).
    pub common_name: Option<&'a str>,
    /// The DNS subject alternative names in certificate order; `{{cert.dns_san}}` is the first.
    pub dns_sans: &'a [String],
    /// The URI subject alternative names in certificate order; `{{cert.uri_san}}` is the first.
    pub uri_sans: &'a [String],
    /// The serial number as the server prints it (`{{cert.serial}}`); empty means unknown.
    pub serial: &'a str,
}

/// A certificate field a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertField {
    CommonName,
    DnsSan,
    UriSan,
    Serial,
}

impl CertField {
    fn from_template_name(name: &str) -> Option<CertField> {
        match name {
            "cert.common_name" => Some(CertField::CommonName),
            "cert.dns_san" => Some(CertField::DnsSan),
            "cert.uri_san" => Some(CertField::UriSan),
            "cert.serial" => Some(CertField::Serial),
            _ => None,
        }
    }

    /// What the field is called in a sentence ("the certificate has no URI SAN").
    fn describe(self) -> &'static str {
        match self {
            CertField::CommonName => "common name",
            CertField::DnsSan => "DNS SAN",
            CertField::UriSan => "URI SAN",
            CertField::Serial => "serial number",
        }
    }

    fn value<'a>(self, ctx: &TemplateContext<'a>) -> Option<&'a str> {
        match self {
            CertField::CommonName => ctx.common_name,
            CertField::DnsSan => ctx.dns_sans.first().map(String::as_str),
            CertField::UriSan => ctx.uri_sans.first().map(String::as_str),
            CertField::Serial => Some(ctx.serial),
        }
    }
}

/// One piece of a path pattern: literal text or a certificate field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Field(CertField),
}

/// A path pattern split into literal text and `{{cert.…}}` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternTemplate {
    pieces: Vec<Piece>,
}

/// Why parsing a template failed; the policy parser adds the path and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// A `{{…}}` with a name keep does not render; carries the template as written.
    Unsupported(String),
    /// Unbalanced braces.
    Malformed(&'static str),
}

/// Why a templated rule was dropped for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropReason {
    field: CertField,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Missing,
    Empty,
    Unsafe { value: String, why: &'static str },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field.describe();
        match &self.problem {
            Problem::Missing => write!(f, "the certificate has no {field}"),
            Problem::Empty => write!(f, "the certificate's {field} is empty"),
            Problem::Unsafe { value, why } => {
                write!(f, "the certificate's {field} {value:?} {why}")
            }
        }
    }
}

impl PatternTemplate {
    /// Splits `pattern` into literals and fields. `{{ name }}` may carry spaces inside the
    /// braces, as Vault's templates may.
    pub(crate) fn parse(pattern: &str) -> Result<PatternTemplate, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find("{{") {
            let (literal, after_open) = rest.split_at(open);
            push_literal(&mut pieces, literal)?;
            let inner_and_rest = &after_open[2..];
            let close = inner_and_rest
                .find("}}")
                .ok_or(TemplateError::Malformed("`{{` without a closing `}}`"))?;
            let inner = &inner_and_rest[..close];
            let field = CertField::from_template_name(inner.trim())
                .ok_or_else(|| TemplateError::Unsupported(format!("{{{{{inner}}}}}")))?;
            pieces.push(Piece::Field(field));
            rest = &inner_and_rest[close + 2..];
        }
        push_literal(&mut pieces, rest)?;
        Ok(PatternTemplate { pieces })
    }

    /// True when the pattern names at least one certificate field.
    pub(crate) fn is_templated(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Field(_)))
    }

    /// Renders the pattern for one caller, or says why this rule grants nothing for them.
    pub(crate) fn render(&self, ctx: &TemplateContext<'_>) -> Result<String, DropReason> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field(field) => out.push_str(checked_value(*field, ctx)?),
            }
        }
        Ok(out)
    }

    /// Whether `path` could match this pattern for *some* caller. Used only to fail closed
    /// when a templated `deny` rule cannot be rendered, so it over-approximates: a segment
    /// holding a field matches any one path segment (and, when it is the last segment of a
    /// `*` pattern, anything from there on).
    pub(crate) fn could_match(&self, path: &str) -> bool {
        // Fields never render to '/', so segment boundaries are the literal '/'s. A NUL
        // stands for "a field is in this segment"; it cannot occur in HCL-parsed literals
        // that reached here as a path (and if it did, the only effect is more fail-closed).
        let mut skeleton = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => skeleton.push_str(text),
                Piece::Field(_) => skeleton.push('\0'),
            }
        }
        let (body, is_prefix) = match skeleton.strip_suffix('*') {
            Some(body) => (body, true),
            None => (skeleton.as_str(), false),
        };
        let pattern_parts: Vec<&str> = body.split('/').collect();
        let path_parts: Vec<&str> = path.split('/').collect();
        if path_parts.len() < pattern_parts.len()
            || (!is_prefix && path_parts.len() != pattern_parts.len())
        {
            return false;
        }
        let last = pattern_parts.len() - 1;
        pattern_parts
            .iter()
            .zip(&path_parts)
            .enumerate()
            .all(|(i, (pat, seg))| {
                pat.contains('\0')
                    || *pat == "+"
                    || pat == seg
                    || (is_prefix && i == last && seg.starts_with(pat))
            })
    }
}

fn push_literal(pieces: &mut Vec<Piece>, literal: &str) -> Result<(), TemplateError> {
    if literal.contains("}}") {
        return Err(TemplateError::Malformed("`}}` without an opening `{{`"));
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal.to_owned()));
    }
    Ok(())
}

/// Returns the field's value if substituting it cannot widen the pattern.
fn checked_value<'a>(field: CertField, ctx: &TemplateContext<'a>) -> Result<&'a str, DropReason> {
    let problem = match field.value(ctx) {
        None => Problem::Missing,
        Some("") => Problem::Empty,
        Some(value) => match unsafe_reason(value) {
            None => return Ok(value),
            Some(why) => Problem::Unsafe {
                value: value.to_owned(),
                why,
            },
        },
    };
    Err(DropReason { field, problem })
}

/// Characters that are pattern syntax or path structure. `*` and `+` are Vault's globs; `/`
/// would let a value span segments; `..` and a lone `.` are traversal segments; `{`/`}` could
/// be mistaken for template syntax by anything that re-renders the pattern; control
/// characters have no business in a path and hide in logs.
fn unsafe_reason(value: &str) -> Option<&'static str> {
    if value.contains('*') {
        Some("contains `*`, which would widen the pattern")
    } else if value.contains('+') {
        Some("contains `+`, which would widen the pattern")
    } else if value.contains('/') {
        Some("contains `/`, which would let it span path segments")
    } else if value.contains("..") || value == "." {
        Some("is or contains a `..`/`.` traversal segment")
    } else if value.contains('{') || value.contains('}') {
        Some("contains `{` or `}`")
    } else if value.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx<'a>(cn: Option<&'a str>, uris: &'a [String]) -> TemplateContext<'a> {
        TemplateContext {
            common_name: cn,
            dns_sans: &[],
            uri_sans: uris,
            serial: "",
        }
    }

    #[test]
    fn parses_fields_with_and_without_spaces() {
        let t = PatternTemplate::parse("a/{{cert.common_name}}/{{ cert.serial }}/*").ok();
        assert_eq!(
            t.map(|t| t.pieces),
            Some(vec![
                Piece::Literal("a/".into()),
                Piece::Field(CertField::CommonName),
                Piece::Literal("/".into()),
                Piece::Field(CertField::Serial),
                Piece::Literal("/*".into()),
            ])
        );
    }

    #[test]
    fn refuses_unknown_and_malformed_templates() {
        assert_eq!(
            PatternTemplate::parse("a/{{identity.entity.name}}"),
            Err(TemplateError::Unsupported(
                "{{identity.entity.name}}".into()
            ))
        );
        assert!(matches!(
            PatternTemplate::parse("a/{{cert.common_name"),
            Err(TemplateError::Malformed(_))
        ));
        assert!(matches!(
            PatternTemplate::parse("a/cert}}"),
            Err(TemplateError::Malformed(_))
        ));
    }

    #[test]
    fn renders_good_values_and_drops_dangerous_ones() {
        let t = PatternTemplate::parse("agents/{{cert.common_name}}/*").unwrap();
        assert_eq!(
            t.render(&ctx(Some("agent-a"), &[])).ok().as_deref(),
            Some("agents/agent-a/*")
        );
        for bad in ["", "*", "a*", "+", "a/b", "..", "a..b", ".", "{x}", "a\nb"] {
            assert!(t.render(&ctx(Some(bad), &[])).is_err(), "{bad:?}");
        }
        let err = t.render(&ctx(None, &[])).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("the certificate has no common name"));
    }

    #[test]
    fn first_san_is_used() {
        let t = PatternTemplate::parse("x/{{cert.uri_san}}").unwrap();
        let uris = ["urn:agent-a".to_owned(), "urn:agent-b".to_owned()];
        assert_eq!(
            t.render(&ctx(None, &uris)).ok().as_deref(),
            Some("x/urn:agent-a")
        );
    }

    #[test]
    fn could_match_over_approximates_field_segments() {
        let t = PatternTemplate::parse("s/{{cert.common_name}}/x").unwrap();
        assert!(t.could_match("s/anything/x"));
        assert!(!t.could_match("s/anything/y"));
        assert!(!t.could_match("s/a/b/x"));
        let p = PatternTemplate::parse("s/pre-{{cert.common_name}}*").unwrap();
        assert!(p.could_match("s/other/deep/path"));
        assert!(!p.could_match("t/x"));
    }
}
