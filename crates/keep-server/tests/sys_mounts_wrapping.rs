//! `sys/` introspection (mounts, auth methods, the UI mount preflight, init, health's cluster
//! identity, capabilities) and response wrapping, through the router in memory with
//! identities from real test certificates: each Vault behaviour, and its refusal where policy
//! says no.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::{MemStore, Store};
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

struct World {
    state: Arc<AppState>,
    store: Arc<MemStore>,
    admin: Arc<PeerIdentity>,
    agent_a: Arc<PeerIdentity>,
    agent_b: Arc<PeerIdentity>,
    /// A certificate no role matches: no token, no tokenless access.
    stranger: Arc<PeerIdentity>,
}

struct Call<'a> {
    who: &'a Arc<PeerIdentity>,
    token: Option<&'a str>,
    wrap_ttl: Option<&'a str>,
}

impl World {
    async fn new() -> World {
        let pki = TestPki::new();
        let store = Arc::new(MemStore::new());
        let state = Arc::new(AppState::unsealed(
            store.clone(),
            vec![AdminIdentity::CommonName("operator".into())],
            Limits::default(),
            "memory",
        ));
        let w = World {
            state,
            store,
            admin: identity(&pki.admin.chain_der),
            agent_a: identity(&pki.issue(&LeafSpec::agent("agent-a")).chain_der),
            agent_b: identity(&pki.issue(&LeafSpec::agent("agent-b")).chain_der),
            stranger: identity(&pki.issue(&LeafSpec::client("stranger")).chain_der),
        };
        let (s, v) = w.admin_call("PUT", "/v1/sys/policies/acl/agents", Some(json!({
            "policy": "path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\", \"create\", \"update\"] }"
        }))).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        let (s, v) = w
            .admin_call(
                "POST",
                "/v1/auth/cert/certs/agents",
                Some(json!({
                    "certificate": pki.intermediate.cert_pem,
                    "allowed_common_names": "agent-*",
                    "token_policies": "agents",
                })),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        let (s, _) = w
            .admin_call(
                "POST",
                "/v1/secret/data/agents/agent-a/x",
                Some(json!({"data": {"key": "sk-wrapped-canary"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        w
    }

    async fn send(
        &self,
        c: Call<'_>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = c.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(t) = c.wrap_ttl {
            req = req.header("X-Vault-Wrap-TTL", t);
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_default(),
            )
            .unwrap();
        req.extensions_mut().insert(Caller(c.who.clone()));
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn call(
        &self,
        who: &Arc<PeerIdentity>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let c = Call {
            who,
            token,
            wrap_ttl: None,
        };
        self.send(c, method, uri, body).await
    }

    async fn admin_call(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(&self.admin, None, method, uri, body).await
    }

    async fn login(&self, who: &Arc<PeerIdentity>) -> String {
        let (s, v) = self
            .call(who, None, "POST", "/v1/auth/cert/login", Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }
}

fn error(v: &Value) -> &str {
    v["errors"][0].as_str().unwrap_or("")
}

#[tokio::test]
async fn mounts_are_listed_in_vaults_shape_under_policy() {
    let w = World::new().await;
    let (s, v) = w.admin_call("GET", "/v1/sys/mounts", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let kv = &v["data"]["secret/"];
    assert_eq!(kv["type"], "kv");
    assert_eq!(kv["options"]["version"], "2");
    assert_eq!(kv["config"]["default_lease_ttl"], 0);
    assert_eq!(kv["config"]["max_lease_ttl"], 0);
    for field in [
        "accessor",
        "uuid",
        "description",
        "local",
        "seal_wrap",
        "external_entropy_access",
    ] {
        assert!(kv.get(field).is_some(), "{field} missing: {kv}");
    }
    assert!(kv["accessor"].as_str().unwrap().starts_with("kv_"));
    // Top-level copies, as Vault answers (hvac and node-vault read them there).
    assert_eq!(v["secret/"], *kv);
    assert_eq!(v["data"]["sys/"]["type"], "system");
    // Only what keep serves: no PKI mount on this server, no cubbyhole, no identity.
    let keys: Vec<&String> = v["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["secret/", "sys/"], "{v}");
    // Stable: the same uuid on a second call.
    let (_, again) = w.admin_call("GET", "/v1/sys/mounts", None).await;
    assert_eq!(again["data"]["secret/"]["uuid"], kv["uuid"]);

    let (s, v) = w.admin_call("GET", "/v1/sys/mounts/secret", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["type"], "kv");
    assert_eq!(v["options"]["version"], "2");
    let (s, v) = w.admin_call("GET", "/v1/sys/mounts/nope", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error(&v), "No secret engine mount at nope/");

    let (s, v) = w
        .admin_call("GET", "/v1/sys/mounts/secret/tune", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["default_lease_ttl"], 2_764_800);
    assert_eq!(v["max_lease_ttl"], 2_764_800);
    assert_eq!(v["data"]["options"]["version"], "2");

    let (s, v) = w.admin_call("GET", "/v1/sys/auth", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["cert/"]["type"], "cert");
    assert_eq!(v["token/"]["type"], "token");
    assert_eq!(
        v["data"]["token/"]["config"]["token_type"],
        "default-service"
    );
    let (s, v) = w.admin_call("GET", "/v1/sys/auth/cert", None).await;
    assert_eq!(
        (s, v["data"]["type"].clone()),
        (StatusCode::OK, json!("cert"))
    );
    let (s, v) = w.admin_call("GET", "/v1/sys/auth/token/tune", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["token_type"], "default-service");

    // A token whose policies grant nothing on sys/mounts is refused; a grant lets it in.
    let token = w.login(&w.agent_a).await;
    for uri in [
        "/v1/sys/mounts",
        "/v1/sys/mounts/secret/tune",
        "/v1/sys/auth",
    ] {
        let (s, _) = w.call(&w.agent_a, Some(&token), "GET", uri, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}");
    }
    let (s, _) = w
        .admin_call(
            "PUT",
            "/v1/sys/policies/acl/agents",
            Some(json!({"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = w
        .call(&w.agent_a, Some(&token), "GET", "/v1/sys/mounts", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["secret/"]["options"]["version"], "2");
    let (s, _) = w
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/sys/mounts/secret/tune",
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "read on sys/mounts is not read on its tune path"
    );
}

#[tokio::test]
async fn mount_changes_are_refused_because_keeps_mounts_are_fixed() {
    let w = World::new().await;
    for (method, uri, body) in [
        ("POST", "/v1/sys/mounts/kv1", Some(json!({"type": "kv"}))),
        ("DELETE", "/v1/sys/mounts/secret", None),
        (
            "POST",
            "/v1/sys/mounts/secret/tune",
            Some(json!({"max_lease_ttl": "1h"})),
        ),
        (
            "POST",
            "/v1/sys/auth/approle",
            Some(json!({"type": "approle"})),
        ),
        ("DELETE", "/v1/sys/auth/cert", None),
        (
            "POST",
            "/v1/sys/remount",
            Some(json!({"from": "secret", "to": "kv"})),
        ),
    ] {
        let (s, v) = w.admin_call(method, uri, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {uri}: {v}");
        assert!(error(&v).contains("keep's mounts are fixed"), "{v}");
        // Without a policy, the answer is the refusal by policy (as Vault checks it first).
        let token = w.login(&w.agent_a).await;
        let (s, _) = w.call(&w.agent_a, Some(&token), method, uri, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let (_, v) = w.admin_call("GET", "/v1/sys/mounts", None).await;
    assert_eq!(
        v["data"].as_object().unwrap().len(),
        2,
        "nothing was mounted: {v}"
    );
}

#[tokio::test]
async fn ui_mount_preflight_detects_kv_v2_only_for_callers_with_access_under_the_mount() {
    let w = World::new().await;
    let token = w.login(&w.agent_a).await;
    // The agent's policy grants nothing on sys/internal/ui/mounts, only under secret/.
    let (s, v) = w
        .call(
            &w.agent_a,
            Some(&token),
            "GET",
            "/v1/sys/internal/ui/mounts/secret/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["type"], "kv");
    assert_eq!(v["data"]["options"]["version"], "2");
    assert_eq!(v["data"]["path"], "secret/");
    // Nothing under sys/mounts' tune or auth/cert/: 403 with Vault's message, also for a path
    // that no mount serves (so the endpoint cannot discover mounts).
    for path in ["auth/cert/certs", "nomount/x"] {
        let (s, v) = w
            .call(
                &w.agent_a,
                Some(&token),
                "GET",
                &format!("/v1/sys/internal/ui/mounts/{path}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(
            error(&v).starts_with("preflight capability check returned 403"),
            "{v}"
        );
    }
    // No token and no role: refused.
    let (s, _) = w
        .call(
            &w.stranger,
            None,
            "GET",
            "/v1/sys/internal/ui/mounts/secret",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = w
        .admin_call("GET", "/v1/sys/internal/ui/mounts/auth/cert", None)
        .await;
    assert_eq!(
        (s, v["data"]["type"].clone()),
        (StatusCode::OK, json!("cert"))
    );
}

#[tokio::test]
async fn health_has_a_stable_cluster_identity_and_init_answers() {
    let w = World::new().await;
    let (s, v) = w.admin_call("GET", "/v1/sys/health", None).await;
    assert_eq!(s, StatusCode::OK);
    let id = v["cluster_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{v}");
    assert!(
        v["cluster_name"]
            .as_str()
            .unwrap()
            .starts_with("keep-cluster-")
    );
    // Stored with the storage: a new server state over the same store reports the same id.
    let again = AppState::unsealed(w.store.clone(), vec![], Limits::default(), "memory");
    let w2 = World {
        state: Arc::new(again),
        ..w
    };
    let (_, v) = w2.admin_call("GET", "/v1/sys/health", None).await;
    assert_eq!(v["cluster_id"], id);
    assert!(w2.store.get(keep_server::cluster::KEY).unwrap().is_some());

    let (s, v) = w2
        .call(&w2.stranger, None, "GET", "/v1/sys/init", None)
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"initialized": true})));
    let fresh = World {
        state: Arc::new(AppState::without_store(
            false,
            vec![],
            Limits::default(),
            "memory",
        )),
        ..w2
    };
    let (s, v) = fresh
        .call(&fresh.stranger, None, "GET", "/v1/sys/init", None)
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"initialized": false})));
    let (_, v) = fresh
        .call(&fresh.stranger, None, "GET", "/v1/sys/health", None)
        .await;
    assert!(v.get("cluster_id").is_none(), "unknown before init: {v}");
}

#[tokio::test]
async fn capabilities_self_and_capabilities_answer_from_the_policies() {
    let w = World::new().await;
    let token = w.login(&w.agent_a).await;
    let mine = "secret/data/agents/agent-a/x";
    let theirs = "secret/data/agents/agent-b/x";
    let (s, v) = w
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/sys/capabilities-self",
            Some(json!({"paths": [mine, theirs]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"][mine], json!(["create", "read", "update"]));
    assert_eq!(v["data"][theirs], json!(["deny"]));
    assert_eq!(v[mine], v["data"][mine], "top-level copy");
    let (s, v) = w
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/sys/capabilities-self",
            Some(json!({"path": mine})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["capabilities"], json!(["create", "read", "update"]));
    let (s, v) = w
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/sys/capabilities-self",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, error(&v)),
        (StatusCode::BAD_REQUEST, "paths must be supplied")
    );
    // sys/capabilities (another token's) needs `update` on sys/capabilities: the agent's
    // default policy does not grant it.
    let (s, _) = w
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/sys/capabilities",
            Some(json!({"token": token, "paths": [mine]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = w
        .admin_call(
            "POST",
            "/v1/sys/capabilities",
            Some(json!({"token": token, "paths": ["auth/token/lookup-self", mine]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["auth/token/lookup-self"], json!(["read"]));
    // Templated on agent-a's certificate, which the admin's connection does not present: the
    // rule cannot be rendered, and the answer says so.
    assert_eq!(v["data"][mine], json!(["deny"]));
    assert!(
        v["warnings"][0].as_str().unwrap().contains("templated"),
        "{v}"
    );
    // No token, no role: refused.
    let (s, _) = w
        .call(
            &w.stranger,
            None,
            "POST",
            "/v1/sys/capabilities-self",
            Some(json!({"paths": [mine]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

fn wrap_token(v: &Value) -> String {
    v["wrap_info"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_wrapped_kv_read_is_unwrapped_once_by_anyone_holding_the_token() {
    let w = World::new().await;
    let dir = keep_test_support::tempdir();
    let path = dir.path().join("audit.log");
    let key = keep_server::audit::HmacKey::generate().unwrap();
    let log = keep_server::audit::AuditLog::open(&path, key, Default::default()).unwrap();
    w.state.set_audit(log.clone());

    let token = w.login(&w.agent_a).await;
    let c = Call {
        who: &w.agent_a,
        token: Some(&token),
        wrap_ttl: Some("5m"),
    };
    let (s, v) = w
        .send(c, "GET", "/v1/secret/data/agents/agent-a/x", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        !v.to_string().contains("sk-wrapped-canary"),
        "the secret came back unwrapped: {v}"
    );
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["wrap_info"]["ttl"], 300);
    assert_eq!(
        v["wrap_info"]["creation_path"],
        "secret/data/agents/agent-a/x"
    );
    assert!(
        v["wrap_info"]["creation_time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(!v["wrap_info"]["accessor"].as_str().unwrap().is_empty());
    let wt = wrap_token(&v);

    // Lookup (no policy needed, as in Vault).
    let (s, v) = w
        .call(
            &w.stranger,
            None,
            "POST",
            "/v1/sys/wrapping/lookup",
            Some(json!({"token": wt})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["creation_ttl"], 300);
    assert_eq!(v["data"]["creation_path"], "secret/data/agents/agent-a/x");

    // agent-b, whose own policies do not reach agent-a's path, unwraps with the wrapping token
    // as its client token: the wrapping token is the authority.
    let (s, v) = w
        .call(
            &w.agent_b,
            Some(&wt),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["data"]["key"], "sk-wrapped-canary");
    // Once only.
    let (s, v) = w
        .call(
            &w.agent_b,
            Some(&wt),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
        )
        .await;
    assert_eq!(
        (s, error(&v)),
        (
            StatusCode::BAD_REQUEST,
            "wrapping token is not valid or does not exist"
        )
    );
    let (s, _) = w
        .call(
            &w.stranger,
            None,
            "POST",
            "/v1/sys/wrapping/lookup",
            Some(json!({"token": wt})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The audit log never holds the wrapping token or the secret in clear; the token's HMAC is
    // there (so an investigator can find its use).
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&wt),
        "wrapping token in clear in the audit log"
    );
    assert!(
        !text.contains("sk-wrapped-canary"),
        "secret in clear in the audit log"
    );
    assert!(
        text.contains(&log.hash(&wt)),
        "the wrapping token's HMAC is not in the audit log"
    );
    // Nor the storage's key names.
    for k in w.store.list("sys/wrapping/token/").unwrap() {
        assert!(!k.contains(&wt[4..]));
    }
}

#[tokio::test]
async fn wrap_rewrap_and_third_party_unwrap_under_policy() {
    let w = World::new().await;
    let token = w.login(&w.agent_a).await;
    // sys/wrapping/wrap: the default policy grants it; it needs the wrap header.
    let (s, v) = w
        .call(
            &w.agent_a,
            Some(&token),
            "POST",
            "/v1/sys/wrapping/wrap",
            Some(json!({"zero": "sk-secret-zero"})),
        )
        .await;
    assert_eq!(
        (s, error(&v)),
        (
            StatusCode::BAD_REQUEST,
            "endpoint requires response wrapping to be used"
        )
    );
    let c = Call {
        who: &w.agent_a,
        token: Some(&token),
        wrap_ttl: Some("60"),
    };
    let (s, v) = w
        .send(
            c,
            "POST",
            "/v1/sys/wrapping/wrap",
            Some(json!({"zero": "sk-secret-zero"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["wrap_info"]["creation_path"], "sys/wrapping/wrap");
    let first = wrap_token(&v);
    // Rewrap: a new token for the same data; the old one is spent.
    let (s, v) = w
        .call(
            &w.agent_b,
            Some(&first),
            "POST",
            "/v1/sys/wrapping/rewrap",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["wrap_info"]["ttl"], 60);
    assert_eq!(v["wrap_info"]["creation_path"], "sys/wrapping/wrap");
    let second = wrap_token(&v);
    assert_ne!(first, second);
    let (s, _) = w
        .call(
            &w.agent_b,
            Some(&first),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A third party (wrapping token in the body) needs `update` on sys/wrapping/unwrap: a
    // caller with no token and no role is refused, and the token stays usable.
    let (s, _) = w
        .call(
            &w.stranger,
            None,
            "POST",
            "/v1/sys/wrapping/unwrap",
            Some(json!({"token": second})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let token_b = w.login(&w.agent_b).await;
    let (s, v) = w
        .call(
            &w.agent_b,
            Some(&token_b),
            "POST",
            "/v1/sys/wrapping/unwrap",
            Some(json!({"token": second})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["zero"], "sk-secret-zero");
    // wrap by a caller without a policy: refused.
    let c = Call {
        who: &w.stranger,
        token: None,
        wrap_ttl: Some("60"),
    };
    let (s, _) = w
        .send(c, "POST", "/v1/sys/wrapping/wrap", Some(json!({"a": "b"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A refused request is not wrapped and stores nothing.
    let c = Call {
        who: &w.agent_a,
        token: Some(&token),
        wrap_ttl: Some("60"),
    };
    let (s, v) = w
        .send(c, "GET", "/v1/secret/data/agents/agent-b/x", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(w.store.list("sys/wrapping/token/").unwrap().is_empty());
}

#[tokio::test]
async fn wrap_ttls_out_of_bounds_are_refused_and_expired_tokens_are_removed() {
    let w = World::new().await;
    for (ttl, words) in [
        ("bogus", "invalid X-Vault-Wrap-TTL"),
        ("-5s", "requested wrap ttl cannot be negative"),
        ("800h", "over the maximum"),
    ] {
        let c = Call {
            who: &w.admin,
            token: None,
            wrap_ttl: Some(ttl),
        };
        let (s, v) = w
            .send(c, "GET", "/v1/secret/data/agents/agent-a/x", None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{ttl}: {v}");
        assert!(error(&v).contains(words), "{ttl}: {v}");
        assert!(!v.to_string().contains("sk-wrapped-canary"));
    }
    assert!(w.store.list("sys/wrapping/token/").unwrap().is_empty());
    // An expired wrapping token is refused and removed from storage.
    let (wt, _) = keep_server::wrapping::create(
        &*w.store,
        keep_server::wrapping::Wrapped {
            accessor: String::new(),
            created: time::OffsetDateTime::now_utc().unix_timestamp() - 120,
            ttl: 60,
            creation_path: "sys/wrapping/wrap".into(),
            wrapped_accessor: String::new(),
            response: r#"{"data":{"a":"b"}}"#.into(),
        },
    )
    .unwrap();
    assert_eq!(w.store.list("sys/wrapping/token/").unwrap().len(), 1);
    let (s, v) = w
        .call(
            &w.agent_b,
            Some(&wt),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None,
        )
        .await;
    assert_eq!(
        (s, error(&v)),
        (
            StatusCode::BAD_REQUEST,
            "wrapping token is not valid or does not exist"
        )
    );
    assert!(w.store.list("sys/wrapping/token/").unwrap().is_empty());
}

#[tokio::test]
async fn a_wrapped_login_names_the_token_and_concurrent_unwraps_yield_one_answer() {
    let w = World::new().await;
    let c = Call {
        who: &w.agent_a,
        token: None,
        wrap_ttl: Some("2m"),
    };
    let (s, v) = w
        .send(c, "POST", "/v1/auth/cert/login", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["auth"], Value::Null, "the token came back unwrapped: {v}");
    let wrapped_accessor = v["wrap_info"]["wrapped_accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!wrapped_accessor.is_empty(), "{v}");
    let wt = wrap_token(&v);
    // Two unwraps at once: exactly one gets the login.
    let (a, b) = tokio::join!(
        w.call(
            &w.agent_a,
            Some(&wt),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None
        ),
        w.call(
            &w.agent_a,
            Some(&wt),
            "POST",
            "/v1/sys/wrapping/unwrap",
            None
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::BAD_REQUEST],
        "{a:?} {b:?}"
    );
    let login = if a.0 == StatusCode::OK { a.1 } else { b.1 };
    assert_eq!(login["auth"]["accessor"], wrapped_accessor.as_str());
    // The unwrapped token is still bound to agent-a's certificate.
    let token = login["auth"]["client_token"].as_str().unwrap();
    let (s, _) = w
        .call(
            &w.agent_a,
            Some(token),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = w
        .call(
            &w.agent_b,
            Some(token),
            "GET",
            "/v1/secret/data/agents/agent-a/x",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Unwrap with no token at all is a request without a client token (403, as in Vault);
    // lookup without one says what is missing.
    let (s, _) = w
        .call(&w.agent_a, None, "POST", "/v1/sys/wrapping/unwrap", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = w
        .call(&w.agent_a, None, "POST", "/v1/sys/wrapping/lookup", None)
        .await;
    assert_eq!(
        (s, error(&v)),
        (StatusCode::BAD_REQUEST, "missing \"token\" value in input")
    );
}
