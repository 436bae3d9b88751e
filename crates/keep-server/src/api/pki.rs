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

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::api::audit_layer;
use crate::api::body::json_object;
use crate::api::envelope::{no_content, request_id};
use crate::api::error::ApiError;
use crate::api::{Operation, blocking, principal, read_now, require};
use crate::auth::validate_role_name;
use crate::fields::{boolean, string_list, ttl};
use crate::pki::metrics::{self as pki_metrics, RenewalOutcome};
use crate::pki::{IssuedCert, NameRequest, Pki, TidyOptions};
use crate::state::{AppState, Caller, PeerAddr};

/// The mount keep serves the PKI engine at.
pub const MOUNT: &str = "pki";

/// Query parameters PKI endpoints read.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PkiQuery {
    list: Option<String>,
}

fn method_not_allowed() -> ApiError {
    ApiError::client(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

fn no_route(rest: &str) -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        format!("no handler for route \"{MOUNT}/{rest}\""),
    )
}

/// 200 with Vault's envelope around `data`, and `warnings` when there are any.
fn answer(status: StatusCode, data: Value, warnings: Vec<String>) -> Response {
    let body = json!({
        "request_id": request_id(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
        "auth": null,
        "mount_type": "pki",
    });
    (status, axum::Json(body)).into_response()
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

/// Entry point for every `/v1/pki/*` request.
#[allow(clippy::too_many_arguments)] // axum extractors: each is one piece of the request
pub async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Query<PkiQuery>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    addr: Option<Extension<PeerAddr>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(pki) = state.pki.clone() else {
        return Err(no_route(&rest));
    };
    let caller = caller.map(|c| c.0);
    let addr = addr.map(|a| a.0.0);
    let list = method.as_str() == "LIST"
        || (method == Method::GET && q.list.as_deref().is_some_and(|v| v == "true" || v == "1"));
    let path = rest.trim_end_matches('/').to_owned();
    let parts: Vec<&str> = path.split('/').collect();
    let m = method.as_str();
    let limit = state.limits.max_request_bytes;
    let now = OffsetDateTime::now_utc();

    // Unauthenticated reads, as in Vault (the mTLS connection is still required).
    match (parts.as_slice(), m, list) {
        (["ca", "pem"], "GET", false) => {
            return Ok(raw(
                "application/pem-certificate-chain",
                pki.issuing_ca_pem().to_owned(),
            ));
        }
        (["ca"], "GET", false) => {
            return Ok(raw("application/pkix-cert", pki.issuing_ca_der().to_vec()));
        }
        (["ca_chain"], "GET", false) => {
            return Ok(raw(
                "application/pem-certificate-chain",
                pki.ca_chain().concat(),
            ));
        }
        (["cert", "ca"], "GET", false) => {
            return Ok(answer(
                StatusCode::OK,
                json!({"certificate": pki.issuing_ca_pem(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
                vec![],
            ));
        }
        (["cert", "ca_chain"], "GET", false) => {
            return Ok(answer(
                StatusCode::OK,
                json!({"certificate": pki.ca_chain().concat(), "ca_chain": pki.ca_chain(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
                vec![],
            ));
        }
        (["crl"] | ["crl", "pem"] | ["cert", "crl"], "GET", false) => {
            let store = state.store().ok_or_else(ApiError::sealed)?;
            let p = pki.clone();
            // Usually the cached CRL; a build (signing, a TLS swap) only when none is current.
            let crl = blocking(move || Ok(p.crl(&*store, now)?)).await?;
            return Ok(match parts.as_slice() {
                ["crl"] => raw("application/pkix-crl", crl.der.clone()),
                ["crl", "pem"] => raw("application/x-pem-file", crl.pem()),
                _ => answer(
                    StatusCode::OK,
                    json!({"certificate": crl.pem(), "revocation_time": 0, "revocation_time_rfc3339": ""}),
                    vec![],
                ),
            });
        }
        (["renew"], "POST" | "PUT", false) => {
            return renew(&state, &pki, caller.as_ref(), addr, body, limit, now).await;
        }
        (["renew"], _, _) => return Err(method_not_allowed()),
        _ => {}
    }

    let store = state.store().ok_or_else(ApiError::sealed)?;
    let who = principal(&state, caller.as_ref(), addr.as_ref(), &headers).await?;
    let acl_path = format!("{MOUNT}/{rest}");
    match (parts.as_slice(), m, list) {
        (["roles"], _, true) => {
            // As Vault: a list's ACL path ends in '/', however the client spelled it.
            require(&state, &who, "pki/roles/", Operation::List).await?;
            let names = read_now(move || Ok(pki.role_names(&*store)?)).await?;
            if names.is_empty() {
                return Err(ApiError::not_found());
            }
            Ok(answer(StatusCode::OK, json!({ "keys": names }), vec![]))
        }
        (["roles", name], _, false) => {
            let name = (*name).to_owned();
            validate_role_name(&name).map_err(ApiError::bad_request)?;
            let existing = {
                let (p, s, n) = (pki.clone(), store.clone(), name.clone());
                read_now(move || Ok(p.role(&*s, &n)?)).await?
            };
            match m {
                "GET" => {
                    require(&state, &who, &acl_path, Operation::Read).await?;
                    let role = existing.ok_or_else(ApiError::not_found)?;
                    Ok(answer(StatusCode::OK, role.to_json(), vec![]))
                }
                "POST" | "PUT" => {
                    let op = if existing.is_some() {
                        Operation::Update
                    } else {
                        Operation::Create
                    };
                    require(&state, &who, &acl_path, op).await?;
                    let body = json_object(body, limit).await?;
                    let mut role = existing.unwrap_or_default();
                    role.apply(&body).map_err(bad)?;
                    let data = role.to_json();
                    let mut warnings = Vec::new();
                    if role.allow_any_name {
                        warnings.push(format!(
                            "role {name:?} has allow_any_name: it signs any host name its callers ask for"
                        ));
                    }
                    blocking(move || Ok(pki.put_role(&*store, &name, &role)?)).await?;
                    Ok(answer(StatusCode::OK, data, warnings))
                }
                "DELETE" => {
                    require(&state, &who, &acl_path, Operation::Delete).await?;
                    blocking(move || Ok(pki.delete_role(&*store, &name)?)).await?;
                    Ok(no_content())
                }
                _ => Err(method_not_allowed()),
            }
        }
        ([op @ ("sign" | "issue"), role_name], "POST" | "PUT", false) => {
            require(&state, &who, &acl_path, Operation::Update).await?;
            let body = json_object(body, limit).await?;
            check_fields(&body, &SIGN_FIELDS, &SIGN_TOLERATED)?;
            let req = name_request(&body)?;
            let role_name = (*role_name).to_owned();
            if *op == "sign" {
                let csr = opt_string(&body, "csr")?.unwrap_or_default();
                let p = pki.clone();
                let issued =
                    blocking(move || Ok(p.sign(&*store, &role_name, &csr, &req, now)?)).await?;
                let data = issued_json(&pki, &issued);
                Ok(answer(StatusCode::OK, Value::Object(data), issued.warnings))
            } else {
                if body.contains_key("csr") {
                    return Err(ApiError::bad_request(
                        "pki/issue generates the key; to have a CSR signed, use pki/sign",
                    ));
                }
                let p = pki.clone();
                let (issued, key) =
                    blocking(move || Ok(p.issue(&*store, &role_name, &req, now)?)).await?;
                let mut data = issued_json(&pki, &issued);
                let key_type = match key.key_type() {
                    keep_pki::KeyType::Rsa { .. } => "rsa",
                    keep_pki::KeyType::Ed25519 => "ed25519",
                    _ => "ec",
                };
                // Sent once, never stored or logged; the audit layer HMACs it like any value.
                let mut pem = key.to_pem_plaintext().to_string();
                data.insert("private_key".into(), Value::String(pem.clone()));
                pem.zeroize();
                data.insert("private_key_type".into(), json!(key_type));
                Ok(answer(StatusCode::OK, Value::Object(data), issued.warnings))
            }
        }
        (["revoke"], "POST" | "PUT", false) => {
            require(&state, &who, &acl_path, Operation::Update).await?;
            let body = json_object(body, limit).await?;
            check_fields(&body, &["serial_number", "certificate"], &["issuer_ref"])?;
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
        (["certs"], _, true) => {
            require(&state, &who, "pki/certs/", Operation::List).await?;
            let keys = read_now(move || Ok(pki.serials(&*store)?)).await?;
            if keys.is_empty() {
                return Err(ApiError::not_found());
            }
            Ok(answer(StatusCode::OK, json!({ "keys": keys }), vec![]))
        }
        (["cert", serial], "GET", false) => {
            require(&state, &who, &acl_path, Operation::Read).await?;
            let serial = (*serial).to_owned();
            let r = read_now(move || Ok(pki.record(&*store, &serial)?))
                .await?
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
        }
        (["tidy"], "POST" | "PUT", false) => {
            require(&state, &who, &acl_path, Operation::Update).await?;
            let body = json_object(body, limit).await?;
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
            let report = blocking(move || Ok(pki.tidy(&*store, opts, now)?)).await?;
            Ok(answer(
                StatusCode::ACCEPTED,
                serde_json::to_value(report).unwrap_or(Value::Null),
                vec!["Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.".into()],
            ))
        }
        (["roles" | "certs" | "revoke" | "tidy"], _, _)
        | (["roles" | "sign" | "issue" | "cert", _], _, _) => Err(method_not_allowed()),
        _ => Err(no_route(&rest)),
    }
}

/// `POST /v1/pki/renew` with `{"csr": PEM}`: a new certificate with the identity of the
/// connection's own client certificate. No token: the verified certificate is the credential.
async fn renew(
    state: &Arc<AppState>,
    pki: &Arc<Pki>,
    caller: Option<&Caller>,
    addr: Option<std::net::SocketAddr>,
    body: Body,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Response, ApiError> {
    let result: Result<Response, ApiError> = async {
        let peer = caller.map(|c| c.0.clone()).ok_or_else(|| {
            ApiError::client(
                StatusCode::FORBIDDEN,
                "renewal needs the client certificate to be renewed on the connection",
            )
        })?;
        let body = json_object(body, limit).await?;
        check_fields(&body, &["csr"], &[])?;
        let csr = opt_string(&body, "csr")?.unwrap_or_default();
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let p = pki.clone();
        let serial = peer.serial.clone();
        let issued = blocking(move || Ok(p.renew(&*store, &peer, &csr, now)?)).await?;
        audit_layer::note(|c| {
            c.role = Some(issued.record.role.clone());
            c.decision = Some((
                true,
                format!(
                    "renewal of {serial} by its holder: new serial {}",
                    issued.record.serial_number
                ),
            ));
        });
        Ok(answer(
            StatusCode::OK,
            Value::Object(issued_json(pki, &issued)),
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
                audit_layer::note(|c| {
                    c.decision = Some((false, format!("renewal refused: {reason}")))
                });
                pki_metrics::renewal(RenewalOutcome::Refused);
                reason
            };
            // A failing renewal is a security signal (issue 6): an expired or revoked
            // certificate trying to extend itself, or an agent about to lose access.
            let (subject, serial) = caller
                .map(|c| (c.0.subject.clone(), c.0.serial.clone()))
                .unwrap_or_default();
            state
                .alerts
                .renewal_failed(&subject, &serial, &reason, addr);
        }
    }
    result
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
