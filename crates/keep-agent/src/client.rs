//! An async mTLS client for keep's HTTP API (a subset of HashiCorp Vault's).
//!
//! One [`VaultClient`] talks to one server as one client identity. TLS is keep's own client
//! policy from `keep-tls` (TLS 1.3 and TLS 1.2 ECDHE+AEAD only, the configured CA bundle as the
//! **only** trust anchors, never the system roots; an encrypted client key is decrypted with its
//! password before use, which Vault's own CLI cannot do), handed to reqwest as a preconfigured
//! rustls config so that the CLI, the agent and the server share one TLS policy.
//!
//! Methods cover exactly what the admin CLI needs (cert login, token self-management and
//! admin lookups, KV v2, ACL policies, cert auth roles). Most return the server's JSON
//! envelope as an [`ApiResponse`]; list calls return their keys; login returns a [`Login`]
//! whose token is a [`SecretString`] and is **not** left in the JSON beside it.
//!
//! Errors are a [`ClientError`] that says what to check. Two cases deserve care:
//!
//! - With TLS 1.3 the client finishes its half of the handshake before the server has looked
//!   at the client certificate. A rejected certificate therefore shows up on the first request
//!   as a closed connection (or an alert), not as a handshake error. Until a request has
//!   succeeded on this client, such a failure becomes
//!   [`ClientError::ClientCertificateRejected`], whose message lists the usual causes.
//! - Tokens and secret values never appear in an error: requests carry the token in a header
//!   marked sensitive, and no error includes a request body.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keep_tls::client::ClientSettings;
use keep_tls::server::TlsConfigError;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

/// The header Vault (and keep) read the token from.
const TOKEN_HEADER: &str = "x-vault-token";

/// How long to wait for a TCP connection and TLS handshake by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`VaultClient::new`] needs.
#[derive(Debug)]
pub struct ClientConfig {
    /// The server, as `https://host:port` (a bare `host:port` means HTTPS). No path, query or
    /// credentials: the API lives under `/v1/`.
    pub address: String,
    /// Trust anchors and the client identity (certificate, key and the key's password).
    pub tls: ClientSettings,
    /// Limit for the TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for a whole request, response body included.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config with the default timeouts.
    pub fn new(address: impl Into<String>, tls: ClientSettings) -> Self {
        ClientConfig {
            address: address.into(),
            tls,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a call failed. Messages name the server and what to check; they never contain a token,
/// a key or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA bundle, client certificate or key cannot be used (unreadable, not PEM, wrong
    /// password, key does not match the certificate …). The inner error names the file.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The server address is not a usable `https://host:port`.
    #[error("invalid server address {given:?}: {reason}")]
    Address {
        /// The address as given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An API path (a secret path, role or policy name) would not reach the intended endpoint.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be sent in an HTTP header.
    #[error(
        "the token contains characters that cannot be sent in an HTTP header; check where it came from (token file, KEEP_TOKEN or VAULT_TOKEN)"
    )]
    InvalidToken,
    /// reqwest refused the client settings.
    #[error("cannot set up the HTTPS client: {0}")]
    Build(String),
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error(
        "cannot connect to {addr}: {detail}; check that the server is running and that the address (--addr, KEEP_ADDR or VAULT_ADDR) is right"
    )]
    Connect {
        /// The server address.
        addr: String,
        /// What the network layer said.
        detail: String,
    },
    /// This client did not accept the server's certificate.
    #[error(
        "the server certificate of {addr} was not accepted: {detail}; check that --ca-cert (KEEP_CACERT or VAULT_CACERT) holds the CA that issued the server certificate, and that the certificate's SANs include the host name or IP in the address"
    )]
    ServerCertificate {
        /// The server address.
        addr: String,
        /// What the certificate check said.
        detail: String,
    },
    /// The server closed the connection or sent a certificate alert before any request
    /// succeeded: it most likely rejected the client certificate.
    #[error(
        "{addr} closed the connection right after the TLS handshake ({detail}): the server most likely rejected the client certificate. With TLS 1.3 the server checks the client certificate only after the client has finished its side of the handshake, so the client just sees the connection close. Check that the certificate has the clientAuth extended key usage, chains to a CA in the server's client_ca_file, is within its validity period and is not revoked: `keep certificate verify {} --roots CA_FILE --purpose client` shows most of this; the server's log (a handshake-failure event) names the exact reason",
        cert.as_ref().map_or_else(|| "CERT".to_owned(), |p| p.display().to_string())
    )]
    ClientCertificateRejected {
        /// The server address.
        addr: String,
        /// What the client saw (connection closed, the alert received).
        detail: String,
        /// The client certificate file, when it came from one.
        cert: Option<PathBuf>,
    },
    /// The TLS handshake failed for another reason (no common version or cipher suite …).
    #[error(
        "the TLS handshake with {addr} failed: {detail}; check that the server speaks TLS 1.2 or 1.3 with ECDHE and AEAD cipher suites"
    )]
    Handshake {
        /// The server address.
        addr: String,
        /// What rustls said.
        detail: String,
    },
    /// The server did not answer in time.
    #[error("{addr} did not answer within {}s", after.as_secs())]
    Timeout {
        /// The server address.
        addr: String,
        /// The limit that passed.
        after: Duration,
    },
    /// Another network failure (connection reset after earlier success, broken body …).
    #[error("talking to {addr} failed: {detail}")]
    Network {
        /// The server address.
        addr: String,
        /// What the network layer said.
        detail: String,
    },
    /// The server answered with an error status. `errors` is the server's `{"errors": […]}`
    /// list, shown verbatim.
    #[error("{} (HTTP {status})", api_message(*status, errors))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's messages (Vault answers a missing secret with an empty list).
        errors: Vec<String>,
        /// The body's `data`, when it has one (a KV read of a deleted version carries the
        /// version's metadata there, as Vault's does).
        data: Option<Value>,
    },
    /// The server answered 2xx with a body that is not the JSON expected.
    #[error("unexpected answer from {addr}: {detail}")]
    Decode {
        /// The server address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

fn api_message(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "error".to_owned())
    } else {
        errors.join("; ")
    }
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said 404 (a missing secret, role or policy).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the error is in what the caller gave (address, paths, TLS files, token) rather
    /// than in the server or the network: the CLI exits 64 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ClientError::Tls(_)
                | ClientError::Address { .. }
                | ClientError::InvalidPath { .. }
                | ClientError::InvalidToken
        )
    }
}

