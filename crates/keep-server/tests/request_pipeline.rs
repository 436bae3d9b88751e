//! The request pipeline, end to end through the router: one typed request read by audit,
//! policy and handlers alike.
//!
//! - a token sent as `Authorization: Bearer` is honoured *and* its hash is in both audit lines;
//! - `LIST`, `GET ?list=true` and `GET ?list=1` are one operation for policy and for the audit
//!   log, on every mount that lists;
//! - a verb a route does not take is 405 with Vault's error shape, on every route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_pki::Source;
use keep_server::api::router;
use keep_server::audit::{AuditLog, HmacKey};
use keep_server::auth::token::{TokenEntry, Tokens};
use keep_server::config::{AdminIdentity, Limits};
use keep_server::pki::Pki;
use keep_server::state::{AppState, Caller};
use keep_store::MemStore;
use keep_test_support::TestPki;
use keep_tls::identity::PeerIdentity;
use serde_json::{Value, json};
use tower::ServiceExt;

fn identity(cn: &str, fingerprint: &str) -> Caller {
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
        fingerprint_sha256: fingerprint.to_owned(),
        not_before: now,
        not_after: now + time::Duration::hours(1),
        issuer: "CN=test".into(),
        issuer_common_name: Some("test".into()),
        chain: vec![],
        issuers: vec![],
    }))
}

const AGENT_FP: &str = "ab";
/// [`Lab::send`] as the agent's real certificate chain (`agent-01`, under the intermediate).
const REAL_AGENT: &str = "agent-01 (real chain)";

