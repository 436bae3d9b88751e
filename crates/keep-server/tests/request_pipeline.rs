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

struct Lab {
    state: Arc<AppState>,
    store: Arc<MemStore>,
    log: AuditLog,
    log_path: std::path::PathBuf,
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
        let fp = if cn == "operator" { "00" } else { AGENT_FP };
        req.extensions_mut().insert(identity(cn, fp));
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
    ("/v1/secret/delete/a", &["POST", "PUT"]),
    ("/v1/secret/undelete/a", &["POST", "PUT"]),
    ("/v1/secret/destroy/a", &["POST", "PUT"]),
    ("/v1/secret/config", &["GET", "HEAD", "POST", "PUT"]),
    ("/v1/auth/cert/login", &["POST", "PUT"]),
    ("/v1/auth/cert/certs", &["LIST"]),
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
    ("/v1/pki/roles/r", &["GET", "HEAD", "POST", "PUT", "DELETE"]),
    ("/v1/pki/sign/r", &["POST", "PUT"]),
    ("/v1/pki/issue/r", &["POST", "PUT"]),
    ("/v1/pki/revoke", &["POST", "PUT"]),
    ("/v1/pki/certs", &["LIST"]),
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
