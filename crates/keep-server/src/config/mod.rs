//! `keep-server.yaml`: read in two stages.
//!
//! A raw serde struct mirrors the file (unknown fields rejected, so a typo such as `clent_ca_file`
//! is an error rather than a silently ignored setting), then [`ServerConfig::from_yaml`] turns it
//! into a validated config. Errors name the file, the field and — where YAML gives one — the line.
//! Relative paths are resolved against the config file's directory, so the server behaves the
//! same whatever directory it is started from.
//!
//! The pieces other sections' validators share (the error type, the duration reader, the
//! identity type of `admins:` and `telemetry.metrics_scrapers`) are files of their own here, so
//! a section validated elsewhere (`alerts:`, in `alerts::config`) uses them without reaching
//! back into this file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keep_tls::server::{TlsSettings, TlsVersion};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub mod duration;
pub mod error;
pub mod identity;

use duration::parse_duration;
pub use error::ConfigError;
pub use identity::AdminIdentity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listener: Option<RawListener>,
    storage: Option<RawStorage>,
    seal: Option<RawSeal>,
    alerts: Option<crate::alerts::config::RawAlerts>,
    #[serde(default)]
    admins: Vec<RawAdmin>,
    audit: Option<RawAudit>,
    pki: Option<RawPki>,
    auth: Option<RawAuth>,
    telemetry: Option<RawTelemetry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    login_rate: Option<RawLoginRate>,
    token_tidy_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoginRate {
    per_second: Option<Spanned<f64>>,
    burst: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    #[serde(default)]
    unauthenticated_metrics_access: bool,
    #[serde(default)]
    metrics_scrapers: Vec<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPki {
    issuer_cert_file: Option<String>,
    issuer_key_file: Option<String>,
    issuer_key_password_file: Option<String>,
    crl_next_update: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<Spanned<String>>,
    tls: Option<RawTls>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    key_password_file: Option<String>,
    client_ca_file: Option<String>,
    crl_file: Option<String>,
    min_version: Option<Spanned<String>>,
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    auto_renew: bool,
    require_client_auth_eku: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_request_bytes: Option<u64>,
    handshake_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    max_connections: Option<u64>,
    pre_handshake_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    body_read_timeout: Option<Spanned<String>>,
    max_handshaking: Option<Spanned<u64>>,
    per_source_handshaking: Option<Spanned<u64>>,
    per_identity_connections: Option<Spanned<u64>>,
    max_concurrent_streams: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    sqlite: Option<RawSqlite>,
    postgres: Option<serde_json::Value>,
    /// `false`, `true`, or `{max_entries, max_bytes}`: read as a value and checked by hand,
    /// so each shape gets its own message (serde's untagged enums lose the line).
    cache: Option<Spanned<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqlite {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeal {
    key_file: Option<String>,
    passphrase_file: Option<String>,
    #[serde(default)]
    passphrase_prompt: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    common_name: Option<String>,
    uri_san: Option<String>,
}

/// Request and connection limits (`listener.limits`; docs/security.md explains each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body; larger bodies get 413 (a declared `Content-Length` over
    /// it before the body is read).
    pub max_request_bytes: usize,
    /// Time allowed for the TLS handshake, from TCP accept.
    pub handshake_timeout: Duration,
    /// Time allowed from TCP accept to a complete ClientHello (at most `handshake_timeout`).
    pub pre_handshake_timeout: Duration,
    /// Time allowed for a client to send request headers.
    pub header_timeout: Duration,
    /// A connection with no request in flight (before the first request, between keep-alive
    /// requests, an HTTP/2 connection with no stream) is closed after this long.
    pub idle_timeout: Duration,
    /// Time allowed to receive a whole request body; slower bodies get 408.
    pub body_read_timeout: Duration,
    /// Concurrent connections; more are closed at accept.
    pub max_connections: usize,
    /// Concurrent connections still handshaking (not yet verified), at most `max_connections`.
    pub max_handshaking: usize,
    /// Concurrent handshaking connections per source address (IPv4 address, IPv6 /64).
    pub per_source_handshaking: usize,
    /// Concurrent verified connections per client certificate.
    pub per_identity_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            pre_handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_handshaking: 256,
            per_source_handshaking: 32,
            per_identity_connections: 128,
            max_concurrent_streams: 100,
        }
    }
}

