//! `keep certificate` end to end: the forum thread's recipe verbatim, openssl as the oracle,
//! and the errors and exit codes users and systemd rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn keep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run keep")
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = keep(dir, args);
    assert!(
        out.status.success(),
        "keep {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl")
}

fn inspect_json(dir: &Path, file: &str) -> serde_json::Value {
    let out = ok(dir, &["certificate", "inspect", file, "--format", "json"]);
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

/// The three commands from the OpenClaw forum thread, with `step` replaced by `keep`, verbatim.
#[test]
fn the_threads_three_commands_work_verbatim() {
    let tmp = keep_test_support::tempdir();
    let d = tmp.path();
    let root = ok(
        d,
        &[
            "certificate",
            "create",
            "root.claw.internal",
            "Claw Root CA",
            "root_ca.crt",
            "root_ca.key",
            "--profile",
            "root-ca",
            "--no-password",
            "--insecure",
        ],
    );
    assert!(stderr(&root).contains("Expires: "), "{}", stderr(&root));
    assert!(
        stderr(&root).contains("UNENCRYPTED"),
        "plaintext keys are announced loudly"
    );
    ok(
        d,
        &[
            "certificate",
            "create",
            "vault.claw.internal",
            "Vault Server",
            "vault.crt",
            "vault.key",
            "--profile",
            "leaf",
            "--ca",
            "root_ca.crt",
            "--ca-key",
            "root_ca.key",
            "--no-password",
            "--insecure",
            "--san",
            "vault.claw.internal",
        ],
    );
    let agent = ok(
        d,
        &[
            "certificate",
            "create",
            "agent.claw.internal",
            "OpenClaw Agent",
            "agent.crt",
            "agent.key",
            "--profile",
            "leaf",
            "--ca",
            "root_ca.crt",
            "--ca-key",
            "root_ca.key",
            "--no-password",
            "--insecure",
        ],
    );
    assert!(
        stderr(&agent).contains("(in 90 days)"),
        "{}",
        stderr(&agent)
    );

    let root = inspect_json(d, "root_ca.crt");
    assert_eq!(root["common_name"], "Claw Root CA");
    assert_eq!(root["is_ca"], true);
    let vault = inspect_json(d, "vault.crt");
    assert_eq!(vault["common_name"], "Vault Server");
    assert_eq!(
        vault["sans"]["dns"],
        serde_json::json!(["vault.claw.internal"])
    );
    let agent = inspect_json(d, "agent.crt");
    assert_eq!(agent["common_name"], "OpenClaw Agent");
    assert_eq!(
        agent["sans"]["dns"],
        serde_json::json!(["agent.claw.internal"])
    );
    let eku = agent["extended_key_usage"].as_array().unwrap();
    assert!(eku.contains(&"clientAuth".into()) && eku.contains(&"serverAuth".into()));

    // openssl is the independent judge of purpose and chain.
    let v = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root_ca.crt",
            "-purpose",
            "sslserver",
            "vault.crt",
        ],
    );
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let v = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root_ca.crt",
            "-purpose",
            "sslclient",
            "agent.crt",
        ],
    );
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let v = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root_ca.crt",
            "-verify_hostname",
            "vault.claw.internal",
            "vault.crt",
        ],
    );
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    for f in ["root_ca.key", "vault.key", "agent.key"] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // keep's own checks agree, and its certs lint clean.
    ok(
        d,
        &[
            "certificate",
            "verify",
            "agent.crt",
            "--roots",
            "root_ca.crt",
            "--purpose",
            "client",
        ],
    );
    ok(
        d,
        &[
            "certificate",
            "lint",
            "root_ca.crt",
            "vault.crt",
            "agent.crt",
        ],
    );
}

