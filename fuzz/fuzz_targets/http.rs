//! The HTTP API up to the handlers: `keep_server::api::router` over an in-memory store,
//! called in-process (no TLS, no socket) with the verified-identity extension the listener
//! would insert.
//!
//! Input: up to four requests (method, path, query, caller, token, headers, body), built with
//! `arbitrary`, sent in order to one fresh server, so a request can use what an earlier one
//! wrote (a role, a policy, a token from a login).
//!
//! Invariants beyond "no panic":
//! - no 5xx: the store is in memory and cannot fail, so a 5xx is a bug. Only while sealed
//!   (after `sys/seal`) is 503 right, and `sys/health` answers the codes its query asks for;
//! - every error (4xx) is Vault's shape: a JSON object whose `errors` is a list of strings;
//! - a refused request (4xx) stores nothing.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller, PeerAddr, SealState};
use keep_store::MemStore;
use keep_tls::identity::PeerIdentity;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const MAX_REQUESTS: usize = 4;
const MAX_BODY: usize = 1 << 20;

/// Real API paths (after `/v1/`), so the fuzzer starts inside the handlers.
const PATHS: &[&str] = &[
    "sys/health",
    "sys/seal-status",
    "sys/seal",
    "sys/metrics",
    "sys/audit-hash/file",
    "secret/data/openclaw/llm",
    "secret/data/agents/agent-a/llm",
    "secret/metadata/openclaw/llm",
    "secret/metadata/",
    "secret/config",
    "secret/delete/openclaw/llm",
    "secret/undelete/openclaw/llm",
    "secret/destroy/openclaw/llm",
    "secret/subkeys/openclaw/llm",
    "auth/cert/login",
    "auth/cert/certs",
    "auth/cert/certs/agents",
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
    "auth/token/create",
    "auth/token/lookup",
    "sys/policies/acl",
    "sys/policies/acl/agents",
    "sys/policy",
    "sys/policy/agents",
    "pki/roles/agents",
    "pki/issue/agents",
];

/// Body fields the handlers read.
const KEYS: &[&str] = &[
    "data",
    "options",
    "cas",
    "versions",
    "policy",
    "name",
    "certificate",
    "allowed_common_names",
    "token_policies",
    "token_ttl",
    "allow_tokenless",
    "token_bound_cidrs",
    "max_versions",
    "delete_version_after",
    "cas_required",
    "custom_metadata",
    "token",
    "ttl",
    "policies",
    "input",
    "format",
];

