//! The HTTP API called through the router in memory: Vault's shapes and status codes, the
//! limits, and that a refused request stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller};
use keep_store::{MemStore, Store};
use keep_tls::identity::PeerIdentity;
use serde_json::{Value, json};
use tower::ServiceExt;

fn identity(cn: &str) -> Caller {
    let now = time::OffsetDateTime::now_utc();
    Caller(Arc::new(PeerIdentity {
        subject: format!("CN={cn}"),
        common_name: Some(cn.to_owned()),
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

struct Api {
    state: Arc<AppState>,
    store: Arc<MemStore>,
}

impl Api {
    fn new() -> Api {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Api {
        let store = Arc::new(MemStore::new());
        let state = Arc::new(AppState::unsealed(
            store.clone(),
            vec![AdminIdentity::CommonName("operator".into())],
            limits,
            "memory",
        ));
        Api { state, store }
    }

    async fn call_as(
        &self,
        who: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(match body {
                Some(b) => Body::from(serde_json::to_vec(&b).unwrap()),
                None => Body::empty(),
            })
            .unwrap();
        if let Some(cn) = who {
            req.extensions_mut().insert(identity(cn));
        }
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some("operator"), method, uri, body).await
    }

    fn stored(&self) -> usize {
        self.store.len()
    }
}

#[tokio::test]
async fn kv_v2_round_trip_in_vaults_shapes() {
    let api = Api::new();
    let (s, v) = api
        .call(
            "POST",
            "/v1/secret/data/openclaw/llm",
            Some(json!({"data": {"api_key": "sk-1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["version"], 1);
    for field in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(v.get(field).is_some(), "envelope lacks {field}: {v}");
    }
    let (s, v) = api.call("GET", "/v1/secret/data/openclaw/llm", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["data"]["api_key"], "sk-1");
    assert_eq!(v["data"]["metadata"]["version"], 1);
    assert_eq!(v["data"]["metadata"]["deletion_time"], "");
    assert_eq!(v["data"]["metadata"]["destroyed"], false);

    // cas: stale is refused and stores nothing.
    let before = api.stored();
    let (s, v) = api
        .call(
            "PUT",
            "/v1/secret/data/openclaw/llm",
            Some(json!({"data": {"api_key": "x"}, "options": {"cas": 0}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0].as_str().unwrap().contains("check-and-set"),
        "{v}"
    );
    assert_eq!(api.stored(), before);

    // Deleted versions answer 404 with their metadata (hvac relies on it).
    let (s, _) = api
        .call("DELETE", "/v1/secret/data/openclaw/llm", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api.call("GET", "/v1/secret/data/openclaw/llm", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["data"]["data"], Value::Null);
    assert_ne!(v["data"]["metadata"]["deletion_time"], "");
    // A path that never existed: 404 with an empty error list.
    let (s, v) = api.call("GET", "/v1/secret/data/nothing/here", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v, json!({"errors": []}));

    // LIST verb and ?list=true agree.
    let (s, v) = api
        .call("LIST", "/v1/secret/metadata/openclaw/", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["keys"], json!(["llm"]));
    let (_, v2) = api
        .call("GET", "/v1/secret/metadata/openclaw?list=true", None)
        .await;
    assert_eq!(v2["data"]["keys"], json!(["llm"]));
}

#[tokio::test]
async fn lenient_bodies_from_real_clients() {
    let api = Api::new();
    // vaultrs: JSON without a Content-Type.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/secret/data/a")
        .body(Body::from(r#"{"data":{"k":"v"}}"#))
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(identity("operator"));
    let (s, v) = api.send(req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // node-vault: empty form-encoded body on a write that needs none.
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/secret/delete/a")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(identity("operator"));
    let (s, v) = api.send(req).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "empty versions list is refused: {v}"
    );
    assert!(
        v["errors"][0].as_str().unwrap().contains("no version"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_requests_get_specific_4xx_and_store_nothing() {
    let api = Api::with_limits(Limits {
        max_request_bytes: 4096,
        ..Limits::default()
    });
    let big = json!({"data": {"blob": "x".repeat(8192)}});
    // (method, uri, JSON body, raw body, expected status, words in the message)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<Value>,
        Option<&'a str>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/secret/data/big",
            Some(big),
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit is 4096",
        ),
        (
            "POST",
            "/v1/secret/data/bad",
            None,
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "failed to parse JSON",
        ),
        (
            "POST",
            "/v1/secret/data/arr",
            Some(json!([1, 2])),
            None,
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            "POST",
            "/v1/secret/data/nodata",
            Some(json!({"x": 1})),
            None,
            StatusCode::BAD_REQUEST,
            "no data",
        ),
        (
            "POST",
            "/v1/secret/data/../escape",
            Some(json!({"data": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            "POST",
            "/v1/secret/data/%2e%2e/escape",
            Some(json!({"data": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            "POST",
            "/v1/secret/data/a%2fb",
            Some(json!({"data": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            "POST",
            "/v1/secret/data/a//b",
            Some(json!({"data": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            "POST",
            "/v1/secret/data/./a",
            Some(json!({"data": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            "GET",
            "/v1/nope/route",
            None,
            None,
            StatusCode::NOT_FOUND,
            "no handler",
        ),
        (
            "GET",
            "/v1/secret/bogus/x",
            None,
            None,
            StatusCode::NOT_FOUND,
            "no handler",
        ),
        (
            "POST",
            "/v1/sys/health",
            None,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        ),
        (
            "PATCH",
            "/v1/secret/config",
            None,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        ),
        (
            "GET",
            "/v1/secret/data/v?version=abc",
            None,
            None,
            StatusCode::BAD_REQUEST,
            "version",
        ),
        (
            "POST",
            "/v1/secret/metadata/m",
            Some(json!({"max_versions": -1})),
            None,
            StatusCode::BAD_REQUEST,
            "max_versions",
        ),
        (
            "POST",
            "/v1/secret/metadata/m",
            Some(json!({"custom_metadata": {"a": 1}})),
            None,
            StatusCode::BAD_REQUEST,
            "strings",
        ),
    ];
    for (method, uri, body, raw, want, words) in cases {
        let (s, v) = match raw {
            Some(raw) => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(raw.to_owned()))
                    .unwrap();
                req.extensions_mut().insert(identity("operator"));
                api.send(req).await
            }
            None => api.call(method, uri, body).await,
        };
        assert_eq!(s, want, "{method} {uri}: {v}");
        let msg = v["errors"][0].as_str().unwrap_or_default();
        assert!(msg.contains(words), "{method} {uri}: want {words:?} in {v}");
        assert_eq!(api.stored(), 0, "{method} {uri} stored something");
    }
}

#[tokio::test]
async fn only_admins_get_in_and_sealed_says_so() {
    let api = Api::new();
    let (s, v) = api
        .call_as(Some("agent-01"), "GET", "/v1/secret/data/x", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v, json!({"errors": ["permission denied"]}));
    let (s, _) = api
        .call_as(
            None,
            "POST",
            "/v1/secret/data/x",
            Some(json!({"data": {"a": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(api.stored(), 0);

    let (s, v) = api.call_as(None, "GET", "/v1/sys/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["initialized"].clone(), v["sealed"].clone()),
        (json!(true), json!(false))
    );
    let (s, _) = api
        .call_as(Some("agent-01"), "PUT", "/v1/sys/seal", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api.call("PUT", "/v1/sys/seal", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api.call_as(None, "GET", "/v1/sys/health", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["sealed"], true);
    let (s, v) = api
        .call_as(None, "GET", "/v1/sys/health?sealedcode=200", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call("GET", "/v1/secret/data/x", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["errors"][0].as_str().unwrap().contains("sealed"));
    let (_, v) = api.call_as(None, "GET", "/v1/sys/seal-status", None).await;
    assert_eq!(
        (v["initialized"].clone(), v["sealed"].clone()),
        (json!(true), json!(true))
    );

    let uninit = Arc::new(AppState::without_store(
        false,
        vec![],
        Limits::default(),
        "sqlite",
    ));
    let api2 = Api {
        state: uninit,
        store: Arc::new(MemStore::new()),
    };
    let (s, v) = api2.call_as(None, "GET", "/v1/sys/health", None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(v["initialized"], false);
}

#[tokio::test]
async fn metadata_config_and_version_ops() {
    let api = Api::new();
    let (s, _) = api.call("POST", "/v1/secret/metadata/app", Some(json!({"max_versions": 2, "custom_metadata": {"owner": "ops"}, "delete_version_after": "1h"}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for i in 1..=3 {
        api.call(
            "POST",
            "/v1/secret/data/app",
            Some(json!({"data": {"i": i}})),
        )
        .await;
    }
    let (s, v) = api.call("GET", "/v1/secret/metadata/app", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["current_version"], 3);
    assert_eq!(v["data"]["oldest_version"], 2);
    assert_eq!(v["data"]["max_versions"], 2);
    assert_eq!(v["data"]["delete_version_after"], "1h0m0s");
    assert_eq!(v["data"]["custom_metadata"], json!({"owner": "ops"}));
    let (_, v) = api.call("GET", "/v1/secret/data/app", None).await;
    assert_eq!(
        v["data"]["metadata"]["custom_metadata"],
        json!({"owner": "ops"})
    );

    let (s, _) = api
        .call(
            "POST",
            "/v1/secret/destroy/app",
            Some(json!({"versions": [2]})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api.call("GET", "/v1/secret/data/app?version=2", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["data"]["metadata"]["destroyed"], true);

    let (s, v) = api
        .call(
            "PATCH",
            "/v1/secret/data/app",
            Some(json!({"data": {"j": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = api.call("GET", "/v1/secret/data/app", None).await;
    assert_eq!(v["data"]["data"], json!({"i": 3, "j": 1}));

    let (s, _) = api
        .call(
            "POST",
            "/v1/secret/config",
            Some(json!({"max_versions": 5, "cas_required": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = api.call("GET", "/v1/secret/config", None).await;
    assert_eq!(
        v["data"],
        json!({"cas_required": true, "delete_version_after": "0s", "max_versions": 5})
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/secret/data/other",
            Some(json!({"data": {"a": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["errors"][0].as_str().unwrap().contains("required"), "{v}");

    let (s, _) = api.call("DELETE", "/v1/secret/metadata/app", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.call("GET", "/v1/secret/metadata/app", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Only the mount config remains.
    assert_eq!(
        api.store.list("kv/secret/").unwrap(),
        vec!["config".to_string()]
    );
}
