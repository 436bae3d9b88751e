//! The request pipeline in-process, for profiling: N keep-alive-style KV v2 reads through the
//! router (typed request, access check, handler, audit lines to a real file in /tmp/pp), on one
//! thread, with no TLS or network. Prints the time per read; run it under
//! `valgrind --tool=callgrind` for instruction counts that do not depend on the machine's load.
//!
//! `cargo bench -p keep-server --bench pipeline -- 20000 [noaudit]` (see bench/pipeline/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use axum::body::Body;
use axum::http::Request;
use keep_server::api::router;
use keep_server::audit::{AuditLog, HmacKey};
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::MemStore;
use keep_tls::identity::PeerIdentity;
use std::sync::Arc;
use tower::ServiceExt;

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let audit = args.get(1).map(String::as_str) != Some("noaudit");
    let store = Arc::new(MemStore::new());
    let state = Arc::new(AppState::unsealed(
        store,
        vec![AdminIdentity::CommonName("operator".into())],
        Limits::default(),
        "memory",
    ));
    if audit {
        std::fs::create_dir_all("/tmp/pp").unwrap();
        let log = AuditLog::open(
            std::path::Path::new("/tmp/pp/audit.log"),
            HmacKey::generate().unwrap(),
            Default::default(),
        )
        .unwrap();
        state.set_audit(log);
    }
    let now = time::OffsetDateTime::now_utc();
    let caller = Caller(Arc::new(PeerIdentity {
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
    }));
    let addr = PeerAddr("127.0.0.1:5000".parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = router(state);
    rt.block_on(async {
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1/secret/data/bench")
            .body(Body::from(r#"{"data":{"api_key":"sk-bench"}}"#))
            .unwrap();
        req.extensions_mut().insert(caller.clone());
        app.clone().oneshot(req).await.unwrap();
        let t = std::time::Instant::now();
        for _ in 0..n {
            let mut req = Request::builder()
                .method("GET")
                .uri("/v1/secret/data/bench")
                .body(Body::empty())
                .unwrap();
            req.extensions_mut().insert(caller.clone());
            req.extensions_mut().insert(addr);
            let resp = app.clone().oneshot(req).await.unwrap();
            let _ = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
        }
        eprintln!(
            "{:.1} us per read",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    });
}
