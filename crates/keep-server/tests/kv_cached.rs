//! KV v2 through the router over the server's storage stack with the read cache (a real
//! SQLite file, write-health tracking, `CachedStore`, the barrier): every write the API can
//! make is seen by the next read, while repeated reads are served from the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller};
use keep_store::{Barrier, CachedStore, RootKey, SqliteStore, Store, Tracked};
use keep_tls::identity::PeerIdentity;
use serde_json::{Value, json};
use tower::ServiceExt;

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

struct Server {
    state: Arc<AppState>,
    cache: Arc<CachedStore<Arc<dyn Store>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(dir.path().join("keep.db")).unwrap();
        let (tracked, _health) = Tracked::new(Arc::new(sqlite));
        let cache = Arc::new(CachedStore::new(Arc::new(tracked) as Arc<dyn Store>));
        let barrier = Barrier::initialize(cache.clone(), RootKey::from_bytes([3; 32])).unwrap();
        let state = Arc::new(AppState::unsealed(
            Arc::new(barrier),
            vec![AdminIdentity::CommonName("operator".into())],
            Limits::default(),
            "sqlite",
        ));
        Server {
            state,
            cache,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(match body {
                Some(b) => Body::from(serde_json::to_vec(&b).unwrap()),
                None => Body::empty(),
            })
            .unwrap();
        req.extensions_mut().insert(operator());
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// The current value's `k`, or the status when the read is refused.
    async fn read(&self) -> Result<Value, StatusCode> {
        let (s, v) = self.call("GET", "/v1/secret/data/app/db", None).await;
        if s == StatusCode::OK {
            Ok(v["data"]["data"]["k"].clone())
        } else {
            Err(s)
        }
    }

    async fn ok(&self, method: &str, uri: &str, body: Option<Value>) {
        let (s, v) = self.call(method, uri, body).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
    }
}

#[tokio::test]
async fn every_kv_write_is_seen_by_the_next_read_through_the_cache() {
    let srv = Server::new();
    // Absent: a negative entry, then a write replaces it.
    assert_eq!(srv.read().await, Err(StatusCode::NOT_FOUND));
    let data = "/v1/secret/data/app/db";
    srv.ok("POST", data, Some(json!({"data": {"k": "v1"}})))
        .await;
    assert_eq!(srv.read().await, Ok(json!("v1")));
    let hits = srv.cache.stats().hits;
    assert_eq!(srv.read().await, Ok(json!("v1")));
    assert!(
        srv.cache.stats().hits > hits,
        "a repeated read hits the cache"
    );

    // A new version, with cas.
    srv.ok(
        "POST",
        data,
        Some(json!({"data": {"k": "v2"}, "options": {"cas": 1}})),
    )
    .await;
    assert_eq!(srv.read().await, Ok(json!("v2")));
    // A refused cas changes nothing and the read still sees v2.
    let (s, _) = srv
        .call(
            "POST",
            data,
            Some(json!({"data": {"k": "no"}, "options": {"cas": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(srv.read().await, Ok(json!("v2")));

    // Soft delete, undelete, destroy, and deleting all metadata.
    srv.ok("DELETE", data, None).await;
    assert_eq!(srv.read().await, Err(StatusCode::NOT_FOUND));
    srv.ok(
        "POST",
        "/v1/secret/undelete/app/db",
        Some(json!({"versions": [2]})),
    )
    .await;
    assert_eq!(srv.read().await, Ok(json!("v2")));
    srv.ok(
        "POST",
        "/v1/secret/destroy/app/db",
        Some(json!({"versions": [2]})),
    )
    .await;
    assert_eq!(srv.read().await, Err(StatusCode::NOT_FOUND));
    srv.ok("POST", data, Some(json!({"data": {"k": "v3"}})))
        .await;
    assert_eq!(srv.read().await, Ok(json!("v3")));
    srv.ok("DELETE", "/v1/secret/metadata/app/db", None).await;
    assert_eq!(srv.read().await, Err(StatusCode::NOT_FOUND));
    srv.ok("POST", data, Some(json!({"data": {"k": "v4"}})))
        .await;
    let (s, v) = srv.call("GET", data, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["data"]["k"], "v4");
    assert_eq!(v["data"]["metadata"]["version"], 1, "metadata was deleted");
}
