//! Response bodies the pipeline finishes: a JSON body stays a value ([`JsonBody`]) until the
//! pipeline has stamped the request id and mount type into it and hashed it for the audit line.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON body not serialized yet (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonBody(pub Value);

/// A JSON response whose body the pipeline serializes.
pub fn json(status: StatusCode, body: Value) -> Response {
    let mut resp = status.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut().insert(JsonBody(body));
    resp
}

/// The internal cause of a 5xx, for the server log (with the request id), never the client.
#[derive(Clone, Debug)]
pub struct Cause(pub String);

/// The mount type Vault reports for a path (`mount_type` in the envelope).
pub fn mount_type(path: &str) -> &'static str {
    match path.split('/').next().unwrap_or("") {
        "secret" => "kv",
        "pki" => "pki",
        "sys" => "system",
        "auth" => match path.split('/').nth(1) {
            Some("token") => "token",
            _ => "cert",
        },
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_types_follow_the_path() {
        for (p, want) in [
            ("secret/data/x", "kv"),
            ("pki/issue/r", "pki"),
            ("sys/policies/acl/x", "system"),
            ("auth/token/lookup-self", "token"),
            ("auth/cert/login", "cert"),
        ] {
            assert_eq!(mount_type(p), want, "{p}");
        }
    }
}
