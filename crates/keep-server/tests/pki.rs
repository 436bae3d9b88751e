//! The PKI mount (`pki/`): every endpoint through the router in memory (Vault's shapes, the
//! role checks as paired allow/deny cases, nothing stored on bad input, private keys never
//! stored), CRLs that OpenSSL verifies, renewal by mTLS, and one real listener where a revoked
//! certificate loses its open connection, its next handshake, its token and its renewal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keep_pki::Source;
use keep_server::api::router;
use keep_server::config::{AdminIdentity, Limits};
use keep_server::pki::{NameRequest, Pki, PkiError};
use keep_server::state::{AppState, Caller, PeerAddr};
use keep_store::{MemStore, Store};
use keep_test_support::{Eku, KeyAlg, TestPki, csr, csr_with_key_der};
use keep_tls::identity::{PeerIdentity, from_verified_chain};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

fn identity(chain_der: &[Vec<u8>]) -> Arc<PeerIdentity> {
    let chain: Vec<CertificateDer<'static>> = chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    Arc::new(from_verified_chain(&chain).unwrap())
}

fn der_of(pem: &str) -> Vec<u8> {
    keep_pki::pem::read_certificates(pem.as_bytes(), &Source::Other("test".into())).unwrap()[0]
        .der
        .to_vec()
}

/// The issuer a TestPki's intermediate makes, with its chain to the root.
fn pki_engine(pki: &TestPki) -> Pki {
    let key = keep_pki::key::load_private_key(
        pki.intermediate.key_pem.as_bytes(),
        &Source::Other("intermediate key".into()),
        None,
    )
    .unwrap();
    Pki::new(
        format!("{}{}", pki.intermediate.cert_pem, pki.root.cert_pem).as_bytes(),
        &Source::Other("intermediate".into()),
        key,
        std::time::Duration::from_secs(24 * 3600),
    )
    .unwrap()
}

struct Api {
    state: Arc<AppState>,
    store: Arc<MemStore>,
    pki: TestPki,
    admin: Arc<PeerIdentity>,
    /// Security events (alerts) the server raised.
    events: Arc<keep_tls::events::MemorySink>,
}

impl Api {
    fn new() -> Api {
        Self::build(true)
    }

    fn build(with_pki: bool) -> Api {
        let pki = TestPki::new();
        let store = Arc::new(MemStore::new());
        let mut state = AppState::unsealed(
            store.clone(),
            vec![AdminIdentity::CommonName("operator".into())],
            Limits::default(),
            "memory",
        );
        if with_pki {
            state.pki = Some(Arc::new(pki_engine(&pki)));
        }
        let events = Arc::new(keep_tls::events::MemorySink::new());
        state.alerts =
            keep_server::alerts::Alerts::new(&Default::default(), events.clone()).unwrap();
        let admin = identity(&pki.admin.chain_der);
        Api {
            state: Arc::new(state),
            store,
            pki,
            admin,
            events,
        }
    }

    fn engine(&self) -> &Pki {
        self.state.pki.as_deref().unwrap()
    }

