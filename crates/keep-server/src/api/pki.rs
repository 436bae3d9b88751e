//! `/v1/pki/…`: the PKI mount over HTTP, with Vault's paths, fields and answers, plus keep's
//! renewal by mTLS (`pki/renew`, in the spirit of step-ca's `/renew`).
//!
//! | method | path | action | who may |
//! |---|---|---|---|
//! | GET | `ca/pem`, `ca` (DER), `ca_chain`, `cert/ca`, `cert/ca_chain`, `crl/pem`, `crl` (DER), `cert/crl` | the issuing CA, its chain, the CRL | anyone on the mTLS connection |
//! | LIST | `roles` | role names | policy `list` |
//! | GET, POST/PUT, DELETE | `roles/:name` | read, write, delete a role | policy |
//! | POST/PUT | `sign/:role` | sign a CSR | policy `update` |
//! | POST/PUT | `issue/:role` | generate a key and a certificate | policy `update` |
//! | POST/PUT | `revoke` | revoke by `serial_number` (or `certificate`) | policy `update` |
//! | LIST | `certs` | serials in the inventory | policy `list` |
//! | GET | `cert/:serial` | one certificate, its revocation and keep's extras | policy `read` |
//! | POST/PUT | `tidy` | drop long-expired certificates | policy `update` |
//! | POST/PUT | `renew` | renew the connection's own client certificate | the certificate itself, no token |
//!
//! Without `pki:` in the config every `pki/` path answers 404 like an unknown route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::api::blocking::{blocking, store};
use crate::api::envelope::{envelope, no_content};
use crate::api::error::ApiError;
use crate::api::reply::{Answer, Facts};
use crate::api::request::{Operation, VaultRequest};
use crate::auth::access::{self, Access};
use crate::auth::validate_role_name;
use crate::fields::{boolean, string_list, ttl};
use crate::pki::metrics::{self as pki_metrics, RenewalOutcome};
use crate::pki::{IssuedCert, NameRequest, Pki, TidyOptions};
use crate::state::AppState;

/// The mount keep serves the PKI engine at.
pub const MOUNT: &str = "pki";

/// The PKI mount, or the 404 of a server without one (`pki:` not configured).
fn mount(state: &AppState, req: &VaultRequest) -> Result<Arc<Pki>, ApiError> {
    state.pki.clone().ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{}\"", req.path),
        )
    })
}

/// 200 (or `status`) with Vault's envelope around `data`, and `warnings` when there are any.
fn answer(status: StatusCode, data: Value, warnings: Vec<String>) -> Response {
    envelope(status, data, warnings, Value::Null)
}

/// The mount and an admitted request for `op` on `path`, or the answer refusing it.
async fn admit(
    state: &Arc<AppState>,
    req: &VaultRequest,
    path: &str,
    op: Operation,
) -> Result<(Arc<Pki>, Access), Answer> {
    let pki = mount(state, req).map_err(Answer::error)?;
    let access = access::admit(state, req, path, op)
        .await
        .map_err(Answer::from)?;
    Ok((pki, access))
}

/// [`admit`] inside a handler: the refusal is the handler's answer.
macro_rules! admitted {
    ($e:expr) => {
        match $e.await {
            Ok(v) => v,
            Err(answer) => return answer,
        }
    };
}

fn raw(content_type: &'static str, body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.into(),
    )
        .into_response()
}

fn rfc3339(unix: i64) -> String {
    if unix == 0 {
        return String::new();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .map(keep_pki::duration::rfc3339)
        .unwrap_or_default()
}

/// Checks a body's field names: `known` are read, `tolerated` are Vault fields keep does not
/// implement and accepts only empty; anything else is refused (a typo must not be ignored).
fn check_fields(
    body: &Map<String, Value>,
    known: &[&str],
    tolerated: &[&str],
) -> Result<(), ApiError> {
    for (k, v) in body {
        if known.contains(&k.as_str()) {
            continue;
        }
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty() || (k == "issuer_ref" && s == "default"),
            Value::Array(a) => a.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_u64() == Some(0),
            Value::Object(o) => o.is_empty(),
        };
        if tolerated.contains(&k.as_str()) {
            if !empty {
                return Err(ApiError::bad_request(format!(
                    "{k} is not supported by keep"
                )));
            }
        } else {
            return Err(ApiError::bad_request(format!("unknown field {k:?}")));
        }
    }
    Ok(())
}

