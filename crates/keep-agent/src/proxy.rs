//! The loopback Vault API of `keep agent` (`proxy:` in the agent config): what Vault Proxy
//! does, for token-only Vault clients such as OpenClaw's bundled Vault plugin.
//!
//! Those clients cannot present a client certificate, so they cannot talk to keep's mTLS API.
//! The sidecar serves plain HTTP/1.1 on a loopback address and/or a unix socket and forwards
//! a small, read-only part of Vault's API over its own mTLS connection, authenticated upstream
//! with a token from its own certificate login (never the caller's token):
//!
//! | request | answer |
//! |---|---|
//! | `GET MOUNT/data/PATH[?version=N]` | forwarded (MOUNT: `secret`, or a mount the config's `secrets` use) |
//! | `GET MOUNT/metadata/PATH` | forwarded |
//! | `LIST MOUNT/metadata/PATH/` or `GET …?list=true` | forwarded |
//! | `GET`/`POST auth/token/lookup-self` | answered here, for the local token |
//! | `GET sys/health` | forwarded, no token needed (as in Vault) |
//! | anything else | 404 (unknown path) or 405 (a write to a KV path), in Vault's error shape |
//!
//! Who may ask: on TCP, callers present the **local token** (`X-Vault-Token`, or
//! `Authorization: Bearer`), a random value the agent writes to `proxy.token_file` (mode 0600,
//! owned by `proxy.owner`) at start; it means nothing to the server. Without it the answer is
//! 403 `{"errors":["permission denied"]}`; with a wrong one the errors also say
//! `"invalid token"`, which is how OpenClaw's plugin tells a bad token from a policy denial.
//! On the unix socket the socket file's permissions (0600, owned by `proxy.owner`) admit
//! callers, and no token is needed.
//!
//! Outages: answers relay the server's status and body byte for byte. When the server cannot
//! be reached (or answers 5xx), a read this agent answered successfully before — or one of
//! the sidecar's own `secrets`, which every poll refreshes — is served from memory with the
//! headers `X-Keep-Stale: true` and `Age: SECONDS`; anything else gets 502 with Vault's
//! `{"errors":[…]}`. After a failed attempt the server is left alone for
//! [`UPSTREAM_PAUSE`], so a burst of reads during an outage answers at once instead of
//! each waiting for a timeout. A 404 drops the remembered value: a deleted secret is not
//! resurrected by the next outage. The cache lives in memory only and is zeroized when
//! replaced.
//!
//! [`LocalClient`] is the other side: how `keep openclaw-resolver` asks a running sidecar
//! over its socket (no TLS handshake, no login).
//!
//! No value or token is ever logged: log lines name routes, paths and statuses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::client::{ApiResponse, ClientConfig, ClientError, VaultClient};
use crate::config::{AgentConfig, DEFAULT_MOUNT, ProxyConfig};
use crate::sidecar::Fetched;

/// How long an upstream call may take before the cached value is served instead. OpenClaw's
/// plugin gives each read 5 s, the resolver 4 s for a whole batch: the answer must come well
/// inside both.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(2500);
/// How long the TCP connect and TLS handshake to the server may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// After the server could not be reached, how long reads are answered from memory (or 502)
/// without trying it again.
pub const UPSTREAM_PAUSE: Duration = Duration::from_secs(2);
/// A 403 from the server leads to one fresh login, unless the token is younger than this (a
/// young token refused is a policy denial, and logging in again would only load the server).
const RELOGIN_MIN_AGE: Duration = Duration::from_secs(10);
/// The most reads remembered for outages; beyond it new paths are not cached (logged once).
pub const MAX_CACHED: usize = 4096;
/// The header marking an answer served from memory because the server is unreachable.
pub const STALE_HEADER: &str = "x-keep-stale";
/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The prefix of local tokens, so one found in a log or a file is recognisable as keep's.
const TOKEN_PREFIX: &str = "keep-local.";

/// Why the proxy cannot start. Messages name the config field, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The local token file cannot be written.
    #[error("proxy.token_file: cannot write the local token to {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: crate::sink::SinkError,
    },
    /// No randomness for the local token.
    #[error("cannot make a random local token: {0}")]
    Random(String),
    /// The TCP address cannot be bound.
    #[error(
        "proxy.listen: cannot listen on {addr}: {source}; is another process (another keep agent?) using the port?"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The unix socket cannot be created or given its permissions.
    #[error("proxy.socket: {path}: {problem}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The TLS material cannot be used to build the upstream client.
    #[error("the vault client for the proxy cannot be set up: {0}")]
    Client(#[from] ClientError),
}

