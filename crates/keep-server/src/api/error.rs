//! The one place errors become HTTP responses.
//!
//! Clients get Vault's shape, `{"errors": ["…"]}`, with a specific, safe message for 4xx and a
//! generic one for 5xx; the cause of a 5xx goes to the log with the request id, never to the
//! client (it may name storage paths or internal state).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::kv::KvError;
use crate::pki::PkiError;

/// An API error: a status and the message the client may see.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Client-visible messages (`errors`); may be empty, as Vault's 404s are.
    pub errors: Vec<String>,
    /// Extra body fields (Vault's 404 for a deleted version carries `data`).
    pub data: Option<serde_json::Value>,
    /// The internal cause, for the log only.
    pub cause: Option<String>,
}

impl ApiError {
    /// A 4xx with one message.
    pub fn client(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            errors: vec![msg.into()],
            data: None,
            cause: None,
        }
    }

    /// 400 with a message.
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        Self::client(StatusCode::BAD_REQUEST, msg)
    }

    /// 403 "permission denied", Vault's wording.
    pub fn permission_denied() -> ApiError {
        Self::client(StatusCode::FORBIDDEN, "permission denied")
    }

    /// 404 with an empty error list, as Vault answers for a missing secret.
    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            errors: vec![],
            data: None,
            cause: None,
        }
    }

    /// 503 while sealed.
    pub fn sealed() -> ApiError {
        Self::client(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed")
    }

    /// 500 with a generic message; `cause` is logged.
    pub fn internal(cause: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errors: vec!["internal error; see the server log".into()],
            data: None,
            cause: Some(cause.into()),
        }
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> ApiError {
        match e {
            KvError::NotFound => ApiError::not_found(),
            KvError::Deleted(meta) => ApiError {
                status: StatusCode::NOT_FOUND,
                errors: vec![],
                // hvac reads data.metadata.deletion_time from this body to tell a deleted
                // version from a missing one.
                data: Some(json!({"data": null, "metadata": meta})),
                cause: None,
            },
            KvError::Invalid(msg) => ApiError::bad_request(msg),
            KvError::Storage(e) => ApiError::internal(format!("storage: {e}")),
            KvError::Corrupt(key) => ApiError::internal(format!("corrupt entry {key}")),
        }
    }
}

impl From<PkiError> for ApiError {
    fn from(e: PkiError) -> ApiError {
        match e {
            PkiError::BadRequest(_)
            | PkiError::Refused(_)
            | PkiError::UnknownRole(_)
            | PkiError::CertNotFound(_) => ApiError::bad_request(e.to_string()),
            PkiError::RenewalDenied(msg) => ApiError::client(StatusCode::FORBIDDEN, msg),
            PkiError::Storage(e) => ApiError::internal(format!("storage: {e}")),
            PkiError::Config { .. } | PkiError::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(status = self.status.as_u16(), cause = %cause, "request failed");
        }
        let body = match self.data {
            Some(data) => json!({
                "request_id": crate::api::envelope::request_id(),
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": data,
                "wrap_info": null,
                "warnings": null,
                "auth": null,
            }),
            None => json!({ "errors": self.errors }),
        };
        (self.status, axum::Json(body)).into_response()
    }
}
