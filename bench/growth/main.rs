//! Cost growth: does a request get slower as the server holds more? Two real server states on
//! real SQLite files, built the way `keep server run` stacks storage (SQLite → write-health
//! tracking → read cache → barrier), called in-process through the router:
//!
//! - **small**: 1 secret, 1 cert role, 1 live token;
//! - **large**: 100,000 secrets, 1,000 cert roles (999 bound to 999 other CAs, one to the
//!   caller's), 100,000 live tokens.
//!
//! It measures (a) a KV v2 read (`GET /v1/secret/data/…`), with the read cache and without it
//! (the same file, a second barrier over the bare store), and (b) a cert login
//! (`POST /v1/auth/cert/login`, with and without a role name). Runs are interleaved
//! small/large, after a warm-up; the figure is the ratio of medians (goal: ≤ 1.2×).
//!
//! Run: `cargo bench -p keep-server --bench growth` (see bench/growth/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::auth::login_rate::{LoginLimiter, LoginRate};
use keep_server::auth::role::Role;
use keep_server::auth::select_role;
use keep_server::auth::token::{TokenEntry, Tokens};
use keep_server::config::{AdminIdentity, Limits};
use keep_server::kv::KvEngine;
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::{Barrier, CachedStore, MemStore, RootKey, SqliteStore, Store, Tracked, TxOp};
use keep_test_support::{LeafSpec, TestPki};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const SECRETS: usize = 100_000;
const ROLES: usize = 1_000;
const TOKENS: usize = 100_000;
/// Entries per bulk-load transaction.
const CHUNK: usize = 5_000;
const READS: usize = 3_000;
const LOGINS: usize = 300;
const WARMUP: usize = 50;

/// One server state: the router's state with the cache, and one over the same file without.
struct Server {
    cached: Arc<AppState>,
    uncached: Arc<AppState>,
    _dir: tempfile::TempDir,
}

fn app_state(store: Arc<dyn Store>) -> Arc<AppState> {
    let mut state = AppState::unsealed(
        store,
        vec![AdminIdentity::CommonName("operator".into())],
        Limits::default(),
        "sqlite",
    );
    // Thousands of logins with one certificate: measure the login, not its rate limit.
    state.auth.login_limiter = LoginLimiter::new(LoginRate {
        per_second: 1e9,
        burst: u32::MAX,
    });
    Arc::new(state)
}

/// Every key under `prefix`, depth first.
fn walk(store: &dyn Store, prefix: &str, out: &mut Vec<String>) {
    for child in store.list(prefix).unwrap() {
        let key = format!("{prefix}{child}");
        if child.ends_with('/') {
            walk(store, &key, out);
        } else {
            out.push(key);
        }
    }
}

/// Copies everything in `mem` (plaintext, as the engines wrote it) into `barrier` in a few
/// large transactions: the same entries as one write per request, minus 300,000 fsyncs.
fn bulk_load(mem: &MemStore, barrier: &dyn Store) {
    let mut keys = Vec::new();
    walk(mem, "", &mut keys);
    for chunk in keys.chunks(CHUNK) {
        let ops: Vec<TxOp> = chunk
            .iter()
            .map(|k| TxOp::put(k.clone(), mem.get(k).unwrap().unwrap()))
            .collect();
        barrier.transaction(&ops).unwrap();
    }
}

fn secret(i: usize) -> Map<String, Value> {
    json!({"api_key": format!("sk-{i:08}-0123456789abcdef"), "owner": format!("team-{}", i % 97)})
        .as_object()
        .unwrap()
        .clone()
}

fn token_entry(i: usize) -> TokenEntry {
    TokenEntry {
        accessor: String::new(),
        policies: vec!["default".into()],
        role: format!("team-{}", i % ROLES),
        display_name: format!("cert-team-{}", i % ROLES),
        metadata: Default::default(),
        created: 0,
        expires: 0,
        ttl: 30 * 24 * 3600,
        max_ttl: 30 * 24 * 3600,
        cert_fingerprint: format!("{i:064x}"),
        bound_cidrs: vec![],
        pinned_address: None,
    }
}

