//! OpenSSL interoperability of `keep certificate …`.
//!
//! Everything keep writes must be usable by OpenSSL 3.0 (the stack of curl, Python and most
//! agents), and everything OpenSSL writes in the common forms must be usable by keep:
//!
//! - keys keep encrypts (PKCS#8, scrypt) decrypt in `openssl pkey` with the right password only,
//!   for every key type, and are created 0600;
//! - chains keep signs verify in `openssl verify`, and each certificate carries its key's
//!   public key;
//! - CA keys made by OpenSSL (PBES2 AES-256-CBC, scrypt, SEC1, PKCS#1) work as `--ca-key`;
//! - a wrong CA password fails cleanly: a clear message, no password echoed, no files left;
//! - CSRs go both ways, and `sign` honours `--eku` over what the request asks for;
//! - `p12` output opens in `openssl pkcs12` and, when Java is installed, in `keytool`.
//!
//! All key material is generated at test time in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// The password of every key keep encrypts here. The trailing newline is part of the file, as
/// `echo pw > file` makes it; keep and OpenSSL both ignore it.
const PASSWORD: &str = "correct horse battery staple";
/// A password that decrypts nothing, and that must never be echoed.
const WRONG_PASSWORD: &str = "not-the-password-4711";

/// Runs the keep binary in `dir`.
fn keep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keep")
}

/// Runs `openssl` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (is it installed?)")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a command succeeded, showing its output when it did not.
#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts that a command failed, showing its output when it did not.
#[track_caller]
fn assert_fails(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} should have failed but succeeded:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Writes a password file (with a trailing newline) and returns its name.
fn write_password(dir: &Path, name: &str, password: &str) -> String {
    fs::write(dir.join(name), format!("{password}\n")).unwrap();
    name.to_owned()
}

/// The `--kty/--curve/--size` flags of each key type under test.
const KEY_TYPES: &[(&str, &[&str])] = &[
    ("EC P-256 (default)", &[]),
    ("EC P-384", &["--kty", "EC", "--curve", "P-384"]),
    ("OKP Ed25519", &["--kty", "OKP", "--curve", "Ed25519"]),
    ("RSA 2048", &["--kty", "RSA", "--size", "2048"]),
];

fn key_flags(name: &str) -> &'static [&'static str] {
    KEY_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap()
}

/// `keep certificate create` a root CA `root.crt`/`root.key` encrypted with `pw`.
fn keep_root(dir: &Path, pw: &str, flags: &[&str]) {
    let mut args = vec![
        "certificate",
        "create",
        "root.interop.test",
        "Interop Root CA",
        "root.crt",
        "root.key",
        "--profile",
        "root-ca",
        "--password-file",
        pw,
    ];
    args.extend_from_slice(flags);
    assert_ok(
        &keep(dir, &args),
        "keep certificate create --profile root-ca",
    );
}

/// `keep certificate create` a leaf `crt`/`key` for `name`, signed by `ca`/`ca_key`.
fn keep_leaf(
    dir: &Path,
    name: &str,
    crt: &str,
    key: &str,
    (ca, ca_key, ca_pw): (&str, &str, Option<&str>),
    pw: &str,
    flags: &[&str],
) {
    let mut args = vec![
        "certificate",
        "create",
        name,
        crt,
        key,
        "--profile",
        "leaf",
        "--ca",
        ca,
        "--ca-key",
        ca_key,
        "--password-file",
        pw,
    ];
    if let Some(ca_pw) = ca_pw {
        args.extend_from_slice(&["--ca-password-file", ca_pw]);
    }
    args.extend_from_slice(flags);
    assert_ok(
        &keep(dir, &args),
        &format!("keep certificate create {name} signed by {ca} with --ca-key {ca_key}"),
    );
}

/// Asserts `openssl verify -CAfile ca crt` accepts the certificate.
#[track_caller]
fn assert_openssl_verifies(dir: &Path, ca: &str, crt: &str) {
    let out = openssl(dir, &["verify", "-CAfile", ca, crt]);
    assert_ok(&out, &format!("openssl verify -CAfile {ca} {crt}"));
    assert!(
        stdout(&out).contains(": OK"),
        "openssl verify did not say OK: {}",
        stdout(&out)
    );
}

