//! The shipped Prometheus rules (deploy/prometheus/keep-rules.yml) against a real scrape: every
//! `keep_*` series a rule reads must be exported by a running server (with the PKI mount and
//! the audit log on), with the labels the rules use. promtool tests the rules' logic on
//! synthetic series; this test ties those series to what the server really exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use keep_test_support::lab::Lab;

#[test]
fn a_live_scrape_exports_every_series_the_alerting_rules_read() {
    let lab = Lab::with_config_for(Path::new(env!("CARGO_BIN_EXE_keep")), "", |files| {
        format!(
            "audit:\n  file: audit.log\npki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n",
            files.intermediate_cert.display(),
            files.intermediate_key.display()
        )
    });
    lab.init();
    let _server = lab.start();
    // One issued and one revoked certificate, so the per-certificate series exist.
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/roles/agents",
        Some(r#"{"allow_any_name": true, "server_flag": false, "ttl": "1h"}"#),
    );
    assert!(code == 200 || code == 204, "{code} {text}");
    let mut serials = Vec::new();
    for cn in ["agent-a", "agent-b"] {
        let (code, text) = lab.curl(
            "POST",
            "/v1/pki/issue/agents",
            Some(&format!(r#"{{"common_name": "{cn}"}}"#)),
        );
        assert_eq!(code, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        serials.push(v["data"]["serial_number"].as_str().unwrap().to_owned());
    }
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/revoke",
        Some(&format!(r#"{{"serial_number": "{}"}}"#, serials[1])),
    );
    assert_eq!(code, 200, "{text}");

    let (code, scrape) = lab.curl("GET", "/v1/sys/metrics?format=prometheus", None);
    assert_eq!(code, 200, "{scrape}");
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/keep-rules.yml"),
    )
    .unwrap();
    let mut wanted = BTreeSet::new();
    for (i, _) in rules.match_indices("keep_") {
        // A metric name: keep_ followed by [a-z0-9_]; recording rules are keep:…
        if i > 0 && rules.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `keep check expiry --format prometheus` series come from node_exporter's textfile
        // collector on each host, not from the server.
        if !name.starts_with("keep_check_") {
            wanted.insert(name);
        }
    }
    assert!(
        wanted.len() >= 6,
        "the rules read too few series: {wanted:?}"
    );
    let missing: Vec<_> = wanted
        .iter()
        .filter(|w| {
            !exported.contains(w.as_str())
                && !exported.contains(format!("{w}_total").as_str())
                && !exported.iter().any(|e| e.starts_with(&format!("{w}_")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the rules read series the server does not export: {missing:?}\nexported: {exported:?}"
    );

    // The labels the expiry and revocation rules join on.
    let line = |name: &str, serial: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with(name) && l.contains(serial))
            .unwrap_or_else(|| panic!("no {name} for {serial}"))
            .to_owned()
    };
    for l in [
        line("keep_certificate_expiry_timestamp_seconds", &serials[0]),
        line("keep_certificate_not_before_timestamp_seconds", &serials[0]),
        line("keep_certificate_revoked", &serials[1]),
    ] {
        for label in ["serial=", "subject=", "role=\"agents\""] {
            assert!(l.contains(label), "{label} missing in {l}");
        }
    }
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("keep_audit_healthy") && l.trim_end().ends_with(" 1")),
        "keep_audit_healthy 1 expected:\n{scrape}"
    );
}
