//! Parsing Vault's HCL ACL policy syntax (and its JSON form, [`crate::json`]) into [`Policy`].
//!
//! ```hcl
//! path "secret/data/openclaw/*" {
//!   capabilities = ["read", "list"]
//! }
//! ```
//!
//! The parser walks HCL's syntax tree instead of deserialising with serde, for two reasons:
//! two `path` blocks with the same pattern are legal and must merge (serde refuses them), and
//! every unknown block or attribute must be an error, with its line. hcl-rs's `hcl::parse`
//! body drops source positions, so this walks the same parser's edit tree (`hcl::edit`, which
//! hcl-rs re-exports and `hcl::parse` is built on) to keep them.
//!
//! What keep refuses that Vault accepts, and why, is listed in the crate docs ("Where keep
//! is stricter than Vault").

use std::collections::BTreeSet;

use hcl::edit::Span;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Block, Structure};

use crate::capability::Capability;
use crate::error::{PolicyError, Position};
use crate::template::{PatternTemplate, TemplateError};

/// A named, parsed ACL policy.
///
/// Holds the source text as given (the API returns it verbatim, as Vault does) and the path
/// rules, with duplicate `path` blocks already merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    source: String,
    rules: Vec<PathRule>,
}

/// One `path "<pattern>" { … }` rule, after merging every block with the same pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pattern: String,
    template: PatternTemplate,
    capabilities: BTreeSet<Capability>,
}

/// Vault's path-block attributes that keep recognises but does not enforce yet.
const UNSUPPORTED_SETTINGS: &[&str] = &[
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "control_group",
    "subscribe_event_types",
];

/// Vault capabilities keep recognises but does not support.
const UNSUPPORTED_CAPABILITIES: &[&str] = &["subscribe", "recover"];

