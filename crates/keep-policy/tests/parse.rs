//! Parsing: what Vault-style HCL keep accepts, and a table of what it refuses and how it says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use keep_policy::{
    Capability, DEFAULT_POLICY_HCL, Policy, PolicyError, Position, is_deletable, validate_name,
};

#[test]
fn parses_vault_syntax_and_keeps_the_source() {
    let src = r#"
# Agents read their secrets.
name = "ignored-like-vault-does"

path "secret/data/openclaw/*" {
  capabilities = ["read", "list",]
  comment      = "OpenClaw agents"
}

// Another comment style.
path "secret/metadata/openclaw/*" {
  capabilities = ["list"]
}
"#;
    let p = Policy::parse("openclaw", src).unwrap();
    assert_eq!(p.name(), "openclaw");
    assert_eq!(p.source(), src);
    assert!(!p.is_templated());
    let patterns: Vec<&str> = p.rules().iter().map(|r| r.pattern()).collect();
    assert_eq!(
        patterns,
        ["secret/data/openclaw/*", "secret/metadata/openclaw/*"]
    );
    assert_eq!(
        p.rules()[0].capabilities(),
        &BTreeSet::from([Capability::Read, Capability::List])
    );
}

#[test]
fn an_empty_policy_parses_and_grants_nothing() {
    let p = Policy::parse("empty", "# nothing here\n").unwrap();
    assert!(p.rules().is_empty());
}

#[test]
fn templated_patterns_are_flagged() {
    let p = Policy::parse(
        "t",
        r#"path "secret/data/{{ cert.common_name }}/*" { capabilities = ["read"] }"#,
    )
    .unwrap();
    assert!(p.is_templated());
    assert!(p.rules()[0].is_templated());
}

#[test]
fn default_policy_parses() {
    // Policy::default_policy falls back to an empty (deny-all) policy if this ever broke;
    // this test makes sure it never silently does.
    let parsed = Policy::parse("default", DEFAULT_POLICY_HCL).unwrap();
    assert_eq!(parsed.rules().len(), 7);
    for p in [
        "sys/wrapping/wrap",
        "sys/wrapping/lookup",
        "sys/wrapping/unwrap",
    ] {
        assert!(parsed.rules().iter().any(|r| r.pattern() == p), "{p}");
    }
    assert_eq!(Policy::default_policy(), parsed);
}

/// What a parse error must look like: its variant, a fragment of its message, and the line
/// it points at (when the parser knows one).
struct Case {
    name: &'static str,
    src: &'static str,
    matches: fn(&PolicyError) -> bool,
    says: &'static str,
    line: Option<usize>,
}

fn line_of(err: &PolicyError) -> Option<usize> {
    let at = |p: &Option<Position>| p.map(|p| p.line);
    match err {
        PolicyError::Syntax { line, .. } | PolicyError::Json { line, .. } => Some(*line),
        PolicyError::UnknownBlock { at: p, .. }
        | PolicyError::UnknownAttribute { at: p, .. }
        | PolicyError::UnknownCapability { at: p, .. }
        | PolicyError::Unsupported { at: p, .. }
        | PolicyError::InvalidShorthand { at: p, .. }
        | PolicyError::InvalidValue { at: p, .. }
        | PolicyError::InvalidPath { at: p, .. }
        | PolicyError::UnsupportedTemplate { at: p, .. } => at(p),
        _ => None,
    }
}

