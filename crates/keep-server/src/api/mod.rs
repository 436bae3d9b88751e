//! The HTTP API: one route table, one module per API area.
//!
//! Handlers take [`AppState`], which tests build in memory, so most API tests call the router
//! directly; one loopback test per listener exercises the real mTLS path.

pub mod audit_layer;
pub mod auth;
pub mod body;
pub mod envelope;
pub mod error;
pub mod kv;
pub mod limits;
pub mod pin;
pub mod pki;
pub mod policy;
pub mod sys;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use keep_tls::identity::PeerIdentity;

use crate::api::error::ApiError;
use crate::auth::token::TokenEntry;
use crate::state::{AppState, Caller};

/// What a request wants to do, in Vault's capability terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `read`
    Read,
    /// `create` (a write to a path that does not exist yet)
    Create,
    /// `update`
    Update,
    /// `patch`
    Patch,
    /// `delete`
    Delete,
    /// `list`
    List,
}

impl Operation {
    /// The policy capability this operation needs.
    pub fn capability(self) -> keep_policy::Capability {
        use keep_policy::Capability as C;
        match self {
            Operation::Read => C::Read,
            Operation::Create => C::Create,
            Operation::Update => C::Update,
            Operation::Patch => C::Patch,
            Operation::Delete => C::Delete,
            Operation::List => C::List,
        }
    }
}

/// Who is asking, resolved from the verified connection and the request's token.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A break-glass admin identity from the config: full access, no token.
    Admin,
    /// A valid token presented on the connection of the certificate it was issued to.
    Token {
        /// The token (kept for lookup-self/renew-self/revoke-self).
        token: String,
        /// Its stored entry.
        entry: TokenEntry,
        /// The connection's verified identity (for policy templates).
        peer: Arc<PeerIdentity>,
    },
    /// No token, but a role with `allow_tokenless` matches the connection's certificate.
    Tokenless {
        /// The role.
        role: String,
        /// Its policies.
        policies: Vec<String>,
        /// The connection's verified identity.
        peer: Arc<PeerIdentity>,
    },
    /// Nothing grants anything.
    Anonymous,
}

/// Runs storage *reads* in place on the async worker.
///
/// Reads are short (SQLite in WAL mode never waits for a writer, the barrier decrypts in
/// microseconds), and handing each one to the blocking pool and back cost more than the read
/// itself: the benchmark showed ~40% of server CPU in context switches. Writes, which fsync,
/// still go through [`blocking`]. `async` so call sites read the same as `blocking` and can
/// move between the two.
pub async fn read_now<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    f()
}

/// Runs blocking storage work (writes, which fsync) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-vault-token").and_then(|v| v.to_str().ok())
        && !v.trim().is_empty()
    {
        return Some(v.trim().to_owned());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
}

/// Refuses a connection whose client certificate is revoked (403): by this server's PKI mount,
/// or in any CRL the listener has loaded (`listener.tls.crl_file`, the mount's CRL).
///
/// A revocation must end access at once, not at the next handshake: a keep-alive connection
/// opened before the revocation keeps its TLS session, so every request checks the mount's
/// in-memory revoked set (which holds even if putting the new CRL into the TLS config failed)
/// and the listener's current CRLs (a certificate added to `crl_file` applies once the file is
/// reloaded). Tokens are bound to the certificate they were issued to, so this refuses them
/// too, and login refuses to mint new ones.
pub fn refuse_revoked(state: &AppState, peer: &PeerIdentity) -> Result<(), ApiError> {
    let by_mount = match &state.pki {
        Some(pki) => {
            let store = state.store();
            pki.is_revoked(store.as_deref(), peer)
                .map_err(|e| ApiError::internal(format!("revoked set: {e}")))?
        }
        None => false,
    };
    let listed = if by_mount {
        None
    } else {
        state.tls.as_ref().and_then(|tls| tls.revoked(&peer.chain))
    };
    if !by_mount && listed.is_none() {
        return Ok(());
    }
    match &listed {
        Some(l) => {
            tracing::warn!(target: "keep::auth", serial = %peer.serial, subject = %peer.subject, listed = %l, "request on a connection whose client certificate is revoked")
        }
        None => {
            tracing::warn!(target: "keep::auth", serial = %peer.serial, subject = %peer.subject, "request on a connection whose client certificate is revoked")
        }
    }
    audit_layer::note(|c| c.decision = Some((false, "the client certificate is revoked".into())));
    Err(ApiError::client(
        StatusCode::FORBIDDEN,
        "permission denied: the client certificate is revoked",
    ))
}

