//! Vault's path globs and its priority order between matching patterns.
//!
//! Three kinds of pattern, classified exactly as Vault's `parsePaths` does (vault/policy.go):
//!
//! - **segment wildcard** if the pattern is `+`, starts with `+/` or contains `/+`. A segment
//!   that is exactly `+` matches any one path segment; a segment such as `+bar` is literal
//!   text (Vault only treats a whole `+` segment as a wildcard), but the pattern is still
//!   ranked as a wildcard pattern, as in Vault. A trailing `*` makes its last segment a
//!   prefix.
//! - **prefix** if it ends in `*` (and is not a segment wildcard): matches every path that
//!   starts with the text before the `*`. The `*` is only special at the very end; the parser
//!   refuses it anywhere else.
//! - **exact** otherwise.
//!
//! Choosing between several matching patterns follows Vault's `ACL.AllowOperation` and
//! `CheckAllowedFromNonExactPaths` (vault/acl.go), documented under "Priority matching" at
//! <https://developer.hashicorp.com/vault/docs/concepts/policies#priority-matching>:
//!
//! 1. an exact pattern wins outright;
//! 2. otherwise the longest matching prefix pattern and every matching segment-wildcard
//!    pattern are ranked, and the highest wins. For two patterns P1 and P2:
//!    1. if the first wildcard (`+`) or glob (`*`) occurs earlier in P1, P1 is lower priority;
//!    2. if P1 ends in `*` and P2 doesn't, P1 is lower priority;
//!    3. if P1 has more `+` (wildcard) segments, P1 is lower priority;
//!    4. if P1 is shorter (without its trailing `*`), it is lower priority;
//!    5. if P1 is smaller lexicographically (bytewise), it is lower priority.
//!
//! Only the winning pattern's capabilities count; a less specific pattern never adds to or
//! takes away from it. This is Vault's "most specific match wins".

use std::cmp::Ordering;

/// A rendered, classified path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Matches exactly this path.
    Exact(String),
    /// Matches every path starting with this text (the pattern minus its `*`).
    Prefix(String),
    /// Segment-wise match, see [`Glob::segment_match`].
    Segment(SegmentGlob),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentGlob {
    /// The pattern without its trailing `*`.
    body: String,
    /// Whether it ended in `*`.
    is_prefix: bool,
    /// Byte index of the first `+` in the pattern (Vault: `strings.Index(fullWCPath, "+")`).
    first_wildcard: usize,
    /// How many segments are exactly `+`.
    wildcards: usize,
}

/// What the priority order compares; Vault's `wcPathDescr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rank<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    body: &'a str,
}

impl Ord for Rank<'_> {
    /// `Greater` means higher priority. Each step cites Vault's rule (see the module docs).
    fn cmp(&self, other: &Self) -> Ordering {
        // 1. The first wildcard or glob occurring later wins.
        self.first_wildcard
            .cmp(&other.first_wildcard)
            // 2. Ending in `*` loses against not ending in `*`.
            .then_with(|| other.is_prefix.cmp(&self.is_prefix))
            // 3. Fewer `+` segments win.
            .then_with(|| other.wildcards.cmp(&self.wildcards))
            // 4. Longer wins.
            .then_with(|| self.body.len().cmp(&other.body.len()))
            // 5. Lexicographically larger wins (Go's bytewise string order).
            .then_with(|| self.body.as_bytes().cmp(other.body.as_bytes()))
    }
}

impl PartialOrd for Rank<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Glob {
    /// Classifies a rendered pattern (leading `/` already stripped) as Vault does.
    pub(crate) fn new(pattern: &str) -> Glob {
        let segment_wildcards =
            pattern == "+" || pattern.contains("/+") || pattern.starts_with("+/");
        let kind = if segment_wildcards {
            let (body, is_prefix) = match pattern.strip_suffix('*') {
                Some(body) => (body, true),
                None => (pattern, false),
            };
            Kind::Segment(SegmentGlob {
                body: body.to_owned(),
                is_prefix,
                first_wildcard: pattern.find('+').unwrap_or(0),
                wildcards: body.split('/').filter(|s| *s == "+").count(),
            })
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            Kind::Prefix(prefix.to_owned())
        } else {
            Kind::Exact(pattern.to_owned())
        };
        Glob { kind }
    }

    /// True for an exact (glob-free) pattern matching `path`.
    pub(crate) fn is_exact_match(&self, path: &str) -> bool {
        matches!(&self.kind, Kind::Exact(p) if p == path)
    }

    /// If this is a prefix or segment-wildcard pattern matching `path`, its rank.
    pub(crate) fn non_exact_rank(&self, path: &str) -> Option<Rank<'_>> {
        match &self.kind {
            Kind::Exact(_) => None,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()).then_some(Rank {
                // Vault: `firstWCOrGlob: len(prefix)`, i.e. the position of the `*`.
                first_wildcard: prefix.len(),
                is_prefix: true,
                wildcards: 0,
                body: prefix,
            }),
            Kind::Segment(seg) => seg.matches(path).then_some(Rank {
                first_wildcard: seg.first_wildcard,
                is_prefix: seg.is_prefix,
                wildcards: seg.wildcards,
                body: &seg.body,
            }),
        }
    }

    /// True for a prefix (non-wildcard) pattern. Vault only ranks the *longest* matching
    /// prefix pattern; a longer one always outranks a shorter one under rule 1, so ranking
    /// them all picks the same winner.
    #[cfg(test)]
    pub(crate) fn is_prefix(&self) -> bool {
        matches!(self.kind, Kind::Prefix(_))
    }
}

