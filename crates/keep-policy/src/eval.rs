//! Evaluating a token's policies against one request: a pure function, deny by default.
//!
//! The model is Vault's ACL (vault/acl.go `NewACL` and `AllowOperation`):
//!
//! 1. Every rule of every attached policy is rendered for the caller (templates, see
//!    [`crate::TemplateContext`]) and the rules are merged **by pattern across all policies**:
//!    capabilities on the same pattern are unioned, and `deny` on that pattern in any policy
//!    leaves only `deny`.
//! 2. The single most specific pattern matching the path is chosen (exact, then Vault's
//!    priority order; see the `glob` module). Only that rule counts.
//! 3. If it carries `deny`, the request is denied; if it grants the capability, it is allowed;
//!    otherwise, and when nothing matches, it is denied.
//!
//! Consequence worth knowing (it is Vault's too): a more specific pattern in *another* policy
//! replaces, rather than adds to, a broader grant. With `secret/*` read in one policy and
//! `secret/data/x` list in another, reading `secret/data/x` is denied. `deny` "wins" on the
//! pattern it is written on and wherever that pattern is the most specific match.
//!
//! keep differs from Vault in two fail-closed ways:
//!
//! - a path containing a `..` segment is always denied, whatever the policies say, so no
//!   layer below can normalise it into somewhere else;
//! - a templated rule that carries `deny` but cannot be rendered for this caller (say, no URI
//!   SAN) denies every path it could have matched for *some* caller. Vault silently skips such
//!   a rule, which would turn a deny into an allow.
//!
//! A templated rule that only grants and cannot be rendered is dropped, as in Vault: it grants
//! nothing, and a denial's reason mentions it when it could have matched the path.

use std::collections::{BTreeMap, BTreeSet};

use crate::capability::Capability;
use crate::glob::{Glob, Rank};
use crate::parse::{PathRule, Policy, merge_capabilities};
use crate::template::{DropReason, TemplateContext};

/// The outcome of [`evaluate`]. Both arms carry text for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// The request may proceed.
    Allow {
        /// Which policy (or policies) and which rendered pattern granted it, e.g.
        /// `policy "agents" path "secret/data/agents/agent-a/*"`.
        matched: String,
    },
    /// The request is refused.
    Deny {
        /// Why, in words fit for the audit log and a 403 body: no matching rule, an explicit
        /// `deny`, a rule lacking the capability, or a dropped templated rule.
        reason: String,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Decides whether a caller holding `policies` may use `cap` on `path`.
///
/// `path` is the request path after `/v1/` (a leading `/` is ignored). `cap` is the
/// capability the operation needs; [`Capability::List`] also applies Vault's list fallbacks
/// (a rule on `foo` covers listing `foo/`). Asking for [`Capability::Deny`] is always denied:
/// it is not an operation. An empty `policies` denies everything.
pub fn evaluate(
    policies: &[&Policy],
    ctx: &TemplateContext<'_>,
    path: &str,
    cap: Capability,
) -> Decision {
    let path = path.trim_start_matches('/');
    if cap == Capability::Deny {
        return Decision::Deny {
            reason: "`deny` is not an operation and cannot be granted".into(),
        };
    }
    if let Some(reason) = traversal(path) {
        return Decision::Deny { reason };
    }
    let acl = Acl::new(policies, ctx);
    let is_list = cap == Capability::List;
    if let Some(reason) = acl.unrenderable_deny(path, is_list) {
        return Decision::Deny { reason };
    }
    let Some(rule) = acl.lookup(path, is_list) else {
        let mut reason = format!("no policy grants {cap} on {path}");
        if policies.is_empty() {
            reason.push_str(" (the token has no policies)");
        }
        reason.push_str(&acl.dropped_notes(path, is_list));
        return Decision::Deny { reason };
    };
    if rule.capabilities.contains(&Capability::Deny) {
        return Decision::Deny {
            reason: format!(
                "{} denies {path} (`deny` overrides every other capability)",
                rule.describe(|c| c.contains(&Capability::Deny))
            ),
        };
    }
    if rule.capabilities.contains(&cap) {
        return Decision::Allow {
            matched: rule.describe(|c| c.contains(&cap)),
        };
    }
    Decision::Deny {
        reason: format!(
            "the most specific rule for {path}, {}, grants [{}] but not {cap}{}",
            rule.describe(|_| true),
            join(&rule.capabilities),
            acl.dropped_notes(path, is_list),
        ),
    }
}

/// The capabilities `policies` give the caller on `path`, as Vault's
/// `sys/capabilities-self` reports them: the winning rule's capabilities, or exactly
/// `{Deny}` when the path is denied or nothing matches (never an empty set).
///
/// Uses the list lookup, as Vault does, so a rule on `foo` also answers for `foo/`.
pub fn capabilities(
    policies: &[&Policy],
    ctx: &TemplateContext<'_>,
    path: &str,
) -> BTreeSet<Capability> {
    let path = path.trim_start_matches('/');
    let deny = || BTreeSet::from([Capability::Deny]);
    if traversal(path).is_some() {
        return deny();
    }
    let acl = Acl::new(policies, ctx);
    if acl.unrenderable_deny(path, true).is_some() {
        return deny();
    }
    match acl.lookup(path, true) {
        Some(rule) if !rule.capabilities.is_empty() => rule.capabilities.clone(),
        _ => deny(),
    }
}

/// Refuses paths with a `..` segment (see the module docs).
fn traversal(path: &str) -> Option<String> {
    path.split('/')
        .any(|s| s == "..")
        .then(|| format!("path {path:?} contains a `..` segment"))
}

/// Who contributed to a merged rule.
struct Source<'p> {
    policy: &'p str,
    rule: &'p PathRule,
}