/// Resolves the principal of a request. A token is honoured only on a connection presenting
/// the certificate it was issued to, and only from its bound CIDRs; anything else is 403.
pub async fn principal(
    state: &Arc<AppState>,
    caller: Option<&Caller>,
    addr: Option<&std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Some(peer) = caller.map(|c| c.0.clone()) else {
        return Ok(Principal::Anonymous);
    };
    refuse_revoked(state, &peer)?;
    if state.is_admin(&peer) {
        audit_layer::note(|c| c.admin = true);
        return Ok(Principal::Admin);
    }
    let ip = addr.map(std::net::SocketAddr::ip);
    let Some(store) = state.store() else {
        return Err(ApiError::sealed());
    };
    if let Some(token) = token_from(headers) {
        let t = token.clone();
        let s = store.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let entry = read_now(move || {
            crate::auth::token::Tokens::new(&*s)
                .lookup(&t, now)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?
        .ok_or_else(ApiError::permission_denied)?;
        if entry.cert_fingerprint != peer.fingerprint_sha256 {
            tracing::warn!(target: "keep::auth", accessor = %entry.accessor, presented_by = %peer.fingerprint_sha256, "token presented on a connection with another client certificate");
            return Err(ApiError::client(
                axum::http::StatusCode::FORBIDDEN,
                "permission denied: this token is bound to a different client certificate",
            ));
        }
        if !entry.bound_cidrs.is_empty() {
            let ok = ip.is_some_and(|ip| {
                entry
                    .bound_cidrs
                    .iter()
                    .filter_map(|c| crate::auth::role::parse_cidr(c))
                    .any(|c| crate::auth::role::cidr_contains(c, ip))
            });
            if !ok {
                state.alerts.outside_bound_cidrs(
                    crate::alerts::Access::TokenUse,
                    &peer,
                    addr.copied(),
                    &entry.role,
                    &entry.bound_cidrs,
                );
                return Err(ApiError::permission_denied());
            }
        }
        pin::check_token(state, &entry, &peer, addr.copied())?;
        audit_layer::note(|c| {
            c.role = Some(entry.role.clone());
            c.accessor = Some(entry.accessor.clone());
            c.policies = entry.policies.clone();
        });
        return Ok(Principal::Token { token, entry, peer });
    }
    let st = state.clone();
    let p = peer.clone();
    let from = addr.copied();
    let chosen = read_now(move || {
        let roles = st
            .roles
            .all(&*store)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(crate::auth::select_role(&roles, None, &p, ip, true)
            .inspect_err(|e| {
                use crate::alerts::{Access, source};
                source::on_refusal(&st.alerts, Access::Tokenless, &roles, None, &p, from, e);
            })
            .ok())
    })
    .await?;
    Ok(match chosen {
        Some((role, _)) => {
            if role.role.pin_first_seen_address {
                use crate::alerts::Access;
                pin::enforce(state, &peer, from, &role.name, Access::Tokenless).await?;
            }
            audit_layer::note(|c| {
                c.role = Some(role.name.clone());
                c.policies = role.role.policies();
            });
            Principal::Tokenless {
                role: role.name.clone(),
                policies: role.role.policies(),
                peer,
            }
        }
        None => Principal::Anonymous,
    })
}

/// The request's [`Principal`], resolved once from the verified connection (the [`Caller`] and
/// [`PeerAddr`] extensions the listener inserts) and the request's token. Handlers take this
/// instead of repeating the resolution.
pub struct Who(pub Principal);

impl axum::extract::FromRequestParts<Arc<AppState>> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Who, ApiError> {
        let caller = parts.extensions.get::<Caller>().cloned();
        let addr = parts
            .extensions
            .get::<crate::state::PeerAddr>()
            .map(|a| a.0);
        principal(state, caller.as_ref(), addr.as_ref(), &parts.headers)
            .await
            .map(Who)
    }
}

/// Checks that `p` may perform `op` on `path` (a Vault API path without `/v1/`). Deny by
/// default: admins pass; tokens and tokenless roles need a policy that grants the capability.
pub async fn require(
    state: &Arc<AppState>,
    p: &Principal,
    path: &str,
    op: Operation,
) -> Result<(), ApiError> {
    let (policies, peer) = match p {
        Principal::Admin => {
            audit_layer::note(|c| c.decision = Some((true, "break-glass admin identity".into())));
            return Ok(());
        }
        Principal::Anonymous => {
            audit_layer::note(|c| {
                c.decision = Some((
                    false,
                    "no token, no admin identity and no tokenless role for this certificate".into(),
                ))
            });
            return Err(ApiError::permission_denied());
        }
        Principal::Token { entry, peer, .. } => (entry.policies.clone(), peer.clone()),
        Principal::Tokenless { policies, peer, .. } => (policies.clone(), peer.clone()),
    };
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let st = state.clone();
    let path = path.to_owned();
    let decision = read_now(move || {
        st.policies
            .evaluate(&*store, &policies, &peer, &path, op.capability())
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    match decision {
        keep_policy::Decision::Allow { matched } => {
            audit_layer::note(|c| c.decision = Some((true, matched)));
            Ok(())
        }
        keep_policy::Decision::Deny { reason } => {
            tracing::info!(target: "keep::authz", ?op, %reason, "denied");
            audit_layer::note(|c| c.decision = Some((false, reason)));
            Err(ApiError::permission_denied())
        }
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
        .route(
            "/v1/sys/audit-hash/{*path}",
            post(sys::audit_hash)
                .put(sys::audit_hash)
                .fallback(method_not_allowed),
        )
        .route("/v1/secret/{*rest}", any(kv::handle))
        .route(
            "/v1/auth/cert/login",
            post(auth::login)
                .put(auth::login)
                .fallback(method_not_allowed),
        )
        .route("/v1/auth/cert/certs", list_route(auth::list_roles))
        .route("/v1/auth/cert/certs/", list_route(auth::list_roles))
        .route("/v1/auth/cert/certs/{name}", any(auth::role))
        .route("/v1/auth/token/{op}", any(auth::token_op))
        .route("/v1/sys/policies/acl", list_route(policy::list))
        .route("/v1/sys/policies/acl/", list_route(policy::list))
        .route("/v1/sys/policies/acl/{name}", any(policy::acl))
        .route(
            "/v1/sys/policy",
            any(policy::list_legacy).layer(middleware::from_fn(list_or_get_only)),
        )
        .route("/v1/sys/policy/{name}", any(policy::legacy))
        .route("/v1/pki/{*rest}", any(pki::handle))
        .fallback(not_found)
        .layer(middleware::from_fn(error::vault_shaped))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit_layer::audit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::guard_body,
        ))
        .layer(middleware::from_fn(guard_path))
        .with_state(state)
}

/// Whether a request is a Vault list: method `LIST`, or `GET` with `?list=true` (or `1`).
pub fn is_list_request(method: &axum::http::Method, uri: &axum::http::Uri) -> bool {
    method.as_str() == "LIST"
        || (method == axum::http::Method::GET
            && uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| matches!(kv, "list=true" | "list=1"))))
}

