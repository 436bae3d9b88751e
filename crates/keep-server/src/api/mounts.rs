//! Mount introspection, read-only: `sys/mounts`, `sys/mounts/:path`, `sys/mounts/:path/tune`,
//! `sys/auth`, `sys/auth/:path`, `sys/auth/:path/tune` and `sys/internal/ui/mounts/:path`, in
//! Vault's shapes (the `data` object, and its keys copied to the top level as Vault does).
//!
//! keep's mounts are fixed: `secret/` (KV v2), `pki/` (only when the server has a PKI mount),
//! `sys/`, and the auth methods `cert/` and `token/`. Nothing else is listed, because nothing
//! else is served. Enabling, disabling, moving or tuning a mount is a deliberate difference
//! from Vault: those writes are admitted by policy as Vault would, then refused with a 400
//! that says so ([`refuse_change`]).
//!
//! A mount's `uuid` and `accessor` derive from the cluster identity ([`crate::cluster`]), so
//! they are stable across restarts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::api::envelope::{ok, ok_flat};
use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::VaultRequest;
use crate::auth::access::{self, Principal};
use crate::cluster::ClusterIdentity;
use crate::state::AppState;

/// The system's default and maximum lease TTL (Vault's 32 days), as tune reports them.
const SYSTEM_TTL: u64 = crate::auth::token::SYSTEM_MAX_TTL;

/// One of keep's mounts.
struct Mount {
    /// `secret/`, `cert/` …, with the trailing slash, as Vault keys them.
    path: &'static str,
    /// Vault's engine type.
    kind: &'static str,
    /// The accessor prefix (`kv`, `pki`, `system`, `auth_cert`, `auth_token`).
    accessor_kind: &'static str,
    description: &'static str,
    options: Value,
    /// Extra `config` fields (the token method's `token_type`).
    config: Map<String, Value>,
}

fn secret_mounts(state: &AppState) -> Vec<Mount> {
    let mut m = vec![Mount {
        path: "secret/",
        kind: "kv",
        accessor_kind: "kv",
        description: "key/value secret storage",
        options: json!({"version": "2"}),
        config: Map::new(),
    }];
    if state.pki.is_some() {
        m.push(Mount {
            path: "pki/",
            kind: "pki",
            accessor_kind: "pki",
            description: "keep's PKI mount",
            options: Value::Null,
            config: Map::new(),
        });
    }
    m.push(Mount {
        path: "sys/",
        kind: "system",
        accessor_kind: "system",
        description: "system endpoints used for control, policy and debugging",
        options: Value::Null,
        config: Map::new(),
    });
    m
}

fn auth_mounts() -> Vec<Mount> {
    let mut token_config = Map::new();
    token_config.insert("token_type".into(), json!("default-service"));
    vec![
        Mount {
            path: "cert/",
            kind: "cert",
            accessor_kind: "auth_cert",
            description: "TLS client certificate authentication",
            options: Value::Null,
            config: Map::new(),
        },
        Mount {
            path: "token/",
            kind: "token",
            accessor_kind: "auth_token",
            description: "token based credentials",
            options: Value::Null,
            config: token_config,
        },
    ]
}

/// A mount as `sys/mounts` lists it (Vault's `mountInfo`).
fn info(m: &Mount, id: &ClusterIdentity, auth: bool) -> Value {
    let key = if auth {
        format!("auth/{}", m.path)
    } else {
        m.path.to_owned()
    };
    let mut config = Map::new();
    config.insert("default_lease_ttl".into(), json!(0));
    config.insert("max_lease_ttl".into(), json!(0));
    config.insert("force_no_cache".into(), json!(false));
    config.extend(m.config.clone());
    json!({
        "accessor": id.accessor(m.accessor_kind, &key),
        "config": config,
        "description": m.description,
        "external_entropy_access": false,
        "local": false,
        "options": m.options,
        "plugin_version": "",
        "running_plugin_version": format!("{}+builtin", crate::api::sys::VERSION),
        "running_sha256": "",
        "seal_wrap": false,
        "type": m.kind,
        "uuid": id.derived_uuid(&key),
    })
}