// ---------------------------------------------------------------------------------------------
// Routing: a pure function of the method, path and query.

/// What a request asks for, once recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `sys/health`, forwarded with its query (Vault's `standbyok`, `sealedcode` …).
    Health {
        /// The query string as given.
        query: Option<String>,
    },
    /// `auth/token/lookup-self`, answered for the local token.
    LookupSelf,
    /// A KV read forwarded upstream and remembered for outages.
    Read {
        /// The path after `/v1/`, percent-encoded as received and checked.
        path: String,
        /// The query forwarded (`version=N`, or `list=true` for a list).
        query: Option<String>,
    },
}

impl Route {
    /// The key a read is remembered under: the path and the forwarded query.
    fn cache_key(path: &str, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }
}

/// Why a request is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a path the proxy serves (404).
    NotFound(String),
    /// A path it serves, with a method it does not (405).
    MethodNotAllowed(String),
}

/// What the proxy forwards, for the messages of refusals.
const SERVED: &str = "keep agent's proxy serves KV v2 reads (MOUNT/data/…, MOUNT/metadata/…, LIST), auth/token/lookup-self and sys/health";

/// Recognises a request. `mounts` are the KV v2 mounts reads may go to. The method is
/// `LIST` for Vault's list verb; `GET …?list=true` is a list too, as in Vault (Go's
/// `ParseBool`).
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    mounts: &[String],
) -> Result<Route, Refusal> {
    let not_found = || Refusal::NotFound(format!("no handler for route {path:?}; {SERVED}"));
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(not_found());
    };
    let reading = *method == Method::GET || *method == Method::HEAD;
    let list = method.as_str() == "LIST" || (reading && query_flag(query, "list"));
    match rest {
        "sys/health" => {
            return if reading {
                Ok(Route::Health {
                    query: query.map(str::to_owned),
                })
            } else {
                Err(Refusal::MethodNotAllowed(format!(
                    "{method} sys/health: only GET is served"
                )))
            };
        }
        "auth/token/lookup-self" => {
            return if reading || *method == Method::POST {
                Ok(Route::LookupSelf)
            } else {
                Err(Refusal::MethodNotAllowed(format!(
                    "{method} auth/token/lookup-self: only GET and POST are served"
                )))
            };
        }
        _ => {}
    }
    let mut parts = rest.splitn(3, '/');
    let (Some(mount), Some(kind), tail) = (parts.next(), parts.next(), parts.next()) else {
        return Err(not_found());
    };
    if !mounts.iter().any(|m| m == mount) || !matches!(kind, "data" | "metadata") {
        return Err(not_found());
    }
    let tail = tail.unwrap_or("");
    if !safe_path(tail, list) {
        return Err(Refusal::NotFound(format!(
            "{path:?} is not a secret path (empty, '.', '..' or encoded '/' segments, or unusual characters)"
        )));
    }
    let read_only = |what: &str| {
        Refusal::MethodNotAllowed(format!(
            "{method} {mount}/{kind}/…: keep agent's proxy is read-only ({what}); write through keep's mTLS API"
        ))
    };
    match (kind, list) {
        ("metadata", true) => {
            let folder = tail.trim_end_matches('/');
            Ok(Route::Read {
                path: if folder.is_empty() {
                    format!("{mount}/metadata/")
                } else {
                    format!("{mount}/metadata/{folder}/")
                },
                query: Some("list=true".into()),
            })
        }
        ("data", true) => Err(read_only("LIST works on MOUNT/metadata/")),
        (_, false) if !reading => Err(read_only("GET and LIST only")),
        (_, false) if tail.is_empty() || tail.ends_with('/') => Err(not_found()),
        ("data", false) => Ok(Route::Read {
            path: format!("{mount}/data/{tail}"),
            query: query_value(query, "version")
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map(|v| format!("version={v}")),
        }),
        _ => Ok(Route::Read {
            path: format!("{mount}/metadata/{tail}"),
            query: None,
        }),
    }
}

/// Whether `tail` (percent-encoded, as received) is a plain secret path: segments of
/// unreserved characters and escapes, none empty (a list may end in `/`, and may be empty:
/// the mount's root), none `.` or `..`, no escaped `/`, `\`, `.` or NUL that the server would
/// decode into another path than the one checked here.
fn safe_path(tail: &str, list: bool) -> bool {
    let t = if list {
        tail.strip_suffix('/').unwrap_or(tail)
    } else {
        tail
    };
    if t.is_empty() {
        return list;
    }
    let lower = t.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return false;
    }
    t.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@".contains(&b))
    })
}

