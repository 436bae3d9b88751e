//! `server::build` (and `client::build`) refuse broken or weak settings with an error that
//! names the field and the file (and line), says what is wrong, and says the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use keep_pki::key::load_private_key;
use keep_pki::pem::Source;
use keep_test_support::{TestPki, TestPkiFiles};
use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use keep_tls::server::{self, TlsConfigError, TlsSettings, TlsVersion};
use secrecy::SecretString;

fn base(files: &TestPkiFiles) -> TlsSettings {
    TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle)
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// One row: what to break, and what the message must say.
struct Case {
    name: &'static str,
    result: Result<(), TlsConfigError>,
    field: Option<&'static str>,
    file: Option<PathBuf>,
    says: Vec<String>,
}

#[test]
fn build_error_table() {
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let d = dir.path();
    let build = |s: &TlsSettings| server::build(s).map(|_| ());

    // A CA bundle with the agent's leaf after the root: the leaf starts on the line after the
    // root's PEM.
    let leaf_line = pki.root.cert_pem.lines().count() + 1;
    let bundle_with_leaf = write(
        d,
        "bundle-with-leaf.crt",
        &format!("{}{}", pki.root.cert_pem, pki.client.cert_pem),
    );
    let missing = d.join("missing.crt");
    let password = SecretString::from("right password".to_owned());
    let encrypted = write(
        d,
        "server-enc.key",
        &load_private_key(
            pki.server.key_pem.as_bytes(),
            &Source::Other("k".into()),
            None,
        )
        .unwrap()
        .to_pem_encrypted(&password)
        .unwrap(),
    );
    let wrong_pw = write(d, "wrong.pass", "wrong password\n");
    let garbage_crl = write(d, "garbage.crl", "this is not a CRL\n");

    let cases = vec![
        Case {
            name: "min_version 1.0",
            result: "1.0".parse::<TlsVersion>().map(|_| ()),
            field: Some("min_version"),
            file: None,
            says: vec![
                "weak".into(),
                "refused".into(),
                "fix: use \"1.2\" or \"1.3\"".into(),
            ],
        },
        Case {
            name: "min_version 1.1",
            result: "TLSv1.1".parse::<TlsVersion>().map(|_| ()),
            field: Some("min_version"),
            file: None,
            says: vec!["\"TLSv1.1\" asks for TLS 1.0/1.1".into()],
        },
        Case {
            name: "CBC suite",
            result: build(&TlsSettings {
                cipher_suites: Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA".into()]),
                ..base(&files)
            }),
            field: Some("cipher_suites"),
            file: None,
            says: vec![
                "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA".into(),
                "weak and refused".into(),
                "CBC".into(),
                "fix: remove it".into(),
            ],
        },
        Case {
            name: "non-ECDHE suite (OpenSSL spelling)",
            result: build(&TlsSettings {
                cipher_suites: Some(vec!["AES128-GCM-SHA256".into()]),
                ..base(&files)
            }),
            field: Some("cipher_suites"),
            file: None,
            says: vec!["weak and refused".into(), "no ECDHE".into()],
        },
        Case {
            name: "unknown suite",
            result: build(&TlsSettings {
                cipher_suites: Some(vec!["TLS13_AES_512_GCM_SHA512".into()]),
                ..base(&files)
            }),
            field: Some("cipher_suites"),
            file: None,
            says: vec![
                "unknown cipher suite `TLS13_AES_512_GCM_SHA512`".into(),
                "fix: use only these names".into(),
                "TLS13_AES_256_GCM_SHA384".into(),
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".into(),
            ],
        },
        Case {
            name: "empty suite list",
            result: build(&TlsSettings {
                cipher_suites: Some(vec![]),
                ..base(&files)
            }),
            field: Some("cipher_suites"),
            file: None,
            says: vec!["empty".into(), "fix:".into()],
        },
        Case {
            name: "min 1.3 with only TLS 1.2 suites",
            result: build(&TlsSettings {
                min_version: TlsVersion::V1_3,
                cipher_suites: Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()]),
                ..base(&files)
            }),
            field: Some("cipher_suites"),
            file: None,
            says: vec!["no TLS 1.3 suite".into(), "fix:".into()],
        },
        Case {
            name: "leaf in the client CA file",
            result: build(&TlsSettings {
                client_ca_file: bundle_with_leaf.clone(),
                ..base(&files)
            }),
            field: Some("client_ca_file"),
            file: Some(bundle_with_leaf.clone()),
            says: vec![
                format!("line {leaf_line}"),
                "CN=agent-01".into(),
                "is not a CA certificate".into(),
                "fix: keep only root and intermediate CA certificates".into(),
            ],
        },
        Case {
            name: "key of another certificate",
            result: build(&TlsSettings {
                key_file: files.client_key.clone(),
                ..base(&files)
            }),
            field: Some("key_file"),
            file: Some(files.client_key.clone()),
            says: vec![
                files.server_cert.display().to_string(),
                "does not belong to the certificate".into(),
                "fix: point `key_file` at the key this certificate was issued for".into(),
            ],
        },
        Case {
            name: "missing cert file",
            result: build(&TlsSettings {
                cert_file: missing.clone(),
                ..base(&files)
            }),
            field: Some("cert_file"),
            file: Some(missing.clone()),
            says: vec![
                "cannot read the file".into(),
                "No such file".into(),
                "fix: check the path in `cert_file`".into(),
            ],
        },
        Case {
            name: "encrypted key without a password file",
            result: build(&TlsSettings {
                key_file: encrypted.clone(),
                ..base(&files)
            }),
            field: Some("key_file"),
            file: Some(encrypted.clone()),
            says: vec!["encrypted".into(), "fix: set `key_password_file`".into()],
        },
        Case {
            name: "encrypted key with the wrong password",
            result: build(&TlsSettings {
                key_file: encrypted.clone(),
                key_password_file: Some(wrong_pw.clone()),
                ..base(&files)
            }),
            field: Some("key_file"),
            file: Some(encrypted.clone()),
            says: vec![
                "could not decrypt".into(),
                "fix: check the password file".into(),
            ],
        },
        Case {
            name: "a CA certificate as the server certificate",
            result: build(&TlsSettings {
                cert_file: files.intermediate_cert.clone(),
                key_file: files.intermediate_key.clone(),
                ..base(&files)
            }),
            field: Some("cert_file"),
            file: Some(files.intermediate_cert.clone()),
            says: vec![
                "is a CA certificate".into(),
                "fix: put the server's own".into(),
            ],
        },
        Case {
            name: "a client-only certificate as the server certificate",
            result: build(&TlsSettings {
                cert_file: files.client_cert.clone(),
                key_file: files.client_key.clone(),
                ..base(&files)
            }),
            field: Some("cert_file"),
            file: Some(files.client_cert.clone()),
            says: vec![
                "clientAuth".into(),
                "fix: use a certificate with EKU serverAuth".into(),
            ],
        },
        Case {
            name: "garbage CRL file",
            result: build(&TlsSettings {
                crl_file: Some(garbage_crl.clone()),
                ..base(&files)
            }),
            field: Some("crl_file"),
            file: Some(garbage_crl.clone()),
            says: vec!["fix:".into()],
        },
    ];

    for case in cases {
        let name = case.name;
        let err = match case.result {
            Ok(()) => panic!("{name}: expected an error"),
            Err(e) => e,
        };
        let msg = err.to_string();
        eprintln!("{name}: {msg}");
        assert_eq!(err.field(), case.field, "{name}: {msg}");
        assert_eq!(
            err.file().map(Path::to_path_buf),
            case.file,
            "{name}: {msg}"
        );
        if let Some(file) = &case.file {
            assert!(msg.contains(&file.display().to_string()), "{name}: {msg}");
        }
        if let Some(field) = case.field {
            assert!(msg.contains(field), "{name}: no field name in {msg}");
        }
        assert!(msg.contains("fix:"), "{name}: no fix in {msg}");
        for want in &case.says {
            assert!(
                msg.contains(want.as_str()),
                "{name}: {msg:?} lacks {want:?}"
            );
        }
        // Never the key or the password.
        assert!(
            !msg.contains("PRIVATE KEY") && !msg.contains("password\n"),
            "{name}"
        );
    }
}

