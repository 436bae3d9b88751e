//! The one typed request: what the wire says, read once.
//!
//! Like Vault's `logical.Request`, a [`VaultRequest`] is the only thing the layers after the
//! listener read: the audit lines, access control, alerts and the handlers. It is built once
//! per request by the pipeline ([`super::pipeline`]) from the HTTP request — operation, path,
//! query, body, caller identity, token, request id — and handed to the handler, which takes it
//! as an extractor. Nothing downstream looks at headers, the method or the raw body again, so
//! there is one rule for each of them:
//!
//! - **operation**: `LIST`, or `GET`/`HEAD` with `list` set to a true value of Go's
//!   `strconv.ParseBool` (`1`, `t`, `T`, `TRUE`, `true`, `True`) is a list; `GET`/`HEAD` a read;
//!   `POST`/`PUT` an update (a handler may refine it to a create, after its existence check);
//!   `PATCH` a patch; `DELETE` a delete. Any other method is 405 before routing, as in Vault;
//!   any other `list` value is 400, as in Vault;
//! - **path**: without `/v1/`, percent-decoded; a list path ends with `/` (added when the
//!   client left it out, as Vault does), so policy, audit and handlers see the same folder;
//! - **token**: `X-Vault-Token`, else `Authorization: Bearer …` (both trimmed), held as a
//!   [`ClientToken`], which never prints;
//! - **body**: parsed as JSON once (or, sent as `application/x-www-form-urlencoded`, as a form
//!   of string fields, as Vault does); empty or whitespace is no body.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use keep_tls::identity::PeerIdentity;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::api::error::ApiError;
use crate::fields::parse_bool;
use crate::state::{AppState, Caller, PeerAddr};

/// What a request wants to do, in Vault's capability terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `read`
    Read,
    /// `create` (a write to a path that does not exist yet)
    Create,
    /// `update`
    Update,
    /// `patch`
    Patch,
    /// `delete`
    Delete,
    /// `list`
    List,
}

impl Operation {
    /// The policy capability this operation needs.
    pub fn capability(self) -> keep_policy::Capability {
        use keep_policy::Capability as C;
        match self {
            Operation::Read => C::Read,
            Operation::Create => C::Create,
            Operation::Update => C::Update,
            Operation::Patch => C::Patch,
            Operation::Delete => C::Delete,
            Operation::List => C::List,
        }
    }

    /// Vault's name for it, as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }

    /// Whether the operation only reads (its result can be withheld without anything having
    /// changed).
    pub fn is_read_only(self) -> bool {
        matches!(self, Operation::Read | Operation::List)
    }
}

/// The `LIST` method (axum's method filters do not know it).
pub fn list_method() -> Method {
    // "LIST" is a valid token (RFC 9110 tchar only), so this cannot fail.
    Method::from_bytes(b"LIST").unwrap_or(Method::GET)
}

/// The operation of a method and query, by the one rule of the module docs.
pub fn operation(method: &Method, query: &[(String, String)]) -> Result<Operation, ApiError> {
    let m = method.as_str();
    match m {
        "LIST" => Ok(Operation::List),
        "GET" | "HEAD" => {
            let mut values = query.iter().filter(|(k, _)| k == "list").map(|(_, v)| v);
            let Some(first) = values.next() else {
                return Ok(Operation::Read);
            };
            if values.next().is_some() {
                return Err(ApiError::bad_request(
                    "the list query parameter is given more than once",
                ));
            }
            match parse_bool(first) {
                Some(true) => Ok(Operation::List),
                Some(false) => Ok(Operation::Read),
                None => Err(ApiError::bad_request(format!(
                    "invalid value for the list query parameter {first:?}: use true or false"
                ))),
            }
        }
        "POST" | "PUT" => Ok(Operation::Update),
        "PATCH" => Ok(Operation::Patch),
        "DELETE" => Ok(Operation::Delete),
        _ => Err(method_not_allowed()),
    }
}

/// The path a list request is checked, audited and answered under: with a trailing `/`, which
/// Vault adds to every list path before anything reads it (`LIST secret/metadata/app` is the
/// folder `secret/metadata/app/`, the path a list policy names).
pub fn list_path(op: Operation, mut path: String) -> String {
    if op == Operation::List && !path.ends_with('/') {
        path.push('/');
    }
    path
}

/// 405 in Vault's shape: the one answer to a verb a path does not take.
pub fn method_not_allowed() -> ApiError {
    ApiError::client(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

/// A client token from `X-Vault-Token` or `Authorization: Bearer`. Zeroized on drop; its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken(Zeroizing<String>);

impl ClientToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> ClientToken {
        ClientToken(Zeroizing::new(token.into()))
    }

    /// The token itself, for lookup and hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientToken(<redacted>)")
    }
}

