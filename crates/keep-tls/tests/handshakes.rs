//! The handshake table: real handshakes against `listener::serve` on 127.0.0.1, one row per
//! way a client can succeed or fail. Each failing row asserts the exact reason in the security
//! event, the `keep_tls_handshake_failures_total{reason}` counter, the presented certificate's
//! subject/serial/fingerprint (when one was presented), and what the client saw.
//!
//! The server is configured as the reference setup: client CA file = the root only, CRL = the
//! intermediate's CRL only (so "unknown status" for the intermediate must be allowed), and an
//! encrypted server key with a password file.
//!
//! Rows run one after another in a single test: the counters are process-wide, and each row
//! asserts its own increment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keep_pki::key::load_private_key;
use keep_pki::pem::Source;
use keep_test_support::{
    ADMIN_CN, CLIENT_CN, CLIENT_SPIFFE_ID, Leaf, SERVER_DNS, TestPki, TestPkiFiles,
};
use keep_tls::classify::Reason;
use keep_tls::listener::ListenerOptions;
use keep_tls::server::{TlsSettings, TlsVersion};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ClientConfig, ProtocolVersion, RootCertStore, SignatureScheme};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes the server key encrypted (scrypt PKCS#8) with a password file; returns the settings.
fn server_settings(pki: &TestPki, files: &TestPkiFiles) -> TlsSettings {
    let password = SecretString::from("server key password".to_owned());
    let key = load_private_key(
        pki.server.key_pem.as_bytes(),
        &Source::Other("k".into()),
        None,
    )
    .unwrap();
    let encrypted_key = files.dir.join("server-encrypted.key");
    std::fs::write(&encrypted_key, key.to_pem_encrypted(&password).unwrap()).unwrap();
    let password_file = files.dir.join("server-key.pass");
    std::fs::write(&password_file, "server key password\n").unwrap();

    let mut settings = TlsSettings::new(&files.server_cert, &encrypted_key, &files.root_cert);
    settings.key_password_file = Some(password_file);
    settings.crl_file = Some(files.intermediate_crl.clone());
    settings
}

/// What a row's client does.
enum Client<'a> {
    /// A rustls client (keep's client config) with this identity, adjusted.
    Rustls {
        identity: Option<(&'a std::path::Path, &'a std::path::Path)>,
        tls12_only: bool,
    },
    /// A rustls client presenting a valid chain but signing with a different key.
    WrongKey,
    /// `openssl s_client` with these extra arguments (request sent on stdin).
    Openssl(Vec<String>),
    /// Plain HTTP bytes to the TLS port.
    PlainHttp,
    /// Connect, then close without a byte.
    BareTcp,
}

/// What the row expects.
enum Expect<'a> {
    /// 200, and the handler saw this common name and version.
    Ok {
        cn: &'a str,
        protocol: ProtocolVersion,
    },
    /// Failure with one of these reasons (more than one only where real clients differ), and
    /// this presented certificate named in the event (or none).
    Fail {
        reasons: &'a [Reason],
        presented: Option<&'a Leaf>,
        /// Text the event's detail must contain (proves the client really did what the row
        /// says, e.g. offered TLS 1.1 or a CBC suite).
        detail: &'a str,
    },
}

