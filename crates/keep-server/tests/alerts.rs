//! Security alerts from real parts: failed handshakes against a real listener on 127.0.0.1
//! feeding the detectors through `AlertingSink`; a whole server (config → init → prepare →
//! serve) POSTing alerts to a webhook receiver in the test; a receiver that never answers; and
//! source-address alerts through the router with chosen peer addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::alerts::config::{AlertsConfig, SpikeConfig, WebhookConfig};
use keep_server::alerts::{AlertingSink, Alerts, ManualClock};
use keep_server::config::{AdminIdentity, Limits, ServerConfig};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::MemStore;
use keep_test_support::{LeafSpec, TestPki, TestPkiFiles};
use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use keep_tls::events::{Alert, AlertKind, MemorySink, SecurityEvent, Severity, SharedSink};
use keep_tls::identity::{PeerIdentity, from_verified_chain};
use keep_tls::listener::{self, ListenerOptions, ShutdownTrigger};
use keep_tls::reload::ReloadableTls;
use keep_tls::server::{TlsSettings, TlsVersion};
use keep_tls::tokio_rustls::TlsConnector;
use keep_tls::tokio_rustls::rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Upper bound of every wait.
const WAIT: Duration = Duration::from_secs(10);

/// Serialises the tests that assert exact increments of the process-wide counters.
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The rendered value of `series` (`name{labels}` or a bare name), 0 when absent.
fn metric(series: &str) -> u64 {
    let text = keep_server::server::metrics_handle()
        .expect("the Prometheus recorder installs")
        .render();
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .map_or(0, |v| v as u64)
}

