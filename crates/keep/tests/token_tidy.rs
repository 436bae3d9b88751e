//! Expired tokens leave the real SQLite file: a running `keep server` with a short
//! `auth.token_tidy_interval` removes them (and their accessor rows) by itself, and keeps a
//! live token. Before the tidy job every login left two rows behind for good.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use keep_test_support::lab::Lab;

/// Rows under `prefix` in the server's database file, read beside the running server (WAL
/// lets a reader in while the server writes).
fn rows(lab: &Lab, prefix: &str) -> i64 {
    let db = rusqlite::Connection::open(lab.dir.join("keep.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(
        "SELECT count(*) FROM kv WHERE key >= ?1 AND key < ?2",
        [prefix.to_owned(), format!("{prefix}\u{10ffff}")],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn the_tidy_job_removes_expired_tokens_from_the_database() {
    let lab = Lab::with_config(
        Path::new(env!("CARGO_BIN_EXE_keep")),
        "",
        "auth:\n  token_tidy_interval: 1s\n  login_rate: { per_second: 1000, burst: 1000 }\n",
    );
    lab.init();
    let server = lab.start();
    let ca = serde_json::to_string(&lab.pki.intermediate.cert_pem).unwrap();
    for (role, ttl) in [("short", "3s"), ("long", "1h")] {
        let (code, text) = lab.curl(
            "POST",
            &format!("/v1/auth/cert/certs/{role}"),
            Some(&format!(
                r#"{{"certificate": {ca}, "allowed_common_names": "agent-01", "token_ttl": "{ttl}"}}"#
            )),
        );
        assert!(code == 200 || code == 204, "{code} {text}");
    }
    let login = |role: &str| {
        let (code, text) = lab.curl_as(
            &lab.files.client_cert,
            &lab.files.client_key,
            "POST",
            "/v1/auth/cert/login",
            Some(&format!(r#"{{"name": "{role}"}}"#)),
        );
        assert_eq!(code, 200, "{text}");
    };
    login("long");
    login("short");
    assert!(
        rows(&lab, "auth/token/id/") >= 2,
        "a login stores its token"
    );
    for _ in 0..19 {
        login("short");
    }
    // Every short token expires 3 s after its login; the job runs every second.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ids, accessors) = (
            rows(&lab, "auth/token/id/"),
            rows(&lab, "auth/token/accessor/"),
        );
        if (ids, accessors) == (1, 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired tokens still stored: {ids} tokens, {accessors} accessors\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, scrape) = lab.curl("GET", "/v1/sys/metrics?format=prometheus", None);
    assert_eq!(code, 200);
    let tidied: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("keep_auth_tokens_tidied_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(tidied >= 20.0, "{tidied}");
}
