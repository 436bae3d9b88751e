//! The HTTP API: one route table, one module per API area.
//!
//! A request walks one straight path: the listener (mTLS, the verified identity as the
//! [`Caller`](crate::state::Caller) extension) → [`guard_path`] → [`limits::guard_body`] →
//! [`pipeline::pipeline`] (the typed [`request::VaultRequest`], the audit lines) → the route
//! table below, where every route names its verbs → a handler, which admits the request
//! ([`crate::auth::access`]), acts and returns an [`reply::Answer`].
//!
//! Handlers take [`AppState`], which tests build in memory, so most API tests call the router
//! directly; one loopback test per listener exercises the real mTLS path.

/// Admits a request for an operation on a path ([`crate::auth::access::admit`]), or returns
/// the refusal as the handler's answer. `admit!(state, req, op)` checks the request's own path.
macro_rules! admit {
    ($state:expr, $req:expr, $op:expr) => {
        admit!($state, $req, &$req.path, $op)
    };
    ($state:expr, $req:expr, $path:expr, $op:expr) => {
        match crate::auth::access::admit(&$state, &$req, $path, $op).await {
            Ok(a) => a,
            Err(denied) => return crate::api::reply::Answer::from(denied),
        }
    };
}

pub mod auth;
pub mod blocking;
pub mod body;
pub mod envelope;
pub mod error;
pub mod introspect;
pub mod kv;
pub mod limits;
pub mod mounts;
pub mod pipeline;
pub mod pki;
pub mod policy;
pub mod reply;
pub mod request;
pub mod sys;
pub mod wrapping;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::{Operation, VaultRequest};
use crate::state::AppState;

pub use crate::api::blocking::blocking;
use crate::api::request::method_not_allowed;

type BoxAnswer = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// The list verb of a route. axum's method filters know no `LIST`; the pipeline gives every
/// list request (`LIST`, `GET ?list=true`) the method `LIST`, which reaches a route's fallback,
/// and this lets through only those: any other verb the route does not name (`OPTIONS`,
/// `TRACE`, `PROPFIND` …) gets the one 405.
fn list<F, Fut>(
    handler: F,
) -> impl FnOnce(State<Arc<AppState>>, VaultRequest) -> BoxAnswer + Clone + Send + Sync + 'static
where
    F: FnOnce(State<Arc<AppState>>, VaultRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    move |state: State<Arc<AppState>>, req: VaultRequest| -> BoxAnswer {
        if req.op == Operation::List {
            Box::pin(handler(state, req))
        } else {
            Box::pin(async { Answer::error(method_not_allowed()) })
        }
    }
}

/// A route that only lists.
fn list_only<F, Fut>(handler: F) -> MethodRouter<Arc<AppState>>
where
    F: FnOnce(State<Arc<AppState>>, VaultRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    MethodRouter::new().fallback(list(handler))
}

/// The 405 for every verb a route does not name.
async fn not_allowed() -> ApiError {
    method_not_allowed()
}

/// `POST` and `PUT`, which Vault treats alike.
fn write<H, T>(handler: H) -> MethodRouter<Arc<AppState>>
where
    H: axum::handler::Handler<T, Arc<AppState>> + Clone,
    T: 'static,
{
    post(handler.clone()).put(handler)
}

