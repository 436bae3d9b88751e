//! OpenClaw's `exec` SecretRef provider protocol (version 1) and how keep answers it.
//!
//! OpenClaw runs the provider command once per batch of ids, writes one compact JSON request
//! on its stdin (no trailing newline, then EOF):
//!
//! ```json
//! {"protocolVersion":1,"provider":"keep","ids":["agents/agent-01/llm#api_key"]}
//! ```
//!
//! and reads one JSON object from its stdout:
//!
//! ```json
//! {"protocolVersion":1,"values":{"agents/agent-01/llm#api_key":"sk-…"},
//!  "errors":{"agents/agent-01/missing#x":{"code":"NOT_FOUND","message":"…"}}}
//! ```
//!
//! Ids are `path#key`: a KV v2 `path` under one mount (`secret` unless the caller says
//! otherwise) and the `key` inside that secret. A bare `path` names a secret that has exactly
//! one key. Each id that cannot be resolved gets its own entry in `errors` with an
//! [`ErrorCode`], so OpenClaw reports every failing reference on its own.
//!
//! [`resolve`] logs in once, then reads every distinct path of the batch concurrently over
//! the one client (several ids on one path cost one read), and stops at a deadline the caller
//! supplies: ids not answered by then get [`ErrorCode::Unavailable`]. The deadline is a
//! future rather than a duration so that this crate needs no timer of its own (the `keep`
//! binary passes a tokio sleep).
//!
//! Secret values exist only in [`Response::values`]; no error message, log line or `Debug`
//! output here contains one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{ApiResponse, ClientError, VaultClient};

/// The only protocol version OpenClaw speaks (and rejects any other in answers).
pub const PROTOCOL_VERSION: u64 = 1;
/// The largest request read from stdin. OpenClaw's own answer limit (`maxOutputBytes`) is
/// 1 MiB by default; a request is a list of ids and is far smaller in practice.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// How many KV reads run at once: enough to hide the round trips of a typical batch, few
/// enough not to look like a burst to the server.
pub const MAX_CONCURRENT_READS: usize = 8;
/// The longest id accepted; longer ones are certainly not secret paths.
const MAX_ID_LEN: usize = 1024;

/// A request OpenClaw sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The provider alias from OpenClaw's `secrets.providers` (informational).
    pub provider: Option<String>,
    /// The ids to resolve, as sent (duplicates are answered once).
    pub ids: Vec<String>,
}

/// Why a request could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Larger than [`MAX_REQUEST_BYTES`].
    #[error("the request is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// Nothing arrived on stdin.
    #[error(
        "the request is empty; OpenClaw writes {{\"protocolVersion\":1,\"provider\":…,\"ids\":[…]}} on stdin"
    )]
    Empty,
    /// Not the JSON shape of a protocol request.
    #[error("the request is not a valid OpenClaw exec provider request: {0}")]
    Malformed(String),
    /// A `protocolVersion` other than 1 (or none).
    #[error("unsupported protocolVersion {0}; keep speaks OpenClaw exec protocol version 1")]
    Version(String),
}

/// The request's shape once its version is known to be 1 (`protocolVersion` itself is checked
/// on the untyped value first; unknown fields are ignored, as OpenClaw may add some).
#[derive(Deserialize)]
struct RawRequest {
    provider: Option<String>,
    ids: Option<Vec<String>>,
}

/// Parses a request. The protocol version is checked before the rest, so a future protocol
/// is reported as such rather than as a shape error.
pub fn parse_request(bytes: &[u8]) -> Result<Request, RequestError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Empty);
    }
    let value: Value = serde_json::from_slice(bytes)
        // serde_json's message gives line and column, never the input text.
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    match value.get("protocolVersion") {
        Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
        Some(v) => return Err(RequestError::Version(v.to_string())),
        None => return Err(RequestError::Version("(missing)".into())),
    }
    let raw: RawRequest =
        serde_json::from_value(value).map_err(|e| RequestError::Malformed(e.to_string()))?;
    Ok(Request {
        provider: raw.provider,
        ids: raw
            .ids
            .ok_or_else(|| RequestError::Malformed("`ids` is missing".into()))?,
    })
}