impl SegmentGlob {
    /// Vault's segment loop in `CheckAllowedFromNonExactPaths` (the non-`bareMount` case).
    fn matches(&self, path: &str) -> bool {
        let pattern_parts: Vec<&str> = self.body.split('/').collect();
        let path_parts: Vec<&str> = path.split('/').collect();
        // A shorter path can never match; without a trailing `*` the segment counts must be
        // equal.
        if path_parts.len() < pattern_parts.len()
            || (!self.is_prefix && path_parts.len() != pattern_parts.len())
        {
            return false;
        }
        let last = pattern_parts.len() - 1;
        pattern_parts
            .iter()
            .zip(&path_parts)
            .enumerate()
            .all(|(i, (pat, seg))| {
                *pat == "+" || pat == seg || (self.is_prefix && i == last && seg.starts_with(pat))
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let g = Glob::new(pattern);
        g.is_exact_match(path) || g.non_exact_rank(path).is_some()
    }

    #[test]
    fn classification_follows_vault() {
        assert!(matches!(Glob::new("a/b").kind, Kind::Exact(_)));
        assert!(Glob::new("a/b*").is_prefix());
        assert!(Glob::new("*").is_prefix());
        for wc in ["+", "+/a", "a/+", "a/+/b*", "a/+b"] {
            assert!(matches!(Glob::new(wc).kind, Kind::Segment(_)), "{wc}");
        }
        // `a+` is not a wildcard pattern at all: no `/+`, no leading `+/`.
        assert!(matches!(Glob::new("a+").kind, Kind::Exact(_)));
    }

    #[test]
    fn exact_prefix_and_segment_matching() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b", "a/bc"));
        assert!(matches("a/b*", "a/bc/d"));
        assert!(matches("a/b*", "a/b"));
        assert!(!matches("a/b/*", "a/b"));
        assert!(matches("*", "anything/at/all"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(!matches("a/+/c", "a/x/y/c"));
        assert!(!matches("a/+/c", "a/c"));
        assert!(matches("a/+/c*", "a/x/cd/e"));
        assert!(matches("a/+/*", "a/x/y/z"));
        assert!(!matches("a/+/*", "a/x"));
        assert!(matches("+", "top"));
        assert!(!matches("+", "two/segments"));
        // `+b` is literal text inside a wildcard-ranked pattern.
        assert!(matches("a/+b", "a/+b"));
        assert!(!matches("a/+b", "a/xb"));
    }

    fn rank_of(pattern: &str, path: &str) -> Rank<'static> {
        let g = Box::leak(Box::new(Glob::new(pattern)));
        g.non_exact_rank(path)
            .unwrap_or_else(|| panic!("{pattern} does not match {path}"))
    }

    /// The examples from Vault's own comment in `CheckAllowedFromNonExactPaths`, each as
    /// (winner, loser, path).
    #[test]
    fn vault_priority_examples() {
        let cases = [
            // rule 1: first wildcard position
            ("foo/a*", "foo/+", "foo/abc"),
            ("foo/bar/+/baz", "foo/+/bar/baz", "foo/bar/bar/baz"),
            // rule 2: ending in * loses
            ("foo/+/bar", "foo/+/ba*", "foo/x/bar"),
            ("foo/+", "foo/*", "foo/x"),
            // rule 3: fewer + segments
            ("foo/+/bar/+", "foo/+/+/+", "foo/a/bar/b"),
            // rule 4: longer
            ("foo/+/bar/ba*", "foo/+/bar/b*", "foo/x/bar/baz"),
            // rule 5: lexicographically larger ("should never really come up" in Vault's
            // words, but it does for literal `+c` segments in a wildcard-ranked pattern)
            ("a/+c/+", "a/+/+c", "a/+c/+c"),
        ];
        for (winner, loser, path) in cases {
            assert!(
                rank_of(winner, path) > rank_of(loser, path),
                "{winner} should outrank {loser} for {path}"
            );
        }
    }

    #[test]
    fn every_rule_is_consulted_in_order() {
        let base = Rank {
            first_wildcard: 4,
            is_prefix: false,
            wildcards: 1,
            body: "abcdef",
        };
        // Rule 1 dominates everything after it.
        let later = Rank {
            first_wildcard: 5,
            is_prefix: true,
            wildcards: 9,
            body: "a",
        };
        assert!(later > base);
        // Rule 2 dominates rules 3–5.
        let prefix = Rank {
            is_prefix: true,
            wildcards: 0,
            body: "zzzzzzzzzz",
            ..base
        };
        assert!(prefix < base);
        // Rule 3 dominates rules 4–5.
        let more_wc = Rank {
            wildcards: 2,
            body: "zzzzzzzzzz",
            ..base
        };
        assert!(more_wc < base);
        // Rule 4 dominates rule 5.
        let shorter = Rank {
            body: "zzzzz",
            ..base
        };
        assert!(shorter < base);
        // Rule 5.
        let larger = Rank {
            body: "abcdeg",
            ..base
        };
        assert!(larger > base);
        assert_eq!(base.cmp(&base), Ordering::Equal);
    }
}