/// The value of `key` in a query string (no decoding: the keys used here are plain).
fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `key` as Go's `strconv.ParseBool` reads it (Vault's rule for `?list=`); absent or
/// unparsable is false.
fn query_flag(query: Option<&str>, key: &str) -> bool {
    matches!(
        query_value(query, key),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True")
    )
}

// ---------------------------------------------------------------------------------------------
// The local token.

/// How a caller's token compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The local token (or none is needed on this listener).
    Accepted,
    /// No token at all: 403 `permission denied`.
    Missing,
    /// Some other token: 403 `permission denied` + `invalid token`.
    Invalid,
}

/// Compares the request's `X-Vault-Token` (or `Authorization: Bearer …`) with `expected`;
/// `None` means the listener needs none (the unix socket). The comparison takes the same time
/// wherever the tokens differ.
pub fn check_token(headers: &HeaderMap, expected: Option<&SecretString>) -> TokenCheck {
    let Some(expected) = expected else {
        return TokenCheck::Accepted;
    };
    let given = headers
        .get("x-vault-token")
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        })
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    match given {
        None => TokenCheck::Missing,
        Some(t) if same(t, expected.expose_secret().as_bytes()) => TokenCheck::Accepted,
        Some(_) => TokenCheck::Invalid,
    }
}

/// Constant-time equality: every byte is compared whatever the first difference (the length
/// is not secret: every local token has the same).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh local token: the prefix and 32 random bytes in hex.
fn new_token() -> Result<SecretString, ProxyError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(bytes.as_mut())
        .map_err(|e| ProxyError::Random(format!("{e:?}")))?;
    let mut text = String::with_capacity(TOKEN_PREFIX.len() + 64);
    text.push_str(TOKEN_PREFIX);
    for b in bytes.iter() {
        text.push_str(&format!("{b:02x}"));
    }
    Ok(SecretString::from(text))
}

// ---------------------------------------------------------------------------------------------
// Memory for outages.

/// One remembered answer: the server's body as sent, its KV version, when it was read.
struct Cached {
    body: Arc<Zeroizing<Vec<u8>>>,
    version: u64,
    at: Instant,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Cached>,
    warned_full: bool,
}

impl Cache {
    fn put(&mut self, key: String, body: Vec<u8>, version: u64) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_CACHED {
            if !self.warned_full {
                tracing::warn!(
                    max = MAX_CACHED,
                    "the proxy remembers no more paths for outages; reads of new paths are not served from memory when the vault is down"
                );
                self.warned_full = true;
            }
            return;
        }
        self.entries.insert(
            key,
            Cached {
                body: Arc::new(Zeroizing::new(body)),
                version,
                at: Instant::now(),
            },
        );
    }
}

