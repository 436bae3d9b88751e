//! `/v1/auth/cert/…` (roles, login) and `/v1/auth/token/…` (self-management, admin lookup).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::blocking::{blocking, store};
use crate::api::envelope::{envelope, no_content, ok};
use crate::api::error::ApiError;
use crate::api::reply::{Answer, Facts};
use crate::api::request::{Operation, VaultRequest};
use crate::auth::access::{self, Principal};
use crate::auth::role::Role;
use crate::auth::token::{TokenEntry, Tokens};
use crate::auth::{select_role, validate_role_name};
use crate::state::AppState;

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
pub async fn list_roles(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/cert/certs/", Operation::List);
    access.answer((|| {
        let names: Vec<String> = state.roles.all(&*store(&state)?)?.keys().cloned().collect();
        if names.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(ok(json!({ "keys": names })))
    })())
}

/// `GET auth/cert/certs/:name`.
pub async fn read_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, &req.path, Operation::Read);
    access.answer((|| {
        validate_role_name(&name).map_err(ApiError::bad_request)?;
        let r = state
            .roles
            .get(&*store(&state)?, &name)?
            .ok_or_else(ApiError::not_found)?;
        Ok(ok(role_json(&r.role)))
    })())
}

/// `DELETE auth/cert/certs/:name`.
pub async fn delete_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, &req.path, Operation::Delete);
    access.answer(
        async {
            validate_role_name(&name).map_err(ApiError::bad_request)?;
            let store = store(&state)?;
            let st = state.clone();
            blocking(move || Ok(st.roles.delete(&*store, &name)?)).await?;
            Ok(no_content())
        }
        .await,
    )
}

/// `POST`/`PUT auth/cert/certs/:name`: creates or updates a role (fields not given keep their
/// value).
pub async fn write_role(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, &req.path, Operation::Update);
    access.answer(
        async {
            validate_role_name(&name).map_err(ApiError::bad_request)?;
            let body = req.object()?;
            let store = store(&state)?;
            let st = state.clone();
            let warnings = blocking(move || {
                let mut role = st
                    .roles
                    .get(&*store, &name)?
                    .map(|r| r.role.clone())
                    .unwrap_or_default();
                role.apply(&body).map_err(|e| ApiError::bad_request(e.0))?;
                let mut warnings = Vec::new();
                if !role.has_name_constraints() {
                    warnings.push(format!(
                        "role {name:?} has no name constraints (allowed_common_names, allowed_dns_sans, allowed_uri_sans, allowed_email_sans, allowed_organizational_units): any certificate that chains to its CA can log in with it"
                    ));
                }
                st.roles.put(&*store, &name, role)?;
                Ok(warnings)
            })
            .await?;
            if warnings.is_empty() {
                Ok(no_content())
            } else {
                Ok(envelope(StatusCode::OK, Value::Null, warnings, Value::Null))
            }
        }
        .await,
    )
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
pub async fn login(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let mut facts = Facts::default();
    let result = login_inner(&state, &req, &mut facts).await;
    Answer::new(facts, result)
}