/// keep's own form: encrypted keys by default, password from a file.
#[test]
fn keys_are_encrypted_by_default_and_openssl_reads_them() {
    let tmp = keep_test_support::tempdir();
    let d = tmp.path();
    std::fs::write(d.join("pw"), "s3cret-lab-pass\n").unwrap();
    ok(
        d,
        &[
            "certificate",
            "create",
            "root.claw.internal",
            "Claw Root CA",
            "root_ca.crt",
            "root_ca.key",
            "--profile",
            "root-ca",
            "--password-file",
            "pw",
        ],
    );
    let key = std::fs::read_to_string(d.join("root_ca.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN\x20ENCRYPTED PRIVATE KEY-----\n"),
        "{key}"
    );
    let p = openssl(
        d,
        &["pkey", "-in", "root_ca.key", "-passin", "file:pw", "-noout"],
    );
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    ok(
        d,
        &[
            "certificate",
            "create",
            "vault.claw.internal",
            "vault.crt",
            "vault.key",
            "--ca",
            "root_ca.crt",
            "--ca-key",
            "root_ca.key",
            "--ca-password-file",
            "pw",
            "--password-file",
            "pw",
        ],
    );
    // Without a terminal and without a password file, keep explains instead of hanging.
    let out = keep(
        d,
        &[
            "certificate",
            "create",
            "x.test",
            "x.crt",
            "x.key",
            "--profile",
            "self-signed",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--password-file"), "{}", stderr(&out));
    assert!(!d.join("x.key").exists() && !d.join("x.crt").exists());
    // An encrypted CA key without its password is refused the same way.
    let out = keep(
        d,
        &[
            "certificate",
            "create",
            "y.test",
            "y.crt",
            "y.key",
            "--ca",
            "root_ca.crt",
            "--ca-key",
            "root_ca.key",
            "--no-password",
            "--insecure",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("--ca-password-file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn refusals_are_specific_and_leave_nothing_behind() {
    let tmp = keep_test_support::tempdir();
    let d = tmp.path();
    ok(
        d,
        &[
            "certificate",
            "create",
            "Lab Root",
            "root.crt",
            "root.key",
            "--profile",
            "root-ca",
            "--no-password",
            "--insecure",
        ],
    );
    let before = std::fs::read(d.join("root.key")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "certificate",
                "create",
                "Lab Root",
                "root.crt",
                "root.key",
                "--profile",
                "root-ca",
                "--no-password",
                "--insecure",
            ],
            "already exists",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--no-password",
            ],
            "--insecure",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--no-password",
                "--insecure",
            ],
            "--profile self-signed",
        ),
        (
            &[
                "certificate",
                "create",
                "Vault Server",
                "a.crt",
                "a.key",
                "--ca",
                "root.crt",
                "--ca-key",
                "root.key",
                "--no-password",
                "--insecure",
            ],
            "use a host name as SUBJECT",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--ca",
                "root.crt",
                "--ca-key",
                "root.key",
                "--no-password",
                "--insecure",
                "--not-after",
                "soon",
            ],
            "examples: 24h",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--kty",
                "RSA",
                "--size",
                "1024",
                "--profile",
                "self-signed",
                "--no-password",
                "--insecure",
            ],
            "2048, 3072 or 4096",
        ),
        (
            &[
                "certificate",
                "create",
                "r2",
                "a.crt",
                "a.key",
                "--profile",
                "root-ca",
                "--eku",
                "client",
                "--no-password",
                "--insecure",
            ],
            "restricts every",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--ca",
                "missing.crt",
                "--ca-key",
                "root.key",
                "--no-password",
                "--insecure",
            ],
            "missing.crt",
        ),
        (
            &[
                "certificate",
                "create",
                "a.test",
                "a.crt",
                "a.key",
                "--ca",
                "root.key",
                "--ca-key",
                "root.key",
                "--no-password",
                "--insecure",
            ],
            "PRIVATE KEY",
        ),
    ];
    for (args, words) in cases {
        let out = keep(d, args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(words),
            "{args:?}: want {words:?} in {}",
            stderr(&out)
        );
        assert!(
            !d.join("a.crt").exists() && !d.join("a.key").exists(),
            "{args:?} wrote files"
        );
    }
    assert_eq!(
        std::fs::read(d.join("root.key")).unwrap(),
        before,
        "root.key was clobbered"
    );
    // --force does replace.
    ok(
        d,
        &[
            "certificate",
            "create",
            "Lab Root",
            "root.crt",
            "root.key",
            "--profile",
            "root-ca",
            "--no-password",
            "--insecure",
            "--force",
        ],
    );
    assert_ne!(std::fs::read(d.join("root.key")).unwrap(), before);
}