fn opt_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Reads the names/TTL of a `sign` or `issue` body.
fn name_request(body: &Map<String, Value>) -> Result<NameRequest, ApiError> {
    match opt_string(body, "format")?.as_deref() {
        None | Some("pem") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not supported by keep; it answers pem"
            )));
        }
    }
    match opt_string(body, "private_key_format")?.as_deref() {
        None | Some("der" | "pem" | "pkcs8") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "private_key_format {other:?} is not supported; keep returns PKCS#8 PEM"
            )));
        }
    }
    Ok(NameRequest {
        common_name: opt_string(body, "common_name")?,
        alt_names: string_list(body, "alt_names")
            .map_err(bad)?
            .unwrap_or_default(),
        ip_sans: string_list(body, "ip_sans")
            .map_err(bad)?
            .unwrap_or_default(),
        uri_sans: string_list(body, "uri_sans")
            .map_err(bad)?
            .unwrap_or_default(),
        ttl: ttl(body, "ttl").map_err(bad)?,
        exclude_cn_from_sans: boolean(body, "exclude_cn_from_sans")
            .map_err(bad)?
            .unwrap_or(false),
    })
}

const SIGN_FIELDS: [&str; 10] = [
    "name",
    "csr",
    "common_name",
    "alt_names",
    "ip_sans",
    "uri_sans",
    "ttl",
    "format",
    "private_key_format",
    "exclude_cn_from_sans",
];
const SIGN_TOLERATED: [&str; 6] = [
    "other_sans",
    "not_after",
    "remove_roots_from_chain",
    "user_ids",
    "issuer_ref",
    "serial_number",
];

/// The data of a `sign`/`issue`/`renew` answer.
fn issued_json(pki: &Pki, issued: &IssuedCert) -> Map<String, Value> {
    let r = &issued.record;
    let mut m = Map::new();
    m.insert("certificate".into(), json!(r.certificate));
    m.insert("issuing_ca".into(), json!(pki.issuing_ca_pem()));
    m.insert("ca_chain".into(), json!(pki.ca_chain()));
    m.insert("serial_number".into(), json!(r.serial_number));
    m.insert("expiration".into(), json!(r.not_after));
    m
}

/// Unauthenticated reads, as in Vault (the mTLS connection is still required): the issuing
/// CA and chain, in the forms Vault serves them.
async fn public(state: &AppState, req: &VaultRequest, f: impl FnOnce(&Pki) -> Response) -> Answer {
    Answer::new(Facts::default(), mount(state, req).map(|pki| f(&pki)))
}

/// `GET pki/ca/pem`.
pub async fn ca_pem(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    public(&state, &req, |pki| {
        raw(
            "application/pem-certificate-chain",
            pki.issuing_ca_pem().to_owned(),
        )
    })
    .await
}

/// `GET pki/ca` (DER).
pub async fn ca_der(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    public(&state, &req, |pki| {
        raw("application/pkix-cert", pki.issuing_ca_der().to_vec())
    })
    .await
}

/// `GET pki/ca_chain`.
pub async fn ca_chain(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    public(&state, &req, |pki| {
        raw("application/pem-certificate-chain", pki.ca_chain().concat())
    })
    .await
}