struct Row<'a> {
    name: &'a str,
    client: Client<'a>,
    expect: Expect<'a>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_table() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let mut server = Server::start(server_settings(&pki, &files), ListenerOptions::default()).await;
    let ca = files.ca_bundle.as_path();
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let openssl_base = |extra: &[&str]| {
        let mut args = s(&["-servername", SERVER_DNS, "-CAfile"]);
        args.push(files.ca_bundle.display().to_string());
        args.extend(s(&["-cert"]));
        args.push(files.client_cert.display().to_string());
        args.extend(s(&["-key"]));
        args.push(files.client_key.display().to_string());
        args.extend(s(extra));
        args
    };

    let rows = vec![
        Row {
            name: "valid agent, TLS 1.3",
            client: Client::Rustls {
                identity: Some((&files.client_cert, &files.client_key)),
                tls12_only: false,
            },
            expect: Expect::Ok {
                cn: CLIENT_CN,
                protocol: ProtocolVersion::TLSv1_3,
            },
        },
        Row {
            name: "valid operator, TLS 1.2 ECDHE-ECDSA-AES256-GCM",
            client: Client::Rustls {
                identity: Some((&files.admin_cert, &files.admin_key)),
                tls12_only: true,
            },
            expect: Expect::Ok {
                cn: ADMIN_CN,
                protocol: ProtocolVersion::TLSv1_2,
            },
        },
        Row {
            name: "valid agent via openssl, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256",
            client: Client::Openssl(openssl_base(&[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "-ign_eof",
            ])),
            expect: Expect::Ok {
                cn: CLIENT_CN,
                protocol: ProtocolVersion::TLSv1_2,
            },
        },
        Row {
            name: "no client certificate",
            client: Client::Rustls {
                identity: None,
                tls12_only: false,
            },
            expect: Expect::Fail {
                reasons: &[Reason::NoCertificate],
                presented: None,
                detail: "presented no certificate",
            },
        },
        Row {
            name: "client certificate from a foreign CA",
            client: Client::Rustls {
                identity: Some((&files.foreign_client_cert, &files.foreign_client_key)),
                tls12_only: false,
            },
            // rustls sends its certificate whatever CAs the server names; Go and Java would
            // send none (peers.md section 3), which is `no_certificate`.
            expect: Expect::Fail {
                reasons: &[Reason::UnknownCa, Reason::NoCertificate],
                presented: Some(&pki.foreign_client),
                detail: "",
            },
        },
        Row {
            name: "expired client certificate",
            client: Client::Rustls {
                identity: Some((&files.expired_client_cert, &files.expired_client_key)),
                tls12_only: false,
            },
            expect: Expect::Fail {
                reasons: &[Reason::Expired],
                presented: Some(&pki.expired_client),
                detail: "expired at",
            },
        },
        Row {
            name: "not-yet-valid client certificate",
            client: Client::Rustls {
                identity: Some((
                    &files.not_yet_valid_client_cert,
                    &files.not_yet_valid_client_key,
                )),
                tls12_only: false,
            },
            expect: Expect::Fail {
                reasons: &[Reason::NotYetValid],
                presented: Some(&pki.not_yet_valid_client),
                detail: "valid only from",
            },
        },
        Row {
            name: "revoked client certificate (intermediate CRL only)",
            client: Client::Rustls {
                identity: Some((&files.revoked_client_cert, &files.revoked_client_key)),
                tls12_only: false,
            },
            expect: Expect::Fail {
                reasons: &[Reason::Revoked],
                presented: Some(&pki.revoked_client),
                detail: "revoked",
            },
        },
        Row {
            name: "serverAuth-only client certificate",
            client: Client::Rustls {
                identity: Some((
                    &files.server_auth_only_client_cert,
                    &files.server_auth_only_client_key,
                )),
                tls12_only: false,
            },
            expect: Expect::Fail {
                reasons: &[Reason::BadEku],
                presented: Some(&pki.server_auth_only_client),
                detail: "clientAuth",
            },
        },
        Row {
            name: "valid chain, handshake signed with another key",
            client: Client::WrongKey,
            expect: Expect::Fail {
                reasons: &[Reason::BadSignature],
                presented: Some(&pki.client),
                detail: "did not verify",
            },
        },
        Row {
            name: "TLS 1.1 (openssl, SECLEVEL=0)",
            client: Client::Openssl(openssl_base(&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])),
            expect: Expect::Fail {
                reasons: &[Reason::ProtocolVersion],
                presented: None,
                detail: "at most TLS 1.1",
            },
        },
        Row {
            name: "TLS 1.2 CBC suite (openssl ECDHE-ECDSA-AES128-SHA)",
            client: Client::Openssl(openssl_base(&[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-SHA",
            ])),
            expect: Expect::Fail {
                reasons: &[Reason::NoSharedCipher],
                presented: None,
                detail: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
            },
        },
        Row {
            name: "TLS 1.2 non-ECDHE suite (openssl AES128-GCM-SHA256)",
            client: Client::Openssl(openssl_base(&["-tls1_2", "-cipher", "AES128-GCM-SHA256"])),
            expect: Expect::Fail {
                reasons: &[Reason::NoSharedCipher],
                presented: None,
                detail: "TLS_RSA_WITH_AES_128_GCM_SHA256",
            },
        },
        Row {
            name: "plain HTTP to the TLS port",
            client: Client::PlainHttp,
            expect: Expect::Fail {
                reasons: &[Reason::PlainHttp],
                presented: None,
                detail: "plain-HTTP GET",
            },
        },
        Row {
            name: "bare TCP connect and close",
            client: Client::BareTcp,
            expect: Expect::Fail {
                reasons: &[Reason::EofBeforeHello],
                presented: None,
                detail: "",
            },
        },
    ];

    for row in &rows {
        run_row(&mut server, &pki, ca, row).await;
    }
    server.stop().await;
}