#[test]
fn needs_renewal_exit_codes_are_systemd_friendly() {
    let tmp = keep_test_support::tempdir();
    let d = tmp.path();
    let mk = |name: &str, nb: &str, na: &str| {
        ok(
            d,
            &[
                "certificate",
                "create",
                name,
                &format!("{name}.crt"),
                &format!("{name}.key"),
                "--profile",
                "self-signed",
                "--no-password",
                "--insecure",
                "--not-before",
                nb,
                "--not-after",
                na,
            ],
        );
    };
    mk("fresh.test", "-1h", "23h"); // 1/24 of its life gone
    mk("old.test", "-20h", "4h"); // 5/6 gone
    mk("gone.test", "-48h", "-24h"); // expired
    let code = |args: &[&str]| keep(d, args).status.code();
    assert_eq!(
        code(&["certificate", "needs-renewal", "fresh.test.crt"]),
        Some(1)
    );
    assert_eq!(
        code(&["certificate", "needs-renewal", "old.test.crt"]),
        Some(0)
    );
    assert_eq!(
        code(&["certificate", "needs-renewal", "gone.test.crt"]),
        Some(0)
    );
    assert_eq!(
        code(&[
            "certificate",
            "needs-renewal",
            "fresh.test.crt",
            "--expires-in",
            "23h30m"
        ]),
        Some(0)
    );
    assert_eq!(
        code(&[
            "certificate",
            "needs-renewal",
            "old.test.crt",
            "--expires-in",
            "10%"
        ]),
        Some(1)
    );
    assert_eq!(code(&["certificate", "needs-renewal", "nope.crt"]), Some(2));
    assert_eq!(
        code(&["certificate", "needs-renewal", "fresh.test.key"]),
        Some(255)
    );
    assert_eq!(
        code(&[
            "certificate",
            "needs-renewal",
            "fresh.test.crt",
            "--expires-in",
            "150%"
        ]),
        Some(255)
    );
    let v = keep(d, &["certificate", "needs-renewal", "-v", "gone.test.crt"]);
    assert!(stderr(&v).contains("expired"), "{}", stderr(&v));
}

