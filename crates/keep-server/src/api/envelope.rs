//! Vault's response envelope. vaultrs refuses responses that lack any of these fields, and hvac
//! reads `data` from them, so every JSON success answer goes through [`ok`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The current request's id (shared with its audit lines), or a fresh random one.
pub fn request_id() -> String {
    crate::api::audit_layer::current_request_id().unwrap_or_else(new_request_id)
}

/// A random request id in UUID v4 form.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // Request ids are for correlation only; if the OS RNG fails we still answer.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// 200 with the full envelope around `data`.
pub fn ok(data: Value) -> Response {
    let body = json!({
        "request_id": request_id(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "kv",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// 204 No Content, as Vault answers writes that return nothing.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