/// The route table: every route names its verbs; a verb it does not name is 405.
pub fn router(state: Arc<AppState>) -> Router {
    let table = Router::new()
        // sys/
        .route("/v1/sys/health", get(sys::health))
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/sys/seal", write(sys::seal))
        .route("/v1/sys/metrics", get(sys::metrics))
        .route("/v1/sys/audit-hash/{*path}", write(sys::audit_hash))
        // sys/ introspection (mounts.rs, introspect.rs) and response wrapping (wrapping.rs)
        .route("/v1/sys/init", get(introspect::init))
        .route(
            "/v1/sys/capabilities-self",
            write(introspect::capabilities_self),
        )
        .route("/v1/sys/capabilities", write(introspect::capabilities))
        .route("/v1/sys/mounts", get(mounts::list))
        .route(
            "/v1/sys/mounts/{*path}",
            get(mounts::read_mount_or_tune)
                .merge(write(mounts::refuse_change))
                .delete(mounts::refuse_change),
        )
        .route("/v1/sys/remount", write(mounts::refuse_change))
        .route("/v1/sys/auth", get(mounts::list_auth))
        .route(
            "/v1/sys/auth/{*path}",
            get(mounts::read_auth_or_tune)
                .merge(write(mounts::refuse_change))
                .delete(mounts::refuse_change),
        )
        .route("/v1/sys/internal/ui/mounts/{*path}", get(mounts::ui_mount))
        .route("/v1/sys/wrapping/wrap", write(wrapping::wrap_data))
        .route("/v1/sys/wrapping/unwrap", write(wrapping::unwrap))
        .route("/v1/sys/wrapping/lookup", write(wrapping::lookup))
        .route("/v1/sys/wrapping/rewrap", write(wrapping::rewrap))
        .route("/v1/sys/policies/acl", list_only(policy::list))
        .route("/v1/sys/policies/acl/", list_only(policy::list))
        .route(
            "/v1/sys/policies/acl/{name}",
            get(policy::read)
                .merge(write(policy::write))
                .delete(policy::delete)
                .fallback(list(policy::list_named)),
        )
        .route(
            "/v1/sys/policy",
            get(policy::list_legacy).fallback(list(policy::list_legacy)),
        )
        .route(
            "/v1/sys/policy/{name}",
            get(policy::read_legacy)
                .merge(write(policy::write_legacy))
                .delete(policy::delete_legacy)
                .fallback(list(policy::list_named_legacy)),
        )
        // secret/ (KV v2)
        .route(
            "/v1/secret/data/{*path}",
            get(kv::read)
                .merge(write(kv::write))
                .patch(kv::patch)
                .delete(kv::delete_latest)
                .fallback(list(kv::list)),
        )
        .route("/v1/secret/data", list_only(kv::list))
        .route("/v1/secret/data/", list_only(kv::list))
        .route(
            "/v1/secret/metadata/{*path}",
            get(kv::read_metadata)
                .merge(write(kv::write_metadata))
                .patch(kv::write_metadata)
                .delete(kv::delete_all)
                .fallback(list(kv::list)),
        )
        .route("/v1/secret/metadata", list_only(kv::list))
        .route("/v1/secret/metadata/", list_only(kv::list))
        .route("/v1/secret/subkeys/{*path}", get(kv::subkeys))
        .route("/v1/secret/delete/{*path}", write(kv::delete_versions))
        .route("/v1/secret/undelete/{*path}", write(kv::undelete_versions))
        .route("/v1/secret/destroy/{*path}", write(kv::destroy_versions))
        .route(
            "/v1/secret/config",
            get(kv::read_config).merge(write(kv::write_config)),
        )
        // auth/cert and auth/token
        .route("/v1/auth/cert/login", write(auth::login))
        .route("/v1/auth/cert/certs", list_only(auth::list_roles))
        .route("/v1/auth/cert/certs/", list_only(auth::list_roles))
        .route(
            "/v1/auth/cert/certs/{name}",
            get(auth::read_role)
                .merge(write(auth::write_role))
                .delete(auth::delete_role),
        )
        .route(
            "/v1/auth/token/lookup-self",
            get(auth::lookup_self).post(auth::lookup_self),
        )
        .route("/v1/auth/token/renew-self", write(auth::renew_self))
        .route("/v1/auth/token/revoke-self", write(auth::revoke_self))
        .route(
            "/v1/auth/token/lookup",
            get(auth::lookup).merge(write(auth::lookup)),
        )
        .route(
            "/v1/auth/token/lookup-accessor",
            write(auth::lookup_accessor),
        )
        .route(
            "/v1/auth/token/revoke-accessor",
            write(auth::revoke_accessor),
        )
        .route("/v1/auth/token/tidy", write(auth::tidy))
        .merge(if state.pki.is_some() {
            pki_routes()
        } else {
            Router::new()
        });
    let api = table
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .layer(middleware::from_fn(error::vault_shaped))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            wrapping::layer,
        ))
        .with_state(state.clone());
    // The layers of a router run after it has chosen the route and the verb, so the pipeline
    // (which gives list requests their method) wraps the routed table from outside.
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            pipeline::pipeline,
        ))
        .layer(middleware::from_fn_with_state(state, limits::guard_body))
        .layer(middleware::from_fn(guard_path))
        .layer(middleware::map_response(no_store))
}

/// Every answer carries `Cache-Control: no-store`, as Vault's do: a secret, a token or a
/// listing must not be kept by a proxy or a client cache.
async fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The `pki/` routes, present only when the server has a PKI mount (`pki:` in the config):
/// without one, every `pki/` path is an unknown route (404), as in Vault.
fn pki_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/pki/ca/pem", get(pki::ca_pem))
        .route("/v1/pki/ca", get(pki::ca_der))
        .route("/v1/pki/ca_chain", get(pki::ca_chain))
        .route("/v1/pki/cert/ca", get(pki::cert_ca))
        .route("/v1/pki/cert/ca_chain", get(pki::cert_ca_chain))
        .route("/v1/pki/crl", get(pki::crl_der))
        .route("/v1/pki/crl/pem", get(pki::crl_pem))
        .route("/v1/pki/cert/crl", get(pki::cert_crl))
        .route("/v1/pki/renew", write(pki::renew))
        .route("/v1/pki/roles", list_only(pki::list_roles))
        .route("/v1/pki/roles/", list_only(pki::list_roles))
        .route(
            "/v1/pki/roles/{name}",
            get(pki::read_role)
                .merge(write(pki::write_role))
                .delete(pki::delete_role),
        )
        .route("/v1/pki/sign/{role}", write(pki::sign))
        .route("/v1/pki/issue/{role}", write(pki::issue))
        .route("/v1/pki/revoke", write(pki::revoke))
        .route("/v1/pki/certs", list_only(pki::list_certs))
        .route("/v1/pki/certs/", list_only(pki::list_certs))
        .route("/v1/pki/cert/{serial}", get(pki::read_cert))
        .route("/v1/pki/tidy", write(pki::tidy))
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
        return reply::early(ApiError::bad_request(format!(
            "invalid request path {raw:?}: empty, '.' and '..' segments and encoded dots or slashes are not allowed"
        )));
    }
    next.run(req).await
}
