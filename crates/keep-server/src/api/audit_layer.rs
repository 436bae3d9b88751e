//! The audit layer: one JSON line before a request is acted on, one after its response, for
//! every API request except health, seal-status and metrics (which must keep answering while
//! the audit sink is broken — that is how operators learn it is broken).
//!
//! Fail closed: if the request line cannot be written (or the room for its response line cannot
//! be reserved), the handler never runs: 500 "the request was refused", which is then the
//! truth. If the response line cannot be written, the client gets a 500 instead of the result,
//! and the message says what happened: for a successful change, "the change was applied; its
//! audit response line could not be written" (see `audit.rs` for when that can still happen).
//! Both are bounded by the audit log's write timeout, so a stuck sink never hangs a request.
//!
//! Handlers add what only they know (role, token accessor, policies, the authorization decision)
//! through [`note`], via a task-local context scoped to the request.

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::audit::{AuthInfo, ClientCert, Decision, RequestEntry, RequestInfo, ResponseEntry};
use crate::state::{AppState, Caller, PeerAddr};

/// What handlers learn about a request that belongs in its audit lines.
#[derive(Clone, Debug, Default)]
pub struct AuditCtx {
    /// The request id shared by both lines and the response envelope.
    pub request_id: String,
    /// Cert auth role, when one applied.
    pub role: Option<String>,
    /// Token accessor (hashed when written).
    pub accessor: Option<String>,
    /// Policies in force.
    pub policies: Vec<String>,
    /// Whether the caller is a break-glass admin.
    pub admin: bool,
    /// The authorization decision and its reason.
    pub decision: Option<(bool, String)>,
}

tokio::task_local! {
    static AUDIT_CTX: Arc<Mutex<AuditCtx>>;
}

/// Records facts about the current request for its audit lines (no-op outside a request).
pub fn note(f: impl FnOnce(&mut AuditCtx)) {
    let _ = AUDIT_CTX.try_with(|c| {
        if let Ok(mut g) = c.lock() {
            f(&mut g);
        }
    });
}

/// The current request's id, if the audit layer assigned one.
pub fn current_request_id() -> Option<String> {
    AUDIT_CTX
        .try_with(|c| c.lock().ok().map(|g| g.request_id.clone()))
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
}

const UNAUDITED: [&str; 3] = ["/v1/sys/health", "/v1/sys/seal-status", "/v1/sys/metrics"];

fn refused(e: &crate::audit::AuditError) -> Response {
    tracing::error!(error = %e, "audit log write failed; request refused (fail closed)");
    ApiError::client(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the audit log cannot be written; the request was refused",
    )
    .into_response()
}

/// The response line failed after the handler ran: say truthfully what happened.
fn withheld(e: &crate::audit::AuditError, operation: &str, status: StatusCode) -> Response {
    let msg = if matches!(operation, "read" | "list") {
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
    ApiError::client(StatusCode::INTERNAL_SERVER_ERROR, msg).into_response()
}

fn json_or_text(bytes: &[u8]) -> Option<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

/// The middleware.
pub async fn audit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let Some(log) = state
        .audit()
        .filter(|_| !UNAUDITED.contains(&path.as_str()))
    else {
        return next.run(req).await;
    };
    let id = crate::api::envelope::new_request_id();
    let (parts, body) = req.into_parts();
    let limit = state.limits.max_request_bytes;
    let query_list = parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "list=true"));
    let operation = match parts.method.as_str() {
        "LIST" => "list".to_owned(),
        "GET" if query_list => "list".to_owned(),
        "GET" | "HEAD" => "read".to_owned(),
        "DELETE" => "delete".to_owned(),
        "PATCH" => "patch".to_owned(),
        _ => "update".to_owned(),
    };
    let caller = parts.extensions.get::<Caller>().map(|c| c.0.clone());
    let info = RequestInfo {
        id: id.clone(),
        operation,
        path: path.trim_start_matches("/v1/").to_owned(),
        remote_address: parts
            .extensions
            .get::<PeerAddr>()
            .map(|a| a.0.ip().to_string()),
        client_cert: caller.as_deref().map(ClientCert::from_peer),
    };
    let token = parts
        .headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .map(|t| log.hashed(t.trim()));
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let entry = RequestEntry {
                request: info,
                client_token: token,
                error: Some(format!("request body larger than {limit} bytes")),
                ..RequestEntry::default()
            };
            // No response line follows; the slot is released on return.
            if let Err(e) = log.log_request_async(&entry).await {
                return refused(&e);
            }
            return ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large: the limit is {limit} bytes"),
            )
            .into_response();
        }
    };
    let entry = RequestEntry {
        request: info.clone(),
        client_token: token.clone(),
        data: json_or_text(&bytes).map(|v| log.hashed_value(&v)),
        ..RequestEntry::default()
    };
    // Held until the response line is written: the room reserved for it in the audit file.
    let _slot = match log.log_request_async(&entry).await {
        Ok(slot) => slot,
        Err(e) => return refused(&e),
    };
    let ctx = Arc::new(Mutex::new(AuditCtx {
        request_id: id,
        ..AuditCtx::default()
    }));
    let req = Request::from_parts(parts, Body::from(bytes));
    let resp = AUDIT_CTX.scope(ctx.clone(), next.run(req)).await;
    let (rparts, rbody) = resp.into_parts();
    // Our own handlers produce these bodies; they are small JSON documents.
    let rbytes = match to_bytes(rbody, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("response body: {e}")).into_response(),
    };
    let c = ctx.lock().map(|g| g.clone()).unwrap_or_default();
    let data = json_or_text(&rbytes);
    let error = if rparts.status.is_client_error() || rparts.status.is_server_error() {
        data.as_ref()
            .and_then(|d| d.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        None
    };
    let operation = info.operation.clone();
    let resp_entry = ResponseEntry {
        request: info,
        client_token: token,
        auth: Some(AuthInfo {
            role: c.role.clone(),
            token_accessor: c.accessor.as_deref().map(|a| log.hashed(a)),
            policies: c.policies.clone(),
            admin: c.admin,
        }),
        decision: c.decision.as_ref().map(|(allowed, reason)| {
            if *allowed {
                Decision::allow(reason.clone())
            } else {
                Decision::deny(reason.clone())
            }
        }),
        status: rparts.status.as_u16(),
        data: data.map(|v| log.hashed_value(&v)),
        error,
    };
    if let Err(e) = log.log_response_async(&resp_entry).await {
        return withheld(&e, &operation, rparts.status);
    }
    Response::from_parts(rparts, Body::from(rbytes))
}