/// Why one id could not be resolved. OpenClaw shows `NOT_FOUND` in its message; for the
/// other codes it says only that the provider failed for the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The secret path, or the key inside it, does not exist (or its latest version is
    /// deleted).
    NotFound,
    /// The vault's policy does not let this identity read the path (HTTP 403), or the login
    /// was refused.
    PermissionDenied,
    /// The id is not `path#key` or `path`.
    InvalidId,
    /// A bare `path` names a secret with more than one key.
    Ambiguous,
    /// The value is not a non-empty string (OpenClaw accepts nothing else).
    InvalidValue,
    /// The vault could not be reached or answered with a server error, or the deadline
    /// passed.
    Unavailable,
}

/// One id's error: a code and a message that names paths and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// What went wrong, for a human.
    pub message: String,
}

impl IdError {
    fn new(code: ErrorCode, message: impl Into<String>) -> IdError {
        IdError {
            code,
            message: message.into(),
        }
    }
}

/// The answer: exactly what goes on stdout.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// Always [`PROTOCOL_VERSION`].
    #[serde(rename = "protocolVersion")]
    pub protocol_version: u64,
    /// Resolved values by id. **Secret**: never log this.
    pub values: BTreeMap<String, String>,
    /// Errors by id; left out of the JSON when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, IdError>,
}

// By hand: the ids that resolved, never their values.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("protocol_version", &self.protocol_version)
            .field("resolved", &self.values.keys().collect::<Vec<_>>())
            .field("errors", &self.errors)
            .finish()
    }
}

impl Response {
    fn new() -> Response {
        Response {
            protocol_version: PROTOCOL_VERSION,
            values: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// A response giving every id of `ids` the same error (used when nothing could be
    /// fetched, e.g. the config cannot be used).
    pub fn all_failed(ids: &[String], error: &IdError) -> Response {
        let mut r = Response::new();
        for id in ids {
            r.errors.insert(id.clone(), error.clone());
        }
        r
    }

    /// The JSON text for stdout (compact, no newline).
    pub fn to_json(&self) -> String {
        // Maps of strings cannot fail to serialize; the fallback keeps the protocol shape.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(r#"{{"protocolVersion":{PROTOCOL_VERSION},"values":{{}}}}"#)
        })
    }
}

/// A parsed id: the secret's path and, optionally, the key inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretId {
    /// The KV v2 path under the mount, without leading or trailing `/`.
    pub path: String,
    /// The key; `None` for the single-key form.
    pub key: Option<String>,
}

/// Parses `path#key` or `path`. The path's segments must be non-empty and not `.` or `..`
/// (they would address another path than the one written); the key, when given, non-empty.
pub fn parse_id(id: &str) -> Result<SecretId, IdError> {
    let bad = |why: &str| {
        IdError::new(
            ErrorCode::InvalidId,
            format!(
                "{why}; write path#key (e.g. agents/agent-01/llm#api_key) or a single-key path"
            ),
        )
    };
    if id.len() > MAX_ID_LEN {
        return Err(bad("the id is too long"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("the id contains control characters"));
    }
    let (path, key) = match id.split_once('#') {
        Some((p, k)) => (p, Some(k)),
        None => (id, None),
    };
    if path.is_empty() {
        return Err(bad("the path is empty"));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(bad("the path must not start or end with '/'"));
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.trim() != s)
    {
        return Err(bad(
            "the path has an empty, '.', '..' or space-padded segment",
        ));
    }
    match key {
        Some("") => Err(bad("the key after '#' is empty")),
        Some(k) if k.contains('#') => Err(bad("the id has more than one '#'")),
        k => Ok(SecretId {
            path: path.to_owned(),
            key: k.map(str::to_owned),
        }),
    }
}

/// How to resolve: the client (not yet logged in) and where to look.
#[derive(Debug)]
pub struct Resolver {
    /// The mTLS client, without a token: [`resolve`] logs in.
    pub client: VaultClient,
    /// The cert auth role to log in with (`None`: the server picks).
    pub role: Option<String>,
    /// The KV v2 mount ids are read from.
    pub mount: String,
}

/// What one path's read gave.
type Read = Result<serde_json::Map<String, Value>, IdError>;

/// The ids of a request that parse, each with its parsed form, and the distinct paths they
/// need; malformed ids already have their error in the response.
struct Wanted<'a> {
    ids: Vec<(&'a String, SecretId)>,
    paths: Vec<String>,
}

/// Parses every id first: malformed ones cost no request. A set keeps duplicate detection
/// linear for large batches.
fn wanted<'a>(ids: &'a [String], response: &mut Response) -> Wanted<'a> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut wanted: Vec<(&String, SecretId)> = Vec::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        match parse_id(id) {
            Ok(sid) => wanted.push((id, sid)),
            Err(e) => {
                response.errors.insert(id.clone(), e);
            }
        }
    }
    let mut paths: Vec<String> = wanted.iter().map(|(_, s)| s.path.clone()).collect();
    paths.sort();
    paths.dedup();
    Wanted { ids: wanted, paths }
}