/// Vault's envelope with `data`'s keys copied to the top level.
fn with_top_level(data: Map<String, Value>) -> Result<axum::response::Response, ApiError> {
    Ok(ok_flat(data))
}

fn identity(state: &AppState) -> Result<ClusterIdentity, ApiError> {
    let store = state.store().ok_or_else(ApiError::sealed)?;
    Ok(crate::cluster::load_or_create(&*store)?)
}

/// The mount a `sys/mounts/:path` or `sys/auth/:path` names (`secret`, `secret/`).
fn find<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let want = format!("{}/", path.trim_matches('/'));
    mounts.iter().find(|m| m.path == want)
}

/// The request path after `prefix`, without `/tune`.
fn named<'a>(req: &'a VaultRequest, prefix: &str) -> &'a str {
    let rest = req.path.strip_prefix(prefix).unwrap_or("");
    rest.strip_suffix("/tune").unwrap_or(rest)
}

/// `GET sys/mounts` (policy: `read` on `sys/mounts`).
pub async fn list(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    access.answer(identity(&state).and_then(|id| {
        let data = secret_mounts(&state)
            .iter()
            .map(|m| (m.path.to_owned(), info(m, &id, false)))
            .collect();
        with_top_level(data)
    }))
}

/// `GET sys/auth` (policy: `read` on `sys/auth`).
pub async fn list_auth(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    access.answer(identity(&state).and_then(|id| {
        let data = auth_mounts()
            .iter()
            .map(|m| (m.path.to_owned(), info(m, &id, true)))
            .collect();
        with_top_level(data)
    }))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `GET sys/mounts/:path` and `GET sys/mounts/:path/tune` (one wildcard route).
pub async fn read_mount_or_tune(state: State<Arc<AppState>>, req: VaultRequest) -> Answer {
    if req.path.ends_with("/tune") {
        read_tune(state, req).await
    } else {
        read(state, req).await
    }
}

/// `GET sys/auth/:path` and `GET sys/auth/:path/tune`.
pub async fn read_auth_or_tune(state: State<Arc<AppState>>, req: VaultRequest) -> Answer {
    if req.path.ends_with("/tune") {
        read_tune(state, req).await
    } else {
        read_auth(state, req).await
    }
}

/// `GET sys/mounts/:path` (policy: `read` on the request path).
pub async fn read(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    let name = named(&req, "sys/mounts/");
    access.answer(identity(&state).and_then(|id| {
        let mounts = secret_mounts(&state);
        let m = find(&mounts, name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "No secret engine mount at {}/",
                name.trim_matches('/')
            ))
        })?;
        with_top_level(object(info(m, &id, false)))
    }))
}

/// `GET sys/auth/:path` (policy: `read` on the request path).
pub async fn read_auth(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    let name = named(&req, "sys/auth/");
    access.answer(identity(&state).and_then(|id| {
        let m = find(&auth_mounts(), name)
            .map(|m| info(m, &id, true))
            .ok_or_else(|| {
                ApiError::bad_request(format!("No auth engine at {}/", name.trim_matches('/')))
            })?;
        with_top_level(object(m))
    }))
}

fn tune_info(m: &Mount) -> Map<String, Value> {
    let mut t = Map::new();
    t.insert("default_lease_ttl".into(), json!(SYSTEM_TTL));
    t.insert("max_lease_ttl".into(), json!(SYSTEM_TTL));
    t.insert("force_no_cache".into(), json!(false));
    t.insert("description".into(), json!(m.description));
    if !m.options.is_null() {
        t.insert("options".into(), m.options.clone());
    }
    t.extend(m.config.clone());
    t
}

