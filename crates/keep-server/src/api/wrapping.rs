//! Response wrapping, as Vault does it: `X-Vault-Wrap-TTL` on a request that returns data
//! replaces the response with a `wrap_info` envelope holding a single-use wrapping token
//! ([`layer`]); `sys/wrapping/{wrap,unwrap,lookup,rewrap}` create, redeem, inspect and renew
//! such tokens. The wrapped response is stored under the barrier ([`crate::wrapping`]).
//!
//! Who may do what, as in Vault:
//! - **unwrap** with the wrapping token as the client token (`X-Vault-Token`) needs no policy:
//!   the wrapping token is the authority (the mTLS connection is still required and a
//!   revoked client certificate is refused). With the wrapping token in the body (`token`), the
//!   caller unwraps as a third party and needs `update` on `sys/wrapping/unwrap` (keep's
//!   `default` policy grants it, as Vault's does). The same goes for **rewrap** (with
//!   `sys/wrapping/rewrap`) and **lookup** (Vault serves lookup without any token; keep does
//!   too when the token is in the body).
//! - **wrap** needs `update` on `sys/wrapping/wrap` (in `default`).
//!
//! Wrapping tokens are not bound to a client certificate (keep's session tokens are): handing
//! a secret to another party is what they are for.
//!
//! Audit: the response line carries `wrap_info` HMAC'd (the token and accessor as for tokens),
//! never the wrapped data; an unwrap's response line carries the unwrapped data HMAC'd.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::body::{JsonBody, json as json_reply};
use crate::api::envelope::{map_body, ok};
use crate::api::error::ApiError;
use crate::api::reply::{Answer, Facts};
use crate::api::request::{Operation, VaultRequest};
use crate::auth::access;
use crate::state::AppState;
use crate::wrapping::{self as store, Wrapped};

/// Vault's error for a wrapping token that is unknown, used or expired.
pub const INVALID_TOKEN: &str = "wrapping token is not valid or does not exist";

fn invalid() -> ApiError {
    ApiError::bad_request(INVALID_TOKEN)
}

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

/// The envelope Vault answers a wrapped request with: no data, the `wrap_info`.
fn envelope(token: &str, w: &Wrapped) -> Response {
    let info = json!({
        "token": token,
        "accessor": w.accessor,
        "ttl": w.ttl,
        "creation_time": rfc3339(w.created),
        "creation_path": w.creation_path,
        "wrapped_accessor": w.wrapped_accessor,
    });
    map_body(ok(Value::Null), |b| {
        b.insert("wrap_info".into(), info);
    })
}