impl Limits {
    /// The listener's options for these limits.
    pub fn listener_options(&self) -> keep_tls::listener::ListenerOptions {
        keep_tls::listener::ListenerOptions {
            handshake_timeout: self.handshake_timeout,
            pre_handshake_timeout: self.pre_handshake_timeout,
            max_connections: self.max_connections,
            max_handshaking: self.max_handshaking,
            per_source_handshaking: self.per_source_handshaking,
            per_identity_connections: self.per_identity_connections,
            ..keep_tls::listener::ListenerOptions::default()
        }
    }
}

/// Where the unseal key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealSource {
    /// A 0600 file with the random root key (made by `keep server init`).
    KeyFile(PathBuf),
    /// A passphrase in a file, stretched with argon2id.
    PassphraseFile(PathBuf),
    /// A passphrase typed at a terminal prompt at start.
    PassphrasePrompt,
}

/// The `auth:` section: limits on logins and tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    /// `auth.login_rate`: per client certificate (default 5/s, burst 20).
    pub login_rate: crate::auth::login_rate::LoginRate,
    /// `auth.token_tidy_interval`: how often expired tokens are removed (default 10m).
    pub token_tidy_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            login_rate: Default::default(),
            token_tidy_interval: crate::auth::tidy::DEFAULT_TIDY_INTERVAL,
        }
    }
}

/// The PKI mount (`pki:`): the intermediate CA the server issues with. The root key is never
/// needed. Loaded and checked (a CA; the key matches) by [`crate::pki::Pki::load`] at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiConfig {
    /// The issuing CA certificate, optionally followed by its chain up to the root.
    pub issuer_cert_file: PathBuf,
    /// The issuing CA's private key (PEM; encrypted PKCS#8 with `issuer_key_password_file`).
    pub issuer_key_file: PathBuf,
    /// The key's password file, for an encrypted key.
    pub issuer_key_password_file: Option<PathBuf>,
    /// How far ahead each CRL's nextUpdate lies (default 24h); the server publishes a fresh CRL
    /// at about half of it, and after every revocation.
    pub crl_next_update: Duration,
}

/// Default `pki.crl_next_update`.
pub const DEFAULT_CRL_NEXT_UPDATE: Duration = Duration::from_secs(24 * 3600);

/// The validated server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// Listen address.
    pub address: SocketAddr,
    /// TLS material and settings.
    pub tls: TlsSettings,
    /// Limits.
    pub limits: Limits,
    /// SQLite database path.
    pub sqlite_path: PathBuf,
    /// `storage.cache`: the read cache under the barrier; `None` = off (`cache: false`).
    pub storage_cache: Option<keep_store::CacheLimits>,
    /// Unseal source.
    pub seal: SealSource,
    /// Security alerts: detector thresholds and the optional webhook.
    pub alerts: crate::alerts::config::AlertsConfig,
    /// Operator identities.
    pub admins: Vec<AdminIdentity>,
    /// The audit log file (JSON lines, secrets HMAC'd); `None` = no audit log.
    pub audit_file: Option<PathBuf>,
    /// The PKI mount; `None` = no `pki/` routes.
    pub pki: Option<PkiConfig>,
    /// The `auth:` section (login rate limit, token tidy interval).
    pub auth: AuthConfig,
    /// Who may scrape `/v1/sys/metrics` besides admins and policy holders (`telemetry:`).
    pub metrics_access: crate::auth::MetricsAccess,
    /// `listener.tls.auto_renew`: the server renews its serving certificate with its own PKI
    /// issuer at 2/3 of its lifetime (needs `pki:`).
    pub tls_auto_renew: bool,
}

/// Largest `storage.cache.max_entries`.
const MAX_CACHE_ENTRIES: u64 = 100_000_000;
/// Largest `storage.cache.max_bytes` (64 GiB).
const MAX_CACHE_BYTES: u64 = 64 << 30;

