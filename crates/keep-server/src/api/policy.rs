//! `/v1/sys/policies/acl/:name` and the older `/v1/sys/policy/:name`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::blocking::blocking;
use crate::api::envelope::{envelope, no_content, ok_flat};
use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::{Operation, VaultRequest};
use crate::state::AppState;

/// Vault's answer for a policy read or list: the fields in `data` and at the top level.
fn flat(data: Value) -> Response {
    match data {
        Value::Object(m) => ok_flat(m),
        // Every caller passes an object literal.
        other => crate::api::envelope::ok(other),
    }
}

fn names(state: &AppState) -> Result<Vec<String>, ApiError> {
    let store = state.store().ok_or_else(ApiError::sealed)?;
    Ok(state.policies.names(&*store)?)
}

/// The two spellings of the API: `sys/policies/acl/:name` answers `policy`, the older
/// `sys/policy/:name` answers `rules`.
#[derive(Clone, Copy)]
enum Api {
    Acl,
    Legacy,
}

impl Api {
    fn path(self, name: &str) -> String {
        match self {
            Api::Acl => format!("sys/policies/acl/{name}"),
            Api::Legacy => format!("sys/policy/{name}"),
        }
    }
}

/// `LIST /v1/sys/policies/acl`.
pub async fn list(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "sys/policies/acl/", Operation::List);
    access.answer(names(&state).map(|n| flat(json!({ "keys": n }))))
}

/// `GET /v1/sys/policy` (older API): `{"keys": [...], "policies": [...]}`.
pub async fn list_legacy(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, "sys/policy", Operation::Read);
    access.answer(names(&state).map(|n| flat(json!({ "keys": n, "policies": n }))))
}

/// The warning on a list of a policy name, which Vault does not answer (docs/server.md,
/// "Deliberate differences from Vault").
pub const LIST_NAME_WARNING: &str = "keep answers a list of a policy name with every policy name; Vault answers 405 here, so list sys/policies/acl for portability";

async fn list_under(state: Arc<AppState>, name: String, req: VaultRequest, api: Api) -> Answer {
    let access = admit!(state, req, &api.path(&name), Operation::List);
    access.answer(names(&state).map(|n| {
        envelope(
            axum::http::StatusCode::OK,
            json!({ "keys": n }),
            vec![LIST_NAME_WARNING.into()],
            Value::Null,
        )
    }))
}

async fn read_policy(state: Arc<AppState>, name: String, req: VaultRequest, api: Api) -> Answer {
    let access = admit!(state, req, &api.path(&name), Operation::Read);
    access.answer((|| {
        keep_policy::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let src = state
            .policies
            .source(&*store, &name)?
            .ok_or_else(ApiError::not_found)?;
        Ok(match api {
            Api::Legacy => flat(json!({ "name": name, "rules": src })),
            Api::Acl => flat(json!({ "name": name, "policy": src })),
        })
    })())
}

async fn delete_policy(state: Arc<AppState>, name: String, req: VaultRequest, api: Api) -> Answer {
    let access = admit!(state, req, &api.path(&name), Operation::Delete);
    let result: Result<Response, ApiError> = async {
        keep_policy::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !keep_policy::is_deletable(&name) {
            return Err(ApiError::bad_request(format!(
                "cannot delete the {name} policy"
            )));
        }
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let st = state.clone();
        blocking(move || Ok(st.policies.delete(&*store, &name)?)).await?;
        Ok(no_content())
    }
    .await;
    access.answer(result)
}

async fn write_policy(state: Arc<AppState>, name: String, req: VaultRequest, api: Api) -> Answer {
    let access = admit!(state, req, &api.path(&name), Operation::Update);
    let result: Result<Response, ApiError> = async {
        keep_policy::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let body = req.object()?;
        let src = match body.get("policy").or_else(|| body.get("rules")) {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "'policy' parameter not supplied or empty",
                ));
            }
        };
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let st = state.clone();
        let parsed = blocking(move || Ok(st.policies.put(&*store, &name, &src)?)).await?;
        parsed.map_err(|e| ApiError::bad_request(format!("failed to parse policy: {e}")))?;
        Ok(no_content())
    }
    .await;
    access.answer(result)
}

/// `GET sys/policies/acl/:name`.
pub async fn read(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    read_policy(s, n, r, Api::Acl).await
}

/// `POST`/`PUT sys/policies/acl/:name` with `policy`.
pub async fn write(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    write_policy(s, n, r, Api::Acl).await
}

/// `DELETE sys/policies/acl/:name`.
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    delete_policy(s, n, r, Api::Acl).await
}

/// The `:name` of a list request's path.
fn last_segment(req: &VaultRequest) -> String {
    req.path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `LIST sys/policies/acl/:name`: the policy names (as keep has always answered).
pub async fn list_named(State(s): State<Arc<AppState>>, r: VaultRequest) -> Answer {
    let n = last_segment(&r);
    list_under(s, n, r, Api::Acl).await
}

/// `GET sys/policy/:name` (older API; answers `rules`).
pub async fn read_legacy(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    read_policy(s, n, r, Api::Legacy).await
}

/// `POST`/`PUT sys/policy/:name` with `policy` or `rules`.
pub async fn write_legacy(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    write_policy(s, n, r, Api::Legacy).await
}

/// `DELETE sys/policy/:name`.
pub async fn delete_legacy(
    State(s): State<Arc<AppState>>,
    Path(n): Path<String>,
    r: VaultRequest,
) -> Answer {
    delete_policy(s, n, r, Api::Legacy).await
}

/// `LIST sys/policy/:name`.
pub async fn list_named_legacy(State(s): State<Arc<AppState>>, r: VaultRequest) -> Answer {
    let n = last_segment(&r);
    list_under(s, n, r, Api::Legacy).await
}