/// The token of a request, by the one rule of the module docs.
pub fn token_from(headers: &HeaderMap) -> Option<ClientToken> {
    if let Some(v) = headers.get("x-vault-token").and_then(|v| v.to_str().ok())
        && !v.trim().is_empty()
    {
        return Some(ClientToken::new(v.trim()));
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(ClientToken::new)
}

/// Whether the body is form-encoded, by Vault's rule (`isForm` in its HTTP layer), which errs
/// on the side of JSON: the content type is `application/x-www-form-urlencoded` (with or
/// without parameters) **and** the body does not start like JSON (`{` or `[` after
/// whitespace). `curl -d '{…}'` sends JSON under the form content type, and stays JSON.
fn is_form(headers: &HeaderMap, body: &[u8]) -> bool {
    let looks_like_json = matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    !looks_like_json
        && headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

/// `X-Vault-Wrap-TTL`, by Vault's rule: whole seconds or a Go duration (`90`, `"5m"`), never
/// negative; 0 means "do not wrap". Within [`crate::wrapping::MIN_TTL`] and
/// [`crate::wrapping::MAX_TTL`], else 400.
pub fn wrap_ttl(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("x-vault-wrap-ttl") else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('-') {
        return Err(ApiError::bad_request(
            "requested wrap ttl cannot be negative",
        ));
    }
    let secs = crate::fields::duration_secs(&Value::String(text.to_owned())).ok_or_else(|| {
        ApiError::bad_request(format!("invalid X-Vault-Wrap-TTL {text:?}: not a duration"))
    })?;
    if secs == 0 {
        return Ok(None);
    }
    if secs > crate::wrapping::MAX_TTL {
        return Err(ApiError::bad_request(format!(
            "requested wrap ttl of {secs}s is over the maximum of {}s",
            crate::wrapping::MAX_TTL
        )));
    }
    Ok(Some(secs.max(crate::wrapping::MIN_TTL)))
}

/// The request body, parsed once. Its `Debug` shows the kind and size, never the content: a
/// body carries secrets.
#[derive(Clone, PartialEq)]
pub enum Payload {
    /// No body (or only whitespace).
    Empty,
    /// A JSON document (any JSON value; handlers that need an object say so).
    Json(Value),
    /// Not JSON: the parser's message, and the text (lossily decoded) for the audit line.
    Invalid {
        /// What the JSON parser said.
        error: String,
        /// The body as text, only ever written to the audit log HMAC'd.
        text: String,
    },
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Empty => f.write_str("Payload::Empty"),
            Payload::Json(_) => f.write_str("Payload::Json(<redacted>)"),
            Payload::Invalid { text, .. } => {
                write!(f, "Payload::Invalid(<{} bytes redacted>)", text.len())
            }
        }
    }
}

impl Payload {
    /// Parses a body.
    pub fn parse(bytes: &[u8]) -> Payload {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Payload::Empty;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Payload::Json(v),
            Err(e) => Payload::Invalid {
                error: e.to_string(),
                text: String::from_utf8_lossy(bytes).into_owned(),
            },
        }
    }

    /// Parses a form-encoded body (`application/x-www-form-urlencoded`) as Vault does: each
    /// field a string, a repeated field its values joined with `,`.
    pub fn form(bytes: &[u8]) -> Payload {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Payload::Empty;
        }
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            match m.get_mut(k.as_ref()) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(&v);
                }
                _ => {
                    m.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            }
        }
        Payload::Json(Value::Object(m))
    }

    /// What the audit request line records (HMAC'd by the audit log): the JSON, or the text.
    pub fn audit_value(&self) -> Option<Value> {
        match self {
            Payload::Empty => None,
            Payload::Json(v) => Some(v.clone()),
            Payload::Invalid { text, .. } => Some(Value::String(text.clone())),
        }
    }
}

/// One API request, read once (module docs).
#[derive(Clone, Debug)]
pub struct VaultRequest {
    /// The request id, shared by its audit lines and the response envelope.
    pub id: String,
    /// The method as sent (`LIST` included).
    pub method: Method,
    /// The operation, by the one rule.
    pub op: Operation,
    /// The API path without `/v1/`, percent-decoded (`secret/data/app`).
    pub path: String,
    /// The query, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The body.
    pub payload: Payload,
    /// The verified client identity of the connection (`None` only without a listener).
    pub peer: Option<Arc<PeerIdentity>>,
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// The client token, if one was sent.
    pub token: Option<ClientToken>,
    /// `X-Vault-Wrap-TTL` in seconds: answer with a response-wrapping token instead of the
    /// data ([`crate::api::wrapping`]). `None` when absent or 0.
    pub wrap_ttl: Option<u64>,
}

