//! OpenSSL as an independent oracle: the fixtures must pass or fail `openssl verify` for exactly
//! the reason their names promise, and OpenSSL must read every key this crate writes.
//!
//! These tests fail (rather than skip) when `openssl` is missing: a silently skipped oracle
//! proves nothing.
// Test code: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keep_test_support::{KeyAlg, Leaf, LeafSpec, TestPki, TestPkiFiles, tempdir};

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run `openssl` (OpenSSL 3 CLI must be on PATH for these tests)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Fixture {
    pki: TestPki,
    files: TestPkiFiles,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let pki = TestPki::new();
        let dir = tempdir();
        let files = pki.write_to(dir.path());
        Fixture {
            pki,
            files,
            _dir: dir,
        }
    }

    /// Writes the leaf certificate alone (`openssl verify` checks the first certificate of the
    /// file and we want no doubt about which one that is).
    fn leaf_file(&self, name: &str, leaf: &Leaf) -> PathBuf {
        let path = self.files.dir.join(format!("{name}.leaf.pem"));
        std::fs::write(&path, &leaf.cert_pem).unwrap();
        path
    }

    /// `openssl verify -CAfile root -untrusted intermediate <extra…> leaf`.
    fn verify(&self, leaf: &Path, extra: &[&str]) -> Output {
        let root = self.files.root_cert.to_str().unwrap();
        let int = self.files.intermediate_cert.to_str().unwrap();
        let mut args = vec!["verify", "-CAfile", root, "-untrusted", int];
        args.extend_from_slice(extra);
        args.push(leaf.to_str().unwrap());
        openssl(&args)
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: openssl rejected it:\n{}",
        text(out)
    );
    assert!(text(out).contains(": OK"), "{what}:\n{}", text(out));
}

fn assert_rejected(out: &Output, reason: &str, what: &str) {
    assert!(
        !out.status.success(),
        "{what}: openssl accepted it:\n{}",
        text(out)
    );
    assert!(
        text(out).contains(reason),
        "{what}: expected {reason:?} in:\n{}",
        text(out)
    );
}

#[test]
fn valid_client_and_admin_verify_for_ssl_client() {
    let f = Fixture::new();
    for (name, leaf) in [("client", &f.pki.client), ("admin", &f.pki.admin)] {
        let path = f.leaf_file(name, leaf);
        assert_ok(&f.verify(&path, &["-purpose", "sslclient"]), name);
    }
}

#[test]
fn valid_server_verifies_for_ssl_server_and_its_names() {
    let f = Fixture::new();
    let path = f.leaf_file("server", &f.pki.server);
    assert_ok(&f.verify(&path, &["-purpose", "sslserver"]), "server");
    for host in ["vault.claw.internal", "localhost"] {
        let out = f.verify(&path, &["-purpose", "sslserver", "-verify_hostname", host]);
        assert_ok(&out, host);
    }
    let out = f.verify(&path, &["-purpose", "sslserver", "-verify_ip", "127.0.0.1"]);
    assert_ok(&out, "127.0.0.1");
}

#[test]
fn ca_bundle_alone_verifies_the_chain_file_leaf() {
    // The chain file's first certificate is the leaf; the bundle holds root + intermediate.
    let f = Fixture::new();
    let bundle = f.files.ca_bundle.to_str().unwrap();
    let out = openssl(&[
        "verify",
        "-CAfile",
        bundle,
        "-purpose",
        "sslclient",
        f.files.client_cert.to_str().unwrap(),
    ]);
    assert_ok(&out, "client.crt against ca-bundle.crt");
}

#[test]
fn expired_client_is_rejected_as_expired() {
    let f = Fixture::new();
    let path = f.leaf_file("expired", &f.pki.expired_client);
    let out = f.verify(&path, &["-purpose", "sslclient"]);
    assert_rejected(&out, "certificate has expired", "expired_client");
}

#[test]
fn not_yet_valid_client_is_rejected_as_not_yet_valid() {
    let f = Fixture::new();
    let path = f.leaf_file("future", &f.pki.not_yet_valid_client);
    let out = f.verify(&path, &["-purpose", "sslclient"]);
    assert_rejected(&out, "certificate is not yet valid", "not_yet_valid_client");
}

#[test]
fn server_auth_only_client_is_rejected_for_ssl_client_purpose() {
    let f = Fixture::new();
    let path = f.leaf_file("agent-02", &f.pki.server_auth_only_client);
    let out = f.verify(&path, &["-purpose", "sslclient"]);
    assert_rejected(
        &out,
        "unsuitable certificate purpose",
        "server_auth_only_client",
    );
    // Control: the chain itself is fine; only the purpose is wrong.
    assert_ok(&f.verify(&path, &["-purpose", "sslserver"]), "as a server");
}