/// A successful answer: the status and the JSON body (`Value::Null` for 204 No Content).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    /// The HTTP status (200 or 204).
    pub status: u16,
    /// The whole JSON body: Vault's envelope (`request_id`, `data`, `warnings`, `auth` …).
    pub body: Value,
}

impl ApiResponse {
    /// The envelope's `data` (`Null` when absent).
    pub fn data(&self) -> &Value {
        self.body.get("data").unwrap_or(&Value::Null)
    }

    /// The envelope's `auth` (`Null` when absent).
    pub fn auth(&self) -> &Value {
        self.body.get("auth").unwrap_or(&Value::Null)
    }

    /// The envelope's `warnings`, as strings.
    pub fn warnings(&self) -> Vec<String> {
        strings(self.body.get("warnings"))
    }
}

/// The result of a cert login.
#[derive(Debug)]
pub struct Login {
    /// The new token. Kept out of [`Login::response`] so that printing the response cannot
    /// leak it.
    pub token: SecretString,
    /// The server's answer with `auth.client_token` removed (accessor, policies, TTL,
    /// metadata remain).
    pub response: ApiResponse,
}

impl Login {
    /// The `auth` block (without the token).
    pub fn auth(&self) -> &Value {
        self.response.auth()
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// An mTLS client for keep's API, as one client identity, optionally with a token.
pub struct VaultClient {
    http: reqwest::Client,
    base: Url,
    /// `host:port`, for messages.
    addr: String,
    token: Option<SecretString>,
    timeout: Duration,
    /// The client certificate file, named in the advice for a rejected certificate.
    cert_file: Option<PathBuf>,
    /// Set once any response arrived: a closed connection after that is a network problem,
    /// not a rejected client certificate.
    answered: AtomicBool,
}

// By hand: say whether there is a token, never what it is.
impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// Parses a server address: `https://host:port`, or `host:port` meaning HTTPS.
pub fn parse_address(given: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::Address {
        given: given.to_owned(),
        reason: reason.to_owned(),
    };
    let s = given.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let full = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    let url = Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(bad(
            "keep serves its API over HTTPS with client certificates only; use https://",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it must not carry credentials; the client certificate identifies you",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(bad(
            "give only https://host:port; the API path (/v1/…) is added by keep",
        ));
    }
    Ok(url)
}

impl VaultClient {
    /// Builds the client: loads and checks the TLS material (decrypting an encrypted key with
    /// its password) and the address. Nothing is sent yet.
    pub fn new(config: ClientConfig) -> Result<VaultClient, ClientError> {
        let base = parse_address(&config.address)?;
        let mut settings = config.tls;
        let cert_file = settings
            .identity
            .as_ref()
            .and_then(|id| id.cert.origin().path())
            .map(std::path::Path::to_path_buf);
        // reqwest does not set ALPN on a preconfigured rustls config; offer what the server
        // speaks.
        settings.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = keep_tls::client::build(&settings)?;
        let tls: rustls::ClientConfig = Arc::unwrap_or_clone(tls);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            // The vault is an internal service reached directly: an HTTPS_PROXY set for the
            // internet must not receive (and learn the target and timing of) vault traffic.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keep/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(error_text(&e)))?;
        let addr = match (base.host_str(), base.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => base.as_str().to_owned(),
        };
        Ok(VaultClient {
            http,
            base,
            addr,
            token: None,
            timeout: config.timeout,
            cert_file,
            answered: AtomicBool::new(false),
        })
    }

