//! Evaluation through the public API: for every rule kind, a paired allow and deny test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use keep_policy::{Capability, Decision, Policy, TemplateContext, capabilities, evaluate};

use Capability::*;

fn policy(name: &str, hcl: &str) -> Policy {
    Policy::parse(name, hcl).unwrap_or_else(|e| panic!("policy {name} should parse: {e}"))
}

fn no_cert() -> TemplateContext<'static> {
    TemplateContext::default()
}

fn allowed(policies: &[&Policy], path: &str, cap: Capability) -> bool {
    evaluate(policies, &no_cert(), path, cap).is_allowed()
}

fn reason(decision: Decision) -> String {
    match decision {
        Decision::Deny { reason } => reason,
        Decision::Allow { matched } => panic!("expected a denial, got Allow by {matched}"),
    }
}

fn caps(list: &[Capability]) -> BTreeSet<Capability> {
    list.iter().copied().collect()
}

// ---------------------------------------------------------------- exact paths

#[test]
fn exact_path_allows_that_path() {
    let p = policy("p", r#"path "secret/data/x" { capabilities = ["read"] }"#);
    assert!(allowed(&[&p], "secret/data/x", Read));
    // A leading '/' on the request path is ignored, as in Vault.
    assert!(allowed(&[&p], "/secret/data/x", Read));
}

#[test]
fn exact_path_denies_children_siblings_and_prefixes() {
    let p = policy("p", r#"path "secret/data/x" { capabilities = ["read"] }"#);
    for path in [
        "secret/data/x/y",
        "secret/data/xy",
        "secret/data",
        "secret/data/",
    ] {
        assert!(!allowed(&[&p], path, Read), "{path}");
    }
}

// ---------------------------------------------------------------- `*` suffix

#[test]
fn glob_suffix_allows_everything_under_the_prefix() {
    let p = policy(
        "p",
        r#"path "secret/data/openclaw/*" { capabilities = ["read"] }"#,
    );
    for path in [
        "secret/data/openclaw/llm",
        "secret/data/openclaw/a/b/c",
        "secret/data/openclaw/",
    ] {
        assert!(allowed(&[&p], path, Read), "{path}");
    }
    // `*` is a string prefix, not a segment boundary, exactly as in Vault.
    let q = policy(
        "q",
        r#"path "secret/data/open*" { capabilities = ["read"] }"#,
    );
    assert!(allowed(&[&q], "secret/data/openclaw/llm", Read));
}

#[test]
fn glob_suffix_denies_outside_the_prefix() {
    let p = policy(
        "p",
        r#"path "secret/data/openclaw/*" { capabilities = ["read"] }"#,
    );
    for path in [
        "secret/data/openclaw",
        "secret/data/other/llm",
        "secret/metadata/openclaw/llm",
    ] {
        assert!(!allowed(&[&p], path, Read), "{path}");
    }
}

// ---------------------------------------------------------------- `+` segment

#[test]
fn plus_allows_exactly_one_segment() {
    let p = policy(
        "p",
        r#"path "secret/data/+/config" { capabilities = ["read"] }"#,
    );
    assert!(allowed(&[&p], "secret/data/team-a/config", Read));
    let q = policy("q", r#"path "+/data/x" { capabilities = ["read"] }"#);
    assert!(allowed(&[&q], "kv/data/x", Read));
}

#[test]
fn plus_denies_zero_or_several_segments() {
    let p = policy(
        "p",
        r#"path "secret/data/+/config" { capabilities = ["read"] }"#,
    );
    for path in [
        "secret/data/config",
        "secret/data/a/b/config",
        "secret/data/a/config/x",
    ] {
        assert!(!allowed(&[&p], path, Read), "{path}");
    }
}

// ---------------------------------------------------------------- `+` with `*`

#[test]
fn plus_with_glob_allows_the_subtree_of_any_segment() {
    let p = policy(
        "p",
        r#"path "secret/data/+/agents/*" { capabilities = ["read"] }"#,
    );
    assert!(allowed(&[&p], "secret/data/team/agents/x", Read));
    assert!(allowed(&[&p], "secret/data/team/agents/x/y/z", Read));
}

#[test]
fn plus_with_glob_denies_other_subtrees() {
    let p = policy(
        "p",
        r#"path "secret/data/+/agents/*" { capabilities = ["read"] }"#,
    );
    for path in [
        "secret/data/team/other/x",
        "secret/data/agents/x",
        "secret/data/team/agents",
        "secret/data/a/b/agents/x",
    ] {
        assert!(!allowed(&[&p], path, Read), "{path}");
    }
}

// ---------------------------------------------------------------- precedence

/// Two rules match; the winner grants `read`, the loser grants `update`. So `read` must be
/// allowed and `update` denied, whichever order the rules (or policies) are written in.
fn assert_winner(winner: &str, loser: &str, path: &str) {
    let w = format!(r#"path "{winner}" {{ capabilities = ["read"] }}"#);
    let l = format!(r#"path "{loser}" {{ capabilities = ["update"] }}"#);
    let orders = [format!("{w}\n{l}"), format!("{l}\n{w}")];
    for (i, src) in orders.iter().enumerate() {
        let p = policy("p", src);
        assert!(
            allowed(&[&p], path, Read),
            "order {i}: {winner} should win over {loser} for {path}"
        );
        assert!(
            !allowed(&[&p], path, Update),
            "order {i}: {loser} should lose to {winner} for {path}"
        );
    }
    // The same across two policies, in both orders: precedence is over the merged ACL.
    let pw = policy("w", &w);
    let pl = policy("l", &l);
    for set in [[&pw, &pl], [&pl, &pw]] {
        assert!(
            allowed(&set, path, Read),
            "{winner} over {loser} across policies"
        );
        assert!(
            !allowed(&set, path, Update),
            "{loser} under {winner} across policies"
        );
    }
}

#[test]
fn precedence_exact_beats_any_glob() {
    assert_winner("secret/data/x", "secret/data/*", "secret/data/x");
    assert_winner("a/b/c", "a/+/c", "a/b/c");
}

#[test]
fn precedence_longest_prefix_wins() {
    assert_winner("secret/data/*", "secret/*", "secret/data/x");
    assert_winner("secret/data/x*", "secret/data/*", "secret/data/xyz");
}

#[test]
fn precedence_later_first_wildcard_wins() {
    // Vault's examples: prefer foo/a* over foo/+, foo/bar/+/baz over foo/+/bar/baz.
    assert_winner("foo/a*", "foo/+", "foo/abc");
    assert_winner("foo/bar/+/baz", "foo/+/bar/baz", "foo/bar/bar/baz");
    assert_winner("secret/data/+/x", "secret/+/+/x", "secret/data/a/x");
}

#[test]
fn precedence_ending_in_glob_loses() {
    // Vault's examples: prefer foo/+/bar over foo/+/ba*, foo/+ over foo/*.
    assert_winner("foo/+/bar", "foo/+/ba*", "foo/x/bar");
    assert_winner("foo/+", "foo/*", "foo/x");
}

#[test]
fn precedence_fewer_plus_segments_win() {
    // Vault's example: prefer foo/bar/+/baz over foo/+/+/baz (this pair is also decided by
    // rule 1), and a pair that only rule 3 decides.
    assert_winner("foo/bar/+/baz", "foo/+/+/baz", "foo/bar/x/baz");
    assert_winner("foo/+/bar/+", "foo/+/+/+", "foo/a/bar/b");
}

#[test]
fn precedence_longer_wins() {
    // Vault's example: prefer foo/+/bar/ba* over foo/+/bar/b*.
    assert_winner("foo/+/bar/ba*", "foo/+/bar/b*", "foo/x/bar/baz");
}

#[test]
fn precedence_lexicographically_larger_wins() {
    // Everything else equal: same first `+`, no `*`, one `+` segment, same length.
    assert_winner("a/+c/+", "a/+/+c", "a/+c/+c");
}

#[test]
fn more_specific_pattern_in_another_policy_replaces_a_broader_grant() {
    // Vault's merged-ACL semantics: only the most specific pattern counts, across policies.
    let broad = policy("broad", r#"path "secret/*" { capabilities = ["read"] }"#);
    let narrow = policy(
        "narrow",
        r#"path "secret/data/x" { capabilities = ["list"] }"#,
    );
    assert!(allowed(&[&broad], "secret/data/x", Read));
    assert!(!allowed(&[&broad, &narrow], "secret/data/x", Read));
    assert!(allowed(&[&broad, &narrow], "secret/data/x", List));
    assert!(allowed(&[&broad, &narrow], "secret/data/y", Read));
}

// ---------------------------------------------------------------- deny wins

#[test]
fn deny_wins_within_one_policy() {
    let p = policy(
        "p",
        r#"
        path "secret/data/*" { capabilities = ["read", "update"] }
        path "secret/data/private/*" { capabilities = ["deny"] }
        path "secret/data/mixed" { capabilities = ["read", "deny"] }
        "#,
    );
    assert!(allowed(&[&p], "secret/data/public", Read));
    let r = reason(evaluate(&[&p], &no_cert(), "secret/data/private/x", Read));
    assert!(
        r.contains("denies") && r.contains("secret/data/private/*"),
        "{r}"
    );
    assert!(!allowed(&[&p], "secret/data/mixed", Read));
}

#[test]
fn deny_wins_across_two_policies_on_the_same_pattern() {
    let grant = policy(
        "grant",
        r#"path "secret/data/x" { capabilities = ["read", "list"] }"#,
    );
    let deny = policy(
        "deny",
        r#"path "secret/data/x" { capabilities = ["deny"] }"#,
    );
    assert!(allowed(&[&grant], "secret/data/x", Read));
    for set in [[&grant, &deny], [&deny, &grant]] {
        assert!(!allowed(&set, "secret/data/x", Read));
        assert!(!allowed(&set, "secret/data/x", List));
        assert_eq!(
            capabilities(&set, &no_cert(), "secret/data/x"),
            caps(&[Deny])
        );
    }
}

#[test]
fn deny_on_a_less_specific_pattern_does_not_override_a_more_specific_grant() {
    // Vault: the most specific pattern wins first; `deny` only wins on the rule it is on.
    let deny_all = policy("deny-all", r#"path "secret/*" { capabilities = ["deny"] }"#);
    let grant = policy(
        "grant",
        r#"path "secret/data/x" { capabilities = ["read"] }"#,
    );
    assert!(allowed(&[&deny_all, &grant], "secret/data/x", Read));
    assert!(!allowed(&[&deny_all, &grant], "secret/data/y", Read));
}

// ---------------------------------------------------------------- duplicate blocks

#[test]
fn duplicate_path_blocks_merge_their_capabilities() {
    let p = policy(
        "p",
        r#"
        path "secret/data/x" { capabilities = ["read"] }
        path "secret/data/x" { capabilities = ["list"] }
        path "/secret/data/x" { capabilities = ["create"] }
        "#,
    );
    assert_eq!(
        p.rules().len(),
        1,
        "a leading '/' is stripped, so all three merge"
    );
    assert!(allowed(&[&p], "secret/data/x", Read));
    assert!(allowed(&[&p], "secret/data/x", List));
    assert!(allowed(&[&p], "secret/data/x", Create));
}

#[test]
fn duplicate_path_blocks_grant_nothing_more_and_deny_wins() {
    let p = policy(
        "p",
        r#"
        path "secret/data/x" { capabilities = ["read"] }
        path "secret/data/x" { capabilities = ["list"] }
        "#,
    );
    assert!(!allowed(&[&p], "secret/data/x", Update));
    let d = policy(
        "d",
        r#"
        path "secret/data/x" { capabilities = ["read", "list"] }
        path "secret/data/x" { capabilities = ["deny"] }
        "#,
    );
    assert_eq!(d.rules()[0].capabilities(), &caps(&[Deny]));
    assert!(!allowed(&[&d], "secret/data/x", Read));
}

// ---------------------------------------------------------------- each capability

#[test]
fn each_capability_allows_exactly_itself() {
    for cap in [Create, Read, Update, Patch, Delete, List, Sudo] {
        let p = policy(
            "p",
            &format!(r#"path "a/b" {{ capabilities = ["{cap}"] }}"#),
        );
        assert!(allowed(&[&p], "a/b", cap), "{cap} should be granted");
        assert_eq!(capabilities(&[&p], &no_cert(), "a/b"), caps(&[cap]));
    }
}

#[test]
fn each_capability_denies_every_other() {
    let all = [Create, Read, Update, Patch, Delete, List, Sudo];
    for cap in all {
        let p = policy(
            "p",
            &format!(r#"path "a/b" {{ capabilities = ["{cap}"] }}"#),
        );
        for other in all.iter().filter(|o| **o != cap) {
            assert!(
                !allowed(&[&p], "a/b", *other),
                "{cap} must not grant {other}"
            );
        }
        // `deny` is never an operation that can be granted.
        assert!(!allowed(&[&p], "a/b", Deny));
    }
    let denied = policy("p", r#"path "a/b" { capabilities = ["deny"] }"#);
    for cap in all {
        assert!(!allowed(&[&denied], "a/b", cap));
    }
}

#[test]
fn empty_capabilities_grant_nothing_but_still_outrank() {
    // Vault accepts `capabilities = []`; the rule matches and grants nothing.
    let p = policy(
        "p",
        r#"
        path "secret/*" { capabilities = ["read"] }
        path "secret/data/x" { capabilities = [] }
        "#,
    );
    assert!(!allowed(&[&p], "secret/data/x", Read));
    assert!(allowed(&[&p], "secret/data/y", Read));
    assert_eq!(
        capabilities(&[&p], &no_cert(), "secret/data/x"),
        caps(&[Deny])
    );
}

// ---------------------------------------------------------------- the old shorthand

#[test]
fn policy_shorthand_grants_what_vault_maps_it_to() {
    let read = policy("p", r#"path "a" { policy = "read" }"#);
    assert_eq!(capabilities(&[&read], &no_cert(), "a"), caps(&[Read, List]));
    let write = policy("p", r#"path "a" { policy = "write" }"#);
    assert_eq!(
        capabilities(&[&write], &no_cert(), "a"),
        caps(&[Create, Read, Update, Delete, List])
    );
    let sudo = policy("p", r#"path "a" { policy = "sudo" }"#);
    assert_eq!(
        capabilities(&[&sudo], &no_cert(), "a"),
        caps(&[Create, Read, Update, Delete, List, Sudo])
    );
    // Combined with `capabilities`, the shorthand adds to them (Vault appends).
    let both = policy(
        "p",
        "path \"a\" {\n  policy = \"read\"\n  capabilities = [\"create\"]\n}",
    );
    assert_eq!(
        capabilities(&[&both], &no_cert(), "a"),
        caps(&[Create, Read, List])
    );
}

#[test]
fn policy_shorthand_denies_what_it_does_not_map_to() {
    let read = policy("p", r#"path "a" { policy = "read" }"#);
    for cap in [Create, Update, Patch, Delete, Sudo] {
        assert!(!allowed(&[&read], "a", cap), "{cap}");
    }
    let write = policy("p", r#"path "a" { policy = "write" }"#);
    assert!(
        !allowed(&[&write], "a", Patch),
        "Vault's write shorthand predates patch"
    );
    assert!(!allowed(&[&write], "a", Sudo));
    let deny = policy(
        "p",
        "path \"a\" {\n  policy = \"deny\"\n  capabilities = [\"read\"]\n}",
    );
    assert!(!allowed(&[&deny], "a", Read));
}

// ---------------------------------------------------------------- templates

const AGENTS: &str =
    r#"path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read"] }"#;

#[test]
fn template_allows_the_callers_own_subtree() {
    let p = policy("agents", AGENTS);
    let ctx = TemplateContext {
        common_name: Some("agent-a"),
        ..TemplateContext::default()
    };
    match evaluate(&[&p], &ctx, "secret/data/agents/agent-a/x", Read) {
        Decision::Allow { matched } => {
            assert!(matched.contains("\"agents\""), "{matched}");
            assert!(
                matched.contains("secret/data/agents/agent-a/*"),
                "{matched}"
            );
            assert!(matched.contains("{{cert.common_name}}"), "{matched}");
        }
        Decision::Deny { reason } => panic!("agent-a should read its own path: {reason}"),
    }
}

#[test]
fn template_denies_another_agents_subtree() {
    let p = policy("agents", AGENTS);
    let ctx = TemplateContext {
        common_name: Some("agent-a"),
        ..TemplateContext::default()
    };
    assert!(!evaluate(&[&p], &ctx, "secret/data/agents/agent-b/x", Read).is_allowed());
    assert!(!evaluate(&[&p], &ctx, "secret/data/agents/agent-a", Read).is_allowed());
}

#[test]
fn template_other_fields_render_from_the_first_san_and_the_serial() {
    let uris = ["urn:keep:agent-a".to_owned(), "urn:keep:other".to_owned()];
    let dns = ["agent-a.claw.internal".to_owned()];
    let ctx = TemplateContext {
        common_name: None,
        dns_sans: &dns,
        uri_sans: &uris,
        serial: "0a1b2c",
    };
    let p = policy(
        "p",
        r#"
        path "u/{{cert.uri_san}}" { capabilities = ["read"] }
        path "d/{{cert.dns_san}}" { capabilities = ["read"] }
        path "s/{{cert.serial}}" { capabilities = ["read"] }
        "#,
    );
    for path in ["u/urn:keep:agent-a", "d/agent-a.claw.internal", "s/0a1b2c"] {
        assert!(evaluate(&[&p], &ctx, path, Read).is_allowed(), "{path}");
    }
    for path in ["u/urn:keep:other", "s/0a1b2d"] {
        assert!(!evaluate(&[&p], &ctx, path, Read).is_allowed(), "{path}");
    }
}

#[test]
fn template_with_a_uri_san_allows() {
    let p = policy(
        "p",
        r#"path "secret/data/{{cert.uri_san}}/*" { capabilities = ["read"] }"#,
    );
    let uris = ["urn:agent-a".to_owned()];
    let ctx = TemplateContext {
        uri_sans: &uris,
        ..TemplateContext::default()
    };
    assert!(evaluate(&[&p], &ctx, "secret/data/urn:agent-a/x", Read).is_allowed());
}

#[test]
fn template_with_a_missing_uri_san_grants_nothing_and_says_why() {
    let p = policy(
        "p",
        r#"path "secret/data/{{cert.uri_san}}/*" { capabilities = ["read"] }"#,
    );
    let ctx = TemplateContext {
        common_name: Some("agent-a"),
        ..TemplateContext::default()
    };
    let r = reason(evaluate(&[&p], &ctx, "secret/data/agent-a/x", Read));
    assert!(r.contains("no URI SAN"), "{r}");
    assert!(r.contains("dropped"), "{r}");
    assert_eq!(
        capabilities(&[&p], &ctx, "secret/data/agent-a/x"),
        caps(&[Deny])
    );
}

#[test]
fn template_value_with_glob_or_slash_grants_nothing() {
    let p = policy("agents", AGENTS);
    let cases = [
        ("*", "secret/data/agents/anyone/x"),
        ("*", "secret/data/agents/*/x"),
        ("+", "secret/data/agents/+/x"),
        ("agent-b/..", "secret/data/agents/agent-b/x"),
        ("a/b", "secret/data/agents/a/b/x"),
        ("..", "secret/data/agents/x"),
        ("", "secret/data/agents//x"),
    ];
    for (cn, path) in cases {
        let ctx = TemplateContext {
            common_name: Some(cn),
            ..TemplateContext::default()
        };
        let decision = evaluate(&[&p], &ctx, path, Read);
        assert!(!decision.is_allowed(), "CN {cn:?} must not reach {path}");
    }
    let ctx = TemplateContext {
        common_name: Some("*"),
        ..TemplateContext::default()
    };
    let r = reason(evaluate(&[&p], &ctx, "secret/data/agents/anyone/x", Read));
    assert!(r.contains("contains `*`"), "{r}");
}

#[test]
fn templated_deny_denies_the_callers_own_path_only() {
    let p = policy(
        "p",
        r#"
        path "secret/data/*" { capabilities = ["read"] }
        path "secret/data/{{cert.common_name}}/*" { capabilities = ["deny"] }
        "#,
    );
    let ctx = TemplateContext {
        common_name: Some("agent-a"),
        ..TemplateContext::default()
    };
    assert!(!evaluate(&[&p], &ctx, "secret/data/agent-a/x", Read).is_allowed());
    assert!(evaluate(&[&p], &ctx, "secret/data/agent-b/x", Read).is_allowed());
}

#[test]
fn unrenderable_templated_deny_fails_closed_where_it_could_match() {
    // Vault would skip the unrenderable rule and so allow; keep denies instead.
    let p = policy(
        "p",
        r#"
        path "secret/data/*" { capabilities = ["read"] }
        path "secret/data/{{cert.uri_san}}/*" { capabilities = ["deny"] }
        "#,
    );
    let r = reason(evaluate(&[&p], &no_cert(), "secret/data/anyone/x", Read));
    assert!(
        r.contains("failing closed") && r.contains("no URI SAN"),
        "{r}"
    );
    // Paths it could never match are unaffected.
    assert!(evaluate(&[&p], &no_cert(), "secret/data/top", Read).is_allowed());
}

// ---------------------------------------------------------------- empty set, default

#[test]
fn empty_policy_set_denies_everything() {
    for cap in Capability::ALL {
        let r = reason(evaluate(&[], &no_cert(), "secret/data/x", cap));
        assert!(!r.is_empty());
    }
    let r = reason(evaluate(&[], &no_cert(), "secret/data/x", Read));
    assert!(
        r.starts_with("no policy grants read on secret/data/x"),
        "{r}"
    );
    assert_eq!(
        capabilities(&[], &no_cert(), "secret/data/x"),
        caps(&[Deny])
    );
}

#[test]
fn a_policy_that_grants_the_path_allows_where_the_empty_set_denied() {
    let p = policy("p", r#"path "secret/data/x" { capabilities = ["read"] }"#);
    assert!(!allowed(&[], "secret/data/x", Read));
    assert!(allowed(&[&p], "secret/data/x", Read));
}

#[test]
fn default_policy_grants_token_self_management() {
    let d = Policy::default_policy();
    assert_eq!(d.name(), "default");
    assert!(allowed(&[&d], "auth/token/lookup-self", Read));
    assert!(allowed(&[&d], "auth/token/renew-self", Update));
    assert!(allowed(&[&d], "auth/token/revoke-self", Update));
    assert!(allowed(&[&d], "sys/capabilities-self", Update));
}

#[test]
fn default_policy_grants_no_secrets_and_nothing_else() {
    let d = Policy::default_policy();
    for (path, cap) in [
        ("secret/data/openclaw/llm", Read),
        ("secret/metadata/", List),
        ("auth/token/lookup-self", Update),
        ("auth/token/create", Update),
        ("sys/policies/acl/default", Update),
        ("auth/token/lookup-self/x", Read),
    ] {
        assert!(!allowed(&[&d], path, cap), "{cap} on {path}");
    }
}

// ---------------------------------------------------------------- list fallbacks, traversal

#[test]
fn list_on_a_trailing_slash_uses_the_rule_without_it() {
    // Vault's AllowOperation: a list on `foo/` also looks at `foo`.
    let p = policy(
        "p",
        r#"path "secret/metadata/agents" { capabilities = ["list"] }"#,
    );
    assert!(allowed(&[&p], "secret/metadata/agents/", List));
    assert_eq!(
        capabilities(&[&p], &no_cert(), "secret/metadata/agents/"),
        caps(&[List])
    );
}

#[test]
fn only_list_gets_the_trailing_slash_fallback() {
    let p = policy(
        "p",
        r#"path "secret/metadata/agents" { capabilities = ["list", "read"] }"#,
    );
    assert!(!allowed(&[&p], "secret/metadata/agents/", Read));
}

#[test]
fn dot_dot_segments_are_denied_even_under_a_wide_grant() {
    let p = policy("p", r#"path "*" { capabilities = ["read"] }"#);
    assert!(allowed(&[&p], "secret/data/agents/a/x", Read));
    let r = reason(evaluate(
        &[&p],
        &no_cert(),
        "secret/data/agents/a/../b/x",
        Read,
    ));
    assert!(r.contains(".."), "{r}");
    assert_eq!(
        capabilities(&[&p], &no_cert(), "secret/data/../x"),
        caps(&[Deny])
    );
}

// ---------------------------------------------------------------- reasons

#[test]
fn denial_names_the_rule_that_lacked_the_capability() {
    let p = policy(
        "readers",
        r#"path "secret/data/*" { capabilities = ["read", "list"] }"#,
    );
    let r = reason(evaluate(&[&p], &no_cert(), "secret/data/x", Update));
    assert!(r.contains("\"readers\""), "{r}");
    assert!(r.contains("secret/data/*"), "{r}");
    assert!(r.contains("read, list") && r.contains("not update"), "{r}");
}

#[test]
fn allow_names_only_the_policies_that_granted_the_capability() {
    let a = policy("a", r#"path "x" { capabilities = ["read"] }"#);
    let b = policy("b", r#"path "x" { capabilities = ["list"] }"#);
    match evaluate(&[&a, &b], &no_cert(), "x", List) {
        Decision::Allow { matched } => assert_eq!(matched, r#"policy "b" path "x""#),
        Decision::Deny { reason } => panic!("{reason}"),
    }
}

// Found by the `policy` fuzz target (its canonical printer lost the second '/'): as in Vault,
// one leading '/' is stripped from a path pattern and only one, so `path "//x/*"` is the
// pattern "/x/*", which no request path (they never start with '/') can match — it grants
// nothing, and it does not widen to `x/*`.
#[test]
fn only_one_leading_slash_is_stripped_and_the_rest_matches_nothing() {
    let one = policy(
        "one",
        "path \"/sys/policies/acl/*\" { capabilities = [\"read\"] }",
    );
    assert_eq!(one.rules()[0].pattern(), "sys/policies/acl/*");
    assert!(allowed(&[&one], "sys/policies/acl/p", Read));
    let two = policy(
        "two",
        "path \"//sys/policies/acl/*\" { capabilities = [\"read\"] }",
    );
    assert_eq!(two.rules()[0].pattern(), "/sys/policies/acl/*");
    assert!(!allowed(&[&two], "sys/policies/acl/p", Read));
}