#[test]
fn good_settings_build_with_alpn_and_encrypted_key() {
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let password = SecretString::from("right password".to_owned());
    let encrypted = write(
        dir.path(),
        "server-enc.key",
        &load_private_key(
            pki.server.key_pem.as_bytes(),
            &Source::Other("k".into()),
            None,
        )
        .unwrap()
        .to_pem_encrypted(&password)
        .unwrap(),
    );
    let pass = write(dir.path(), "server.pass", "right password\n");
    let settings = TlsSettings {
        key_file: encrypted,
        key_password_file: Some(pass),
        crl_file: Some(files.crl.clone()),
        cipher_suites: Some(vec![
            "TLS13_AES_256_GCM_SHA384".into(),
            "ECDHE-ECDSA-AES256-GCM-SHA384".into(),
        ]),
        ..base(&files)
    };
    let config = server::build(&settings).unwrap();
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(config.crypto_provider().cipher_suites.len(), 2);
}

#[test]
fn client_build_errors_name_inline_fields() {
    let pki = TestPki::new();
    // A leaf given as the CA, inline.
    let settings = ClientSettings::new(PemInput::inline(
        "mtls.ca_cert_pem",
        pki.client.cert_pem.clone(),
    ));
    let err = keep_tls::client::build(&settings).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("config field `mtls.ca_cert_pem`"), "{msg}");
    assert!(msg.contains("is not a CA certificate"), "{msg}");

    // A key that is not the certificate's.
    let settings = ClientSettings::new(PemInput::inline("mtls.ca_cert_pem", pki.ca_bundle_pem()))
        .with_identity(ClientIdentity {
            cert: PemInput::inline("mtls.cert_pem", pki.client.chain_pem.clone()),
            key: PemInput::inline("mtls.key_pem", pki.admin.key_pem.clone()),
            key_password: None,
        });
    let msg = keep_tls::client::build(&settings).unwrap_err().to_string();
    assert!(
        msg.contains("mtls.key_pem") && msg.contains("mtls.cert_pem"),
        "{msg}"
    );
    assert!(!msg.contains("PRIVATE KEY"), "{msg}");

    // Inline PEM mangled by YAML indentation still works (keep-pki's forgiving reader).
    let indented: String = pki
        .ca_bundle_pem()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let settings = ClientSettings::new(PemInput::inline("mtls.ca_cert_pem", indented));
    assert!(keep_tls::client::build(&settings).is_ok());
}

