//! Request limits enforced before any handler (and before the audit layer) runs: the request
//! path's length, the declared and actual body size, and the time allowed to receive the body.
//!
//! A body is refused *before it is read* when its `Content-Length` is over
//! `listener.limits.max_request_bytes`: 413 at once, also for `Expect: 100-continue` (hyper sends
//! `100 Continue` only when the body is first polled, and this layer answers without polling
//! it) and over HTTP/2. Otherwise the whole body is read here, at most `max_request_bytes` and
//! within `listener.limits.body_read_timeout` (408 when the client is slower), so a stalled
//! upload cannot hold a connection, and every handler downstream gets a body already in memory.
//!
//! Each refusal is counted in `keep_http_requests_refused_total{reason}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use metrics::{counter, describe_counter};

use crate::api::error::ApiError;
use crate::api::reply::early;
use crate::state::AppState;

/// The longest request path accepted, in bytes (`/v1/` included). Every storage key is derived
/// from the path plus a short prefix, and the store refuses keys over 1024 bytes, so paths are
/// bounded well below that and a longer one is a client error, never a storage failure.
pub const MAX_PATH_BYTES: usize = 768;

/// Requests refused by these limits, by reason.
pub const REQUESTS_REFUSED: &str = "keep_http_requests_refused_total";

/// The `reason` labels of [`REQUESTS_REFUSED`].
const REASONS: [&str; 3] = ["body_too_large", "body_timeout", "path_too_long"];

/// Registers the help text and every reason at zero (call once after installing the recorder).
pub fn describe_metrics() {
    describe_counter!(
        REQUESTS_REFUSED,
        "Requests refused before any handler ran: body_too_large (413), body_timeout (408), path_too_long (400)"
    );
    for reason in REASONS {
        counter!(REQUESTS_REFUSED, "reason" => reason).increment(0);
    }
}

fn refused(reason: &'static str, status: StatusCode, msg: String) -> Response {
    counter!(REQUESTS_REFUSED, "reason" => reason).increment(1);
    early(ApiError::client(status, msg))
}

/// The path-length check of [`guard_path`](super::guard_path): `Some(response)` when too long.
pub(super) fn path_too_long(raw: &str) -> Option<Response> {
    (raw.len() > MAX_PATH_BYTES).then(|| {
        refused(
            "path_too_long",
            StatusCode::BAD_REQUEST,
            format!(
                "request path too long: {} bytes, the limit is {MAX_PATH_BYTES} bytes",
                raw.len()
            ),
        )
    })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn too_large(limit: usize, declared: Option<u64>) -> Response {
    let declared = declared
        .map(|n| format!(" (Content-Length {n})"))
        .unwrap_or_default();
    refused(
        "body_too_large",
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large{declared}: the limit is {limit} bytes"),
    )
}

/// The middleware (module docs).
pub async fn guard_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.limits.max_request_bytes;
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit, declared);
    }
    let (parts, body) = req.into_parts();
    let timeout = state.limits.body_read_timeout;
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(limit, None),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the request body could not be read");
            return early(ApiError::bad_request("the request body could not be read"));
        }
        Err(_elapsed) => {
            return refused(
                "body_timeout",
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {timeout:?} (the body read timeout)"),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