fn role(ca_pem: &str, cn: &str) -> Role {
    let mut role = Role::default();
    role.apply(
        json!({"certificate": ca_pem, "allowed_common_names": cn, "token_policies": "default"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    role
}

fn build(secrets: usize, roles: usize, tokens: usize, pki: &TestPki) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    let root = [7u8; 32];
    // The stack `keep server run` builds (server.rs: prepare, unseal).
    let (tracked, _health) = Tracked::new(Arc::new(SqliteStore::open(&path).unwrap()));
    let cached: Arc<dyn Store> = Arc::new(CachedStore::new(Arc::new(tracked) as Arc<dyn Store>));
    let barrier = Arc::new(Barrier::initialize(cached, RootKey::from_bytes(root)).unwrap());

    let t = Instant::now();
    let mem = MemStore::new();
    let now = time::OffsetDateTime::now_utc();
    let kv = KvEngine::new(&mem, "secret");
    for i in 0..secrets {
        kv.write(&format!("bench/s{i:06}"), secret(i), None, now)
            .unwrap();
    }
    let tokens_store = Tokens::new(&mem);
    for i in 0..tokens {
        tokens_store
            .create(token_entry(i), now.unix_timestamp())
            .unwrap();
    }
    // Roles bound to other CAs (one CA each), and the caller's role, stored as the API
    // stores them; the role cache loads them on the first login.
    let put_role = |name: &str, role: Role| {
        let bytes = serde_json::to_vec(&role).unwrap();
        mem.put(&format!("auth/cert/roles/{name}"), &bytes).unwrap();
    };
    for i in 0..roles.saturating_sub(1) {
        let ca = pki.issue_intermediate(
            &format!("Team {i} CA"),
            now - time::Duration::hours(1),
            now + time::Duration::days(30),
        );
        put_role(&format!("team-{i}"), role(&ca.cert_pem, "svc-*"));
    }
    put_role("agents", role(&pki.intermediate.cert_pem, "agent-*"));
    bulk_load(&mem, &*barrier);
    eprintln!(
        "built: {secrets} secrets, {roles} roles, {tokens} tokens in {:.1?}",
        t.elapsed()
    );
    let cached = app_state(barrier);

    let bare = SqliteStore::open(&path).unwrap();
    // Both states start with an empty WAL: otherwise the large one, whose WAL the bulk load
    // grew, pays less per fsync than the small one, whose WAL grows during the runs.
    bare.checkpoint().unwrap();
    let bare: Arc<dyn Store> = Arc::new(bare);
    let uncached = app_state(Arc::new(
        Barrier::unseal(bare, RootKey::from_bytes(root)).unwrap(),
    ));
    Server {
        cached,
        uncached,
        _dir: dir,
    }
}

fn operator() -> Caller {
    let pki_less = keep_tls::identity::PeerIdentity {
        subject: "CN=operator".into(),
        common_name: Some("operator".into()),
        dns_sans: vec![],
        uri_sans: vec![],
        email_sans: vec![],
        ip_sans: vec![],
        organizational_units: vec![],
        serial: "01".into(),
        fingerprint_sha256: "00".repeat(32),
        not_before: time::OffsetDateTime::now_utc(),
        not_after: time::OffsetDateTime::now_utc(),
        issuer: "CN=test".into(),
        issuer_common_name: Some("test".into()),
        chain: vec![],
        issuers: vec![],
    };
    Caller(Arc::new(pki_less))
}

async fn call(state: &Arc<AppState>, req: Request<Body>) -> Duration {
    let t = Instant::now();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let e = t.elapsed();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    e
}

async fn kv_read(state: &Arc<AppState>, caller: &Caller, path: &str) -> Duration {
    let mut req = Request::builder()
        .uri(format!("/v1/secret/data/{path}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(caller.clone());
    call(state, req).await
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
    call(state, req).await
}

/// `select_role` alone (no HTTP, no token write), averaged over 100 calls.
fn select_alone(state: &AppState, peer: &keep_tls::identity::PeerIdentity) -> Duration {
    let store = state.store().unwrap();
    let roles = state.roles.all(&*store).unwrap();
    let t = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(select_role(&roles, None, peer, None, false).unwrap());
    }
    t.elapsed() / 100
}

/// For reference, what role selection cost before the CA index: every role's checks run.
fn every_role_tried(state: &AppState, peer: &keep_tls::identity::PeerIdentity) -> Duration {
    let store = state.store().unwrap();
    let roles = state.roles.all(&*store).unwrap();
    let t = Instant::now();
    for _ in 0..100 {
        let matching = roles
            .values()
            .filter(|r| r.matches(peer, None).is_ok())
            .count();
        assert_eq!(std::hint::black_box(matching), 1);
    }
    t.elapsed() / 100
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, small: Vec<Duration>, large: Vec<Duration>) {
    let (a, b) = (median(small), median(large));
    let ratio = b.as_secs_f64() / a.as_secs_f64();
    println!(
        "{what:<44} small {a:>10.1?}  large {b:>10.1?}  ratio {ratio:.2}x {}",
        if ratio <= 1.2 { "(ok)" } else { "(over 1.2x)" }
    );
}

/// Runs `f` on small and large alternately, `n` times each after a warm-up.
async fn interleaved<F, Fut>(n: usize, mut f: F) -> (Vec<Duration>, Vec<Duration>)
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    for i in 0..2 * WARMUP {
        f(i % 2 == 1).await;
    }
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        a.push(f(false).await);
        b.push(f(true).await);
    }
    (a, b)
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
    let agent = Caller(Arc::new(
        keep_tls::identity::from_verified_chain(&chain).unwrap(),
    ));
    let op = operator();

    let small = build(1, 1, 1, &pki);
    let large = build(SECRETS, ROLES, TOKENS, &pki);
    // Small reads its only secret; large reads one in the middle of the key range.
    let (sp, lp) = ("bench/s000000", "bench/s050000");

    let (a, b) = interleaved(READS, |big| {
        let (s, p) = if big { (&large, lp) } else { (&small, sp) };
        kv_read(&s.cached, &op, p)
    })
    .await;
    report("(a) KV v2 read, read cache on", a, b);
    let (a, b) = interleaved(READS, |big| {
        let (s, p) = if big { (&large, lp) } else { (&small, sp) };
        kv_read(&s.uncached, &op, p)
    })
    .await;
    report("(a) KV v2 read, read cache off", a, b);
    let (a, b) = interleaved(READS, |big| {
        let d = select_alone(if big { &large.cached } else { &small.cached }, &agent.0);
        async move { d }
    })
    .await;
    report("(b) role selection alone (no HTTP, no write)", a, b);
    let (a, b) = interleaved(READS, |big| {
        let d = every_role_tried(if big { &large.cached } else { &small.cached }, &agent.0);
        async move { d }
    })
    .await;
    report("    reference: every role tried (before)", a, b);
    for named in [false, true] {
        let (a, b) = interleaved(LOGINS, |big| {
            login(
                if big { &large.cached } else { &small.cached },
                &agent,
                named,
            )
        })
        .await;
        report(
            if named {
                "(b) cert login, role named"
            } else {
                "(b) cert login, role chosen among all"
            },
            a,
            b,
        );
    }
}
