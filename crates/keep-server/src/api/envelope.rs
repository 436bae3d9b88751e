//! Vault's response envelope. vaultrs refuses responses that lack any of these fields, and hvac
//! reads `data` from them, so every JSON success answer goes through [`ok`] or [`envelope`].
//!
//! The request id and the mount type are filled in by the pipeline, which knows both
//! ([`super::pipeline`]); handlers leave them empty.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::body::json;

/// A random request id in UUID v4 form.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // Request ids are for correlation only; if the OS RNG fails we still answer.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut h = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            h.push('-');
        }
        h.push(char::from(HEX[usize::from(x >> 4)]));
        h.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    h
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The full envelope: `data`, `warnings` (none: `null`), `auth` (none: `null`).
pub fn envelope(status: StatusCode, data: Value, warnings: Vec<String>, auth: Value) -> Response {
    let warnings = if warnings.is_empty() {
        Value::Null
    } else {
        json!(warnings)
    };
    json(
        status,
        json!({
            "request_id": "",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": warnings,
            "auth": auth,
            "mount_type": "",
        }),
    )
}

/// 200 with the full envelope around `data`.
pub fn ok(data: Value) -> Response {
    envelope(StatusCode::OK, data, Vec::new(), Value::Null)
}

/// A JSON answer with its top-level object changed by `f` (top-level copies of `data`, the
/// wrap envelope). Any other response is returned as it is.
pub fn map_body(
    mut resp: Response,
    f: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Response {
    if let Some(crate::api::body::JsonBody(Value::Object(m))) =
        resp.extensions_mut()
            .get_mut::<crate::api::body::JsonBody>()
    {
        f(m);
    }
    resp
}

/// 200 with the full envelope around `data`, and `data`'s keys copied to the top level, as
/// Vault answers its `sys/` reads (policies, mounts, capabilities, audit-hash): clients read
/// either place. A top-level key of the envelope itself (`data`, `auth` …) is not overwritten.
pub fn ok_flat(data: serde_json::Map<String, Value>) -> Response {
    let top = data.clone();
    map_body(ok(Value::Object(data)), |body| {
        for (k, v) in top {
            body.entry(k).or_insert(v);
        }
    })
}

/// 204 No Content, as Vault answers writes that return nothing.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = new_request_id();
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_request_id());
    }
}