/// Asserts the key file is readable by OpenSSL with the right password only, and that it is
/// the key of `crt` (same public key).
#[track_caller]
fn assert_key_matches(dir: &Path, key: &str, pw: &str, crt: &str) {
    let text = fs::read_to_string(dir.join(key)).unwrap();
    assert!(
        text.starts_with("-----BEGIN\x20ENCRYPTED PRIVATE KEY-----\n"),
        "{key} is not an encrypted PKCS#8 PEM file:\n{}",
        text.lines().next().unwrap_or_default()
    );

    let passin = format!("file:{pw}");
    let out = openssl(dir, &["pkey", "-in", key, "-passin", &passin, "-noout"]);
    assert_ok(&out, &format!("openssl pkey -in {key} -passin {passin}"));

    let out = openssl(
        dir,
        &["pkey", "-in", key, "-passin", "pass:wrong", "-noout"],
    );
    assert_fails(
        &out,
        &format!("openssl pkey -in {key} with a wrong password"),
    );

    let key_pub = openssl(dir, &["pkey", "-in", key, "-passin", &passin, "-pubout"]);
    assert_ok(&key_pub, "openssl pkey -pubout");
    let cert_pub = openssl(dir, &["x509", "-in", crt, "-pubkey", "-noout"]);
    assert_ok(&cert_pub, "openssl x509 -pubkey");
    assert!(
        stdout(&key_pub).contains("-----BEGIN PUBLIC KEY-----"),
        "no public key from {key}: {}",
        stdout(&key_pub)
    );
    assert_eq!(
        stdout(&key_pub).trim(),
        stdout(&cert_pub).trim(),
        "the public key of {key} is not the one in {crt}"
    );
}

/// Asserts a key file is 0600 and a certificate file is not writable by group or others.
#[track_caller]
fn assert_modes(dir: &Path, key: &str, crt: &str) {
    let key_mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "{key} has mode {key_mode:o}, want 600");
    let crt_mode = fs::metadata(dir.join(crt)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        crt_mode & 0o022,
        0,
        "{crt} has mode {crt_mode:o}: writable by group or others"
    );
}

/// Root CA and leaf of one key type, both keys encrypted: OpenSSL reads the keys, verifies
/// the chain, and each certificate holds its key's public key.
fn keep_chain_opens_in_openssl(kty: &str) {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let flags = key_flags(kty);
    let pw = write_password(dir, "pw", PASSWORD);

    keep_root(dir, &pw, flags);
    keep_leaf(
        dir,
        "leaf.interop.test",
        "leaf.crt",
        "leaf.key",
        ("root.crt", "root.key", Some(&pw)),
        &pw,
        flags,
    );

    for (crt, key) in [("root.crt", "root.key"), ("leaf.crt", "leaf.key")] {
        assert_modes(dir, key, crt);
        assert_key_matches(dir, key, &pw, crt);
    }
    assert_openssl_verifies(dir, "root.crt", "leaf.crt");
}

#[test]
fn ec_p256_chain_opens_in_openssl() {
    keep_chain_opens_in_openssl("EC P-256 (default)");
}

#[test]
fn ec_p384_chain_opens_in_openssl() {
    keep_chain_opens_in_openssl("EC P-384");
}

#[test]
fn ed25519_chain_opens_in_openssl() {
    keep_chain_opens_in_openssl("OKP Ed25519");
}

#[test]
fn rsa_2048_chain_opens_in_openssl() {
    keep_chain_opens_in_openssl("RSA 2048");
}

/// Makes an unencrypted P-256 CA with OpenSSL: `ca.crt` and `ca.key` (PKCS#8 "PRIVATE KEY").
fn openssl_ec_ca(dir: &Path) {
    let out = openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=OpenSSL Interop CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert_ok(&out, "openssl req -x509 (EC CA)");
}

/// Asserts the first line of a PEM file, so a test really feeds keep the form it claims to.
#[track_caller]
fn assert_pem_label(dir: &Path, file: &str, label: &str) {
    let text = fs::read_to_string(dir.join(file)).unwrap();
    let want = format!("-----BEGIN {label}-----");
    assert_eq!(
        text.lines().next().unwrap_or_default(),
        want,
        "{file} is not in the expected form"
    );
}

