//! `/v1/sys/…`: health, seal status, seal, metrics — in Vault's shapes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::body::json as json_reply;
use crate::api::envelope::ok_flat;
use crate::api::error::ApiError;
use crate::api::reply::Answer;
use crate::api::request::{Operation, VaultRequest};
use crate::auth::access;
use crate::state::{AppState, SealState};

/// keep's version as Vault clients see it.
pub const VERSION: &str = concat!("keep-", env!("CARGO_PKG_VERSION"));

fn status_param(q: &HashMap<String, String>, name: &str, default: u16) -> StatusCode {
    q.get(name)
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::from_u16(default).unwrap_or(StatusCode::OK))
}

/// Whether storage writes succeed, with the reason when they do not. While they fail, this
/// retries (at most once a second) with a write as large as the one that failed, which leaves
/// nothing behind, so health turns green as soon as the storage takes such writes again, even
/// when red health has stopped all traffic.
async fn storage_fault(state: &AppState) -> Option<String> {
    let health = state.storage_health.clone()?;
    if !health.healthy() && health.probe_due() {
        let h = health.clone();
        // The error, if any, is recorded in `health`; a panicked task leaves it red.
        let _ = tokio::task::spawn_blocking(move || h.probe()).await;
    }
    health.last_error()
}

/// `GET /v1/sys/health`: 200 unsealed, 503 sealed, 501 uninitialized (overridable with
/// `activecode`, `sealedcode`, `uninitcode` as in Vault). Needs no token, only the mTLS
/// connection, so load balancers and monitors can use it.
///
/// Unsealed but unable to write its audit log (`auditcode`, default 503) or its storage
/// (`storagecode`, default 503), the node is not serving: health says so, with the reason in
/// `audit_error` / `storage_error`.
pub async fn health(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let seal = state.seal_state();
    let audit = state.audit();
    let audit_broken = audit.as_ref().is_some_and(|a| !a.healthy());
    let storage_error = storage_fault(&state).await;
    let code = match seal {
        // A broken audit sink means every request fails closed: the node is not serving.
        SealState::Unsealed if audit_broken => status_param(&q, "auditcode", 503),
        // So does storage that cannot be written.
        SealState::Unsealed if storage_error.is_some() => status_param(&q, "storagecode", 503),
        SealState::Unsealed => status_param(&q, "activecode", 200),
        SealState::Sealed => status_param(&q, "sealedcode", 503),
        SealState::Uninitialized => status_param(&q, "uninitcode", 501),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Stored under the barrier: known once unsealed (a sealed Vault omits them too).
    let cluster = state
        .store()
        .and_then(|s| crate::cluster::load_or_create(&*s).ok());
    let mut body = json!({
        "initialized": seal != SealState::Uninitialized,
        "sealed": seal != SealState::Unsealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": VERSION,
        "audit_healthy": !audit_broken,
        "audit_error": audit.and_then(|a| a.last_error()),
        "storage_healthy": storage_error.is_none(),
        "storage_error": storage_error,
    });
    if let (Some(c), Some(m)) = (cluster, body.as_object_mut()) {
        m.insert("cluster_name".into(), json!(c.cluster_name));
        m.insert("cluster_id".into(), json!(c.cluster_id));
    }
    json_reply(code, body)
}

/// `GET /v1/sys/seal-status`.
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Response {
    let seal = state.seal_state();
    let body = json!({
        "type": "keep",
        "initialized": seal != SealState::Uninitialized,
        "sealed": seal != SealState::Unsealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": VERSION,
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        "storage_type": state.storage_type,
    });
    json_reply(StatusCode::OK, body)
}

/// `PUT /v1/sys/seal` (admins): drops the barrier key from memory; the server answers 503 until
/// it is restarted and unseals again.
pub async fn seal(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = match access::admit(&state, &req, "sys/seal", Operation::Update).await {
        Ok(a) => a,
        Err(denied) => return Answer::from(denied),
    };
    state.seal();
    tracing::warn!("server sealed by an operator request");
    access.answer(Ok(StatusCode::NO_CONTENT.into_response()))
}

/// Gauge: 1 while the audit log writes, 0 when it is broken (exported when audit is on).
pub const AUDIT_HEALTHY: &str = "keep_audit_healthy";

/// Gauge: 1 while storage writes succeed, 0 after one failed, until one succeeds again.
pub const STORAGE_HEALTHY: &str = "keep_storage_healthy";

/// `GET /v1/sys/metrics?format=prometheus`: Prometheus text.
///
/// Gated as Vault gates it: admins, and tokens or tokenless roles whose policy grants `read` on
/// `sys/metrics`; besides them only the certificates listed in `telemetry.metrics_scrapers`,
/// or any client certificate with `telemetry.unauthenticated_metrics_access: true`. The series
/// name every issued certificate, so a certificate that merely passes the handshake gets 403.
pub async fn metrics(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let scraper = req
        .peer
        .as_ref()
        .is_some_and(|p| state.auth.metrics.allows_without_policy(p));
    let access = match req.peer.as_ref().filter(|_| scraper) {
        Some(peer) => match access::refuse_revoked(&state, peer) {
            Ok(()) => None,
            Err(denied) => return Answer::from(denied),
        },
        None => match access::admit(&state, &req, "sys/metrics", Operation::Read).await {
            Ok(a) => Some(a),
            Err(denied) => return Answer::from(denied),
        },
    };
    let facts = access.map(|a| a.facts).unwrap_or_default();
    Answer::new(facts, render_metrics(&state, &req).await)
}

async fn render_metrics(state: &AppState, req: &VaultRequest) -> Result<Response, ApiError> {
    match req.query("format") {
        Some("prometheus") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported metrics format {other:?}; use format=prometheus"
            )));
        }
    }
    // Audit health as of this scrape (deploy/prometheus/keep-rules.yml: KeepAuditSinkBroken):
    // 0 means requests are failing closed.
    if let Some(audit) = state.audit() {
        metrics::gauge!(AUDIT_HEALTHY).set(if audit.healthy() { 1.0 } else { 0.0 });
    }
    // deploy/prometheus/keep-rules.yml: KeepStorageUnwritable.
    if state.storage_health.is_some() {
        let ok = storage_fault(state).await.is_none();
        metrics::gauge!(STORAGE_HEALTHY).set(if ok { 1.0 } else { 0.0 });
    }
    let mut text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    if let Some(pki) = &state.pki {
        text = crate::pki::metrics::without_series(&text, &pki.hidden_series());
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response())
}

/// `POST /v1/sys/audit-hash/:path` with `{"input": "…"}`: the HMAC the audit log would write
/// for that value, so an investigator can search the log for a known secret or token without
/// the log ever containing it.
pub async fn audit_hash(State(state): State<Arc<AppState>>, req: VaultRequest) -> Answer {
    let access = match access::admit(&state, &req, &req.path, Operation::Update).await {
        Ok(a) => a,
        Err(denied) => return Answer::from(denied),
    };
    access.answer((|| {
        let input = match req.object()?.get("input") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(ApiError::bad_request("missing input")),
        };
        let log = state
            .audit()
            .ok_or_else(|| ApiError::bad_request("no audit log is configured (audit.file)"))?;
        let mut data = serde_json::Map::new();
        data.insert("hash".into(), json!(log.hash(&input)));
        Ok(ok_flat(data))
    })())
}