/// Gives every wanted id its value or error from the reads.
fn answer_from(
    response: &mut Response,
    mount: &str,
    ids: Vec<(&String, SecretId)>,
    reads: &HashMap<&str, Read>,
) {
    for (id, sid) in ids {
        let outcome = match reads.get(sid.path.as_str()) {
            Some(Ok(data)) => pick(mount, &sid, data),
            Some(Err(e)) => Err(e.clone()),
            None => Err(IdError::new(
                ErrorCode::Unavailable,
                format!("reading {mount}/{} did not finish in time", sid.path),
            )),
        };
        match outcome {
            Ok(v) => {
                response.values.insert(id.clone(), v);
            }
            Err(e) => {
                response.errors.insert(id.clone(), e);
            }
        }
    }
}

/// Resolves `ids`, giving up on whatever is unanswered when `deadline` completes. Returns the
/// response and, when the login succeeded, the logged-in client (so the caller can revoke
/// the token after answering).
pub async fn resolve(
    resolver: Resolver,
    ids: &[String],
    deadline: impl Future<Output = ()>,
) -> (Response, Option<VaultClient>) {
    let mut deadline = pin!(deadline);
    let mut response = Response::new();
    let wanted = wanted(ids, &mut response);
    if wanted.ids.is_empty() {
        return (response, None);
    }

    let Resolver {
        client,
        role,
        mount,
    } = resolver;
    let login = match race(client.login(role.as_deref()), deadline.as_mut()).await {
        Some(Ok(login)) => login,
        Some(Err(e)) => {
            let err = login_error(&e);
            for (id, _) in wanted.ids {
                response.errors.insert(id.clone(), err.clone());
            }
            return (response, None);
        }
        None => {
            let err = IdError::new(
                ErrorCode::Unavailable,
                "the vault did not answer the login in time",
            );
            for (id, _) in wanted.ids {
                response.errors.insert(id.clone(), err.clone());
            }
            return (response, None);
        }
    };
    let client = client.with_token(Some(login.token));
    tracing::debug!(paths = wanted.paths.len(), "logged in; reading");

    let reads = read_all(
        &mount,
        &wanted.paths,
        |p| Box::pin(client.kv_read(&mount, p, None)),
        deadline.as_mut(),
    )
    .await;
    tracing::debug!(read = reads.len(), of = wanted.paths.len(), "reads done");
    answer_from(&mut response, &mount, wanted.ids, &reads);
    (response, Some(client))
}

/// Resolves `ids` through a running `keep agent` sidecar (its unix socket): no TLS handshake
/// and no login here; the sidecar answers from the server over its own connection, or from
/// memory while the server is unreachable. Unanswered ids get [`ErrorCode::Unavailable`]
/// when `deadline` completes.
pub async fn resolve_local(
    local: &crate::proxy::LocalClient,
    mount: &str,
    ids: &[String],
    deadline: impl Future<Output = ()>,
) -> Response {
    let mut deadline = pin!(deadline);
    let mut response = Response::new();
    let wanted = wanted(ids, &mut response);
    if wanted.ids.is_empty() {
        return response;
    }
    let reads = read_all(
        mount,
        &wanted.paths,
        |p| Box::pin(local.kv_read(mount, p)),
        deadline.as_mut(),
    )
    .await;
    tracing::debug!(
        read = reads.len(),
        of = wanted.paths.len(),
        "reads through the sidecar done"
    );
    answer_from(&mut response, mount, wanted.ids, &reads);
    response
}