/// Stores `body` under a new wrapping token and returns the envelope.
fn wrap(state: &AppState, body: &Value, ttl: u64, path: &str) -> Result<Response, ApiError> {
    let st = state.store().ok_or_else(ApiError::sealed)?;
    let wrapped_accessor = body
        .get("auth")
        .and_then(|a| a.get("accessor"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let entry = Wrapped {
        accessor: String::new(),
        created: now(),
        ttl,
        creation_path: path.to_owned(),
        wrapped_accessor,
        // A `Value` always serializes.
        response: serde_json::to_string(body).unwrap_or_default(),
    };
    let (token, entry) = store::create(&*st, entry)?;
    Ok(envelope(&token, &entry))
}

/// The middleware (module docs): a 200 answer with `data` or `auth` to a request with
/// `X-Vault-Wrap-TTL` is stored and replaced by its `wrap_info` envelope. If storing fails,
/// the client gets the error, never the data.
pub async fn layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let wanted = req
        .extensions()
        .get::<VaultRequest>()
        .and_then(|r| r.wrap_ttl.map(|t| (t, r.path.clone())));
    let mut resp = next.run(req).await;
    let Some((ttl, path)) = wanted else {
        return resp;
    };
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let wraps = match resp.extensions().get::<JsonBody>() {
        Some(JsonBody(Value::Object(m))) => {
            m.contains_key("request_id")
                && (m.get("data").is_some_and(|d| !d.is_null())
                    || m.get("auth").is_some_and(|a| !a.is_null()))
        }
        _ => false,
    };
    if !wraps {
        return resp;
    }
    let facts = resp.extensions_mut().remove::<Facts>();
    let Some(JsonBody(body)) = resp.extensions_mut().remove::<JsonBody>() else {
        return resp;
    };
    let mut out = match wrap(&state, &body, ttl, &path) {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    if let Some(f) = facts {
        out.extensions_mut().insert(f);
    }
    out
}

/// `POST sys/wrapping/wrap`: wraps the request body (policy: `update` on `sys/wrapping/wrap`).
pub async fn wrap_data(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    access.answer((|| {
        if req.wrap_ttl.is_none() {
            return Err(ApiError::bad_request(
                "endpoint requires response wrapping to be used",
            ));
        }
        Ok(ok(Value::Object(req.object()?)))
    })())
}

/// The wrapping token of an unwrap/rewrap/lookup and the facts of the decision: from the body
/// (a third party, admitted by policy on the request path) or the client token (which is the
/// wrapping token itself: no policy).
async fn wrapping_token(
    state: &Arc<AppState>,
    req: &VaultRequest,
    tokenless_ok: bool,
) -> Result<(String, Facts), Answer> {
    let body = req.object().map_err(Answer::error)?;
    match body.get("token") {
        Some(Value::String(t)) if !t.trim().is_empty() => {
            let facts = if tokenless_ok && req.token.is_none() {
                // Vault's lookup is unauthenticated.
                if let Some(peer) = &req.peer {
                    access::refuse_revoked(state, peer).map_err(Answer::from)?;
                }
                Facts::default().decided(true, "lookup needs no token")
            } else {
                access::admit(state, req, &req.path, Operation::Update)
                    .await
                    .map_err(Answer::from)?
                    .facts
            };
            Ok((t.trim().to_owned(), facts))
        }
        Some(Value::String(_)) | None => {
            let Some(t) = &req.token else {
                // Vault: lookup (unauthenticated) says what is missing; unwrap and rewrap
                // without any token are a request without a client token.
                return Err(Answer::error(if tokenless_ok {
                    ApiError::bad_request("missing \"token\" value in input")
                } else {
                    ApiError::permission_denied()
                }));
            };
            if let Some(peer) = &req.peer {
                access::refuse_revoked(state, peer).map_err(Answer::from)?;
            }
            Ok((
                t.expose().to_owned(),
                Facts::default().decided(true, "the wrapping token is the client token"),
            ))
        }
        Some(_) => Err(Answer::error(ApiError::bad_request(
            "token must be a string",
        ))),
    }
}

/// `POST sys/wrapping/unwrap`: the wrapped response, once.
pub async fn unwrap(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (token, facts) = match wrapping_token(&state, &req, false).await {
        Ok(t) => t,
        Err(a) => return a,
    };
    let result = (|| {
        let st = state.store().ok_or_else(ApiError::sealed)?;
        let entry = store::take(&*st, &token, now())?.ok_or_else(invalid)?;
        let body: Value = serde_json::from_str(&entry.response)
            .map_err(|e| ApiError::internal(format!("wrapped response: {e}")))?;
        Ok(json_reply(StatusCode::OK, body))
    })();
    Answer::new(facts, result)
}

/// `POST sys/wrapping/lookup`: the token's `creation_path`, `creation_time`, `creation_ttl`.
pub async fn lookup(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (token, facts) = match wrapping_token(&state, &req, true).await {
        Ok(t) => t,
        Err(a) => return a,
    };
    let result = (|| {
        let st = state.store().ok_or_else(ApiError::sealed)?;
        let entry = store::peek(&*st, &token, now())?.ok_or_else(invalid)?;
        Ok(ok(json!({
            "creation_path": entry.creation_path,
            "creation_time": rfc3339(entry.created),
            "creation_ttl": entry.ttl,
        })))
    })();
    Answer::new(facts, result)
}

/// `POST sys/wrapping/rewrap`: the same response under a new wrapping token with the same
/// TTL and creation path; the old token stops working.
pub async fn rewrap(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let (token, facts) = match wrapping_token(&state, &req, false).await {
        Ok(t) => t,
        Err(a) => return a,
    };
    let result = (|| {
        let st = state.store().ok_or_else(ApiError::sealed)?;
        let old = store::take(&*st, &token, now())?.ok_or_else(invalid)?;
        let fresh = Wrapped {
            accessor: String::new(),
            created: now(),
            ..old
        };
        let (token, entry) = store::create(&*st, fresh)?;
        Ok(envelope(&token, &entry))
    })();
    Answer::new(facts, result)
}