#[test]
fn parse_error_table() {
    let cases = [
        Case {
            name: "unknown capability",
            src: "path \"secret/*\" {\n  capabilities = [\"read\",\n    \"reed\"]\n}\n",
            matches: |e| matches!(e, PolicyError::UnknownCapability { capability, .. } if capability == "reed"),
            says: "unknown capability \"reed\"",
            line: Some(3),
        },
        Case {
            name: "capability in the wrong case",
            src: "path \"a\" {\n  capabilities = [\"READ\"]\n}",
            matches: |e| matches!(e, PolicyError::UnknownCapability { .. }),
            says: "\"READ\"",
            line: Some(2),
        },
        Case {
            name: "unknown attribute (typo)",
            src: "path \"secret/*\" {\n  capabilites = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::UnknownAttribute { attribute, path: Some(_), .. } if attribute == "capabilites"),
            says: "unknown attribute `capabilites`",
            line: Some(2),
        },
        Case {
            name: "unknown top-level attribute",
            src: "\n\nversion = 2\n",
            matches: |e| matches!(e, PolicyError::UnknownAttribute { path: None, .. }),
            says: "unknown attribute `version`",
            line: Some(3),
        },
        Case {
            name: "unknown block",
            src: "path \"a\" {\n  capabilities = [\"read\"]\n}\nkey \"a\" {\n}\n",
            matches: |e| matches!(e, PolicyError::UnknownBlock { identifier, .. } if identifier == "key"),
            says: "unknown block `key`",
            line: Some(4),
        },
        Case {
            name: "unknown nested block",
            src: "path \"a\" {\n  rules {\n  }\n}\n",
            matches: |e| matches!(e, PolicyError::UnknownBlock { identifier, .. } if identifier == "rules"),
            says: "unknown block `rules`",
            line: Some(2),
        },
        Case {
            name: "bad HCL syntax: unclosed list",
            src: "path \"secret/*\" {\n  capabilities = [\"read\"\n}\n",
            matches: |e| matches!(e, PolicyError::Syntax { .. }),
            says: "HCL parse error in line",
            line: Some(3),
        },
        Case {
            name: "bad HCL syntax: missing brace",
            src: "path \"secret/*\" \n  capabilities = [\"read\"]\n",
            matches: |e| matches!(e, PolicyError::Syntax { .. }),
            says: "expected `{`",
            line: Some(1),
        },
        Case {
            name: "allowed_parameters",
            src: "path \"a\" {\n  capabilities = [\"create\"]\n  allowed_parameters = {\n    \"ttl\" = []\n  }\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "allowed_parameters"),
            says: "not support yet",
            line: Some(3),
        },
        Case {
            name: "denied_parameters",
            src: "path \"a\" {\n  capabilities = [\"create\"]\n  denied_parameters = {\n    \"*\" = []\n  }\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "denied_parameters"),
            says: "`denied_parameters` is a Vault policy setting",
            line: Some(3),
        },
        Case {
            name: "required_parameters",
            src: "path \"a\" {\n  capabilities = [\"create\"]\n  required_parameters = [\"bar\"]\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "required_parameters"),
            says: "`required_parameters`",
            line: Some(3),
        },
        Case {
            name: "min_wrapping_ttl",
            src: "path \"a\" {\n  capabilities = [\"read\"]\n  min_wrapping_ttl = \"1s\"\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "min_wrapping_ttl"),
            says: "`min_wrapping_ttl`",
            line: Some(3),
        },
        Case {
            name: "max_wrapping_ttl",
            src: "path \"a\" {\n  capabilities = [\"read\"]\n  max_wrapping_ttl = 90\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "max_wrapping_ttl"),
            says: "`max_wrapping_ttl`",
            line: Some(3),
        },
        Case {
            name: "HCL1-style parameter block",
            src: "path \"a\" {\n  capabilities = [\"read\"]\n  control_group {\n    ttl = \"4h\"\n  }\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "control_group"),
            says: "`control_group`",
            line: Some(3),
        },
        Case {
            name: "Vault capability keep does not support",
            src: "path \"sys/events/subscribe/*\" {\n  capabilities = [\"read\", \"subscribe\"]\n}\n",
            matches: |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "subscribe capability"),
            says: "`subscribe capability`",
            line: Some(2),
        },
        Case {
            name: "identity template",
            src: "\npath \"secret/data/{{identity.entity.name}}/*\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::UnsupportedTemplate { template, .. } if template == "{{identity.entity.name}}"),
            says: "unsupported template \"{{identity.entity.name}}\"",
            line: Some(2),
        },
        Case {
            name: "misspelt cert template",
            src: "path \"secret/data/{{cert.cn}}/*\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::UnsupportedTemplate { template, .. } if template == "{{cert.cn}}"),
            says: "{{cert.common_name}}",
            line: Some(1),
        },
        Case {
            name: "unclosed template",
            src: "path \"secret/data/{{cert.common_name/*\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "without a closing `}}`",
            line: Some(1),
        },
        Case {
            name: "invalid policy shorthand",
            src: "path \"a\" {\n  policy = \"admin\"\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidShorthand { value, .. } if value == "admin"),
            says: "invalid policy \"admin\"",
            line: Some(2),
        },
        Case {
            name: "capabilities not a list",
            src: "path \"a\" {\n  capabilities = \"read\"\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidValue { attribute, .. } if attribute == "capabilities"),
            says: "must be a list of strings",
            line: Some(2),
        },
        Case {
            name: "capability not a string",
            src: "path \"a\" {\n  capabilities = [read]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidValue { .. }),
            says: "must be a list of strings",
            line: Some(2),
        },
        Case {
            name: "attribute set twice",
            src: "path \"a\" {\n  capabilities = [\"read\"]\n  capabilities = [\"update\"]\n}\n",
            matches: |e| matches!(e, PolicyError::Syntax { .. }),
            says: "redefined attribute",
            line: Some(3),
        },
        Case {
            name: "glob in the middle",
            src: "path \"secret/*/config\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "only a glob at the very end",
            line: Some(1),
        },
        Case {
            name: "double glob",
            src: "path \"secret/**\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "only a glob at the very end",
            line: Some(1),
        },
        Case {
            name: "plus-glob",
            src: "path \"secret/+*\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "`+*` is forbidden",
            line: Some(1),
        },
        Case {
            name: "empty pattern",
            src: "path \"\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "the pattern is empty",
            line: Some(1),
        },
        Case {
            name: "two labels",
            src: "path \"a\" \"b\" {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "exactly one quoted pattern",
            line: Some(1),
        },
        Case {
            name: "no label",
            src: "path {\n  capabilities = [\"read\"]\n}\n",
            matches: |e| matches!(e, PolicyError::InvalidPath { .. }),
            says: "exactly one quoted pattern",
            line: Some(1),
        },
    ];
    for case in cases {
        let err = match Policy::parse("p", case.src) {
            Ok(p) => panic!("{}: should not parse, got {p:?}", case.name),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!((case.matches)(&err), "{}: wrong variant {err:?}", case.name);
        assert!(
            msg.contains(case.says),
            "{}: message {msg:?} should contain {:?}",
            case.name,
            case.says
        );
        assert_eq!(line_of(&err), case.line, "{}: line in {msg:?}", case.name);
        if let Some(line) = case.line {
            assert!(
                msg.contains(&format!("line {line}")),
                "{}: message should show the line: {msg}",
                case.name
            );
        }
    }
}