fn alerts_total(kind: AlertKind) -> u64 {
    metric(&format!(
        "keep_security_alerts_total{{kind=\"{}\"}}",
        kind.as_str()
    ))
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alerts_in(events: &MemorySink) -> Vec<Alert> {
    events
        .events()
        .iter()
        .filter_map(|e| e.as_alert().cloned())
        .collect()
}

fn failures_in(events: &MemorySink) -> usize {
    events
        .events()
        .iter()
        .filter(|e| e.as_handshake_failure().is_some())
        .count()
}

fn spike(window: u64, threshold: u64) -> AlertsConfig {
    AlertsConfig {
        spike: SpikeConfig {
            window: Duration::from_secs(window),
            threshold,
            ..SpikeConfig::default()
        },
        ..AlertsConfig::default()
    }
}

fn tls_settings(files: &TestPkiFiles) -> TlsSettings {
    TlsSettings {
        cert_file: files.server_cert.clone(),
        key_file: files.server_key.clone(),
        key_password_file: None,
        client_ca_file: files.ca_bundle.clone(),
        crl_file: Some(files.crl.clone()),
        min_version: TlsVersion::V1_2,
        cipher_suites: None,
        require_client_cert: true,
        require_client_auth_eku: true,
        extra_crls: Vec::new(),
    }
}

/// A real `listener::serve` on 127.0.0.1:0 whose event sink is the server's arrangement: an
/// `AlertingSink` forwarding to `events`, with the alerts written to `events` too.
struct Listener {
    addr: SocketAddr,
    events: Arc<MemorySink>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(files: &TestPkiFiles, config: &AlertsConfig) -> Listener {
        keep_server::server::metrics_handle();
        let events = Arc::new(MemorySink::new());
        let alerts = Alerts::new(config, events.clone()).unwrap();
        let sink: SharedSink = Arc::new(AlertingSink::new(events.clone(), alerts));
        let tls = ReloadableTls::new(tls_settings(files), sink.clone()).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (trigger, signal) = listener::shutdown_channel();
        let task = tokio::spawn(listener::serve(
            tcp,
            tls,
            ListenerOptions::default(),
            sink,
            signal,
            |stream, _info| async move { drop(stream) },
        ));
        Listener {
            addr,
            events,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A client config trusting the test CA, presenting `identity` (cert, key files) if given.
fn client(files: &TestPkiFiles, identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut settings = ClientSettings::new(PemInput::file("ca", &files.ca_bundle).unwrap());
    if let Some((cert, key)) = identity {
        settings = settings.with_identity(ClientIdentity {
            cert: PemInput::file("cert", cert).unwrap(),
            key: PemInput::file("key", key).unwrap(),
            key_password: None,
        });
    }
    settings.alpn = vec![b"http/1.1".to_vec()];
    keep_tls::client::build(&settings).unwrap()
}

/// One TLS connection that sends `request` (if the handshake lets it) and reads the answer.
/// With TLS 1.3 a rejected client certificate shows only on that read; the server's event
/// says why. Returns what was read, or the error.
async fn exchange(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    request: &str,
) -> Result<String, String> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(keep_test_support::SERVER_DNS).unwrap();
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

const HEALTH: &str =
    "GET /v1/sys/health HTTP/1.1\r\nHost: vault.claw.internal\r\nConnection: close\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// (1) handshake-failure spikes, (2) expired or revoked certificates: a real listener.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_burst_of_failed_handshakes_raises_exactly_one_spike_alert() {
    let _x = exclusive().await;
    let tmp = keep_test_support::tempdir();
    let pki = TestPki::new();
    let files = pki.write_to(tmp.path());
    let server = Listener::start(&files, &spike(60, 5)).await;
    let before = alerts_total(AlertKind::HandshakeFailureSpike);

    // Twelve clients without a certificate: no_certificate, above the threshold of 5.
    let anonymous = client(&files, None);
    for _ in 0..12 {
        let _ = exchange(server.addr, anonymous.clone(), HEALTH).await;
    }
    eventually("12 handshake failures", || {
        failures_in(&server.events) >= 12
    })
    .await;
    // Five clients with a certificate from a foreign CA: unknown_ca, at the threshold only.
    let foreign = client(
        &files,
        Some((&files.foreign_client_cert, &files.foreign_client_key)),
    );
    for _ in 0..5 {
        let _ = exchange(server.addr, foreign.clone(), HEALTH).await;
    }
    eventually("17 handshake failures", || {
        failures_in(&server.events) >= 17
    })
    .await;

    let events = server.events.events();
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(SecurityEvent::as_handshake_failure)
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "no_certificate").count(),
        12,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "unknown_ca").count(),
        5,
        "{reasons:?}"
    );
    let alerts = alerts_in(&server.events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.alert, AlertKind::HandshakeFailureSpike);
    assert_eq!(a.severity, Severity::Warning);
    assert_eq!(a.reason.as_deref(), Some("no_certificate"));
    assert_eq!(a.count, Some(6));
    assert_eq!((a.window_seconds, a.threshold), (Some(60), Some(5)));
    assert!(a.summary.contains("client certificate"), "{}", a.summary);
    // The alert came right after the sixth failure, in the same sink, in order.
    let position = events.iter().position(|e| e.as_alert().is_some()).unwrap();
    assert_eq!(
        events[..position]
            .iter()
            .filter(|e| e.as_handshake_failure().is_some())
            .count(),
        6
    );
    assert_eq!(alerts_total(AlertKind::HandshakeFailureSpike), before + 1);
    server.stop().await;
}

