//! Benchmark: a cert login with 1 role vs 1,000 roles. Both runs in the same process, interleaved; the figure
//! is the ratio of medians. The login goes through the real router (role selection, token
//! creation in an in-memory store); TLS is not part of it.
//!
//! Run: `cargo bench -p keep-server --bench login_roles`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use keep_server::api::router;
use keep_server::config::Limits;
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::MemStore;
use keep_test_support::{LeafSpec, TestPki};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use tower::ServiceExt;

fn state_with_roles(n: usize, pki: &TestPki) -> Arc<AppState> {
    let store = Arc::new(MemStore::new());
    let mut state = AppState::unsealed(store.clone(), vec![], Limits::default(), "memory");
    // The benchmark logs in thousands of times with one certificate: measure role selection,
    // not the login rate limit.
    state.auth.login_limiter = keep_server::auth::login_rate::LoginLimiter::new(
        keep_server::auth::login_rate::LoginRate {
            per_second: 1e9,
            burst: u32::MAX,
        },
    );
    let state = Arc::new(state);
    for i in 0..n {
        let mut role = keep_server::auth::role::Role::default();
        let name = if i + 1 == n {
            "agents".to_owned()
        } else {
            format!("team-{i}")
        };
        let cn = if i + 1 == n {
            "agent-*".to_owned()
        } else {
            format!("svc-{i}-*")
        };
        role.apply(
            json!({"certificate": pki.intermediate.cert_pem, "allowed_common_names": cn, "token_policies": "default"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        state.roles.put(&*store, &name, role).unwrap();
    }
    state
}

async fn login(state: &Arc<AppState>, caller: &Caller, named: bool) -> Duration {
    let body = if named { r#"{"name":"agents"}"# } else { "{}" };
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/auth/cert/login")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(caller.clone());
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:1".parse().unwrap()));
    let t = Instant::now();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let e = t.elapsed();
    assert!(resp.status().is_success(), "{}", resp.status());
    e
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pki = TestPki::new();
    let leaf = pki.issue(&LeafSpec::agent("agent-7"));
    let chain: Vec<CertificateDer<'static>> = leaf
        .chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let caller = Caller(Arc::new(
        keep_tls::identity::from_verified_chain(&chain).unwrap(),
    ));
    let one = state_with_roles(1, &pki);
    let many = state_with_roles(1000, &pki);
    for named in [false, true] {
        // Warm the role caches.
        login(&one, &caller, named).await;
        login(&many, &caller, named).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            a.push(login(&one, &caller, named).await);
            b.push(login(&many, &caller, named).await);
        }
        let (ma, mb) = (median(a), median(b));
        println!(
            "login {}: 1 role median {ma:?}, 1000 roles median {mb:?}, ratio {:.2}x",
            if named {
                "with name"
            } else {
                "without name (role chosen among all)"
            },
            mb.as_secs_f64() / ma.as_secs_f64()
        );
    }
}