/// `GET pki/cert/ca`.
pub async fn cert_ca(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    public(&state, &req, |pki| {
        answer(
            StatusCode::OK,
            json!({"certificate": pki.issuing_ca_pem(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
            vec![],
        )
    })
    .await
}

/// `GET pki/cert/ca_chain`.
pub async fn cert_ca_chain(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    public(&state, &req, |pki| {
        answer(
            StatusCode::OK,
            json!({"certificate": pki.ca_chain().concat(), "ca_chain": pki.ca_chain(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
            vec![],
        )
    })
    .await
}

#[derive(Clone, Copy)]
enum CrlForm {
    Der,
    Pem,
    Json,
}

/// The CRL, in one of its forms (unauthenticated, as in Vault).
async fn crl(state: Arc<AppState>, req: VaultRequest, form: CrlForm) -> Answer {
    let result = async {
        let pki = mount(&state, &req)?;
        let store = store(&state)?;
        let now = OffsetDateTime::now_utc();
        // Usually the cached CRL; a build (signing, a TLS swap) only when none is current.
        let crl = blocking(move || Ok(pki.crl(&*store, now)?)).await?;
        Ok(match form {
            CrlForm::Der => raw("application/pkix-crl", crl.der.clone()),
            CrlForm::Pem => raw("application/x-pem-file", crl.pem()),
            CrlForm::Json => answer(
                StatusCode::OK,
                json!({"certificate": crl.pem(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
                vec![],
            ),
        })
    }
    .await;
    Answer::new(Facts::default(), result)
}

/// `GET pki/crl` (DER).
pub async fn crl_der(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    crl(state, req, CrlForm::Der).await
}

/// `GET pki/crl/pem`.
pub async fn crl_pem(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    crl(state, req, CrlForm::Pem).await
}

/// `GET pki/cert/crl`.
pub async fn cert_crl(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    crl(state, req, CrlForm::Json).await
}

/// `LIST pki/roles`.
pub async fn list_roles(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    // As Vault: a list's ACL path ends in '/', however the client spelled it.
    let (pki, access) = admitted!(admit(&state, &req, "pki/roles/", Operation::List));
    access.answer((|| {
        let names = pki.role_names(&*store(&state)?)?;
        if names.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(answer(StatusCode::OK, json!({ "keys": names }), vec![]))
    })())
}

/// `GET pki/roles/:name`.
pub async fn read_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Read));
    access.answer((|| {
        validate_role_name(&name).map_err(ApiError::bad_request)?;
        let role = pki
            .role(&*store(&state)?, &name)?
            .ok_or_else(ApiError::not_found)?;
        Ok(answer(StatusCode::OK, role.to_json(), vec![]))
    })())
}

/// `POST`/`PUT pki/roles/:name`: `create` for a new role, `update` for an existing one.
pub async fn write_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let pki = match mount(&state, &req) {
        Ok(p) => p,
        Err(e) => return Answer::error(e),
    };
    if let Err(e) = validate_role_name(&name) {
        return Answer::error(ApiError::bad_request(e));
    }
    let existing = match store(&state).and_then(|s| Ok(pki.role(&*s, &name)?)) {
        Ok(r) => r,
        Err(e) => return Answer::error(e),
    };
    let op = if existing.is_some() {
        Operation::Update
    } else {
        Operation::Create
    };
    let access = match access::admit(&state, &req, &req.path, op).await {
        Ok(a) => a,
        Err(denied) => return Answer::from(denied),
    };
    let result = async {
        let body = req.object()?;
        let mut role = existing.unwrap_or_default();
        role.apply(&body).map_err(bad)?;
        let data = role.to_json();
        let mut warnings = Vec::new();
        if role.allow_any_name {
            warnings.push(format!(
                "role {name:?} has allow_any_name: it signs any host name its callers ask for"
            ));
        }
        let store = store(&state)?;
        blocking(move || Ok(pki.put_role(&*store, &name, &role)?)).await?;
        Ok(answer(StatusCode::OK, data, warnings))
    }
    .await;
    access.answer(result)
}

/// `DELETE pki/roles/:name`.
pub async fn delete_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Delete));
    let result = async {
        validate_role_name(&name).map_err(ApiError::bad_request)?;
        let store = store(&state)?;
        blocking(move || Ok(pki.delete_role(&*store, &name)?)).await?;
        Ok(no_content())
    }
    .await;
    access.answer(result)
}

/// `POST`/`PUT pki/sign/:role` with a CSR.
pub async fn sign(
    State(state): State<Arc<AppState>>,
    Path(role_name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Update));
    let result = async {
        let body = req.object()?;
        check_fields(&body, &SIGN_FIELDS, &SIGN_TOLERATED)?;
        let name_req = name_request(&body)?;
        let csr = opt_string(&body, "csr")?.unwrap_or_default();
        let store = store(&state)?;
        let p = pki.clone();
        let now = OffsetDateTime::now_utc();
        let issued =
            blocking(move || Ok(p.sign(&*store, &role_name, &csr, &name_req, now)?)).await?;
        let data = issued_json(&pki, &issued);
        Ok(answer(StatusCode::OK, Value::Object(data), issued.warnings))
    }
    .await;
    access.answer(result)
}

/// `POST`/`PUT pki/issue/:role`: keep makes the key.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    Path(role_name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Update));
    let result = async {
        let body = req.object()?;
        check_fields(&body, &SIGN_FIELDS, &SIGN_TOLERATED)?;
        let name_req = name_request(&body)?;
        if body.contains_key("csr") {
            return Err(ApiError::bad_request(
                "pki/issue generates the key; to have a CSR signed, use pki/sign",
            ));
        }
        let store = store(&state)?;
        let p = pki.clone();
        let now = OffsetDateTime::now_utc();
        let (issued, key) =
            blocking(move || Ok(p.issue(&*store, &role_name, &name_req, now)?)).await?;
        let mut data = issued_json(&pki, &issued);
        let key_type = match key.key_type() {
            keep_pki::KeyType::Rsa { .. } => "rsa",
            keep_pki::KeyType::Ed25519 => "ed25519",
            _ => "ec",
        };
        // Sent once, never stored or logged; the audit log HMACs it like any value.
        let mut pem = key.to_pem_plaintext().to_string();
        data.insert("private_key".into(), Value::String(pem.clone()));
        pem.zeroize();
        data.insert("private_key_type".into(), json!(key_type));
        Ok(answer(StatusCode::OK, Value::Object(data), issued.warnings))
    }
    .await;
    access.answer(result)
}