    async fn raw(
        &self,
        who: Option<&Arc<PeerIdentity>>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, String, Vec<u8>) {
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
        if let Some(w) = who {
            req.extensions_mut().insert(Caller(w.clone()));
        }
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, bytes.to_vec())
    }

    async fn call_as(
        &self,
        who: &Arc<PeerIdentity>,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, bytes) = self.raw(Some(who), token, method, uri, body).await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (s, v)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let admin = self.admin.clone();
        self.call_as(&admin, None, method, uri, body).await
    }

    async fn role(&self, name: &str, body: Value) {
        let (s, v) = self
            .call("POST", &format!("/v1/pki/roles/{name}"), Some(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    fn cert_count(&self) -> usize {
        self.store.list("pki/certs/").unwrap().len()
    }

    /// Every stored value, as lossy text, with its key.
    fn everything_stored(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(store: &MemStore, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
            for k in store.list(prefix).unwrap() {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    walk(store, &full, out);
                } else {
                    out.push((full.clone(), store.get(&full).unwrap().unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.store, "", &mut out);
        out
    }
}

/// The chain (leaf, intermediate) of an issue/sign answer, as DER.
fn chain_of(pki: &TestPki, data: &Value) -> Vec<Vec<u8>> {
    vec![
        der_of(data["certificate"].as_str().unwrap()),
        pki.intermediate.der.clone(),
    ]
}

fn x509(der: &[u8]) -> keep_pki::inspect::CertInfo {
    keep_pki::inspect::inspect(der).unwrap()
}

fn agents_role() -> Value {
    json!({
        "allowed_domains": "claw.internal",
        "allow_subdomains": true,
        "allowed_uri_sans": "spiffe://claw.internal/agent/*",
        "server_flag": false,
        "ttl": "1h",
        "max_ttl": "2h",
    })
}

#[tokio::test]
async fn without_a_pki_section_the_mount_is_an_unknown_route() {
    let api = Api::build(false);
    for path in ["ca/pem", "roles/agents", "renew", "sign/agents"] {
        let (s, v) = api.call("GET", &format!("/v1/pki/{path}"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            v,
            json!({"errors": [format!("no handler for route \"pki/{path}\"")]})
        );
    }
}

#[tokio::test]
async fn roles_round_trip_in_vaults_shapes_and_bad_input_stores_nothing() {
    let api = Api::new();
    let (s, _) = api.call("LIST", "/v1/pki/roles", None).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an empty list is 404, as in Vault"
    );
    api.role(
        "agents",
        json!({"allowed_domains": "claw.internal, example.org", "allow_subdomains": "true", "ttl": "1h", "max_ttl": 7200, "server_flag": false}),
    )
    .await;
    let (s, v) = api.call("GET", "/v1/pki/roles/agents", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(
        d["allowed_domains"],
        json!(["claw.internal", "example.org"])
    );
    assert_eq!(d["allow_subdomains"], true);
    assert_eq!(d["ttl"], 3600);
    assert_eq!(d["max_ttl"], 7200);
    assert_eq!(d["server_flag"], false);
    assert_eq!(d["client_flag"], true);
    assert_eq!(d["allow_localhost"], true, "Vault's default");
    assert_eq!(d["allow_ip_sans"], true, "Vault's default");
    assert_eq!(d["key_type"], "ec");
    // vaultrs's ReadRoleResponse needs every one of these.
    for f in [
        "allow_glob_domains",
        "allow_token_displayname",
        "allowed_other_sans",
        "basic_constraints_valid_for_non_ca",
        "code_signing_flag",
        "country",
        "enforce_hostnames",
        "ext_key_usage_oids",
        "generate_lease",
        "key_usage",
        "no_store",
        "not_before_duration",
        "policy_identifiers",
        "require_cn",
        "signature_bits",
        "use_csr_common_name",
        "use_csr_sans",
        "use_pss",
    ] {
        assert!(d.get(f).is_some(), "role answer lacks {f}");
    }
    // An update changes only what it names.
    api.role("agents", json!({"ttl": "30m"})).await;
    let (_, v) = api.call("GET", "/v1/pki/roles/agents", None).await;
    assert_eq!(v["data"]["ttl"], 1800);
    assert_eq!(v["data"]["server_flag"], false);
    let (s, v) = api.call("LIST", "/v1/pki/roles", None).await;
    assert_eq!(
        (s, &v["data"]["keys"]),
        (StatusCode::OK, &json!(["agents"]))
    );

    let before = api.everything_stored();
    for (body, says) in [
        (json!({"key_type": "dsa"}), "key_type"),
        (json!({"ttl": "3h"}), "must not exceed max_ttl"),
        (
            json!({"allowed_domanis": "x"}),
            "unknown field \"allowed_domanis\"",
        ),
        (
            json!({"organization": "Claw"}),
            "organization is not supported",
        ),
        (
            json!({"client_flag": false}),
            "at least one of server_flag and client_flag",
        ),
    ] {
        let (s, v) = api.call("POST", "/v1/pki/roles/agents", Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["errors"][0].as_str().unwrap().contains(says), "{v}");
    }
    let (s, _) = api
        .call("POST", "/v1/pki/roles/bad%2Fname", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.everything_stored(),
        before,
        "refused writes stored something"
    );

    // Policies govern roles like any other path: an agent with no policy is refused.
    let agent = identity(&api.pki.client.chain_der);
    let (s, _) = api
        .call_as(&agent, None, "GET", "/v1/pki/roles/agents", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _) = api.call("DELETE", "/v1/pki/roles/agents", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.call("GET", "/v1/pki/roles/agents", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sign_issues_what_the_role_allows_in_vaults_shape() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let req = csr(
        "agent-07.claw.internal",
        &["spiffe://claw.internal/agent/agent-07"],
        &[],
        KeyAlg::EcdsaP256,
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/sign/agents",
            Some(json!({"csr": req.pem, "alt_names": "a7.claw.internal", "ip_sans": "10.0.0.7"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    let leaf = der_of(d["certificate"].as_str().unwrap());
    let info = x509(&leaf);
    assert_eq!(info.common_name.as_deref(), Some("agent-07.claw.internal"));
    assert_eq!(
        info.sans.dns,
        vec!["agent-07.claw.internal", "a7.claw.internal"],
        "the common name is a SAN too, as in Vault"
    );
    assert_eq!(info.sans.ip, vec!["10.0.0.7"]);
    assert_eq!(info.sans.uri, vec!["spiffe://claw.internal/agent/agent-07"]);
    assert_eq!(
        info.extended_key_usage,
        vec!["clientAuth"],
        "server_flag is false"
    );
    assert_eq!(
        d["serial_number"], info.serial,
        "colon hex, as Vault prints it"
    );
    assert!(info.serial.contains(':'));
    assert_eq!(
        info.lifetime_seconds,
        3600 + 30,
        "role ttl plus the 30 s backdate"
    );
    let (_, x) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert_eq!(d["expiration"], x.validity().not_after.timestamp());
    assert_eq!(d["issuing_ca"], api.pki.intermediate.cert_pem.as_str());
    assert_eq!(
        d["ca_chain"],
        json!([api.pki.intermediate.cert_pem, api.pki.root.cert_pem])
    );
    // The public key is the CSR's: the private key never left the client.
    let key = keep_pki::key::load_private_key(
        req.key_pem.as_bytes(),
        &Source::Other("csr key".into()),
        None,
    )
    .unwrap();
    assert!(key.matches_certificate(&leaf));
    // It verifies to the root as a client certificate.
    keep_pki::verify::verify(
        &leaf,
        &keep_pki::verify::VerifyOptions {
            roots: vec![api.pki.root.der.clone()],
            intermediates: vec![api.pki.intermediate.der.clone()],
            host: None,
            purpose: Some(keep_pki::Purpose::Client),
            crls: vec![],
            now: OffsetDateTime::now_utc(),
        },
    )
    .unwrap();

    // A TTL beyond max_ttl is capped, with a warning.
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/sign/agents",
            Some(json!({"csr": csr("agent-08.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem, "ttl": "10h"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["warnings"][0].as_str().unwrap().contains("max_ttl"),
        "{v}"
    );
    assert_eq!(
        x509(&der_of(v["data"]["certificate"].as_str().unwrap())).lifetime_seconds,
        7200 + 30
    );
}

#[tokio::test]
async fn requests_outside_the_role_are_refused_with_the_name_and_the_field() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    api.role(
        "bare",
        json!({"allowed_domains": "claw.internal", "allow_bare_domains": true, "allow_ip_sans": false, "server_flag": false}),
    )
    .await;
    let p256 = KeyAlg::EcdsaP256;
    let mut tampered = csr("agent-09.claw.internal", &[], &[], p256).pem;
    // Flip one base64 character inside the signature-carrying body.
    let at = tampered.len() - 40;
    let c = tampered.as_bytes()[at];
    tampered.replace_range(at..=at, if c == b'A' { "B" } else { "A" });
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "agents",
            json!({"csr": csr("evil.example.com", &[], &[], p256).pem}),
            vec!["\"evil.example.com\"", "allowed_domains"],
        ),
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &["db.example.org"], &[], p256).pem}),
            vec!["\"db.example.org\"", "allowed_domains"],
        ),
        (
            "bare",
            json!({"csr": csr("agent-09.claw.internal", &[], &[], p256).pem}),
            vec!["\"agent-09.claw.internal\"", "allow_subdomains is false"],
        ),
        (
            "bare",
            json!({"csr": csr("claw.internal", &[], &[], p256).pem, "ip_sans": "10.1.2.3"}),
            vec!["\"10.1.2.3\"", "allow_ip_sans is false"],
        ),
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &["spiffe://claw.internal/admin"], &[], p256).pem}),
            vec!["spiffe://claw.internal/admin", "allowed_uri_sans"],
        ),
        (
            "bare",
            json!({"csr": csr("claw.internal", &["spiffe://claw.internal/agent/x"], &[], p256).pem}),
            vec!["allowed_uri_sans is empty"],
        ),
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &[], &[Eku::Server], p256).pem}),
            vec!["serverAuth", "server_flag is false"],
        ),
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &[], &[], KeyAlg::Rsa2048).pem}),
            vec!["RSA 2048", "key_type ec"],
        ),
        ("agents", json!({"csr": tampered}), vec!["csr"]),
        (
            "agents",
            json!({"common_name": "agent-09.claw.internal"}),
            vec!["missing csr"],
        ),
        (
            "nosuchrole",
            json!({"csr": csr("agent-09.claw.internal", &[], &[], p256).pem}),
            vec!["unknown role: nosuchrole"],
        ),
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &[], &[], p256).pem, "comon_name": "x"}),
            vec!["unknown field \"comon_name\""],
        ),
    ];
    let before = api.everything_stored();
    for (role, body, says) in cases {
        let (s, v) = api
            .call("POST", &format!("/v1/pki/sign/{role}"), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{role} {body}: {v}");
        let msg = v["errors"][0].as_str().unwrap();
        for want in says {
            assert!(msg.contains(want), "want {want:?} in {msg:?}");
        }
    }
    // issue runs the same checks before generating anything.
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "agent-09.claw.internal", "alt_names": "x.example.org"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("\"x.example.org\"")
    );
    assert_eq!(
        api.everything_stored(),
        before,
        "a refused request stored something"
    );

    // The paired allow cases of the same roles pass.
    for (role, body) in [
        (
            "agents",
            json!({"csr": csr("agent-09.claw.internal", &["spiffe://claw.internal/agent/agent-09"], &[Eku::Client], p256).pem}),
        ),
        (
            "bare",
            json!({"csr": csr("claw.internal", &[], &[], p256).pem}),
        ),
    ] {
        let (s, v) = api
            .call("POST", &format!("/v1/pki/sign/{role}"), Some(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{role}: {v}");
    }
}

#[tokio::test]
async fn issue_returns_the_private_key_once_and_never_stores_it() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "agent-10.claw.internal", "uri_sans": ["spiffe://claw.internal/agent/agent-10"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["private_key_type"], "ec");
    let key_pem = d["private_key"].as_str().unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN\x20PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    let key = keep_pki::key::load_private_key(key_pem.as_bytes(), &Source::Other("k".into()), None)
        .unwrap();
    let leaf = der_of(d["certificate"].as_str().unwrap());
    assert!(key.matches_certificate(&leaf));
    for f in ["issuing_ca", "ca_chain", "serial_number", "expiration"] {
        assert!(d.get(f).is_some(), "issue answer lacks {f}");
    }
    // Nothing stored holds the key, in PEM, base64 body or DER.
    let body_line = key_pem.lines().nth(1).unwrap();
    let der = key.pkcs8_der();
    for (k, v) in api.everything_stored() {
        let text = String::from_utf8_lossy(&v);
        assert!(!text.contains(body_line), "key material stored at {k}");
        assert!(
            !v.windows(der.len()).any(|w| w == der),
            "key DER stored at {k}"
        );
    }
    // Only the certificate was recorded.
    assert_eq!(api.cert_count(), 1);
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"csr": "x", "common_name": "a.claw.internal"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn lifetimes_never_outlive_the_issuer() {
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let short = pki.issue_intermediate(
        "Short-lived Intermediate",
        now - time::Duration::hours(1),
        now + time::Duration::hours(2),
    );
    let key =
        keep_pki::key::load_private_key(short.key_pem.as_bytes(), &Source::Other("k".into()), None)
            .unwrap();
    let engine = Pki::new(
        short.cert_pem.as_bytes(),
        &Source::Other("short".into()),
        key,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let store = MemStore::new();
    let mut role = keep_server::pki::role::PkiRole::default();
    role.apply(
        json!({"allowed_domains": "claw.internal", "allow_subdomains": true, "ttl": "24h"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    engine.put_role(&store, "agents", &role).unwrap();
    let issued = engine
        .sign(
            &store,
            "agents",
            &csr("a.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem,
            &NameRequest::default(),
            now,
        )
        .unwrap();
    let (_, issuer) = x509_parser::parse_x509_certificate(&short.der).unwrap();
    assert_eq!(
        issued.record.not_after,
        issuer.validity().not_after.timestamp()
    );
    assert!(
        issued.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        issued.warnings
    );
}

#[tokio::test]
async fn ca_and_crl_reads_are_open_and_everything_else_needs_a_policy() {
    let api = Api::new();
    // An agent with no token, no role and no policy.
    let nobody = identity(&api.pki.client.chain_der);
    let (s, ct, body) = api
        .raw(Some(&nobody), None, "GET", "/v1/pki/ca/pem", None)
        .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/pem-certificate-chain")
    );
    assert_eq!(
        String::from_utf8(body).unwrap(),
        api.pki.intermediate.cert_pem
    );
    let (s, ct, body) = api
        .raw(Some(&nobody), None, "GET", "/v1/pki/ca", None)
        .await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/pkix-cert"));
    assert_eq!(body, api.pki.intermediate.der);
    let (s, _, body) = api
        .raw(Some(&nobody), None, "GET", "/v1/pki/ca_chain", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{}{}", api.pki.intermediate.cert_pem, api.pki.root.cert_pem)
    );
    let (s, v) = api
        .call_as(&nobody, None, "GET", "/v1/pki/cert/ca_chain", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["data"]["ca_chain"][0],
        api.pki.intermediate.cert_pem.as_str()
    );
    let (s, ct, body) = api
        .raw(Some(&nobody), None, "GET", "/v1/pki/crl", None)
        .await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/pkix-crl"));
    assert!(x509_parser::parse_x509_crl(&body).is_ok());
    let (s, _, body) = api
        .raw(Some(&nobody), None, "GET", "/v1/pki/crl/pem", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("-----BEGIN X509 CRL-----")
    );

    api.role("agents", agents_role()).await;
    for (method, path, body) in [
        ("LIST", "/v1/pki/certs", None),
        ("LIST", "/v1/pki/roles", None),
        (
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "agent-01.claw.internal"})),
        ),
        (
            "POST",
            "/v1/pki/sign/agents",
            Some(json!({"csr": csr("agent-01.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem})),
        ),
        (
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": "01:02"})),
        ),
        (
            "POST",
            "/v1/pki/tidy",
            Some(json!({"tidy_cert_store": true})),
        ),
        ("GET", "/v1/pki/cert/01:02", None),
        (
            "POST",
            "/v1/pki/roles/agents",
            Some(json!({"allow_any_name": true})),
        ),
    ] {
        let (s, v) = api.call_as(&nobody, None, method, path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
    }
    assert_eq!(api.cert_count(), 0);

    // A policy grants exactly what it says (Vault's capabilities).
    let (s, _) = api
        .call(
            "PUT",
            "/v1/sys/policies/acl/issuer",
            Some(json!({"policy": "path \"pki/issue/agents\" { capabilities = [\"update\"] }"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .call(
            "POST",
            "/v1/auth/cert/certs/ops",
            Some(json!({"certificate": api.pki.intermediate.cert_pem, "allowed_common_names": "agent-01", "token_policies": "issuer", "allow_tokenless": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api
        .call_as(
            &nobody,
            None,
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "agent-01.claw.internal"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .call_as(
            &nobody,
            None,
            "POST",
            "/v1/pki/sign/agents",
            Some(json!({"csr": csr("agent-01.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

fn openssl() -> Option<()> {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(());
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "openssl is required (KEEP_REQUIRE_PEERS is set)"
    );
    eprintln!("SKIP: openssl not found; the CRL is not checked with OpenSSL");
    None
}

#[tokio::test]
async fn revoke_publishes_a_crl_listing_the_serial_that_openssl_verifies() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let mut serials = Vec::new();
    for n in ["a1", "a2"] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/pki/issue/agents",
                Some(json!({"common_name": format!("{n}.claw.internal")})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        serials.push(v["data"]["serial_number"].as_str().unwrap().to_owned());
    }
    let (_, _, crl0) = api
        .raw(Some(&api.admin), None, "GET", "/v1/pki/crl", None)
        .await;
    let n0 = x509_parser::parse_x509_crl(&crl0)
        .unwrap()
        .1
        .crl_number()
        .unwrap()
        .clone();

    // Revoke by serial, with hyphens as some clients write it.
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": serials[0].replace(':', "-")})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = v["data"]["revocation_time"].as_i64().unwrap();
    assert!((t - OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    assert!(
        v["data"]["revocation_time_rfc3339"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // Again: the same time, nothing new.
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": serials[0]})),
        )
        .await;
    assert_eq!(
        (s, v["data"]["revocation_time"].as_i64()),
        (StatusCode::OK, Some(t))
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": "7f:00:00:01"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["errors"][0].as_str().unwrap().contains("not found"));
    let (s, _) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": "zz"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (_, _, crl_der) = api
        .raw(Some(&api.admin), None, "GET", "/v1/pki/crl", None)
        .await;
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| keep_pki::inspect::format_serial(r.raw_serial()))
        .collect();
    assert_eq!(listed, vec![serials[0].clone()]);
    assert!(crl.crl_number().unwrap() > &n0, "the CRL number increases");
    let next = crl.next_update().unwrap().timestamp() - crl.last_update().timestamp();
    assert_eq!(next, 24 * 3600, "nextUpdate is crl_next_update ahead");
    // The background task publishes the next one at half of crl_next_update.
    let this = OffsetDateTime::from_unix_timestamp(crl.last_update().timestamp()).unwrap();
    assert!(!api.engine().crl_due(this + time::Duration::hours(11)));
    assert!(api.engine().crl_due(this + time::Duration::hours(12)));

    let (_, v) = api
        .call("GET", &format!("/v1/pki/cert/{}", serials[0]), None)
        .await;
    assert_eq!(v["data"]["revoked"], true);
    assert_eq!(v["data"]["revocation_time"], t);
    let (_, v) = api
        .call("GET", &format!("/v1/pki/cert/{}", serials[1]), None)
        .await;
    assert_eq!(
        (
            v["data"]["revoked"].clone(),
            v["data"]["revocation_time"].clone()
        ),
        (json!(false), json!(0))
    );

    if openssl().is_some() {
        let dir = keep_test_support::tempdir();
        let (_, _, pem) = api
            .raw(Some(&api.admin), None, "GET", "/v1/pki/crl/pem", None)
            .await;
        let crl_path = dir.path().join("crl.pem");
        std::fs::write(&crl_path, pem).unwrap();
        let chain = dir.path().join("chain.pem");
        let (_, _, chain_pem) = api
            .raw(Some(&api.admin), None, "GET", "/v1/pki/ca_chain", None)
            .await;
        std::fs::write(&chain, chain_pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["crl", "-noout", "-verify", "-CAfile"])
            .arg(&chain)
            .arg("-in")
            .arg(&crl_path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("verify OK"), "{text}");
        let out = std::process::Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(&crl_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_uppercase();
        assert!(
            text.contains(&serials[0].replace(':', "").to_ascii_uppercase()),
            "{text}"
        );
    }
}

#[tokio::test]
async fn inventory_lists_and_reads_certificates_with_keeps_extras() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let (_, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "a3.claw.internal"})),
        )
        .await;
    let serial = v["data"]["serial_number"].as_str().unwrap().to_owned();
    let (s, v) = api.call("LIST", "/v1/pki/certs", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["keys"], json!([serial]));
    let (s, v) = api.call("GET", "/v1/pki/certs?list=true", None).await;
    assert_eq!(
        (s, v["data"]["keys"].clone()),
        (StatusCode::OK, json!([serial]))
    );
    for spelling in [
        serial.clone(),
        serial.replace(':', "-"),
        serial.replace(':', "").to_ascii_uppercase(),
    ] {
        let (s, v) = api
            .call("GET", &format!("/v1/pki/cert/{spelling}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{spelling}: {v}");
        let d = &v["data"];
        assert_eq!(d["role"], "agents");
        assert_eq!(d["subject"], "CN=a3.claw.internal");
        assert_eq!(d["revoked"], false);
        assert!(d["not_after"].as_str().unwrap().ends_with('Z'));
        assert!(
            d["certificate"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
    let (s, _) = api.call("GET", "/v1/pki/cert/7f:01", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tidy_drops_long_expired_certificates_from_inventory_and_crl() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let engine = api.engine();
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(10);
    let old = engine
        .sign(
            &*api.store,
            "agents",
            &csr("old.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem,
            &NameRequest::default(),
            long_ago,
        )
        .unwrap();
    let old_revoked = engine
        .sign(
            &*api.store,
            "agents",
            &csr("gone.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem,
            &NameRequest::default(),
            long_ago,
        )
        .unwrap();
    engine
        .revoke(
            &*api.store,
            &old_revoked.record.serial_number,
            long_ago + time::Duration::minutes(5),
        )
        .unwrap();
    let (_, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": "fresh.claw.internal"})),
        )
        .await;
    let fresh = v["data"]["serial_number"].as_str().unwrap().to_owned();
    let (_, v) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": fresh})),
        )
        .await;
    assert!(v["data"]["revocation_time"].as_i64().is_some());

    let (s, v) = api.call("POST", "/v1/pki/tidy", Some(json!({}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // A buffer longer than their expiry keeps them.
    let (s, v) = api
        .call("POST", "/v1/pki/tidy", Some(json!({"tidy_cert_store": true, "tidy_revoked_certs": true, "safety_buffer": "720h"})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["data"]["cert_store_deleted_count"], 0);
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/tidy",
            Some(json!({"tidy_cert_store": true, "tidy_revoked_certs": true})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["data"]["cert_store_deleted_count"], 2);
    assert_eq!(v["data"]["revoked_cert_deleted_count"], 1);
    assert!(v["warnings"][0].as_str().is_some());
    let (_, v) = api.call("LIST", "/v1/pki/certs", None).await;
    assert_eq!(v["data"]["keys"], json!([fresh]));
    let (_, _, crl_der) = api
        .raw(Some(&api.admin), None, "GET", "/v1/pki/crl", None)
        .await;
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| keep_pki::inspect::format_serial(r.raw_serial()))
        .collect();
    assert_eq!(
        listed,
        vec![fresh.clone()],
        "the long-expired revoked cert left the CRL"
    );
    assert!(!listed.contains(&old.record.serial_number));
    // Tidied certificates leave the metrics too.
    assert!(engine.hidden_series().contains(&old.record.serial_number));
}

/// Issues a client certificate for `cn` through pki/issue and returns (chain DER, answer).
async fn issue_agent(api: &Api, cn: &str) -> (Vec<Vec<u8>>, Value) {
    let (s, v) = api
        .call(
            "POST",
            "/v1/pki/issue/agents",
            Some(json!({"common_name": cn, "uri_sans": format!("spiffe://claw.internal/agent/{}", cn.split('.').next().unwrap()), "ip_sans": "10.0.0.9"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (chain_of(&api.pki, &v["data"]), v["data"].clone())
}

#[tokio::test]
async fn renewal_gives_the_same_identity_a_new_key_and_the_roles_current_ttl() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let (chain, first) = issue_agent(&api, "agent-11.claw.internal").await;
    let me = identity(&chain);
    let old = x509(&chain[0]);
    // The role's TTL changes after issuance: renewal uses the current one.
    api.role("agents", json!({"ttl": "90m"})).await;
    let fresh = csr("agent-11.claw.internal", &[], &[], KeyAlg::EcdsaP256);
    let (s, v) = api
        .call_as(
            &me,
            None,
            "POST",
            "/v1/pki/renew",
            Some(json!({"csr": fresh.pem})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = &v["data"];
    for f in [
        "certificate",
        "issuing_ca",
        "ca_chain",
        "serial_number",
        "expiration",
    ] {
        assert!(d.get(f).is_some(), "renew answer lacks {f}");
    }
    assert!(d.get("private_key").is_none());
    let new_der = der_of(d["certificate"].as_str().unwrap());
    let new = x509(&new_der);
    assert_ne!(new.serial, old.serial);
    assert_eq!(d["serial_number"], new.serial);
    assert_eq!(new.subject, old.subject);
    assert_eq!(new.sans, old.sans);
    assert_eq!(new.extended_key_usage, old.extended_key_usage);
    let key =
        keep_pki::key::load_private_key(fresh.key_pem.as_bytes(), &Source::Other("k".into()), None)
            .unwrap();
    assert!(
        key.matches_certificate(&new_der),
        "the new certificate carries the CSR's new key"
    );
    assert_eq!(new.lifetime_seconds, 90 * 60 + 30);
    // The inventory links them.
    let (_, v) = api
        .call("GET", &format!("/v1/pki/cert/{}", new.serial), None)
        .await;
    assert_eq!(v["data"]["renewed_from"], first["serial_number"]);
    assert_eq!(v["data"]["role"], "agents");

    // A CSR with no names at all is fine too: the identity comes from the certificate.
    let (s, v) = api
        .call_as(
            &me,
            None,
            "POST",
            "/v1/pki/renew",
            Some(json!({"csr": csr("", &[], &[], KeyAlg::EcdsaP256).pem})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        x509(&der_of(v["data"]["certificate"].as_str().unwrap())).sans,
        old.sans
    );
}

#[tokio::test]
async fn renewal_refusals_say_why() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let (chain, data) = issue_agent(&api, "agent-12.claw.internal").await;
    let me = identity(&chain);
    let key_der = {
        let pem = data["private_key"].as_str().unwrap();
        keep_pki::key::load_private_key(pem.as_bytes(), &Source::Other("k".into()), None)
            .unwrap()
            .pkcs8_der()
            .to_vec()
    };
    let new_csr = || csr("agent-12.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem;
    let before = api.cert_count();
    let forbidden: Vec<(Option<Arc<PeerIdentity>>, &str)> = vec![
        (None, "client certificate"),
        // Same intermediate, but not issued through this mount.
        (
            Some(identity(&api.pki.client.chain_der)),
            "not issued by this server's PKI mount",
        ),
        (
            Some(identity(&api.pki.foreign_client.chain_der)),
            "not issued by this server's PKI mount",
        ),
    ];
    for (who, says) in forbidden {
        let (s, _, body) = api
            .raw(
                who.as_ref(),
                None,
                "POST",
                "/v1/pki/renew",
                Some(json!({"csr": new_csr()})),
            )
            .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["errors"][0].as_str().unwrap().contains(says), "{v}");
    }
    // Each refusal is a `renewal_failures` security alert naming the reason.
    let alerts: Vec<Value> = api
        .events
        .events()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["event"] == "security_alert" && e["alert"] == "renewal_failures")
        .collect();
    assert!(
        alerts.iter().any(|a| a["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("not issued by this server")
            || a.to_string().contains("not issued by this server")),
        "{alerts:?}"
    );
    let bad_requests: Vec<(String, &str)> = vec![
        (
            csr_with_key_der(&key_der, KeyAlg::EcdsaP256, "agent-12.claw.internal", &[]).pem,
            "renewal needs a new key",
        ),
        (
            csr("agent-99.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem,
            "common name \"agent-99.claw.internal\"",
        ),
        (
            csr(
                "agent-12.claw.internal",
                &["extra.claw.internal"],
                &[],
                KeyAlg::EcdsaP256,
            )
            .pem,
            "SAN \"extra.claw.internal\"",
        ),
        (
            csr(
                "agent-12.claw.internal",
                &[],
                &[Eku::Server],
                KeyAlg::EcdsaP256,
            )
            .pem,
            "serverAuth",
        ),
        ("not a csr".into(), "csr"),
    ];
    for (pem, says) in bad_requests {
        let (s, v) = api
            .call_as(
                &me,
                None,
                "POST",
                "/v1/pki/renew",
                Some(json!({"csr": pem})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{says}: {v}");
        assert!(
            v["errors"][0].as_str().unwrap().contains(says),
            "want {says:?}: {v}"
        );
    }
    let (s, v) = api
        .call_as(
            &me,
            None,
            "POST",
            "/v1/pki/renew",
            Some(json!({"csr": new_csr(), "ttl": "9h"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "renewal takes no ttl: {v}");

    // Expired: the engine with a clock past notAfter.
    let engine = api.engine();
    let later = OffsetDateTime::now_utc() + time::Duration::days(2);
    let e = engine
        .renew(&*api.store, &me, &new_csr(), later)
        .unwrap_err();
    assert!(
        matches!(&e, PkiError::RenewalDenied(m) if m.contains("expired")),
        "{e}"
    );

    // The role is gone: no lifetime to renew with.
    api.role("other", agents_role()).await;
    let (_, v) = api
        .call(
            "POST",
            "/v1/pki/issue/other",
            Some(json!({"common_name": "agent-13.claw.internal"})),
        )
        .await;
    let orphan = identity(&chain_of(&api.pki, &v["data"]));
    let (s, _) = api.call("DELETE", "/v1/pki/roles/other", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api
        .call_as(
            &orphan,
            None,
            "POST",
            "/v1/pki/renew",
            Some(json!({"csr": csr("agent-13.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{v}"
    );

    // Revoked.
    let (s, _) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": data["serial_number"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .call_as(
            &me,
            None,
            "POST",
            "/v1/pki/renew",
            Some(json!({"csr": new_csr()})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("revoked"), "{v}");
    assert_eq!(
        api.cert_count(),
        before + 1,
        "only the orphan's certificate was added"
    );
}

#[tokio::test]
async fn a_revoked_certificate_loses_its_token_its_login_and_tokenless_access() {
    let api = Api::new();
    api.role("agents", agents_role()).await;
    let (s, _) = api
        .call(
            "PUT",
            "/v1/sys/policies/acl/agents",
            Some(json!({"policy": "path \"secret/data/agents/*\" { capabilities = [\"read\", \"create\", \"update\"] }"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .call(
            "POST",
            "/v1/auth/cert/certs/agents",
            Some(json!({"certificate": api.pki.intermediate.cert_pem, "allowed_common_names": "*.claw.internal", "token_policies": "agents"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (chain, data) = issue_agent(&api, "agent-14.claw.internal").await;
    let me = identity(&chain);
    let (s, v) = api
        .call_as(&me, None, "POST", "/v1/auth/cert/login", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (s, _) = api
        .call_as(
            &me,
            Some(&token),
            "POST",
            "/v1/secret/data/agents/x",
            Some(json!({"data": {"k": "v"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = api
        .call(
            "POST",
            "/v1/pki/revoke",
            Some(json!({"serial_number": data["serial_number"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let revoked = "permission denied: the client certificate is revoked";
    let (s, v) = api
        .call_as(&me, Some(&token), "GET", "/v1/secret/data/agents/x", None)
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::FORBIDDEN, json!({"errors": [revoked]}))
    );
    let (s, v) = api
        .call_as(&me, Some(&token), "GET", "/v1/auth/token/lookup-self", None)
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::FORBIDDEN, json!({"errors": [revoked]}))
    );
    let (s, v) = api
        .call_as(&me, None, "POST", "/v1/auth/cert/login", None)
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::FORBIDDEN, json!({"errors": [revoked]}))
    );
    // Certificates from other issuers, and other agents of this one, are unaffected.
    let (chain2, _) = issue_agent(&api, "agent-15.claw.internal").await;
    let (s, _) = api
        .call_as(
            &identity(&chain2),
            None,
            "POST",
            "/v1/auth/cert/login",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call("GET", "/v1/secret/data/agents/x", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_engine_refuses_a_leaf_or_a_mismatched_key_as_issuer() {
    let pki = TestPki::new();
    let key = |pem: &str| {
        keep_pki::key::load_private_key(pem.as_bytes(), &Source::Other("k".into()), None).unwrap()
    };
    let e = Pki::new(
        pki.client.cert_pem.as_bytes(),
        &Source::Other("leaf".into()),
        key(&pki.client.key_pem),
        std::time::Duration::from_secs(3600),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("pki.issuer_cert_file") && e.contains("not a CA"),
        "{e}"
    );
    let e = Pki::new(
        pki.intermediate.cert_pem.as_bytes(),
        &Source::Other("i".into()),
        key(&pki.root.key_pem),
        std::time::Duration::from_secs(3600),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("pki.issuer_key_file") && e.contains("does not belong"),
        "{e}"
    );
    // From files, with an encrypted key and its password file.
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let password = secrecy::SecretString::from("issuer pass".to_owned());
    let enc = dir.path().join("intermediate.enc.key");
    std::fs::write(
        &enc,
        key(&pki.intermediate.key_pem)
            .to_pem_encrypted(&password)
            .unwrap(),
    )
    .unwrap();
    let pass = dir.path().join("intermediate.pass");
    std::fs::write(&pass, "issuer pass\n").unwrap();
    let mut cfg = keep_server::config::PkiConfig {
        issuer_cert_file: files.intermediate_cert.clone(),
        issuer_key_file: enc,
        issuer_key_password_file: None,
        crl_next_update: std::time::Duration::from_secs(3600),
    };
    let e = Pki::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("pki.issuer_key_password_file"), "{e}");
    cfg.issuer_key_password_file = Some(pass);
    Pki::load(&cfg).unwrap();
}

// ---------------------------------------------------------------------------------------------
// One real listener: keep_server::server::{prepare, serve} on 127.0.0.1:0.
// ---------------------------------------------------------------------------------------------

mod live {
    use super::*;
    use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
    use keep_tls::events::MemorySink;
    use keep_tls::tokio_rustls::{TlsConnector, client::TlsStream};
    use rustls_pki_types::ServerName;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const WAIT: Duration = Duration::from_secs(10);

    /// A kept-alive HTTP/1.1 connection over mTLS.
    pub struct Conn {
        stream: TlsStream<TcpStream>,
    }

    pub fn client(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Arc<keep_tls::tokio_rustls::rustls::ClientConfig> {
        let mut s = ClientSettings::new(PemInput::inline("ca", ca_pem.as_bytes().to_vec()))
            .with_identity(ClientIdentity {
                cert: PemInput::inline("cert", cert_pem.as_bytes().to_vec()),
                key: PemInput::inline("key", key_pem.as_bytes().to_vec()),
                key_password: None,
            });
        s.alpn = vec![b"http/1.1".to_vec()];
        keep_tls::client::build(&s).unwrap()
    }

    impl Conn {
        pub async fn open(
            addr: SocketAddr,
            config: Arc<keep_tls::tokio_rustls::rustls::ClientConfig>,
        ) -> Result<Conn, String> {
            let fut = async {
                let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap().to_owned(), tcp)
                    .await
                    .map_err(|e| format!("handshake: {e}"))
            };
            let stream = tokio::time::timeout(WAIT, fut)
                .await
                .map_err(|_| "handshake timed out".to_owned())??;
            Ok(Conn { stream })
        }

        /// One request; (status, JSON body) or what the client saw instead.
        pub async fn call(
            &mut self,
            method: &str,
            path: &str,
            token: Option<&str>,
            body: Option<Value>,
        ) -> Result<(u16, Value), String> {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
                body.len()
            );
            if let Some(t) = token {
                head.push_str(&format!("X-Vault-Token: {t}\r\n"));
            }
            head.push_str("\r\n");
            let fut = async {
                self.stream
                    .write_all(format!("{head}{body}").as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                self.stream.flush().await.map_err(|e| e.to_string())?;
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    match self.stream.read(&mut byte).await {
                        Ok(1) => buf.push(byte[0]),
                        Ok(_) => {
                            return Err(format!("connection closed after {} bytes", buf.len()));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad status line: {head}"))?;
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                self.stream
                    .read_exact(&mut body)
                    .await
                    .map_err(|e| e.to_string())?;
                let v = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&body)
                        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()))
                };
                Ok((status, v))
            };
            tokio::time::timeout(WAIT, fut)
                .await
                .map_err(|_| "request timed out".to_owned())?
        }
    }

    pub fn counter(handle: &metrics_exporter_prometheus::PrometheusHandle, series: &str) -> u64 {
        handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    pub use keep_tls::classify::Reason;
    pub use keep_tls::events::SecurityEvent;

    pub fn sink() -> Arc<MemorySink> {
        Arc::new(MemorySink::new())
    }

    pub fn failures(events: &[SecurityEvent]) -> Vec<(Reason, Option<String>)> {
        events
            .iter()
            .filter_map(|e| e.as_handshake_failure())
            .map(|f| (f.reason, f.serial.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_real_listener_revocation_ends_open_connections_handshakes_tokens_and_renewal() {
    use live::*;
    use std::time::Duration;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let issuer_chain = dir.path().join("issuer-chain.crt");
    std::fs::write(
        &issuer_chain,
        format!("{}{}", pki.intermediate.cert_pem, pki.root.cert_pem),
    )
    .unwrap();
    let config_path = dir.path().join("keep-server.yaml");
    std::fs::write(
        &config_path,
        format!(
            "listener:\n  address: 127.0.0.1:1\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    crl_file: {}\nstorage:\n  sqlite: {{ path: keep.db }}\nseal:\n  key_file: unseal.key\naudit:\n  file: audit.log\nadmins:\n  - common_name: operator\npki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n  crl_next_update: 1h\n",
            files.server_cert.display(),
            files.server_key.display(),
            files.ca_bundle.display(),
            files.crl.display(),
            issuer_chain.display(),
            files.intermediate_key.display(),
        ),
    )
    .unwrap();
    let config = keep_server::config::ServerConfig::load(&config_path).unwrap();
    let no_prompt = |_: &str| Err::<secrecy::SecretString, String>("no prompt in tests".into());
    keep_server::server::init(&config, &no_prompt).unwrap();
    let mut prepared = keep_server::server::prepare(&config, &no_prompt).unwrap();
    let events = sink();
    prepared.events = events.clone();
    let metrics = keep_server::server::metrics_handle().expect("the Prometheus recorder");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (trigger, signal) = keep_tls::listener::shutdown_channel();
    let server = {
        let config = config.clone();
        tokio::spawn(
            async move { keep_server::server::serve(&config, prepared, tcp, signal).await },
        )
    };
    let ca = pki.ca_bundle_pem();
    let admin_tls = client(&ca, &pki.admin.chain_pem, &pki.admin.key_pem);
    let mut admin = Conn::open(addr, admin_tls.clone()).await.unwrap();
    let ok = |r: Result<(u16, Value), String>, want: u16| {
        let (s, v) = r.unwrap();
        assert_eq!(s, want, "{v}");
        v
    };

    // The operator sets up a role, a policy and cert auth for agents, and issues one.
    ok(
        admin
            .call("POST", "/v1/pki/roles/agents", None, Some(agents_role()))
            .await,
        200,
    );
    ok(admin.call("PUT", "/v1/sys/policies/acl/agents", None, Some(json!({"policy": "path \"secret/data/agents/*\" { capabilities = [\"read\", \"create\", \"update\"] }"}))).await, 204);
    ok(admin.call("POST", "/v1/auth/cert/certs/agents", None, Some(json!({"certificate": pki.intermediate.cert_pem, "allowed_common_names": "*.claw.internal", "token_policies": "agents"}))).await, 204);
    let issued = ok(
        admin
            .call(
                "POST",
                "/v1/pki/issue/agents",
                None,
                Some(json!({"common_name": "agent-20.claw.internal"})),
            )
            .await,
        200,
    );
    let d = &issued["data"];
    let serial = d["serial_number"].as_str().unwrap().to_owned();
    let key_pem = d["private_key"].as_str().unwrap().to_owned();
    let agent_chain = format!(
        "{}{}",
        d["certificate"].as_str().unwrap(),
        pki.intermediate.cert_pem
    );
    let agent_tls = client(&ca, &agent_chain, &key_pem);

    // The agent logs in and works on one keep-alive connection.
    let mut agent = Conn::open(addr, agent_tls.clone()).await.unwrap();
    let login = ok(
        agent.call("POST", "/v1/auth/cert/login", None, None).await,
        200,
    );
    let token = login["auth"]["client_token"].as_str().unwrap().to_owned();
    ok(
        agent
            .call(
                "POST",
                "/v1/secret/data/agents/llm",
                Some(&token),
                Some(json!({"data": {"k": "v"}})),
            )
            .await,
        200,
    );
    // The certificate TestPki revoked in the crl_file stays revoked next to keep's own CRL
    // for the same issuer.
    let old_revoked = client(
        &ca,
        &pki.revoked_client.chain_pem,
        &pki.revoked_client.key_pem,
    );
    let r = match Conn::open(addr, old_revoked).await {
        Ok(mut c) => c.call("GET", "/v1/pki/ca/pem", None, None).await,
        Err(e) => Err(e),
    };
    assert!(
        r.is_err(),
        "the crl_file's revoked client was served: {r:?}"
    );

    // Revoke it.
    let revoked_before = counter(
        &metrics,
        "keep_tls_handshake_failures_total{reason=\"revoked\"}",
    );
    let refused_before = counter(&metrics, "keep_pki_renewals_total{outcome=\"refused\"}");
    ok(
        admin
            .call(
                "POST",
                "/v1/pki/revoke",
                None,
                Some(json!({"serial_number": serial})),
            )
            .await,
        200,
    );

    // (a) the open connection is refused at once, (c) with its token or without.
    let revoked = json!({"errors": ["permission denied: the client certificate is revoked"]});
    let (s, v) = agent
        .call("GET", "/v1/secret/data/agents/llm", Some(&token), None)
        .await
        .unwrap();
    assert_eq!((s, &v), (403, &revoked));
    let (s, v) = agent
        .call("GET", "/v1/auth/token/lookup-self", Some(&token), None)
        .await
        .unwrap();
    assert_eq!((s, &v), (403, &revoked));
    let (s, v) = agent
        .call("POST", "/v1/auth/cert/login", None, None)
        .await
        .unwrap();
    assert_eq!((s, &v), (403, &revoked));
    // (d) its renewal is refused.
    let (s, v) = agent
        .call(
            "POST",
            "/v1/pki/renew",
            None,
            Some(json!({"csr": csr("agent-20.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem})),
        )
        .await
        .unwrap();
    assert_eq!(s, 403, "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("revoked"), "{v}");
    // Process-wide counter: the router tests running beside this one refuse renewals too.
    assert!(
        counter(&metrics, "keep_pki_renewals_total{outcome=\"refused\"}") > refused_before,
        "the refusal was not counted"
    );

    // (b) a new handshake fails as `revoked`: counted and reported with the serial.
    let seen = events.len();
    let r = match Conn::open(addr, agent_tls.clone()).await {
        Ok(mut c) => c.call("GET", "/v1/pki/ca/pem", None, None).await,
        Err(e) => Err(e),
    };
    let client_saw =
        r.expect_err("the revoked certificate completed a request on a new connection");
    assert!(
        client_saw.contains("CertificateRevoked") || client_saw.contains("revoked"),
        "{client_saw}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter(
        &metrics,
        "keep_tls_handshake_failures_total{reason=\"revoked\"}",
    ) <= revoked_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no revoked handshake counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fails = failures(&events.events()[seen..]);
    assert!(
        fails.contains(&(Reason::Revoked, Some(serial.clone()))),
        "{fails:?}"
    );

    // The PKI metrics: the cert's expiry and revocation, the server's own chain.
    let text = metrics.render();
    for want in [
        format!(
            "keep_certificate_expiry_timestamp_seconds{{serial=\"{serial}\",subject=\"CN=agent-20.claw.internal\",role=\"agents\"}}"
        ),
        format!(
            "keep_certificate_revoked{{serial=\"{serial}\",subject=\"CN=agent-20.claw.internal\",role=\"agents\"}} 1"
        ),
        "role=\"keep-server\"".to_owned(),
        "role=\"keep-issuer\"".to_owned(),
        "keep_certificate_not_before_timestamp_seconds{".to_owned(),
        "keep_pki_renewals_total{outcome=\"issued\"}".to_owned(),
        "keep_pki_renewals_total{outcome=\"failed\"} 0".to_owned(),
    ] {
        assert!(text.contains(&want), "metrics lack {want}:\n{text}");
    }

    // The audit log saw the issue answer, with the private key HMAC'd, never in plaintext.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.contains("pki/issue/agents") && audit.contains("pki/revoke"));
    let key_line = key_pem.lines().nth(1).unwrap();
    assert!(
        !audit.contains(key_line),
        "the private key reached the audit log"
    );
    assert!(!audit.contains(&token), "the token reached the audit log");

    // Other agents keep working.
    ok(
        admin
            .call("GET", "/v1/secret/data/agents/llm", None, None)
            .await,
        200,
    );
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

/// Issue 11, item 4: with the PKI mount's CRL in the handshake, a certificate the operator
/// adds to `listener.tls.crl_file` (same issuer: keep's intermediate) is refused within the
/// watch interval, on new handshakes and per request on a connection opened before; a
/// certificate revoked through `pki/revoke` (in the mount's CRL only) stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_file_revocation_applies_next_to_the_mounts_crl_also_on_open_connections() {
    use live::*;
    use std::time::Duration;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let issuer_chain = dir.path().join("issuer-chain.crt");
    std::fs::write(
        &issuer_chain,
        format!("{}{}", pki.intermediate.cert_pem, pki.root.cert_pem),
    )
    .unwrap();
    let config_path = dir.path().join("keep-server.yaml");
    std::fs::write(
        &config_path,
        format!(
            "listener:\n  address: 127.0.0.1:1\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    crl_file: {}\nstorage:\n  sqlite: {{ path: keep.db }}\nseal:\n  key_file: unseal.key\naudit:\n  file: audit.log\nadmins:\n  - common_name: operator\npki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n  crl_next_update: 1h\n",
            files.server_cert.display(),
            files.server_key.display(),
            files.ca_bundle.display(),
            files.crl.display(),
            issuer_chain.display(),
            files.intermediate_key.display(),
        ),
    )
    .unwrap();
    let config = keep_server::config::ServerConfig::load(&config_path).unwrap();
    let no_prompt = |_: &str| Err::<secrecy::SecretString, String>("no prompt in tests".into());
    keep_server::server::init(&config, &no_prompt).unwrap();
    let mut prepared = keep_server::server::prepare(&config, &no_prompt).unwrap();
    let events = sink();
    prepared.events = events.clone();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (trigger, signal) = keep_tls::listener::shutdown_channel();
    let server = {
        let config = config.clone();
        tokio::spawn(
            async move { keep_server::server::serve(&config, prepared, tcp, signal).await },
        )
    };
    let ca = pki.ca_bundle_pem();
    let admin_tls = client(&ca, &pki.admin.chain_pem, &pki.admin.key_pem);
    let mut admin = Conn::open(addr, admin_tls).await.unwrap();
    let status = |r: Result<(u16, Value), String>| r.map(|(s, _)| s);
    // A fresh connection's first request: the status, or what the client saw instead.
    let fresh = |tls: Arc<keep_tls::tokio_rustls::rustls::ClientConfig>| async move {
        match Conn::open(addr, tls).await {
            Ok(mut c) => status(c.call("GET", "/v1/pki/ca/pem", None, None).await),
            Err(e) => Err(e),
        }
    };

    // One certificate revoked through the mount: only its CRL (in memory) lists it.
    assert_eq!(
        status(
            admin
                .call("POST", "/v1/pki/roles/agents", None, Some(agents_role()))
                .await
        ),
        Ok(200)
    );
    let (s, issued) = admin
        .call(
            "POST",
            "/v1/pki/issue/agents",
            None,
            Some(json!({"common_name": "agent-30.claw.internal"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{issued}");
    let d = &issued["data"];
    let mount_revoked = client(
        &ca,
        &format!(
            "{}{}",
            d["certificate"].as_str().unwrap(),
            pki.intermediate.cert_pem
        ),
        d["private_key"].as_str().unwrap(),
    );
    assert_eq!(fresh(mount_revoked.clone()).await, Ok(200));
    let (s, v) = admin
        .call(
            "POST",
            "/v1/pki/revoke",
            None,
            Some(json!({"serial_number": d["serial_number"]})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(fresh(mount_revoked.clone()).await.is_err());

    // agent-01 (same intermediate, not in the mount's inventory) logs in on a kept-alive
    // connection (login checks revocation per request, like every authenticated route).
    assert_eq!(status(admin.call("POST", "/v1/auth/cert/certs/agents", None, Some(json!({"certificate": pki.intermediate.cert_pem, "allowed_common_names": "agent-01", "token_policies": "default"}))).await), Ok(204));
    let agent_tls = client(&ca, &pki.client.chain_pem, &pki.client.key_pem);
    let mut agent = Conn::open(addr, agent_tls.clone()).await.unwrap();
    let login = |v: &Value| v["auth"]["client_token"].is_string();
    let (s, v) = agent
        .call("POST", "/v1/auth/cert/login", None, None)
        .await
        .unwrap();
    assert!(s == 200 && login(&v), "{s} {v}");

    // The operator adds agent-01 to crl_file (the intermediate's CRL, as TestPki signs it).
    let file_crl = pki.crl_with(&[&pki.revoked_client, &pki.client]);
    let tmp = files.crl.with_extension("tmp");
    std::fs::write(&tmp, format!("{}{}", file_crl.pem, pki.root_crl.pem)).unwrap();
    std::fs::rename(&tmp, &files.crl).unwrap();

    // The open connection is refused per request once the watcher (1 s) reloaded the file.
    let revoked = json!({"errors": ["permission denied: the client certificate is revoked"]});
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = agent
            .call("POST", "/v1/auth/cert/login", None, None)
            .await
            .unwrap();
        if s == 403 {
            assert_eq!(v, revoked);
            break;
        }
        assert!(s == 200 && login(&v), "{s} {v}");
        assert!(
            std::time::Instant::now() < deadline,
            "a certificate added to crl_file was still served per request after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new handshake is refused as `revoked`, with the serial.
    let client_saw = fresh(agent_tls)
        .await
        .expect_err("a certificate added to crl_file completed a new handshake");
    assert!(
        client_saw.contains("CertificateRevoked") || client_saw.contains("revoked"),
        "{client_saw}"
    );
    let serial = pki
        .client
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !failures(&events.events()).contains(&(Reason::Revoked, Some(serial.clone()))) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            failures(&events.events())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The file reload kept the mount's CRL, and the file's older entry still applies.
    assert!(fresh(mount_revoked).await.is_err());
    let old_revoked = client(
        &ca,
        &pki.revoked_client.chain_pem,
        &pki.revoked_client.key_pem,
    );
    assert!(fresh(old_revoked).await.is_err());
    // Others are unaffected.
    assert_eq!(
        status(admin.call("GET", "/v1/pki/ca/pem", None, None).await),
        Ok(200)
    );
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn the_server_renews_its_own_serving_certificate_at_two_thirds_of_its_lifetime() {
    use keep_server::pki::server_cert::AutoRenew;
    use keep_test_support::LeafSpec;
    use std::os::unix::fs::PermissionsExt;
    let pki = TestPki::new();
    let dir = keep_test_support::tempdir();
    let files = pki.write_to(dir.path());
    let now = OffsetDateTime::now_utc();
    // Issued by the mount's own issuer 2 h ago for 2.5 h: past 2/3 of its lifetime.
    let spec = LeafSpec::server("vault.claw.internal")
        .dns("localhost")
        .ip(std::net::Ipv4Addr::LOCALHOST)
        .valid(
            now - time::Duration::hours(2),
            now + time::Duration::minutes(30),
        );
    let old = pki.issue(&spec);
    old.write_to(dir.path(), "server");
    // The key is encrypted: the renewed key must be too, with the same password.
    let password = secrecy::SecretString::from("server pass".to_owned());
    let key =
        keep_pki::key::load_private_key(old.key_pem.as_bytes(), &Source::Other("k".into()), None)
            .unwrap();
    std::fs::write(&files.server_key, key.to_pem_encrypted(&password).unwrap()).unwrap();
    let pass = dir.path().join("server.pass");
    std::fs::write(&pass, "server pass\n").unwrap();
    let mut settings =
        keep_tls::server::TlsSettings::new(&files.server_cert, &files.server_key, &files.ca_bundle);
    settings.key_password_file = Some(pass);
    let tls = keep_tls::reload::ReloadableTls::new(settings, Arc::new(keep_tls::events::NullSink))
        .unwrap();
    let before = tls.current();
    let engine = pki_engine(&pki);
    let store = MemStore::new();

    let outcome = engine.renew_server_cert(&store, &tls, now).unwrap();
    let AutoRenew::Renewed {
        old_serial,
        new_serial,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(old_serial, keep_pki::inspect::format_serial(&old.serial));
    assert!(
        !Arc::ptr_eq(&before, &tls.current()),
        "the TLS config was not reloaded"
    );
    let chain = std::fs::read_to_string(&files.server_cert).unwrap();
    let new_der = der_of(&chain);
    let (new, was) = (x509(&new_der), x509(&old.der));
    assert_eq!(new.serial, new_serial);
    assert_eq!(
        (new.sans.clone(), new.extended_key_usage.clone()),
        (was.sans.clone(), was.extended_key_usage.clone())
    );
    assert_eq!(new.subject, was.subject);
    assert_eq!(
        new.lifetime_seconds,
        was.lifetime_seconds + 60,
        "same lifetime, plus the 1 min backdate"
    );
    assert!(
        chain.contains(pki.intermediate.cert_pem.trim()),
        "the chain keeps the intermediate"
    );
    let key_text = std::fs::read_to_string(&files.server_key).unwrap();
    assert!(
        key_text.starts_with("-----BEGIN\x20ENCRYPTED PRIVATE KEY-----"),
        "re-encrypted"
    );
    let new_key = keep_pki::key::load_private_key(
        key_text.as_bytes(),
        &Source::Other("k".into()),
        Some(&password),
    )
    .unwrap();
    assert!(new_key.matches_certificate(&new_der));
    assert!(!key.matches_certificate(&new_der), "a new key");
    assert_eq!(
        std::fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let rec = engine.record(&store, &new_serial).unwrap().unwrap();
    assert_eq!(
        (rec.role.as_str(), rec.renewed_from.as_deref()),
        ("keep-server", Some(old_serial.as_str()))
    );
    // No temporary files left behind.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // The fresh one is not due; a certificate from another issuer is never touched.
    assert!(matches!(
        engine.renew_server_cert(&store, &tls, now).unwrap(),
        AutoRenew::NotDue { .. }
    ));
    let other = pki.issue_intermediate(
        "Other Intermediate",
        now - time::Duration::hours(1),
        now + time::Duration::days(30),
    );
    let other_key =
        keep_pki::key::load_private_key(other.key_pem.as_bytes(), &Source::Other("k".into()), None)
            .unwrap();
    let other_engine = Pki::new(
        other.cert_pem.as_bytes(),
        &Source::Other("other".into()),
        other_key,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(
        other_engine
            .renew_server_cert(&store, &tls, now + time::Duration::days(1))
            .unwrap(),
        AutoRenew::NotOurs
    );
}