async fn run_row(server: &mut Server, pki: &TestPki, ca: &std::path::Path, row: &Row<'_>) {
    let name = row.name;
    let reasons: Vec<Reason> = match &row.expect {
        Expect::Fail { reasons, .. } => reasons.to_vec(),
        Expect::Ok { .. } => Reason::ALL.to_vec(),
    };
    let before: Vec<u64> = reasons.iter().map(|r| failures(r.as_str())).collect();
    let seen_events = server.events.len();

    let saw: Result<String, String> = match &row.client {
        Client::Rustls {
            identity,
            tls12_only,
        } => {
            let config = client_config_with(ca, *identity, |s| {
                if *tls12_only {
                    s.cipher_suites = Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()]);
                }
            });
            one_request(server.addr, config, SERVER_DNS).await
        }
        Client::WrongKey => one_request(server.addr, wrong_key_config(pki), SERVER_DNS).await,
        Client::Openssl(args) => {
            let addr = server.addr;
            let args = args.clone();
            let out = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                s_client(
                    addr,
                    &args,
                    b"GET / HTTP/1.1\r\nHost: vault.claw.internal\r\nConnection: close\r\n\r\n",
                )
            })
            .await
            .unwrap();
            if out.stdout.contains("HTTP/1.1 200 OK") {
                Ok(out.stdout)
            } else {
                Err(format!("openssl exit {:?}: {}", out.status, out.stderr))
            }
        }
        Client::PlainHttp => {
            let mut tcp = TcpStream::connect(server.addr).await.unwrap();
            tcp.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: vault\r\n\r\n")
                .await
                .unwrap();
            let mut reply = String::new();
            let _ = tokio::time::timeout(WAIT, tcp.read_to_string(&mut reply)).await;
            // The server answers in plain HTTP, telling the user to use https.
            assert!(
                reply.starts_with("HTTP/1.1 400") && reply.contains("https://"),
                "{name}: plain-HTTP client got {reply:?}"
            );
            Err(reply)
        }
        Client::BareTcp => {
            drop(TcpStream::connect(server.addr).await.unwrap());
            Err("closed".into())
        }
    };

    match &row.expect {
        Expect::Ok { cn, protocol } => {
            let body = saw.unwrap_or_else(|e| panic!("{name}: expected 200, client saw {e}"));
            assert!(body.contains("HTTP/1.1 200 OK"), "{name}: {body}");
            let info = tokio::time::timeout(WAIT, server.conns.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: the handler saw no connection"))
                .unwrap();
            let id = info.identity.as_ref().expect("identity present");
            assert_eq!(id.common_name.as_deref(), Some(*cn), "{name}");
            assert_eq!(info.protocol, Some(*protocol), "{name}");
            if *cn == CLIENT_CN {
                assert_eq!(id.uri_sans, vec![CLIENT_SPIFFE_ID.to_owned()], "{name}");
                assert_eq!(id.serial, colon_hex(&pki.client.serial), "{name}");
                assert_eq!(
                    id.fingerprint_sha256,
                    keep_pki::inspect::fingerprint_sha256(&pki.client.der),
                    "{name}"
                );
                assert_eq!(
                    id.issuer_common_name.as_deref(),
                    Some(keep_test_support::INTERMEDIATE_CN)
                );
            }
            if *protocol == ProtocolVersion::TLSv1_2 && *cn == ADMIN_CN {
                assert_eq!(
                    info.cipher_suite,
                    Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
                    "{name}"
                );
            }
            assert_eq!(info.peer_addr.ip(), server.addr.ip(), "{name}");
            // No failure counted for a good handshake.
            let after: Vec<u64> = reasons.iter().map(|r| failures(r.as_str())).collect();
            assert_eq!(before, after, "{name}: a failure was counted");
            assert_eq!(
                server.events.len(),
                seen_events,
                "{name}: an event was emitted"
            );
        }
        Expect::Fail {
            reasons,
            presented,
            detail,
        } => {
            let seen = match saw {
                Ok(body) => panic!("{name}: expected a failure, the client got {body}"),
                Err(e) => e,
            };
            // The counter for exactly one of the acceptable reasons went up by exactly one.
            let counted = eventually(|| {
                reasons
                    .iter()
                    .zip(&before)
                    .any(|(r, b)| failures(r.as_str()) == b + 1)
            })
            .await;
            assert!(
                counted,
                "{name}: no keep_tls_handshake_failures_total{{reason in {reasons:?}}} increment (client saw: {seen})\n{}",
                metrics().render()
            );
            let bumped: Vec<Reason> = reasons
                .iter()
                .zip(&before)
                .filter(|(r, b)| failures(r.as_str()) == *b + 1)
                .map(|(r, _)| *r)
                .collect();
            assert_eq!(bumped.len(), 1, "{name}: {bumped:?}");
            let reason = bumped[0];

            if reason == Reason::EofBeforeHello {
                // Probes are counted, never written as events.
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(
                    server.events.len(),
                    seen_events,
                    "{name}: probe became an event"
                );
                return;
            }
            let event = server.event_after(seen_events).await;
            let failure = event
                .as_handshake_failure()
                .unwrap_or_else(|| panic!("{name}: {event:?}"));
            assert_eq!(failure.reason, reason, "{name}: {failure:?}");
            assert_eq!(failure.peer.ip(), server.addr.ip(), "{name}");
            assert!(!failure.detail.is_empty(), "{name}");
            assert!(
                failure.detail.contains(detail),
                "{name}: detail {:?} lacks {detail:?}",
                failure.detail
            );
            let line: serde_json::Value = serde_json::from_str(&event.to_json_line()).unwrap();
            assert_eq!(line["event"], "tls_handshake_failure", "{name}");
            assert_eq!(line["reason"], reason.as_str(), "{name}");
            match presented {
                Some(leaf) if reason != Reason::NoCertificate => {
                    assert_eq!(
                        failure.serial.as_deref(),
                        Some(colon_hex(&leaf.serial).as_str()),
                        "{name}"
                    );
                    assert_eq!(
                        failure.fingerprint.as_deref(),
                        Some(keep_pki::inspect::fingerprint_sha256(&leaf.der).as_str()),
                        "{name}"
                    );
                    assert_eq!(
                        failure.subject.as_deref(),
                        Some(format!("CN={}", leaf.common_name).as_str()),
                        "{name}"
                    );
                    assert!(line.get("fingerprint").is_some(), "{name}: {line}");
                }
                _ => {
                    assert_eq!(failure.subject, None, "{name}");
                    assert_eq!(failure.serial, None, "{name}");
                    assert_eq!(failure.fingerprint, None, "{name}");
                    assert!(line.get("subject").is_none(), "{name}: {line}");
                }
            }
            eprintln!(
                "{name}: reason {reason}; detail: {}; client saw: {seen}",
                failure.detail
            );
        }
    }
}