/// `data.metadata.version` of a KV v2 read body (0 when it has none).
fn body_version(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/data/metadata/version").and_then(Value::as_u64))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Upstream: the proxy's own login, separate from the sidecar's rounds so that a slow round
// never holds up a local read.

#[derive(Default)]
struct UpstreamState {
    client: Option<Arc<VaultClient>>,
    logged_in_at: Option<Instant>,
    /// Log in again from then on (2/3 of the token's TTL).
    refresh_at: Option<Instant>,
    /// The server failed us; do not try it again before then.
    paused_until: Option<Instant>,
}

/// Why an upstream read did not give an answer to relay.
enum Unreachable {
    /// The server could not be reached, or the login failed: a message for the 502.
    Down(String),
    /// The server is being left alone after a failure.
    Paused,
}

struct Upstream {
    config: Arc<AgentConfig>,
    /// A client without a token, for `sys/health`.
    bare: VaultClient,
    state: tokio::sync::Mutex<UpstreamState>,
}

impl Upstream {
    fn make_client(config: &AgentConfig) -> Result<VaultClient, ClientError> {
        let conn = &config.connection;
        let tls = conn.mtls.client_settings()?;
        let mut cc = ClientConfig::new(conn.url.clone(), tls);
        cc.connect_timeout = UPSTREAM_CONNECT_TIMEOUT;
        cc.timeout = UPSTREAM_TIMEOUT;
        VaultClient::new(cc)
    }

    fn paused(&self, state: &UpstreamState) -> bool {
        state.paused_until.is_some_and(|t| Instant::now() < t)
    }

    fn pause(state: &mut UpstreamState, why: &str) {
        state.paused_until = Some(Instant::now() + UPSTREAM_PAUSE);
        tracing::warn!(
            error = why,
            pause_ms = UPSTREAM_PAUSE.as_millis() as u64,
            "proxy: the vault is unreachable; answering from memory"
        );
    }

    /// The logged-in client: logs in (again) when there is none or the token is due.
    async fn client(&self, forget: bool) -> Result<Arc<VaultClient>, Unreachable> {
        let mut state = self.state.lock().await;
        if forget {
            state.client = None;
        }
        let due = state.refresh_at.is_some_and(|t| Instant::now() >= t);
        if let (Some(c), false) = (&state.client, due) {
            return Ok(c.clone());
        }
        if self.paused(&state) {
            return Err(Unreachable::Paused);
        }
        let client = Self::make_client(&self.config).map_err(|e| {
            Unreachable::Down(format!("the agent's TLS material cannot be used: {e}"))
        })?;
        let role = self.config.connection.role.as_deref();
        match client.login(role).await {
            Ok(login) => {
                let ttl = login
                    .auth()
                    .get("lease_duration")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let accessor = login
                    .auth()
                    .get("accessor")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let client = Arc::new(client.with_token(Some(login.token)));
                if let Some(old) = state.client.replace(client.clone()) {
                    // Best effort and bounded: the old token should not outlive its use.
                    let _ = tokio::time::timeout(UPSTREAM_TIMEOUT, old.token_revoke_self()).await;
                }
                state.logged_in_at = Some(Instant::now());
                state.refresh_at =
                    (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl) * 2 / 3);
                tracing::info!(accessor = %accessor, token_ttl_s = ttl, "proxy: logged in to the vault with the client certificate");
                Ok(client)
            }
            Err(e) => {
                let why = format!("logging in: {e}");
                Self::pause(&mut state, &why);
                Err(Unreachable::Down(why))
            }
        }
    }

    /// `GET /v1/{path}` with the proxy's token: the server's status and body, or why there is
    /// none. A 403 on a token older than [`RELOGIN_MIN_AGE`] (expired, or a restarted server
    /// forgot it) leads to one fresh login and a second try.
    async fn read(&self, path: &str, query: Option<&str>) -> Result<(u16, Vec<u8>), Unreachable> {
        let client = self.client(false).await?;
        let first = self.send(&client, path, query).await?;
        if first.0 != 403 {
            return Ok(first);
        }
        let old = self
            .state
            .lock()
            .await
            .logged_in_at
            .is_some_and(|t| t.elapsed() >= RELOGIN_MIN_AGE);
        if !old {
            return Ok(first);
        }
        tracing::info!("proxy: the vault refused the token; logging in again");
        let client = self.client(true).await?;
        self.send(&client, path, query).await
    }

    async fn send(
        &self,
        client: &VaultClient,
        path: &str,
        query: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Unreachable> {
        match client.forward_get(path, query).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let why = e.to_string();
                Self::pause(&mut *self.state.lock().await, &why);
                Err(Unreachable::Down(why))
            }
        }
    }

    async fn revoke(&self) {
        if let Some(c) = self.state.lock().await.client.take() {
            match tokio::time::timeout(UPSTREAM_TIMEOUT, c.token_revoke_self()).await {
                Ok(Ok(())) => tracing::info!("proxy: revoked its vault token"),
                _ => tracing::debug!(
                    "proxy: could not revoke its vault token; it expires with its TTL"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy.

/// The loopback Vault API: shared state of every connection.
pub struct Proxy {
    settings: ProxyConfig,
    mounts: Vec<String>,
    /// The local token TCP callers present (`None` without a TCP listener).
    token: Option<SecretString>,
    upstream: Upstream,
    cache: Mutex<Cache>,
}

// By hand: never the token or a cached value.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.settings)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

/// The proxy's listeners, bound before the sidecar starts so that a port in use is an error
/// at start, not a log line later.
#[derive(Debug)]
pub struct Listeners {
    tcp: Option<tokio::net::TcpListener>,
    unix: Option<tokio::net::UnixListener>,
}

impl Proxy {
    /// A proxy for `config` (which must have a `proxy` section; `None` otherwise). Makes the
    /// local token and writes it to `proxy.token_file` (mode 0600, atomically), and checks
    /// the TLS material. Nothing is bound or contacted yet.
    pub fn new(config: Arc<AgentConfig>) -> Result<Option<Proxy>, ProxyError> {
        let Some(settings) = config.proxy.clone() else {
            return Ok(None);
        };
        let token = match &settings.token_file {
            Some(path) => {
                let token = new_token()?;
                crate::sink::write_atomic(
                    path,
                    format!("{}\n", token.expose_secret()).as_bytes(),
                    0o600,
                    settings.owner,
                )
                .map_err(|source| ProxyError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                Some(token)
            }
            None => None,
        };
        let mut mounts = vec![DEFAULT_MOUNT.to_owned()];
        for s in &config.secrets {
            if !mounts.contains(&s.mount) {
                mounts.push(s.mount.clone());
            }
        }
        let bare = Upstream::make_client(&config)?;
        Ok(Some(Proxy {
            settings,
            mounts,
            token,
            upstream: Upstream {
                config,
                bare,
                state: tokio::sync::Mutex::new(UpstreamState::default()),
            },
            cache: Mutex::new(Cache::default()),
        }))
    }

    /// Binds the TCP address and creates the unix socket (mode 0600, owned by `proxy.owner`).
    /// A socket file left by an agent that is gone is replaced; one a live agent answers on
    /// is an error.
    pub async fn bind(&self) -> Result<Listeners, ProxyError> {
        let tcp = match self.settings.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ProxyError::Listen { addr, source })?,
            ),
            None => None,
        };
        let unix = match &self.settings.socket {
            Some(path) => Some(self.bind_socket(path).await?),
            None => None,
        };
        Ok(Listeners { tcp, unix })
    }

    async fn bind_socket(&self, path: &Path) -> Result<tokio::net::UnixListener, ProxyError> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let bad = |problem: String| ProxyError::Socket {
            path: path.to_owned(),
            problem,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(bad(
                    "exists and is not a socket; remove it or choose another path".into(),
                ));
            }
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(bad(
                    "another process (another keep agent?) is serving on it; stop it or choose another path".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| bad(format!("cannot remove the stale socket: {e}")))?;
        }
        // The socket is created with the umask's mode (0755 under the usual 022: others cannot
        // connect, as that needs write permission) and narrowed to 0600 right after.
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
            bad(format!(
                "cannot create the socket: {e}; check that its directory exists and is writable"
            ))
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| bad(format!("cannot set its mode to 0600: {e}")))?;
        if let Some(uid) = self.settings.owner {
            std::os::unix::fs::chown(path, Some(uid), None).map_err(|e| {
                bad(format!(
                    "cannot give it to uid {uid} (proxy.owner): {e}; run keep agent as root or as that user"
                ))
            })?;
        }
        Ok(listener)
    }

    /// Serves until the returned future is dropped (the sidecar drops it when it stops).
    pub async fn serve(self: Arc<Self>, listeners: Listeners) {
        if let Some(l) = &listeners.tcp
            && let Ok(addr) = l.local_addr()
        {
            tracing::info!(listen = %addr, "proxy: serving the Vault API on loopback (local token required)");
        }
        if let Some(p) = &self.settings.socket {
            tracing::info!(socket = %p.display(), "proxy: serving the Vault API on a unix socket");
        }
        let tcp = async {
            match listeners.tcp {
                Some(l) => loop {
                    match l.accept().await {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            self.clone().spawn_connection(stream, true);
                        }
                        Err(e) => accept_failed(&e).await,
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        let unix = async {
            match listeners.unix {
                Some(l) => loop {
                    match l.accept().await {
                        Ok((stream, _)) => self.clone().spawn_connection(stream, false),
                        Err(e) => accept_failed(&e).await,
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::join!(tcp, unix);
    }

    fn spawn_connection<S>(self: Arc<Self>, stream: S, tcp: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            let proxy = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, tcp).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "proxy: connection ended with an error");
            }
        });
    }

    /// After the sidecar stops: revokes the proxy's vault token and removes the socket and
    /// the token file (best effort).
    pub async fn stop(&self) {
        self.upstream.revoke().await;
        for p in [&self.settings.socket, &self.settings.token_file]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The sidecar's round read `fetched` for `mount/path`: remember it for outages unless a
    /// newer version is remembered already (a Vault client may have read one in between).
    pub fn remember(&self, mount: &str, path: &str, fetched: &Fetched) {
        let key = Route::cache_key(&format!("{mount}/data/{path}"), None);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .entries
            .get(&key)
            .is_some_and(|c| c.version >= fetched.version)
        {
            return;
        }
        // Vault's envelope for a KV v2 read; the metadata the round does not keep is left out.
        let body = json!({
            "request_id": "",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": { "data": fetched.data, "metadata": { "version": fetched.version } },
            "wrap_info": null,
            "warnings": null,
            "auth": null,
        });
        if let Ok(bytes) = serde_json::to_vec(&body) {
            cache.put(key, bytes, fetched.version);
        }
    }

    async fn handle(&self, req: Request<Incoming>, tcp: bool) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let r = route(&method, &path, query.as_deref(), &self.mounts);
        // Health needs no token, as in Vault; everything else does on TCP, checked before the
        // route is looked at so that an unauthenticated caller learns nothing about paths.
        if !matches!(r, Ok(Route::Health { .. })) {
            let expected = if tcp { self.token.as_ref() } else { None };
            match check_token(req.headers(), expected) {
                TokenCheck::Accepted => {}
                TokenCheck::Missing => {
                    tracing::debug!(%method, %path, "proxy: refused a request without the local token");
                    return errors(StatusCode::FORBIDDEN, &["permission denied"]);
                }
                TokenCheck::Invalid => {
                    tracing::warn!(%method, %path, "proxy: refused a request with a wrong local token");
                    return errors(
                        StatusCode::FORBIDDEN,
                        &["permission denied", "invalid token"],
                    );
                }
            }
        }
        let resp = match r {
            Err(Refusal::NotFound(m)) => errors(StatusCode::NOT_FOUND, &[&m]),
            Err(Refusal::MethodNotAllowed(m)) => errors(StatusCode::METHOD_NOT_ALLOWED, &[&m]),
            Ok(Route::LookupSelf) => self.lookup_self(),
            Ok(Route::Health { query }) => self.health(query.as_deref()).await,
            Ok(Route::Read { path, query }) => self.read(&path, query.as_deref()).await,
        };
        tracing::debug!(%method, %path, status = resp.status().as_u16(), stale = resp.headers().contains_key(STALE_HEADER), "proxy: answered");
        resp
    }

    /// `auth/token/lookup-self` for the local token, in Vault's shape, so that clients which
    /// check their token first (OpenClaw's plugin does when every read is refused) see a
    /// valid one. The token itself is not echoed: the caller has it.
    fn lookup_self(&self) -> Response<Full<Bytes>> {
        let body = json!({
            "request_id": "",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": {
                "accessor": "",
                "creation_ttl": 0,
                "display_name": "keep-agent-proxy",
                "entity_id": "",
                "expire_time": null,
                "explicit_max_ttl": 0,
                "meta": { "issued_by": "keep agent (local proxy token)" },
                "num_uses": 0,
                "orphan": true,
                "path": "keep-agent/proxy",
                "policies": ["keep-agent-proxy"],
                "renewable": false,
                "ttl": 0,
                "type": "service"
            },
            "wrap_info": null,
            "warnings": null,
            "auth": null,
        });
        json_response(StatusCode::OK, body.to_string().into_bytes())
    }

    async fn health(&self, query: Option<&str>) -> Response<Full<Bytes>> {
        match self.upstream.bare.forward_get("sys/health", query).await {
            Ok((status, body)) => relay(status, body),
            Err(e) => errors(
                StatusCode::BAD_GATEWAY,
                &[&format!("keep agent cannot reach the vault: {e}")],
            ),
        }
    }

    async fn read(&self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        let key = Route::cache_key(path, query);
        let why = match self.upstream.read(path, query).await {
            Ok((200, body)) => {
                let version = body_version(&body);
                let resp = relay(200, body.clone());
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(key, body, version);
                return resp;
            }
            Ok((status, body)) if status < 500 => {
                if status == 404 {
                    // Deleted (or never there): not to be served from memory later.
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entries
                        .remove(&key);
                }
                return relay(status, body);
            }
            Ok((status, body)) => {
                // A sealed or failing server: remembered values are better than its error.
                match self.stale(&key) {
                    Some(r) => return r,
                    None => return relay(status, body),
                }
            }
            Err(Unreachable::Down(why)) => why,
            Err(Unreachable::Paused) => "the last attempt failed moments ago".to_owned(),
        };
        self.stale(&key).unwrap_or_else(|| {
            errors(
                StatusCode::BAD_GATEWAY,
                &[&format!(
                    "keep agent cannot reach the vault ({why}) and has no earlier answer for this path"
                )],
            )
        })
    }

    /// The remembered answer for `key`, marked stale.
    fn stale(&self, key: &str) -> Option<Response<Full<Bytes>>> {
        let (body, age) = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let c = cache.entries.get(key)?;
            (c.body.clone(), c.at.elapsed().as_secs())
        };
        let mut resp = json_response(StatusCode::OK, body.to_vec());
        resp.headers_mut()
            .insert(STALE_HEADER, HeaderValue::from_static("true"));
        resp.headers_mut()
            .insert(hyper::header::AGE, HeaderValue::from(age));
        Some(resp)
    }
}