impl Policy {
    /// Parses Vault-style HCL into a policy called `name`.
    ///
    /// The name is stored, not checked: call [`crate::validate_name`] at the API edge.
    /// Duplicate `path` blocks with the same pattern merge as Vault merges them: their
    /// capabilities are unioned, except that `deny` in either leaves only `deny`.
    ///
    /// # Errors
    ///
    /// A [`PolicyError`] naming the problem and, where the parser recorded it, the line: bad
    /// HCL, an unknown block, attribute or capability, an unsupported Vault setting or
    /// template, a malformed pattern.
    pub fn parse(name: &str, source: &str) -> Result<Policy, PolicyError> {
        if crate::json::is_json(source) {
            let mut rules: Vec<PathRule> = Vec::new();
            for raw in crate::json::rules(source)? {
                merge_into(&mut rules, check_rule(raw)?);
            }
            return Ok(Policy {
                name: name.to_owned(),
                source: source.to_owned(),
                rules,
            });
        }
        let body = hcl::edit::parser::parse_body(source).map_err(|e| PolicyError::Syntax {
            line: e.location().line(),
            column: e.location().column(),
            message: e.to_string(),
        })?;
        let pos = |span: Option<std::ops::Range<usize>>| {
            span.map(|r| Position::from_offset(source, r.start))
        };

        let mut rules: Vec<PathRule> = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) if attr.key.as_str() == "name" => {
                    // Vault accepts a top-level `name` and then uses the API's name instead;
                    // accept it for compatibility, but only as a string.
                    if !matches!(attr.value, Expression::String(_)) {
                        return Err(PolicyError::InvalidValue {
                            path: String::new(),
                            attribute: "name".into(),
                            expected: "a string",
                            at: pos(attr.span()),
                        });
                    }
                }
                Structure::Attribute(attr) => {
                    return Err(PolicyError::UnknownAttribute {
                        path: None,
                        attribute: attr.key.as_str().to_owned(),
                        at: pos(attr.span()),
                    });
                }
                Structure::Block(block) if block.ident.as_str() == "path" => {
                    let rule = parse_path_block(block, &pos)?;
                    merge_into(&mut rules, rule);
                }
                Structure::Block(block) => {
                    return Err(PolicyError::UnknownBlock {
                        identifier: block.ident.as_str().to_owned(),
                        at: pos(block.span()),
                    });
                }
            }
        }
        Ok(Policy {
            name: name.to_owned(),
            source: source.to_owned(),
            rules,
        })
    }

    /// A policy with no rules: grants nothing.
    pub(crate) fn empty(name: &str, source: &str) -> Policy {
        Policy {
            name: name.to_owned(),
            source: source.to_owned(),
            rules: Vec::new(),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HCL exactly as it was given to [`Policy::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rules, one per distinct pattern, in order of first appearance.
    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// True when any rule uses a `{{cert.…}}` template, so its effect depends on the caller.
    pub fn is_templated(&self) -> bool {
        self.rules.iter().any(PathRule::is_templated)
    }
}

impl PathRule {
    /// The pattern as written (templates unrendered), without a leading `/`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The capabilities this rule grants; exactly `{Deny}` when it denies.
    pub fn capabilities(&self) -> &BTreeSet<Capability> {
        &self.capabilities
    }

    /// True when the rule denies everything on its pattern.
    pub fn denies(&self) -> bool {
        self.capabilities.contains(&Capability::Deny)
    }

    /// True when the pattern contains a `{{cert.…}}` template.
    pub fn is_templated(&self) -> bool {
        self.template.is_templated()
    }

    pub(crate) fn template(&self) -> &PatternTemplate {
        &self.template
    }
}

/// Vault's merge of two grants on the same pattern (vault/acl.go `NewACL`): an existing
/// `deny` keeps only `deny`; a new `deny` replaces everything; otherwise union.
pub(crate) fn merge_capabilities(into: &mut BTreeSet<Capability>, new: &BTreeSet<Capability>) {
    if into.contains(&Capability::Deny) {
        return;
    }
    if new.contains(&Capability::Deny) {
        *into = BTreeSet::from([Capability::Deny]);
    } else {
        into.extend(new.iter().copied());
    }
}

fn merge_into(rules: &mut Vec<PathRule>, rule: PathRule) {
    match rules.iter_mut().find(|r| r.pattern == rule.pattern) {
        Some(existing) => merge_capabilities(&mut existing.capabilities, &rule.capabilities),
        None => rules.push(rule),
    }
}

/// One path rule as written, before it is checked: what the HCL and the JSON syntax both
/// come down to, so the two are held to the same rules by [`check_rule`].
pub(crate) struct RawRule {
    /// The pattern as written (a leading `/` not yet stripped).
    pub(crate) pattern: String,
    /// Where the rule starts.
    pub(crate) at: Option<Position>,
    /// Its attributes, in order.
    pub(crate) attrs: Vec<RawAttr>,
}

/// One attribute of a [`RawRule`].
pub(crate) struct RawAttr {
    pub(crate) key: String,
    pub(crate) value: RawValue,
    pub(crate) at: Option<Position>,
}

/// An attribute's value, as far as a policy cares.
pub(crate) enum RawValue {
    /// A quoted string.
    Str(String),
    /// A list of strings, each with where it is.
    StrList(Vec<(String, Option<Position>)>),
    /// Anything else (a number, a list with a non-string, a map).
    Other,
}

fn parse_path_block(
    block: &Block,
    pos: &impl Fn(Option<std::ops::Range<usize>>) -> Option<Position>,
) -> Result<PathRule, PolicyError> {
    let at = pos(block.span());
    let raw = match block.labels.as_slice() {
        [label] => label.as_str(),
        _ => {
            return Err(PolicyError::InvalidPath {
                path: block
                    .labels
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                reason:
                    "a path block takes exactly one quoted pattern: path \"secret/data/*\" { … }"
                        .into(),
                at,
            });
        }
    };
    let shown = raw.strip_prefix('/').unwrap_or(raw);
    let mut attrs = Vec::new();
    for structure in block.body.iter() {
        let attr = match structure {
            Structure::Attribute(attr) => attr,
            Structure::Block(nested) => {
                let identifier = nested.ident.as_str();
                // HCL1-style `allowed_parameters { … }` blocks: same refusal as the attribute.
                return Err(if UNSUPPORTED_SETTINGS.contains(&identifier) {
                    PolicyError::Unsupported {
                        path: shown.to_owned(),
                        setting: identifier.to_owned(),
                        at: pos(nested.span()),
                    }
                } else {
                    PolicyError::UnknownBlock {
                        identifier: identifier.to_owned(),
                        at: pos(nested.span()),
                    }
                });
            }
        };
        // A repeated attribute never gets here: the HCL parser itself refuses it
        // ("expected unique attribute key"), so one block cannot say two things.
        let value = match &attr.value {
            Expression::String(s) => RawValue::Str(s.value().as_str().to_owned()),
            Expression::Array(items) => items
                .iter()
                .map(|item| match item {
                    Expression::String(s) => {
                        Some((s.value().as_str().to_owned(), pos(item.span())))
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map_or(RawValue::Other, RawValue::StrList),
            _ => RawValue::Other,
        };
        attrs.push(RawAttr {
            key: attr.key.as_str().to_owned(),
            value,
            at: pos(attr.span()),
        });
    }
    check_rule(RawRule {
        pattern: raw.to_owned(),
        at,
        attrs,
    })
}

/// Checks one rule and turns it into a [`PathRule`]: the pattern's form, its template, and
/// every attribute (the same rules for HCL and for JSON).
pub(crate) fn check_rule(raw: RawRule) -> Result<PathRule, PolicyError> {
    let at = raw.at;
    // Vault strips one leading '/': policy paths start after the API's `/v1/`.
    let pattern = raw
        .pattern
        .strip_prefix('/')
        .unwrap_or(&raw.pattern)
        .to_owned();
    let invalid = |reason: &str| PolicyError::InvalidPath {
        path: pattern.clone(),
        reason: reason.to_owned(),
        at,
    };
    if pattern.is_empty() {
        return Err(invalid("the pattern is empty"));
    }
    if pattern.contains("+*") {
        // Vault: "invalid use of wildcards ('+*' is forbidden)".
        return Err(invalid(
            "invalid use of wildcards: `+*` is forbidden (write `+/*` or `+` instead)",
        ));
    }
    if pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**") {
        return Err(invalid(
            "`*` is only a glob at the very end of a pattern; use `+` for one path segment",
        ));
    }
    let template = PatternTemplate::parse(&pattern).map_err(|e| match e {
        TemplateError::Unsupported(template) => PolicyError::UnsupportedTemplate {
            path: pattern.clone(),
            template,
            at,
        },
        TemplateError::Malformed(what) => invalid(what),
    })?;

    let mut capabilities = BTreeSet::new();
    for attr in raw.attrs {
        let attr_at = attr.at;
        match attr.key.as_str() {
            "capabilities" => parse_capabilities(&attr, &pattern, &mut capabilities)?,
            "policy" => {
                let value = string_value(&attr, &pattern)?;
                // Vault's mapping of the pre-0.5 shorthand (vault/policy.go `parsePaths`):
                // read = read+list; write = create+read+update+delete+list; sudo = write+sudo;
                // deny = deny. Added to any `capabilities` in the same block.
                use Capability::*;
                let implied: &[Capability] = match value {
                    "deny" => &[Deny],
                    "read" => &[Read, List],
                    "write" => &[Create, Read, Update, Delete, List],
                    "sudo" => &[Create, Read, Update, Delete, List, Sudo],
                    other => {
                        return Err(PolicyError::InvalidShorthand {
                            path: pattern.clone(),
                            value: other.to_owned(),
                            at: attr_at,
                        });
                    }
                };
                capabilities.extend(implied.iter().copied());
            }
            // Vault accepts a free-text comment per path; it grants nothing.
            "comment" => {
                string_value(&attr, &pattern)?;
            }
            setting if UNSUPPORTED_SETTINGS.contains(&setting) => {
                return Err(PolicyError::Unsupported {
                    path: pattern.clone(),
                    setting: setting.to_owned(),
                    at: attr_at,
                });
            }
            other => {
                return Err(PolicyError::UnknownAttribute {
                    path: Some(pattern.clone()),
                    attribute: other.to_owned(),
                    at: attr_at,
                });
            }
        }
    }
    // Vault: "If it's deny, don't include any other capability".
    if capabilities.contains(&Capability::Deny) {
        capabilities = BTreeSet::from([Capability::Deny]);
    }
    Ok(PathRule {
        pattern,
        template,
        capabilities,
    })
}

fn parse_capabilities(
    attr: &RawAttr,
    pattern: &str,
    into: &mut BTreeSet<Capability>,
) -> Result<(), PolicyError> {
    let RawValue::StrList(items) = &attr.value else {
        return Err(PolicyError::InvalidValue {
            path: pattern.to_owned(),
            attribute: "capabilities".into(),
            expected: "a list of strings, such as [\"read\", \"list\"]",
            at: attr.at,
        });
    };
    for (name, at) in items {
        let at = *at;
        match Capability::from_name(name) {
            Some(cap) => {
                into.insert(cap);
            }
            None if UNSUPPORTED_CAPABILITIES.contains(&name.as_str()) => {
                return Err(PolicyError::Unsupported {
                    path: pattern.to_owned(),
                    setting: format!("{name} capability"),
                    at,
                });
            }
            None => {
                return Err(PolicyError::UnknownCapability {
                    path: pattern.to_owned(),
                    capability: name.clone(),
                    at,
                });
            }
        }
    }
    Ok(())
}

fn string_value<'a>(attr: &'a RawAttr, pattern: &str) -> Result<&'a str, PolicyError> {
    match &attr.value {
        RawValue::Str(s) => Ok(s),
        _ => Err(PolicyError::InvalidValue {
            path: pattern.to_owned(),
            attribute: attr.key.clone(),
            expected: "a quoted string",
            at: attr.at,
        }),
    }
}
