//! Hot reload against a running `listener::serve`: certificate replacement (new handshakes see
//! the new certificate, a held keep-alive connection keeps working), a corrupt file (the last
//! good config stays, a `tls_reload_failed` event names the file), a CRL update (the revoked
//! client's next handshake fails as `revoked`, without a restart), and SIGHUP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keep_test_support::{LeafSpec, SERVER_DNS, TestPki};
use keep_tls::classify::Reason;
use keep_tls::events::MemorySink;
use keep_tls::listener::ListenerOptions;
use keep_tls::reload::ReloadableTls;
use keep_tls::server::TlsSettings;

/// Replaces a file the way deployment tools do: write a temporary file, rename it over.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reloads(result: &str) -> u64 {
    rendered_value(&format!("keep_tls_reloads_total{{result=\"{result}\"}}"))
}

/// The serial of the certificate a fresh handshake gets.
async fn served_serial(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let conn = HttpConn::connect(addr, config, SERVER_DNS).await.unwrap();
    serial_of(&conn.server_chain()[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_change_under_a_running_listener() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.crl_file = Some(files.crl.clone());
    let server = Server::start(settings, ListenerOptions::default()).await;
    let _watcher = server.tls.watch_files(Duration::from_millis(100));
    let config = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );

    // A keep-alive connection made with the original certificate.
    let mut held = HttpConn::connect(server.addr, config.clone(), SERVER_DNS)
        .await
        .unwrap();
    assert!(held.get().await.unwrap().contains("200 OK"));
    let old_serial = colon_hex(&pki.server.serial);
    assert_eq!(serial_of(&held.server_chain()[0]), old_serial);

    // 1. A new server certificate (new key, new serial): key first, then the chain, as a
    //    careless copy would do it. The watcher waits for the files to settle, so this is one
    //    successful reload and no failure event.
    let ok_before = reloads("ok");
    let new_leaf = pki.issue(
        &LeafSpec::server(SERVER_DNS)
            .dns("localhost")
            .ip(Ipv4Addr::LOCALHOST),
    );
    let new_serial = colon_hex(&new_leaf.serial);
    assert_ne!(new_serial, old_serial);
    std::fs::write(&files.server_key, &new_leaf.key_pem).unwrap();
    std::fs::write(&files.server_cert, &new_leaf.chain_pem).unwrap();
    let mut seen_new = false;
    for _ in 0..50 {
        if served_serial(server.addr, config.clone()).await == new_serial {
            seen_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_new, "new handshakes never saw the new certificate");
    assert!(reloads("ok") > ok_before);
    assert!(
        server.events.is_empty(),
        "no reload failure expected: {:?}",
        server.events.events()
    );
    // The held connection is untouched: same session, still answering, still the old cert.
    assert!(held.get().await.unwrap().contains("200 OK"));
    assert_eq!(serial_of(&held.server_chain()[0]), old_serial);

    // 2. A corrupt certificate file: the last good config stays, and an event names the file.
    let errors_before = reloads("error");
    let seen = server.events.len();
    replace(
        &files.server_cert,
        "-----BEGIN CERTIFICATE-----\nMIIB!!!not base64\n-----END CERTIFICATE-----\n",
    );
    let event = server.event_after(seen).await;
    let failure = event
        .as_reload_failure()
        .unwrap_or_else(|| panic!("{event:?}"));
    assert_eq!(failure.file.as_deref(), Some(files.server_cert.as_path()));
    assert_eq!(failure.field.as_deref(), Some("cert_file"));
    assert!(
        failure
            .detail
            .contains(&files.server_cert.display().to_string()),
        "{}",
        failure.detail
    );
    let line: serde_json::Value = serde_json::from_str(&event.to_json_line()).unwrap();
    assert_eq!(line["event"], "tls_reload_failed");
    assert_eq!(line["file"], files.server_cert.display().to_string());
    assert!(eventually(|| reloads("error") == errors_before + 1).await);
    assert_eq!(served_serial(server.addr, config.clone()).await, new_serial);
    assert!(held.get().await.unwrap().contains("200 OK"));

    // Repair it (same certificate as before the corruption): reloads cleanly.
    let ok_before = reloads("ok");
    replace(&files.server_cert, &new_leaf.chain_pem);
    assert!(eventually(|| reloads("ok") > ok_before).await);

    // 3. Revoke the agent in the CRL file: its next handshake fails as `revoked`, no restart.
    let revoked_before = failures("revoked");
    let seen = server.events.len();
    let crl = pki.crl_with(&[&pki.client, &pki.revoked_client]);
    replace(&files.crl, &format!("{}{}", crl.pem, pki.root_crl.pem));
    let mut outcome = Ok(String::new());
    for _ in 0..50 {
        outcome = one_request(server.addr, config.clone(), SERVER_DNS).await;
        if outcome.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client_saw = outcome.expect_err("the revoked agent was still served");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    // The process-wide counter moves (other tests may add to it too); the event below is exact.
    assert!(eventually(|| failures("revoked") > revoked_before).await);
    let events = server.events.events();
    let failure = events[seen..]
        .iter()
        .find_map(|e| e.as_handshake_failure())
        .expect("a handshake failure event");
    assert_eq!(failure.reason, Reason::Revoked);
    assert_eq!(
        failure.serial.as_deref(),
        Some(colon_hex(&pki.client.serial).as_str())
    );
    // Established connections keep the config they were accepted with (the server layer
    // decides whether to re-check identities per request).
    assert!(held.get().await.unwrap().contains("200 OK"));
    // Other agents are unaffected.
    let admin = client_config(
        &files.ca_bundle,
        Some((&files.admin_cert, &files.admin_key)),
    );
    assert!(
        one_request(server.addr, admin, SERVER_DNS)
            .await
            .unwrap()
            .contains("hello operator")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_last_good_config_and_reports() {
    let _serial = exclusive().await;
    metrics();
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let events = Arc::new(MemorySink::new());
    let tls = ReloadableTls::new(
        TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle),
        events.clone(),
    )
    .unwrap();
    let before = tls.current();

    // The key of another certificate: a mismatch, reported with both files.
    std::fs::write(&files.server_key, &pki.client.key_pem).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(Arc::ptr_eq(&before, &tls.current()), "the config changed");
    let msg = err.to_string();
    assert!(
        msg.contains("key_file") && msg.contains("cert_file"),
        "{msg}"
    );
    let event = &events.events()[0];
    let failure = event.as_reload_failure().unwrap();
    assert_eq!(failure.file.as_deref(), Some(files.server_key.as_path()));
    assert_eq!(failure.field.as_deref(), Some("key_file"));

    // Fixing it makes the next reload swap the config.
    std::fs::write(&files.server_key, &pki.server.key_pem).unwrap();
    tls.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &tls.current()));
    assert_eq!(events.len(), 1);

    // New settings that do not build are not kept.
    let mut narrower = tls.settings();
    narrower.cipher_suites = Some(vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()]);
    assert!(tls.reload_with(narrower).is_err());
    assert_eq!(tls.settings().cipher_suites, None);
    assert_eq!(events.len(), 2);
    assert_eq!(
        events.events()[1]
            .as_reload_failure()
            .and_then(|f| f.field.clone())
            .as_deref(),
        Some("cipher_suites")
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    let server = Server::start(settings, ListenerOptions::default()).await;
    let _hup = server.tls.reload_on_sighup().unwrap();
    let config = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    assert_eq!(
        served_serial(server.addr, config.clone()).await,
        colon_hex(&pki.server.serial)
    );

    let new_leaf = pki.issue(&LeafSpec::server(SERVER_DNS));
    replace(&files.server_key, &new_leaf.key_pem);
    replace(&files.server_cert, &new_leaf.chain_pem);
    // No watcher: nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served_serial(server.addr, config.clone()).await,
        colon_hex(&pki.server.serial)
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let want = colon_hex(&new_leaf.serial);
    let mut seen = false;
    for _ in 0..50 {
        if served_serial(server.addr, config.clone()).await == want {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "SIGHUP did not reload");
    server.stop().await;
}

/// Refusals of `serial` as `revoked` among this server's own events (exact, unlike the
/// process-wide counter other tests add to).
fn revoked_events(server: &Server, serial: &str) -> usize {
    server
        .events
        .events()
        .iter()
        .filter_map(|e| e.as_handshake_failure())
        .filter(|f| f.reason == Reason::Revoked && f.serial.as_deref() == Some(serial))
        .count()
}

/// Retries a fresh request (bounded: 100 tries, 100 ms apart) until the server refuses it;
/// returns what the client saw, or `None` if it was still served.
async fn refused_within(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<String> {
    for _ in 0..100 {
        if let Err(e) = one_request(addr, config.clone(), SERVER_DNS).await {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Issue 11, item 4: an in-memory CRL (the PKI mount's) and a `crl_file` CRL from the same
/// issuer both apply; a certificate added to the file later is refused after the watcher's or
/// SIGHUP's reload, while the in-memory list stays in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_and_file_crls_of_one_issuer_both_revoke() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    // The file CRL (intermediate's) revokes `revoked_client` only.
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.crl_file = Some(files.crl.clone());
    let server = Server::start(settings, ListenerOptions::default()).await;
    let agent = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    let revoked = client_config(
        &files.ca_bundle,
        Some((&files.revoked_client_cert, &files.revoked_client_key)),
    );
    assert!(
        one_request(server.addr, agent.clone(), SERVER_DNS)
            .await
            .unwrap()
            .contains("hello agent-01")
    );
    assert!(
        one_request(server.addr, revoked.clone(), SERVER_DNS)
            .await
            .is_err()
    );
    let revoked_serial = colon_hex(&pki.revoked_client.serial);
    assert!(eventually(|| revoked_events(&server, &revoked_serial) == 1).await);

    // An in-memory CRL from the same intermediate listing the agent: it applies at once, and
    // the file's list for that issuer still applies too.
    let agent_serial = colon_hex(&pki.client.serial);
    assert_eq!(revoked_events(&server, &agent_serial), 0);
    server
        .tls
        .reload_with_extra_crls(vec![pki.crl_with(&[&pki.client]).der])
        .unwrap();
    let client_saw = one_request(server.addr, agent.clone(), SERVER_DNS)
        .await
        .expect_err("the agent revoked in memory was still served");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    assert!(eventually(|| revoked_events(&server, &agent_serial) == 1).await);
    let client_saw = one_request(server.addr, revoked.clone(), SERVER_DNS)
        .await
        .expect_err("the agent revoked in crl_file was served once the in-memory CRL came");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    assert!(eventually(|| revoked_events(&server, &revoked_serial) == 2).await);
    // The per-request view (what the server asks on every request) agrees.
    let chain = |pem: &str| {
        keep_pki::pem::read_certificates(pem.as_bytes(), &keep_pki::Source::Other("t".into()))
            .unwrap()
            .iter()
            .map(|b| rustls::pki_types::CertificateDer::from(b.der.to_vec()))
            .collect::<Vec<_>>()
    };
    let listed = server
        .tls
        .revoked(&chain(&pki.revoked_client.chain_pem))
        .expect("crl_file's revocation in the per-request view");
    assert_eq!(listed.serial, revoked_serial);
    assert!(listed.listed_in.contains("crl_file"), "{listed:?}");
    assert!(listed.signature_verified);
    assert!(server.tls.revoked(&chain(&pki.admin.chain_pem)).is_none());

    // A certificate added to crl_file later, while the in-memory CRL is in use: the watcher's
    // reload applies it (the in-memory CRL is kept).
    let watcher = server.tls.watch_files(Duration::from_millis(100));
    let third = pki.issue(&LeafSpec::client("agent-03"));
    let third_files = third.write_to(dir.path(), "agent-03");
    let third_config = client_config(
        &files.ca_bundle,
        Some((&third_files.cert, &third_files.key)),
    );
    assert!(
        one_request(server.addr, third_config.clone(), SERVER_DNS)
            .await
            .unwrap()
            .contains("hello agent-03")
    );
    let file_crl = pki.crl_with(&[&pki.revoked_client, &third]);
    replace(&files.crl, &format!("{}{}", file_crl.pem, pki.root_crl.pem));
    let client_saw = refused_within(server.addr, third_config.clone())
        .await
        .expect("a certificate added to crl_file was still served after 10 s");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    assert!(
        one_request(server.addr, agent.clone(), SERVER_DNS)
            .await
            .is_err(),
        "the file reload dropped the in-memory CRL"
    );
    assert!(server.tls.revoked(&chain(&third.chain_pem)).is_some());
    watcher.abort();

    // The same through SIGHUP alone (no watcher running).
    #[cfg(unix)]
    {
        let _hup = server.tls.reload_on_sighup().unwrap();
        let fourth = pki.issue(&LeafSpec::client("agent-04"));
        let fourth_files = fourth.write_to(dir.path(), "agent-04");
        let fourth_config = client_config(
            &files.ca_bundle,
            Some((&fourth_files.cert, &fourth_files.key)),
        );
        let file_crl = pki.crl_with(&[&pki.revoked_client, &third, &fourth]);
        replace(&files.crl, &format!("{}{}", file_crl.pem, pki.root_crl.pem));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            one_request(server.addr, fourth_config.clone(), SERVER_DNS)
                .await
                .is_ok(),
            "nothing reloads before the signal"
        );
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let client_saw = refused_within(server.addr, fourth_config)
            .await
            .expect("a certificate added to crl_file was still served after SIGHUP");
        assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
        assert!(
            one_request(server.addr, agent.clone(), SERVER_DNS)
                .await
                .is_err(),
            "the SIGHUP reload dropped the in-memory CRL"
        );
    }

    // A broken in-memory CRL is refused like a broken file, naming the field.
    let err = server
        .tls
        .reload_with_extra_crls(vec![b"not a CRL".to_vec()])
        .unwrap_err();
    assert_eq!(err.field(), Some("extra_crls"));
    assert!(err.to_string().contains("in-memory CRL #1"), "{err}");
    assert!(
        one_request(server.addr, agent, SERVER_DNS).await.is_err(),
        "the last good config (with the in-memory CRL) stays"
    );
    server.stop().await;
}

/// Issue 11, item 8: on reload, an expired, not-yet-valid or SAN-less server certificate is
/// refused like a corrupt one: the last good certificate is still served and a
/// `tls_reload_failed` event names `cert_file` and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_clients_would_reject_is_not_swapped_in() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    let server = Server::start(settings, ListenerOptions::default()).await;
    let _watcher = server.tls.watch_files(Duration::from_millis(100));
    let config = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    let good_serial = colon_hex(&pki.server.serial);
    assert_eq!(
        served_serial(server.addr, config.clone()).await,
        good_serial
    );
    let cases = [
        (
            "expired",
            LeafSpec::server(SERVER_DNS).expired(),
            "expired at",
        ),
        (
            "not yet valid",
            LeafSpec::server(SERVER_DNS).not_yet_valid(),
            "is valid only from",
        ),
        (
            "without SAN",
            LeafSpec::client(SERVER_DNS).eku(&[keep_test_support::Eku::Server]),
            "no DNS or IP subject alternative name",
        ),
    ];
    for (name, spec, says) in cases {
        let leaf = pki.issue(&spec);
        let seen = server.events.len();
        // Key and certificate swapped together, as a deployment would: only the certificate's
        // validity or names are wrong.
        replace(&files.server_key, &leaf.key_pem);
        replace(&files.server_cert, &leaf.chain_pem);
        // (On a loaded machine the watcher may catch the key alone first: wait for the event
        // about the certificate itself.)
        let mut failure = None;
        for _ in 0..100 {
            failure = server.events.events()[seen..]
                .iter()
                .filter_map(|e| e.as_reload_failure().cloned())
                .find(|f| f.detail.contains(says));
            if failure.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let failure = failure.unwrap_or_else(|| {
            panic!(
                "{name}: no tls_reload_failed event: {:?}",
                server.events.events()
            )
        });
        assert_eq!(failure.field.as_deref(), Some("cert_file"), "{name}");
        assert_eq!(
            failure.file.as_deref(),
            Some(files.server_cert.as_path()),
            "{name}"
        );
        assert!(failure.detail.contains(says), "{name}: {}", failure.detail);
        assert_eq!(
            served_serial(server.addr, config.clone()).await,
            good_serial,
            "{name}: the last good certificate is no longer served"
        );
        // Without the watcher too: an explicit reload (what SIGHUP does) is refused the same way.
        let err = server.tls.reload().unwrap_err();
        assert!(err.to_string().contains(says), "{name}: {err}");
    }
    // Putting the good pair back reloads cleanly.
    replace(&files.server_key, &pki.server.key_pem);
    replace(&files.server_cert, &pki.server.chain_pem);
    server.tls.reload().unwrap();
    assert_eq!(served_serial(server.addr, config).await, good_serial);
    server.stop().await;
}

/// A CRL counts only if its issuer signed it: one with the intermediate's name but another key
/// is a config error when the intermediate is in `client_ca_file`; when it is not (clients send
/// it), a certificate such a CRL lists is refused (fail closed), while a genuine second CRL of
/// the same issuer revokes as `revoked` and unlisted clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_counts_only_if_its_issuer_signed_it() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let impostor = pki.issue_intermediate(
        &pki.intermediate.common_name,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    let forged = pki.crl_signed_by(&impostor, &[&pki.client]);
    let crl_path = dir.path().join("mixed.crl");

    // The intermediate is in client_ca_file: refused at load, naming the file.
    std::fs::write(&crl_path, format!("{}{}", pki.crl.pem, forged.pem)).unwrap();
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.crl_file = Some(crl_path.clone());
    let err = keep_tls::server::build(&settings).unwrap_err();
    assert_eq!(err.field(), Some("crl_file"));
    assert_eq!(err.file(), Some(crl_path.as_path()));
    assert!(err.to_string().contains("does not verify"), "{err}");

    // Only the root is trusted (clients send the intermediate): checked at the handshake.
    let genuine_second = pki.crl_with(&[&pki.admin]);
    std::fs::write(
        &crl_path,
        format!("{}{}{}", pki.crl.pem, forged.pem, genuine_second.pem),
    )
    .unwrap();
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.root_cert);
    settings.crl_file = Some(crl_path.clone());
    let server = Server::start(settings, ListenerOptions::default()).await;
    let as_client = |cert: &Path, key: &Path| client_config(&files.ca_bundle, Some((cert, key)));
    let client_saw = one_request(
        server.addr,
        as_client(&files.client_cert, &files.client_key),
        SERVER_DNS,
    )
    .await
    .expect_err("a certificate listed in a forged CRL was served");
    assert!(!client_saw.contains("hello"), "{client_saw}");
    let client_saw = one_request(
        server.addr,
        as_client(&files.admin_cert, &files.admin_key),
        SERVER_DNS,
    )
    .await
    .expect_err("a certificate listed in the issuer's second CRL was served");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    let agent = pki.issue(&LeafSpec::agent("agent-05"));
    let agent_files = agent.write_to(dir.path(), "agent-05");
    assert!(
        one_request(
            server.addr,
            as_client(&agent_files.cert, &agent_files.key),
            SERVER_DNS
        )
        .await
        .unwrap()
        .contains("hello agent-05")
    );
    server.stop().await;
}

/// The PKI mount's new CRL is not lost when its reload fails because `crl_file` is broken at
/// that moment: the last good config stays, and the next reload (once the file is repaired)
/// includes the new in-memory CRL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_crls_survive_a_reload_that_failed_for_another_file() {
    let _serial = exclusive().await;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let mut settings = TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.crl_file = Some(files.crl.clone());
    let server = Server::start(settings, ListenerOptions::default()).await;
    let agent = client_config(
        &files.ca_bundle,
        Some((&files.client_cert, &files.client_key)),
    );
    let good_file = std::fs::read_to_string(&files.crl).unwrap();
    replace(&files.crl, "not a CRL\n");
    let err = server
        .tls
        .reload_with_extra_crls(vec![pki.crl_with(&[&pki.client]).der])
        .unwrap_err();
    assert_eq!(err.field(), Some("crl_file"), "{err}");
    assert!(
        one_request(server.addr, agent.clone(), SERVER_DNS)
            .await
            .unwrap()
            .contains("hello agent-01"),
        "the last good config stays"
    );
    replace(&files.crl, &good_file);
    server.tls.reload().unwrap();
    let client_saw = one_request(server.addr, agent, SERVER_DNS)
        .await
        .expect_err("the remembered in-memory CRL was dropped");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    server.stop().await;
}
