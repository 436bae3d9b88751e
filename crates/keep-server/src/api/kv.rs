//! `/v1/secret/…`: the KV v2 engine over HTTP, with Vault's paths, verbs and answers.
//!
//! | method | path | action |
//! |---|---|---|
//! | GET | `data/:path[?version=n]` | read a version |
//! | POST, PUT | `data/:path` | write a version (`options.cas`) |
//! | PATCH | `data/:path` | JSON merge patch of the latest version |
//! | DELETE | `data/:path` | soft-delete the latest version |
//! | POST, PUT | `delete/:path`, `undelete/:path`, `destroy/:path` | act on `versions` |
//! | GET | `subkeys/:path[?version=n&depth=d]` | the key structure, values `null` |
//! | GET | `metadata/:path` | read metadata |
//! | POST, PUT, PATCH | `metadata/:path` | update metadata |
//! | DELETE | `metadata/:path` | delete the secret and every version |
//! | LIST, GET `?list=true` | `metadata/:path/` | list keys |
//! | GET, POST, PUT | `config` | mount config |
//!
//! Each row is a route in the route table ([`super::router`]) and a handler here; a verb a
//! path does not take is 405.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::api::blocking::{blocking, store};
use crate::api::envelope::{envelope, no_content, ok};
use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::{Operation, VaultRequest};
use crate::auth::access::{self, Access, Principal};
use crate::fields::{boolean, opt_duration_secs, opt_u64, versions};
use crate::kv::{KvEngine, MetadataUpdate, MountConfig};
use crate::state::AppState;

/// The mount keep serves KV v2 at.
pub const MOUNT: &str = "secret";

/// The folder a list request names within the mount: the request path after
/// `secret/metadata` or `secret/data` (empty for the mount root).
fn folder(req: &VaultRequest) -> String {
    let rest = req.path.strip_prefix(MOUNT).unwrap_or(&req.path);
    let rest = rest.trim_start_matches('/');
    let rest = rest
        .strip_prefix("metadata")
        .or_else(|| rest.strip_prefix("data"))
        .unwrap_or(rest);
    rest.trim_start_matches('/').to_owned()
}

/// The warning on a list under `data/`, which Vault does not answer (docs/server.md,
/// "Deliberate differences from Vault").
pub const LIST_DATA_WARNING: &str = "keep lists secret/data/ as secret/metadata/; Vault answers 405 here, so list secret/metadata/ for portability";

/// `LIST metadata/:path/` (and `data/`, as keep has always answered, with a warning): the keys
/// under a folder.
pub async fn list(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, Operation::List);
    let path = folder(&req);
    // Vault lists only under `metadata/`; keep has always answered `data/` too, and says so.
    let under_data = req.path.starts_with("secret/data");
    access.answer((|| {
        let keys = KvEngine::new(&*store(&state)?, MOUNT).list(&path)?;
        if under_data {
            return Ok(envelope(
                axum::http::StatusCode::OK,
                json!({ "keys": keys }),
                vec![LIST_DATA_WARNING.into()],
                Value::Null,
            ));
        }
        Ok(ok(json!({ "keys": keys })))
    })())
}

/// A non-negative integer query parameter (`?version=`, `?depth=`); absent or empty is `None`.
fn query_u64(req: &VaultRequest, name: &str) -> Result<Option<u64>, ApiError> {
    match req.query(name) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be a non-negative integer"))),
    }
}

/// `GET data/:path[?version=n]`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Read);
    let now = OffsetDateTime::now_utc();
    access.answer((|| {
        let version = query_u64(&req, "version")?;
        let v = KvEngine::new(&*store(&state)?, MOUNT).read(&path, version, now)?;
        Ok(ok(json!({ "data": v.data, "metadata": v.metadata })))
    })())
}

/// `GET subkeys/:path[?version=n&depth=d]`: the secret's key structure without its values,
/// as Vault answers it: every leaf is `null`, objects nest down to `depth` levels (0, the
/// default, is unlimited). A deleted or destroyed version is 404 with its metadata and
/// `subkeys: null`, as in Vault.
pub async fn subkeys(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Read);
    let now = OffsetDateTime::now_utc();
    access.answer((|| {
        let version = query_u64(&req, "version")?.unwrap_or(0);
        let depth = query_u64(&req, "depth")?.unwrap_or(0);
        match KvEngine::new(&*store(&state)?, MOUNT).read(&path, Some(version), now) {
            Ok(v) => Ok(ok(json!({
                "subkeys": shape(&v.data, depth),
                "metadata": v.metadata,
            }))),
            Err(crate::kv::KvError::Deleted(meta)) => Err(ApiError {
                data: Some(json!({ "subkeys": null, "metadata": meta })),
                ..ApiError::not_found()
            }),
            Err(e) => Err(e.into()),
        }
    })())
}

