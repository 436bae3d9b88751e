//! Trust is decided on the verified chain only, against the real `keep server` over real mTLS
//! (curl presents each chain exactly as written in its file).
//!
//! Reproduces two attacks from a security review: a leaf of a second intermediate, with the
//! role's intermediate appended to the chain it presents, logged in to a role bound to that
//! intermediate; and an agent allowed `pki/issue` on a broad role minted `CN=operator` and
//! became a break-glass admin — whose certificate could not be revoked at run time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use keep_test_support::lab::Lab;
use keep_test_support::{INTERMEDIATE_CN, LeafSpec};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

fn keep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keep"))
}

/// Writes `certs` (PEM, in this order) and `key` as a client identity; returns (cert, key).
fn identity(lab: &Lab, name: &str, certs: &[&str], key: &str) -> (PathBuf, PathBuf) {
    let cert = lab.dir.join(format!("{name}.crt"));
    let key_path = lab.dir.join(format!("{name}.key"));
    std::fs::write(&cert, certs.concat()).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert, key_path)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The matrix of the issue: role `agents` bound to intermediate A; leaves from A, from B
/// under the same root, from B with A appended (the attack), from B with A first, from a CA
/// with A's name but another key (A appended), from A with B appended. Only genuine A leaves
/// log in or read; every one of them gets through the TLS handshake (they all chain to the
/// root the listener trusts), so it is the role binding that must refuse them.
#[test]
fn a_role_bound_to_an_intermediate_admits_only_leaves_it_signed() {
    let lab = Lab::new(keep_bin());
    lab.init();
    let _server = lab.start();
    let now = OffsetDateTime::now_utc();
    let a = &lab.pki.intermediate;
    let b = lab.pki.issue_intermediate(
        "Keep Test Second Intermediate",
        now - Duration::days(1),
        now + Duration::days(365),
    );
    let fake_a = lab.pki.issue_intermediate(
        INTERMEDIATE_CN,
        now - Duration::days(1),
        now + Duration::days(365),
    );

    let policy = r#"path "secret/data/a2/*" { capabilities = ["read"] }"#;
    let (code, text) = lab.curl(
        "PUT",
        "/v1/sys/policies/acl/a2",
        Some(&json!({ "policy": policy }).to_string()),
    );
    assert_eq!(code, 204, "{text}");
    let role = json!({
        "certificate": a.cert_pem,
        "allowed_common_names": "a2",
        "token_policies": "a2",
        "allow_tokenless": true,
    });
    let (code, text) = lab.curl(
        "POST",
        "/v1/auth/cert/certs/agents",
        Some(&role.to_string()),
    );
    assert!(code == 200 || code == 204, "{code} {text}");
    lab.put_secret("a2/llm", json!({ "api_key": "a2-secret-value" }));

    let leaf_a = a.issue(&LeafSpec::agent("a2"));
    let leaf_b = b.issue(&LeafSpec::agent("a2"));
    let leaf_f = fake_a.issue(&LeafSpec::agent("a2"));
    // (name, chain, key, genuine, the handshake may fail): the CA named like A cannot complete
    // a handshake here at all, because the lab's CRL for A's name does not verify with its key.
    let cases: [(&str, Vec<&str>, &str, bool, bool); 6] = [
        (
            "a-leaf",
            vec![&leaf_a.cert_pem, &a.cert_pem],
            &leaf_a.key_pem,
            true,
            false,
        ),
        (
            "a-leaf-b-appended",
            vec![&leaf_a.cert_pem, &a.cert_pem, &b.cert_pem],
            &leaf_a.key_pem,
            true,
            false,
        ),
        (
            "b-leaf",
            vec![&leaf_b.cert_pem, &b.cert_pem],
            &leaf_b.key_pem,
            false,
            false,
        ),
        (
            "b-leaf-a-appended",
            vec![&leaf_b.cert_pem, &b.cert_pem, &a.cert_pem],
            &leaf_b.key_pem,
            false,
            false,
        ),
        (
            "b-leaf-a-first",
            vec![&leaf_b.cert_pem, &a.cert_pem, &b.cert_pem],
            &leaf_b.key_pem,
            false,
            false,
        ),
        (
            "a-by-name-only",
            vec![&leaf_f.cert_pem, &fake_a.cert_pem, &a.cert_pem],
            &leaf_f.key_pem,
            false,
            true,
        ),
    ];
    for (name, certs, key, genuine, handshake_may_fail) in cases {
        let (cert, key) = identity(&lab, name, &certs, key);
        let (code, body) = lab.curl_as(
            &cert,
            &key,
            "POST",
            "/v1/auth/cert/login",
            Some(r#"{"name":"agents"}"#),
        );
        if handshake_may_fail && code == 0 {
            continue;
        }
        // The handshake succeeded: curl got an HTTP status. It is the role that must decide.
        assert_ne!(code, 0, "{name}: no HTTP answer (handshake refused?)");
        let (read, read_body) = lab.curl_as(&cert, &key, "GET", "/v1/secret/data/a2/llm", None);
        if genuine {
            assert_eq!(code, 200, "{name}: {body}");
            assert!(json_of(&body)["auth"]["client_token"].is_string(), "{name}");
            assert_eq!(read, 200, "{name}: tokenless read: {read_body}");
            assert!(read_body.contains("a2-secret-value"), "{name}");
        } else {
            assert!(
                (400..500).contains(&code),
                "{name}: login must be refused: {code} {body}"
            );
            assert!(
                body.contains("does not chain to the role's CA certificate"),
                "{name}: {body}"
            );
            assert_eq!(
                read, 403,
                "{name}: tokenless read must be refused: {read_body}"
            );
            assert!(!read_body.contains("a2-secret-value"), "{name}");
        }
    }
}

/// The PKI mount refuses to issue a name the `admins:` list holds, unless the role says
/// `allow_admin_names`; and an admin certificate that was never in the inventory (made offline
/// with the issuer's key) can still be revoked at run time, after which its handshakes fail.
#[test]
fn the_pki_mount_cannot_mint_an_admin_and_an_admin_certificate_is_revocable() {
    let lab = Lab::with_pki(keep_bin());
    lab.init();
    let _server = lab.start();

    // An agent that may issue from a role that allows any name.
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/roles/broad",
        Some(r#"{"allow_any_name": true, "enforce_hostnames": false, "server_flag": false}"#),
    );
    assert!(code == 200 || code == 204, "{code} {text}");
    let policy = r#"path "pki/issue/broad" { capabilities = ["update"] }"#;
    let (code, text) = lab.curl(
        "PUT",
        "/v1/sys/policies/acl/issuer",
        Some(&json!({ "policy": policy }).to_string()),
    );
    assert_eq!(code, 204, "{text}");
    let role = json!({
        "certificate": lab.pki.intermediate.cert_pem,
        "allowed_common_names": "minter",
        "token_policies": "issuer",
        "allow_tokenless": true,
    });
    let (code, text) = lab.curl(
        "POST",
        "/v1/auth/cert/certs/minter",
        Some(&role.to_string()),
    );
    assert!(code == 200 || code == 204, "{code} {text}");
    let minter = lab.pki.issue(&LeafSpec::agent("minter"));
    let (mcert, mkey) = identity(
        &lab,
        "minter",
        &[&minter.cert_pem, &lab.pki.intermediate.cert_pem],
        &minter.key_pem,
    );

    for (what, body) in [
        ("common name", json!({"common_name": "operator"})),
        ("case variant", json!({"common_name": "OPERATOR"})),
    ] {
        let (code, text) = lab.curl_as(
            &mcert,
            &mkey,
            "POST",
            "/v1/pki/issue/broad",
            Some(&body.to_string()),
        );
        assert_eq!(code, 400, "{what}: {text}");
        assert!(text.contains("admin identity"), "{what}: {text}");
        assert!(text.contains("allow_admin_names"), "{what}: {text}");
        assert!(!text.contains("private_key"), "{what}: {text}");
    }
    // Other names still issue from the same role.
    let (code, text) = lab.curl_as(
        &mcert,
        &mkey,
        "POST",
        "/v1/pki/issue/broad",
        Some(r#"{"common_name": "operator-tools"}"#),
    );
    assert_eq!(code, 200, "{text}");
    // A role that says so may issue an admin name (the admin writes it).
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/roles/operators",
        Some(r#"{"allowed_domains": "operator", "allow_bare_domains": true, "allow_admin_names": true, "server_flag": false}"#),
    );
    assert!(code == 200 || code == 204, "{code} {text}");
    let (code, text) = lab.curl("GET", "/v1/pki/roles/operators", None);
    assert_eq!(code, 200, "{text}");
    assert_eq!(json_of(&text)["data"]["allow_admin_names"], json!(true));
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/issue/operators",
        Some(r#"{"common_name": "operator"}"#),
    );
    assert_eq!(code, 200, "{text}");

    // The lab's operator certificate was made offline, outside the inventory: revoke it by
    // certificate as the admin itself, then watch its next handshake fail.
    // A certificate from another issuer is refused, naming why.
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/revoke",
        Some(&json!({ "certificate": lab.pki.foreign_client.cert_pem }).to_string()),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not signed by this mount's issuer"), "{text}");
    let admin_pem = std::fs::read_to_string(&lab.files.admin_cert).unwrap();
    let leaf_only = admin_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned();
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/revoke",
        Some(&json!({ "certificate": leaf_only }).to_string()),
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(json_of(&text)["data"]["state"], json!("revoked"));
    let mut refused = false;
    for _ in 0..50 {
        let (code, _) = lab.curl("GET", "/v1/sys/health", None);
        if code == 0 {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        refused,
        "the revoked operator certificate still completes handshakes"
    );
}
