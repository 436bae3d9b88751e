//! Cert auth roles, login, cert-bound tokens, tokenless access and templated policies, through
//! the router with identities derived from real test certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::MemStore;
use keep_test_support::{LeafSpec, TestPki};
use keep_tls::identity::{PeerIdentity, from_verified_chain};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tower::ServiceExt;

fn identity(chain_der: &[Vec<u8>]) -> Arc<PeerIdentity> {
    let chain: Vec<CertificateDer<'static>> = chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    Arc::new(from_verified_chain(&chain).unwrap())
}

struct Api {
    state: Arc<AppState>,
}

impl Api {
    fn new() -> Api {
        let store = Arc::new(MemStore::new());
        Api {
            state: Arc::new(AppState::unsealed(
                store,
                vec![AdminIdentity::CommonName("operator".into())],
                Limits::default(),
                "memory",
            )),
        }
    }

    async fn call(
        &self,
        who: &Arc<PeerIdentity>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            },
        )
    }
}

struct World {
    api: Api,
    pki: TestPki,
    admin: Arc<PeerIdentity>,
    agent_a: Arc<PeerIdentity>,
    agent_b: Arc<PeerIdentity>,
}

async fn world() -> World {
    let pki = TestPki::new();
    let api = Api::new();
    let admin = identity(&pki.admin.chain_der);
    let agent_a = identity(&pki.issue(&LeafSpec::agent("agent-a")).chain_der);
    let agent_b = identity(&pki.issue(&LeafSpec::agent("agent-b")).chain_der);
    // One templated policy confines every agent to its own path.
    let (s, v) = api
        .call(&admin, None, "PUT", "/v1/sys/policies/acl/agents", Some(json!({
            "policy": "path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\", \"create\", \"update\"] }\npath \"secret/metadata/agents/{{cert.common_name}}/*\" { capabilities = [\"list\", \"read\"] }"
        })))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = api
        .call(
            &admin,
            None,
            "POST",
            "/v1/auth/cert/certs/agents",
            Some(json!({
                "certificate": pki.intermediate.cert_pem,
                "allowed_common_names": "agent-*",
                "token_policies": "agents",
                "token_ttl": "1h",
            })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    for (agent, name) in [("agent-a", "x"), ("agent-b", "x")] {
        let (s, _) = api
            .call(
                &admin,
                None,
                "POST",
                &format!("/v1/secret/data/agents/{agent}/{name}"),
                Some(json!({"data": {"key": format!("sk-{agent}")}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    World {
        api,
        pki,
        admin,
        agent_a,
        agent_b,
    }
}

async fn login(w: &World, who: &Arc<PeerIdentity>, body: Option<Value>) -> (StatusCode, Value) {
    w.api
        .call(who, None, "POST", "/v1/auth/cert/login", body)
        .await
}

#[tokio::test]
async fn templated_policy_confines_each_agent_to_its_path() {
    let w = world().await;
    let (s, v) = login(&w, &w.agent_a, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(v["auth"]["policies"], json!(["agents", "default"]));
    assert_eq!(v["auth"]["metadata"]["cert_name"], "agents");
    assert!(
        v["auth"]["metadata"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string)
    );
    let (s, v) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["data"]["key"], "sk-agent-a");
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/secret/data/agents/agent-b/x",
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "agent-a must not read agent-b's secret"
    );
    // A token issued to agent-a's cert is refused on agent-b's connection.
    let (s, v) = w
        .api
        .call(
            &w.agent_b,
            Some(&token),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("different client certificate"),
        "{v}"
    );
    // A forged token is refused.
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some("hvs.0000forged"),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn token_self_management() {
    let w = world().await;
    let (_, v) = login(&w, &w.agent_a, Some(json!({"name": "agents"}))).await;
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (s, v) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["policies"], json!(["agents", "default"]));
    assert!(v["data"]["ttl"].as_i64().unwrap() <= 3600);
    let (s, v) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/auth/token/renew-self",
            Some(json!({"increment": "30m"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["auth"]["lease_duration"].as_i64().unwrap() <= 1800);
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/auth/token/revoke-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "revoked token");
    // Admins look tokens up and revoke by accessor.
    let (_, v) = login(&w, &w.agent_b, None).await;
    let (token_b, accessor_b) = (
        v["auth"]["client_token"].as_str().unwrap().to_owned(),
        v["auth"]["accessor"].as_str().unwrap().to_owned(),
    );
    let (s, v) = w
        .api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/token/lookup",
            Some(json!({"token": token_b})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["accessor"], accessor_b.as_str());
    let (s, _) = w
        .api
        .call(
            &w.agent_b,
            Some(&token_b),
            "POST",
            "/v1/auth/token/lookup",
            Some(json!({"token": token_b})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "agents may not look up arbitrary tokens"
    );
    let (s, _) = w
        .api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/token/revoke-accessor",
            Some(json!({"accessor": accessor_b})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = w
        .api
        .call(
            &w.agent_b,
            Some(&token_b),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn login_failures_name_the_check() {
    let w = world().await;
    let ops = identity(&w.pki.issue(&LeafSpec::client("ops-7")).chain_der);
    let (s, v) = login(&w, &ops, Some(json!({"name": "agents"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("allowed_common_names"),
        "{v}"
    );
    let (s, v) = login(&w, &ops, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("no cert auth role matches"),
        "{v}"
    );
    let (s, v) = login(&w, &w.agent_a, Some(json!({"cert_name": "nope"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("no cert auth role named"),
        "{v}"
    );
    // A role whose CA is the foreign CA: the chain check fails.
    let (s, _) = w
        .api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/foreign",
            Some(json!({
                "certificate": w.pki.foreign_ca.cert_pem, "allowed_common_names": "agent-*"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = login(&w, &w.agent_a, Some(json!({"name": "foreign"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0].as_str().unwrap().contains("does not chain"),
        "{v}"
    );
    // CIDR.
    w.api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/lan",
            Some(json!({
                "allowed_common_names": "agent-a", "token_bound_cidrs": "10.0.0.0/8"
            })),
        )
        .await;
    let (s, v) = login(&w, &w.agent_a, Some(json!({"name": "lan"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("token_bound_cidrs"),
        "{v}"
    );
}

#[tokio::test]
async fn role_choice_without_a_name_is_deterministic_and_ambiguity_lists_candidates() {
    let w = world().await;
    // An unconstrained role also matches agent-a, but the constrained one is preferred.
    let (s, v) = w
        .api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/anyone",
            Some(json!({"token_policies": "default"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a warning is returned: {v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no name constraints"),
        "{v}"
    );
    let (s, v) = login(&w, &w.agent_a, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["auth"]["metadata"]["cert_name"], "agents");
    // A second constrained role matching the same cert makes it ambiguous.
    w.api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/agents-too",
            Some(json!({"allowed_common_names": "agent-a"})),
        )
        .await;
    let (s, v) = login(&w, &w.agent_a, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = v["errors"][0].as_str().unwrap();
    assert!(
        msg.contains("agents") && msg.contains("agents-too"),
        "{msg}"
    );
    let (s, _) = login(&w, &w.agent_a, Some(json!({"name": "agents-too"}))).await;
    assert_eq!(s, StatusCode::OK);
    // Roles CRUD and LIST.
    let (s, v) = w
        .api
        .call(&w.admin, None, "LIST", "/v1/auth/cert/certs", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["keys"], json!(["agents", "agents-too", "anyone"]));
    let (s, v) = w
        .api
        .call(&w.admin, None, "GET", "/v1/auth/cert/certs/agents", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["token_ttl"], 3600);
    assert_eq!(v["data"]["allowed_common_names"], json!(["agent-*"]));
    let (s, _) = w
        .api
        .call(
            &w.admin,
            None,
            "DELETE",
            "/v1/auth/cert/certs/agents-too",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Agents may not manage roles.
    let (_, v) = login(&w, &w.agent_a, None).await;
    let t = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some(&t),
            "POST",
            "/v1/auth/cert/certs/evil",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tokenless_access_by_certificate_alone() {
    let w = world().await;
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            None,
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no tokenless role yet");
    w.api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/agents",
            Some(json!({"allow_tokenless": true})),
        )
        .await;
    let (s, v) = w
        .api
        .call(
            &w.agent_a,
            None,
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            None,
            "GET",
            "/v1/secret/data/agents/agent-b/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn policies_api_round_trips_and_rejects_bad_hcl() {
    let w = world().await;
    let (s, v) = w
        .api
        .call(&w.admin, None, "GET", "/v1/sys/policies/acl/agents", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("{{cert.common_name}}")
    );
    let (s, v) = w
        .api
        .call(&w.admin, None, "GET", "/v1/sys/policy/agents", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["data"]["rules"].as_str().is_some(), "{v}");
    let (s, v) = w
        .api
        .call(&w.admin, None, "LIST", "/v1/sys/policies/acl", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["keys"], json!(["agents", "default"]));
    let (s, v) = w
        .api
        .call(
            &w.admin,
            None,
            "PUT",
            "/v1/sys/policies/acl/bad",
            Some(json!({"policy": "path \"x\" { capabilities = [\"fly\"] }"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["errors"][0].as_str().unwrap().contains("fly"), "{v}");
    let (s, _) = w
        .api
        .call(
            &w.admin,
            None,
            "DELETE",
            "/v1/sys/policies/acl/default",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = w
        .api
        .call(
            &w.admin,
            None,
            "PUT",
            "/v1/sys/policies/acl/root",
            Some(json!({"policy": ""})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Every login failure is audited with the check that failed, and the audit log never holds a
/// token or secret value in plaintext.
#[tokio::test]
async fn login_failures_are_audited_with_their_reason_and_secrets_are_hmaced() {
    let w = world().await;
    let dir = keep_test_support::tempdir();
    let path = dir.path().join("audit.log");
    let key = keep_server::audit::HmacKey::generate().unwrap();
    let log = keep_server::audit::AuditLog::open(&path, key, Default::default()).unwrap();
    w.api.state.set_audit(log.clone());
    w.api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/lan",
            Some(json!({
                "allowed_common_names": "agent-a", "token_bound_cidrs": "10.0.0.0/8"
            })),
        )
        .await;
    w.api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/auth/cert/certs/foreign",
            Some(json!({
                "certificate": w.pki.foreign_ca.cert_pem, "allowed_common_names": "agent-*"
            })),
        )
        .await;
    let ops = identity(&w.pki.issue(&LeafSpec::client("ops-7")).chain_der);
    let cases: Vec<(&Arc<PeerIdentity>, Value, &str)> = vec![
        (&ops, json!({"name": "agents"}), "allowed_common_names"),
        (&ops, json!({}), "no cert auth role matches"),
        (
            &w.agent_a,
            json!({"name": "nope"}),
            "no cert auth role named",
        ),
        (&w.agent_a, json!({"name": "foreign"}), "does not chain"),
        (&w.agent_a, json!({"name": "lan"}), "token_bound_cidrs"),
    ];
    for (who, body, words) in &cases {
        let (s, v) = login(&w, who, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            v["errors"][0].as_str().unwrap().contains(words),
            "response for {body}: {v}"
        );
    }
    // A successful login and a secret read, to check what the log must not contain.
    let (_, v) = login(&w, &w.agent_a, Some(json!({"name": "agents"}))).await;
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (s, _) = w
        .api
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (_, body, words) in &cases {
        let found = lines.iter().any(|l| {
            l["type"] == "response"
                && l["request"]["path"] == "auth/cert/login"
                && l["decision"]["allowed"] == false
                && l["decision"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(words))
        });
        assert!(found, "no audited refusal naming {words:?} for {body}");
    }
    assert!(
        !text.contains(&token),
        "token in plaintext in the audit log"
    );
    assert!(
        !text.contains("sk-agent-a"),
        "secret value in plaintext in the audit log"
    );
    assert!(
        text.contains(&log.hash(&token)),
        "the token's HMAC is findable"
    );
    let (s, v) = w
        .api
        .call(
            &w.admin,
            None,
            "POST",
            "/v1/sys/audit-hash/file",
            Some(json!({"input": "sk-agent-a"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let h = v["data"]["hash"].as_str().unwrap();
    assert!(
        h.starts_with("hmac-sha256:") && text.contains(h),
        "audit-hash finds the value's HMAC in the log"
    );
    // Request and response lines share the request id the client got.
    let (_, v) = w
        .api
        .call(
            &w.admin,
            None,
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    let rid = v["request_id"].as_str().unwrap().to_owned();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches(&rid).count(),
        2,
        "request and response lines carry {rid}"
    );
}