#[tokio::test]
async fn expired_and_revoked_certificates_alert_once_per_certificate() {
    let _x = exclusive().await;
    let tmp = keep_test_support::tempdir();
    let pki = TestPki::new();
    let files = pki.write_to(tmp.path());
    let server = Listener::start(&files, &AlertsConfig::default()).await;
    let before = alerts_total(AlertKind::ExpiredOrRevokedCert);
    let spikes_before = alerts_total(AlertKind::HandshakeFailureSpike);

    let expired = client(
        &files,
        Some((&files.expired_client_cert, &files.expired_client_key)),
    );
    // A reconnect loop: three attempts, one alert.
    for _ in 0..3 {
        let r = exchange(server.addr, expired.clone(), HEALTH).await;
        assert!(r.as_ref().map_or(true, |s| !s.contains("200 OK")), "{r:?}");
    }
    eventually("3 handshake failures", || failures_in(&server.events) >= 3).await;
    let alerts = alerts_in(&server.events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.alert, AlertKind::ExpiredOrRevokedCert);
    assert_eq!(a.severity, Severity::Warning);
    assert_eq!(a.reason.as_deref(), Some("expired"));
    assert_eq!(
        a.fingerprint.as_deref(),
        Some(keep_pki::inspect::fingerprint_sha256(&pki.expired_client.der).as_str())
    );
    assert_eq!(
        a.serial.as_deref(),
        Some(
            keep_pki::inspect::inspect(&pki.expired_client.der)
                .unwrap()
                .serial
                .as_str()
        )
    );
    assert!(a.subject.as_deref().unwrap().contains("CN="));
    assert_eq!(a.source_ip, Some("127.0.0.1".parse().unwrap()));
    assert!(a.summary.contains("new certificate"), "{}", a.summary);

    let revoked = client(
        &files,
        Some((&files.revoked_client_cert, &files.revoked_client_key)),
    );
    let _ = exchange(server.addr, revoked, HEALTH).await;
    eventually("the revoked alert", || alerts_in(&server.events).len() == 2).await;
    let a = &alerts_in(&server.events)[1];
    assert_eq!(a.alert, AlertKind::ExpiredOrRevokedCert);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.reason.as_deref(), Some("revoked"));
    assert_eq!(
        a.fingerprint.as_deref(),
        Some(keep_pki::inspect::fingerprint_sha256(&pki.revoked_client.der).as_str())
    );
    assert_eq!(alerts_total(AlertKind::ExpiredOrRevokedCert), before + 2);
    assert_eq!(
        alerts_total(AlertKind::HandshakeFailureSpike),
        spikes_before,
        "4 failures are no spike at the default threshold"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (3) the webhook, through a whole server: config → init → prepare → serve.
// ---------------------------------------------------------------------------------------------

/// What a webhook receiver got: the request head and body.
struct Received {
    head: String,
    body: String,
}

/// A webhook receiver on 127.0.0.1 (a std thread): answers 200 and hands each request over,
/// or, with `answer: false`, accepts connections and never says a word.
struct Receiver {
    url: String,
    requests: mpsc::Receiver<Received>,
    accepted: Arc<AtomicUsize>,
}

fn receiver(answer: bool) -> Receiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/keep", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut silent = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            if !answer {
                silent.push(conn); // held open, never answered
                continue;
            }
            let _ = conn.set_read_timeout(Some(WAIT));
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                buf.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = conn.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(Received {
                head,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    });
    Receiver {
        url,
        requests,
        accepted,
    }
}

