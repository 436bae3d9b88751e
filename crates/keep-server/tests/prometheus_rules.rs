//! The shipped Prometheus rules (`deploy/prometheus/keep-rules.yml`): `promtool check rules`
//! and `promtool test rules` on its unit tests pass, every alert is well formed, documented in
//! `docs/monitoring.md` and tested, and the rules use the metrics keep exports.
//!
//! promtool comes from Debian's `prometheus` package (.ci/run installs it); without it the
//! promtool test prints SKIP, or fails when `KEEP_REQUIRE_PEERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

/// The metrics the rules must watch: the server's, `keep check expiry`'s textfile, and `up`.
const METRICS: [&str; 12] = [
    "keep_certificate_expiry_timestamp_seconds",
    "keep_certificate_not_before_timestamp_seconds",
    "keep_certificate_revoked",
    "keep_tls_handshake_failures_total",
    "keep_tls_connections_rejected_total",
    "keep_audit_healthy",
    "keep_storage_healthy",
    "keep_pki_renewals_total",
    "keep_security_alerts_total",
    "keep_auth_logins_rate_limited_total",
    "keep_check_certificate_status",
    "up",
];

/// Every alert the rules must define.
const ALERTS: [&str; 13] = [
    "KeepCertificateExpiringSoon",
    "KeepCertificateExpired",
    "KeepHandshakeFailureSpike",
    "KeepRevokedOrExpiredCertUsed",
    "KeepConnectionCapReached",
    "KeepConnectionFloodFromOneSource",
    "KeepAuditSinkBroken",
    "KeepStorageUnwritable",
    "KeepRenewalsFailing",
    "KeepSecurityAlert",
    "KeepLoginStorm",
    "KeepDown",
    "KeepHostCertificateCheck",
];

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rules() -> Vec<Rule> {
    let file: RuleFile = serde_saphyr::from_str(&read("deploy/prometheus/keep-rules.yml"))
        .expect("deploy/prometheus/keep-rules.yml parses");
    let names: Vec<&str> = file.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["keep"], "one rule group, named keep");
    file.groups.into_iter().next().unwrap().rules
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_is_well_formed_documented_and_tested() {
    let rules = rules();
    let doc = read("docs/monitoring.md");
    let anchors: BTreeSet<String> = doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let tests = read("deploy/prometheus/keep-rules.test.yml");

    let mut alerts = BTreeSet::new();
    for rule in &rules {
        match (&rule.alert, &rule.record) {
            (Some(name), None) => {
                alerts.insert(name.as_str());
                let severity = rule.labels.get("severity").map(String::as_str);
                assert!(
                    matches!(severity, Some("warning" | "critical")),
                    "{name}: severity label must be warning or critical, is {severity:?}"
                );
                for key in ["summary", "description", "runbook"] {
                    let text = rule.annotations.get(key).map(|s| s.trim()).unwrap_or("");
                    assert!(!text.is_empty(), "{name}: no {key} annotation");
                }
                let runbook = &rule.annotations["runbook"];
                let want = format!("docs/monitoring.md#{}", name.to_lowercase());
                assert_eq!(runbook, &want, "{name}: runbook");
                assert!(
                    anchors.contains(&name.to_lowercase()),
                    "{name}: docs/monitoring.md has no heading for #{}",
                    name.to_lowercase()
                );
                // Firing and not firing are both tested: an expected alert, and an eval with none.
                assert!(
                    tests.contains(&format!("alertname: {name}\n")),
                    "{name}: no test in keep-rules.test.yml"
                );
            }
            (None, Some(record)) => {
                assert!(record.starts_with("keep:"), "recording rule {record}");
            }
            _ => panic!("a rule must be an alert or a record: {}", rule.expr),
        }
    }
    let want: BTreeSet<&str> = ALERTS.into_iter().collect();
    assert_eq!(alerts, want, "the set of alerts");
}

#[test]
fn rules_watch_every_keep_metric_and_only_documented_ones() {
    let rules = rules();
    let exprs: String = rules.iter().map(|r| format!("{}\n", r.expr)).collect();
    let doc = read("docs/monitoring.md");
    for metric in METRICS {
        assert!(exprs.contains(metric), "no rule uses {metric}:\n{exprs}");
        assert!(
            doc.contains(&format!("`{metric}")),
            "docs/monitoring.md does not describe {metric}"
        );
    }
    // Every keep_* name in an expression is a metric the docs describe (catches typos, which
    // PromQL would silently evaluate to nothing).
    let used: BTreeSet<&str> = exprs
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("keep_"))
        .collect();
    for name in used {
        assert!(
            METRICS.contains(&name) || doc.contains(&format!("`{name}")),
            "the rules use {name}, which docs/monitoring.md does not describe"
        );
    }
}

/// `promtool`, or `None` after printing SKIP (a failure when `KEEP_REQUIRE_PEERS` is set).
fn promtool() -> Option<PathBuf> {
    let bin = std::env::var_os("KEEP_TEST_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "promtool".into());
    if Command::new(&bin).arg("--version").output().is_ok() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "promtool is required (KEEP_REQUIRE_PEERS is set) but `{} --version` cannot run; \
         .ci/run installs Debian's prometheus package",
        bin.display()
    );
    eprintln!("SKIP: promtool not found (apt-get install prometheus, or set KEEP_TEST_PROMTOOL)");
    None
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    for args in [
        ["check", "rules", "deploy/prometheus/keep-rules.yml"],
        ["test", "rules", "deploy/prometheus/keep-rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(repo_root())
            .output()
            .expect("promtool runs");
        let text = format!(
            "$ promtool {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(out.status.success(), "promtool failed:\n{text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
}