/// `GET sys/mounts/:path/tune` and `GET sys/auth/:path/tune` (policy: `read` on the request
/// path).
pub async fn read_tune(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    let (mounts, name, auth) = match req.path.strip_prefix("sys/auth/") {
        Some(_) => (auth_mounts(), named(&req, "sys/auth/"), true),
        None => (secret_mounts(&state), named(&req, "sys/mounts/"), false),
    };
    let found = find(&mounts, name);
    access.answer(match found {
        Some(m) => with_top_level(tune_info(m)),
        None => {
            let shown = name.trim_matches('/');
            let full = if auth {
                format!("auth/{shown}/")
            } else {
                format!("{shown}/")
            };
            Err(ApiError::bad_request(format!(
                "cannot fetch sysview for path {full:?}"
            )))
        }
    })
}

/// The paths a mount change would take, and the 400 that refuses it: keep's mounts are fixed.
pub async fn refuse_change(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    access.answer(Err(ApiError::bad_request(format!(
        "keep's mounts are fixed (secret/ KV v2{}, sys/, auth/cert/, auth/token/): \
         enabling, disabling, moving and tuning mounts is not supported ({} {})",
        if state.pki.is_some() { ", pki/" } else { "" },
        req.method,
        req.path
    ))))
}

/// `GET sys/internal/ui/mounts/:path`: the mount that serves `path`, with `path` set to the
/// mount's own path. As in Vault, no policy on this endpoint is needed: the caller must have
/// some capability under the mount (any rule below its path that grants something), else 403
/// with Vault's "preflight capability check" message — the same answer as for a path no
/// mount serves, so it cannot be used to discover mounts.
pub async fn ui_mount(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let target = req
        .path
        .strip_prefix("sys/internal/ui/mounts/")
        .unwrap_or("")
        .to_owned();
    let who = match access::principal(&state, &req).await {
        Ok(w) => w,
        Err(denied) => return Answer::from(denied),
    };
    let facts = who.facts();
    let refused = |facts: crate::api::reply::Facts, why: &str| {
        Answer::new(
            facts.decided(false, why.to_owned()),
            Err(ApiError::client(
                StatusCode::FORBIDDEN,
                format!(
                    "preflight capability check returned 403, please ensure client's policies grant access to path {:?}",
                    format!("{}/", target.trim_end_matches('/'))
                ),
            )),
        )
    };
    let t = format!("{}/", target.trim_end_matches('/'));
    let secrets = secret_mounts(&state);
    let auths = auth_mounts();
    let found = secrets
        .iter()
        .find(|m| t.starts_with(m.path))
        .map(|m| (m, false))
        .or_else(|| {
            t.strip_prefix("auth/")
                .and_then(|rest| auths.iter().find(|m| rest.starts_with(m.path)))
                .map(|m| (m, true))
        });
    let Some((mount, auth)) = found else {
        return refused(facts, "no mount serves the path");
    };
    let full = if auth {
        format!("auth/{}", mount.path)
    } else {
        mount.path.to_owned()
    };
    let store = match state.store() {
        Some(s) => s,
        None => return Answer::error(ApiError::sealed()),
    };
    let allowed = match &who {
        Principal::Admin => true,
        Principal::Anonymous => false,
        Principal::Token { entry, peer, .. } => {
            match state
                .policies
                .grants_under(&*store, &entry.policies, peer, &full)
            {
                Ok(b) => b,
                Err(e) => return Answer::new(facts, Err(e.into())),
            }
        }
        Principal::Tokenless { policies, peer, .. } => {
            match state.policies.grants_under(&*store, policies, peer, &full) {
                Ok(b) => b,
                Err(e) => return Answer::new(facts, Err(e.into())),
            }
        }
    };
    if !allowed {
        return refused(facts, "no policy grants a capability under the mount");
    }
    let result = identity(&state).map(|id| {
        let mut data = object(info(mount, &id, auth));
        data.insert("path".into(), json!(mount.path));
        ok(Value::Object(data))
    });
    Answer::new(
        facts.decided(true, format!("a policy grants a capability under {full}")),
        result,
    )
}