/// The value an id names inside a fetched secret.
fn pick(
    mount: &str,
    sid: &SecretId,
    data: &serde_json::Map<String, Value>,
) -> Result<String, IdError> {
    let at = format!("{mount}/{}", sid.path);
    let (key, value) = match &sid.key {
        Some(k) => match data.get(k) {
            Some(v) => (k.as_str(), v),
            None => {
                return Err(IdError::new(
                    ErrorCode::NotFound,
                    format!("{at} has no key {k:?}"),
                ));
            }
        },
        None => {
            let mut entries = data.iter();
            match (entries.next(), data.len()) {
                (Some((k, v)), 1) => (k.as_str(), v),
                (_, 0) => {
                    return Err(IdError::new(
                        ErrorCode::NotFound,
                        format!("{at} has no keys"),
                    ));
                }
                // Key names are not listed: the count and the fix are enough, and names can
                // say more about a secret than its owner wants in an error log.
                (_, n) => {
                    return Err(IdError::new(
                        ErrorCode::Ambiguous,
                        format!("{at} has {n} keys; use path#key"),
                    ));
                }
            }
        }
    };
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::String(_) => Err(IdError::new(
            ErrorCode::InvalidValue,
            format!("{at}: the value of {key:?} is empty; OpenClaw needs a non-empty string"),
        )),
        other => Err(IdError::new(
            ErrorCode::InvalidValue,
            format!(
                "{at}: the value of {key:?} is {}, not a string; OpenClaw needs a non-empty string",
                kind(other)
            ),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One read in flight.
type Pending<'a> = Pin<Box<dyn Future<Output = Result<ApiResponse, ClientError>> + 'a>>;

/// Reads every path with `read`, at most [`MAX_CONCURRENT_READS`] at a time, until all are
/// done or the deadline completes; paths unread by then are absent from the result.
async fn read_all<'a, D: Future<Output = ()>>(
    mount: &'a str,
    paths: &'a [String],
    read: impl Fn(&'a str) -> Pending<'a>,
    mut deadline: Pin<&mut D>,
) -> HashMap<&'a str, Read> {
    let mut queue = paths.iter();
    let mut running: Vec<(&'a str, Pending<'a>)> = Vec::new();
    let mut done: HashMap<&'a str, Read> = HashMap::new();
    // A hand-made bounded join (the crate has no futures dependency): one task polls every
    // running read, refills the slots, and checks the deadline when nothing else progressed.
    poll_fn(|cx| {
        loop {
            while running.len() < MAX_CONCURRENT_READS {
                match queue.next() {
                    Some(p) => running.push((p.as_str(), read(p.as_str()))),
                    None => break,
                }
            }
            let mut progressed = false;
            let mut i = 0;
            while i < running.len() {
                if let Poll::Ready(r) = running[i].1.as_mut().poll(cx) {
                    let (path, _) = running.swap_remove(i);
                    done.insert(path, read_result(mount, path, r));
                    progressed = true;
                } else {
                    i += 1;
                }
            }
            if running.is_empty() {
                return Poll::Ready(());
            }
            if !progressed {
                break;
            }
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await;
    done
}

/// Turns one KV read into the secret's key/value map or the error every id on it gets.
fn read_result(mount: &str, path: &str, r: Result<ApiResponse, ClientError>) -> Read {
    let at = format!("{mount}/{path}");
    match r {
        Ok(resp) => match resp.data().get("data") {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => Err(IdError::new(
                ErrorCode::NotFound,
                format!("{at}: the latest version has no data (deleted or destroyed)"),
            )),
        },
        Err(e) => Err(read_error(&at, &e)),
    }
}

/// The code for a failed read. The client's messages name the server and path, never a value.
fn read_error(at: &str, e: &ClientError) -> IdError {
    match e {
        ClientError::Api { status: 404, .. } => {
            IdError::new(ErrorCode::NotFound, format!("{at} does not exist"))
        }
        ClientError::Api {
            status: 401 | 403, ..
        } => IdError::new(
            ErrorCode::PermissionDenied,
            format!("{at}: permission denied by the vault's policy"),
        ),
        ClientError::InvalidPath { .. } => IdError::new(ErrorCode::InvalidId, format!("{at}: {e}")),
        _ => IdError::new(ErrorCode::Unavailable, format!("reading {at}: {e}")),
    }
}

/// The code every id gets when the login fails.
fn login_error(e: &ClientError) -> IdError {
    match e {
        ClientError::Api {
            status: 400 | 401 | 403,
            ..
        }
        | ClientError::ClientCertificateRejected { .. } => IdError::new(
            ErrorCode::PermissionDenied,
            format!("the vault refused the cert login: {e}"),
        ),
        _ => IdError::new(
            ErrorCode::Unavailable,
            format!("logging in to the vault: {e}"),
        ),
    }
}

/// Runs `work` until it finishes (`Some`) or `deadline` completes first (`None`).
async fn race<T>(
    work: impl Future<Output = T>,
    mut deadline: Pin<&mut impl Future<Output = ()>>,
) -> Option<T> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(v) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_request_openclaw_sends() {
        let r = parse_request(br#"{"protocolVersion":1,"provider":"keep","ids":["a/b#c","d"]}"#)
            .unwrap();
        assert_eq!(r.provider.as_deref(), Some("keep"));
        assert_eq!(r.ids, vec!["a/b#c", "d"]);
    }

    #[test]
    fn rejects_other_versions_and_shapes() {
        assert!(matches!(
            parse_request(br#"{"protocolVersion":2,"ids":[]}"#),
            Err(RequestError::Version(_))
        ));
        assert!(matches!(
            parse_request(br#"{"ids":[]}"#),
            Err(RequestError::Version(_))
        ));
        assert!(matches!(parse_request(b""), Err(RequestError::Empty)));
        assert!(matches!(
            parse_request(br#"{"protocolVersion":1}"#),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"{not json"),
            Err(RequestError::Malformed(_))
        ));
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(parse_request(&big), Err(RequestError::TooLarge)));
    }

    #[test]
    fn parses_ids() {
        assert_eq!(
            parse_id("agents/a/llm#api_key").unwrap(),
            SecretId {
                path: "agents/a/llm".into(),
                key: Some("api_key".into())
            }
        );
        assert_eq!(parse_id("x").unwrap().key, None);
        for bad in [
            "", "#k", "a#", "/a#k", "a/#k", "a//b#k", "a/../b#k", "a#b#c", "a/ b#k",
        ] {
            assert_eq!(
                parse_id(bad).unwrap_err().code,
                ErrorCode::InvalidId,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn picks_values_without_revealing_them_in_errors() {
        let data = json!({"api_key": "sk-secret", "n": 3, "e": ""});
        let data = data.as_object().unwrap();
        let sid = |s: &str| parse_id(s).unwrap();
        assert_eq!(
            pick("secret", &sid("p#api_key"), data).unwrap(),
            "sk-secret"
        );
        let errs = [
            (
                pick("secret", &sid("p#n"), data).unwrap_err(),
                ErrorCode::InvalidValue,
            ),
            (
                pick("secret", &sid("p#e"), data).unwrap_err(),
                ErrorCode::InvalidValue,
            ),
            (
                pick("secret", &sid("p#zz"), data).unwrap_err(),
                ErrorCode::NotFound,
            ),
            (
                pick("secret", &sid("p"), data).unwrap_err(),
                ErrorCode::Ambiguous,
            ),
        ];
        for (e, code) in errs {
            assert_eq!(e.code, code);
            assert!(!e.message.contains("sk-secret"), "{}", e.message);
        }
        assert_eq!(
            pick("secret", &sid("p"), &serde_json::Map::new())
                .unwrap_err()
                .message,
            "secret/p has no keys"
        );
        let one = json!({"token": "t-1"});
        assert_eq!(
            pick("secret", &sid("p"), one.as_object().unwrap()).unwrap(),
            "t-1"
        );
    }

    #[test]
    fn response_json_omits_empty_errors_and_debug_hides_values() {
        let mut r = Response::new();
        r.values.insert("a#b".into(), "sk-secret".into());
        assert_eq!(
            r.to_json(),
            r#"{"protocolVersion":1,"values":{"a#b":"sk-secret"}}"#
        );
        assert!(!format!("{r:?}").contains("sk-secret"));
        r.errors.insert(
            "c".into(),
            IdError::new(ErrorCode::NotFound, "secret/c does not exist"),
        );
        assert!(r.to_json().contains(r#""errors":{"c":{"code":"NOT_FOUND""#));
    }
}