/// The login; `facts` gets the role and the decision for the audit line as they are found.
async fn login_inner(
    state: &Arc<AppState>,
    req: &VaultRequest,
    facts: &mut Facts,
) -> Result<Response, ApiError> {
    let body = req.object()?;
    // Vault documents `name`; vaultrs sends `cert_name`.
    let name = match body.get("name").or_else(|| body.get("cert_name")) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    let peer = req.peer()?.clone();
    let refusal = |d: access::Denied, facts: &mut Facts| {
        *facts = (*d.facts).clone();
        d.error
    };
    if let Err(d) = access::refuse_revoked(state, &peer) {
        return Err(refusal(d, facts));
    }
    let from = req.addr;
    if let Some(refused) = rate_limited(state, &peer, from) {
        *facts = Facts::default().decided(false, "cert login refused: over auth.login_rate");
        return Ok(refused);
    }
    let ip = from.map(|a| a.ip());
    let store = store(state)?;
    let roles = state.roles.all(&*store)?;
    let (role, why) = match select_role(&roles, name.as_deref(), &peer, ip, false) {
        Ok(chosen) => chosen,
        Err(e) => {
            use crate::alerts::{Access, source};
            source::on_refusal(
                &state.alerts,
                Access::Login,
                &roles,
                name.as_deref(),
                &peer,
                from,
                &e,
            );
            tracing::info!(target: "keep::auth", cn = ?peer.common_name, fingerprint = %peer.fingerprint_sha256, reason = %e, "cert login refused");
            *facts = Facts::default().decided(false, format!("cert login refused: {e}"));
            return Err(ApiError::bad_request(e.to_string()));
        }
    };
    facts.role = Some(role.name.clone());
    let pinned_address = if role.role.pin_first_seen_address {
        use crate::alerts::Access;
        match crate::auth::pin::enforce(state, &peer, from, &role.name, Access::Login).await {
            Ok(a) => Some(a),
            Err(r) => {
                facts.decision = r.reason.map(|reason| (false, reason));
                return Err(r.error);
            }
        }
    } else {
        None
    };
    tracing::info!(target: "keep::auth", role = %role.name, why, cn = ?peer.common_name, fingerprint = %peer.fingerprint_sha256, "cert login");
    facts.decision = Some((true, format!("cert login: role {:?}, {why}", role.name)));
    let r = &role.role;
    let mut metadata = BTreeMap::new();
    metadata.insert("cert_name".to_owned(), role.name.clone());
    metadata.insert(
        "common_name".to_owned(),
        peer.common_name.clone().unwrap_or_default(),
    );
    // As Vault's cert auth writes them: the serial in decimal, the key ids in colon hex.
    let ids = peer
        .chain
        .first()
        .and_then(|leaf| crate::auth::cert_ids::of_der(leaf))
        .unwrap_or_default();
    metadata.insert("serial_number".to_owned(), ids.serial_decimal);
    metadata.insert("subject_key_id".to_owned(), ids.subject_key_id);
    metadata.insert("authority_key_id".to_owned(), ids.authority_key_id);
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
    let (token, e) = blocking(move || Ok(Tokens::new(&*store).create(entry, now())?)).await?;
    facts.accessor = Some(e.accessor.clone());
    facts.policies = e.policies.clone();
    Ok(envelope(
        StatusCode::OK,
        Value::Null,
        Vec::new(),
        json!({
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
        }),
    ))
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

/// The token a self-operation acts on, or the 400 Vault gives a request without one.
fn own_token<'a>(
    who: &'a Principal,
    op: &str,
) -> Result<&'a crate::api::request::ClientToken, ApiError> {
    match who {
        Principal::Token { token, .. } => Ok(token),
        _ => Err(ApiError::bad_request(format!(
            "no token on this request; {op} needs X-Vault-Token"
        ))),
    }
}

/// `GET`/`POST auth/token/lookup-self`.
pub async fn lookup_self(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/token/lookup-self", Operation::Read);
    let result = match &access.who {
        Principal::Token { token, entry, .. } => {
            Ok(ok(lookup_json(Some(token.expose()), entry, now())))
        }
        who => own_token(who, "lookup-self").map(|_| ok(Value::Null)),
    };
    access.answer(result)
}

