//! What the audit layer tells a client when the audit log fails in the middle of a request
//! (issue 11 item 5): "refused" only when nothing was acted on, "the change was applied" when
//! only the response line failed. The router is called in memory; the audit sink is a writer
//! that fails request or response lines on demand (the real-disk behaviour, a full tmpfs, is
//! tested in `audit.rs` and in the binary's `tests/server.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::Request;
use keep_server::api::router;
use keep_server::audit::{AuditLog, AuditOptions, HmacKey};
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller};
use keep_store::MemStore;
use keep_tls::identity::PeerIdentity;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Fails (ENOSPC) every write while `all` is set, and writes holding a response line while
/// `responses` is set.
struct Failing {
    all: Arc<AtomicBool>,
    responses: Arc<AtomicBool>,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let response = buf.windows(17).any(|w| w == b"\"type\":\"response\"");
        if self.all.load(Ordering::SeqCst) || (response && self.responses.load(Ordering::SeqCst)) {
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn operator() -> Caller {
    let now = time::OffsetDateTime::now_utc();
    Caller(Arc::new(PeerIdentity {
        subject: "CN=operator".into(),
        common_name: Some("operator".into()),
        dns_sans: vec![],
        uri_sans: vec![],
        email_sans: vec![],
        ip_sans: vec![],
        organizational_units: vec![],
        serial: "01".into(),
        fingerprint_sha256: "00".repeat(32),
        not_before: now,
        not_after: now,
        issuer: "CN=test".into(),
        issuer_common_name: Some("test".into()),
        chain: vec![],
        issuers: vec![],
    }))
}

async fn call(state: &Arc<AppState>, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(serde_json::to_vec(&b).unwrap())))
        .unwrap();
    req.extensions_mut().insert(operator());
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failures_are_reported_as_what_actually_happened() {
    let all = Arc::new(AtomicBool::new(false));
    let responses = Arc::new(AtomicBool::new(false));
    let log = AuditLog::with_writer(
        Box::new(Failing {
            all: all.clone(),
            responses: responses.clone(),
        }),
        HmacKey::from_bytes(&[9u8; 32]).unwrap(),
        AuditOptions::default(),
    )
    .unwrap();
    let state = Arc::new(AppState::unsealed(
        Arc::new(MemStore::new()),
        vec![AdminIdentity::CommonName("operator".into())],
        Limits::default(),
        "memory",
    ));
    state.set_audit(log);
    let uri = "/v1/secret/data/app";

    // Only the response line fails: the write happened, and the client is told so.
    responses.store(true, Ordering::SeqCst);
    let (code, v) = call(&state, "POST", uri, Some(json!({"data": {"k": "v1"}}))).await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["errors"][0],
        "the change was applied; its audit response line could not be written"
    );
    // A read whose response line fails is withheld, and says nothing changed.
    let (code, v) = call(&state, "GET", uri, None).await;
    assert_eq!(code, 500, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("withheld (nothing was changed)"),
        "{v}"
    );
    assert!(!v.to_string().contains("v1"), "the result leaked: {v}");
    responses.store(false, Ordering::SeqCst);
    let (code, v) = call(&state, "GET", uri, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"]["data"]["k"], "v1",
        "the message was true: applied"
    );
    assert_eq!(v["data"]["metadata"]["version"], 1);

    // The request line fails: refused, and nothing was applied.
    all.store(true, Ordering::SeqCst);
    let (code, v) = call(&state, "POST", uri, Some(json!({"data": {"k": "v2"}}))).await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["errors"][0],
        "the audit log cannot be written; the request was refused"
    );
    all.store(false, Ordering::SeqCst);
    let (code, v) = call(&state, "GET", uri, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"]["data"]["k"], "v1",
        "the refusal was true: not applied"
    );
    assert_eq!(v["data"]["metadata"]["version"], 1);
}

/// Blocks every write while `stuck` is set (a hung NFS mount, a frozen disk), for at most
/// 20 s so a broken test cannot hang forever.
struct Stuck {
    stuck: Arc<AtomicBool>,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.stuck.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Through the router, with the sink stuck (its write blocks): the request whose call is
/// writing (the flusher) waits for that write, as audit.rs documents, but every other request
/// fails within the 1 s write timeout (a watchdog, not a hang), nothing else is acted on,
/// health goes red while it lasts, and all of it recovers when the sink does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_sink_fails_requests_within_the_timeout_and_turns_health_red() {
    use std::time::{Duration, Instant};
    let stuck = Arc::new(AtomicBool::new(false));
    let log = AuditLog::with_writer(
        Box::new(Stuck {
            stuck: stuck.clone(),
        }),
        HmacKey::from_bytes(&[9u8; 32]).unwrap(),
        AuditOptions::default(),
    )
    .unwrap();
    let state = Arc::new(AppState::unsealed(
        Arc::new(MemStore::new()),
        vec![AdminIdentity::CommonName("operator".into())],
        Limits::default(),
        "memory",
    ));
    state.set_audit(log);
    let uri = "/v1/secret/data/app";
    let (code, v) = call(&state, "POST", uri, Some(json!({"data": {"k": "v1"}}))).await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = call(&state, "GET", "/v1/sys/health", None).await;
    assert_eq!(code, 200);

    stuck.store(true, Ordering::SeqCst);
    // The first request becomes the flusher and its write blocks.
    let flusher = {
        let state = state.clone();
        tokio::spawn(async move { call(&state, "GET", uri, None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !flusher.is_finished(),
        "the flusher's write should still be blocked"
    );

    // Everyone else: refused within the timeout, a write refused before it acts.
    let bound = Duration::from_secs(5);
    for body in [Some(json!({"data": {"k": "v2"}})), None, None] {
        let method = if body.is_some() { "POST" } else { "GET" };
        let started = Instant::now();
        let (code, v) = tokio::time::timeout(bound, call(&state, method, uri, body))
            .await
            .unwrap_or_else(|_| panic!("{method} hung on a stuck audit sink"));
        // The 1 s write timeout, plus scheduling slack on a loaded CI machine.
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{method} took {:?}",
            started.elapsed()
        );
        assert_eq!(code, 500, "{method}: {v}");
        assert_eq!(
            v["errors"][0], "the audit log cannot be written; the request was refused",
            "{method}"
        );
    }
    let (code, v) = tokio::time::timeout(bound, call(&state, "GET", "/v1/sys/health", None))
        .await
        .expect("health hung on a stuck audit sink");
    assert_eq!(code, 503, "health must go red: {v}");
    assert_eq!(v["audit_healthy"], false, "{v}");

    stuck.store(false, Ordering::SeqCst);
    // The flusher's line landed when the write returned: its read is answered.
    let (code, v) = flusher.await.unwrap();
    assert_eq!(code, 200, "{v}");
    let mut recovered = false;
    for _ in 0..60 {
        let (code, _) = call(&state, "GET", "/v1/sys/health", None).await;
        if code == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "health stayed red after the sink recovered");
    let (code, v) = call(&state, "GET", uri, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"]["data"]["k"], "v1",
        "the refused write was not applied"
    );
    assert_eq!(v["data"]["metadata"]["version"], 1);
}