/// Issue 11, item 8: a server certificate every client would reject (expired, not yet valid,
/// no DNS/IP SAN) is refused with the reason, the dates, the field and the fix; one close to
/// its notAfter still loads (auto-renew replaces it in time).
#[test]
fn server_certificates_clients_would_reject_are_refused() {
    use keep_test_support::{LeafSpec, SERVER_DNS};
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let cases = [
        (
            "expired",
            LeafSpec::server(SERVER_DNS).expired(),
            vec!["expired at", "(now "],
        ),
        (
            "not yet valid",
            LeafSpec::server(SERVER_DNS).not_yet_valid(),
            vec!["is valid only from", "(now ", "clock"],
        ),
        (
            "without SAN",
            LeafSpec::client(SERVER_DNS).eku(&[keep_test_support::Eku::Server]),
            vec!["no DNS or IP subject alternative name", "--san"],
        ),
    ];
    for (name, spec, says) in cases {
        let leaf = pki.issue(&spec);
        let written = leaf.write_to(dir.path(), &name.replace(' ', "-"));
        let settings = TlsSettings::new(&written.cert, &written.key, &files.ca_bundle);
        let err = server::build(&settings).expect_err(name);
        let msg = err.to_string();
        assert_eq!(err.field(), Some("cert_file"), "{name}: {msg}");
        assert_eq!(err.file(), Some(written.cert.as_path()), "{name}: {msg}");
        assert!(msg.contains("listener.tls.cert_file"), "{name}: {msg}");
        assert!(msg.contains("keep certificate create"), "{name}: {msg}");
        assert!(
            msg.contains("every client would reject it"),
            "{name}: {msg}"
        );
        assert!(
            msg.contains(&written.cert.display().to_string()),
            "{name}: {msg}"
        );
        for s in says {
            assert!(msg.contains(s), "{name}: {msg} lacks {s}");
        }
        if name != "without SAN" {
            let date = keep_pki::duration::rfc3339(if name == "expired" {
                spec.not_after
            } else {
                spec.not_before
            });
            assert!(msg.contains(&date), "{name}: {msg} lacks {date}");
            assert!(
                msg.contains(&format!("--san {SERVER_DNS}")),
                "{name}: {msg}"
            );
        }
    }

    // An IP SAN alone is enough, and so is a certificate with an hour left.
    for (name, spec) in [
        (
            "ip-only",
            LeafSpec::client("vault")
                .eku(&[keep_test_support::Eku::Server])
                .ip(std::net::Ipv4Addr::LOCALHOST),
        ),
        (
            "near-expiry",
            LeafSpec::server(SERVER_DNS).valid(
                now - time::Duration::days(29),
                now + time::Duration::hours(1),
            ),
        ),
    ] {
        let leaf = pki.issue(&spec);
        let written = leaf.write_to(dir.path(), name);
        let settings = TlsSettings::new(&written.cert, &written.key, &files.ca_bundle);
        server::build(&settings).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
