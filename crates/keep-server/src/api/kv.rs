//! `/v1/secret/…`: the KV v2 engine over HTTP, with Vault's paths, verbs and answers.
//!
//! | method | path | action |
//! |---|---|---|
//! | GET | `data/:path[?version=n]` | read a version |
//! | POST, PUT | `data/:path` | write a version (`options.cas`) |
//! | PATCH | `data/:path` | JSON merge patch of the latest version |
//! | DELETE | `data/:path` | soft-delete the latest version |
//! | POST, PUT | `delete/:path`, `undelete/:path`, `destroy/:path` | act on `versions` |
//! | GET | `metadata/:path` | read metadata |
//! | POST, PUT, PATCH | `metadata/:path` | update metadata |
//! | DELETE | `metadata/:path` | delete the secret and every version |
//! | LIST, GET `?list=true` | `metadata/:path/` | list keys |
//! | GET, POST, PUT | `config` | mount config |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::body::json_object;
use crate::api::envelope::{no_content, ok};
use crate::api::error::ApiError;
use crate::api::{Operation, Who, blocking, read_now, require};
use crate::fields::{opt_duration_secs, opt_u64, versions};
use crate::kv::{KvEngine, MetadataUpdate, MountConfig};
use crate::state::AppState;

/// The mount keep serves KV v2 at.
pub const MOUNT: &str = "secret";

/// Query parameters KV endpoints read.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KvQuery {
    version: Option<String>,
    list: Option<String>,
}

fn is_list(method: &Method, q: &KvQuery) -> bool {
    method.as_str() == "LIST"
        || (method == Method::GET && q.list.as_deref().is_some_and(|v| v == "true" || v == "1"))
}

