//! The identity a connection gets is read from the path webpki verified, never from the chain
//! the client presented; and a client certificate without any EKU extension is refused unless
//! `require_client_auth_eku` is off. Real handshakes against `listener::serve` on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use keep_test_support::{LeafSpec, SERVER_DNS, TestPki};
use keep_tls::classify::Reason;
use keep_tls::identity::CaKey;
use keep_tls::listener::ListenerOptions;
use keep_tls::server::TlsSettings;
use time::{Duration, OffsetDateTime};

/// A leaf of a second intermediate B presents B and then the lab intermediate A: the handshake
/// succeeds (B chains to the root), but the identity's chain and issuers hold only the path
/// that verified (leaf, B, root) — A, merely appended, is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_certificates_are_not_part_of_the_identity() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let now = OffsetDateTime::now_utc();
    let b = pki.issue_intermediate(
        "Keep Test Second Intermediate",
        now - Duration::days(1),
        now + Duration::days(365),
    );
    let leaf = b.issue(&LeafSpec::agent("a2"));
    let chain = dir.path().join("b-leaf-a-appended.crt");
    std::fs::write(
        &chain,
        [
            leaf.cert_pem.as_str(),
            b.cert_pem.as_str(),
            pki.intermediate.cert_pem.as_str(),
        ]
        .concat(),
    )
    .unwrap();
    let key = dir.path().join("b-leaf.key");
    std::fs::write(&key, &leaf.key_pem).unwrap();

    let settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.root_cert);
    let mut server = Server::start(settings, ListenerOptions::default()).await;
    let saw = one_request(
        server.addr,
        client_config(&files.ca_bundle, Some((&chain, &key))),
        SERVER_DNS,
    )
    .await;
    assert!(
        saw.as_ref().is_ok_and(|s| s.contains("hello a2")),
        "{saw:?}"
    );
    let info = server.conns.recv().await.unwrap();
    let id = info.identity.unwrap();
    assert_eq!(id.chain.len(), 2, "leaf and B only: {id:?}");
    assert_eq!(id.chain[1].as_ref(), b.der.as_slice());
    let a_key = CaKey::of_certificate(&pki.intermediate.der).unwrap();
    let b_key = CaKey::of_certificate(&b.der).unwrap();
    let root_key = CaKey::of_certificate(&pki.root.der).unwrap();
    assert_eq!(id.issuers, vec![b_key, root_key], "{id:?}");
    assert!(!id.issuers.contains(&a_key));
    server.stop().await;
}

/// RFC 5280 lets a certificate without an EKU extension be used for anything; keep refuses it
/// as a client by default (`bad_eku`, like one whose EKU lacks clientAuth), and takes it only
/// when `require_client_auth_eku` is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_without_eku_is_refused_by_default() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let leaf = pki.issue(&LeafSpec::agent("no-eku").eku(&[]));
    let cert = dir.path().join("no-eku.crt");
    let key = dir.path().join("no-eku.key");
    std::fs::write(&cert, &leaf.chain_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let info = keep_pki::inspect::inspect(&leaf.der).unwrap();
    assert!(
        info.extended_key_usage.is_empty(),
        "the test leaf has no EKU"
    );

    let settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.root_cert);
    assert!(settings.require_client_auth_eku, "on by default");
    let server = Server::start(settings.clone(), ListenerOptions::default()).await;
    let before = failures("bad_eku");
    let seen = server.events.len();
    let saw = one_request(
        server.addr,
        client_config(&files.ca_bundle, Some((&cert, &key))),
        SERVER_DNS,
    )
    .await;
    assert!(saw.is_err(), "{saw:?}");
    let event = server.event_after(seen).await;
    let failure = event.as_handshake_failure().unwrap();
    assert_eq!(failure.reason, Reason::BadEku, "{failure:?}");
    assert_eq!(failure.serial.as_deref(), Some(info.serial.as_str()));
    assert!(eventually(|| failures("bad_eku") > before).await);
    server.stop().await;

    let mut relaxed = settings;
    relaxed.require_client_auth_eku = false;
    let mut server = Server::start(relaxed, ListenerOptions::default()).await;
    let saw = one_request(
        server.addr,
        client_config(&files.ca_bundle, Some((&cert, &key))),
        SERVER_DNS,
    )
    .await;
    assert!(
        saw.as_ref().is_ok_and(|s| s.contains("hello no-eku")),
        "{saw:?}"
    );
    assert!(server.conns.recv().await.unwrap().identity.is_some());
    server.stop().await;
}
