//! Limits and gates a loopback attacker with a valid certificate ran into (issue 11): the token
//! tidy endpoint, the per-certificate login rate limit with its `login_storm` alert, who may
//! read `/v1/sys/metrics`, and which methods a LIST route answers. Through the router, with
//! identities derived from real test certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use keep_server::alerts::Alerts;
use keep_server::alerts::config::AlertsConfig;
use keep_server::api::router;
use keep_server::auth::MetricsAccess;
use keep_server::auth::login_rate::{LoginLimiter, LoginRate};
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::{MemStore, Store};
use keep_test_support::{LeafSpec, TestPki};
use keep_tls::events::{AlertKind, MemorySink};
use keep_tls::identity::{PeerIdentity, from_verified_chain};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Upper bound of every wait.
const WAIT: Duration = Duration::from_secs(20);

fn identity(chain_der: &[Vec<u8>]) -> Arc<PeerIdentity> {
    let chain: Vec<CertificateDer<'static>> = chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    Arc::new(from_verified_chain(&chain).unwrap())
}

struct Rig {
    state: Arc<AppState>,
    store: Arc<MemStore>,
    events: Arc<MemorySink>,
    pki: TestPki,
    admin: Arc<PeerIdentity>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

/// A server state around a memory store, with `tune` applied before it is shared, and the
/// `agents` role (any `agent-*` certificate of the test intermediate, `ttl`).
async fn rig(ttl: &str, tune: impl FnOnce(&mut AppState)) -> Rig {
    let store = Arc::new(MemStore::new());
    let events = Arc::new(MemorySink::new());
    let mut state = AppState::unsealed(
        store.clone(),
        vec![AdminIdentity::CommonName("operator".into())],
        Limits::default(),
        "memory",
    );
    state.alerts = Alerts::new(&AlertsConfig::default(), events.clone()).unwrap();
    state.metrics = keep_server::server::metrics_handle();
    tune(&mut state);
    let pki = TestPki::new();
    let r = Rig {
        state: Arc::new(state),
        store,
        events,
        admin: identity(&pki.admin.chain_der),
        pki,
    };
    let a = r
        .call(
            &r.admin.clone(),
            None,
            "POST",
            "/v1/auth/cert/certs/agents",
            Some(json!({
                "certificate": r.pki.intermediate.cert_pem,
                "allowed_common_names": "agent-*",
                "token_ttl": ttl,
            })),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.text);
    r
}

impl Rig {
    async fn call(
        &self,
        who: &Arc<PeerIdentity>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
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
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    fn agent(&self, cn: &str) -> Arc<PeerIdentity> {
        identity(&self.pki.issue(&LeafSpec::agent(cn)).chain_der)
    }

    async fn login(&self, who: &Arc<PeerIdentity>) -> Answer {
        self.call(who, None, "POST", "/v1/auth/cert/login", Some(json!({})))
            .await
    }

    fn stored_tokens(&self) -> (usize, usize) {
        (
            self.store.list("auth/token/id/").unwrap().len(),
            self.store.list("auth/token/accessor/").unwrap().len(),
        )
    }

    fn storm_alerts(&self) -> usize {
        self.events
            .events()
            .iter()
            .filter_map(|e| e.as_alert())
            .filter(|a| a.alert == AlertKind::LoginStorm)
            .count()
    }
}

// ------------------------------------------------------------------------------ token tidy

#[tokio::test]
async fn tidy_as_admin_removes_expired_tokens_and_keeps_live_ones() {
    let r = rig("1s", |_| {}).await;
    let agent = r.agent("agent-short");
    for _ in 0..15 {
        assert_eq!(r.login(&agent).await.status, StatusCode::OK);
    }
    // A live token of another role survives.
    let a = r
        .call(
            &r.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/long",
            Some(json!({
                "certificate": r.pki.intermediate.cert_pem,
                "allowed_common_names": "agent-long",
                "token_ttl": "1h",
            })),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.text);
    let long = r.agent("agent-long");
    let a = r
        .call(
            &long,
            None,
            "POST",
            "/v1/auth/cert/login",
            Some(json!({"name": "long"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let live = a.body["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(r.stored_tokens(), (16, 16));
    // Let the 1-second tokens expire (expiry is in whole Unix seconds).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        r.stored_tokens(),
        (16, 16),
        "expired tokens stay until tidied"
    );

    let a = r
        .call(&r.admin, None, "POST", "/v1/auth/token/tidy", None)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert!(
        a.body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Tidy operation successfully started"),
        "{}",
        a.text
    );
    let deadline = Instant::now() + WAIT;
    while r.stored_tokens() != (1, 1) {
        assert!(
            Instant::now() < deadline,
            "tidy left {:?}",
            r.stored_tokens()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = r
        .call(
            &long,
            Some(&live),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the live token still works: {}",
        a.text
    );
}

#[tokio::test]
async fn tidy_needs_admin_or_sudo() {
    let r = rig("1h", |_| {}).await;
    let agent = r.agent("agent-x");
    let a = r.login(&agent).await;
    let token = a.body["auth"]["client_token"].as_str().unwrap().to_owned();
    // The default policy: no.
    let a = r
        .call(&agent, Some(&token), "POST", "/v1/auth/token/tidy", None)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // No token at all: no.
    let a = r
        .call(&agent, None, "POST", "/v1/auth/token/tidy", None)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // `update` without `sudo`: no; with both: yes.
    for (caps, want) in [
        ("[\"update\"]", StatusCode::FORBIDDEN),
        ("[\"update\", \"sudo\"]", StatusCode::ACCEPTED),
    ] {
        let a = r
            .call(
                &r.admin,
                None,
                "PUT",
                "/v1/sys/policies/acl/tidier",
                Some(json!({
                    "policy": format!("path \"auth/token/tidy\" {{ capabilities = {caps} }}")
                })),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text);
        let a = r
            .call(
                &r.admin,
                None,
                "POST",
                "/v1/auth/cert/certs/tidier",
                Some(json!({
                    "certificate": r.pki.intermediate.cert_pem,
                    "allowed_common_names": "tidier",
                    "token_policies": "tidier",
                })),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text);
        let tidier = r.agent("tidier");
        let a = r
            .call(
                &tidier,
                None,
                "POST",
                "/v1/auth/cert/login",
                Some(json!({"name": "tidier"})),
            )
            .await;
        let t = a.body["auth"]["client_token"].as_str().unwrap().to_owned();
        let a = r
            .call(&tidier, Some(&t), "POST", "/v1/auth/token/tidy", None)
            .await;
        assert_eq!(a.status, want, "{caps}: {}", a.text);
    }
}

// ------------------------------------------------------------------------- login rate

#[tokio::test]
async fn logins_over_the_burst_get_429_with_retry_after_and_one_storm_alert() {
    // 3 at once, then one every 1000 s: nothing refills during the test.
    let r = rig("1h", |s| {
        s.auth.login_limiter = LoginLimiter::new(LoginRate {
            per_second: 0.001,
            burst: 3,
        })
    })
    .await;
    let agent = r.agent("agent-loop");
    for _ in 0..3 {
        let a = r.login(&agent).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    assert_eq!(r.stored_tokens().0, 3);
    for _ in 0..20 {
        let a = r.login(&agent).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
        assert_eq!(
            a.body,
            json!({"errors": ["request path \"auth/cert/login\": rate limit quota exceeded"]})
        );
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1000).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(r.stored_tokens().0, 3, "a refused login stores nothing");
    assert_eq!(r.storm_alerts(), 1, "one storm, one alert");
    let alert = r
        .events
        .events()
        .iter()
        .filter_map(|e| e.as_alert().cloned())
        .find(|a| a.alert == AlertKind::LoginStorm)
        .unwrap();
    assert_eq!(alert.subject.as_deref(), Some(agent.subject.as_str()));
    assert_eq!(
        alert.fingerprint.as_deref(),
        Some(agent.fingerprint_sha256.as_str())
    );
    assert!(
        alert.summary.contains("auth.login_rate"),
        "{}",
        alert.summary
    );
    // Another certificate has its own bucket.
    let other = r.agent("agent-calm");
    assert_eq!(r.login(&other).await.status, StatusCode::OK);
    assert_eq!(r.storm_alerts(), 1);
}

// ------------------------------------------------------------------------ sys/metrics

#[tokio::test]
async fn metrics_are_for_admins_policies_and_listed_scrapers_only() {
    let r = rig("1h", |s| {
        s.auth.metrics = MetricsAccess {
            unauthenticated: false,
            scrapers: vec![AdminIdentity::CommonName("prometheus".into())],
        }
    })
    .await;
    const URI: &str = "/v1/sys/metrics?format=prometheus";
    // A certificate the listener accepts but that matches no role, no policy, no scraper entry.
    let stranger = identity(&r.pki.issue(&LeafSpec::client("stranger")).chain_der);
    let a = r.call(&stranger, None, "GET", URI, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert!(!a.text.contains("keep_"), "{}", a.text);
    // An agent with a token but only the default policy: no.
    let agent = r.agent("agent-m");
    let token = r.login(&agent).await.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = r.call(&agent, Some(&token), "GET", URI, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // The listed scraper, the admin, and a token whose policy grants read on sys/metrics: yes.
    let prometheus = identity(&r.pki.issue(&LeafSpec::client("prometheus")).chain_der);
    let a = r.call(&prometheus, None, "GET", URI, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("keep_security_alerts_total"), "{}", a.text);
    let a = r.call(&r.admin, None, "GET", URI, None).await;
    assert_eq!(a.status, StatusCode::OK);
    r.call(
        &r.admin,
        None,
        "PUT",
        "/v1/sys/policies/acl/metrics",
        Some(json!({"policy": "path \"sys/metrics\" { capabilities = [\"read\"] }"})),
    )
    .await;
    r.call(
        &r.admin,
        None,
        "POST",
        "/v1/auth/cert/certs/monitor",
        Some(json!({
            "certificate": r.pki.intermediate.cert_pem,
            "allowed_common_names": "monitor",
            "token_policies": "metrics",
        })),
    )
    .await;
    let monitor = identity(&r.pki.issue(&LeafSpec::client("monitor")).chain_der);
    let a = r
        .call(
            &monitor,
            None,
            "POST",
            "/v1/auth/cert/login",
            Some(json!({"name": "monitor"})),
        )
        .await;
    let t = a.body["auth"]["client_token"].as_str().unwrap().to_owned();
    let a = r.call(&monitor, Some(&t), "GET", URI, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

#[tokio::test]
async fn unauthenticated_metrics_access_opens_metrics_to_any_client_certificate() {
    let r = rig("1h", |s| {
        s.auth.metrics = MetricsAccess {
            unauthenticated: true,
            scrapers: vec![],
        }
    })
    .await;
    let stranger = identity(&r.pki.issue(&LeafSpec::client("stranger")).chain_der);
    let a = r
        .call(&stranger, None, "GET", "/v1/sys/metrics", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

// ------------------------------------------------------------------------- LIST routes

#[tokio::test]
async fn list_routes_answer_only_list_requests() {
    let r = rig("1h", |_| {}).await;
    r.call(
        &r.admin,
        None,
        "POST",
        "/v1/secret/data/app/one",
        Some(json!({"data": {"k": "v"}})),
    )
    .await;
    // The list-only routes refuse every other method; on KV's folders, where other methods
    // are other operations (PATCH, DELETE, POST on metadata), the methods Vault does not know.
    const ODD: [&str; 3] = ["OPTIONS", "TRACE", "PROPFIND"];
    const ALL_BUT_LIST: [&str; 6] = ["OPTIONS", "TRACE", "PROPFIND", "PATCH", "DELETE", "POST"];
    let routes: [(&str, &[&str]); 7] = [
        ("/v1/auth/cert/certs", &ALL_BUT_LIST),
        ("/v1/auth/cert/certs/", &ALL_BUT_LIST),
        ("/v1/sys/policies/acl", &ALL_BUT_LIST),
        ("/v1/sys/policies/acl/", &ALL_BUT_LIST),
        ("/v1/sys/policy", &ALL_BUT_LIST),
        ("/v1/secret/metadata/", &ODD),
        ("/v1/secret/metadata/app/", &ODD),
    ];
    for (route, methods) in routes {
        let a = r.call(&r.admin, None, "LIST", route, None).await;
        assert_eq!(a.status, StatusCode::OK, "LIST {route}: {}", a.text);
        assert!(
            a.body["data"]["keys"].is_array(),
            "LIST {route}: {}",
            a.text
        );
        let a = r
            .call(&r.admin, None, "GET", &format!("{route}?list=true"), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "GET ?list {route}: {}", a.text);
        for method in methods {
            let a = r.call(&r.admin, None, method, route, None).await;
            assert_eq!(
                a.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {route}: {}",
                a.text
            );
            assert!(a.body["errors"].is_array(), "{method} {route}: {}", a.text);
            assert!(a.body.get("data").is_none(), "{method} {route}: {}", a.text);
        }
    }
}
