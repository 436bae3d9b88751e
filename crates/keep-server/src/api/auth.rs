//! `/v1/auth/cert/…` (roles, login) and `/v1/auth/token/…` (self-management, admin lookup).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::body::json_object;
use crate::api::envelope::{no_content, ok, request_id};
use crate::api::error::ApiError;
use crate::api::{Operation, Principal, Who, blocking, require};
use crate::auth::role::Role;
use crate::auth::token::{TokenEntry, Tokens};
use crate::auth::{select_role, validate_role_name};
use crate::state::{AppState, Caller, PeerAddr};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `LIST /v1/auth/cert/certs` and `GET ?list=true`.
pub async fn list_roles(
    State(state): State<Arc<AppState>>,
    Who(p): Who,
    method: Method,
) -> Result<Response, ApiError> {
    let _ = method;
    require(&state, &p, "auth/cert/certs/", Operation::List).await?;
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let st = state.clone();
    let names = blocking(move || {
        let roles = st
            .roles
            .all(&*store)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(roles.keys().cloned().collect::<Vec<_>>())
    })
    .await?;
    if names.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(ok(json!({ "keys": names })))
}

/// `auth/cert/certs/:name`: GET, POST/PUT, DELETE; LIST on the folder.
pub async fn role(
    State(state): State<Arc<AppState>>,
    Who(p): Who,
    method: Method,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let op = match method.as_str() {
        "GET" => Operation::Read,
        "POST" | "PUT" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => {
            return Err(ApiError::client(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported operation",
            ));
        }
    };
    require(&state, &p, &format!("auth/cert/certs/{name}"), op).await?;
    validate_role_name(&name).map_err(ApiError::bad_request)?;
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let limit = state.limits.max_request_bytes;
    let st = state.clone();
    match op {
        Operation::Read => {
            let role = blocking(move || {
                st.roles
                    .get(&*store, &name)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            let r = role.ok_or_else(ApiError::not_found)?;
            Ok(ok(role_json(&r.role)))
        }
        Operation::Delete => {
            blocking(move || {
                st.roles
                    .delete(&*store, &name)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            Ok(no_content())
        }
        _ => {
            let body = json_object(body, limit).await?;
            let warnings = blocking(move || {
                let mut role = st
                    .roles
                    .get(&*store, &name)
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map(|r| r.role.clone())
                    .unwrap_or_default();
                role.apply(&body).map_err(|e| ApiError::bad_request(e.0))?;
                let mut warnings = Vec::new();
                if !role.has_name_constraints() {
                    warnings.push(format!(
                        "role {name:?} has no name constraints (allowed_common_names, allowed_dns_sans, allowed_uri_sans, allowed_email_sans, allowed_organizational_units): any certificate that chains to its CA can log in with it"
                    ));
                }
                st.roles.put(&*store, &name, role).map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(warnings)
            })
            .await?;
            if warnings.is_empty() {
                Ok(no_content())
            } else {
                let body = json!({
                    "request_id": request_id(), "lease_id": "", "renewable": false, "lease_duration": 0,
                    "data": null, "wrap_info": null, "warnings": warnings, "auth": null,
                });
                Ok((StatusCode::OK, axum::Json(body)).into_response())
            }
        }
    }
}

fn role_json(r: &Role) -> Value {
    json!({
        "certificate": r.certificate,
        "allowed_common_names": r.allowed_common_names,
        "allowed_dns_sans": r.allowed_dns_sans,
        "allowed_uri_sans": r.allowed_uri_sans,
        "allowed_email_sans": r.allowed_email_sans,
        "allowed_organizational_units": r.allowed_organizational_units,
        "required_extensions": r.required_extensions,
        "display_name": r.display_name,
        "token_policies": r.token_policies,
        "policies": r.token_policies,
        "token_ttl": r.token_ttl,
        "ttl": r.token_ttl,
        "token_max_ttl": r.token_max_ttl,
        "max_ttl": r.token_max_ttl,
        "token_bound_cidrs": r.token_bound_cidrs,
        "token_no_default_policy": r.token_no_default_policy,
        "token_type": "service",
        "allow_tokenless": r.allow_tokenless,
        "pin_first_seen_address": r.pin_first_seen_address,
    })
}

/// `POST /v1/auth/cert/login`: a token for the connection's certificate.
pub async fn login(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    addr: Option<axum::Extension<PeerAddr>>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = json_object(body, state.limits.max_request_bytes).await?;
    // Vault documents `name`; vaultrs sends `cert_name`.
    let name = match body.get("name").or_else(|| body.get("cert_name")) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    let peer = caller.map(|c| c.0.0.clone()).ok_or_else(|| {
        ApiError::client(StatusCode::BAD_REQUEST, "no client certificate supplied")
    })?;
    crate::api::refuse_revoked(&state, &peer)?;
    let from = addr.as_ref().map(|a| a.0.0);
    if let Some(refused) = rate_limited(&state, &peer, from) {
        return Ok(refused);
    }
    let ip = addr.map(|a| a.0.0.ip());
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let st = state.clone();
    let (role, why) = {
        let store = store.clone();
        let peer = peer.clone();
        let name = name.clone();
        blocking(move || {
            let roles = st.roles.all(&*store).map_err(|e| ApiError::internal(e.to_string()))?;
            select_role(&roles, name.as_deref(), &peer, ip, false).map_err(|e| {
                use crate::alerts::{Access, source};
                source::on_refusal(&st.alerts, Access::Login, &roles, name.as_deref(), &peer, from, &e);
                tracing::info!(target: "keep::auth", cn = ?peer.common_name, fingerprint = %peer.fingerprint_sha256, reason = %e, "cert login refused");
                ApiError::bad_request(e.to_string())
            })
        })
        .await
        .inspect_err(|e| {
            let reason = e.errors.first().cloned().unwrap_or_default();
            crate::api::audit_layer::note(|c| c.decision = Some((false, format!("cert login refused: {reason}"))));
        })?
    };
    let pinned_address = if role.role.pin_first_seen_address {
        use crate::alerts::Access;
        use crate::api::pin;
        Some(pin::enforce(&state, &peer, from, &role.name, Access::Login).await?)
    } else {
        None
    };
    tracing::info!(target: "keep::auth", role = %role.name, why, cn = ?peer.common_name, fingerprint = %peer.fingerprint_sha256, "cert login");
    crate::api::audit_layer::note(|c| {
        c.role = Some(role.name.clone());
        c.decision = Some((true, format!("cert login: role {:?}, {why}", role.name)));
    });
    let r = &role.role;
    let mut metadata = BTreeMap::new();
    metadata.insert("cert_name".to_owned(), role.name.clone());
    metadata.insert(
        "common_name".to_owned(),
        peer.common_name.clone().unwrap_or_default(),
    );
    metadata.insert("serial_number".to_owned(), peer.serial.clone());
    metadata.insert(
        "fingerprint_sha256".to_owned(),
        peer.fingerprint_sha256.clone(),
    );
    let display = if r.display_name.is_empty() {
        role.name.clone()
    } else {
        r.display_name.clone()
    };
    let entry = TokenEntry {
        accessor: String::new(),
        policies: r.policies(),
        role: role.name.clone(),
        display_name: format!("cert-{display}"),
        metadata: metadata.clone(),
        created: 0,
        expires: 0,
        ttl: r.token_ttl,
        max_ttl: r.token_max_ttl,
        cert_fingerprint: peer.fingerprint_sha256.clone(),
        bound_cidrs: r.token_bound_cidrs.clone(),
        pinned_address,
    };
    let (token, e) = blocking(move || {
        Tokens::new(&*store)
            .create(entry, now())
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    let body = json!({
        "request_id": request_id(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": null,
        "wrap_info": null,
        "warnings": null,
        "auth": {
            "client_token": token,
            "accessor": e.accessor,
            "policies": e.policies,
            "token_policies": e.policies,
            "identity_policies": null,
            "metadata": metadata,
            "lease_duration": e.ttl,
            "renewable": true,
            "entity_id": "",
            "token_type": "service",
            "orphan": true,
            "mfa_requirement": null,
            "num_uses": 0,
        },
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The login rate limit (`auth.login_rate`), per client certificate: `None` to go on, or the
/// 429 to answer, in Vault's shape for a rate limit quota (`Retry-After` included).
fn rate_limited(
    state: &AppState,
    peer: &keep_tls::identity::PeerIdentity,
    from: Option<std::net::SocketAddr>,
) -> Option<Response> {
    use crate::auth::login_rate::{Verdict, retry_after_secs};
    let limiter = &state.auth.login_limiter;
    let Verdict::Limited {
        retry_after,
        storm_started,
    } = limiter.check(&peer.fingerprint_sha256, std::time::Instant::now())
    else {
        return None;
    };
    let rate = limiter.rate();
    state
        .alerts
        .login_rate_limited(peer, from, rate.per_second, rate.burst, storm_started);
    if storm_started {
        tracing::warn!(target: "keep::auth", cn = ?peer.common_name, fingerprint = %peer.fingerprint_sha256, "cert logins over auth.login_rate: refusing with 429");
    }
    crate::api::audit_layer::note(|c| {
        c.decision = Some((false, "cert login refused: over auth.login_rate".into()))
    });
    let mut resp = ApiError::client(
        StatusCode::TOO_MANY_REQUESTS,
        "request path \"auth/cert/login\": rate limit quota exceeded",
    )
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(retry_after_secs(retry_after)),
    );
    Some(resp)
}

fn lookup_json(token: Option<&str>, e: &TokenEntry, now: i64) -> Value {
    json!({
        "accessor": e.accessor,
        "creation_time": e.created,
        "creation_ttl": e.ttl,
        "display_name": e.display_name,
        "entity_id": "",
        "expire_time": rfc3339(e.expires),
        "explicit_max_ttl": e.max_ttl,
        "id": token.unwrap_or(""),
        "issue_time": rfc3339(e.created),
        "meta": e.metadata,
        "num_uses": 0,
        "orphan": true,
        "path": "auth/cert/login",
        "policies": e.policies,
        "renewable": true,
        "ttl": (e.expires - now).max(0),
        "type": "service",
    })
}

/// `auth/token/{lookup-self, renew-self, revoke-self, lookup, lookup-accessor, revoke-accessor,
/// tidy}`.
pub async fn token_op(
    State(state): State<Arc<AppState>>,
    Who(p): Who,
    method: Method,
    Path(op): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let path = format!("auth/token/{op}");
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let body = json_object(body, state.limits.max_request_bytes).await?;
    let t = now();
    match (op.as_str(), method.as_str()) {
        ("lookup-self", "GET" | "POST") => {
            require(&state, &p, &path, Operation::Read).await?;
            let Principal::Token { token, entry, .. } = &p else {
                return Err(ApiError::bad_request(
                    "no token on this request; lookup-self needs X-Vault-Token",
                ));
            };
            Ok(ok(lookup_json(Some(token), entry, t)))
        }
        ("renew-self", "POST" | "PUT") => {
            require(&state, &p, &path, Operation::Update).await?;
            let Principal::Token { token, .. } = &p else {
                return Err(ApiError::bad_request(
                    "no token on this request; renew-self needs X-Vault-Token",
                ));
            };
            let increment = crate::fields::ttl(&body, "increment")?;
            let token = token.clone();
            let e = blocking(move || {
                Tokens::new(&*store)
                    .renew(&token, increment, t)
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .ok_or_else(ApiError::permission_denied)
            })
            .await?;
            let body = json!({
                "request_id": request_id(), "lease_id": "", "renewable": false, "lease_duration": 0,
                "data": null, "wrap_info": null, "warnings": null,
                "auth": {
                    "client_token": "", "accessor": e.accessor, "policies": e.policies,
                    "token_policies": e.policies, "metadata": e.metadata,
                    "lease_duration": (e.expires - t).max(0), "renewable": true,
                    "entity_id": "", "token_type": "service", "orphan": true,
                },
            });
            Ok((StatusCode::OK, axum::Json(body)).into_response())
        }
        ("revoke-self", "POST" | "PUT") => {
            require(&state, &p, &path, Operation::Update).await?;
            let Principal::Token { token, .. } = &p else {
                return Err(ApiError::bad_request(
                    "no token on this request; revoke-self needs X-Vault-Token",
                ));
            };
            let token = token.clone();
            blocking(move || {
                Tokens::new(&*store)
                    .revoke(&token)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            Ok(no_content())
        }
        ("lookup", "POST" | "PUT" | "GET") => {
            require(&state, &p, &path, Operation::Update).await?;
            let token = match body.get("token") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err(ApiError::bad_request("missing token")),
            };
            let e = {
                let token = token.clone();
                blocking(move || {
                    Tokens::new(&*store)
                        .lookup(&token, t)
                        .map_err(|e| ApiError::internal(e.to_string()))
                })
                .await?
            };
            let e = e.ok_or_else(|| ApiError::bad_request("bad token"))?;
            Ok(ok(lookup_json(Some(&token), &e, t)))
        }
        ("lookup-accessor", "POST" | "PUT") | ("revoke-accessor", "POST" | "PUT") => {
            require(&state, &p, &path, Operation::Update).await?;
            let accessor = match body.get("accessor") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err(ApiError::bad_request("missing accessor")),
            };
            if op == "revoke-accessor" {
                let found = blocking(move || {
                    Tokens::new(&*store)
                        .revoke_accessor(&accessor)
                        .map_err(|e| ApiError::internal(e.to_string()))
                })
                .await?;
                if !found {
                    return Err(ApiError::bad_request("invalid accessor"));
                }
                return Ok(no_content());
            }
            let e = blocking(move || {
                Tokens::new(&*store)
                    .lookup_accessor(&accessor, t)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            let e = e.ok_or_else(|| ApiError::bad_request("invalid accessor"))?;
            Ok(ok(lookup_json(None, &e, t)))
        }
        ("tidy", "POST" | "PUT") => {
            require(&state, &p, &path, Operation::Update).await?;
            require_sudo(&state, &p, &path).await?;
            let Some(lease) = state.auth.tidy_lease.try_acquire() else {
                return Ok(accepted_with_warning(
                    StatusCode::OK,
                    "Tidy operation already in progress.",
                ));
            };
            tracing::info!(target: "keep::auth", "token tidy started by a request");
            tokio::spawn(crate::auth::tidy::sweep(store, lease));
            Ok(accepted_with_warning(
                StatusCode::ACCEPTED,
                "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.",
            ))
        }
        (_, _) => Err(ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{path}\""),
        )),
    }
}

/// Vault's `auth/token/tidy` is a sudo path: besides `update`, a policy must grant `sudo` on it
/// (admins pass).
async fn require_sudo(state: &Arc<AppState>, p: &Principal, path: &str) -> Result<(), ApiError> {
    let (policies, peer) = match p {
        Principal::Admin => return Ok(()),
        Principal::Anonymous => return Err(ApiError::permission_denied()),
        Principal::Token { entry, peer, .. } => (entry.policies.clone(), peer.clone()),
        Principal::Tokenless { policies, peer, .. } => (policies.clone(), peer.clone()),
    };
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let decision = state
        .policies
        .evaluate(
            &*store,
            &policies,
            &peer,
            path,
            keep_policy::Capability::Sudo,
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match decision {
        keep_policy::Decision::Allow { .. } => Ok(()),
        keep_policy::Decision::Deny { reason } => {
            crate::api::audit_layer::note(|c| {
                c.decision = Some((false, format!("{reason} (sudo)")))
            });
            Err(ApiError::permission_denied())
        }
    }
}

/// Vault's answer to a started background operation: no data, one warning.
fn accepted_with_warning(status: StatusCode, warning: &str) -> Response {
    let body = json!({
        "request_id": request_id(), "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": null, "wrap_info": null, "warnings": [warning], "auth": null,
    });
    (status, axum::Json(body)).into_response()
}
