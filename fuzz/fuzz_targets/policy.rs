//! The HCL policy parser and the evaluator (`keep_policy`).
//!
//! Input: UTF-8 text; sections separated by a NUL byte. Every section but the last is a policy
//! (at most three); the last is a list of request paths, one per line. With a single section
//! it is the policy and only derived paths are asked. Paths are also derived from every
//! rule's pattern (the pattern itself, globs filled in, a child, a parent) so the evaluator
//! sees matching paths without the fuzzer having to guess them.
//!
//! Invariants beyond "no panic":
//! - an accepted policy, written back as canonical HCL, parses to the same rules;
//! - `deny` is never granted, a `..` segment is always denied, no policy grants nothing;
//! - `evaluate(List)` agrees with `capabilities` (what `sys/capabilities-self` reports);
//! - the order of the caller's policies does not change a decision;
//! - adding a policy that only denies never turns a denial into an allow.
#![no_main]

use std::fmt::Write as _;

use keep_policy::{Capability, Policy, TemplateContext, capabilities, evaluate};
use libfuzzer_sys::fuzz_target;

const MAX_POLICIES: usize = 3;
const MAX_PATHS: usize = 24;

/// An HCL string literal for `s` (quotes, escapes, and `${`/`%{` doubled so no template starts).
fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The policy's rules as canonical HCL; with `deny_only`, every rule denies instead.
fn to_hcl(policy: &Policy, deny_only: bool) -> String {
    let mut out = String::new();
    for rule in policy.rules() {
        let caps: Vec<String> = if deny_only {
            vec!["\"deny\"".into()]
        } else {
            rule.capabilities()
                .iter()
                .map(|c| format!("\"{}\"", c.as_str()))
                .collect()
        };
        // The parser strips one leading '/' (as Vault does), so a pattern that still starts
        // with one (from `path "//x"`) is written back with the '/' it lost.
        let pattern = if rule.pattern().starts_with('/') {
            format!("/{}", rule.pattern())
        } else {
            rule.pattern().to_owned()
        };
        let _ = writeln!(
            out,
            "path {} {{\n  capabilities = [{}]\n}}",
            hcl_string(&pattern),
            caps.join(", ")
        );
    }
    out
}

/// Request paths that a pattern's rule is likely to decide.
fn derived_paths(pattern: &str, out: &mut Vec<String>) {
    let filled = pattern
        .replace("{{cert.common_name}}", "agent-a")
        .replace("{{cert.dns_san}}", "a.claw.internal")
        .replace("{{cert.uri_san}}", "spiffe://claw/agent-a")
        .replace("{{cert.serial}}", "01:02");
    let plus = filled
        .split('/')
        .map(|s| if s == "+" { "seg" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let star = plus.strip_suffix('*').unwrap_or(&plus).to_owned();
    out.push(pattern.to_owned());
    out.push(plus.clone());
    out.push(format!("{star}x/y"));
    out.push(format!("{star}/"));
    out.push(format!("{star}/.."));
    if let Some((parent, _)) = star.trim_end_matches('/').rsplit_once('/') {
        out.push(parent.to_owned());
        out.push(format!("{parent}/"));
    }
}

const CAPS: [Capability; 8] = Capability::ALL;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sections: Vec<&str> = text.split('\0').collect();
    let requested = if sections.len() > 1 {
        sections.pop().unwrap_or_default()
    } else {
        ""
    };
    let mut policies = Vec::new();
    for (i, source) in sections.iter().take(MAX_POLICIES).enumerate() {
        let name = format!("p{i}");
        let Ok(policy) = Policy::parse(&name, source) else {
            continue;
        };
        assert_eq!(policy.source(), *source);
        let canonical = to_hcl(&policy, false);
        let again = Policy::parse(&name, &canonical)
            .unwrap_or_else(|e| panic!("canonical HCL refused: {e}\n{canonical}"));
        assert_eq!(
            policy.rules(),
            again.rules(),
            "canonical HCL reads differently:\n{canonical}"
        );
        policies.push(policy);
    }

    let mut paths: Vec<String> = requested.lines().map(str::to_owned).collect();
    for policy in &policies {
        for rule in policy.rules() {
            derived_paths(rule.pattern(), &mut paths);
        }
    }
    paths.truncate(MAX_PATHS);

    let deny_only: Vec<Policy> = policies
        .iter()
        .filter_map(|p| Policy::parse("deny-only", &to_hcl(p, true)).ok())
        .collect();

    let refs: Vec<&Policy> = policies.iter().collect();
    let reversed: Vec<&Policy> = policies.iter().rev().collect();
    let mut with_denies = refs.clone();
    with_denies.extend(deny_only.iter());

    let dns = ["a.claw.internal".to_owned()];
    let uri = ["spiffe://claw/agent-a".to_owned()];
    let hostile_dns = ["*".to_owned()];
    let hostile_uri = ["spiffe://claw/../b".to_owned()];
    let contexts = [
        TemplateContext {
            common_name: Some("agent-a"),
            dns_sans: &dns,
            uri_sans: &uri,
            serial: "01:02",
        },
        TemplateContext {
            common_name: Some("a/../b"),
            dns_sans: &hostile_dns,
            uri_sans: &hostile_uri,
            serial: "",
        },
        TemplateContext::default(),
    ];

    for ctx in &contexts {
        for path in &paths {
            let caps = capabilities(&refs, ctx, path);
            assert!(!caps.is_empty(), "capabilities() returned an empty set");
            let traversal = path.trim_start_matches('/').split('/').any(|s| s == "..");
            for cap in CAPS {
                let d = evaluate(&refs, ctx, path, cap);
                let allowed = d.is_allowed();
                if cap == Capability::Deny || traversal || refs.is_empty() {
                    assert!(!allowed, "{cap} on {path:?} allowed: {d:?}");
                }
                if cap == Capability::List {
                    assert_eq!(
                        allowed,
                        caps.contains(&Capability::List) && !caps.contains(&Capability::Deny),
                        "evaluate(list) and capabilities() disagree on {path:?}: {d:?} vs {caps:?}"
                    );
                }
                assert_eq!(
                    allowed,
                    evaluate(&reversed, ctx, path, cap).is_allowed(),
                    "policy order changed the decision for {cap} on {path:?}"
                );
                if !allowed {
                    let d2 = evaluate(&with_denies, ctx, path, cap);
                    assert!(
                        !d2.is_allowed(),
                        "a deny-only policy granted {cap} on {path:?}: {d2:?}"
                    );
                }
            }
        }
    }
});