/// `POST`/`PUT pki/revoke` by `serial_number` or `certificate`.
pub async fn revoke(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Update));
    let result = async {
        let body = req.object()?;
        check_fields(&body, &["serial_number", "certificate"], &["issuer_ref"])?;
        let store = store(&state)?;
        let now = OffsetDateTime::now_utc();
        let t = match (
            opt_string(&body, "serial_number")?,
            opt_string(&body, "certificate")?,
        ) {
            (Some(serial), None) => {
                blocking(move || Ok(pki.revoke(&*store, &serial, now)?)).await?
            }
            // By certificate: also one this issuer signed that is not in the inventory.
            (None, Some(pem)) => {
                blocking(move || Ok(pki.revoke_certificate(&*store, &pem, now)?)).await?
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of serial_number or certificate",
                ));
            }
        };
        Ok(answer(
            StatusCode::OK,
            json!({"revocation_time": t, "revocation_time_rfc3339": rfc3339(t), "state": "revoked"}),
            vec![],
        ))
    }
    .await;
    access.answer(result)
}

/// `LIST pki/certs`.
pub async fn list_certs(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, "pki/certs/", Operation::List));
    access.answer((|| {
        let keys = pki.serials(&*store(&state)?)?;
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(answer(StatusCode::OK, json!({ "keys": keys }), vec![]))
    })())
}

/// `GET pki/cert/:serial`.
pub async fn read_cert(
    State(state): State<Arc<AppState>>,
    Path(serial): Path<String>,
    req: VaultRequest,
) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Read));
    access.answer((|| {
        let r = pki
            .record(&*store(&state)?, &serial)?
            .ok_or_else(ApiError::not_found)?;
        Ok(answer(
            StatusCode::OK,
            json!({
                "certificate": r.certificate,
                "serial_number": r.serial_number,
                "revocation_time": r.revocation_time,
                "revocation_time_rfc3339": rfc3339(r.revocation_time),
                "not_before": rfc3339(r.not_before),
                "not_after": rfc3339(r.not_after),
                "role": r.role,
                "subject": r.subject,
                "revoked": r.revocation_time != 0,
                "renewed_from": r.renewed_from,
            }),
            vec![],
        ))
    })())
}