/// A whole server from a YAML config with `alerts` appended, initialized and serving.
struct Live {
    _tmp: tempfile::TempDir,
    files: TestPkiFiles,
    addr: SocketAddr,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start(alerts: &str) -> Live {
        let tmp = keep_test_support::tempdir();
        let dir = tmp.path().to_path_buf();
        let files = TestPki::new().write_to(&dir);
        let path = dir.join("keep-server.yaml");
        let yaml = format!(
            "listener:\n  address: 127.0.0.1:0\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    crl_file: {}\nstorage:\n  sqlite: {{ path: keep.db }}\nseal:\n  key_file: unseal.key\nadmins:\n  - common_name: operator\n{alerts}",
            files.server_cert.display(),
            files.server_key.display(),
            files.ca_bundle.display(),
            files.crl.display(),
        );
        std::fs::write(&path, yaml).unwrap();
        let config = ServerConfig::load(&path).unwrap();
        let no_prompt = |_: &str| Err::<secrecy::SecretString, String>("no prompt".into());
        keep_server::server::init(&config, &no_prompt).unwrap();
        let prepared = keep_server::server::prepare(&config, &no_prompt).unwrap();
        let tcp = keep_server::server::bind(&config).await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (trigger, signal) = listener::shutdown_channel();
        let task = tokio::spawn(async move {
            keep_server::server::serve(&config, prepared, tcp, signal).await;
        });
        Live {
            _tmp: tmp,
            files,
            addr,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receives_the_alert_json() {
    let _x = exclusive().await;
    let hook = receiver(true);
    let server = Live::start(&format!(
        "alerts:\n  handshake_spike: {{ window: 60s, threshold: 2 }}\n  webhook:\n    url: {}\n    timeout: 2s\n    headers: {{ Authorization: \"Bearer hook-t0ken\" }}\n",
        hook.url
    ))
    .await;
    let before = alerts_total(AlertKind::HandshakeFailureSpike);
    let anonymous = client(&server.files, None);
    for _ in 0..3 {
        let _ = exchange(server.addr, anonymous.clone(), HEALTH).await;
    }
    let got = tokio::task::spawn_blocking(move || hook.requests.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the webhook receives the alert");
    let head = got.head.to_ascii_lowercase();
    assert!(head.starts_with("post /hooks/keep http/1.1"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        got.head.contains("Bearer hook-t0ken"),
        "the configured header is sent"
    );
    let v: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["event"], "security_alert");
    assert_eq!(v["alert"], "handshake_failure_spike");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["reason"], "no_certificate");
    assert_eq!(v["count"], 3);
    assert_eq!(v["window_seconds"], 60);
    assert_eq!(v["threshold"], 2);
    assert!(v["summary"].as_str().unwrap().contains("threshold"));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alerts_total(AlertKind::HandshakeFailureSpike), before + 1);

    // The server still serves a valid client.
    let agent = client(
        &server.files,
        Some((&server.files.client_cert, &server.files.client_key)),
    );
    let answer = exchange(server.addr, agent, HEALTH).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_slows_nothing_and_retries_are_bounded() {
    let _x = exclusive().await;
    let hook = receiver(false);
    let server = Live::start(&format!(
        "alerts:\n  handshake_spike: {{ window: 60s, threshold: 1 }}\n  webhook: {{ url: \"{}\", timeout: 300ms, retries: 2, backoff: 100ms }}\n",
        hook.url
    ))
    .await;
    let failed_before = metric("keep_security_alert_webhook_failed_total");
    let anonymous = client(&server.files, None);
    for _ in 0..2 {
        let _ = exchange(server.addr, anonymous.clone(), HEALTH).await;
    }
    // While the receiver hangs, the server answers at once.
    let agent = client(
        &server.files,
        Some((&server.files.client_cert, &server.files.client_key)),
    );
    for _ in 0..3 {
        let start = Instant::now();
        let answer = exchange(server.addr, agent.clone(), HEALTH).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "health took {:?} while the webhook hangs",
            start.elapsed()
        );
    }
    // One alert: the first attempt and two retries, then it gives up.
    eventually("three delivery attempts", || {
        hook.accepted.load(Ordering::SeqCst) >= 3
    })
    .await;
    eventually("the delivery failure to be counted", || {
        metric("keep_security_alert_webhook_failed_total") == failed_before + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        hook.accepted.load(Ordering::SeqCst),
        3,
        "no attempt after the last retry"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (4) unexpected source addresses: through the router, with chosen peer addresses.
// ---------------------------------------------------------------------------------------------

fn identity(chain_der: &[Vec<u8>]) -> Arc<PeerIdentity> {
    let chain: Vec<CertificateDer<'static>> = chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    Arc::new(from_verified_chain(&chain).unwrap())
}

struct Api {
    state: Arc<AppState>,
    events: Arc<MemorySink>,
    clock: Arc<ManualClock>,
    pki: TestPki,
    admin: Arc<PeerIdentity>,
}

impl Api {
    fn new() -> Api {
        Self::with_webhook(None)
    }

    fn with_webhook(webhook: Option<WebhookConfig>) -> Api {
        keep_server::server::metrics_handle();
        let events = Arc::new(MemorySink::new());
        let clock = Arc::new(ManualClock::new());
        let config = AlertsConfig {
            webhook,
            ..AlertsConfig::default()
        };
        let mut state = AppState::unsealed(
            Arc::new(MemStore::new()),
            vec![AdminIdentity::CommonName("operator".into())],
            Limits::default(),
            "memory",
        );
        state.alerts = Alerts::with_clock(&config, events.clone(), clock.clone()).unwrap();
        state.alerts.start_webhook();
        let pki = TestPki::new();
        let admin = identity(&pki.admin.chain_der);
        Api {
            state: Arc::new(state),
            events,
            clock,
            pki,
            admin,
        }
    }

    async fn call(
        &self,
        who: &Arc<PeerIdentity>,
        from: &str,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_default(),
            )
            .unwrap();
        req.extensions_mut().insert(Caller(who.clone()));
        req.extensions_mut().insert(PeerAddr(from.parse().unwrap()));
        let resp = keep_server::api::router(self.state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn role(&self, name: &str, body: Value) {
        let (s, v) = self
            .call(
                &self.admin,
                "127.0.0.1:40000",
                None,
                "POST",
                &format!("/v1/auth/cert/certs/{name}"),
                Some(body),
            )
            .await;
        assert!(s.is_success(), "{s} {v}");
    }

    async fn login(
        &self,
        who: &Arc<PeerIdentity>,
        from: &str,
        name: Option<&str>,
    ) -> (StatusCode, Value) {
        let body = name.map_or_else(|| json!({}), |n| json!({ "name": n }));
        self.call(who, from, None, "POST", "/v1/auth/cert/login", Some(body))
            .await
    }

    fn agent(&self, name: &str) -> Arc<PeerIdentity> {
        identity(&self.pki.issue(&LeafSpec::agent(name)).chain_der)
    }

    fn alerts(&self) -> Vec<Alert> {
        alerts_in(&self.events)
    }
}

#[tokio::test]
async fn a_login_from_outside_token_bound_cidrs_alerts() {
    let api = Api::new();
    api.role(
        "lab",
        json!({
            "certificate": api.pki.intermediate.cert_pem,
            "allowed_common_names": "lab-*",
            "token_bound_cidrs": "10.0.0.0/8",
        }),
    )
    .await;
    let lab1 = api.agent("lab-1");
    // Named login from 127.0.0.1: refused (as before), and now an alert.
    let (s, v) = api.login(&lab1, "127.0.0.1:40000", Some("lab")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("token_bound_cidrs")
    );
    let alerts = api.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.alert, AlertKind::UnexpectedSourceAddress);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.role.as_deref(), Some("lab"));
    assert_eq!(a.expected_cidrs, vec!["10.0.0.0/8"]);
    assert_eq!(a.source_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(a.peer, Some("127.0.0.1:40000".parse().unwrap()));
    assert_eq!(
        a.fingerprint.as_deref(),
        Some(lab1.fingerprint_sha256.as_str())
    );
    assert_eq!(a.serial.as_deref(), Some(lab1.serial.as_str()));
    assert!(a.summary.contains("tried to log in"), "{}", a.summary);
    // The same certificate retrying from the same address: rate-limited.
    api.login(&lab1, "127.0.0.1:40001", Some("lab")).await;
    assert_eq!(api.alerts().len(), 1);
    // A login without a name finds the role that refused only the address.
    let lab2 = api.agent("lab-2");
    let (s, _) = api.login(&lab2, "127.0.0.1:40002", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(api.alerts().len(), 2);
    assert_eq!(api.alerts()[1].role.as_deref(), Some("lab"));
    // A certificate the role does not accept anyway is a wrong certificate, not a wrong place.
    let other = api.agent("other-1");
    api.login(&other, "127.0.0.1:40003", Some("lab")).await;
    api.login(&other, "127.0.0.1:40003", None).await;
    assert_eq!(api.alerts().len(), 2);
    // From inside the CIDR: a token, no alert.
    let (s, v) = api.login(&lab1, "10.1.2.3:5000", Some("lab")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(api.alerts().len(), 2);
    // That token presented from outside the CIDR: 403 and an alert.
    let (s, _) = api
        .call(
            &lab1,
            "192.0.2.9:6000",
            Some(&token),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let alerts = api.alerts();
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[2].source_ip, Some("192.0.2.9".parse().unwrap()));
    assert!(alerts[2].summary.contains("token"), "{}", alerts[2].summary);
}

#[tokio::test]
async fn pin_first_seen_address_pins_the_first_login_and_refuses_other_addresses() {
    let api = Api::new();
    api.role(
        "pinned",
        json!({
            "certificate": api.pki.intermediate.cert_pem,
            "allowed_common_names": "pin-*",
            "token_policies": "default",
            "pin_first_seen_address": true,
        }),
    )
    .await;
    let (s, v) = api
        .call(
            &api.admin,
            "127.0.0.1:40000",
            None,
            "GET",
            "/v1/auth/cert/certs/pinned",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["pin_first_seen_address"], true);

    let agent = api.agent("pin-1");
    // First login pins 127.0.0.1; another port on the same address is the same address.
    let (s, v) = api.login(&agent, "127.0.0.1:40000", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (s, _) = api.login(&agent, "127.0.0.1:40001", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(api.alerts().is_empty());

    // A login from elsewhere: refused with a clear reason, and an alert.
    let (s, v) = api.login(&agent, "192.0.2.7:5555", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let msg = v["errors"][0].as_str().unwrap();
    assert!(msg.contains("pin_first_seen_address"), "{msg}");
    assert!(
        !msg.contains("127.0.0.1"),
        "the pinned address is not told: {msg}"
    );
    let alerts = api.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.alert, AlertKind::UnexpectedSourceAddress);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.pinned_address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(a.source_ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(a.role.as_deref(), Some("pinned"));
    assert_eq!(
        a.fingerprint.as_deref(),
        Some(agent.fingerprint_sha256.as_str())
    );
    assert!(a.expected_cidrs.is_empty());

    // The token works from the pinned address, and is refused elsewhere (a minute later, past
    // the rate limit of the login alert, so it alerts too).
    let (s, _) = api
        .call(
            &agent,
            "127.0.0.1:40002",
            Some(&token),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.clock.advance(Duration::from_secs(61));
    let (s, v) = api
        .call(
            &agent,
            "192.0.2.7:5556",
            Some(&token),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let alerts = api.alerts();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts[1].summary.contains("presented its token"),
        "{}",
        alerts[1].summary
    );
    assert_eq!(alerts[1].pinned_address, Some("127.0.0.1".parse().unwrap()));

    // Another certificate of the same role pins its own first address.
    let other = api.agent("pin-2");
    let (s, _) = api.login(&other, "192.0.2.7:5557", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.login(&other, "127.0.0.1:40003", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(api.alerts().len(), 3);

    // A role without the flag pins nothing.
    api.role(
        "free",
        json!({
            "certificate": api.pki.intermediate.cert_pem,
            "allowed_common_names": "free-*",
        }),
    )
    .await;
    let free = api.agent("free-1");
    for from in ["127.0.0.1:1", "192.0.2.1:2", "198.51.100.1:3"] {
        let (s, _) = api.login(&free, from, None).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(api.alerts().len(), 3);
}

#[tokio::test]
async fn pinning_applies_to_tokenless_requests_too() {
    let api = Api::new();
    api.role(
        "tl",
        json!({
            "certificate": api.pki.intermediate.cert_pem,
            "allowed_common_names": "tl-*",
            "allow_tokenless": true,
            "pin_first_seen_address": true,
        }),
    )
    .await;
    let agent = api.agent("tl-1");
    // A request without a token is authorized by the tokenless role: its first one pins.
    let path = "/v1/secret/data/anything";
    let (s1, _) = api
        .call(&agent, "127.0.0.1:1000", None, "GET", path, None)
        .await;
    assert_eq!(
        s1,
        StatusCode::FORBIDDEN,
        "the role's policies grant nothing here"
    );
    assert!(
        api.alerts().is_empty(),
        "the first request pinned the address"
    );
    let (s2, v) = api
        .call(&agent, "192.0.2.3:1000", None, "GET", path, None)
        .await;
    assert_eq!(s2, StatusCode::FORBIDDEN);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("pin_first_seen_address"),
        "{v}"
    );
    let alerts = api.alerts();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].summary.contains("tokenless"),
        "{}",
        alerts[0].summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_never_wait_for_a_hanging_webhook() {
    let _x = exclusive().await;
    let hook = receiver(false);
    let webhook = WebhookConfig {
        url: hook.url.parse().unwrap(),
        timeout: Duration::from_secs(30),
        retries: 0,
        backoff: Duration::from_secs(1),
        ca_cert_file: None,
        headers: Vec::new(),
    };
    let api = Api::with_webhook(Some(webhook));
    api.role(
        "lab",
        json!({
            "certificate": api.pki.intermediate.cert_pem,
            "allowed_common_names": "lab-*",
            "token_bound_cidrs": "10.0.0.0/8",
        }),
    )
    .await;
    let dropped_before = metric("keep_security_alert_webhook_dropped_total");
    // A refused login raises an alert for the (hanging) webhook and still answers at once.
    let start = Instant::now();
    let (s, _) = api
        .login(&api.agent("lab-1"), "127.0.0.1:1", Some("lab"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    eventually("the first delivery attempt", || {
        hook.accepted.load(Ordering::SeqCst) == 1
    })
    .await;
    // Far more alerts than the queue holds: none of them waits; the overflow is counted.
    let start = Instant::now();
    for i in 0..400 {
        api.state
            .alerts
            .renewal_failed("CN=agent", &format!("{i:04x}"), "test", None);
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "400 alerts took {:?}",
        start.elapsed()
    );
    let dropped = metric("keep_security_alert_webhook_dropped_total") - dropped_before;
    assert_eq!(
        dropped,
        400 - keep_server::alerts::webhook::QUEUE_CAPACITY as u64,
        "one alert is being delivered, the queue holds {}, the rest are dropped",
        keep_server::alerts::webhook::QUEUE_CAPACITY
    );
    // Every alert is still in the event log.
    assert_eq!(api.alerts().len(), 401);
}
