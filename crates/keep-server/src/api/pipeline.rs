//! The request pipeline: from the HTTP request to the handler and back, with the audit lines
//! around it.
//!
//! For every API request it
//!
//! 1. reads the request once into a [`VaultRequest`] (operation, path, query, body, caller,
//!    token, request id) and hands that to the router;
//! 2. writes the audit request line from it, before any handler acts — except for health,
//!    seal-status and metrics, which must keep answering while the audit sink is broken (that is
//!    how operators learn it is broken);
//! 3. routes `LIST` and `GET ?list=…` alike: a list request reaches the route table with the
//!    method `LIST`, so the two spellings cannot take different paths;
//! 4. after the handler, stamps the request id and mount type into the JSON body the handler
//!    left as a value ([`JsonBody`]), serializes it, logs a 5xx's cause with the request id,
//!    and writes the audit response line from the same values — the principal and decision the
//!    handler returned ([`Facts`]) and the body value, HMAC'd — without parsing anything again.
//!
//! Fail closed: if the request line cannot be written (or the room for its response line cannot
//! be reserved), the handler never runs: 500 "the request was refused", which is then the
//! truth. If the response line cannot be written, the client gets a 500 instead of the result,
//! and the message says what happened: for a successful change, "the change was applied; its
//! audit response line could not be written" (see `audit.rs` for when that can still happen).
//! Both are bounded by the audit log's write timeout, so a stuck sink never hangs a request.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::envelope::new_request_id;
use crate::api::error::ApiError;
use crate::api::reply::{Facts, early, finish as serialize};
use crate::api::request::{Operation, Payload, VaultRequest, list_method};
use crate::audit::{
    AuditLog, AuthInfo, ClientCert, Decision, Hashed, RequestEntry, RequestInfo, ResponseEntry,
};
use crate::state::AppState;

/// Paths without audit lines (module docs).
const UNAUDITED: [&str; 3] = ["sys/health", "sys/seal-status", "sys/metrics"];

/// Our own responses are small JSON documents; a non-JSON one (a CRL, a PEM chain) is read
/// back for its audit line up to this size.
const RESPONSE_READ_LIMIT: usize = 16 << 20;

fn refused(e: &crate::audit::AuditError) -> Response {
    tracing::error!(error = %e, "audit log write failed; request refused (fail closed)");
    plain(ApiError::client(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the audit log cannot be written; the request was refused",
    ))
}

/// The response line failed after the handler ran: say truthfully what happened.
fn withheld(e: &crate::audit::AuditError, op: Operation, status: StatusCode) -> Response {
    let msg = if op.is_read_only() {
        "the audit log cannot be written; the result was withheld (nothing was changed)".to_owned()
    } else if status.is_success() || status.is_redirection() {
        "the change was applied; its audit response line could not be written".to_owned()
    } else {
        format!(
            "the request failed with status {}; its audit response line could not be written",
            status.as_u16()
        )
    };
    tracing::error!(error = %e, %status, "audit response line failed; result withheld");
    plain(ApiError::client(StatusCode::INTERNAL_SERVER_ERROR, msg))
}

/// An error answered by the pipeline itself.
fn plain(e: ApiError) -> Response {
    early(e)
}

fn hashed_payload(log: &AuditLog, p: &Payload) -> Option<Hashed> {
    match p {
        Payload::Empty => None,
        Payload::Json(v) => Some(log.hashed_value(v)),
        Payload::Invalid { text, .. } => Some(log.hashed(text)),
    }
}

/// The middleware (module docs).
pub async fn pipeline(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    // The limits layer in front has read the whole body into memory already.
    let bytes = match to_bytes(body, state.limits.max_request_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return plain(ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body too large: the limit is {} bytes",
                    state.limits.max_request_bytes
                ),
            ));
        }
    };
    let id = new_request_id();
    let request = match VaultRequest::parse(&parts, &bytes, id.clone()) {
        Ok(r) => r,
        Err(e) => return serialize(e.into_response(), &id, "").0,
    };
    drop(bytes);
    let path = request.path.clone();
    let op = request.op;
    let log = state
        .audit()
        .filter(|_| !UNAUDITED.contains(&path.as_str()));
    let mut audited = None;
    if let Some(log) = &log {
        let info = RequestInfo {
            id: id.clone(),
            operation: op.as_str().to_owned(),
            path: path.clone(),
            remote_address: request.addr.map(|a| a.ip().to_string()),
            client_cert: request.peer.as_deref().map(ClientCert::from_peer),
        };
        let token = request.token.as_ref().map(|t| log.hashed(t.expose()));
        let entry = RequestEntry {
            request: info,
            client_token: token,
            data: hashed_payload(log, &request.payload),
            ..RequestEntry::default()
        };
        // Held until the response line is written: the room reserved for it in the file.
        match log.log_request_async(&entry).await {
            Ok(slot) => audited = Some((entry, slot)),
            Err(e) => return refused(&e),
        }
    }
    if op == Operation::List {
        parts.method = list_method();
    }
    parts.extensions.insert(request);
    let resp = next.run(Request::from_parts(parts, Body::empty())).await;
    let (mut resp, value) = serialize(resp, &id, &path);
    let Some((log, (entry, _slot))) = log.zip(audited) else {
        return resp;
    };
    let facts = resp.extensions_mut().remove::<Facts>().unwrap_or_default();
    let status = resp.status();
    let (resp, value) = match value {
        Some(v) => (resp, Some(v)),
        // Not one of our JSON bodies (a PEM chain, a CRL, axum's own rejection): read back.
        None => {
            let (rparts, rbody) = resp.into_parts();
            let rbytes = match to_bytes(rbody, RESPONSE_READ_LIMIT).await {
                Ok(b) => b,
                Err(e) => return plain(ApiError::internal(format!("response body: {e}"))),
            };
            let v = match Payload::parse(&rbytes) {
                Payload::Empty => None,
                Payload::Json(v) => Some(v),
                Payload::Invalid { text, .. } => Some(Value::String(text)),
            };
            (Response::from_parts(rparts, Body::from(rbytes)), v)
        }
    };
    let error = if status.is_client_error() || status.is_server_error() {
        value
            .as_ref()
            .and_then(|d| d.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        None
    };
    let resp_entry = ResponseEntry {
        request: entry.request,
        client_token: entry.client_token,
        auth: Some(AuthInfo {
            role: facts.role,
            token_accessor: facts.accessor.as_deref().map(|a| log.hashed(a)),
            policies: facts.policies,
            admin: facts.admin,
        }),
        decision: facts.decision.map(|(allowed, reason)| {
            if allowed {
                Decision::allow(reason)
            } else {
                Decision::deny(reason)
            }
        }),
        status: status.as_u16(),
        data: value.as_ref().map(|v| log.hashed_response(v)),
        error,
    };
    if let Err(e) = log.log_response_async(&resp_entry).await {
        return withheld(&e, op, status);
    }
    resp
}