#[test]
fn names_follow_the_api_rules() {
    for good in [
        "default",
        "agents",
        "openclaw-agent",
        "team_a.readers",
        "a",
        "0day",
    ] {
        assert_eq!(validate_name(good), Ok(()), "{good}");
    }
    let long = "a".repeat(129);
    for bad in [
        "",
        "root",
        "Agents",
        "with space",
        "slash/name",
        ".hidden",
        "..",
        "-dash",
        "ümlaut",
        &long,
    ] {
        assert!(
            matches!(validate_name(bad), Err(PolicyError::InvalidName { .. })),
            "{bad:?} should be refused"
        );
    }
    let msg = validate_name("root").unwrap_err().to_string();
    assert!(msg.contains("reserved"), "{msg}");
}

#[test]
fn default_and_root_cannot_be_deleted() {
    assert!(!is_deletable("default"));
    assert!(!is_deletable("root"));
    assert!(is_deletable("agents"));
}

/// Vault's JSON policy form (what hvac sends for a dict) grants exactly what the same policy
/// in HCL grants, in each of the shapes Vault's HCL 1 parser reads.
#[test]
fn the_json_form_parses_to_the_same_rules_as_hcl() {
    let hcl = Policy::parse(
        "p",
        r#"
path "secret/data/openclaw/*" { capabilities = ["read", "list"] }
path "secret/metadata/{{cert.common_name}}/*" { capabilities = ["list"] }
path "sys/*" { policy = "deny" }
"#,
    )
    .unwrap();
    let forms = [
        // Object of rules.
        r#"{"path": {
              "secret/data/openclaw/*": {"capabilities": ["read", "list"]},
              "secret/metadata/{{cert.common_name}}/*": {"capabilities": ["list"]},
              "sys/*": {"policy": "deny"}}}"#,
        // A list of one-rule objects, a top-level name, and a comment per rule.
        r#"  {"name": "ignored", "path": [
              {"secret/data/openclaw/*": {"capabilities": ["read"], "comment": "agents"}},
              {"secret/data/openclaw/*": {"capabilities": ["list"]}},
              {"secret/metadata/{{cert.common_name}}/*": [{"capabilities": ["list"]}]},
              {"/sys/*": {"policy": "deny"}}]}"#,
    ];
    for src in forms {
        let json = Policy::parse("p", src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(json.rules(), hcl.rules(), "{src}");
        assert_eq!(json.source(), src, "the source is kept verbatim");
        assert!(json.is_templated());
    }
}