/// All rules on one rendered pattern, merged across policies.
struct Merged<'p> {
    pattern: String,
    glob: Glob,
    capabilities: BTreeSet<Capability>,
    sources: Vec<Source<'p>>,
}

impl Merged<'_> {
    /// `policy "a" path "p"`, naming only the policies whose own grant satisfies `relevant`
    /// (for an Allow, the ones that granted the capability), plus the template it came from.
    fn describe(&self, relevant: impl Fn(&BTreeSet<Capability>) -> bool) -> String {
        let mut names: Vec<&str> = Vec::new();
        for source in &self.sources {
            if relevant(source.rule.capabilities()) && !names.contains(&source.policy) {
                names.push(source.policy);
            }
        }
        if names.is_empty() {
            for source in &self.sources {
                if !names.contains(&source.policy) {
                    names.push(source.policy);
                }
            }
        }
        let who = match names.as_slice() {
            [one] => format!("policy {one:?}"),
            many => format!(
                "policies {}",
                many.iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut out = format!("{who} path {:?}", self.pattern);
        let templates: BTreeSet<&str> = self
            .sources
            .iter()
            .filter(|s| s.rule.is_templated())
            .map(|s| s.rule.pattern())
            .collect();
        for t in templates {
            out.push_str(&format!(" (rendered from {t:?})"));
        }
        out
    }
}

/// A templated rule that could not be rendered for this caller.
struct Dropped<'p> {
    policy: &'p str,
    rule: &'p PathRule,
    why: DropReason,
}

/// The caller's effective ACL: Vault's `ACL` struct, built per request.
pub(crate) struct Acl<'p> {
    rules: BTreeMap<String, Merged<'p>>,
    dropped: Vec<Dropped<'p>>,
}

impl<'p> Acl<'p> {
    pub(crate) fn new(policies: &[&'p Policy], ctx: &TemplateContext<'_>) -> Acl<'p> {
        let mut rules: BTreeMap<String, Merged<'p>> = BTreeMap::new();
        let mut dropped = Vec::new();
        for policy in policies {
            for rule in policy.rules() {
                let pattern = match rule.template().render(ctx) {
                    Ok(pattern) => pattern,
                    Err(why) => {
                        dropped.push(Dropped {
                            policy: policy.name(),
                            rule,
                            why,
                        });
                        continue;
                    }
                };
                let source = Source {
                    policy: policy.name(),
                    rule,
                };
                match rules.get_mut(&pattern) {
                    Some(merged) => {
                        merge_capabilities(&mut merged.capabilities, rule.capabilities());
                        merged.sources.push(source);
                    }
                    None => {
                        rules.insert(
                            pattern.clone(),
                            Merged {
                                glob: Glob::new(&pattern),
                                pattern,
                                capabilities: rule.capabilities().clone(),
                                sources: vec![source],
                            },
                        );
                    }
                }
            }
        }
        Acl { rules, dropped }
    }