/// `POST`/`PUT pki/tidy`.
pub async fn tidy(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (pki, access) = admitted!(admit(&state, &req, &req.path, Operation::Update));
    let result = async {
        let body = req.object()?;
        check_fields(
            &body,
            &["tidy_cert_store", "tidy_revoked_certs", "safety_buffer"],
            &[
                "tidy_revoked_cert_issuer_associations",
                "tidy_expired_issuers",
                "tidy_move_legacy_ca_bundle",
                "tidy_revocation_queue",
                "tidy_cross_cluster_revoked_certs",
                "tidy_acme",
                "pause_duration",
            ],
        )?;
        let opts = TidyOptions {
            tidy_cert_store: boolean(&body, "tidy_cert_store")
                .map_err(bad)?
                .unwrap_or(false),
            tidy_revoked_certs: boolean(&body, "tidy_revoked_certs")
                .map_err(bad)?
                .unwrap_or(false),
            safety_buffer: ttl(&body, "safety_buffer")
                .map_err(bad)?
                .unwrap_or(72 * 3600),
        };
        if !opts.tidy_cert_store && !opts.tidy_revoked_certs {
            return Err(ApiError::bad_request(
                "nothing to tidy: set tidy_cert_store and/or tidy_revoked_certs to true",
            ));
        }
        let store = store(&state)?;
        let now = OffsetDateTime::now_utc();
        let report = blocking(move || Ok(pki.tidy(&*store, opts, now)?)).await?;
        let report = serde_json::to_value(report)
            .map_err(|e| ApiError::internal(format!("tidy report: {e}")))?;
        Ok(answer(
            StatusCode::ACCEPTED,
            report,
            vec!["Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.".into()],
        ))
    }
    .await;
    access.answer(result)
}

/// `POST pki/renew` with `{"csr": PEM}`: a new certificate with the identity of the
/// connection's own client certificate. No token: the verified certificate is the credential.
pub async fn renew(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let pki = match mount(&state, &req) {
        Ok(p) => p,
        Err(e) => return Answer::error(e),
    };
    let mut facts = Facts::default();
    let result: Result<Response, ApiError> = async {
        let peer = req.peer.clone().ok_or_else(|| {
            ApiError::client(
                StatusCode::FORBIDDEN,
                "renewal needs the client certificate to be renewed on the connection",
            )
        })?;
        let body = req.object()?;
        check_fields(&body, &["csr"], &[])?;
        let csr = opt_string(&body, "csr")?.unwrap_or_default();
        let store = store(&state)?;
        let p = pki.clone();
        let serial = peer.serial.clone();
        let now = OffsetDateTime::now_utc();
        let issued = blocking(move || Ok(p.renew(&*store, &peer, &csr, now)?)).await?;
        facts.role = Some(issued.record.role.clone());
        facts.decision = Some((
            true,
            format!(
                "renewal of {serial} by its holder: new serial {}",
                issued.record.serial_number
            ),
        ));
        Ok(answer(
            StatusCode::OK,
            Value::Object(issued_json(&pki, &issued)),
            issued.warnings,
        ))
    }
    .await;
    match &result {
        Ok(_) => pki_metrics::renewal(RenewalOutcome::Issued),
        Err(e) => {
            let reason = if e.status.is_server_error() {
                pki_metrics::renewal(RenewalOutcome::Failed);
                "the server failed to issue the renewed certificate; see its log".to_owned()
            } else {
                let reason = e.errors.first().cloned().unwrap_or_default();
                tracing::info!(target: "keep::pki", reason = %reason, "renewal refused");
                facts.decision = Some((false, format!("renewal refused: {reason}")));
                pki_metrics::renewal(RenewalOutcome::Refused);
                reason
            };
            // A failing renewal is a security signal: an expired or revoked certificate
            // trying to extend itself, or an agent about to lose access.
            let (subject, serial) = req
                .peer
                .as_ref()
                .map(|p| (p.subject.clone(), p.serial.clone()))
                .unwrap_or_default();
            state
                .alerts
                .renewal_failed(&subject, &serial, &reason, req.addr);
        }
    }
    Answer::new(facts, result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_vault_extras_tolerated_empty() {
        let m = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(check_fields(&m(json!({"csr": "x"})), &SIGN_FIELDS, &SIGN_TOLERATED).is_ok());
        assert!(check_fields(&m(json!({"other_sans": ""})), &SIGN_FIELDS, &SIGN_TOLERATED).is_ok());
        let e = check_fields(
            &m(json!({"other_sans": "1.2.3;UTF8:x"})),
            &SIGN_FIELDS,
            &SIGN_TOLERATED,
        )
        .unwrap_err();
        assert!(e.errors[0].contains("other_sans"));
        let e = check_fields(
            &m(json!({"comon_name": "x"})),
            &SIGN_FIELDS,
            &SIGN_TOLERATED,
        )
        .unwrap_err();
        assert!(e.errors[0].contains("comon_name"));
    }
}
