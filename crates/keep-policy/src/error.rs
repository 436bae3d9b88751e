//! The one error type of this crate.
//!
//! Every variant says what is wrong, where (the `path "…"` block and, when the HCL parser
//! recorded it, the line and column) and, where there is one, what to write instead. The
//! messages are safe to return to API clients as-is: a policy holds no secrets.

use std::fmt;

/// A 1-based line and column in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Position {
    /// Converts a byte offset into `src` to a line and column.
    pub(crate) fn from_offset(src: &str, offset: usize) -> Position {
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Renders `"line 3, column 5: "`, or nothing when the position is unknown.
fn located(position: &Option<Position>) -> String {
    position.map(|p| format!("{p}: ")).unwrap_or_default()
}

/// Why a policy (or a policy name) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not HCL at all. `message` is the HCL parser's own report, which already
    /// shows the line, a caret under the column, and what it expected.
    #[error("policy is not valid HCL (line {line}, column {column}):\n{message}")]
    Syntax {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// The HCL parser's multi-line report.
        message: String,
    },

    /// The text starts like JSON (Vault's JSON policy form) but is not a policy in that form.
    #[error("policy is not valid JSON (line {line}, column {column}): {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, and the form that is expected.
        message: String,
    },

    /// A block other than `path "…" { … }` (at the top level, or nested in a path block).
    #[error(
        "{}unknown block `{identifier}`: a policy holds only `path \"<pattern>\" {{ capabilities = [...] }}` blocks",
        located(.at)
    )]
    UnknownBlock {
        /// The block's identifier as written.
        identifier: String,
        /// Where the block starts, when known.
        at: Option<Position>,
    },

    /// An attribute keep (and Vault) does not know. `path` is `None` at the top level.
    #[error(
        "{}{}unknown attribute `{attribute}` (a path block takes `capabilities`, `policy` and `comment`)",
        located(.at),
        path_prefix(.path)
    )]
    UnknownAttribute {
        /// The path block it appeared in, or `None` at the top level.
        path: Option<String>,
        /// The attribute's name.
        attribute: String,
        /// Where the attribute is, when known.
        at: Option<Position>,
    },

    /// A capability name that neither Vault nor keep knows (a typo, most often).
    #[error(
        "{}path \"{path}\": unknown capability \"{capability}\" (valid: create, read, update, patch, delete, list, sudo, deny)",
        located(.at)
    )]
    UnknownCapability {
        /// The path block.
        path: String,
        /// The capability as written.
        capability: String,
        /// Where it is, when known.
        at: Option<Position>,
    },

    /// A Vault setting that keep does not enforce yet. Refused rather than ignored: these
    /// settings (parameter constraints, wrapping TTLs, MFA, control groups, event
    /// subscriptions, the `subscribe`/`recover` capabilities) narrow or shape access, and
    /// dropping them silently would grant more than the policy's author intended.
    #[error(
        "{}path \"{path}\": `{setting}` is a Vault policy setting that keep does not support yet; \
         remove it (and grant access with `capabilities` only) or keep this policy in Vault",
        located(.at)
    )]
    Unsupported {
        /// The path block.
        path: String,
        /// The unsupported attribute, block or capability.
        setting: String,
        /// Where it is, when known.
        at: Option<Position>,
    },

    /// `policy = "…"` with a value other than Vault's old `read`, `write`, `deny`, `sudo`.
    #[error(
        "{}path \"{path}\": invalid policy \"{value}\" (the old shorthand takes \"read\", \"write\", \"deny\" or \"sudo\"; prefer `capabilities = [...]`)",
        located(.at)
    )]
    InvalidShorthand {
        /// The path block.
        path: String,
        /// The value as written.
        value: String,
        /// Where it is, when known.
        at: Option<Position>,
    },

    /// An attribute with the wrong kind of value (`capabilities = "read"` instead of a list …).
    #[error("{}path \"{path}\": `{attribute}` must be {expected}", located(.at))]
    InvalidValue {
        /// The path block, or `""` at the top level.
        path: String,
        /// The attribute.
        attribute: String,
        /// What the attribute takes, in words.
        expected: &'static str,
        /// Where the value is, when known.
        at: Option<Position>,
    },

    /// A path pattern keep cannot use: empty, `*` anywhere but at the end, `+*`, HCL
    /// interpolation, or a block with no or several labels.
    #[error("{}path \"{path}\": {reason}", located(.at))]
    InvalidPath {
        /// The pattern as written (empty when the block had no label).
        path: String,
        /// What is wrong with it.
        reason: String,
        /// Where the block is, when known.
        at: Option<Position>,
    },

    /// A `{{…}}` template that keep does not render (for example Vault's `{{identity.…}}`
    /// names, which need Vault's identity store). Refused at parse time so the policy cannot
    /// silently grant nothing (or, worse, be read as a literal path).
    #[error(
        "{}path \"{path}\": unsupported template \"{template}\" (keep renders {{{{cert.common_name}}}}, {{{{cert.dns_san}}}}, {{{{cert.uri_san}}}} and {{{{cert.serial}}}})",
        located(.at)
    )]
    UnsupportedTemplate {
        /// The path block.
        path: String,
        /// The template as written, braces included.
        template: String,
        /// Where the block is, when known.
        at: Option<Position>,
    },

    /// A policy name the API must refuse (see [`crate::validate_name`]).
    #[error("invalid policy name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

fn path_prefix(path: &Option<String>) -> String {
    path.as_ref()
        .map(|p| format!("path \"{p}\": "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let src = "ab\ncdé\nf";
        assert_eq!(
            Position::from_offset(src, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::from_offset(src, 4),
            Position { line: 2, column: 2 }
        );
        // Columns count characters, not bytes: 'é' is two bytes.
        assert_eq!(
            Position::from_offset(src, 8),
            Position { line: 3, column: 1 }
        );
    }
}