impl VaultRequest {
    /// Reads a request's head and body into the typed value. Errors are the client's (400, or
    /// 405 for a method Vault does not know).
    pub fn parse(parts: &Parts, body: &[u8], id: String) -> Result<VaultRequest, ApiError> {
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let op = operation(&parts.method, &query)?;
        let raw = parts.uri.path();
        let path = percent_encoding::percent_decode_str(raw.strip_prefix("/v1/").unwrap_or(raw))
            .decode_utf8()
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid URL: Invalid UTF-8 in the request path {raw:?}"
                ))
            })?
            .into_owned();
        let path = list_path(op, path);
        Ok(VaultRequest {
            id,
            method: parts.method.clone(),
            op,
            path,
            query,
            payload: if is_form(&parts.headers, body) {
                Payload::form(body)
            } else {
                Payload::parse(body)
            },
            peer: parts.extensions.get::<Caller>().map(|c| c.0.clone()),
            addr: parts.extensions.get::<PeerAddr>().map(|a| a.0),
            token: token_from(&parts.headers),
            wrap_ttl: wrap_ttl(&parts.headers)?,
        })
    }

    /// A request built in code (tests, in-process callers).
    pub fn new(op: Operation, path: &str) -> VaultRequest {
        VaultRequest {
            id: String::new(),
            method: Method::GET,
            op,
            path: path.to_owned(),
            query: Vec::new(),
            payload: Payload::Empty,
            peer: None,
            addr: None,
            token: None,
            wrap_ttl: None,
        }
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object (no body is `{}`): what every Vault write takes.
    pub fn object(&self) -> Result<Map<String, Value>, ApiError> {
        match &self.payload {
            Payload::Empty => Ok(Map::new()),
            Payload::Json(Value::Object(m)) => Ok(m.clone()),
            Payload::Json(_) => Err(ApiError::bad_request(
                "the request body must be a JSON object",
            )),
            Payload::Invalid { error, .. } => Err(ApiError::bad_request(format!(
                "failed to parse JSON input: {error}"
            ))),
        }
    }

    /// The connection's verified identity, or the 400 Vault gives a request without one.
    pub fn peer(&self) -> Result<&Arc<PeerIdentity>, ApiError> {
        self.peer
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("no client certificate supplied"))
    }
}

/// Handlers take the request as an extractor: the pipeline put it into the request's
/// extensions, and this takes it out (there is one request value, and one owner).
impl axum::extract::FromRequestParts<Arc<AppState>> for VaultRequest {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &Arc<AppState>,
    ) -> Result<VaultRequest, ApiError> {
        parts
            .extensions
            .remove::<VaultRequest>()
            .ok_or_else(|| ApiError::internal("the request pipeline did not run"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    #[test]
    fn one_rule_for_list() {
        for (method, query, want) in [
            ("LIST", "", Some(Operation::List)),
            ("GET", "list=true", Some(Operation::List)),
            ("GET", "list=1", Some(Operation::List)),
            ("GET", "list=t", Some(Operation::List)),
            ("GET", "list=True", Some(Operation::List)),
            ("GET", "list=TRUE", Some(Operation::List)),
            ("HEAD", "list=true", Some(Operation::List)),
            ("GET", "list=false", Some(Operation::Read)),
            ("GET", "list=0", Some(Operation::Read)),
            ("GET", "", Some(Operation::Read)),
            ("GET", "version=2", Some(Operation::Read)),
            ("POST", "list=true", Some(Operation::Update)),
            ("PUT", "", Some(Operation::Update)),
            ("PATCH", "", Some(Operation::Patch)),
            ("DELETE", "", Some(Operation::Delete)),
            ("GET", "list=yes", None),
            ("GET", "list=true&list=false", None),
            ("OPTIONS", "", None),
            ("TRACE", "", None),
            ("PROPFIND", "", None),
        ] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let got = operation(&m, &q(query)).ok();
            assert_eq!(got, want, "{method} ?{query}");
        }
        assert_eq!(
            operation(&Method::OPTIONS, &[]).unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            operation(&Method::GET, &q("list=yes")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn both_token_headers_and_neither_prints() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer  hvs.abc ".parse().unwrap());
        let t = token_from(&h).unwrap();
        assert_eq!(t.expose(), "hvs.abc");
        assert!(!format!("{t:?}").contains("abc"));
        h.insert("x-vault-token", "hvs.xyz".parse().unwrap());
        assert_eq!(token_from(&h).unwrap().expose(), "hvs.xyz");
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert!(token_from(&h).is_none());
        h.insert("x-vault-token", "  ".parse().unwrap());
        assert!(token_from(&h).is_none());
    }

    #[test]
    fn bodies_parse_once_and_say_what_is_wrong() {
        assert_eq!(Payload::parse(b" \n"), Payload::Empty);
        assert_eq!(
            Payload::parse(br#"{"a":1}"#),
            Payload::Json(serde_json::json!({"a": 1}))
        );
        let mut r = VaultRequest::new(Operation::Update, "secret/data/x");
        r.payload = Payload::parse(b"{nope");
        assert!(r.object().unwrap_err().errors[0].starts_with("failed to parse JSON input"));
        r.payload = Payload::parse(b"[1]");
        assert!(r.object().unwrap_err().errors[0].contains("JSON object"));
        r.payload = Payload::Empty;
        assert!(r.object().unwrap().is_empty());
        // Neither a parsed body nor an unparsable one shows in Debug.
        r.payload = Payload::parse(br#"{"api_key":"sk-debug-canary"}"#);
        r.token = Some(ClientToken::new("hvs.debug-canary"));
        let shown = format!("{r:?}");
        assert!(!shown.contains("canary"), "{shown}");
        r.payload = Payload::parse(b"sk-debug-canary not json");
        assert!(!format!("{r:?}").contains("canary"));
    }
}
