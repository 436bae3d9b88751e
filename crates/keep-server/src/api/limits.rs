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
//!
//! **HTTP/2: the answer before the reset.** An answer sent before the request body has been
//! read is followed, as RFC 9113 §8.1 allows (and Go's server, hence Vault, does), by
//! `RST_STREAM(NO_ERROR)` telling the client to stop sending. Some clients still uploading
//! when it arrives (curl before 8.x, Debian 12's among them) report the reset and drop the
//! answer they already received. So over HTTP/2 the listener wraps each request body in
//! [`DrainOnDrop`]: when an answer leaves the body unread (this layer's 413, the path
//! limit's 400, any answer given before reading), the rest is read and discarded in the
//! background — at most [`DRAIN_MAX_BYTES`] and within `body_read_timeout` — so the stream
//! ends normally once the client has sent it, and the client reads its status and Vault's
//! error body. A rest known to be larger (a `Content-Length` far over the limit), a request
//! that waits for `100 Continue`, and a body that timed out (408) are not drained: the reset
//! follows the answer at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
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
    let no_drain = req.extensions().get::<NoDrain>().cloned();
    let (parts, body) = req.into_parts();
    let timeout = state.limits.body_read_timeout;
    // Pinned here, not moved into the timeout, so the body outlives a timeout until its
    // `NoDrain` is set.
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    let bytes = match tokio::time::timeout(timeout, collect.as_mut()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(limit, None),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the request body could not be read");
            return early(ApiError::bad_request("the request body could not be read"));
        }
        Err(_elapsed) => {
            // A client this slow would only hold its stream longer: reset it with the answer.
            if let Some(flag) = no_drain {
                flag.0.store(true, Ordering::Relaxed);
            }
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

/// The most of an unread request body [`DrainOnDrop`] reads and discards after an early
/// answer (module docs). Past it the stream is reset, as it would have been without draining.
pub const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Set (by [`guard_body`] on a body timeout) to stop the [`DrainOnDrop`] of this request's
/// body from draining it. In the request's extensions when the body is a [`DrainOnDrop`].
#[derive(Clone, Debug, Default)]
pub struct NoDrain(Arc<AtomicBool>);

/// An HTTP/2 request body that, when dropped unread, reads and discards the rest in a
/// background task (module docs) so the client gets the answer, not only a reset stream.
pub struct DrainOnDrop<B: HttpBody<Data = Bytes> + Send + Unpin + 'static> {
    inner: Option<B>,
    read: u64,
    declared: Option<u64>,
    waits_for_continue: bool,
    timeout: Duration,
    no_drain: NoDrain,
}

impl<B: HttpBody<Data = Bytes> + Send + Unpin + 'static> DrainOnDrop<B> {
    /// Wraps the body of `req` (an HTTP/2 request) and adds the [`NoDrain`] switch to its
    /// extensions; a drain stops after `timeout` (`listener.limits.body_read_timeout`).
    pub fn wrap(req: axum::http::Request<B>, timeout: Duration) -> axum::http::Request<Self> {
        let declared = declared_length(req.headers());
        let waits_for_continue = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let no_drain = NoDrain::default();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(no_drain.clone());
        axum::http::Request::from_parts(
            parts,
            DrainOnDrop {
                inner: Some(body),
                read: 0,
                declared,
                waits_for_continue,
                timeout,
                no_drain,
            },
        )
    }

    /// Whether the unread rest is worth draining: not finished, not refused for slowness, not
    /// waiting for `100 Continue`, and not known to be larger than the drain budget.
    fn worth_draining(&self, body: &B) -> bool {
        !body.is_end_stream()
            && !self.waits_for_continue
            && !self.no_drain.0.load(Ordering::Relaxed)
            && self
                .declared
                .is_none_or(|n| n.saturating_sub(self.read) <= DRAIN_MAX_BYTES)
    }
}

impl<B: HttpBody<Data = Bytes> + Send + Unpin + 'static> HttpBody for DrainOnDrop<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.read = this.read.saturating_add(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl<B: HttpBody<Data = Bytes> + Send + Unpin + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if !self.worth_draining(&body) {
            return;
        }
        // Dropped outside a runtime (never in the server): nothing to drain with.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let timeout = self.timeout;
        runtime.spawn(async move {
            let drain = async {
                let mut body = body;
                let mut discarded = 0u64;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        discarded = discarded.saturating_add(data.len() as u64);
                        if discarded > DRAIN_MAX_BYTES {
                            break;
                        }
                    }
                }
            };
            // Dropping the body (at the end, or on the timeout) lets the stream be reset.
            let _ = tokio::time::timeout(timeout, drain).await;
        });
    }
}
