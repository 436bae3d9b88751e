//! The HTTP API: one route table, one module per API area.
//!
//! Handlers take [`AppState`], which tests build in memory, so most API tests call the router
//! directly; one loopback test per listener exercises the real mTLS path.

pub mod body;
pub mod envelope;
pub mod error;
pub mod kv;
pub mod sys;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use keep_tls::identity::PeerIdentity;

use crate::api::error::ApiError;
use crate::state::AppState;

/// What a request wants to do, in Vault's capability terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `read`
    Read,
    /// `create`/`update`
    Update,
    /// `patch`
    Patch,
    /// `delete`
    Delete,
    /// `list`
    List,
}

/// Authorization for this release: the break-glass admins named in the config have full access;
/// everyone else is denied (deny by default). Cert auth roles, tokens and policies arrive next
/// and plug in here.
pub fn authorize(
    state: &AppState,
    caller: Option<&crate::state::Caller>,
    _path: &str,
    _op: Operation,
) -> Result<(), ApiError> {
    let peer: Option<&PeerIdentity> = caller.map(|c| &*c.0);
    match peer {
        Some(p) if state.is_admin(p) => Ok(()),
        _ => Err(ApiError::permission_denied()),
    }
}

/// The route table.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/v1/sys/health",
            get(sys::health)
                .head(sys::health)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/sys/seal-status",
            get(sys::seal_status).fallback(method_not_allowed),
        )
        .route(
            "/v1/sys/seal",
            put(sys::seal).post(sys::seal).fallback(method_not_allowed),
        )
        .route(
            "/v1/sys/metrics",
            get(sys::metrics).fallback(method_not_allowed),
        )
        .route("/v1/secret/{*rest}", any(kv::handle))
        .fallback(not_found)
        .layer(middleware::from_fn(guard_path))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        format!(
            "no handler for route \"{}\"",
            req.uri().path().trim_start_matches("/v1/")
        ),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::client(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

/// Refuses paths that could alias or escape: `..`, `.`, empty segments, and percent-encoded
/// dots or slashes (which some layers decode later). Runs before routing, so nothing is stored.
async fn guard_path(req: Request, next: Next) -> Response {
    let raw = req.uri().path();
    let lower = raw.to_ascii_lowercase();
    let bad = lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
        || raw.contains('\\')
        || raw
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return ApiError::bad_request(format!(
            "invalid request path {raw:?}: empty, '.' and '..' segments and encoded dots or slashes are not allowed"
        ))
        .into_response();
    }
    next.run(req).await
}
