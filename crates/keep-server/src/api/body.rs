//! Request bodies, read the lenient way Vault clients need.
//!
//! vaultrs posts JSON without a Content-Type, node-vault posts an empty body labelled
//! `application/x-www-form-urlencoded`, hvac posts proper JSON: all of them must work. Every
//! body is size-limited (413 beyond the limit) and must be a JSON object when non-empty.
//!
//! The fields inside are read by [`crate::fields`] (HTTP-free); a field that cannot be read is
//! a 400 whose message is the [`FieldError`]'s.

use axum::body::{Body, to_bytes};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::fields::FieldError;

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

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