/// CA keys that OpenSSL encrypted (PBES2 with PBKDF2/AES-256-CBC, and with scrypt) work as
/// `--ca-key` with `--ca-password-file`.
#[test]
fn openssl_encrypted_ca_keys_sign_leaves() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    openssl_ec_ca(dir);
    let pw = write_password(dir, "pw", PASSWORD);
    let passout = format!("file:{pw}");

    let schemes: [(&str, &[&str]); 2] = [
        ("ca.pbkdf2.key", &["-v2", "aes-256-cbc"]),
        ("ca.scrypt.key", &["-scrypt"]),
    ];
    for (i, (ca_key, scheme)) in schemes.into_iter().enumerate() {
        let mut args = vec!["pkcs8", "-topk8", "-in", "ca.key", "-out", ca_key];
        args.extend_from_slice(scheme);
        args.extend_from_slice(&["-passout", &passout]);
        assert_ok(
            &openssl(dir, &args),
            &format!("openssl pkcs8 -topk8 {scheme:?}"),
        );
        assert_pem_label(dir, ca_key, "ENCRYPTED PRIVATE KEY");

        let crt = format!("leaf{i}.crt");
        let key = format!("leaf{i}.key");
        keep_leaf(
            dir,
            &format!("leaf{i}.interop.test"),
            &crt,
            &key,
            ("ca.crt", ca_key, Some(&pw)),
            &pw,
            &[],
        );
        assert_openssl_verifies(dir, "ca.crt", &crt);
        assert_key_matches(dir, &key, &pw, &crt);
    }
}

/// Unencrypted legacy key forms work as `--ca-key`: SEC1 "EC PRIVATE KEY" and PKCS#1
/// "RSA PRIVATE KEY" (with an RSA CA made by OpenSSL).
#[test]
fn openssl_legacy_ca_keys_sign_leaves() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let pw = write_password(dir, "pw", PASSWORD);

    // SEC1.
    openssl_ec_ca(dir);
    assert_ok(
        &openssl(dir, &["ec", "-in", "ca.key", "-out", "ca.sec1.key"]),
        "openssl ec (to SEC1)",
    );
    assert_pem_label(dir, "ca.sec1.key", "EC PRIVATE KEY");
    keep_leaf(
        dir,
        "sec1.interop.test",
        "sec1.crt",
        "sec1.key",
        ("ca.crt", "ca.sec1.key", None),
        &pw,
        &[],
    );
    assert_openssl_verifies(dir, "ca.crt", "sec1.crt");

    // PKCS#1.
    assert_ok(
        &openssl(dir, &["genrsa", "-out", "rsa.key", "2048"]),
        "openssl genrsa",
    );
    assert_ok(
        &openssl(
            dir,
            &[
                "rsa",
                "-in",
                "rsa.key",
                "-traditional",
                "-out",
                "rsa.pkcs1.key",
            ],
        ),
        "openssl rsa -traditional",
    );
    assert_pem_label(dir, "rsa.pkcs1.key", "RSA PRIVATE KEY");
    assert_ok(
        &openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "rsa.key",
                "-out",
                "rsa-ca.crt",
                "-days",
                "30",
                "-subj",
                "/CN=OpenSSL Interop RSA CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ),
        "openssl req -x509 (RSA CA)",
    );
    keep_leaf(
        dir,
        "pkcs1.interop.test",
        "pkcs1.crt",
        "pkcs1.key",
        ("rsa-ca.crt", "rsa.pkcs1.key", None),
        &pw,
        &[],
    );
    assert_openssl_verifies(dir, "rsa-ca.crt", "pkcs1.crt");
}

