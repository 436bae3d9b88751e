//! `sys/init` (GET), `sys/capabilities-self` and `sys/capabilities`: what a client asks about
//! the server and its own token before it acts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::api::body::json as json_reply;
use crate::api::envelope::{map_body, ok_flat};
use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::VaultRequest;
use crate::auth::access::Principal;
use crate::auth::token::Tokens;
use crate::state::{AppState, SealState};

/// `GET sys/init`: `{"initialized": bool}`, unauthenticated as in Vault (the mTLS handshake is
/// still required). Initializing is `keep server init` on the host, not this endpoint.
pub async fn init(State(state): State<Arc<AppState>>) -> axum::response::Response {
    json_reply(
        StatusCode::OK,
        json!({"initialized": state.seal_state() != SealState::Uninitialized}),
    )
}

/// `paths` (a list or a comma-separated string), else the deprecated `path`.
fn paths(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let mut out = crate::fields::string_list(body, "paths")?.unwrap_or_default();
    if out.is_empty() {
        out = crate::fields::string_list(body, "path")?.unwrap_or_default();
    }
    out.retain(|p| !p.is_empty());
    if out.is_empty() {
        return Err(ApiError::bad_request("paths must be supplied"));
    }
    Ok(out)
}

/// Vault's answer: one key per path, and `capabilities` when there is one path; the keys in
/// `data` and copied to the top level.
fn answer(per_path: Vec<(String, Vec<String>)>) -> axum::response::Response {
    let mut data = Map::new();
    if per_path.len() == 1 {
        data.insert("capabilities".into(), json!(per_path[0].1));
    }
    for (p, caps) in per_path {
        data.insert(p, json!(caps));
    }
    ok_flat(data)
}

/// Capability names sorted as Vault sorts them.
fn names(caps: std::collections::BTreeSet<keep_policy::Capability>) -> Vec<String> {
    let mut v: Vec<String> = caps.iter().map(|c| c.as_str().to_owned()).collect();
    v.sort();
    v
}

/// `POST sys/capabilities-self` `{"paths": [...]}`: the caller's capabilities on each path
/// (policy: `update` on `sys/capabilities-self`, which keep's `default` policy grants). A
/// break-glass admin has every capability: `["root"]`, as Vault answers for a root token.
pub async fn capabilities_self(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    let result = (|| {
        let paths = paths(&req.object()?)?;
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let (policies, peer) = match &access.who {
            Principal::Admin => {
                return Ok(answer(
                    paths
                        .into_iter()
                        .map(|p| (p, vec!["root".into()]))
                        .collect(),
                ));
            }
            Principal::Token { entry, peer, .. } => (entry.policies.clone(), peer.clone()),
            Principal::Tokenless { policies, peer, .. } => (policies.clone(), peer.clone()),
            Principal::Anonymous => return Err(ApiError::permission_denied()),
        };
        let mut out = Vec::new();
        for p in paths {
            let caps = state
                .policies
                .capabilities(&*store, &policies, Some(&peer), &p)?;
            out.push((p, names(caps)));
        }
        Ok(answer(out))
    })();
    access.answer(result)
}

/// `POST sys/capabilities` `{"token": "…", "paths": [...]}`: another token's capabilities
/// (policy: `update` on `sys/capabilities`). keep's policies may be templated on the client
/// certificate; keep renders them with the caller's certificate when the token is bound to
/// it, and otherwise lets templated rules match nothing and says so in a warning (Vault has
/// no certificate-templated policies).
pub async fn capabilities(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = admit!(state, req, req.op);
    let result = (|| {
        let body = req.object()?;
        let token = match body.get("token") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err(ApiError::bad_request("missing token")),
        };
        let paths = paths(&body)?;
        let store = state.store().ok_or_else(ApiError::sealed)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(entry) = Tokens::new(&*store).lookup(&token, now)? else {
            // Vault: an unknown token has no capabilities.
            return Ok(answer(
                paths
                    .into_iter()
                    .map(|p| (p, vec!["deny".into()]))
                    .collect(),
            ));
        };
        let own = req
            .peer
            .as_ref()
            .filter(|p| p.fingerprint_sha256 == entry.cert_fingerprint);
        let mut out = Vec::new();
        for p in paths {
            let caps =
                state
                    .policies
                    .capabilities(&*store, &entry.policies, own.map(|p| &**p), &p)?;
            out.push((p, names(caps)));
        }
        let mut resp = answer(out);
        if own.is_none() {
            resp = map_body(resp, |b| {
                b.insert(
                    "warnings".into(),
                    json!(["the token is bound to another client certificate: rules templated on certificate fields ({{cert.…}}) were not rendered and grant nothing in this answer"]),
                );
            });
        }
        Ok(resp)
    })();
    access.answer(result)
}