#[test]
fn wrong_san_server_is_rejected_for_the_vault_hostname() {
    let f = Fixture::new();
    let path = f.leaf_file("wrong-san", &f.pki.wrong_san_server);
    let out = f.verify(
        &path,
        &[
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "vault.claw.internal",
        ],
    );
    assert_rejected(&out, "hostname mismatch", "wrong_san_server");
    assert_ok(
        &f.verify(&path, &["-purpose", "sslserver"]),
        "without a hostname",
    );
}

#[test]
fn foreign_client_is_rejected_as_unknown_issuer() {
    let f = Fixture::new();
    let path = f.leaf_file("foreign", &f.pki.foreign_client);
    let out = f.verify(&path, &["-purpose", "sslclient"]);
    assert_rejected(
        &out,
        "unable to get local issuer certificate",
        "foreign_client",
    );
    // Control: it does verify against its own root.
    let out = openssl(&[
        "verify",
        "-CAfile",
        f.files.foreign_ca_cert.to_str().unwrap(),
        "-purpose",
        "sslclient",
        path.to_str().unwrap(),
    ]);
    assert_ok(&out, "foreign_client against foreign_ca");
}

#[test]
fn crl_check_rejects_revoked_client_and_accepts_valid_client() {
    let f = Fixture::new();
    let crl = f.files.crl.to_str().unwrap();
    for check in ["-crl_check", "-crl_check_all"] {
        let revoked = f.leaf_file("revoked", &f.pki.revoked_client);
        let out = f.verify(&revoked, &["-purpose", "sslclient", check, "-CRLfile", crl]);
        assert_rejected(&out, "certificate revoked", check);

        let client = f.leaf_file("client", &f.pki.client);
        let out = f.verify(&client, &["-purpose", "sslclient", check, "-CRLfile", crl]);
        assert_ok(&out, &format!("client with {check}"));
    }
    // Control: without the CRL the revoked client is otherwise valid.
    let revoked = f.leaf_file("revoked", &f.pki.revoked_client);
    assert_ok(
        &f.verify(&revoked, &["-purpose", "sslclient"]),
        "revoked without CRL",
    );
}

#[test]
fn crl_with_revokes_a_fresh_leaf_for_openssl() {
    let f = Fixture::new();
    let agent = f.pki.issue(&LeafSpec::agent("agent-07"));
    let crl = f.pki.crl_with(&[&agent]);
    let crl_path = f.files.dir.join("fresh.crl");
    std::fs::write(&crl_path, format!("{}{}", crl.pem, f.pki.root_crl.pem)).unwrap();
    let path = f.leaf_file("agent-07", &agent);
    let out = f.verify(
        &path,
        &["-crl_check_all", "-CRLfile", crl_path.to_str().unwrap()],
    );
    assert_rejected(&out, "certificate revoked", "agent-07");
}

#[test]
fn openssl_reads_every_key_and_it_matches_its_certificate() {
    let pki = TestPki::new();
    let dir = tempdir();
    for alg in KeyAlg::ALL {
        let leaf = pki.issue(&LeafSpec::client("alg-check").alg(alg));
        let files = leaf.write_to(dir.path(), &format!("{alg:?}"));
        let key_pub = openssl(&["pkey", "-in", files.key.to_str().unwrap(), "-pubout"]);
        assert!(
            key_pub.status.success(),
            "{alg:?}: openssl can't read the key:\n{}",
            text(&key_pub)
        );
        let cert_pub = openssl(&[
            "x509",
            "-in",
            files.cert.to_str().unwrap(),
            "-noout",
            "-pubkey",
        ]);
        assert!(cert_pub.status.success(), "{alg:?}:\n{}", text(&cert_pub));
        assert_eq!(
            key_pub.stdout, cert_pub.stdout,
            "{alg:?}: key matches certificate"
        );
    }
    let files = pki.write_to(dir.path());
    for key in [
        &files.root_key,
        &files.intermediate_key,
        &files.foreign_ca_key,
    ] {
        let out = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout"]);
        assert!(out.status.success(), "{}:\n{}", key.display(), text(&out));
    }
}

#[test]
fn openssl_sees_the_same_serial() {
    let f = Fixture::new();
    let out = openssl(&[
        "x509",
        "-in",
        f.files.client_cert.to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.trim().to_ascii_lowercase(),
        format!("serial={}", f.pki.client.serial_hex())
    );
}