/// A wrong `--ca-password-file` fails with a message that says so, never echoes the password,
/// and leaves no output (not even a temporary file) behind.
#[test]
fn wrong_ca_password_fails_cleanly() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let pw = write_password(dir, "pw", PASSWORD);
    let wrong = write_password(dir, "wrong-pw", WRONG_PASSWORD);
    keep_root(dir, &pw, &[]);

    let before: Vec<_> = list_dir(dir);
    let out = keep(
        dir,
        &[
            "certificate",
            "create",
            "leaf.interop.test",
            "leaf.crt",
            "leaf.key",
            "--ca",
            "root.crt",
            "--ca-key",
            "root.key",
            "--ca-password-file",
            &wrong,
            "--password-file",
            &pw,
        ],
    );
    assert_fails(
        &out,
        "keep certificate create with a wrong --ca-password-file",
    );
    let err = stderr(&out);
    assert!(
        err.to_lowercase().contains("wrong password"),
        "the error does not say the password is wrong:\n{err}"
    );
    assert!(
        err.contains("root.key"),
        "the error does not name the key file:\n{err}"
    );
    for secret in [WRONG_PASSWORD, PASSWORD] {
        assert!(
            !err.contains(secret) && !stdout(&out).contains(secret),
            "a password was printed:\nstdout:\n{}\nstderr:\n{err}",
            stdout(&out)
        );
    }
    assert_eq!(
        list_dir(dir),
        before,
        "files were left behind by the failed command"
    );
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `keep certificate create --csr` makes a request whose self-signature OpenSSL checks.
#[test]
fn keep_csr_verifies_in_openssl() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let pw = write_password(dir, "pw", PASSWORD);
    let out = keep(
        dir,
        &[
            "certificate",
            "create",
            "agent-7.claw.internal",
            "agent-7.csr",
            "agent-7.key",
            "--csr",
            "--password-file",
            &pw,
        ],
    );
    assert_ok(&out, "keep certificate create --csr");
    assert_pem_label(dir, "agent-7.csr", "CERTIFICATE REQUEST");
    assert_modes(dir, "agent-7.key", "agent-7.csr");

    let out = openssl(
        dir,
        &["req", "-in", "agent-7.csr", "-verify", "-noout", "-subject"],
    );
    assert_ok(&out, "openssl req -verify");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"),
        "openssl did not report the CSR signature as OK:\n{text}"
    );
    assert!(
        text.contains("agent-7.claw.internal"),
        "the CSR subject is not agent-7.claw.internal:\n{text}"
    );

    // The request's key is the key keep wrote.
    let csr_pub = openssl(dir, &["req", "-in", "agent-7.csr", "-pubkey", "-noout"]);
    assert_ok(&csr_pub, "openssl req -pubkey");
    let key_pub = openssl(
        dir,
        &[
            "pkey",
            "-in",
            "agent-7.key",
            "-passin",
            &format!("file:{pw}"),
            "-pubout",
        ],
    );
    assert_ok(&key_pub, "openssl pkey -pubout");
    assert_eq!(stdout(&csr_pub).trim(), stdout(&key_pub).trim());
}

/// A CSR made by OpenSSL, signed by `keep certificate sign --eku client`: the certificate
/// (on stdout) keeps the requested SAN and carries clientAuth only.
#[test]
fn openssl_csr_signed_by_keep() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let pw = write_password(dir, "pw", PASSWORD);
    keep_root(dir, &pw, &[]);

    let out = openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            "agent-9.key",
            "-out",
            "agent-9.csr",
            "-subj",
            "/CN=agent-9",
            "-addext",
            "subjectAltName=DNS:agent-9.claw.internal",
        ],
    );
    assert_ok(&out, "openssl req -new");

    let out = keep(
        dir,
        &[
            "certificate",
            "sign",
            "agent-9.csr",
            "root.crt",
            "root.key",
            "--eku",
            "client",
            "--ca-password-file",
            &pw,
        ],
    );
    assert_ok(&out, "keep certificate sign --eku client");
    let pem = stdout(&out);
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "keep certificate sign did not print a certificate:\n{pem}"
    );
    fs::write(dir.join("agent-9.crt"), &pem).unwrap();

    let out = openssl(
        dir,
        &[
            "x509",
            "-in",
            "agent-9.crt",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
    );
    assert_ok(&out, "openssl x509 -ext");
    let text = stdout(&out);
    assert!(text.contains("CN = agent-9"), "subject lost:\n{text}");
    assert!(
        text.contains("DNS:agent-9.claw.internal"),
        "the requested SAN is missing:\n{text}"
    );
    assert!(
        text.contains("TLS Web Client Authentication"),
        "clientAuth is missing:\n{text}"
    );
    assert!(
        !text.contains("TLS Web Server Authentication"),
        "--eku client must not give serverAuth:\n{text}"
    );

    assert_openssl_verifies(dir, "root.crt", "agent-9.crt");
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-purpose",
            "sslclient",
            "agent-9.crt",
        ],
    );
    assert_ok(&out, "openssl verify -purpose sslclient");
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-purpose",
            "sslserver",
            "agent-9.crt",
        ],
    );
    assert_fails(
        &out,
        "openssl verify -purpose sslserver of a client-only cert",
    );

    // The certificate holds the CSR's key.
    let crt_pub = openssl(dir, &["x509", "-in", "agent-9.crt", "-pubkey", "-noout"]);
    let key_pub = openssl(dir, &["pkey", "-in", "agent-9.key", "-pubout"]);
    assert_eq!(stdout(&crt_pub).trim(), stdout(&key_pub).trim());
}

