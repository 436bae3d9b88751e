//! Request bodies, read the lenient way Vault clients need.
//!
//! vaultrs posts JSON without a Content-Type, node-vault posts an empty body labelled
//! `application/x-www-form-urlencoded`, hvac posts proper JSON: all of them must work. Every
//! body is size-limited (413 beyond the limit) and must be a JSON object when non-empty.

use axum::body::{Body, to_bytes};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// Reads at most `limit` bytes and parses them as a JSON object; empty means `{}`.
pub async fn json_object(body: Body, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: the limit is {limit} bytes"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to parse JSON input: {e}"
        ))),
    }
}

/// Reads an optional non-negative integer field that clients send as a number or a string.
pub fn opt_u64(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{field} must be a non-negative integer"))
        }),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{field} must be a non-negative integer"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "{field} must be a non-negative integer"
        ))),
    }
}

/// Reads a list of version numbers (`versions`: `[1,2]`, `"1,2"` or `1`).
pub fn versions(m: &Map<String, Value>) -> Result<Vec<u64>, ApiError> {
    let bad = || ApiError::bad_request("versions must be a list of version numbers");
    match m.get("versions") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64().ok_or_else(bad),
                Value::String(s) => s.trim().parse().map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect(),
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v]).ok_or_else(bad),
        Some(Value::String(s)) => s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| x.trim().parse().map_err(|_| bad()))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Reads a duration given as seconds or as a duration string (`30m`, `1h0m0s`).
pub fn opt_duration_secs(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    let bad = || ApiError::bad_request(format!("{field} must be a duration such as 30m or 3600"));
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if let Ok(n) = s.trim().parse::<u64>() {
                return Ok(Some(n));
            }
            let d = keep_pki::duration::parse_duration(s).map_err(|_| bad())?;
            if d.is_negative() {
                return Err(bad());
            }
            Ok(Some(u64::try_from(d.whole_seconds()).unwrap_or(0)))
        }
        Some(_) => Err(bad()),
    }
}
