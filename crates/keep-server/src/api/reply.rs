//! What a handler gives back: its response, and what it learned for the audit line.
//!
//! Decisions travel as return values: access control ([`crate::auth::access`]) returns the
//! principal and the verdict with its reason, the handler returns them in its [`Answer`], and
//! the pipeline reads them off the response ([`Facts`] is a response extension) to write the
//! audit response line. JSON bodies stay values ([`JsonBody`]) until the pipeline has stamped
//! the request id into them and hashed them for that line, and are serialized once, there.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::body::{Cause, JsonBody};
use crate::api::error::ApiError;

/// What the audit response line says about who asked and what was decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Cert auth role, when one applied.
    pub role: Option<String>,
    /// Token accessor (HMAC'd when written).
    pub accessor: Option<String>,
    /// Policies in force.
    pub policies: Vec<String>,
    /// Whether the caller is a break-glass admin.
    pub admin: bool,
    /// The authorization decision: allowed or not, and why.
    pub decision: Option<(bool, String)>,
}

impl Facts {
    /// Facts with a decision.
    pub fn decided(mut self, allowed: bool, reason: impl Into<String>) -> Facts {
        self.decision = Some((allowed, reason.into()));
        self
    }
}

/// A handler's answer: its result and its [`Facts`].
#[derive(Debug)]
pub struct Answer {
    /// What the audit line says about the caller and the decision.
    pub facts: Facts,
    /// The response, or the error to answer with.
    pub result: Result<Response, ApiError>,
}

impl Answer {
    /// An answer.
    pub fn new(facts: Facts, result: Result<Response, ApiError>) -> Answer {
        Answer { facts, result }
    }

    /// An error answer with no facts (nothing was decided yet).
    pub fn error(e: ApiError) -> Answer {
        Answer::new(Facts::default(), Err(e))
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut resp = match self.result {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        resp.extensions_mut().insert(self.facts);
        resp
    }
}

/// Step 4 of the pipeline without the audit line: the [`JsonBody`] serialized, with the
/// request id and the mount type of `path` stamped into an envelope, and a 5xx's [`Cause`]
/// logged with the request id. Returns the body value too, for the audit line.
pub fn finish(mut resp: Response, id: &str, path: &str) -> (Response, Option<Value>) {
    if let Some(Cause(cause)) = resp.extensions_mut().remove::<Cause>() {
        tracing::error!(status = resp.status().as_u16(), request_id = %id, %cause, "request failed");
    }
    let Some(JsonBody(mut body)) = resp.extensions_mut().remove::<JsonBody>() else {
        return (resp, None);
    };
    if let Value::Object(m) = &mut body {
        if let Some(v) = m.get_mut("request_id") {
            *v = Value::String(id.to_owned());
        }
        if let Some(v) = m.get_mut("mount_type") {
            *v = Value::String(crate::api::body::mount_type(path).to_owned());
        }
    }
    // A `Value` always serializes (its keys are strings).
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    // The empty placeholder's length must not stay: hyper refuses a body that disagrees.
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    *resp.body_mut() = axum::body::Body::from(bytes);
    (resp, Some(body))
}

/// An error answered in front of the pipeline (the path and body limits): serialized at once.
pub fn early(e: ApiError) -> Response {
    finish(e.into_response(), "", "").0
}