/// `storage.cache`: `false` turns the read cache off, `true` keeps the defaults, a map sets
/// `max_entries` and/or `max_bytes`.
fn parse_cache(
    v: &Spanned<serde_json::Value>,
    path: &Path,
) -> Result<Option<keep_store::CacheLimits>, ConfigError> {
    let err =
        |field: &str, problem: String| ConfigError::field(path, v.defined.line(), field, problem);
    let mut limits = keep_store::CacheLimits::default();
    let map = match &v.value {
        serde_json::Value::Bool(false) => return Ok(None),
        serde_json::Value::Bool(true) => return Ok(Some(limits)),
        serde_json::Value::Object(m) => m,
        _ => {
            return Err(err(
                "storage.cache",
                "write `false` (no cache), `true` (defaults) or `{max_entries: N, max_bytes: N}`"
                    .into(),
            ));
        }
    };
    for (key, value) in map {
        let (max, slot) = match key.as_str() {
            "max_entries" => (MAX_CACHE_ENTRIES, &mut limits.max_entries),
            "max_bytes" => (MAX_CACHE_BYTES, &mut limits.max_bytes),
            other => {
                return Err(err(
                    &format!("storage.cache.{other}"),
                    "unknown field; expected max_entries or max_bytes".into(),
                ));
            }
        };
        let n = value.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            err(
                &format!("storage.cache.{key}"),
                format!(
                    "{value} is not a number from 1 to {max}; to turn the cache off write `cache: false`"
                ),
            )
        })?;
        *slot = usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(Some(limits))
}

/// A count field that must lie in `1..=max` (`max_name` says what bounds it).
fn bounded_count(
    v: &Spanned<u64>,
    field: &str,
    max: usize,
    max_name: &str,
    path: &Path,
) -> Result<usize, ConfigError> {
    let n = usize::try_from(v.value).unwrap_or(usize::MAX);
    if n == 0 || n > max {
        return Err(ConfigError::field(
            path,
            v.defined.line(),
            field,
            format!(
                "{} is out of range; write a number from 1 to {max} ({max_name})",
                v.value
            ),
        ));
    }
    Ok(n)
}

/// The connection-budget fields of `listener.limits` (docs/security.md, "Connection budget").
fn validate_budget(raw: &RawLimits, limits: &mut Limits, path: &Path) -> Result<(), ConfigError> {
    let f = |name: &str| format!("listener.limits.{name}");
    if let Some(v) = &raw.pre_handshake_timeout {
        let d = parse_duration(v, &f("pre_handshake_timeout"), path)?;
        if d > limits.handshake_timeout {
            return Err(ConfigError::field(
                path,
                v.defined.line(),
                &f("pre_handshake_timeout"),
                format!(
                    "{:?} is longer than listener.limits.handshake_timeout ({:?}); the ClientHello is part of the handshake",
                    v.value, limits.handshake_timeout
                ),
            ));
        }
        limits.pre_handshake_timeout = d;
    } else {
        limits.pre_handshake_timeout = limits.pre_handshake_timeout.min(limits.handshake_timeout);
    }
    if let Some(v) = &raw.idle_timeout {
        limits.idle_timeout = parse_duration(v, &f("idle_timeout"), path)?;
    }
    if let Some(v) = &raw.body_read_timeout {
        limits.body_read_timeout = parse_duration(v, &f("body_read_timeout"), path)?;
    }
    limits.max_handshaking = match &raw.max_handshaking {
        Some(v) => bounded_count(
            v,
            &f("max_handshaking"),
            limits.max_connections,
            "at most listener.limits.max_connections",
            path,
        )?,
        None => limits.max_handshaking.min(limits.max_connections),
    };
    limits.per_source_handshaking = match &raw.per_source_handshaking {
        Some(v) => bounded_count(
            v,
            &f("per_source_handshaking"),
            limits.max_handshaking,
            "at most listener.limits.max_handshaking",
            path,
        )?,
        None => limits.per_source_handshaking.min(limits.max_handshaking),
    };
    limits.per_identity_connections = match &raw.per_identity_connections {
        Some(v) => bounded_count(
            v,
            &f("per_identity_connections"),
            limits.max_connections,
            "at most listener.limits.max_connections",
            path,
        )?,
        None => limits.per_identity_connections.min(limits.max_connections),
    };
    if let Some(v) = &raw.max_concurrent_streams {
        let n = bounded_count(
            v,
            &f("max_concurrent_streams"),
            10_000,
            "HTTP/2 streams per connection",
            path,
        )?;
        limits.max_concurrent_streams = u32::try_from(n).unwrap_or(10_000);
    }
    Ok(())
}