/// `POST`/`PUT auth/token/renew-self` (`increment`).
pub async fn renew_self(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/token/renew-self", Operation::Update);
    let result = async {
        let token = own_token(&access.who, "renew-self")?.clone();
        let increment = crate::fields::ttl(&req.object()?, "increment")?;
        let store = store(&state)?;
        let t = now();
        let renewing = token.clone();
        let e = blocking(move || {
            Tokens::new(&*store)
                .renew(renewing.expose(), increment, t)?
                .ok_or_else(ApiError::permission_denied)
        })
        .await?;
        // As Vault: the renewed token is the caller's own, and it comes back in the answer.
        Ok(envelope(
            StatusCode::OK,
            Value::Null,
            Vec::new(),
            json!({
                "client_token": token.expose(), "accessor": e.accessor, "policies": e.policies,
                "token_policies": e.policies, "metadata": e.metadata,
                "lease_duration": (e.expires - t).max(0), "renewable": true,
                "entity_id": "", "token_type": "service", "orphan": true,
            }),
        ))
    }
    .await;
    access.answer(result)
}

/// `POST`/`PUT auth/token/revoke-self`.
pub async fn revoke_self(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/token/revoke-self", Operation::Update);
    let result = async {
        let token = own_token(&access.who, "revoke-self")?.clone();
        let store = store(&state)?;
        blocking(move || Ok(Tokens::new(&*store).revoke(token.expose())?)).await?;
        Ok(no_content())
    }
    .await;
    access.answer(result)
}

/// `GET`/`POST`/`PUT auth/token/lookup` with `token`.
pub async fn lookup(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    // As in Vault: `GET ?token=…` is a read of the path, `POST {"token": …}` an update.
    let op = if req.op == Operation::Read {
        Operation::Read
    } else {
        Operation::Update
    };
    let access = admit!(state, req, "auth/token/lookup", op);
    access.answer((|| {
        let body = req.object()?;
        let token = match (body.get("token"), req.query("token")) {
            (Some(Value::String(s)), _) if !s.is_empty() => s.as_str(),
            (None, Some(q)) if !q.is_empty() => q,
            _ => return Err(ApiError::bad_request("missing token")),
        };
        let t = now();
        let e = Tokens::new(&*store(&state)?)
            .lookup(token, t)?
            .ok_or_else(|| ApiError::bad_request("bad token"))?;
        Ok(ok(lookup_json(Some(token), &e, t)))
    })())
}

fn accessor_of(req: &VaultRequest) -> Result<String, ApiError> {
    match req.object()?.get("accessor") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::bad_request("missing accessor")),
    }
}

/// `POST`/`PUT auth/token/lookup-accessor` with `accessor`.
pub async fn lookup_accessor(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/token/lookup-accessor", Operation::Update);
    access.answer((|| {
        let accessor = accessor_of(&req)?;
        let t = now();
        let e = Tokens::new(&*store(&state)?)
            .lookup_accessor(&accessor, t)?
            .ok_or_else(|| ApiError::bad_request("invalid accessor"))?;
        Ok(ok(lookup_json(None, &e, t)))
    })())
}

/// `POST`/`PUT auth/token/revoke-accessor` with `accessor`.
pub async fn revoke_accessor(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "auth/token/revoke-accessor", Operation::Update);
    let result = async {
        let accessor = accessor_of(&req)?;
        let store = store(&state)?;
        let found = blocking(move || Ok(Tokens::new(&*store).revoke_accessor(&accessor)?)).await?;
        if !found {
            return Err(ApiError::bad_request("invalid accessor"));
        }
        Ok(no_content())
    }
    .await;
    access.answer(result)
}

/// `POST`/`PUT auth/token/tidy`: a sudo path (besides `update`, a policy must grant `sudo`).
pub async fn tidy(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    const PATH: &str = "auth/token/tidy";
    let access = admit!(state, req, PATH, Operation::Update);
    let access = match access::authorize_sudo(&state, access, PATH) {
        Ok(a) => a,
        Err(denied) => return Answer::from(denied),
    };
    let result = (|| {
        let store = store(&state)?;
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
    })();
    access.answer(result)
}

/// Vault's answer to a started background operation: no data, one warning.
fn accepted_with_warning(status: StatusCode, warning: &str) -> Response {
    envelope(status, Value::Null, vec![warning.to_owned()], Value::Null)
}