/// A rustls client presenting the valid agent chain but signing the handshake with a fresh
/// key: the chain verifies, the CertificateVerify signature does not.
fn wrong_key_config(pki: &TestPki) -> Arc<ClientConfig> {
    #[derive(Debug)]
    struct WrongKey(Arc<CertifiedKey>);
    impl ResolvesClientCert for WrongKey {
        fn resolve(
            &self,
            _root_hint_subjects: &[&[u8]],
            _sigschemes: &[SignatureScheme],
        ) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let other = pki.issue(&keep_test_support::LeafSpec::agent("other"));
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            other.key_der.clone(),
        )))
        .unwrap();
    let chain = pki
        .client
        .chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.root.der.clone()))
        .unwrap();
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(WrongKey(Arc::new(CertifiedKey::new(
            chain,
            signing_key,
        )))));
    Arc::new(config)
}

/// A TLS 1.3-only server refuses a TLS 1.2-only client as `protocol_version`, and an SNI the
/// server certificate does not carry shows as `sni_mismatch` when the client rejects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_floor_and_sni_mismatch() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());

    // TLS 1.3 only.
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.min_version = TlsVersion::V1_3;
    let server = Server::start(settings, ListenerOptions::default()).await;
    let before = failures("protocol_version");
    let seen = server.events.len();
    let tls12 = client_config_with(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
        |s| s.cipher_suites = Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()]),
    );
    let saw = one_request(server.addr, tls12, SERVER_DNS).await;
    assert!(saw.is_err(), "{saw:?}");
    let event = server.event_after(seen).await;
    assert_eq!(
        event.as_handshake_failure().map(|f| f.reason),
        Some(Reason::ProtocolVersion),
        "{event:?}"
    );
    assert!(eventually(|| failures("protocol_version") == before + 1).await);
    server.stop().await;

    // A server whose certificate names only wrong.claw.internal.
    let settings = TlsSettings::new(
        &files.wrong_san_server_cert,
        &files.wrong_san_server_key,
        &files.ca_bundle,
    );
    let server = Server::start(settings, ListenerOptions::default()).await;
    let before = failures("sni_mismatch");
    let seen = server.events.len();
    let config = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    let saw = one_request(server.addr, config, SERVER_DNS).await;
    let err = saw.expect_err("the client must reject a certificate for another name");
    assert!(err.contains("handshake"), "{err}");
    let event = server.event_after(seen).await;
    let failure = event.as_handshake_failure().unwrap();
    assert_eq!(failure.reason, Reason::SniMismatch, "{failure:?}");
    assert_eq!(failure.server_name.as_deref(), Some(SERVER_DNS));
    assert!(failure.detail.contains(SERVER_DNS), "{}", failure.detail);
    assert!(eventually(|| failures("sni_mismatch") == before + 1).await);
    server.stop().await;
}