const POLICY: &str = r#"path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["create", "read", "update", "list"] }"#;

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
    List,
    Head,
    Options,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum PathPick {
    Known(u8),
    KnownWithSuffix(u8, String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Who {
    Nobody,
    Admin,
    Agent,
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum Token {
    None,
    /// The `client_token` of the last successful login or token create.
    Last,
    Raw(String),
    Bearer(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    Str(String),
    Num(u64),
    Neg(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
    Obj(Vec<(String, String)>),
    Policy,
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::Str(s) => json!(s),
            Val::Num(n) => json!(n),
            Val::Neg(n) => json!(n),
            Val::Float(f) => json!(f),
            Val::Bool(b) => json!(b),
            Val::Null => Value::Null,
            Val::List(l) => json!(l),
            Val::Obj(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<Map<_, _>>(),
            ),
            Val::Policy => json!(POLICY),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum BodyPick {
    Empty,
    Fields(Vec<(u8, Val)>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: Method,
    path: PathPick,
    query: Option<String>,
    who: Who,
    token: Token,
    json_content_type: bool,
    headers: Vec<(String, String)>,
    body: BodyPick,
}

#[derive(Arbitrary, Debug)]
struct Input {
    requests: Vec<Req>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
    })
}

fn identity(cn: &str) -> Caller {
    let now = time::OffsetDateTime::now_utc();
    Caller(Arc::new(PeerIdentity {
        subject: format!("CN={cn}"),
        common_name: Some(cn.to_owned()),
        dns_sans: vec![format!("{cn}.claw.internal")],
        uri_sans: vec![format!("spiffe://claw/{cn}")],
        email_sans: vec![],
        ip_sans: vec![],
        organizational_units: vec![],
        serial: "01".into(),
        fingerprint_sha256: "00".repeat(32),
        not_before: now,
        not_after: now + time::Duration::days(1),
        issuer: "CN=test".into(),
        issuer_common_name: Some("test".into()),
        chain: vec![],
        issuers: vec![],
    }))
}

fn build(req: &Req, last_token: Option<&str>) -> Option<(Request<Body>, String)> {
    let method = match &req.method {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::List => "LIST",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Other(m) => m.as_str(),
    };
    let path = match &req.path {
        PathPick::Known(i) => format!("/v1/{}", PATHS[usize::from(*i) % PATHS.len()]),
        PathPick::KnownWithSuffix(i, s) => {
            format!("/v1/{}{s}", PATHS[usize::from(*i) % PATHS.len()])
        }
        PathPick::Raw(s) => s.clone(),
    };
    let uri = match &req.query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let mut b = Request::builder().method(method).uri(&uri);
    if req.json_content_type {
        b = b.header("content-type", "application/json");
    }
    match &req.token {
        Token::None => {}
        Token::Last => {
            if let Some(t) = last_token {
                b = b.header("x-vault-token", t);
            }
        }
        Token::Raw(t) => b = b.header("x-vault-token", t.as_str()),
        Token::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
    }
    for (k, v) in req.headers.iter().take(4) {
        b = b.header(k.as_str(), v.as_str());
    }
    let body = match &req.body {
        BodyPick::Empty => Body::empty(),
        BodyPick::Fields(fields) => {
            let m: Map<String, Value> = fields
                .iter()
                .take(8)
                .map(|(k, v)| (KEYS[usize::from(*k) % KEYS.len()].to_owned(), v.json()))
                .collect();
            Body::from(serde_json::to_vec(&m).ok()?)
        }
        BodyPick::Raw(bytes) => Body::from(bytes.clone()),
    };
    let mut request = b.body(body).ok()?;
    let caller = match &req.who {
        Who::Nobody => None,
        Who::Admin => Some(identity("operator")),
        Who::Agent => Some(identity("agent-a")),
        Who::Named(cn) => Some(identity(cn)),
    };
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40000))));
    Some((request, request_path(&path)))
}

/// The API path after `/v1/`, as the assertions name it.
fn request_path(path: &str) -> String {
    path.trim_start_matches("/v1/").to_owned()
}

async fn run(input: Input) {
    let store = Arc::new(MemStore::new());
    let state = Arc::new(AppState::unsealed(
        store.clone(),
        vec![AdminIdentity::CommonName("operator".into())],
        Limits {
            max_request_bytes: 64 * 1024,
            ..Limits::default()
        },
        "memory",
    ));
    let app = router(state.clone());
    let mut last_token: Option<String> = None;
    for req in input.requests.iter().take(MAX_REQUESTS) {
        let Some((request, path)) = build(req, last_token.as_deref()) else {
            continue;
        };
        let is_head = request.method() == "HEAD";
        let stored_before = store.len();
        let response = match app.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY)
            .await
            .unwrap_or_else(|e| panic!("response body unreadable: {e}"));
        let text = String::from_utf8_lossy(&bytes);

        let sealed = state.seal_state() == SealState::Sealed;
        if status.is_server_error() && !path.starts_with("sys/health") {
            assert!(
                sealed && status == StatusCode::SERVICE_UNAVAILABLE,
                "{status} for {req:?}: {text}"
            );
        }
        if status.is_client_error() || (status.is_server_error() && !path.starts_with("sys/health"))
        {
            if !is_head {
                let v: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text:?}"));
                let errors = v.get("errors").and_then(Value::as_array);
                assert!(
                    errors.is_some_and(|e| e.iter().all(Value::is_string)),
                    "{status} body without an `errors` list of strings: {text}"
                );
            }
            assert_eq!(
                store.len(),
                stored_before,
                "a refused request ({status}) stored something: {req:?}"
            );
        }
        if status.is_success()
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(t) = v.pointer("/auth/client_token").and_then(Value::as_str)
        {
            last_token = Some(t.to_owned());
        }
    }
}

fuzz_target!(|input: Input| {
    runtime().block_on(run(input));
});