    /// Vault's lookup order in `AllowOperation`: an exact rule; for list, an exact rule on
    /// the path without its trailing `/`; for list on `…/`, the non-exact rules for the
    /// trimmed path; then the non-exact rules for the path itself.
    fn lookup(&self, path: &str, is_list: bool) -> Option<&Merged<'p>> {
        let trimmed = path.strip_suffix('/');
        self.exact(path)
            .or_else(|| trimmed.filter(|_| is_list).and_then(|t| self.exact(t)))
            .or_else(|| trimmed.filter(|_| is_list).and_then(|t| self.non_exact(t)))
            .or_else(|| self.non_exact(path))
    }

    fn exact(&self, path: &str) -> Option<&Merged<'p>> {
        // Exact patterns are keyed by their own text, so this is a map lookup.
        self.rules.get(path).filter(|m| m.glob.is_exact_match(path))
    }

    /// The highest-ranked prefix or segment-wildcard rule matching `path`.
    fn non_exact(&self, path: &str) -> Option<&Merged<'p>> {
        self.rules
            .values()
            .filter_map(|m| m.glob.non_exact_rank(path).map(|rank| (rank, m)))
            .max_by(|(a, _), (b, _)| Rank::cmp(a, b))
            .map(|(_, m)| m)
    }

    /// The pattern string of the rule that wins for `path` (tests use it to state Vault's
    /// precedence as a property).
    #[cfg(test)]
    pub(crate) fn winner(&self, path: &str, is_list: bool) -> Option<&str> {
        self.lookup(path, is_list).map(|m| m.pattern.as_str())
    }

    /// If an unrenderable templated `deny` rule could match `path`, the denial's reason.
    fn unrenderable_deny(&self, path: &str, is_list: bool) -> Option<String> {
        self.dropped
            .iter()
            .find(|d| d.rule.denies() && could_match(d, path, is_list))
            .map(|d| {
                format!(
                    "policy {:?} path {:?} denies paths like {path} but could not be rendered: {}; \
                     failing closed",
                    d.policy,
                    d.rule.pattern(),
                    d.why
                )
            })
    }

    /// "; templated rule … was dropped: …" for every dropped rule that could match `path`.
    fn dropped_notes(&self, path: &str, is_list: bool) -> String {
        self.dropped
            .iter()
            .filter(|d| could_match(d, path, is_list))
            .map(|d| {
                format!(
                    "; templated rule policy {:?} path {:?} was dropped because {}",
                    d.policy,
                    d.rule.pattern(),
                    d.why
                )
            })
            .collect()
    }
}

fn could_match(d: &Dropped<'_>, path: &str, is_list: bool) -> bool {
    d.rule.template().could_match(path)
        || (is_list
            && path
                .strip_suffix('/')
                .is_some_and(|t| d.rule.template().could_match(t)))
}