/// `data`'s keys with every leaf `null`, objects followed down to `depth` levels (0: all).
fn shape(data: &Map<String, Value>, depth: u64) -> Value {
    fn walk(m: &Map<String, Value>, level: u64, depth: u64) -> Value {
        Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let inner = match v {
                        Value::Object(o) if depth == 0 || level < depth => {
                            walk(o, level + 1, depth)
                        }
                        _ => Value::Null,
                    };
                    (k.clone(), inner)
                })
                .collect(),
        )
    }
    walk(data, 1, depth)
}

/// Vault's ACLs tell creating a secret from updating one: a write to a path with no secret
/// yet needs `create`. (Admins pass either way; the check is skipped for them.)
async fn admit_write(
    state: &Arc<AppState>,
    req: &VaultRequest,
    path: &str,
) -> Result<Access, Answer> {
    let who = access::principal(state, req).await.map_err(Answer::from)?;
    let op = if matches!(who, Principal::Admin) {
        Operation::Update
    } else {
        let store = store(state).map_err(Answer::error)?;
        if KvEngine::new(&*store, MOUNT).read_metadata(path).is_ok() {
            Operation::Update
        } else {
            Operation::Create
        }
    };
    access::authorize(state, who, &req.path, op).map_err(Answer::from)
}

fn data_and_cas(
    body: &Map<String, Value>,
    patch: bool,
) -> Result<(Map<String, Value>, Option<u64>), ApiError> {
    let data = match body.get("data") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => return Err(ApiError::bad_request("no data provided")),
        Some(_) if patch => return Err(ApiError::bad_request("no data provided")),
        Some(_) => return Err(ApiError::bad_request("data must be a JSON object")),
    };
    let cas = match body.get("options") {
        Some(Value::Object(o)) => opt_u64(o, "cas")?,
        Some(Value::Null) | None => None,
        Some(_) if patch => None,
        Some(_) => return Err(ApiError::bad_request("options must be a JSON object")),
    };
    Ok((data, cas))
}

/// `POST`/`PUT data/:path`: a new version (`options.cas`).
pub async fn write(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = match admit_write(&state, &req, &path).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let now = OffsetDateTime::now_utc();
    access.answer(
        async {
            let (data, cas) = data_and_cas(&req.object()?, false)?;
            let store = store(&state)?;
            let m =
                blocking(move || Ok(KvEngine::new(&*store, MOUNT).write(&path, data, cas, now)?))
                    .await?;
            metadata_answer(&m)
        }
        .await,
    )
}

fn metadata_answer<T: serde::Serialize>(m: &T) -> Result<Response, ApiError> {
    let v = serde_json::to_value(m).map_err(|e| ApiError::internal(format!("metadata: {e}")))?;
    Ok(ok(v))
}

/// `PATCH data/:path`: a JSON merge patch of the latest version.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Patch);
    let now = OffsetDateTime::now_utc();
    access.answer(
        async {
            let (data, cas) = data_and_cas(&req.object()?, true)?;
            let store = store(&state)?;
            let m =
                blocking(move || Ok(KvEngine::new(&*store, MOUNT).patch(&path, data, cas, now)?))
                    .await?;
            metadata_answer(&m)
        }
        .await,
    )
}

/// `DELETE data/:path`: soft-deletes the latest version.
pub async fn delete_latest(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Delete);
    let now = OffsetDateTime::now_utc();
    access.answer(
        async {
            let store = store(&state)?;
            blocking(move || Ok(KvEngine::new(&*store, MOUNT).delete_latest(&path, now)?)).await?;
            Ok(no_content())
        }
        .await,
    )
}

#[derive(Clone, Copy)]
enum VersionsAction {
    Delete,
    Undelete,
    Destroy,
}