fn method_not_allowed() -> ApiError {
    ApiError::client(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

/// Entry point for every `/v1/secret/*` request.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Query<KvQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let (area, path) = match rest.split_once('/') {
        Some((a, p)) => (a.to_owned(), p.to_owned()),
        None => (rest.clone(), String::new()),
    };
    let list = is_list(&method, &q);
    let op = match (area.as_str(), method.as_str(), list) {
        (_, _, true) => Operation::List,
        (_, "GET", _) => Operation::Read,
        (_, "DELETE", _) => Operation::Delete,
        (_, "PATCH", _) => Operation::Patch,
        (_, "POST" | "PUT", _) => Operation::Update,
        _ => return Err(method_not_allowed()),
    };
    let store = state.store().ok_or_else(ApiError::sealed)?;
    // Vault's ACLs tell creating a secret from updating one.
    let op = if op == Operation::Update
        && area == "data"
        && !matches!(who, crate::api::Principal::Admin)
    {
        let s = store.clone();
        let p = path.clone();
        let exists =
            read_now(move || Ok(KvEngine::new(&*s, MOUNT).read_metadata(&p).is_ok())).await?;
        if exists {
            Operation::Update
        } else {
            Operation::Create
        }
    } else {
        op
    };
    require(&state, &who, &format!("{MOUNT}/{rest}"), op).await?;
    let limit = state.limits.max_request_bytes;
    let now = OffsetDateTime::now_utc();
    match (area.as_str(), method.as_str(), list) {
        ("metadata", _, true) | ("data", _, true) => {
            if !matches!(method.as_str(), "LIST" | "GET") {
                return Err(method_not_allowed());
            }
            let keys = read_now(move || Ok(KvEngine::new(&*store, MOUNT).list(&path)?)).await?;
            Ok(ok(json!({ "keys": keys })))
        }
        ("data", "GET", _) => {
            let version = match q.version.as_deref() {
                None | Some("") => None,
                Some(v) => Some(v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request("version must be a non-negative integer")
                })?),
            };
            let v = read_now(move || Ok(KvEngine::new(&*store, MOUNT).read(&path, version, now)?))
                .await?;
            Ok(ok(json!({ "data": v.data, "metadata": v.metadata })))
        }
        ("data", "POST" | "PUT", _) => {
            let body = json_object(body, limit).await?;
            let data = match body.get("data") {
                Some(Value::Object(m)) => m.clone(),
                Some(Value::Null) | None => {
                    return Err(ApiError::bad_request("no data provided"));
                }
                Some(_) => return Err(ApiError::bad_request("data must be a JSON object")),
            };
            let cas = match body.get("options") {
                Some(Value::Object(o)) => opt_u64(o, "cas")?,
                Some(Value::Null) | None => None,
                Some(_) => return Err(ApiError::bad_request("options must be a JSON object")),
            };
            let m =
                blocking(move || Ok(KvEngine::new(&*store, MOUNT).write(&path, data, cas, now)?))
                    .await?;
            Ok(ok(serde_json::to_value(m).unwrap_or(Value::Null)))
        }
        ("data", "PATCH", _) => {
            let body = json_object(body, limit).await?;
            let data = match body.get("data") {
                Some(Value::Object(m)) => m.clone(),
                _ => return Err(ApiError::bad_request("no data provided")),
            };
            let cas = match body.get("options") {
                Some(Value::Object(o)) => opt_u64(o, "cas")?,
                _ => None,
            };
            let m =
                blocking(move || Ok(KvEngine::new(&*store, MOUNT).patch(&path, data, cas, now)?))
                    .await?;
            Ok(ok(serde_json::to_value(m).unwrap_or(Value::Null)))
        }
        ("data", "DELETE", _) => {
            blocking(move || Ok(KvEngine::new(&*store, MOUNT).delete_latest(&path, now)?)).await?;
            Ok(no_content())
        }
        (action @ ("delete" | "undelete" | "destroy"), "POST" | "PUT", _) => {
            let body = json_object(body, limit).await?;
            let vs = versions(&body)?;
            let action = action.to_owned();
            blocking(move || {
                let kv = KvEngine::new(&*store, MOUNT);
                match action.as_str() {
                    "delete" => kv.delete_versions(&path, &vs, now)?,
                    "undelete" => kv.undelete_versions(&path, &vs, now)?,
                    _ => kv.destroy_versions(&path, &vs, now)?,
                }
                Ok(())
            })
            .await?;
            Ok(no_content())
        }
        ("metadata", "GET", _) => {
            let m =
                read_now(move || Ok(KvEngine::new(&*store, MOUNT).read_metadata(&path)?)).await?;
            Ok(ok(serde_json::to_value(m).unwrap_or(Value::Null)))
        }
        ("metadata", "POST" | "PUT" | "PATCH", _) => {
            let body = json_object(body, limit).await?;
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
            let cas_required = match body.get("cas_required") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(Value::String(s)) => Some(s == "true"),
                Some(_) => return Err(ApiError::bad_request("cas_required must be a boolean")),
            };
            let update = MetadataUpdate {
                max_versions: opt_u64(&body, "max_versions")?,
                cas_required,
                delete_version_after: opt_duration_secs(&body, "delete_version_after")?,
                custom_metadata,
            };
            blocking(
                move || Ok(KvEngine::new(&*store, MOUNT).write_metadata(&path, &update, now)?),
            )
            .await?;
            Ok(no_content())
        }
        ("metadata", "DELETE", _) => {
            blocking(move || Ok(KvEngine::new(&*store, MOUNT).delete_all(&path)?)).await?;
            Ok(no_content())
        }
        ("config", "GET", _) if path.is_empty() => {
            let c = read_now(move || Ok(KvEngine::new(&*store, MOUNT).config()?)).await?;
            Ok(ok(json!({
                "cas_required": c.cas_required,
                "delete_version_after": crate::kv::go_duration(c.delete_version_after),
                "max_versions": c.max_versions,
            })))
        }
        ("config", "POST" | "PUT", _) if path.is_empty() => {
            let body = json_object(body, limit).await?;
            let max_versions = opt_u64(&body, "max_versions")?;
            let dva = opt_duration_secs(&body, "delete_version_after")?;
            let cas_required = match body.get("cas_required") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(ApiError::bad_request("cas_required must be a boolean")),
            };
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
        ("data" | "metadata" | "delete" | "undelete" | "destroy" | "config", _, _) => {
            Err(method_not_allowed())
        }
        _ => Err(ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{MOUNT}/{rest}\""),
        )),
    }
}