/// A JSON policy is held to HCL's rules, and its errors name the line of the rule.
#[test]
fn the_json_form_refuses_what_hcl_refuses_with_the_line() {
    // (source, the variant, a fragment of its message, the line it names)
    type JsonCase = (&'static str, fn(&PolicyError) -> bool, &'static str, usize);
    let cases: [JsonCase; 7] = [
        (
            "{\n \"path\": {\n  \"secret/*\": {\"capabilities\": [\"reed\"]}}}",
            |e| matches!(e, PolicyError::UnknownCapability { capability, .. } if capability == "reed"),
            "unknown capability \"reed\"",
            3,
        ),
        (
            "{\"path\": {\"secret/*\": {\n\"allowed_parameters\": {\"a\": []}}}}",
            |e| matches!(e, PolicyError::Unsupported { setting, .. } if setting == "allowed_parameters"),
            "does not support yet",
            2,
        ),
        (
            "{\"path\": {\"secret/*\": {\"capabilities\": [\"read\"],\n \"capabilities\": [\"sudo\"]}}}",
            |e| matches!(e, PolicyError::Json { .. }),
            "gives `capabilities` twice",
            2,
        ),
        (
            "{\"path\": {\"secret/*\": {\"capabilities\": \"read\"}}}",
            |e| matches!(e, PolicyError::InvalidValue { attribute, .. } if attribute == "capabilities"),
            "must be a list of strings",
            1,
        ),
        (
            "{\"path\": {\"a*b\": {\"capabilities\": [\"read\"]}}}",
            |e| matches!(e, PolicyError::InvalidPath { .. }),
            "only a glob at the very end",
            1,
        ),
        (
            "{\"paths\": {\"secret/*\": {}}}",
            |e| matches!(e, PolicyError::UnknownBlock { identifier, .. } if identifier == "paths"),
            "unknown block `paths`",
            1,
        ),
        (
            "{\"path\": {\"secret/*\": {\"capabilities\": [\"read\"]}}\n,}",
            |e| matches!(e, PolicyError::Json { .. }),
            "not valid JSON",
            2,
        ),
    ];
    for (src, matches, says, line) in cases {
        let err = Policy::parse("p", src).expect_err(src);
        let msg = err.to_string();
        assert!(matches(&err), "{src}: wrong variant {err:?}");
        assert!(msg.contains(says), "{src}: {msg:?} should contain {says:?}");
        assert_eq!(line_of(&err), Some(line), "{src}: {msg}");
    }
}