struct Lab {
    state: Arc<AppState>,
    store: Arc<MemStore>,
    log: AuditLog,
    log_path: std::path::PathBuf,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let pki = TestPki::new();
        let store = Arc::new(MemStore::new());
        let mut state = AppState::unsealed(
            store.clone(),
            vec![AdminIdentity::CommonName("operator".into())],
            Limits::default(),
            "memory",
        );
        let key = keep_pki::key::load_private_key(
            pki.intermediate.key_pem.as_bytes(),
            &Source::Other("intermediate key".into()),
            None,
        )
        .unwrap();
        state.pki = Some(Arc::new(
            Pki::new(
                format!("{}{}", pki.intermediate.cert_pem, pki.root.cert_pem).as_bytes(),
                &Source::Other("intermediate".into()),
                key,
                std::time::Duration::from_secs(3600),
            )
            .unwrap(),
        ));
        let dir = keep_test_support::tempdir();
        let log_path = dir.path().join("audit.log");
        let log =
            AuditLog::open(&log_path, HmacKey::generate().unwrap(), Default::default()).unwrap();
        state.set_audit(log.clone());
        Lab {
            state: Arc::new(state),
            store,
            log,
            log_path,
            pki,
            _dir: dir,
        }
    }

    /// A token for the agent's certificate with `policy` (HCL) as its only policy.
    fn token(&self, policy: &str) -> (String, String) {
        self.token_with("p", policy)
    }

    /// A token with `policy` stored under `name` (tokens made with different names keep
    /// different policies).
    fn token_with(&self, name: &str, policy: &str) -> (String, String) {
        self.state
            .policies
            .put(&*self.store, name, policy)
            .unwrap()
            .unwrap();
        let entry = TokenEntry {
            accessor: String::new(),
            policies: vec![name.into()],
            role: "agents".into(),
            display_name: "cert-agents".into(),
            metadata: Default::default(),
            created: 0,
            expires: 0,
            ttl: 3600,
            max_ttl: 0,
            cert_fingerprint: AGENT_FP.into(),
            bound_cidrs: vec![],
            pinned_address: None,
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (token, e) = Tokens::new(&*self.store).create(entry, now).unwrap();
        (token, e.accessor)
    }

    async fn send(
        &self,
        cn: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let caller = if cn == REAL_AGENT {
            // The agent's real certificate and the intermediate, as the handshake verified
            // them: what a cert login needs to match a role's CA.
            let chain: Vec<rustls_pki_types::CertificateDer<'static>> = self
                .pki
                .issue(&keep_test_support::LeafSpec::agent("agent-01"))
                .chain_der
                .into_iter()
                .map(rustls_pki_types::CertificateDer::from)
                .collect();
            Caller(Arc::new(
                keep_tls::identity::from_verified_chain(&chain).unwrap(),
            ))
        } else {
            identity(cn, if cn == "operator" { "00" } else { AGENT_FP })
        };
        req.extensions_mut().insert(caller);
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    /// The audit lines of the request with `id`, or the last request and response lines when
    /// the answer carried no id.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The (request, response) lines of the last request.
    fn last_pair(&self) -> (Value, Value) {
        let lines = self.lines();
        let resp = lines
            .iter()
            .rev()
            .find(|l| l["type"] == "response")
            .cloned()
            .unwrap();
        let id = resp["request"]["id"].clone();
        let req = lines
            .iter()
            .find(|l| l["type"] == "request" && l["request"]["id"] == id)
            .cloned()
            .unwrap();
        (req, resp)
    }
}

#[tokio::test]
async fn a_bearer_token_is_honoured_and_hashed_in_both_audit_lines() {
    let lab = Lab::new();
    let (status, _) = lab
        .send(
            "operator",
            "POST",
            "/v1/secret/data/app/llm",
            &[],
            Some(json!({"data": {"api_key": "sk-bearer-canary"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (token, accessor) = lab.token(r#"path "secret/data/app/*" { capabilities = ["read"] }"#);
    for header in ["authorization", "x-vault-token"] {
        let value = if header == "authorization" {
            format!("Bearer {token}")
        } else {
            token.clone()
        };
        let (status, v) = lab
            .send(
                "agent",
                "GET",
                "/v1/secret/data/app/llm",
                &[(header, &value)],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{header}: {v}");
        assert_eq!(v["data"]["data"]["api_key"], "sk-bearer-canary");
        let (req, resp) = lab.last_pair();
        let want = lab.log.hash(&token);
        assert_eq!(req["request"]["client_token"], want, "{header}: {req}");
        assert_eq!(resp["request"]["client_token"], want, "{header}: {resp}");
        assert_eq!(
            resp["auth"]["token_accessor"],
            lab.log.hash(&accessor),
            "{header}"
        );
        assert_eq!(resp["auth"]["policies"], json!(["p"]));
        assert_eq!(resp["decision"]["allowed"], true, "{resp}");
        // The id in the envelope is the id of both lines.
        assert_eq!(v["request_id"], resp["request"]["id"]);
    }
    let text = std::fs::read_to_string(&lab.log_path).unwrap();
    assert!(
        !text.contains(&token),
        "token in plaintext in the audit log"
    );
    assert!(!text.contains("sk-bearer-canary"), "secret in plaintext");
}

/// Every mount that lists, with the ACL path its list checks.
const LISTS: [(&str, &str); 5] = [
    ("/v1/secret/metadata/app/", "secret/metadata/app/"),
    ("/v1/auth/cert/certs", "auth/cert/certs/"),
    ("/v1/sys/policies/acl", "sys/policies/acl/"),
    ("/v1/pki/roles", "pki/roles/"),
    ("/v1/pki/certs", "pki/certs/"),
];

#[tokio::test]
async fn list_spellings_are_one_operation_for_policy_and_audit_on_every_mount() {
    let lab = Lab::new();
    lab.send(
        "operator",
        "POST",
        "/v1/secret/data/app/llm",
        &[],
        Some(json!({"data": {"k": "v"}})),
    )
    .await;
    // Something to list on every mount (lists of nothing are 404, as in Vault).
    lab.send(
        "operator",
        "POST",
        "/v1/auth/cert/certs/agents",
        &[],
        Some(json!({"allowed_common_names": "agent"})),
    )
    .await;
    lab.send(
        "operator",
        "POST",
        "/v1/pki/roles/web",
        &[],
        Some(json!({"allowed_domains": "claw.internal", "allow_subdomains": true})),
    )
    .await;
    let (s, v) = lab
        .send(
            "operator",
            "POST",
            "/v1/pki/issue/web",
            &[],
            Some(json!({"common_name": "a.claw.internal"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list_policy: String = LISTS
        .iter()
        .map(|(_, acl)| format!("path \"{acl}\" {{ capabilities = [\"list\"] }}\n"))
        .collect();
    let (lister, _) = lab.token(&list_policy);
    for (uri, acl) in LISTS {
        for (method, query) in [("LIST", ""), ("GET", "?list=true"), ("GET", "?list=1")] {
            let target = format!("{uri}{query}");
            let (status, v) = lab
                .send(
                    "agent",
                    method,
                    &target,
                    &[("x-vault-token", &lister)],
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{method} {target}: {v}");
            assert!(v["data"]["keys"].is_array(), "{method} {target}: {v}");
            let (req, resp) = lab.last_pair();
            assert_eq!(req["request"]["operation"], "list", "{method} {target}");
            assert_eq!(resp["request"]["operation"], "list", "{method} {target}");
            assert_eq!(resp["decision"]["allowed"], true, "{method} {target}");
            assert!(
                resp["decision"]["reason"].as_str().unwrap().contains(acl),
                "{method} {target}: {resp}"
            );
        }
    }
    // With `read` but not `list`, every spelling of a list is refused, and audited as a list.
    let read_policy: String = LISTS
        .iter()
        .map(|(_, acl)| format!("path \"{acl}\" {{ capabilities = [\"read\"] }}\n"))
        .collect();
    let (reader, _) = lab.token(&read_policy);
    for (uri, _) in LISTS {
        for (method, query) in [("LIST", ""), ("GET", "?list=true"), ("GET", "?list=1")] {
            let target = format!("{uri}{query}");
            let (status, v) = lab
                .send(
                    "agent",
                    method,
                    &target,
                    &[("x-vault-token", &reader)],
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {target}: {v}");
            let (req, resp) = lab.last_pair();
            assert_eq!(req["request"]["operation"], "list", "{method} {target}");
            assert_eq!(resp["decision"]["allowed"], false, "{method} {target}");
        }
    }
}

/// Every route and the verbs it takes (`LIST` for list routes).
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/sys/health", &["GET", "HEAD"]),
    ("/v1/sys/seal-status", &["GET", "HEAD"]),
    ("/v1/sys/metrics", &["GET", "HEAD"]),
    ("/v1/sys/audit-hash/file", &["POST", "PUT"]),
    ("/v1/sys/policies/acl", &["LIST"]),
    ("/v1/sys/policies/acl/", &["LIST"]),
    ("/v1/sys/init", &["GET", "HEAD"]),
    ("/v1/sys/capabilities-self", &["POST", "PUT"]),
    ("/v1/sys/capabilities", &["POST", "PUT"]),
    ("/v1/sys/mounts", &["GET", "HEAD"]),
    (
        "/v1/sys/mounts/secret",
        &["GET", "HEAD", "POST", "PUT", "DELETE"],
    ),
    ("/v1/sys/remount", &["POST", "PUT"]),
    ("/v1/sys/auth", &["GET", "HEAD"]),
    (
        "/v1/sys/auth/cert",
        &["GET", "HEAD", "POST", "PUT", "DELETE"],
    ),
    ("/v1/sys/internal/ui/mounts/secret", &["GET", "HEAD"]),
    ("/v1/sys/wrapping/wrap", &["POST", "PUT"]),
    ("/v1/sys/wrapping/unwrap", &["POST", "PUT"]),
    ("/v1/sys/wrapping/lookup", &["POST", "PUT"]),
    ("/v1/sys/wrapping/rewrap", &["POST", "PUT"]),
    (
        "/v1/sys/policies/acl/p",
        &["GET", "HEAD", "POST", "PUT", "DELETE", "LIST"],
    ),
    ("/v1/sys/policy", &["GET", "HEAD", "LIST"]),
    (
        "/v1/sys/policy/p",
        &["GET", "HEAD", "POST", "PUT", "DELETE", "LIST"],
    ),
    (
        "/v1/secret/data/a",
        &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST"],
    ),
    (
        "/v1/secret/metadata/a",
        &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST"],
    ),
    ("/v1/secret/metadata", &["LIST"]),
    ("/v1/secret/metadata/", &["LIST"]),
    ("/v1/secret/data", &["LIST"]),
    ("/v1/secret/data/", &["LIST"]),
    ("/v1/secret/subkeys/a", &["GET", "HEAD"]),
    ("/v1/secret/delete/a", &["POST", "PUT"]),
    ("/v1/secret/undelete/a", &["POST", "PUT"]),
    ("/v1/secret/destroy/a", &["POST", "PUT"]),
    ("/v1/secret/config", &["GET", "HEAD", "POST", "PUT"]),
    ("/v1/auth/cert/login", &["POST", "PUT"]),
    ("/v1/auth/cert/certs", &["LIST"]),
    ("/v1/auth/cert/certs/", &["LIST"]),
    (
        "/v1/auth/cert/certs/r",
        &["GET", "HEAD", "POST", "PUT", "DELETE"],
    ),
    ("/v1/auth/token/lookup-self", &["GET", "HEAD", "POST"]),
    ("/v1/auth/token/renew-self", &["POST", "PUT"]),
    ("/v1/auth/token/revoke-self", &["POST", "PUT"]),
    ("/v1/auth/token/lookup", &["GET", "HEAD", "POST", "PUT"]),
    ("/v1/auth/token/lookup-accessor", &["POST", "PUT"]),
    ("/v1/auth/token/revoke-accessor", &["POST", "PUT"]),
    ("/v1/auth/token/tidy", &["POST", "PUT"]),
    ("/v1/pki/ca/pem", &["GET", "HEAD"]),
    ("/v1/pki/ca", &["GET", "HEAD"]),
    ("/v1/pki/ca_chain", &["GET", "HEAD"]),
    ("/v1/pki/cert/ca", &["GET", "HEAD"]),
    ("/v1/pki/cert/ca_chain", &["GET", "HEAD"]),
    ("/v1/pki/crl", &["GET", "HEAD"]),
    ("/v1/pki/crl/pem", &["GET", "HEAD"]),
    ("/v1/pki/cert/crl", &["GET", "HEAD"]),
    ("/v1/pki/renew", &["POST", "PUT"]),
    ("/v1/pki/roles", &["LIST"]),
    ("/v1/pki/roles/", &["LIST"]),
    ("/v1/pki/roles/r", &["GET", "HEAD", "POST", "PUT", "DELETE"]),
    ("/v1/pki/sign/r", &["POST", "PUT"]),
    ("/v1/pki/issue/r", &["POST", "PUT"]),
    ("/v1/pki/revoke", &["POST", "PUT"]),
    ("/v1/pki/certs", &["LIST"]),
    ("/v1/pki/certs/", &["LIST"]),
    ("/v1/pki/cert/01", &["GET", "HEAD"]),
    ("/v1/pki/tidy", &["POST", "PUT"]),
    // Last: taking it seals the server.
    ("/v1/sys/seal", &["POST", "PUT"]),
];

const VERBS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST", "OPTIONS", "TRACE", "PROPFIND",
];

#[tokio::test]
async fn a_wrong_verb_is_405_in_vaults_shape_on_every_route() {
    let lab = Lab::new();
    let mut checked = 0;
    for (uri, takes) in ROUTES {
        for verb in VERBS {
            if takes.contains(&verb) {
                continue;
            }
            let (status, v) = lab.send("operator", verb, uri, &[], None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{verb} {uri}: {v}");
            assert_eq!(
                v,
                json!({"errors": ["unsupported operation"]}),
                "{verb} {uri}"
            );
            checked += 1;
        }
        // And the verbs it takes are not refused as verbs (they may still be 4xx for the
        // body or the path: an empty body, a missing role).
        for verb in takes.iter().filter(|v| **v != "HEAD") {
            let (status, v) = lab.send("operator", verb, uri, &[], None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{verb} {uri}: {v}");
        }
    }
    assert!(checked > 250, "only {checked} wrong verbs tried");
}

// ---------------------------------------------------------------------------------------------
// Vault's request rules as clients rely on them (issue 13)
// ---------------------------------------------------------------------------------------------

/// Writes `secret/<path>` as the operator.
async fn put_secret(lab: &Lab, path: &str) {
    let (s, v) = lab
        .send(
            "operator",
            "POST",
            &format!("/v1/secret/data/{path}"),
            &[],
            Some(json!({"data": {"k": "v"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_list_without_the_trailing_slash_is_the_folder_for_policy_audit_and_answer() {
    let lab = Lab::new();
    put_secret(&lab, "agents/openclaw-01/llm").await;
    put_secret(&lab, "agents/openclaw-02/llm").await;
    // The lab's agent policy names the folder with its slash, as Vault's policies do.
    let (token, _) =
        lab.token(r#"path "secret/metadata/agents/openclaw-01/" { capabilities = ["list"] }"#);
    let auth = [("x-vault-token", token.as_str())];
    for (method, uri) in [
        ("LIST", "/v1/secret/metadata/agents/openclaw-01"),
        ("GET", "/v1/secret/metadata/agents/openclaw-01?list=true"),
        ("LIST", "/v1/secret/metadata/agents/openclaw-01/"),
    ] {
        let (s, v) = lab.send("agent", method, uri, &auth, None).await;
        assert_eq!(s, StatusCode::OK, "{method} {uri}: {v}");
        assert_eq!(v["data"]["keys"], json!(["llm"]), "{method} {uri}");
        let (req, resp) = lab.last_pair();
        for line in [&req, &resp] {
            assert_eq!(line["request"]["operation"], "list");
            assert_eq!(
                line["request"]["path"],
                "secret/metadata/agents/openclaw-01/"
            );
        }
    }
    // The policy still names one folder: its neighbour is refused, with or without the slash.
    for uri in [
        "/v1/secret/metadata/agents/openclaw-02",
        "/v1/secret/metadata/agents/openclaw-02/",
    ] {
        let (s, v) = lab.send("agent", "LIST", uri, &auth, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {v}");
    }
}

#[tokio::test]
async fn the_list_query_is_read_with_go_parse_bool_and_a_bad_value_is_400() {
    let lab = Lab::new();
    put_secret(&lab, "app/llm").await;
    let (lister, _) = lab.token(r#"path "secret/metadata/app/" { capabilities = ["list"] }"#);
    let auth = [("x-vault-token", lister.as_str())];
    // hvac 2.4's Client.list() sends list=True.
    for v in ["True", "t", "T", "TRUE", "true", "1"] {
        let uri = format!("/v1/secret/metadata/app?list={v}");
        let (s, body) = lab.send("agent", "GET", &uri, &auth, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body["data"]["keys"], json!(["llm"]));
    }
    // A false value is a read, which the list-only token may not do.
    for v in ["False", "f", "0"] {
        let uri = format!("/v1/secret/metadata/app?list={v}");
        let (s, body) = lab.send("agent", "GET", &uri, &auth, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {body}");
    }
    let (s, body) = lab
        .send(
            "agent",
            "GET",
            "/v1/secret/metadata/app?list=bogus",
            &auth,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0].as_str().unwrap().contains("list"),
        "{body}"
    );
}

#[tokio::test]
async fn renew_self_answers_the_token_it_renewed() {
    let lab = Lab::new();
    let (token, accessor) =
        lab.token(r#"path "auth/token/renew-self" { capabilities = ["update"] }"#);
    let (s, v) = lab
        .send(
            "agent",
            "POST",
            "/v1/auth/token/renew-self",
            &[("x-vault-token", &token)],
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["auth"]["client_token"], token.as_str());
    assert_eq!(v["auth"]["accessor"], accessor.as_str());
    // The token is the caller's secret: the audit response line has its HMAC only.
    let log = std::fs::read_to_string(&lab.log_path).unwrap();
    assert!(
        !log.contains(&token),
        "the token is in the audit log in clear"
    );
}

#[tokio::test]
async fn token_lookup_takes_the_token_from_the_query_on_get_and_from_the_body_on_post() {
    let lab = Lab::new();
    let (target, target_accessor) =
        lab.token_with("t", r#"path "secret/*" { capabilities = ["read"] }"#);
    let (reader, _) = lab.token_with(
        "r",
        r#"path "auth/token/lookup" { capabilities = ["read"] }"#,
    );
    let (updater, _) = lab.token_with(
        "u",
        r#"path "auth/token/lookup" { capabilities = ["update"] }"#,
    );
    let get = format!("/v1/auth/token/lookup?token={target}");
    let (s, v) = lab
        .send("agent", "GET", &get, &[("x-vault-token", &reader)], None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["accessor"], target_accessor.as_str());
    // GET is a read of the path: an update-only token may not, and may POST instead.
    let (s, _) = lab
        .send("agent", "GET", &get, &[("x-vault-token", &updater)], None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = lab
        .send(
            "agent",
            "POST",
            "/v1/auth/token/lookup",
            &[("x-vault-token", &updater)],
            Some(json!({"token": target})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["accessor"], target_accessor.as_str());
    let (s, _) = lab
        .send(
            "agent",
            "POST",
            "/v1/auth/token/lookup",
            &[("x-vault-token", &reader)],
            Some(json!({"token": target})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_answer_says_cache_control_no_store() {
    let lab = Lab::new();
    put_secret(&lab, "app/llm").await;
    for (method, uri, want) in [
        ("GET", "/v1/secret/data/app/llm", StatusCode::OK),
        ("GET", "/v1/sys/health", StatusCode::OK),
        ("GET", "/v1/no/such/route", StatusCode::NOT_FOUND),
        (
            "TRACE",
            "/v1/secret/data/app/llm",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("GET", "/v1/secret/data/a/../b", StatusCode::BAD_REQUEST),
        (
            "GET",
            "/v1/secret/data/app/llm?list=bogus",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(identity("operator", "00"));
        let resp = router(lab.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), want, "{method} {uri}");
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{method} {uri}"
        );
    }
}

#[tokio::test]
async fn a_form_encoded_write_is_read_as_string_fields_as_vault_does() {
    let lab = Lab::new();
    let form =
        "policy=path+%22secret%2Fdata%2Fform%2F*%22+%7B+capabilities+%3D+%5B%22read%22%5D+%7D";
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/sys/policies/acl/from-form")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(identity("operator", "00"));
    let resp = router(lab.state.clone()).oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let (s, v) = lab
        .send(
            "operator",
            "GET",
            "/v1/sys/policies/acl/from-form",
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["policy"],
        r#"path "secret/data/form/*" { capabilities = ["read"] }"#
    );
    // JSON sent under the form content type (what `curl -d '{…}'` does) stays JSON.
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/sys/policies/acl/json-as-form")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(
            json!({"policy": r#"path "j/*" { capabilities = ["read"] }"#}).to_string(),
        ))
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(identity("operator", "00"));
    let resp = router(lab.state.clone()).oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let (s, v) = lab
        .send(
            "operator",
            "GET",
            "/v1/sys/policies/acl/json-as-form",
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["policy"],
        r#"path "j/*" { capabilities = ["read"] }"#
    );
    // The same body without the form content type is not JSON: 400, and nothing stored.
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/sys/policies/acl/not-form")
        .body(Body::from(form))
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(identity("operator", "00"));
    let resp = router(lab.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (s, _) = lab
        .send(
            "operator",
            "GET",
            "/v1/sys/policies/acl/not-form",
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// The route table walked: every route answers in Vault's documented shape, or docs/server.md
// lists it as a deliberate difference (issue 13)
// ---------------------------------------------------------------------------------------------

/// What one route must answer.
enum Shape {
    /// Vault's documented answer: the status and the fields (dotted paths from the top of the
    /// body; `data.keys` is `body["data"]["keys"]`) it must carry.
    Vault {
        verb: &'static str,
        uri: &'static str,
        body: Option<&'static str>,
        status: u16,
        fields: &'static [&'static str],
    },
    /// keep answers differently on purpose; docs/server.md's section on deliberate
    /// differences names it with this text.
    Differs(&'static str),
}

use Shape::{Differs, Vault};

/// Every route of the table (`.route("…")` in src/api/mod.rs) with what it answers. `{token}`,
/// `{accessor}`, `{wrap}`, `{serial}` and `{csr}` are filled in at run time. In order: the
/// wrapping entries use the token `wrap` made; `sys/seal` is last.
const WALK: &[(&str, Shape)] = &[
    (
        "/v1/sys/health",
        Vault {
            verb: "GET",
            uri: "/v1/sys/health",
            body: None,
            status: 200,
            fields: &[
                "initialized",
                "sealed",
                "standby",
                "server_time_utc",
                "version",
                "cluster_name",
                "cluster_id",
            ],
        },
    ),
    (
        "/v1/sys/seal-status",
        Vault {
            verb: "GET",
            uri: "/v1/sys/seal-status",
            body: None,
            status: 200,
            fields: &[
                "type",
                "initialized",
                "sealed",
                "t",
                "n",
                "progress",
                "version",
                "storage_type",
            ],
        },
    ),
    ("/v1/sys/metrics", Differs("sys/metrics")),
    (
        "/v1/sys/audit-hash/{*path}",
        Vault {
            verb: "POST",
            uri: "/v1/sys/audit-hash/file",
            body: Some(r#"{"input":"x"}"#),
            status: 200,
            fields: &["hash", "data.hash"],
        },
    ),
    (
        "/v1/sys/init",
        Vault {
            verb: "GET",
            uri: "/v1/sys/init",
            body: None,
            status: 200,
            fields: &["initialized"],
        },
    ),
    (
        "/v1/sys/capabilities-self",
        Vault {
            verb: "POST",
            uri: "/v1/sys/capabilities-self",
            body: Some(r#"{"paths":["secret/data/a"]}"#),
            status: 200,
            fields: &[
                "capabilities",
                "secret/data/a",
                "data.capabilities",
                "data.secret/data/a",
            ],
        },
    ),
    (
        "/v1/sys/capabilities",
        Vault {
            verb: "POST",
            uri: "/v1/sys/capabilities",
            body: Some(r#"{"token":"{token}","paths":["secret/data/a"]}"#),
            status: 200,
            fields: &["capabilities", "data.capabilities"],
        },
    ),
    (
        "/v1/sys/mounts",
        Vault {
            verb: "GET",
            uri: "/v1/sys/mounts",
            body: None,
            status: 200,
            fields: &[
                "secret/.type",
                "secret/.options.version",
                "data.secret/.accessor",
                "data.sys/.type",
            ],
        },
    ),
    (
        "/v1/sys/mounts/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/sys/mounts/secret/tune",
            body: None,
            status: 200,
            fields: &[
                "default_lease_ttl",
                "max_lease_ttl",
                "force_no_cache",
                "data.options",
            ],
        },
    ),
    ("/v1/sys/remount", Differs("sys/remount")),
    (
        "/v1/sys/auth",
        Vault {
            verb: "GET",
            uri: "/v1/sys/auth",
            body: None,
            status: 200,
            fields: &["cert/.type", "token/.type", "data.cert/.accessor"],
        },
    ),
    (
        "/v1/sys/auth/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/sys/auth/cert",
            body: None,
            status: 200,
            fields: &["type", "accessor", "config.default_lease_ttl"],
        },
    ),
    (
        "/v1/sys/internal/ui/mounts/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/sys/internal/ui/mounts/secret/data/a",
            body: None,
            status: 200,
            fields: &["data.path", "data.type", "data.options.version"],
        },
    ),
    (
        "/v1/sys/wrapping/wrap",
        Vault {
            verb: "POST",
            uri: "/v1/sys/wrapping/wrap",
            body: Some(r#"{"k":"v"}"#),
            status: 200,
            fields: &[
                "wrap_info.token",
                "wrap_info.accessor",
                "wrap_info.ttl",
                "wrap_info.creation_time",
                "wrap_info.creation_path",
            ],
        },
    ),
    (
        "/v1/sys/wrapping/lookup",
        Vault {
            verb: "POST",
            uri: "/v1/sys/wrapping/lookup",
            body: Some(r#"{"token":"{wrap}"}"#),
            status: 200,
            fields: &[
                "data.creation_path",
                "data.creation_time",
                "data.creation_ttl",
            ],
        },
    ),
    (
        "/v1/sys/wrapping/rewrap",
        Vault {
            verb: "POST",
            uri: "/v1/sys/wrapping/rewrap",
            body: Some(r#"{"token":"{wrap}"}"#),
            status: 200,
            fields: &["wrap_info.token", "wrap_info.creation_path"],
        },
    ),
    (
        "/v1/sys/wrapping/unwrap",
        Vault {
            verb: "POST",
            uri: "/v1/sys/wrapping/unwrap",
            body: Some(r#"{"token":"{wrap}"}"#),
            status: 200,
            fields: &["data.k"],
        },
    ),
    (
        "/v1/sys/policies/acl",
        Vault {
            verb: "LIST",
            uri: "/v1/sys/policies/acl",
            body: None,
            status: 200,
            fields: &["data.keys", "keys"],
        },
    ),
    (
        "/v1/sys/policies/acl/",
        Vault {
            verb: "GET",
            uri: "/v1/sys/policies/acl/?list=true",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/sys/policies/acl/{name}",
        Vault {
            verb: "GET",
            uri: "/v1/sys/policies/acl/p",
            body: None,
            status: 200,
            fields: &["name", "policy", "data.name", "data.policy"],
        },
    ),
    (
        "/v1/sys/policies/acl/{name}",
        Differs("LIST sys/policies/acl/:name"),
    ),
    (
        "/v1/sys/policy",
        Vault {
            verb: "GET",
            uri: "/v1/sys/policy",
            body: None,
            status: 200,
            fields: &["keys", "policies", "data.keys", "data.policies"],
        },
    ),
    (
        "/v1/sys/policy/{name}",
        Vault {
            verb: "GET",
            uri: "/v1/sys/policy/p",
            body: None,
            status: 200,
            fields: &["name", "rules", "data.name", "data.rules"],
        },
    ),
    ("/v1/sys/policy/{name}", Differs("LIST sys/policy/:name")),
    (
        "/v1/secret/data/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/secret/data/a",
            body: None,
            status: 200,
            fields: &[
                "data.data.k",
                "data.metadata.version",
                "data.metadata.created_time",
                "data.metadata.deletion_time",
                "data.metadata.destroyed",
                "data.metadata.custom_metadata",
            ],
        },
    ),
    ("/v1/secret/data", Differs("LIST secret/data")),
    ("/v1/secret/data/", Differs("LIST secret/data")),
    (
        "/v1/secret/metadata/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/secret/metadata/a",
            body: None,
            status: 200,
            fields: &[
                "data.versions.1.created_time",
                "data.current_version",
                "data.oldest_version",
                "data.max_versions",
                "data.cas_required",
                "data.delete_version_after",
                "data.custom_metadata",
                "data.created_time",
                "data.updated_time",
            ],
        },
    ),
    (
        "/v1/secret/metadata",
        Vault {
            verb: "LIST",
            uri: "/v1/secret/metadata",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/secret/metadata/",
        Vault {
            verb: "LIST",
            uri: "/v1/secret/metadata/",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/secret/subkeys/{*path}",
        Vault {
            verb: "GET",
            uri: "/v1/secret/subkeys/a",
            body: None,
            status: 200,
            fields: &["data.subkeys.k", "data.metadata.version"],
        },
    ),
    (
        "/v1/secret/delete/{*path}",
        Vault {
            verb: "POST",
            uri: "/v1/secret/delete/b",
            body: Some(r#"{"versions":[1]}"#),
            status: 204,
            fields: &[],
        },
    ),
    (
        "/v1/secret/undelete/{*path}",
        Vault {
            verb: "POST",
            uri: "/v1/secret/undelete/b",
            body: Some(r#"{"versions":[1]}"#),
            status: 204,
            fields: &[],
        },
    ),
    (
        "/v1/secret/destroy/{*path}",
        Vault {
            verb: "POST",
            uri: "/v1/secret/destroy/b",
            body: Some(r#"{"versions":[1]}"#),
            status: 204,
            fields: &[],
        },
    ),
    (
        "/v1/secret/config",
        Vault {
            verb: "GET",
            uri: "/v1/secret/config",
            body: None,
            status: 200,
            fields: &[
                "data.max_versions",
                "data.cas_required",
                "data.delete_version_after",
            ],
        },
    ),
    (
        "/v1/auth/cert/login",
        Vault {
            verb: "POST",
            uri: "/v1/auth/cert/login",
            body: Some(r#"{"name":"r"}"#),
            status: 200,
            fields: &[
                "auth.client_token",
                "auth.accessor",
                "auth.policies",
                "auth.token_policies",
                "auth.metadata.cert_name",
                "auth.metadata.common_name",
                "auth.metadata.serial_number",
                "auth.metadata.subject_key_id",
                "auth.metadata.authority_key_id",
                "auth.lease_duration",
                "auth.renewable",
                "auth.token_type",
                "auth.orphan",
            ],
        },
    ),
    (
        "/v1/auth/cert/certs",
        Vault {
            verb: "LIST",
            uri: "/v1/auth/cert/certs",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/auth/cert/certs/",
        Vault {
            verb: "LIST",
            uri: "/v1/auth/cert/certs/",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/auth/cert/certs/{name}",
        Vault {
            verb: "GET",
            uri: "/v1/auth/cert/certs/r",
            body: None,
            status: 200,
            fields: &[
                "data.certificate",
                "data.allowed_common_names",
                "data.token_policies",
                "data.token_ttl",
                "data.token_max_ttl",
                "data.display_name",
            ],
        },
    ),
    (
        "/v1/auth/token/lookup-self",
        Vault {
            verb: "GET",
            uri: "/v1/auth/token/lookup-self",
            body: None,
            status: 200,
            fields: &[
                "data.accessor",
                "data.creation_time",
                "data.creation_ttl",
                "data.display_name",
                "data.expire_time",
                "data.explicit_max_ttl",
                "data.id",
                "data.issue_time",
                "data.meta",
                "data.num_uses",
                "data.orphan",
                "data.path",
                "data.policies",
                "data.renewable",
                "data.ttl",
                "data.type",
            ],
        },
    ),
    (
        "/v1/auth/token/renew-self",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/renew-self",
            body: None,
            status: 200,
            fields: &[
                "auth.client_token",
                "auth.accessor",
                "auth.policies",
                "auth.lease_duration",
                "auth.renewable",
            ],
        },
    ),
    (
        "/v1/auth/token/lookup",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/lookup",
            body: Some(r#"{"token":"{token}"}"#),
            status: 200,
            fields: &["data.accessor", "data.policies", "data.ttl", "data.id"],
        },
    ),
    (
        "/v1/auth/token/lookup-accessor",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/lookup-accessor",
            body: Some(r#"{"accessor":"{accessor}"}"#),
            status: 200,
            fields: &["data.accessor", "data.policies", "data.ttl", "data.id"],
        },
    ),
    (
        "/v1/auth/token/tidy",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/tidy",
            body: None,
            status: 202,
            fields: &["warnings"],
        },
    ),
    (
        "/v1/pki/ca/pem",
        Vault {
            verb: "GET",
            uri: "/v1/pki/ca/pem",
            body: None,
            status: 200,
            fields: &[],
        },
    ),
    (
        "/v1/pki/ca",
        Vault {
            verb: "GET",
            uri: "/v1/pki/ca",
            body: None,
            status: 200,
            fields: &[],
        },
    ),
    (
        "/v1/pki/ca_chain",
        Vault {
            verb: "GET",
            uri: "/v1/pki/ca_chain",
            body: None,
            status: 200,
            fields: &[],
        },
    ),
    (
        "/v1/pki/cert/ca",
        Vault {
            verb: "GET",
            uri: "/v1/pki/cert/ca",
            body: None,
            status: 200,
            fields: &["data.certificate"],
        },
    ),
    (
        "/v1/pki/cert/ca_chain",
        Vault {
            verb: "GET",
            uri: "/v1/pki/cert/ca_chain",
            body: None,
            status: 200,
            fields: &["data.certificate", "data.ca_chain"],
        },
    ),
    (
        "/v1/pki/crl",
        Vault {
            verb: "GET",
            uri: "/v1/pki/crl",
            body: None,
            status: 200,
            fields: &[],
        },
    ),
    (
        "/v1/pki/crl/pem",
        Vault {
            verb: "GET",
            uri: "/v1/pki/crl/pem",
            body: None,
            status: 200,
            fields: &[],
        },
    ),
    (
        "/v1/pki/cert/crl",
        Vault {
            verb: "GET",
            uri: "/v1/pki/cert/crl",
            body: None,
            status: 200,
            fields: &["data.certificate"],
        },
    ),
    ("/v1/pki/renew", Differs("pki/renew")),
    (
        "/v1/pki/roles",
        Vault {
            verb: "LIST",
            uri: "/v1/pki/roles",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/pki/roles/",
        Vault {
            verb: "LIST",
            uri: "/v1/pki/roles/",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/pki/roles/{name}",
        Vault {
            verb: "GET",
            uri: "/v1/pki/roles/r",
            body: None,
            status: 200,
            fields: &[
                "data.allowed_domains",
                "data.allow_subdomains",
                "data.ttl",
                "data.max_ttl",
                "data.key_type",
                "data.client_flag",
                "data.server_flag",
            ],
        },
    ),
    (
        "/v1/pki/issue/{role}",
        Vault {
            verb: "POST",
            uri: "/v1/pki/issue/r",
            body: Some(r#"{"common_name":"a.claw.internal"}"#),
            status: 200,
            fields: &[
                "data.certificate",
                "data.issuing_ca",
                "data.ca_chain",
                "data.private_key",
                "data.private_key_type",
                "data.serial_number",
                "data.expiration",
            ],
        },
    ),
    (
        "/v1/pki/sign/{role}",
        Vault {
            verb: "POST",
            uri: "/v1/pki/sign/r",
            body: Some(r#"{"csr":"{csr}"}"#),
            status: 200,
            fields: &[
                "data.certificate",
                "data.issuing_ca",
                "data.ca_chain",
                "data.serial_number",
                "data.expiration",
            ],
        },
    ),
    (
        "/v1/pki/certs",
        Vault {
            verb: "LIST",
            uri: "/v1/pki/certs",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/pki/certs/",
        Vault {
            verb: "LIST",
            uri: "/v1/pki/certs/",
            body: None,
            status: 200,
            fields: &["data.keys"],
        },
    ),
    (
        "/v1/pki/cert/{serial}",
        Vault {
            verb: "GET",
            uri: "/v1/pki/cert/{serial}",
            body: None,
            status: 200,
            fields: &["data.certificate", "data.revocation_time"],
        },
    ),
    (
        "/v1/pki/revoke",
        Vault {
            verb: "POST",
            uri: "/v1/pki/revoke",
            body: Some(r#"{"serial_number":"{serial}"}"#),
            status: 200,
            fields: &["data.revocation_time", "data.revocation_time_rfc3339"],
        },
    ),
    (
        "/v1/pki/tidy",
        Vault {
            verb: "POST",
            uri: "/v1/pki/tidy",
            body: Some(r#"{"tidy_cert_store":true}"#),
            status: 202,
            fields: &["warnings"],
        },
    ),
    (
        "/v1/auth/token/revoke-accessor",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/revoke-accessor",
            body: Some(r#"{"accessor":"{other_accessor}"}"#),
            status: 204,
            fields: &[],
        },
    ),
    (
        "/v1/auth/token/revoke-self",
        Vault {
            verb: "POST",
            uri: "/v1/auth/token/revoke-self",
            body: None,
            status: 204,
            fields: &[],
        },
    ),
    // Last: it seals the server.
    (
        "/v1/sys/seal",
        Vault {
            verb: "PUT",
            uri: "/v1/sys/seal",
            body: None,
            status: 204,
            fields: &[],
        },
    ),
];

/// The route patterns of the table, read from its source (`.route("…"` in src/api/mod.rs).
fn routes_in_table() -> Vec<String> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    let mut out = Vec::new();
    for piece in src.split(".route(").skip(1) {
        let start = piece.find('"').unwrap();
        let rest = &piece[start + 1..];
        out.push(rest[..rest.find('"').unwrap()].to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `uri` (its path) is one the route `pattern` serves (`{x}` one segment, `{*x}` the rest).
fn serves(pattern: &str, uri: &str) -> bool {
    let path = uri.split('?').next().unwrap();
    let (p, u): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    for (i, seg) in p.iter().enumerate() {
        if seg.starts_with("{*") {
            return u.len() > i && !u[i].is_empty();
        }
        match u.get(i) {
            Some(s) if seg.starts_with('{') => {
                if s.is_empty() {
                    return false;
                }
            }
            Some(s) if s == seg => {}
            _ => return false,
        }
    }
    p.len() == u.len()
}

fn field<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    // Mount keys contain '/', field names never a '.', so split on '.' only.
    dotted.split('.').try_fold(v, |v, k| v.as_object()?.get(k))
}

/// The section of docs/server.md that lists keep's deliberate differences from Vault.
fn differences_doc() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server.md"))
        .unwrap();
    let start = doc
        .find("### Deliberate differences from Vault")
        .expect("docs/server.md has a section `### Deliberate differences from Vault`");
    let rest = &doc[start + 4..];
    let end = ["\n## ", "\n### "]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[tokio::test]
async fn every_route_answers_in_vaults_documented_shape_or_is_a_documented_difference() {
    // Complete both ways: every route of the table is walked, and nothing walked is stale.
    let table = routes_in_table();
    for route in &table {
        assert!(
            WALK.iter().any(|(r, _)| r == route),
            "route {route} is not walked: add it to WALK"
        );
        assert!(
            ROUTES.iter().any(|(uri, _)| serves(route, uri)),
            "route {route} is not in ROUTES (the wrong-verb test)"
        );
    }
    for (route, _) in WALK {
        assert!(
            table.iter().any(|r| r == route),
            "WALK names {route}, which the table does not have"
        );
    }

    let lab = Lab::new();
    let (token, accessor) = lab.token_with(
        "all",
        r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    );
    lab.state
        .policies
        .put(
            &*lab.store,
            "p",
            r#"path "secret/*" { capabilities = ["read"] }"#,
        )
        .unwrap()
        .unwrap();
    // A second token, for revoke-accessor (the first one is revoked by revoke-self, last).
    let (_, other_accessor) =
        lab.token_with("p2", r#"path "secret/*" { capabilities = ["read"] }"#);
    put_secret(&lab, "a").await;
    put_secret(&lab, "b").await;
    let (_, ca) = lab
        .send("operator", "GET", "/v1/pki/ca/pem", &[], None)
        .await;
    let ca = ca.as_str().unwrap().to_owned();
    let (s, v) = lab.send("operator", "POST", "/v1/auth/cert/certs/r", &[],
        Some(json!({"certificate": ca, "allowed_common_names": "agent-*", "token_policies": "p"}))).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = lab
        .send(
            "operator",
            "POST",
            "/v1/pki/roles/r",
            &[],
            Some(json!({"allowed_domains": "claw.internal", "allow_subdomains": true})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = lab
        .send(
            "operator",
            "POST",
            "/v1/pki/issue/r",
            &[],
            Some(json!({"common_name": "b.claw.internal"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let serial = v["data"]["serial_number"].as_str().unwrap().to_owned();

    let csr = keep_test_support::csr(
        "c.claw.internal",
        &[],
        &[],
        keep_test_support::KeyAlg::EcdsaP256,
    );
    let csr = serde_json::to_string(&csr.pem).unwrap();
    let csr = csr.trim_matches('"').to_owned();
    let differences = differences_doc();
    let mut wrap = String::new();
    let mut walked = 0;
    for (route, shape) in WALK {
        let (verb, uri, body, status, fields) = match shape {
            Differs(name) => {
                assert!(
                    differences.contains(&format!("`{name}`")),
                    "docs/server.md's differences section does not name `{name}` ({route})"
                );
                continue;
            }
            Vault {
                verb,
                uri,
                body,
                status,
                fields,
            } => (*verb, *uri, *body, *status, *fields),
        };
        assert!(serves(route, uri), "{uri} is not served by {route}");
        let fill = |s: &str| {
            s.replace("{token}", &token)
                .replace("{accessor}", &accessor)
                .replace("{other_accessor}", &other_accessor)
                .replace("{wrap}", &wrap)
                .replace("{serial}", &serial)
                .replace("{csr}", &csr)
        };
        let uri = fill(uri);
        let body: Option<Value> = body.map(|b| serde_json::from_str(&fill(b)).unwrap());
        // Token routes answer for the agent's token; the rest for the operator (an admin).
        let (cn, headers): (&str, Vec<(&str, &str)>) =
            if uri.contains("/auth/token/") && !uri.contains("tidy") {
                ("agent-01", vec![("X-Vault-Token", token.as_str())])
            } else if uri.contains("/auth/cert/login") {
                (REAL_AGENT, vec![])
            } else if uri.ends_with("/wrapping/wrap") {
                ("operator", vec![("X-Vault-Wrap-TTL", "60")])
            } else {
                ("operator", vec![])
            };
        let (got, v) = lab.send(cn, verb, &uri, &headers, body).await;
        assert_eq!(got.as_u16(), status, "{verb} {uri}: {v}");
        for f in fields {
            assert!(
                field(&v, f).is_some(),
                "{verb} {uri}: Vault's field `{f}` is missing from {v}"
            );
        }
        if uri.ends_with("/wrapping/wrap") || uri.ends_with("/wrapping/rewrap") {
            wrap = v["wrap_info"]["token"].as_str().unwrap().to_owned();
        }
        walked += 1;
    }
    assert!(walked >= 55, "only {walked} routes walked");
}

/// The lists keep answers where Vault answers 405 say so in a warning, never silently.
#[tokio::test]
async fn lists_vault_does_not_answer_carry_a_warning() {
    let lab = Lab::new();
    put_secret(&lab, "agents/a").await;
    lab.state
        .policies
        .put(&*lab.store, "p", r#"path "x" { capabilities = ["read"] }"#)
        .unwrap()
        .unwrap();
    for uri in [
        "/v1/secret/data/agents",
        "/v1/sys/policies/acl/p",
        "/v1/sys/policy/p",
    ] {
        let (s, v) = lab.send("operator", "LIST", uri, &[], None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        assert!(v["data"]["keys"].is_array(), "{uri}: {v}");
        let warning = v["warnings"][0].as_str().unwrap_or_default();
        assert!(warning.contains("Vault answers 405 here"), "{uri}: {v}");
    }
    // The Vault paths answer without one.
    for uri in ["/v1/secret/metadata/agents", "/v1/sys/policies/acl"] {
        let (s, v) = lab.send("operator", "LIST", uri, &[], None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        assert!(v["warnings"].is_null(), "{uri}: {v}");
    }
}

/// `secret/subkeys/:path`: the key structure with every value null, to `depth` levels, under
/// its own policy path (a `read` on `secret/data/…` does not grant it, and it never shows a
/// value).
#[tokio::test]
async fn subkeys_answer_the_structure_without_values_and_need_their_own_grant() {
    let lab = Lab::new();
    let (s, v) = lab
        .send(
            "operator",
            "POST",
            "/v1/secret/data/agents/llm",
            &[],
            Some(
                json!({"data": {"api_key": "sk-sub-1", "nested": {"a": {"b": "sk-deep"}, "c": 1}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (sub, _) = lab.token_with(
        "sub",
        r#"path "secret/subkeys/agents/*" { capabilities = ["read"] }"#,
    );
    let (data_only, _) = lab.token_with(
        "data",
        r#"path "secret/data/agents/*" { capabilities = ["read"] }"#,
    );
    let as_agent = |t: &str| vec![("X-Vault-Token", t.to_owned())];

    let h = as_agent(&sub);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, v) = lab
        .send("agent-01", "GET", "/v1/secret/subkeys/agents/llm", &h, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["subkeys"],
        json!({"api_key": null, "nested": {"a": {"b": null}, "c": null}})
    );
    assert_eq!(v["data"]["metadata"]["version"], 1);
    assert!(!v.to_string().contains("sk-"), "a value leaked: {v}");
    let (s, v) = lab
        .send(
            "agent-01",
            "GET",
            "/v1/secret/subkeys/agents/llm?depth=1",
            &h,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["subkeys"],
        json!({"api_key": null, "nested": null})
    );
    let (s, v) = lab
        .send(
            "agent-01",
            "GET",
            "/v1/secret/subkeys/agents/llm?depth=x",
            &h,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = lab
        .send(
            "agent-01",
            "GET",
            "/v1/secret/subkeys/agents/none",
            &h,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    let h = as_agent(&data_only);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, v) = lab
        .send("agent-01", "GET", "/v1/secret/subkeys/agents/llm", &h, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // A deleted version: 404 with its metadata and no subkeys, as Vault answers.
    let (s, _) = lab
        .send(
            "operator",
            "DELETE",
            "/v1/secret/data/agents/llm",
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = lab
        .send(
            "operator",
            "GET",
            "/v1/secret/subkeys/agents/llm",
            &[],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["data"]["subkeys"].is_null() && v["data"]["metadata"]["deletion_time"] != "",
        "{v}"
    );
}

/// A policy in Vault's JSON form (what hvac sends for a dict) is stored and grants what it
/// says; a bad one is 400 naming the line and is not stored.
#[tokio::test]
async fn a_json_form_policy_grants_what_it_says_and_a_bad_one_stores_nothing() {
    let lab = Lab::new();
    put_secret(&lab, "agents/agent-01/llm").await;
    let policy =
        r#"{"path": {"secret/data/agents/{{cert.common_name}}/*": {"capabilities": ["read"]}}}"#;
    let (s, v) = lab
        .send(
            "operator",
            "PUT",
            "/v1/sys/policies/acl/json",
            &[],
            Some(json!({ "policy": policy })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = lab
        .send("operator", "GET", "/v1/sys/policies/acl/json", &[], None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["policy"], policy,
        "read back verbatim, at the top level too"
    );
    let (token, _) = lab.token_with("json", policy);
    let h = [("X-Vault-Token", token.as_str())];
    let (s, v) = lab
        .send(
            "agent-01",
            "GET",
            "/v1/secret/data/agents/agent-01/llm",
            &h,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = lab
        .send(
            "agent-01",
            "GET",
            "/v1/secret/data/agents/agent-02/llm",
            &h,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let bad = "{\"path\": {\n  \"secret/*\": {\"capabilities\": [\"reed\"]}}}";
    let (s, v) = lab
        .send(
            "operator",
            "PUT",
            "/v1/sys/policies/acl/bad",
            &[],
            Some(json!({ "policy": bad })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["errors"][0].as_str().unwrap();
    assert!(msg.contains("line 2") && msg.contains("\"reed\""), "{msg}");
    let (s, _) = lab
        .send("operator", "GET", "/v1/sys/policies/acl/bad", &[], None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was stored");
}
