//! `/v1/sys/policies/acl/:name` and the older `/v1/sys/policy/:name`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::body::json_object;
use crate::api::envelope::{no_content, ok};
use crate::api::error::ApiError;
use crate::api::{Operation, Who, blocking, require};
use crate::state::AppState;

fn op_for(method: &Method, list: bool) -> Result<Operation, ApiError> {
    Ok(match (method.as_str(), list) {
        ("LIST", _) | ("GET", true) => Operation::List,
        ("GET", false) => Operation::Read,
        ("POST" | "PUT", _) => Operation::Update,
        ("DELETE", _) => Operation::Delete,
        _ => {
            return Err(ApiError::client(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported operation",
            ));
        }
    })
}

/// Query parameters.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    list: Option<String>,
}

async fn names(state: &Arc<AppState>) -> Result<Vec<String>, ApiError> {
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let st = state.clone();
    blocking(move || {
        st.policies
            .names(&*store)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}

/// `LIST /v1/sys/policies/acl`.
pub async fn list(State(state): State<Arc<AppState>>, Who(who): Who) -> Result<Response, ApiError> {
    require(&state, &who, "sys/policies/acl/", Operation::List).await?;
    Ok(ok(json!({ "keys": names(&state).await? })))
}

/// `GET /v1/sys/policy` (older API): `{"keys": [...], "policies": [...]}`.
pub async fn list_legacy(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
) -> Result<Response, ApiError> {
    require(&state, &who, "sys/policy", Operation::Read).await?;
    let n = names(&state).await?;
    Ok(ok(json!({ "keys": n, "policies": n })))
}

async fn handle(
    state: Arc<AppState>,
    name: String,
    method: Method,
    list: bool,
    who: crate::api::Principal,
    body: Body,
    legacy: bool,
) -> Result<Response, ApiError> {
    let op = op_for(&method, list)?;
    let who_path = if legacy {
        format!("sys/policy/{name}")
    } else {
        format!("sys/policies/acl/{name}")
    };
    if op == Operation::List {
        require(&state, &who, &who_path, Operation::List).await?;
        return Ok(ok(json!({ "keys": names(&state).await? })));
    }
    require(&state, &who, &who_path, op).await?;
    keep_policy::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let st = state.clone();
    match op {
        Operation::Read => {
            let n = name.clone();
            let src = blocking(move || {
                st.policies
                    .source(&*store, &n)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            let src = src.ok_or_else(ApiError::not_found)?;
            Ok(if legacy {
                ok(json!({ "name": name, "rules": src }))
            } else {
                ok(json!({ "name": name, "policy": src }))
            })
        }
        Operation::Delete => {
            if !keep_policy::is_deletable(&name) {
                return Err(ApiError::bad_request(format!(
                    "cannot delete the {name} policy"
                )));
            }
            blocking(move || {
                st.policies
                    .delete(&*store, &name)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            Ok(no_content())
        }
        _ => {
            let body = json_object(body, state.limits.max_request_bytes).await?;
            let src = match body.get("policy").or_else(|| body.get("rules")) {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(ApiError::bad_request(
                        "'policy' parameter not supplied or empty",
                    ));
                }
            };
            let result = blocking(move || {
                st.policies
                    .put(&*store, &name, &src)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
            result.map_err(|e| ApiError::bad_request(format!("failed to parse policy: {e}")))?;
            Ok(no_content())
        }
    }
}

/// `sys/policies/acl/:name`.
pub async fn acl(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    method: Method,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let list = q.list.as_deref() == Some("true");
    handle(state, name, method, list, who, body, false).await
}

/// `sys/policy/:name` (older API; GET answers `rules`).
pub async fn legacy(
    State(state): State<Arc<AppState>>,
    Who(who): Who,
    method: Method,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let list = q.list.as_deref() == Some("true");
    handle(state, name, method, list, who, body, true).await
}