/// `keep certificate p12` output opens in `openssl pkcs12` (key + leaf + CA) and in Java's
/// `keytool` when it is installed.
#[test]
fn p12_opens_in_openssl_and_keytool() {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    let pw = write_password(dir, "pw", PASSWORD);
    let p12pw = write_password(dir, "p12pw", "p12 export password");
    keep_root(dir, &pw, &[]);
    keep_leaf(
        dir,
        "agent-01",
        "leaf.crt",
        "leaf.key",
        ("root.crt", "root.key", Some(&pw)),
        &pw,
        &["--eku", "client"],
    );

    let out = keep(
        dir,
        &[
            "certificate",
            "p12",
            "out.p12",
            "leaf.crt",
            "leaf.key",
            "--ca",
            "root.crt",
            "--password-file",
            &p12pw,
            "--key-password-file",
            &pw,
        ],
    );
    assert_ok(&out, "keep certificate p12");
    let mode = fs::metadata(dir.join("out.p12"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "out.p12 holds a private key but has mode {mode:o}"
    );

    let out = openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            "out.p12",
            "-passin",
            &format!("file:{p12pw}"),
            "-nodes",
            "-info",
        ],
    );
    assert_ok(&out, "openssl pkcs12 -info");
    let text = stdout(&out);
    assert_eq!(
        text.matches("-----BEGIN\x20PRIVATE KEY-----").count(),
        1,
        "want exactly one private key in out.p12:\n{text}\n{}",
        stderr(&out)
    );
    assert_eq!(
        text.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "want the leaf and the root in out.p12:\n{text}\n{}",
        stderr(&out)
    );
    assert!(text.contains("agent-01"), "the leaf is missing:\n{text}");
    assert!(
        text.contains("Interop Root CA"),
        "the root is missing:\n{text}"
    );
    // The key inside is the leaf's key.
    let p12_key_start = text.find("-----BEGIN\x20PRIVATE KEY-----").unwrap();
    let p12_key_end =
        text.find("-----END PRIVATE KEY-----").unwrap() + "-----END PRIVATE KEY-----\n".len();
    fs::write(dir.join("p12.key"), &text[p12_key_start..p12_key_end]).unwrap();
    let p12_pub = openssl(dir, &["pkey", "-in", "p12.key", "-pubout"]);
    assert_ok(&p12_pub, "openssl pkey (key from the p12)");
    let crt_pub = openssl(dir, &["x509", "-in", "leaf.crt", "-pubkey", "-noout"]);
    assert_eq!(stdout(&p12_pub).trim(), stdout(&crt_pub).trim());

    let out = openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            "out.p12",
            "-passin",
            "pass:wrong",
            "-nodes",
        ],
    );
    assert_fails(&out, "openssl pkcs12 with a wrong password");

    match Command::new("keytool")
        .args([
            "-list",
            "-keystore",
            "out.p12",
            "-storetype",
            "PKCS12",
            "-storepass:file",
            &p12pw,
        ])
        .current_dir(dir)
        .output()
    {
        Ok(out) => {
            assert_ok(&out, "keytool -list");
            let text = stdout(&out);
            assert!(
                text.to_lowercase().contains("agent-01"),
                "keytool does not list the alias agent-01:\n{text}"
            );
            assert!(
                text.contains("PrivateKeyEntry"),
                "keytool does not see a private key entry:\n{text}"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: keytool is not on PATH; checked out.p12 with openssl only");
        }
        Err(e) => panic!("cannot run keytool: {e}"),
    }
}