/// lint must judge certificates it did not make: openssl's common mistakes.
#[test]
fn lint_flags_openssl_made_mistakes() {
    let tmp = keep_test_support::tempdir();
    let d = tmp.path();
    let run = |args: &[&str]| {
        let o = openssl(d, args);
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // A CA and a helper to sign with it.
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "365",
        "-subj",
        "/CN=Lab CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    let sign = |name: &str, newkey: &[&str], ext: &str, extra: &[&str]| {
        let mut req = vec!["req", "-new", "-nodes", "-keyout"];
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subj = format!("/CN={name}");
        req.extend([key.as_str(), "-out", csr.as_str(), "-subj", subj.as_str()]);
        req.extend(newkey);
        run(&req);
        std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
        let extfile = format!("{name}.ext");
        let mut x = vec![
            "x509",
            "-req",
            "-in",
            csr.as_str(),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            crt.as_str(),
            "-days",
            "90",
            "-extfile",
            extfile.as_str(),
        ];
        x.extend(extra);
        run(&x);
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    sign(
        "agent-no-clientauth",
        &ec,
        "subjectAltName=DNS:agent.claw.internal\nextendedKeyUsage=serverAuth\n",
        &[],
    );
    sign(
        "vault.claw.internal",
        &ec,
        "extendedKeyUsage=serverAuth\n",
        &[],
    );
    sign(
        "sha1.claw.internal",
        &ec,
        "subjectAltName=DNS:sha1.claw.internal\n",
        &["-sha1"],
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "weak.key",
        "-out",
        "weak.crt",
        "-days",
        "30",
        "-subj",
        "/CN=weak.claw.internal",
        "-addext",
        "subjectAltName=DNS:weak.claw.internal",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ekuca.key",
        "-out",
        "ekuca.crt",
        "-days",
        "365",
        "-subj",
        "/CN=EKU CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]);

    let cases: &[(&str, &[&str], &str)] = &[
        (
            "agent-no-clientauth.crt",
            &["--purpose", "client"],
            "client-missing-client-auth",
        ),
        ("vault.claw.internal.crt", &[], "cn-only-server-name"),
        ("sha1.claw.internal.crt", &[], "weak-signature-algorithm"),
        ("weak.crt", &[], "weak-rsa-key"),
        ("ekuca.crt", &[], "ca-has-eku"),
    ];
    for (file, extra, id) in cases {
        let mut args = vec!["certificate", "lint", file];
        args.extend(*extra);
        args.extend(["--format", "json"]);
        let out = keep(d, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let findings = v[0]["findings"].as_array().unwrap();
        let f = findings
            .iter()
            .find(|f| f["id"] == *id)
            .unwrap_or_else(|| panic!("{file}: no {id} in {findings:?}"));
        assert_eq!(f["severity"], "error", "{file}: {f}");
        assert!(!f["fix"].as_str().unwrap().is_empty());
        // The text form names the id and the fix too.
        let mut args = vec!["certificate", "lint", file];
        args.extend(*extra);
        let text = stdout(&keep(d, &args));
        assert!(
            text.contains(&format!("error[{id}]")) && text.contains("fix:"),
            "{text}"
        );
    }
    // The same agent cert is fine when nobody claims it is a client cert... but with a proper
    // clientAuth EKU it passes even as a client.
    sign(
        "agent-good",
        &ec,
        "subjectAltName=DNS:agent-good.claw.internal\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid\n",
        &[],
    );
    let out = keep(
        d,
        &[
            "certificate",
            "lint",
            "--purpose",
            "client",
            "agent-good.crt",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn verify_explains_failures_with_exit_1() {
    let tmp = keep_test_support::tempdir();
    let pki = keep_test_support::TestPki::new();
    let files = pki.write_to(tmp.path());
    let d = tmp.path();
    let root = files.root_cert.to_str().unwrap();
    let p = |f: &std::path::PathBuf| f.to_str().unwrap().to_owned();
    let out = ok(
        d,
        &[
            "certificate",
            "verify",
            &p(&files.client_cert),
            "--roots",
            root,
            "--purpose",
            "client",
        ],
    );
    assert!(
        stdout(&out).contains("valid for client"),
        "{}",
        stdout(&out)
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![p(&files.expired_client_cert)], "expired"),
        (
            vec![
                p(&files.server_auth_only_client_cert),
                "--purpose".into(),
                "client".into(),
            ],
            "--eku client",
        ),
        (vec![p(&files.foreign_client_cert)], "unknown issuer"),
        (
            vec![
                p(&files.wrong_san_server_cert),
                "--host".into(),
                "vault.claw.internal".into(),
            ],
            "--san vault.claw.internal",
        ),
        (
            vec![p(&files.revoked_client_cert), "--crl".into(), p(&files.crl)],
            "revoked",
        ),
    ];
    for (args, words) in cases {
        let mut full = vec!["certificate".to_owned(), "verify".into()];
        full.extend(args.clone());
        full.extend(["--roots".into(), root.into()]);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = keep(d, &refs);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(words),
            "{args:?}: want {words:?} in {}",
            stderr(&out)
        );
    }
}

/// `inspect https://…` shows what a server presents, even one that demands a client cert.
#[test]
fn inspect_reads_a_live_mtls_endpoint() {
    let tmp = keep_test_support::tempdir();
    let pki = keep_test_support::TestPki::new();
    let files = pki.write_to(tmp.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(&files.server_cert)
        .arg("-key")
        .arg(&files.server_key)
        .arg("-CAfile")
        .arg(&files.ca_bundle)
        .args(["-Verify", "2", "-verify_return_error", "-www", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}");
    let out = ok(
        tmp.path(),
        &[
            "certificate",
            "inspect",
            &url,
            "--bundle",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["common_name"], "vault.claw.internal");
    assert_eq!(v[1]["common_name"], "Keep Test Intermediate CA");
    let text = ok(tmp.path(), &["certificate", "inspect", &url]);
    assert!(stdout(&text).contains("not verified"), "{}", stdout(&text));
    let fp = ok(tmp.path(), &["certificate", "fingerprint", &url]);
    let local = ok(
        tmp.path(),
        &[
            "certificate",
            "fingerprint",
            files.server_cert.to_str().unwrap(),
        ],
    );
    assert_eq!(stdout(&fp), stdout(&local));
    assert_eq!(stdout(&local).trim().len(), 64);
}

#[test]
fn help_explains_the_positional_forms() {
    let tmp = keep_test_support::tempdir();
    let out = ok(tmp.path(), &["certificate", "create", "--help"]);
    let help = stdout(&out);
    assert!(
        help.contains("SUBJECT [COMMON_NAME] CRT_FILE KEY_FILE"),
        "{help}"
    );
    assert!(help.contains("--no-password"), "{help}");
    let bad = keep(tmp.path(), &["certificate", "create", "only-one"]);
    assert_eq!(bad.status.code(), Some(64));
}