/// Over `max_connections`, a new connection is closed at once and counted as
/// `keep_tls_connections_rejected_total{reason="limit"}`, not as a handshake failure; a slot
/// frees when a connection ends. A silent client is cut off by the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_and_handshake_timeout() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    let opts = ListenerOptions {
        handshake_timeout: Duration::from_millis(700),
        max_connections: 1,
        drain_timeout: Duration::from_secs(2),
        ..ListenerOptions::default()
    };
    let server = Server::start(settings, opts).await;
    let rejected = r#"keep_tls_connections_rejected_total{reason="limit"}"#;
    let before_rejected = rendered_value(rejected);
    let before_other = failures("other");
    let seen = server.events.len();

    // Occupy the only slot with a client that never speaks.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let config = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    let saw = one_request(server.addr, config.clone(), SERVER_DNS).await;
    assert!(saw.is_err(), "over the cap: {saw:?}");
    assert!(eventually(|| rendered_value(rejected) == before_rejected + 1).await);

    // The silent client hits the handshake timeout (reason `other`), freeing the slot.
    let event = server.event_after(seen).await;
    let failure = event.as_handshake_failure().unwrap();
    assert_eq!(failure.reason, Reason::Other);
    assert!(
        failure.detail.contains("did not finish"),
        "{}",
        failure.detail
    );
    assert!(eventually(|| failures("other") == before_other + 1).await);
    drop(silent);

    let ok = one_request(server.addr, config, SERVER_DNS).await;
    assert!(ok.is_ok_and(|b| b.contains("200 OK")));
    server.stop().await;
}