fn join(caps: &BTreeSet<Capability>) -> String {
    caps.iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! A small property-style check over seeded random paths and policies.

    use super::*;

    /// xorshift64*: deterministic, so a failure reproduces from the seed alone.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const SEGMENTS: &[&str] = &["secret", "data", "metadata", "agents", "a", "ab", "b", ""];

    fn random_path(rng: &mut Rng) -> String {
        let n = 1 + rng.below(5);
        (0..n)
            .map(|_| rng.pick(SEGMENTS))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn random_pattern(rng: &mut Rng) -> String {
        let n = 1 + rng.below(4);
        let mut parts: Vec<String> = (0..n)
            .map(|_| match rng.below(4) {
                0 => "+".to_owned(),
                _ => rng.pick(&SEGMENTS[..7]).to_owned(),
            })
            .collect();
        if rng.below(2) == 0 {
            // A trailing glob, on a whole segment or a partial one.
            let last = parts.pop().unwrap_or_default();
            parts.push(if last == "+" {
                "+/*".to_owned()
            } else {
                format!("{}*", &last[..last.len().min(1)])
            });
        }
        parts.join("/")
    }

    /// A policy of 1–4 rules; each pattern is fresh or, half the time when `reuse` has
    /// some, one of `reuse` (so policies overlap on patterns, where merging happens).
    fn random_policy(rng: &mut Rng, name: &str, allow_deny: bool, reuse: &[&str]) -> Policy {
        let mut src = String::new();
        for _ in 0..1 + rng.below(4) {
            let mut caps: Vec<&str> = Capability::ALL[..7]
                .iter()
                .filter(|_| rng.below(2) == 0)
                .map(|c| c.as_str())
                .collect();
            if allow_deny && rng.below(5) == 0 {
                caps.push("deny");
            }
            let caps = caps
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let pattern = if !reuse.is_empty() && rng.below(2) == 0 {
                rng.pick(reuse).to_owned()
            } else {
                random_pattern(rng)
            };
            src.push_str(&format!(
                "path {pattern:?} {{\n  capabilities = [{caps}]\n}}\n"
            ));
        }
        Policy::parse(name, &src).unwrap_or_else(|e| panic!("generated policy:\n{src}\n{e}"))
    }

    #[test]
    fn empty_set_always_denies() {
        let mut rng = Rng(0x6b65_6570_2d70_6f6c);
        let ctx = TemplateContext::default();
        for _ in 0..2_000 {
            let path = random_path(&mut rng);
            for cap in Capability::ALL {
                assert!(
                    !evaluate(&[], &ctx, &path, cap).is_allowed(),
                    "{cap} on {path}"
                );
            }
            assert_eq!(
                capabilities(&[], &ctx, &path),
                BTreeSet::from([Capability::Deny])
            );
        }
    }

    /// Adding a policy never removes an Allow unless it adds `deny` to the winning pattern or
    /// brings a new, more specific winning pattern (Vault's "most specific match wins" across
    /// policies; see the module docs). In particular, a policy that only repeats patterns
    /// already present and holds no `deny` never removes an Allow.
    #[test]
    fn adding_a_policy_never_removes_an_allow_unless_it_denies_or_outranks() {
        let mut rng = Rng(0x5eed_0fc0_ffee);
        let ctx = TemplateContext::default();
        let mut removed_by_deny = 0;
        let mut removed_by_outranking = 0;
        for round in 0..400 {
            let base = random_policy(&mut rng, "base", true, &[]);
            let added_may_deny = rng.below(2) == 0;
            let reuse: Vec<&str> = base.rules().iter().map(|r| r.pattern()).collect();
            let added = random_policy(&mut rng, "added", added_may_deny, &reuse);
            let before = [&base];
            let after = [&base, &added];
            for _ in 0..20 {
                let path = random_path(&mut rng);
                for cap in &Capability::ALL[..7] {
                    let was = evaluate(&before, &ctx, &path, *cap).is_allowed();
                    let is = evaluate(&after, &ctx, &path, *cap).is_allowed();
                    if !was || is {
                        continue;
                    }
                    let is_list = *cap == Capability::List;
                    let old = Acl::new(&before, &ctx);
                    let new = Acl::new(&after, &ctx);
                    // `evaluate` ignores leading '/'s; look the winner up the same way.
                    let bare = path.trim_start_matches('/');
                    let old_winner = old.winner(bare, is_list).map(str::to_owned);
                    let new_winner = new.winner(bare, is_list).map(str::to_owned);
                    let added_patterns: Vec<&str> =
                        added.rules().iter().map(|r| r.pattern()).collect();
                    let new_winner = new_winner.expect("an Allow had a winner; it cannot vanish");
                    if Some(&new_winner) == old_winner.as_ref() {
                        // Same winner: only a `deny` from the added policy can have flipped it.
                        assert!(
                            added
                                .rules()
                                .iter()
                                .any(|r| r.pattern() == new_winner && r.denies()),
                            "round {round}: {cap} on {path} lost without a deny\n{}\n{}",
                            base.source(),
                            added.source()
                        );
                        removed_by_deny += 1;
                    } else {
                        // New winner: it must be one of the added policy's patterns.
                        assert!(
                            added_patterns.contains(&new_winner.as_str()),
                            "round {round}: winner changed to a pattern the added policy lacks"
                        );
                        removed_by_outranking += 1;
                    }
                }
            }
        }
        // The generator must actually exercise both ways an Allow can be lost.
        assert!(
            removed_by_deny > 0 && removed_by_outranking > 0,
            "by deny {removed_by_deny}, by outranking {removed_by_outranking}"
        );
    }

    #[test]
    fn repeating_patterns_without_deny_never_removes_an_allow() {
        let mut rng = Rng(42);
        let ctx = TemplateContext::default();
        for _ in 0..300 {
            let base = random_policy(&mut rng, "base", true, &[]);
            // Same patterns, random non-deny capabilities.
            let src: String = base
                .rules()
                .iter()
                .map(|r| {
                    let caps: Vec<String> = Capability::ALL[..7]
                        .iter()
                        .filter(|_| rng.below(2) == 0)
                        .map(|c| format!("{:?}", c.as_str()))
                        .collect();
                    format!(
                        "path {:?} {{\n  capabilities = [{}]\n}}\n",
                        r.pattern(),
                        caps.join(", ")
                    )
                })
                .collect();
            let added = Policy::parse("added", &src).unwrap();
            for _ in 0..20 {
                let path = random_path(&mut rng);
                for cap in &Capability::ALL[..7] {
                    if evaluate(&[&base], &ctx, &path, *cap).is_allowed() {
                        assert!(
                            evaluate(&[&base, &added], &ctx, &path, *cap).is_allowed(),
                            "{cap} on {path}"
                        );
                    }
                }
            }
        }
    }
}