async fn act_on_versions(
    state: Arc<AppState>,
    path: String,
    req: VaultRequest,
    action: VersionsAction,
) -> Answer {
    let access = admit!(state, req, Operation::Update);
    let now = OffsetDateTime::now_utc();
    access.answer(
        async {
            let vs = versions(&req.object()?)?;
            let store = store(&state)?;
            blocking(move || {
                let kv = KvEngine::new(&*store, MOUNT);
                match action {
                    VersionsAction::Delete => kv.delete_versions(&path, &vs, now)?,
                    VersionsAction::Undelete => kv.undelete_versions(&path, &vs, now)?,
                    VersionsAction::Destroy => kv.destroy_versions(&path, &vs, now)?,
                }
                Ok(())
            })
            .await?;
            Ok(no_content())
        }
        .await,
    )
}

/// `POST`/`PUT delete/:path` with `versions`.
pub async fn delete_versions(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    act_on_versions(state, path, req, VersionsAction::Delete).await
}

/// `POST`/`PUT undelete/:path` with `versions`.
pub async fn undelete_versions(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    act_on_versions(state, path, req, VersionsAction::Undelete).await
}

/// `POST`/`PUT destroy/:path` with `versions`.
pub async fn destroy_versions(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    act_on_versions(state, path, req, VersionsAction::Destroy).await
}

/// `GET metadata/:path`.
pub async fn read_metadata(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Read);
    access.answer((|| {
        let m = KvEngine::new(&*store(&state)?, MOUNT).read_metadata(&path)?;
        metadata_answer(&m)
    })())
}

fn metadata_update(body: &Map<String, Value>) -> Result<MetadataUpdate, ApiError> {
    let custom_metadata = match body.get("custom_metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "custom_metadata values must be strings (key {k:?})"
                        )));
                    }
                }
            }
            Some(out)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "custom_metadata must be a JSON object",
            ));
        }
    };
    let cas_required = boolean(body, "cas_required")?;
    Ok(MetadataUpdate {
        max_versions: opt_u64(body, "max_versions")?,
        cas_required,
        delete_version_after: opt_duration_secs(body, "delete_version_after")?,
        custom_metadata,
    })
}

/// `POST`/`PUT`/`PATCH metadata/:path`.
pub async fn write_metadata(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let op = req.op;
    let access = admit!(state, req, op);
    let now = OffsetDateTime::now_utc();
    access.answer(
        async {
            let update = metadata_update(&req.object()?)?;
            let store = store(&state)?;
            blocking(
                move || Ok(KvEngine::new(&*store, MOUNT).write_metadata(&path, &update, now)?),
            )
            .await?;
            Ok(no_content())
        }
        .await,
    )
}

/// `DELETE metadata/:path`: the secret and every version.
pub async fn delete_all(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: VaultRequest,
) -> Answer {
    let access = admit!(state, req, Operation::Delete);
    access.answer(
        async {
            let store = store(&state)?;
            blocking(move || Ok(KvEngine::new(&*store, MOUNT).delete_all(&path)?)).await?;
            Ok(no_content())
        }
        .await,
    )
}

/// `GET config`.
pub async fn read_config(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, Operation::Read);
    access.answer((|| {
        let c = KvEngine::new(&*store(&state)?, MOUNT).config()?;
        Ok(ok(json!({
            "cas_required": c.cas_required,
            "delete_version_after": crate::kv::go_duration(c.delete_version_after),
            "max_versions": c.max_versions,
        })))
    })())
}

/// `POST`/`PUT config`.
pub async fn write_config(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, Operation::Update);
    access.answer(
        async {
            let body = req.object()?;
            let max_versions = opt_u64(&body, "max_versions")?;
            let dva = opt_duration_secs(&body, "delete_version_after")?;
            let cas_required = boolean(&body, "cas_required")?;
            let store = store(&state)?;
            blocking(move || {
                let kv = KvEngine::new(&*store, MOUNT);
                let mut c: MountConfig = kv.config()?;
                if let Some(v) = max_versions {
                    c.max_versions = v;
                }
                if let Some(v) = dva {
                    c.delete_version_after = v;
                }
                if let Some(v) = cas_required {
                    c.cas_required = v;
                }
                Ok(kv.set_config(&c)?)
            })
            .await?;
            Ok(no_content())
        }
        .await,
    )
}