/// A failed `accept` (out of file descriptors …): pause briefly instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "proxy: cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // As keep's server does: nothing here belongs in a cache on the way.
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// The server's answer, status and body as it sent them.
fn relay(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
}

/// Vault's error shape.
fn errors(status: StatusCode, messages: &[&str]) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({ "errors": messages }).to_string().into_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// The client side: `keep openclaw-resolver` asking a running sidecar.

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A client of a sidecar's unix socket: plain HTTP/1.1, a few keep-alive connections reused
/// across reads. No TLS, no login: the socket's permissions admit the caller.
pub struct LocalClient {
    socket: PathBuf,
    idle: Mutex<Vec<Sender>>,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl LocalClient {
    /// Connects to the sidecar at `socket`; an error means no sidecar answers there (the
    /// caller then talks to the server itself).
    pub async fn connect(socket: &Path) -> std::io::Result<LocalClient> {
        let client = LocalClient {
            socket: socket.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let sender = client.open().await?;
        client.give_back(sender);
        Ok(client)
    }

    async fn open(&self) -> std::io::Result<Sender> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, sender: Sender) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
    }

    fn network(&self, detail: impl std::fmt::Display) -> ClientError {
        ClientError::Network {
            addr: format!("the keep agent socket {}", self.socket.display()),
            detail: detail.to_string(),
        }
    }