    /// The same client sending `token` (`X-Vault-Token`) with every request; `None` for
    /// none (admin identities and tokenless roles need none).
    pub fn with_token(mut self, token: Option<SecretString>) -> VaultClient {
        self.token = token;
        self
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The server as `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `POST auth/cert/login`: a token for this client's certificate, from role `name` or,
    /// without one, from the role the server picks by its documented rule.
    pub async fn login(&self, name: Option<&str>) -> Result<Login, ClientError> {
        let body = match name {
            Some(n) => json!({ "name": n }),
            None => json!({}),
        };
        let mut r = self
            .call(Method::POST, "auth/cert/login", &[], Some(&body))
            .await?;
        let token = r
            .body
            .get_mut("auth")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.remove("client_token"))
            .and_then(|t| t.as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::Decode {
                addr: self.addr.clone(),
                detail: "the login answer has no auth.client_token".into(),
            })?;
        Ok(Login {
            token: SecretString::from(token),
            response: r,
        })
    }

    /// `GET auth/token/lookup-self`: this client's token. The token itself (`data.id`) is
    /// removed from the answer: the caller has it already, and output must not leak it.
    pub async fn token_lookup_self(&self) -> Result<ApiResponse, ClientError> {
        let r = self
            .call(Method::GET, "auth/token/lookup-self", &[], None)
            .await?;
        Ok(without_token_id(r))
    }

    /// `POST auth/token/lookup`: another token's properties (admins). `data.id` is removed.
    pub async fn token_lookup(&self, token: &SecretString) -> Result<ApiResponse, ClientError> {
        let body = json!({ "token": token.expose_secret() });
        let r = self
            .call(Method::POST, "auth/token/lookup", &[], Some(&body))
            .await?;
        Ok(without_token_id(r))
    }

    /// `POST auth/token/lookup-accessor`: a token's properties by accessor.
    pub async fn token_lookup_accessor(&self, accessor: &str) -> Result<ApiResponse, ClientError> {
        let body = json!({ "accessor": accessor });
        self.call(Method::POST, "auth/token/lookup-accessor", &[], Some(&body))
            .await
    }

    /// `POST auth/token/renew-self`, optionally asking for `increment` (seconds or a duration
    /// such as `1h`) from now.
    pub async fn token_renew_self(
        &self,
        increment: Option<&str>,
    ) -> Result<ApiResponse, ClientError> {
        let body = match increment {
            Some(i) => json!({ "increment": i }),
            None => json!({}),
        };
        let mut r = self
            .call(Method::POST, "auth/token/renew-self", &[], Some(&body))
            .await?;
        if let Some(a) = r.body.get_mut("auth").and_then(Value::as_object_mut) {
            a.remove("client_token");
        }
        Ok(r)
    }

    /// `POST auth/token/revoke-self`.
    pub async fn token_revoke_self(&self) -> Result<(), ClientError> {
        self.call(
            Method::POST,
            "auth/token/revoke-self",
            &[],
            Some(&json!({})),
        )
        .await
        .map(drop)
    }

    /// `POST auth/token/revoke-accessor`: revoke a token by accessor (admins).
    pub async fn token_revoke_accessor(&self, accessor: &str) -> Result<(), ClientError> {
        let body = json!({ "accessor": accessor });
        self.call(Method::POST, "auth/token/revoke-accessor", &[], Some(&body))
            .await
            .map(drop)
    }

    /// `GET {mount}/data/{path}[?version=n]`: a KV v2 secret (the envelope; the values are in
    /// `data.data`, the version's metadata in `data.metadata`).
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<ApiResponse, ClientError> {
        let query: Vec<(&str, String)> = version
            .map(|v| vec![("version", v.to_string())])
            .unwrap_or_default();
        self.call(Method::GET, &kv_path(mount, "data", path)?, &query, None)
            .await
    }

    /// `POST {mount}/data/{path}`: a new version; with `cas`, only if the current version is
    /// `cas` (0 = only if the secret does not exist).
    pub async fn kv_write(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<ApiResponse, ClientError> {
        let body = kv_body(data, cas);
        self.call(
            Method::POST,
            &kv_path(mount, "data", path)?,
            &[],
            Some(&body),
        )
        .await
    }

    /// `PATCH {mount}/data/{path}`: a new version merging `data` into the latest one (JSON
    /// merge patch: a `null` value removes a key).
    pub async fn kv_patch(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<ApiResponse, ClientError> {
        let body = kv_body(data, cas);
        self.call(
            Method::PATCH,
            &kv_path(mount, "data", path)?,
            &[],
            Some(&body),
        )
        .await
    }

    /// `LIST {mount}/metadata/{path}/`: the keys under a folder (folders end in `/`).
    pub async fn kv_list(&self, mount: &str, path: &str) -> Result<Vec<String>, ClientError> {
        let mut p = kv_path(mount, "metadata", path)?;
        p.push('/');
        let r = self.call(list_method(), &p, &[], None).await?;
        Ok(strings(r.data().get("keys")))
    }

    /// `DELETE {mount}/data/{path}`: soft-delete the latest version.
    pub async fn kv_delete_latest(&self, mount: &str, path: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &kv_path(mount, "data", path)?, &[], None)
            .await
            .map(drop)
    }

    /// `POST {mount}/delete/{path}`: soft-delete `versions`.
    pub async fn kv_delete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), ClientError> {
        self.kv_versions_op(mount, "delete", path, versions).await
    }

    /// `POST {mount}/undelete/{path}`: restore soft-deleted `versions`.
    pub async fn kv_undelete(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), ClientError> {
        self.kv_versions_op(mount, "undelete", path, versions).await
    }

    /// `POST {mount}/destroy/{path}`: erase `versions` for good.
    pub async fn kv_destroy(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), ClientError> {
        self.kv_versions_op(mount, "destroy", path, versions).await
    }

    async fn kv_versions_op(
        &self,
        mount: &str,
        action: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), ClientError> {
        let body = json!({ "versions": versions });
        self.call(
            Method::POST,
            &kv_path(mount, action, path)?,
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `GET {mount}/metadata/{path}`: versions, `current_version`, `max_versions`,
    /// `custom_metadata` …
    pub async fn kv_metadata_read(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<ApiResponse, ClientError> {
        self.call(Method::GET, &kv_path(mount, "metadata", path)?, &[], None)
            .await
    }

    /// `POST {mount}/metadata/{path}` with `max_versions`, `cas_required`,
    /// `delete_version_after` and/or `custom_metadata`.
    pub async fn kv_metadata_write(
        &self,
        mount: &str,
        path: &str,
        fields: &Map<String, Value>,
    ) -> Result<(), ClientError> {
        let body = Value::Object(fields.clone());
        self.call(
            Method::POST,
            &kv_path(mount, "metadata", path)?,
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `DELETE {mount}/metadata/{path}`: the secret and every version.
    pub async fn kv_metadata_delete(&self, mount: &str, path: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &kv_path(mount, "metadata", path)?,
            &[],
            None,
        )
        .await
        .map(drop)
    }

    /// `PUT sys/policies/acl/{name}`: create or replace an ACL policy (HCL text).
    pub async fn policy_write(&self, name: &str, policy: &str) -> Result<(), ClientError> {
        let body = json!({ "policy": policy });
        self.call(
            Method::PUT,
            &named("sys/policies/acl", name)?,
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `GET sys/policies/acl/{name}`: `data.policy` holds the HCL text.
    pub async fn policy_read(&self, name: &str) -> Result<ApiResponse, ClientError> {
        self.call(Method::GET, &named("sys/policies/acl", name)?, &[], None)
            .await
    }

    /// `LIST sys/policies/acl`: policy names.
    pub async fn policy_list(&self) -> Result<Vec<String>, ClientError> {
        let r = self
            .call(list_method(), "sys/policies/acl", &[], None)
            .await?;
        Ok(strings(r.data().get("keys")))
    }

    /// `DELETE sys/policies/acl/{name}`.
    pub async fn policy_delete(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &named("sys/policies/acl", name)?, &[], None)
            .await
            .map(drop)
    }

    /// `POST auth/cert/certs/{name}`: create or update a cert auth role with Vault's fields.
    /// The answer carries the server's `warnings` (e.g. a role without name constraints).
    pub async fn cert_role_write(
        &self,
        name: &str,
        fields: &Map<String, Value>,
    ) -> Result<ApiResponse, ClientError> {
        let body = Value::Object(fields.clone());
        self.call(
            Method::POST,
            &named("auth/cert/certs", name)?,
            &[],
            Some(&body),
        )
        .await
    }

    /// `GET auth/cert/certs/{name}`.
    pub async fn cert_role_read(&self, name: &str) -> Result<ApiResponse, ClientError> {
        self.call(Method::GET, &named("auth/cert/certs", name)?, &[], None)
            .await
    }

    /// `LIST auth/cert/certs`: role names (404 when there are none, as in Vault).
    pub async fn cert_role_list(&self) -> Result<Vec<String>, ClientError> {
        let r = self
            .call(list_method(), "auth/cert/certs", &[], None)
            .await?;
        Ok(strings(r.data().get("keys")))
    }

    /// `DELETE auth/cert/certs/{name}`.
    pub async fn cert_role_delete(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &named("auth/cert/certs", name)?, &[], None)
            .await
            .map(drop)
    }

    /// `POST pki/renew` (a keep extension): a fresh certificate for the identity of the client
    /// certificate this connection presents, for the public key in `csr_pem`. No token is
    /// needed or sent. `data` holds `certificate`, `issuing_ca`, `ca_chain`, `serial_number`
    /// and `expiration` as for `pki/sign`.
    pub async fn pki_renew(&self, csr_pem: &str) -> Result<ApiResponse, ClientError> {
        let body = json!({ "csr": csr_pem });
        self.send(Method::POST, "pki/renew", &[], Some(&body), None)
            .await
    }

    /// `GET /v1/{path}[?{query}]` with this client's token, relayed as is: the status and the
    /// raw body whatever the status (a 404 or a sealed server's 503 included). `path` must
    /// already be percent-encoded and checked by the caller (`keep agent`'s loopback proxy,
    /// which relays Vault's answers byte for byte); transport failures are errors as elsewhere.
    pub async fn forward_get(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut url = self.base.clone();
        url.set_path(&format!("/v1/{path}"));
        url.set_query(query.filter(|q| !q.is_empty()));
        let mut req = self.http.get(url);
        if let Some(token) = &self.token {
            let mut v = HeaderValue::from_str(token.expose_secret())
                .map_err(|_| ClientError::InvalidToken)?;
            v.set_sensitive(true);
            req = req.header(TOKEN_HEADER, v);
        }
        let resp = req.send().await.map_err(|e| self.classify(&e))?;
        self.answered.store(true, Ordering::Relaxed);
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.classify(&e))?;
        Ok((status, body.to_vec()))
    }

    /// Sends one request to `/v1/{path}` and turns the answer into an [`ApiResponse`] or a
    /// [`ClientError`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        self.send(method, path, query, body, self.token.as_ref())
            .await
    }

    /// [`VaultClient::call`] with an explicit token (`None`: send none, whatever the client
    /// holds).
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&SecretString>,
    ) -> Result<ApiResponse, ClientError> {
        let url = self.url(path, query)?;
        let patch = method == Method::PATCH;
        let mut req = self.http.request(method, url);
        if let Some(token) = token {
            let mut v = HeaderValue::from_str(token.expose_secret())
                .map_err(|_| ClientError::InvalidToken)?;
            // Keeps the value out of reqwest's and hyper's debug output.
            v.set_sensitive(true);
            req = req.header(TOKEN_HEADER, v);
        }
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| ClientError::Decode {
                addr: self.addr.clone(),
                detail: format!("cannot encode the request: {e}"),
            })?;
            let ct = if patch {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            req = req.header(CONTENT_TYPE, ct).body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.classify(&e))?;
        self.answered.store(true, Ordering::Relaxed);
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.classify(&e))?;
        if status.is_success() {
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                    addr: self.addr.clone(),
                    detail: format!(
                        "HTTP {} with a body that is not JSON ({e})",
                        status.as_u16()
                    ),
                })?
            };
            return Ok(ApiResponse {
                status: status.as_u16(),
                body,
            });
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let errors = match &parsed {
            Some(v) => strings(v.get("errors")),
            // Not Vault's shape (a proxy's error page?): show a little of it, it is not ours
            // to interpret and holds no secret of ours.
            None => {
                let text = String::from_utf8_lossy(&bytes);
                let t: String = text.trim().chars().take(200).collect();
                if t.is_empty() { vec![] } else { vec![t] }
            }
        };
        let data = parsed
            .as_ref()
            .and_then(|v| v.get("data"))
            .filter(|d| !d.is_null())
            .cloned();
        Err(ClientError::Api {
            status: status.as_u16(),
            errors,
            data,
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|()| ClientError::Address {
                given: self.base.to_string(),
                reason: "cannot hold a path".into(),
            })?;
            segs.clear().push("v1");
            let trailing = path.ends_with('/');
            for s in path.trim_end_matches('/').split('/') {
                segs.push(s);
            }
            if trailing {
                segs.push("");
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Maps a transport error to what the user should check.
    fn classify(&self, e: &reqwest::Error) -> ClientError {
        let addr = self.addr.clone();
        if e.is_timeout() {
            return ClientError::Timeout {
                addr,
                after: self.timeout,
            };
        }
        let answered = self.answered.load(Ordering::Relaxed);
        if let Some(tls) = find_rustls_error(e) {
            return match tls {
                rustls::Error::InvalidCertificate(c) => ClientError::ServerCertificate {
                    addr,
                    detail: describe_cert_error(c),
                },
                rustls::Error::AlertReceived(a)
                    if CLIENT_CERT_ALERTS.contains(&format!("{a:?}").as_str()) =>
                {
                    ClientError::ClientCertificateRejected {
                        addr,
                        detail: format!("the server sent the TLS alert {a:?}"),
                        cert: self.cert_file.clone(),
                    }
                }
                other => ClientError::Handshake {
                    addr,
                    detail: other.to_string(),
                },
            };
        }
        let kinds = io_kinds(e);
        let text = error_text(e);
        // After the handshake, tokio-rustls hands hyper the alert as text only.
        if let Some(alert) = received_alert(&text)
            && CLIENT_CERT_ALERTS.contains(&alert)
        {
            return ClientError::ClientCertificateRejected {
                addr,
                detail: format!("the server sent the TLS alert {alert}"),
                cert: self.cert_file.clone(),
            };
        }
        if kinds.contains(&std::io::ErrorKind::ConnectionRefused)
            || (e.is_connect() && !looks_closed(&kinds, &text))
        {
            return ClientError::Connect { addr, detail: text };
        }
        if !answered && looks_closed(&kinds, &text) {
            return ClientError::ClientCertificateRejected {
                addr,
                detail: "no answer to the first request".into(),
                cert: self.cert_file.clone(),
            };
        }
        ClientError::Network { addr, detail: text }
    }
}

/// TLS alerts a server sends about the client's certificate (rustls' names). An alert the
/// client *receives* is about what the client sent, so these mean "your certificate".
const CLIENT_CERT_ALERTS: [&str; 9] = [
    "BadCertificate",
    "UnsupportedCertificate",
    "CertificateRevoked",
    "CertificateExpired",
    "CertificateUnknown",
    "UnknownCA",
    "CertificateRequired",
    "AccessDenied",
    "DecryptError",
];

/// The alert name in rustls' "received fatal alert: NAME" text.
fn received_alert(text: &str) -> Option<&str> {
    let rest = text.split("received fatal alert: ").nth(1)?;
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn list_method() -> Method {
    // "LIST" is a valid token, so this cannot fail; GET with ?list=true would be the fallback.
    Method::from_bytes(b"LIST").unwrap_or(Method::GET)
}

fn kv_body(data: &Map<String, Value>, cas: Option<u64>) -> Value {
    match cas {
        Some(c) => json!({ "data": data, "options": { "cas": c } }),
        None => json!({ "data": data }),
    }
}

fn without_token_id(mut r: ApiResponse) -> ApiResponse {
    if let Some(d) = r.body.get_mut("data").and_then(Value::as_object_mut) {
        d.remove("id");
    }
    r
}

/// Checks one user-given path and joins it under `prefix`. Empty, `.` and `..` segments are
/// refused here with a clear message (the server would refuse them too, less helpfully).
fn checked(prefix: &str, given: &str, allow_empty: bool) -> Result<String, ClientError> {
    let p = given.trim_matches('/');
    if p.is_empty() {
        if allow_empty {
            return Ok(prefix.to_owned());
        }
        return Err(ClientError::InvalidPath {
            path: given.to_owned(),
            reason: "it is empty".into(),
        });
    }
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ClientError::InvalidPath {
                path: given.to_owned(),
                reason: "empty, '.' and '..' segments are not allowed".into(),
            });
        }
    }
    Ok(format!("{prefix}/{p}"))
}

fn named(prefix: &str, name: &str) -> Result<String, ClientError> {
    if name.contains('/') {
        return Err(ClientError::InvalidPath {
            path: name.to_owned(),
            reason: "a name must not contain '/'".into(),
        });
    }
    checked(prefix, name, false)
}

/// `{mount}/{area}/{path}`; `path` may be empty only for listing the mount's root.
fn kv_path(mount: &str, area: &str, path: &str) -> Result<String, ClientError> {
    let m = mount.trim_matches('/');
    if m.is_empty() || m.contains('/') {
        return Err(ClientError::InvalidPath {
            path: mount.to_owned(),
            reason: "the mount must be one path segment, e.g. secret".into(),
        });
    }
    checked(&format!("{m}/{area}"), path, area == "metadata")
}

/// Every error under `e`: its `source()` chain, and inside each `io::Error` the error it wraps.
/// hyper and tokio-rustls wrap a `rustls::Error` in one or two `io::Error`s, and
/// `io::Error::source()` skips the wrapped error itself, so the chain alone would miss it.
fn sources(e: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    fn walk<'a>(
        e: &'a (dyn std::error::Error + 'static),
        out: &mut Vec<&'a (dyn std::error::Error + 'static)>,
    ) {
        // Error chains are short; the bound only guards against a pathological cycle.
        if out.len() > 32 {
            return;
        }
        out.push(e);
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            walk(inner, out);
        } else if let Some(next) = e.source() {
            walk(next, out);
        }
    }
    let mut out = Vec::new();
    walk(e, &mut out);
    out
}

/// The rustls error under a reqwest error, if any.
fn find_rustls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    sources(e)
        .into_iter()
        .find_map(|c| c.downcast_ref::<rustls::Error>())
}

fn io_kinds(e: &reqwest::Error) -> Vec<std::io::ErrorKind> {
    sources(e)
        .into_iter()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .collect()
}

/// Whether the failure is the peer closing or resetting the connection.
fn looks_closed(kinds: &[std::io::ErrorKind], text: &str) -> bool {
    use std::io::ErrorKind as K;
    kinds
        .iter()
        .any(|k| matches!(k, K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof))
        // hyper reports an early close as its own error type, without an io::Error.
        || text.contains("connection closed")
        || text.contains("IncompleteMessage")
}

/// The error and its causes, one clause each, without repeats.
fn error_text(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in sources(e) {
        let s = c.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn describe_cert_error(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => {
            "it was not issued by a CA in --ca-cert (unknown issuer, or the server does not send its intermediate)".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "its SANs do not include the host name or IP in the address".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is not valid yet (check the clocks)".into()
        }
        C::Revoked => "it is revoked".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it lacks the serverAuth extended key usage".into()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn addresses_default_to_https_and_refuse_anything_else() {
        assert_eq!(
            parse_address("127.0.0.1:8200").unwrap().as_str(),
            "https://127.0.0.1:8200/"
        );
        assert_eq!(
            parse_address("https://vault.claw.internal:8200/")
                .unwrap()
                .host_str(),
            Some("vault.claw.internal")
        );
        for bad in [
            "",
            "http://127.0.0.1:8200",
            "https://127.0.0.1:8200/v1/",
            "https://u:p@127.0.0.1:8200",
            "https://127.0.0.1:8200?x=1",
        ] {
            let e = parse_address(bad).unwrap_err();
            assert!(matches!(e, ClientError::Address { .. }), "{bad}: {e}");
            assert!(e.is_usage());
        }
    }

    #[test]
    fn paths_are_checked_and_joined() {
        assert_eq!(
            kv_path("secret", "data", "openclaw/llm").unwrap(),
            "secret/data/openclaw/llm"
        );
        assert_eq!(
            kv_path("secret", "metadata", "").unwrap(),
            "secret/metadata"
        );
        assert!(kv_path("secret", "data", "").is_err());
        assert!(kv_path("secret", "data", "a/../b").is_err());
        assert!(kv_path("secret", "data", "a//b").is_err());
        assert!(kv_path("se/cret", "data", "a").is_err());
        assert!(named("sys/policies/acl", "a/b").is_err());
        assert_eq!(
            named("auth/cert/certs", "agents").unwrap(),
            "auth/cert/certs/agents"
        );
    }

    #[test]
    fn api_errors_show_the_server_messages_verbatim() {
        let e = ClientError::Api {
            status: 403,
            errors: vec!["permission denied".into()],
            data: None,
        };
        assert_eq!(e.to_string(), "permission denied (HTTP 403)");
        let e = ClientError::Api {
            status: 404,
            errors: vec![],
            data: None,
        };
        assert_eq!(e.to_string(), "not found (HTTP 404)");
        assert!(e.is_not_found());
        assert!(!e.is_usage());
    }

    #[test]
    fn alerts_are_read_from_rustls_text() {
        assert_eq!(
            received_alert("connection error: received fatal alert: CertificateRevoked"),
            Some("CertificateRevoked")
        );
        assert_eq!(
            received_alert("x: received fatal alert: UnknownCA: y"),
            Some("UnknownCA")
        );
        assert_eq!(received_alert("connection closed"), None);
    }

    #[test]
    fn login_and_lookup_answers_lose_the_token() {
        let r = ApiResponse {
            status: 200,
            body: json!({"data": {"id": "s.secret", "accessor": "a"}}),
        };
        let r = without_token_id(r);
        assert_eq!(r.data(), &json!({"accessor": "a"}));
    }
}