impl ServerConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Validates YAML text as if read from `path` (paths resolve against its directory).
    pub fn from_yaml(text: &str, path: &Path) -> Result<ServerConfig, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_owned(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let missing = |field: &str, hint: &str| ConfigError::Missing {
            path: path.to_owned(),
            field: field.into(),
            hint: hint.into(),
        };
        let field_err = |line: u64, field: &str, problem: String| {
            ConfigError::field(path, line, field, problem)
        };
        let listener = raw.listener.ok_or_else(|| {
            missing(
                "listener",
                "add `listener: {address: 127.0.0.1:8200, tls: …}`",
            )
        })?;
        let address = match &listener.address {
            Some(a) => a.value.parse::<SocketAddr>().map_err(|_| {
                field_err(
                    a.defined.line(),
                    "listener.address",
                    format!(
                        "{:?} is not IP:PORT; write e.g. 127.0.0.1:8200 or 0.0.0.0:8200",
                        a.value
                    ),
                )
            })?,
            None => return Err(missing("listener.address", "write e.g. 127.0.0.1:8200")),
        };
        let tls = listener.tls.ok_or_else(|| {
            missing(
                "listener.tls",
                "keep serves only TLS; add cert_file, key_file and client_ca_file",
            )
        })?;
        let req = |v: &Option<String>, field: &str, hint: &str| -> Result<PathBuf, ConfigError> {
            v.as_deref()
                .map(resolve)
                .ok_or_else(|| missing(field, hint))
        };
        let min_version = match &tls.min_version {
            None => TlsVersion::V1_2,
            Some(v) => v.value.parse::<TlsVersion>().map_err(|e| {
                field_err(v.defined.line(), "listener.tls.min_version", e.to_string())
            })?,
        };
        // Cipher suite names are validated by keep-tls when the TLS config is built at start,
        // with the list of allowed names in the message; one list, one place.
        let tls_settings = TlsSettings {
            cert_file: req(
                &tls.cert_file,
                "listener.tls.cert_file",
                "the server certificate (chain) PEM",
            )?,
            key_file: req(
                &tls.key_file,
                "listener.tls.key_file",
                "the server's private key PEM",
            )?,
            key_password_file: tls.key_password_file.as_deref().map(resolve),
            client_ca_file: req(
                &tls.client_ca_file,
                "listener.tls.client_ca_file",
                "the CA bundle that signs client certificates",
            )?,
            crl_file: tls.crl_file.as_deref().map(resolve),
            extra_crls: Vec::new(),
            min_version,
            cipher_suites: tls.cipher_suites.clone(),
            require_client_cert: true,
            // Default on: docs/server.md promises clientAuth is verified, and a certificate
            // with no EKU at all (RFC 5280: "any purpose") is not what an operator issued for
            // an agent. Off only by saying so.
            require_client_auth_eku: tls.require_client_auth_eku.unwrap_or(true),
        };

        let mut limits = Limits::default();
        if let Some(n) = listener.limits.max_request_bytes {
            limits.max_request_bytes = usize::try_from(n).unwrap_or(usize::MAX).max(1024);
        }
        if let Some(v) = &listener.limits.handshake_timeout {
            limits.handshake_timeout =
                parse_duration(v, "listener.limits.handshake_timeout", path)?;
        }
        if let Some(v) = &listener.limits.header_timeout {
            limits.header_timeout = parse_duration(v, "listener.limits.header_timeout", path)?;
        }
        if let Some(n) = listener.limits.max_connections {
            limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        validate_budget(&listener.limits, &mut limits, path)?;

        let storage_cache = match raw.storage.as_ref().and_then(|s| s.cache.as_ref()) {
            None => Some(keep_store::CacheLimits::default()),
            Some(v) => parse_cache(v, path)?,
        };
        let sqlite_path = match raw.storage {
            None => base.join("keep.db"),
            Some(RawStorage {
                postgres: Some(_), ..
            }) => {
                return Err(field_err(
                    0,
                    "storage.postgres",
                    "PostgreSQL storage is not available in this version yet; use storage.sqlite"
                        .into(),
                ));
            }
            Some(RawStorage {
                sqlite: Some(s), ..
            }) => resolve(&s.path),
            Some(RawStorage { sqlite: None, .. }) => base.join("keep.db"),
        };

        let seal = match raw.seal {
            None => {
                return Err(missing(
                    "seal",
                    "add `seal: {key_file: unseal.key}` (made by `keep server init`)",
                ));
            }
            Some(s) => {
                let n = usize::from(s.key_file.is_some())
                    + usize::from(s.passphrase_file.is_some())
                    + usize::from(s.passphrase_prompt);
                if n != 1 {
                    return Err(field_err(
                        0,
                        "seal",
                        "give exactly one of key_file, passphrase_file or passphrase_prompt: true"
                            .into(),
                    ));
                }
                if let Some(f) = s.key_file {
                    SealSource::KeyFile(resolve(&f))
                } else if let Some(f) = s.passphrase_file {
                    SealSource::PassphraseFile(resolve(&f))
                } else {
                    SealSource::PassphrasePrompt
                }
            }
        };

        let alerts = crate::alerts::config::validate(raw.alerts, path, &resolve)?;

        let identities = |list: Vec<RawAdmin>, field: &str| {
            let mut out = Vec::new();
            for (i, a) in list.into_iter().enumerate() {
                match (a.common_name, a.uri_san) {
                    (Some(cn), None) if !cn.trim().is_empty() => {
                        out.push(AdminIdentity::CommonName(cn))
                    }
                    (None, Some(uri)) if uri.contains("://") => {
                        out.push(AdminIdentity::UriSan(uri))
                    }
                    _ => {
                        return Err(field_err(
                            0,
                            &format!("{field}[{i}]"),
                            "give exactly one of common_name or uri_san (a URI such as spiffe://claw.internal/operator)".into(),
                        ));
                    }
                }
            }
            Ok(out)
        };
        let admins = identities(raw.admins, "admins")?;

        let mut auth = AuthConfig::default();
        if let Some(a) = raw.auth {
            if let Some(r) = a.login_rate {
                if let Some(v) = r.per_second {
                    if !(v.value.is_finite() && v.value > 0.0) {
                        return Err(field_err(
                            v.defined.line(),
                            "auth.login_rate.per_second",
                            format!(
                                "{} is not a positive number of logins per second; write e.g. 5 (or 0.1 for one every 10 s)",
                                v.value
                            ),
                        ));
                    }
                    auth.login_rate.per_second = v.value;
                }
                if let Some(v) = r.burst {
                    auth.login_rate.burst = u32::try_from(v.value)
                        .ok()
                        .filter(|b| *b >= 1)
                        .ok_or_else(|| {
                            field_err(
                                v.defined.line(),
                                "auth.login_rate.burst",
                                format!(
                                    "{} is not a burst between 1 and 4294967295; write e.g. 20",
                                    v.value
                                ),
                            )
                        })?;
                }
            }
            if let Some(v) = &a.token_tidy_interval {
                let d = parse_duration(v, "auth.token_tidy_interval", path)?;
                if d < Duration::from_secs(1) {
                    return Err(field_err(
                        v.defined.line(),
                        "auth.token_tidy_interval",
                        format!("{:?} is too short; write at least 1s (e.g. 10m)", v.value),
                    ));
                }
                auth.token_tidy_interval = d;
            }
        }

        let metrics_access = match raw.telemetry {
            None => crate::auth::MetricsAccess::default(),
            Some(t) => crate::auth::MetricsAccess {
                unauthenticated: t.unauthenticated_metrics_access,
                scrapers: identities(t.metrics_scrapers, "telemetry.metrics_scrapers")?,
            },
        };

        let pki = match raw.pki {
            None => None,
            Some(p) => Some(PkiConfig {
                issuer_cert_file: req(
                    &p.issuer_cert_file,
                    "pki.issuer_cert_file",
                    "the intermediate CA certificate the server issues with (optionally followed by its chain)",
                )?,
                issuer_key_file: req(
                    &p.issuer_key_file,
                    "pki.issuer_key_file",
                    "the intermediate CA's private key (the root key is never needed)",
                )?,
                issuer_key_password_file: p.issuer_key_password_file.as_deref().map(resolve),
                crl_next_update: match &p.crl_next_update {
                    None => DEFAULT_CRL_NEXT_UPDATE,
                    Some(v) => {
                        let d = parse_duration(v, "pki.crl_next_update", path)?;
                        if d < Duration::from_secs(60) {
                            return Err(field_err(
                                v.defined.line(),
                                "pki.crl_next_update",
                                format!("{:?} is too short; write at least 1m (e.g. 24h)", v.value),
                            ));
                        }
                        d
                    }
                },
            }),
        };

        if tls.auto_renew && pki.is_none() {
            return Err(field_err(
                0,
                "listener.tls.auto_renew",
                "needs a `pki:` section: the server renews its certificate with its own PKI issuer"
                    .into(),
            ));
        }

        Ok(ServerConfig {
            path: path.to_owned(),
            address,
            tls: tls_settings,
            limits,
            sqlite_path,
            storage_cache,
            seal,
            alerts,
            admins,
            audit_file: raw.audit.map(|a| resolve(&a.file)),
            pki,
            auth,
            metrics_access,
            tls_auto_renew: tls.auto_renew,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
listener:
  address: 127.0.0.1:8200
  tls:
    cert_file: vault.crt
    key_file: vault.key
    client_ca_file: root_ca.crt
    min_version: "1.2"
    cipher_suites: [TLS13_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
storage:
  sqlite: { path: keep.db }
seal:
  key_file: unseal.key
admins:
  - common_name: operator
"#;

    fn load(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_yaml(text, Path::new("/etc/keep/keep-server.yaml"))
    }

    #[test]
    fn design_example_loads_with_paths_resolved() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.address, "127.0.0.1:8200".parse().unwrap());
        assert_eq!(c.tls.cert_file, PathBuf::from("/etc/keep/vault.crt"));
        assert_eq!(c.sqlite_path, PathBuf::from("/etc/keep/keep.db"));
        assert_eq!(c.seal, SealSource::KeyFile("/etc/keep/unseal.key".into()));
        assert_eq!(c.admins, vec![AdminIdentity::CommonName("operator".into())]);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.pki, None);
    }

    #[test]
    fn pki_section_loads_with_defaults_and_names_bad_fields() {
        let c = load(&format!(
            "{GOOD}pki:\n  issuer_cert_file: intermediate_ca.crt\n  issuer_key_file: intermediate_ca.key\n"
        ))
        .unwrap();
        assert_eq!(
            c.pki,
            Some(PkiConfig {
                issuer_cert_file: "/etc/keep/intermediate_ca.crt".into(),
                issuer_key_file: "/etc/keep/intermediate_ca.key".into(),
                issuer_key_password_file: None,
                crl_next_update: DEFAULT_CRL_NEXT_UPDATE,
            })
        );
        let c = load(&format!(
            "{GOOD}pki:\n  issuer_cert_file: i.crt\n  issuer_key_file: i.key\n  issuer_key_password_file: i.pass\n  crl_next_update: 6h\n"
        ))
        .unwrap();
        let p = c.pki.unwrap();
        assert_eq!(p.crl_next_update, Duration::from_secs(6 * 3600));
        assert_eq!(p.issuer_key_password_file, Some("/etc/keep/i.pass".into()));
        for (text, want) in [
            ("pki:\n  issuer_key_file: i.key\n", "pki.issuer_cert_file"),
            ("pki:\n  issuer_cert_file: i.crt\n", "pki.issuer_key_file"),
            (
                "pki:\n  issuer_cert_file: i.crt\n  issuer_key_file: i.key\n  crl_next_update: soon\n",
                "pki.crl_next_update",
            ),
            (
                "pki:\n  issuer_cert_file: i.crt\n  issuer_key_file: i.key\n  crl_next_update: 10s\n",
                "too short",
            ),
            (
                "pki:\n  issuer_cert_file: i.crt\n  issuer_key_file: i.key\n  root_key_file: r.key\n",
                "root_key_file",
            ),
        ] {
            let e = load(&format!("{GOOD}{text}")).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in: {e}");
        }
        let renew = GOOD.replace("    min_version:", "    auto_renew: true\n    min_version:");
        let e = load(&renew).unwrap_err().to_string();
        assert!(
            e.contains("listener.tls.auto_renew") && e.contains("pki"),
            "{e}"
        );
        let c = load(&format!(
            "{renew}pki:\n  issuer_cert_file: i.crt\n  issuer_key_file: i.key\n"
        ))
        .unwrap();
        assert!(c.tls_auto_renew);
    }

    #[test]
    fn connection_budget_fields_load_and_out_of_range_values_name_the_field() {
        let with = |lines: &str| GOOD.replace("storage:", &format!("  limits:\n{lines}storage:"));
        let c = load(&with(
            "    max_connections: 64\n    max_handshaking: 16\n    per_source_handshaking: 4\n    per_identity_connections: 8\n    idle_timeout: 2s\n    body_read_timeout: 3s\n    pre_handshake_timeout: 1s\n    max_concurrent_streams: 10\n",
        ))
        .unwrap();
        let l = &c.limits;
        assert_eq!(
            (
                l.max_connections,
                l.max_handshaking,
                l.per_source_handshaking
            ),
            (64, 16, 4)
        );
        assert_eq!(l.per_identity_connections, 8);
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.body_read_timeout, Duration::from_secs(3));
        assert_eq!(l.pre_handshake_timeout, Duration::from_secs(1));
        assert_eq!(l.max_concurrent_streams, 10);
        // A small max_connections pulls the defaults of the inner pools down with it.
        let c = load(&with("    max_connections: 8\n")).unwrap();
        assert_eq!(
            (c.limits.max_handshaking, c.limits.per_source_handshaking),
            (8, 8)
        );
        for (lines, want) in [
            (
                "    max_connections: 64\n    max_handshaking: 65\n",
                "listener.limits.max_handshaking",
            ),
            (
                "    per_source_handshaking: 0\n",
                "listener.limits.per_source_handshaking",
            ),
            (
                "    per_identity_connections: 5000\n",
                "listener.limits.per_identity_connections",
            ),
            (
                "    pre_handshake_timeout: 20s\n",
                "listener.limits.pre_handshake_timeout",
            ),
            ("    idle_timeout: never\n", "listener.limits.idle_timeout"),
            (
                "    body_read_timeout: 0s\n",
                "listener.limits.body_read_timeout",
            ),
        ] {
            let e = load(&with(lines)).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("line "),
                "want {want:?} in: {e}"
            );
        }
    }

    #[test]
    fn auth_and_telemetry_sections_load_with_defaults_and_name_bad_fields() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.auth, AuthConfig::default());
        assert_eq!(c.auth.login_rate.burst, 20);
        assert_eq!(c.auth.token_tidy_interval, Duration::from_secs(600));
        assert_eq!(c.metrics_access, crate::auth::MetricsAccess::default());
        let c = load(&format!(
            "{GOOD}auth:\n  login_rate: {{ per_second: 0.5, burst: 3 }}\n  token_tidy_interval: 30s\ntelemetry:\n  metrics_scrapers:\n    - common_name: prometheus\n    - uri_san: spiffe://claw.internal/prometheus\n"
        ))
        .unwrap();
        assert_eq!(c.auth.login_rate.per_second, 0.5);
        assert_eq!(c.auth.login_rate.burst, 3);
        assert_eq!(c.auth.token_tidy_interval, Duration::from_secs(30));
        assert!(!c.metrics_access.unauthenticated);
        assert_eq!(
            c.metrics_access.scrapers,
            vec![
                AdminIdentity::CommonName("prometheus".into()),
                AdminIdentity::UriSan("spiffe://claw.internal/prometheus".into())
            ]
        );
        let c = load(&format!(
            "{GOOD}telemetry:\n  unauthenticated_metrics_access: true\n"
        ))
        .unwrap();
        assert!(c.metrics_access.unauthenticated);
        for (text, want) in [
            (
                "auth:\n  login_rate: { per_second: 0 }\n",
                "auth.login_rate.per_second",
            ),
            (
                "auth:\n  login_rate: { per_second: -1 }\n",
                "auth.login_rate.per_second",
            ),
            (
                "auth:\n  login_rate: { burst: 0 }\n",
                "auth.login_rate.burst",
            ),
            (
                "auth:\n  token_tidy_interval: often\n",
                "auth.token_tidy_interval",
            ),
            ("auth:\n  token_tidy_interval: 10ms\n", "too short"),
            ("auth:\n  login_rates: {}\n", "login_rates"),
            (
                "telemetry:\n  metrics_scrapers:\n    - {}\n",
                "telemetry.metrics_scrapers[0]",
            ),
        ] {
            let e = load(&format!("{GOOD}{text}")).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in: {e}");
        }
    }

    // Found by the `server_config` fuzz target: YAML ends a line at a bare `\r` too, so a file
    // with old-Mac line ends is read as many lines and its errors name the line of the field
    // as the parser counts it — the same number as with `\n` or `\r\n` line ends.
    #[test]
    fn line_numbers_count_bare_cr() {
        let bad = GOOD.replace("\"1.2\"", "\"1.0\"");
        for ends in ["\n", "\r\n", "\r"] {
            let text = bad.replace('\n', ends);
            match load(&text).unwrap_err() {
                ConfigError::Field { line, field, .. } => {
                    assert_eq!(
                        (line, field.as_str()),
                        (8, "listener.tls.min_version"),
                        "{ends:?}"
                    )
                }
                e => panic!("{ends:?}: {e}"),
            }
        }
    }

    #[test]
    fn storage_cache_is_on_by_default_and_configurable() {
        let with = |cache: &str| {
            load(&GOOD.replace(
                "  sqlite: { path: keep.db }\n",
                &format!("  sqlite: {{ path: keep.db }}\n  cache: {cache}\n"),
            ))
        };
        let defaults = keep_store::CacheLimits::default();
        assert_eq!(load(GOOD).unwrap().storage_cache, Some(defaults));
        assert_eq!(with("true").unwrap().storage_cache, Some(defaults));
        assert_eq!(with("false").unwrap().storage_cache, None);
        let c = with("{ max_entries: 500, max_bytes: 1048576 }").unwrap();
        assert_eq!(
            c.storage_cache,
            Some(keep_store::CacheLimits {
                max_entries: 500,
                max_bytes: 1 << 20,
                ..defaults
            })
        );
        for (cache, field, problem) in [
            (
                "{ max_entries: 0 }",
                "storage.cache.max_entries",
                "cache: false",
            ),
            ("{ max_bytes: -1 }", "storage.cache.max_bytes", "from 1 to"),
            (
                "{ max_entrys: 5 }",
                "storage.cache.max_entrys",
                "unknown field",
            ),
            ("sometimes", "storage.cache", "write `false`"),
        ] {
            let e = with(cache).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains(problem) && e.contains("line 12"),
                "{cache}: {e}"
            );
        }
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let cases = [
            (
                GOOD.replace("\"1.2\"", "\"1.0\""),
                "listener.tls.min_version",
                "line 8",
            ),
            (
                GOOD.replace("127.0.0.1:8200", "localhost"),
                "listener.address",
                "IP:PORT",
            ),
            (
                GOOD.replace("client_ca_file", "clent_ca_file"),
                "clent_ca_file",
                "keep-server.yaml",
            ),
            (
                GOOD.replace("    client_ca_file: root_ca.crt\n", ""),
                "listener.tls.client_ca_file",
                "required",
            ),
            (
                GOOD.replace(
                    "  key_file: unseal.key\n",
                    "  key_file: unseal.key\n  passphrase_prompt: true\n",
                ),
                "exactly one",
                "seal",
            ),
            (
                GOOD.replace("common_name: operator", "common_name: \"\""),
                "admins[0]",
                "exactly one",
            ),
        ];
        for (text, a, b) in cases {
            let e = load(&text).unwrap_err().to_string();
            assert!(
                e.contains(a) && e.contains(b),
                "want {a:?} and {b:?} in: {e}"
            );
            assert!(e.contains("keep-server.yaml"), "{e}");
        }
    }
}