    /// `GET /v1/{mount}/data/{path}` through the sidecar: the envelope, or the error the
    /// sidecar (or the server behind it) answered.
    pub async fn kv_read(&self, mount: &str, path: &str) -> Result<ApiResponse, ClientError> {
        let mut url = reqwest::Url::parse("http://keep-agent/").map_err(|e| self.network(e))?;
        url.path_segments_mut()
            .map_err(|()| self.network("cannot build the request path"))?
            .push("v1")
            .push(mount)
            .push("data")
            .extend(path.split('/'));
        let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut sender = match popped {
            Some(s) if !s.is_closed() => s,
            _ => self.open().await.map_err(|e| self.network(e))?,
        };
        let req = Request::get(url.path())
            .header(hyper::header::HOST, "keep-agent")
            .body(Empty::new())
            .map_err(|e| self.network(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.network(e))?;
        let status = resp.status().as_u16();
        let stale = resp.headers().contains_key(STALE_HEADER);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.network(e))?
            .to_bytes();
        self.give_back(sender);
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            addr: self.socket.display().to_string(),
            detail: format!("HTTP {status} with a body that is not JSON ({e})"),
        })?;
        if stale {
            tracing::debug!(
                mount,
                path,
                "the sidecar answered from memory (the vault is unreachable)"
            );
        }
        if (200..300).contains(&status) {
            return Ok(ApiResponse { status, body });
        }
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Err(ClientError::Api {
            status,
            errors,
            data: body.get("data").filter(|d| !d.is_null()).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mounts() -> Vec<String> {
        vec!["secret".into(), "kv".into()]
    }

    fn r(method: &str, path: &str, query: Option<&str>) -> Result<Route, Refusal> {
        route(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            query,
            &mounts(),
        )
    }

    fn read(path: &str, query: Option<&str>) -> Result<Route, Refusal> {
        Ok(Route::Read {
            path: path.into(),
            query: query.map(str::to_owned),
        })
    }

    #[test]
    fn the_route_table_forwards_reads_only() {
        assert_eq!(
            r("GET", "/v1/secret/data/providers/openai", None),
            read("secret/data/providers/openai", None)
        );
        assert_eq!(
            r("GET", "/v1/kv/data/a", Some("version=3&x=1")),
            read("kv/data/a", Some("version=3"))
        );
        // A version that is not a number is dropped rather than forwarded.
        assert_eq!(
            r("GET", "/v1/secret/data/a", Some("version=3;x")),
            read("secret/data/a", None)
        );
        assert_eq!(
            r("GET", "/v1/secret/metadata/a", None),
            read("secret/metadata/a", None)
        );
        for (m, q) in [
            ("LIST", None),
            ("GET", Some("list=true")),
            ("GET", Some("list=1")),
        ] {
            assert_eq!(
                r(m, "/v1/secret/metadata/agents/", q),
                read("secret/metadata/agents/", Some("list=true")),
                "{m} {q:?}"
            );
        }
        assert_eq!(
            r("LIST", "/v1/secret/metadata/", None),
            read("secret/metadata/", Some("list=true"))
        );
        assert_eq!(
            r("GET", "/v1/auth/token/lookup-self", None),
            Ok(Route::LookupSelf)
        );
        assert_eq!(
            r("POST", "/v1/auth/token/lookup-self", None),
            Ok(Route::LookupSelf)
        );
        assert_eq!(
            r("GET", "/v1/sys/health", Some("standbyok=true")),
            Ok(Route::Health {
                query: Some("standbyok=true".into())
            })
        );

        let not_found = [
            ("GET", "/v1/sys/policies/acl/admin"),
            ("GET", "/v1/auth/token/lookup"),
            ("POST", "/v1/auth/cert/login"),
            ("GET", "/v1/pki/ca/pem"),
            ("GET", "/v1/other/data/a"),
            ("GET", "/v1/secret/config"),
            ("GET", "/v1/secret/data/"),
            ("GET", "/v1/secret/data/a/../b"),
            ("GET", "/v1/secret/data/a//b"),
            ("GET", "/v1/secret/data/a%2F..%2Fb"),
            ("GET", "/v1/secret/data/%2e%2e/x"),
            ("GET", "/secret/data/a"),
            ("GET", "/v1/secret/data/a b"),
        ];
        for (m, p) in not_found {
            assert!(
                matches!(r(m, p, None), Err(Refusal::NotFound(_))),
                "{m} {p}: {:?}",
                r(m, p, None)
            );
        }
        let not_allowed = [
            ("POST", "/v1/secret/data/a"),
            ("PUT", "/v1/secret/data/a"),
            ("PATCH", "/v1/secret/data/a"),
            ("DELETE", "/v1/secret/data/a"),
            ("DELETE", "/v1/secret/metadata/a"),
            ("LIST", "/v1/secret/data/a/"),
            ("POST", "/v1/sys/health"),
            ("DELETE", "/v1/auth/token/lookup-self"),
        ];
        for (m, p) in not_allowed {
            assert!(
                matches!(r(m, p, None), Err(Refusal::MethodNotAllowed(_))),
                "{m} {p}: {:?}",
                r(m, p, None)
            );
        }
    }

    #[test]
    fn the_local_token_is_checked_in_constant_time_by_header_or_bearer() {
        let token = SecretString::from("keep-local.abc".to_owned());
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let t = Some(&token);
        assert_eq!(check_token(&headers(&[]), t), TokenCheck::Missing);
        assert_eq!(
            check_token(&headers(&[("x-vault-token", "")]), t),
            TokenCheck::Missing
        );
        assert_eq!(
            check_token(&headers(&[("x-vault-token", "keep-local.abc")]), t),
            TokenCheck::Accepted
        );
        assert_eq!(
            check_token(&headers(&[("authorization", "Bearer keep-local.abc")]), t),
            TokenCheck::Accepted
        );
        assert_eq!(
            check_token(&headers(&[("x-vault-token", "keep-local.abd")]), t),
            TokenCheck::Invalid
        );
        assert_eq!(
            check_token(&headers(&[("x-vault-token", "keep-local.ab")]), t),
            TokenCheck::Invalid
        );
        // The unix socket needs none.
        assert_eq!(check_token(&headers(&[]), None), TokenCheck::Accepted);
    }

    #[test]
    fn local_tokens_are_random_and_prefixed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose_secret().len(), TOKEN_PREFIX.len() + 64);
    }

    #[test]
    fn the_cache_keeps_the_newest_version_and_stops_at_its_limit() {
        let mut c = Cache::default();
        for i in 0..MAX_CACHED + 3 {
            c.put(format!("secret/data/{i}"), b"{}".to_vec(), 1);
        }
        assert_eq!(c.entries.len(), MAX_CACHED);
        // An existing key is still replaced when full.
        c.put("secret/data/0".into(), b"{\"x\":1}".to_vec(), 2);
        assert_eq!(c.entries["secret/data/0"].version, 2);
        assert_eq!(
            body_version(br#"{"data":{"data":{},"metadata":{"version":7}}}"#),
            7
        );
        assert_eq!(body_version(b"not json"), 0);
    }
}
