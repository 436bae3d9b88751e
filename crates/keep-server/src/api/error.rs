//! The one place errors become HTTP responses.
//!
//! Clients get Vault's shape, `{"errors": ["…"]}`, with a specific, safe message for 4xx and a
//! generic one for 5xx; the cause of a 5xx goes to the log with the request id, never to the
//! client (it may name storage paths or internal state).
//!
//! [`vault_shaped`] extends that shape to the 4xx answers axum writes itself (a path or query
//! its extractors cannot read), so no client ever gets a plain-text error.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::body::{Cause, json as json_response};
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
            KvError::CasMismatch | KvError::CasRequired => ApiError::bad_request(e.to_string()),
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

/// A body field that cannot be read: 400 with the field's message.
impl From<crate::fields::FieldError> for ApiError {
    fn from(e: crate::fields::FieldError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<keep_store::StoreError> for ApiError {
    fn from(e: keep_store::StoreError) -> ApiError {
        ApiError::internal(format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    /// The body is a [`JsonBody`](crate::api::body::JsonBody) the pipeline serializes; a 5xx's cause rides along as a
    /// [`Cause`], which the pipeline logs with the request id.
    fn into_response(self) -> Response {
        let body = match self.data {
            Some(data) => json!({
                "request_id": "",
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
        let mut resp = json_response(self.status, body);
        if let Some(cause) = self.cause {
            resp.extensions_mut().insert(Cause(cause));
        }
        resp
    }
}

/// The most of a plain-text rejection body kept as the message (axum's are one short line).
const REJECTION_MESSAGE_LIMIT: usize = 4096;

/// Middleware around every route: a 4xx whose body is not JSON (axum's extractor rejections,
/// such as `Invalid URL: Invalid UTF-8 in `name`` for `/v1/sys/policy/%FF`, or a query that
/// does not deserialize) becomes an [`ApiError`] with that text as its message, so every
/// client error is `{"errors": ["…"]}`. Handlers' own errors are already JSON and pass as is.
pub async fn vault_shaped(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), REJECTION_MESSAGE_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    ApiError::client(status, message).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::config::Limits;
    use crate::state::AppState;

    async fn send(uri: &str) -> (StatusCode, Value) {
        let state = Arc::new(AppState::unsealed(
            Arc::new(keep_store::MemStore::new()),
            vec![],
            Limits::default(),
            "memory",
        ));
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = crate::api::router(state).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status} body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, body)
    }

    // Found by the `http` fuzz target: axum's extractors answered these with plain text.
    #[tokio::test]
    async fn extractor_rejections_have_vaults_error_shape() {
        for (uri, needle) in [
            ("/v1/sys/policy/%FF", "Invalid UTF-8"),
            ("/v1/sys/policies/acl/a?list=true&list=false", "list"),
        ] {
            let (status, body) = send(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            let errors = body["errors"].as_array().unwrap();
            assert!(
                errors.len() == 1 && errors[0].as_str().unwrap().contains(needle),
                "{uri}: {body}"
            );
        }
    }
}