/// A route that only lists. axum's method filters know no `LIST`, so the route takes any method
/// and this layer lets through only list requests ([`is_list_request`]); every other method,
/// `OPTIONS`, `TRACE` and `PROPFIND` included, gets the 405 the other routes answer.
fn list_route<H, T>(handler: H) -> axum::routing::MethodRouter<Arc<AppState>>
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    any(handler).layer(middleware::from_fn(list_only))
}

async fn list_only(req: Request, next: Next) -> Response {
    if is_list_request(req.method(), req.uri()) {
        next.run(req).await
    } else {
        method_not_allowed().await.into_response()
    }
}

/// The older `sys/policy` lists on a plain `GET` as well as on a list request.
async fn list_or_get_only(req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET || is_list_request(req.method(), req.uri()) {
        next.run(req).await
    } else {
        method_not_allowed().await.into_response()
    }
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

/// Refuses paths over [`limits::MAX_PATH_BYTES`] and paths that could alias or escape: `..`,
/// `.`, empty segments, and percent-encoded dots or slashes (which some layers decode later).
/// Runs before routing, so nothing is stored.
async fn guard_path(req: Request, next: Next) -> Response {
    let raw = req.uri().path();
    if let Some(refused) = limits::path_too_long(raw) {
        return refused;
    }
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
