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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_crls_revoke_on_reload_with_and_supersede_the_same_issuers_file_crl() {
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

    // An in-memory CRL from the same intermediate listing the agent: it applies at once, and it
    // is the intermediate's CRL now (the file's list for that issuer no longer applies).
    // (The revoked client's refusal above is recorded by the server task after the client has
    // seen it: count this server's own events, not the process-wide counter, to stay exact.)
    let agent_serial = colon_hex(&pki.client.serial);
    let agent_revocations = || {
        server
            .events
            .events()
            .iter()
            .filter_map(|e| e.as_handshake_failure())
            .filter(|f| f.reason == Reason::Revoked && f.serial.as_deref() == Some(&agent_serial))
            .count()
    };
    assert_eq!(agent_revocations(), 0);
    let mut next = server.tls.settings();
    next.extra_crls = vec![pki.crl_with(&[&pki.client]).der];
    server.tls.reload_with(next).unwrap();
    let client_saw = one_request(server.addr, agent.clone(), SERVER_DNS)
        .await
        .expect_err("the agent revoked in memory was still served");
    assert!(client_saw.contains("CertificateRevoked"), "{client_saw}");
    assert!(eventually(|| agent_revocations() == 1).await);
    assert!(
        one_request(server.addr, revoked, SERVER_DNS)
            .await
            .unwrap()
            .contains("hello agent-revoked")
    );

    // A broken in-memory CRL is refused like a broken file, naming the field.
    let mut broken = server.tls.settings();
    broken.extra_crls = vec![b"not a CRL".to_vec()];
    let err = server.tls.reload_with(broken).unwrap_err();
    assert_eq!(err.field(), Some("extra_crls"));
    assert!(err.to_string().contains("in-memory CRL #1"), "{err}");
    assert!(
        one_request(server.addr, agent, SERVER_DNS).await.is_err(),
        "the last good config (with the in-memory CRL) stays"
    );
    server.stop().await;
}
