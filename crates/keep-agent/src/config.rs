//! `agent.yaml`: the agent's config, read in two stages.
//!
//! A raw serde struct mirrors the file with `deny_unknown_fields` (a typo such as `cert_fiel`
//! is an error, not a silently ignored setting), then [`AgentConfig::from_yaml`] validates it
//! into typed values. Errors name the file, the dotted field path and, where the YAML gives
//! one, the line.
//!
//! Paths may use `${VAR}` (an unset variable is an error naming it, because an empty
//! expansion would silently point somewhere else) and relative paths resolve against the
//! config file's directory, so the agent behaves the same whatever directory it starts in.
//!
//! Inline PEM (`cert_pem`, `key_pem`, `ca_cert_pem`) is checked here with keep-pki's forgiving
//! reader, so the damage YAML block scalars and copy-paste typically cause (trailing spaces,
//! extra indentation, CRLF, no final newline, literal `\n` escapes) just works, and real
//! breakage is reported with the field and the line before anything is contacted.
//!
//! Key material never reaches `Debug`: inline PEM is held as a [`SecretString`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keep_pki::pem::Source;
use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::sink::{FileSink, Format};

/// The KV v2 mount secrets are read from when an entry names none.
pub const DEFAULT_MOUNT: &str = "secret";
/// The mode of a secret file when the config gives none: owner read-only.
pub const DEFAULT_FILE_MODE: u32 = 0o400;
/// How often the sidecar and `exec` check for changed secrets when the config gives no
/// `poll_interval`.
pub const DEFAULT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// The shortest `poll_interval` accepted: faster polling only loads the server.
pub const MIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A config that cannot be used. Messages name the file, the field, the line (when known) and
/// the fix; they never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax or shape error (serde-saphyr's message carries the line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// First line of the parser's message.
        message: String,
    },
    /// A field whose value is not acceptable.
    #[error("{path}{}: `{field}`: {problem}", at_line(*line))]
    Field {
        /// The config file.
        path: PathBuf,
        /// The YAML line of the value (0 when unknown).
        line: u64,
        /// Dotted field path, e.g. `vault_connection.mtls.cert_pem`.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A required section or field is missing.
    #[error("{path}: `{field}` is required; {hint}")]
    Missing {
        /// The config file.
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// What to put there.
        hint: String,
    },
}

fn at_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(", line {line}")
    }
}

// ---------------------------------------------------------------------------------------------
// Raw: exactly the file's shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    vault_connection: Option<RawConnection>,
    secrets: Option<Vec<RawSecret>>,
    renew: Option<RawRenew>,
    poll_interval: Option<Spanned<String>>,
    proxy: Option<RawProxy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Option<Spanned<String>>,
    mtls: Option<RawMtls>,
    role: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    cert_file: Option<Spanned<String>>,
    cert_pem: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    key_pem: Option<Spanned<String>>,
    key_password_file: Option<Spanned<String>>,
    ca_cert_file: Option<Spanned<String>>,
    ca_cert_pem: Option<Spanned<String>>,
    danger_allow_insecure_key_file_mode: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    path: Option<Spanned<String>>,
    mount: Option<Spanned<String>>,
    env: Option<BTreeMap<String, String>>,
    file: Option<RawFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<Spanned<String>>,
    socket: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenew {
    enabled: Option<bool>,
    at: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// Validated.

/// The validated agent config.
#[derive(Debug)]
pub struct AgentConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// How to reach and log in to the vault.
    pub connection: Connection,
    /// What to fetch and where to put it, in file order.
    pub secrets: Vec<SecretSpec>,
    /// Client certificate renewal (used by the sidecar mode; `--once` ignores it).
    pub renew: Renew,
    /// How often the sidecar and `exec` check each secret's version (`poll_interval`,
    /// default [`DEFAULT_POLL_INTERVAL`]; `--once` ignores it).
    pub poll_interval: std::time::Duration,
    /// The loopback Vault API the sidecar serves (`proxy`; see [`crate::proxy`]).
    pub proxy: Option<ProxyConfig>,
    /// Things that work but deserve attention (already logged with `tracing::warn!`).
    pub warnings: Vec<String>,
}

/// `vault_connection`.
#[derive(Debug)]
pub struct Connection {
    /// The server address, e.g. `https://vault.claw.internal:8200`.
    pub url: String,
    /// The cert auth role to log in with; `None` lets the server pick.
    pub role: Option<String>,
    /// The mTLS identity and trust anchors.
    pub mtls: Mtls,
}

/// `vault_connection.mtls`.
#[derive(Debug)]
pub struct Mtls {
    /// The client certificate (chain).
    pub cert: PemSource,
    /// The client key.
    pub key: PemSource,
    /// The CA bundle the server certificate must lead to.
    pub ca: PemSource,
    /// The file holding the key's password, for an encrypted key.
    pub key_password_file: Option<PathBuf>,
}

/// Where one piece of PEM comes from.
#[derive(Debug)]
pub enum PemSource {
    /// A file (already `${VAR}`-expanded and resolved against the config's directory).
    File {
        /// Dotted config field, e.g. `vault_connection.mtls.key_file`, for error messages.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// Inline PEM from the config. Held as a secret so `Debug` never shows a key.
    Inline {
        /// Dotted config field, e.g. `vault_connection.mtls.key_pem`.
        field: String,
        /// The PEM text as YAML delivered it.
        pem: SecretString,
    },
}

impl PemSource {
    /// The PEM text (a file is read now). For certificates: key bytes are not zeroized here.
    pub fn read_text(&self) -> std::io::Result<Vec<u8>> {
        match self {
            PemSource::File { path, .. } => std::fs::read(path),
            PemSource::Inline { pem, .. } => Ok(pem.expose_secret().as_bytes().to_vec()),
        }
    }

    /// The file, when the PEM comes from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PemSource::File { path, .. } => Some(path),
            PemSource::Inline { .. } => None,
        }
    }

    /// The config field it was given in (`vault_connection.mtls.cert_file`, …).
    pub fn field(&self) -> &str {
        match self {
            PemSource::File { field, .. } | PemSource::Inline { field, .. } => field,
        }
    }

    fn input(&self) -> Result<PemInput, keep_tls::server::TlsConfigError> {
        match self {
            PemSource::File { field, path } => PemInput::file(field, path),
            PemSource::Inline { field, pem } => {
                Ok(PemInput::inline(field, pem.expose_secret().as_bytes()))
            }
        }
    }
}

/// One `secrets` entry.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// The KV v2 mount (default `secret`).
    pub mount: String,
    /// The secret's path under the mount, e.g. `openclaw/llm`.
    pub path: String,
    /// Environment variable name → key of the secret (for the `env` file format and exec mode).
    pub env: BTreeMap<String, String>,
    /// The file to write, if any.
    pub file: Option<FileSink>,
}

impl SecretSpec {
    /// `mount/path`, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

/// `proxy`: where the sidecar serves its loopback Vault API and how callers prove they may
/// use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// A loopback TCP address (plain HTTP, for clients that cannot use a unix socket, such as
    /// OpenClaw's bundled Vault plugin). Callers must present the local token.
    pub listen: Option<std::net::SocketAddr>,
    /// A unix socket; its file permissions (mode 0600, owned by `owner`) are what admits a
    /// caller, so no token is needed on it. `keep openclaw-resolver` uses it when present.
    pub socket: Option<PathBuf>,
    /// Where the agent writes the random local token (mode 0600) that TCP callers present as
    /// `X-Vault-Token`. Required with `listen`.
    pub token_file: Option<PathBuf>,
    /// The uid that owns the token file and the socket (default: the agent's own user), so a
    /// Gateway running as another user can read the one and connect to the other.
    pub owner: Option<u32>,
}

/// `renew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renew {
    /// Whether the sidecar renews the client certificate.
    pub enabled: bool,
    /// Renew at this percentage of the certificate's lifetime (1–99).
    pub at_percent: u8,
    /// Renew up to this percentage of the lifetime *earlier*, at random (0–50), so that agents
    /// whose certificates were issued together do not all renew in the same second.
    pub jitter_percent: u8,
}

impl Default for Renew {
    /// Renewal on, at 2/3 of the lifetime.
    fn default() -> Self {
        Renew {
            enabled: true,
            at_percent: 66,
            jitter_percent: 5,
        }
    }
}

impl Mtls {
    /// The TLS client settings: reads the files (or takes the inline PEM) and the key password.
    /// The TLS layer reports unusable material naming the field and file.
    pub fn client_settings(&self) -> Result<ClientSettings, keep_tls::server::TlsConfigError> {
        self.client_settings_with(None)
    }

    /// Like [`Mtls::client_settings`], but presenting `renewed` (a certificate and plaintext
    /// key the agent renewed and holds in memory) instead of the configured ones when given.
    pub fn client_settings_with(
        &self,
        renewed: Option<&crate::renew::Identity>,
    ) -> Result<ClientSettings, keep_tls::server::TlsConfigError> {
        if let Some(id) = renewed {
            return Ok(
                ClientSettings::new(self.ca.input()?).with_identity(ClientIdentity {
                    cert: PemInput::inline("renewed client certificate", id.cert_pem.as_bytes()),
                    key: PemInput::inline("renewed client key", id.key_pem.as_bytes()),
                    key_password: None,
                }),
            );
        }
        let key_password = match &self.key_password_file {
            Some(p) => Some(keep_pki::key::read_password_file(p).map_err(|e| {
                keep_tls::server::TlsConfigError::Rustls {
                    what: "vault_connection.mtls.key_password_file",
                    detail: format!("cannot read {}: {e}", p.display()),
                }
            })?),
            None => None,
        };
        Ok(
            ClientSettings::new(self.ca.input()?).with_identity(ClientIdentity {
                cert: self.cert.input()?,
                key: self.key.input()?,
                key_password,
            }),
        )
    }
}

impl AgentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// For `keep agent`, which has nothing to do without secrets: an error naming `secrets`
    /// when the list is missing or empty.
    pub fn require_secrets(&self) -> Result<(), ConfigError> {
        if self.secrets.is_empty() {
            return Err(ConfigError::Missing {
                path: self.path.clone(),
                field: "secrets".into(),
                hint: "list at least one secret, e.g. `- path: openclaw/llm`".into(),
            });
        }
        Ok(())
    }

    /// Validates YAML text as if read from `path` (relative paths resolve against its
    /// directory; file checks such as the key file's mode happen here).
    pub fn from_yaml(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e
                .to_string()
                .lines()
                .next()
                .map(|l| l.trim_start_matches("error: "))
                .unwrap_or("invalid YAML")
                .to_owned(),
        })?;
        Validator {
            file: path.to_owned(),
            base: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            warnings: Vec::new(),
        }
        .config(raw)
    }
}

struct Validator {
    file: PathBuf,
    base: PathBuf,
    warnings: Vec<String>,
}

impl Validator {
    fn field(&self, line: u64, field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            path: self.file.clone(),
            line,
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn missing(&self, field: &str, hint: &str) -> ConfigError {
        ConfigError::Missing {
            path: self.file.clone(),
            field: field.into(),
            hint: hint.into(),
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!(config = %self.file.display(), "{message}");
        self.warnings.push(message);
    }

    fn config(mut self, raw: RawConfig) -> Result<AgentConfig, ConfigError> {
        let conn = raw.vault_connection.ok_or_else(|| {
            self.missing(
                "vault_connection",
                "add `vault_connection: {url: https://vault:8200, mtls: …}`",
            )
        })?;
        let url = conn.url.ok_or_else(|| {
            self.missing(
                "vault_connection.url",
                "write e.g. https://vault.claw.internal:8200",
            )
        })?;
        crate::client::parse_address(&url.value)
            .map_err(|e| self.field(url.defined.line(), "vault_connection.url", e.to_string()))?;
        let role = match conn.role {
            Some(r) if r.value.trim().is_empty() => {
                return Err(self.field(
                    r.defined.line(),
                    "vault_connection.role",
                    "is empty; give the cert auth role name or remove the line",
                ));
            }
            r => r.map(|r| r.value),
        };
        let mtls = conn.mtls.ok_or_else(|| {
            self.missing(
                "vault_connection.mtls",
                "keep's API is mutual TLS only; add cert_file, key_file and ca_cert_file",
            )
        })?;
        let mtls = self.mtls(mtls)?;

        // May be empty: `keep openclaw-resolver` needs only the connection. `keep agent`
        // insists on at least one entry ([`AgentConfig::require_secrets`]).
        let raw_secrets = raw.secrets.unwrap_or_default();
        let mut secrets = Vec::with_capacity(raw_secrets.len());
        for (i, s) in raw_secrets.into_iter().enumerate() {
            secrets.push(self.secret(i, s)?);
        }
        // Two entries writing one file would race each other's renames; refuse it up front.
        for (i, a) in secrets.iter().enumerate() {
            let Some(fa) = &a.file else { continue };
            if secrets[..i]
                .iter()
                .any(|b| b.file.as_ref().is_some_and(|fb| fb.path == fa.path))
            {
                return Err(self.field(
                    0,
                    &format!("secrets[{i}].file.path"),
                    format!(
                        "{} is written by an earlier entry too; give each file one entry",
                        fa.path.display()
                    ),
                ));
            }
        }
        let renew = match raw.renew {
            None => Renew::default(),
            Some(r) => {
                let percent = |v: Option<Spanned<String>>,
                               field: &str,
                               range: std::ops::RangeInclusive<u8>,
                               default: u8|
                 -> Result<u8, ConfigError> {
                    let Some(v) = v else { return Ok(default) };
                    v.value
                        .trim()
                        .trim_end_matches('%')
                        .trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|n| range.contains(n))
                        .ok_or_else(|| {
                            self.field(
                                v.defined.line(),
                                field,
                                format!(
                                    "{:?} is not a percentage of the lifetime from {}% to {}%; write e.g. {default}%",
                                    v.value,
                                    range.start(),
                                    range.end()
                                ),
                            )
                        })
                };
                let d = Renew::default();
                let at_percent = percent(r.at, "renew.at", 1..=99, d.at_percent)?;
                let jitter_percent = percent(r.jitter, "renew.jitter", 0..=50, d.jitter_percent)?;
                if jitter_percent >= at_percent {
                    return Err(self.field(
                        0,
                        "renew.jitter",
                        format!(
                            "{jitter_percent}% is not smaller than renew.at ({at_percent}%): renewal could be due at issuance; lower it"
                        ),
                    ));
                }
                Renew {
                    enabled: r.enabled.unwrap_or(true),
                    at_percent,
                    jitter_percent,
                }
            }
        };
        let poll_interval = match raw.poll_interval {
            None => DEFAULT_POLL_INTERVAL,
            Some(p) => keep_pki::duration::parse_duration(&p.value)
                .ok()
                .and_then(|d| std::time::Duration::try_from(d).ok())
                .filter(|d| *d >= MIN_POLL_INTERVAL)
                .ok_or_else(|| {
                    self.field(
                        p.defined.line(),
                        "poll_interval",
                        format!(
                            "{:?} is not a duration of at least 100ms; write e.g. 30s or 5m",
                            p.value
                        ),
                    )
                })?,
        };
        let proxy = match raw.proxy {
            None => None,
            Some(p) => Some(self.proxy(p)?),
        };
        Ok(AgentConfig {
            path: self.file.clone(),
            connection: Connection {
                url: url.value,
                role,
                mtls,
            },
            secrets,
            renew,
            poll_interval,
            proxy,
            warnings: self.warnings,
        })
    }

    /// `proxy`: a loopback TCP address and/or a unix socket, the token file TCP needs, and
    /// the owner of both files.
    fn proxy(&self, p: RawProxy) -> Result<ProxyConfig, ConfigError> {
        let mut listen = None;
        let mut socket = match &p.socket {
            Some(s) => Some(self.path(s, "proxy.socket")?),
            None => None,
        };
        if let Some(l) = &p.listen {
            let line = l.defined.line();
            let text = l.value.trim();
            // A path (it has a '/'; an address never does) names a unix socket, as in
            // `listen: /run/keep/agent.sock`.
            if text.contains('/') {
                if socket.is_some() {
                    return Err(self.field(
                        line,
                        "proxy.listen",
                        "names a unix socket and `proxy.socket` names another; give one socket (and, for TCP, listen: 127.0.0.1:PORT)",
                    ));
                }
                socket = Some(self.path(l, "proxy.listen")?);
            } else {
                listen = Some(self.loopback(text, line)?);
            }
        }
        if listen.is_none() && socket.is_none() {
            return Err(self.missing(
                "proxy.listen",
                "give a loopback address (listen: 127.0.0.1:8100) or a unix socket (socket: /run/keep/agent.sock)",
            ));
        }
        let token_file = match &p.token_file {
            Some(t) if listen.is_none() => {
                return Err(self.field(
                    t.defined.line(),
                    "proxy.token_file",
                    "is only used with a TCP `proxy.listen` (the socket's file permissions admit callers); remove it, or add listen: 127.0.0.1:PORT",
                ));
            }
            Some(t) => Some(self.path(t, "proxy.token_file")?),
            None if listen.is_some() => {
                return Err(self.missing(
                    "proxy.token_file",
                    "TCP callers must present a local token; name the file keep agent writes it to (mode 0600), e.g. token_file: /run/keep/proxy-token",
                ));
            }
            None => None,
        };
        if let (Some(t), Some(s)) = (&token_file, &socket)
            && t == s
        {
            return Err(self.field(
                0,
                "proxy.token_file",
                format!(
                    "{} is also the socket; give the token its own file",
                    t.display()
                ),
            ));
        }
        let owner = match &p.owner {
            None => None,
            Some(o) => Some(
                crate::sink::resolve_owner(&o.value)
                    .map_err(|e| self.field(o.defined.line(), "proxy.owner", e))?,
            ),
        };
        Ok(ProxyConfig {
            listen,
            socket,
            token_file,
            owner,
        })
    }

    /// `proxy.listen` as a TCP address: the API is plain HTTP, so only a loopback address is
    /// accepted (`localhost` means 127.0.0.1), with a fixed port clients can be told.
    fn loopback(&self, text: &str, line: u64) -> Result<std::net::SocketAddr, ConfigError> {
        let spelled = match text.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => text.to_owned(),
        };
        let addr: std::net::SocketAddr = spelled.parse().map_err(|_| {
            self.field(
                line,
                "proxy.listen",
                format!(
                    "{text:?} is neither an address nor a socket path; write e.g. 127.0.0.1:8100 or /run/keep/agent.sock"
                ),
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(self.field(
                line,
                "proxy.listen",
                format!(
                    "{text:?} is not a loopback address: the proxy speaks plain HTTP and must not be reachable from the network; write 127.0.0.1:{}",
                    addr.port()
                ),
            ));
        }
        if addr.port() == 0 {
            return Err(self.field(
                line,
                "proxy.listen",
                "port 0 would pick a random port no client knows; give a fixed one, e.g. 127.0.0.1:8100",
            ));
        }
        Ok(addr)
    }

    /// `${VAR}` expansion, then resolution against the config's directory.
    fn path(&self, v: &Spanned<String>, field: &str) -> Result<PathBuf, ConfigError> {
        let line = v.defined.line();
        if v.value.trim().is_empty() {
            return Err(self.field(line, field, "is empty; give a path"));
        }
        let expanded = expand_vars(&v.value, |name| std::env::var(name).ok())
            .map_err(|problem| self.field(line, field, problem))?;
        let p = PathBuf::from(expanded);
        Ok(if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        })
    }

    /// One of `<name>_file` / `<name>_pem`; both is an error naming both.
    fn pem_source(
        &self,
        file: Option<Spanned<String>>,
        pem: Option<Spanned<String>>,
        name: &str,
        hint: &str,
    ) -> Result<PemSource, ConfigError> {
        let file_field = format!("vault_connection.mtls.{name}_file");
        let pem_field = format!("vault_connection.mtls.{name}_pem");
        match (file, pem) {
            (Some(_), Some(p)) => Err(self.field(
                p.defined.line(),
                &pem_field,
                format!(
                    "`{file_field}` and `{pem_field}` are both set; they are alternatives, keep one"
                ),
            )),
            (Some(f), None) => Ok(PemSource::File {
                path: self.path(&f, &file_field)?,
                field: file_field,
            }),
            (None, Some(p)) => {
                // Check now so a paste error is reported with its field and line before
                // anything is contacted; keep-tls will read the same text the same way.
                keep_pki::pem::parse(p.value.as_bytes(), &Source::Field(pem_field.clone()))
                    .map_err(|e| {
                        self.field(
                            p.defined.line(),
                            &pem_field,
                            format!("the inline PEM (whose text starts on this YAML line) cannot be read: {e}"),
                        )
                    })?;
                Ok(PemSource::Inline {
                    field: pem_field,
                    pem: SecretString::from(p.value),
                })
            }
            (None, None) => Err(self.missing(&file_field, hint)),
        }
    }

    fn mtls(&mut self, m: RawMtls) -> Result<Mtls, ConfigError> {
        let allow_insecure = m.danger_allow_insecure_key_file_mode.unwrap_or(false);
        let cert = self.pem_source(
            m.cert_file,
            m.cert_pem,
            "cert",
            "the client certificate (chain) PEM file, or inline as `cert_pem: |`",
        )?;
        let key_inline = m.key_pem.is_some();
        let key = self.pem_source(
            m.key_file,
            m.key_pem,
            "key",
            "the client private key PEM file, or inline as `key_pem: |`",
        )?;
        let ca = self.pem_source(
            m.ca_cert_file,
            m.ca_cert_pem,
            "ca_cert",
            "the CA bundle that issued the server certificate, or inline as `ca_cert_pem: |`",
        )?;
        let key_password_file = match &m.key_password_file {
            Some(p) => Some(self.path(p, "vault_connection.mtls.key_password_file")?),
            None => None,
        };
        // A key readable by others is a key others may already have. With an inline key the
        // config file itself is the key file.
        let mut private_files: Vec<(&str, PathBuf)> = Vec::new();
        if let PemSource::File { path, .. } = &key {
            private_files.push(("vault_connection.mtls.key_file", path.clone()));
        }
        if key_inline {
            private_files.push(("vault_connection.mtls.key_pem", self.file.clone()));
        }
        if let Some(p) = &key_password_file {
            private_files.push(("vault_connection.mtls.key_password_file", p.clone()));
        }
        for (field, file) in private_files {
            let meta = match std::fs::metadata(&file) {
                Ok(m) => m,
                // keep-tls reports a missing file with its field when it reads it.
                Err(_) => continue,
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                continue;
            }
            let what = format!(
                "{} has mode {mode:04o}: readable by group or others",
                file.display()
            );
            if allow_insecure {
                self.warn(format!(
                    "{field}: {what}; accepted because vault_connection.mtls.danger_allow_insecure_key_file_mode is true"
                ));
            } else {
                return Err(self.field(
                    0,
                    field,
                    format!(
                        "{what}; fix: chmod 600 {} (or, knowingly, set vault_connection.mtls.danger_allow_insecure_key_file_mode: true)",
                        file.display()
                    ),
                ));
            }
        }
        Ok(Mtls {
            cert,
            key,
            ca,
            key_password_file,
        })
    }

    fn secret(&self, i: usize, s: RawSecret) -> Result<SecretSpec, ConfigError> {
        let at = |f: &str| format!("secrets[{i}].{f}");
        let path = s
            .path
            .ok_or_else(|| self.missing(&at("path"), "the KV v2 path, e.g. openclaw/llm"))?;
        let line = path.defined.line();
        let trimmed = path.value.trim_matches('/').to_owned();
        if trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty() || c == "..") {
            return Err(self.field(
                line,
                &at("path"),
                format!(
                    "{:?} is not a secret path; write e.g. openclaw/llm",
                    path.value
                ),
            ));
        }
        let mount = match s.mount {
            None => DEFAULT_MOUNT.to_owned(),
            Some(m) => {
                let v = m.value.trim_matches('/').to_owned();
                if v.is_empty() || v.contains('/') {
                    return Err(self.field(
                        m.defined.line(),
                        &at("mount"),
                        format!("{:?} is not a mount name; write e.g. secret", m.value),
                    ));
                }
                v
            }
        };
        let env = s.env.unwrap_or_default();
        for name in env.keys() {
            if !is_env_name(name) {
                return Err(self.field(
                    line,
                    &at(&format!("env.{name}")),
                    "is not an environment variable name (letters, digits and _, not starting with a digit)",
                ));
            }
        }
        let file = match s.file {
            None => None,
            Some(f) => Some(self.file_sink(i, f, &env)?),
        };
        Ok(SecretSpec {
            mount,
            path: trimmed,
            env,
            file,
        })
    }

    fn file_sink(
        &self,
        i: usize,
        f: RawFile,
        env: &BTreeMap<String, String>,
    ) -> Result<FileSink, ConfigError> {
        let at = |x: &str| format!("secrets[{i}].file.{x}");
        let path_v = f.path.ok_or_else(|| {
            self.missing(&at("path"), "the file to write, e.g. /run/keep/llm.json")
        })?;
        let path = self.path(&path_v, &at("path"))?;
        let format_name = f
            .format
            .as_ref()
            .map(|v| v.value.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "json".into());
        let format_line = f.format.as_ref().map_or(0, |v| v.defined.line());
        let format = match format_name.as_str() {
            "json" => Format::Json,
            "env" => Format::Env { names: env.clone() },
            "value" => {
                let key = f.key.as_ref().ok_or_else(|| {
                    self.missing(
                        &at("key"),
                        "format `value` writes one key's value; name it, e.g. key: api_key",
                    )
                })?;
                Format::Value {
                    key: key.value.clone(),
                }
            }
            "template" => {
                let t = f.template.as_ref().ok_or_else(|| {
                    self.missing(
                        &at("template"),
                        "format `template` needs the text, e.g. template: \"{{ .api_key }}\"",
                    )
                })?;
                crate::sink::check_template(&t.value)
                    .map_err(|p| self.field(t.defined.line(), &at("template"), p))?;
                Format::Template {
                    text: t.value.clone(),
                }
            }
            other => {
                return Err(self.field(
                    format_line,
                    &at("format"),
                    format!("{other:?} is not a format; use json, env, value or template"),
                ));
            }
        };
        if let (Some(k), false) = (&f.key, matches!(format, Format::Value { .. })) {
            return Err(self.field(
                k.defined.line(),
                &at("key"),
                "is only used with format: value; remove it or set format: value",
            ));
        }
        if let (Some(t), false) = (&f.template, matches!(format, Format::Template { .. })) {
            return Err(self.field(
                t.defined.line(),
                &at("template"),
                "is only used with format: template; remove it or set format: template",
            ));
        }
        let mode = match &f.mode {
            None => DEFAULT_FILE_MODE,
            Some(m) => parse_mode(&m.value).ok_or_else(|| {
                self.field(
                    m.defined.line(),
                    &at("mode"),
                    format!(
                        "{:?} is not an octal file mode; write it quoted, e.g. mode: \"0400\"",
                        m.value
                    ),
                )
            })?,
        };
        let owner = match &f.owner {
            None => None,
            Some(o) => Some(
                crate::sink::resolve_owner(&o.value)
                    .map_err(|p| self.field(o.defined.line(), &at("owner"), p))?,
            ),
        };
        Ok(FileSink {
            path,
            format,
            mode,
            owner,
        })
    }
}

/// Expands `${NAME}` in `text` with `lookup`; any other `$` is kept as is.
///
/// Fails naming the variable when it is unset (or the `${` is not closed), because expanding
/// to an empty string would silently point a path somewhere else.
pub fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
        let name = &after[..end];
        if !is_env_name(name) {
            return Err(format!("${{{name}}} is not a variable reference"));
        }
        let value = lookup(name).ok_or_else(|| {
            format!("environment variable {name} (used as ${{{name}}}) is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An octal mode such as `0400`, `400` or `0o400`; at most 0777 (no setuid/sticky bits on a
/// secret file).
fn parse_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use keep_test_support::TestPki;
    use std::sync::OnceLock;

    fn pki() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(TestPki::new)
    }

    /// A directory holding agent.crt, agent.key (0600), root_ca.crt and the config path.
    struct Setup {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
    }

    fn setup() -> Setup {
        let tmp = keep_test_support::tempdir();
        let dir = tmp.path().to_path_buf();
        // agent.crt (the chain) and agent.key (0600).
        pki().client.write_to(&dir, "agent");
        std::fs::write(dir.join("root_ca.crt"), &pki().root.cert_pem).unwrap();
        Setup { _tmp: tmp, dir }
    }

    fn indent(text: &str, by: &str) -> String {
        text.lines().map(|l| format!("{by}{l}\n")).collect()
    }

    const SECRETS: &str = "secrets:\n  - path: openclaw/llm\n    env: { OPENAI_API_KEY: api_key }\n    file: { path: /run/keep/llm.json, format: json, mode: \"0400\" }\n";

    fn conn(mtls: &str) -> String {
        format!(
            "vault_connection:\n  url: https://vault.claw.internal:8200\n  mtls:\n{mtls}  role: openclaw-agent\n{SECRETS}"
        )
    }

    const FILES: &str =
        "    cert_file: agent.crt\n    key_file: agent.key\n    ca_cert_file: root_ca.crt\n";
    const KEY_CA: &str = "    key_file: agent.key\n    ca_cert_file: root_ca.crt\n";

    fn load(s: &Setup, yaml: &str) -> Result<AgentConfig, ConfigError> {
        let path = s.dir.join("agent.yaml");
        std::fs::write(&path, yaml).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        AgentConfig::load(&path)
    }

    // Found by the `agent_config` fuzz target: YAML ends a line at a bare `\r` too; errors
    // name the line as the parser counts it, the same number as with `\n` or `\r\n` ends.
    #[test]
    fn line_numbers_count_bare_cr() {
        let s = setup();
        let bad = conn(FILES).replace("https://vault", "http://vault");
        for ends in ["\n", "\r\n", "\r"] {
            match load(&s, &bad.replace('\n', ends)).unwrap_err() {
                ConfigError::Field { line, field, .. } => {
                    assert_eq!(
                        (line, field.as_str()),
                        (2, "vault_connection.url"),
                        "{ends:?}"
                    )
                }
                e => panic!("{ends:?}: {e}"),
            }
        }
    }

    #[test]
    fn the_threads_yaml_works_verbatim() {
        let s = setup();
        let yaml = format!(
            "vault_connection:\n  url: https://vault.claw.internal:8200\n  mtls:\n    cert_file: {d}/agent.crt      # or cert_pem: | (inline)\n    key_file: {d}/agent.key       # or key_pem\n    ca_cert_file: {d}/root_ca.crt # or ca_cert_pem\n  role: openclaw-agent                        # optional cert auth role\nsecrets:\n  - path: openclaw/llm            # KV v2 path under mount `secret`\n    env: {{ OPENAI_API_KEY: api_key }}\n    file: {{ path: /run/keep/llm.json, format: json, mode: \"0400\" }}\n",
            d = s.dir.display()
        );
        let c = load(&s, &yaml).unwrap();
        assert_eq!(c.connection.url, "https://vault.claw.internal:8200");
        assert_eq!(c.connection.role.as_deref(), Some("openclaw-agent"));
        assert!(
            matches!(&c.connection.mtls.key, PemSource::File { path, .. } if *path == s.dir.join("agent.key"))
        );
        let sec = &c.secrets[0];
        assert_eq!(
            (sec.mount.as_str(), sec.path.as_str()),
            ("secret", "openclaw/llm")
        );
        assert_eq!(sec.env["OPENAI_API_KEY"], "api_key");
        let f = sec.file.as_ref().unwrap();
        assert_eq!(f.path, PathBuf::from("/run/keep/llm.json"));
        assert_eq!(f.mode, 0o400);
        assert!(matches!(f.format, Format::Json));
        assert!(c.warnings.is_empty());
        c.connection.mtls.client_settings().unwrap();
        // The same YAML with a `renew` section is accepted too.
        let with_renew = format!("{yaml}renew:\n  enabled: true\n  at: 66%\n");
        assert_eq!(load(&s, &with_renew).unwrap().renew.at_percent, 66);
        let jittered = format!("{yaml}renew:\n  at: 70%\n  jitter: 10%\n");
        let r = load(&s, &jittered).unwrap().renew;
        assert_eq!((r.enabled, r.at_percent, r.jitter_percent), (true, 70, 10));
    }

    /// Inline PEM variants that must just work: (name, mtls block).
    #[test]
    fn inline_pem_damage_from_the_thread_just_works() {
        let s = setup();
        let chain = &pki().client.chain_pem;
        let key = &pki().client.key_pem;
        let ca = &pki().root.cert_pem;
        let trailing: String = chain.lines().map(|l| format!("{l} \n")).collect();
        // Extra indentation inside a block scalar: every body line indented further than the
        // first line, as happens when pasting into an editor that auto-indents.
        let extra_indent: String = key
            .lines()
            .enumerate()
            .map(|(n, l)| {
                if n == 0 {
                    format!("{l}\n")
                } else {
                    format!("  {l}\n")
                }
            })
            .collect();
        let escaped = key.trim_end().replace('\n', "\\n");
        let cases: Vec<(&str, String)> = vec![
            (
                "block scalars",
                format!(
                    "    cert_pem: |\n{}    key_pem: |\n{}    ca_cert_pem: |\n{}",
                    indent(chain, "      "),
                    indent(key, "      "),
                    indent(ca, "      ")
                ),
            ),
            (
                "trailing space on every line",
                format!(
                    "    cert_pem: |\n{}    key_file: agent.key\n    ca_cert_file: root_ca.crt\n",
                    indent(&trailing, "      ")
                ),
            ),
            (
                "extra indentation",
                format!(
                    "    cert_file: agent.crt\n    key_pem: |\n{}    ca_cert_file: root_ca.crt\n",
                    indent(&extra_indent, "      ")
                ),
            ),
            (
                "no final newline (|-)",
                format!(
                    "    cert_file: agent.crt\n    key_file: agent.key\n    ca_cert_pem: |-\n{}",
                    indent(ca, "      ")
                ),
            ),
            (
                "literal \\n escapes in a single-quoted scalar",
                format!(
                    "    cert_file: agent.crt\n    key_pem: '{escaped}'\n    ca_cert_file: root_ca.crt\n"
                ),
            ),
            (
                "real newlines from \\n in a double-quoted scalar",
                format!(
                    "    cert_file: agent.crt\n    key_pem: \"{escaped}\"\n    ca_cert_file: root_ca.crt\n"
                ),
            ),
        ];
        for (name, mtls) in cases {
            let c = load(&s, &conn(&mtls)).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.connection
                .mtls
                .client_settings()
                .and_then(|st| keep_tls::client::build(&st))
                .unwrap_or_else(|e| panic!("{name}: TLS setup: {e}"));
        }
        // CRLF line endings in the whole file.
        let crlf = conn(&format!(
            "    cert_pem: |\n{}{}",
            indent(chain, "      "),
            KEY_CA
        ))
        .replace('\n', "\r\n");
        let c = load(&s, &crlf).expect("CRLF");
        keep_tls::client::build(&c.connection.mtls.client_settings().unwrap()).unwrap();
    }

    /// Rejected configs: (name, YAML, substrings the error must contain).
    #[test]
    fn rejected_configs_name_the_field_and_line() {
        let s = setup();
        let chain = &pki().client.chain_pem;
        let broken_chain = chain.replacen("MII", "MI!I", 1);
        let d = s.dir.display().to_string();
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "unknown field",
                conn(&format!("{FILES}    cert_fiel: x\n")),
                vec!["cert_fiel", "line 7"],
            ),
            (
                "file and pem both",
                conn(&format!(
                    "{FILES}    cert_pem: |\n{}",
                    indent(chain, "      ")
                )),
                vec![
                    "vault_connection.mtls.cert_file",
                    "vault_connection.mtls.cert_pem",
                    // The block scalar's first content line.
                    "line 8",
                ],
            ),
            (
                "broken inline PEM",
                conn(&format!(
                    "    cert_pem: |\n{}    key_file: agent.key\n    ca_cert_file: root_ca.crt\n",
                    indent(&broken_chain, "      ")
                )),
                vec!["vault_connection.mtls.cert_pem", "line 2", "'!'"],
            ),
            (
                "missing key",
                conn("    cert_file: agent.crt\n    ca_cert_file: root_ca.crt\n"),
                vec!["vault_connection.mtls.key_file", "required"],
            ),
            (
                "unset variable",
                conn(
                    "    cert_file: ${KEEP_TEST_SURELY_UNSET}/agent.crt\n    key_file: agent.key\n    ca_cert_file: root_ca.crt\n",
                ),
                vec![
                    "vault_connection.mtls.cert_file",
                    "KEEP_TEST_SURELY_UNSET",
                    "not set",
                    "line 4",
                ],
            ),
            (
                "no vault_connection",
                SECRETS.to_owned(),
                vec!["vault_connection", "required"],
            ),
            (
                "no secrets",
                format!("vault_connection:\n  url: https://v:8200\n  mtls:\n{FILES}"),
                vec!["secrets", "required"],
            ),
            (
                "http url",
                conn(FILES).replace("https://vault", "http://vault"),
                vec!["vault_connection.url", "line 2"],
            ),
            (
                "bad format",
                conn(FILES).replace("format: json", "format: yaml"),
                vec![
                    "secrets[0].file.format",
                    "\"yaml\"",
                    "json, env, value or template",
                ],
            ),
            (
                "value without key",
                conn(FILES).replace("format: json", "format: value"),
                vec!["secrets[0].file.key", "required"],
            ),
            (
                "key without value format",
                conn(FILES).replace("format: json", "format: json, key: api_key"),
                vec!["secrets[0].file.key", "format: value"],
            ),
            (
                "template without text",
                conn(FILES).replace("format: json", "format: template"),
                vec!["secrets[0].file.template", "required"],
            ),
            (
                "unclosed template",
                conn(FILES).replace(
                    "format: json",
                    "format: template, template: \"{{ .api_key\"",
                ),
                vec!["secrets[0].file.template", "}}"],
            ),
            (
                "bad mode",
                conn(FILES).replace("\"0400\"", "\"0999\""),
                vec!["secrets[0].file.mode", "octal"],
            ),
            (
                "unknown owner",
                conn(FILES).replace("mode: \"0400\"", "owner: no-such-user-keep-test"),
                vec!["secrets[0].file.owner", "no-such-user-keep-test"],
            ),
            (
                "bad env name",
                conn(FILES).replace("OPENAI_API_KEY", "1BAD"),
                vec!["secrets[0].env.1BAD"],
            ),
            (
                "dotdot path",
                conn(FILES).replace("openclaw/llm", "openclaw/../x"),
                vec!["secrets[0].path"],
            ),
            (
                "bad renew",
                format!("{}renew: {{ at: 150% }}\n", conn(FILES)),
                vec!["renew.at", "150%"],
            ),
            (
                "renew jitter out of range",
                format!("{}renew: {{ jitter: 70% }}\n", conn(FILES)),
                vec!["renew.jitter", "70%", "0% to 50%"],
            ),
            (
                "renew jitter not below at",
                format!("{}renew: {{ at: 20%, jitter: 30% }}\n", conn(FILES)),
                vec!["renew.jitter", "30%", "renew.at (20%)"],
            ),
            (
                "same file twice",
                format!(
                    "{}  - path: other\n    file: {{ path: /run/keep/llm.json }}\n",
                    conn(FILES)
                ),
                vec!["secrets[1].file.path", "earlier entry"],
            ),
            (
                "absolute paths and relative base",
                conn(&FILES.replace("agent.crt", &format!("{d}/nope.crt"))),
                vec![],
            ),
        ];
        for (name, yaml, wants) in cases {
            // `keep agent` also insists on secrets (the resolver does not).
            match load(&s, &yaml).and_then(|c| c.require_secrets().map(|()| c)) {
                Ok(c) if wants.is_empty() => {
                    // Accepted at load; the missing file is reported by the TLS layer with
                    // its field.
                    let e = c.connection.mtls.client_settings().unwrap_err().to_string();
                    assert!(e.contains("nope.crt"), "{name}: {e}");
                }
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains("agent.yaml"), "{name}: no file in {msg}");
                    for w in wants {
                        assert!(msg.contains(w), "{name}: {w:?} not in {msg}");
                    }
                    assert!(
                        !msg.contains("PRIVATE KEY"),
                        "{name}: key material in {msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn variables_expand_and_relative_paths_resolve_against_the_config() {
        let s = setup();
        // SAFETY-free: tests in this module only read this variable.
        let lookup = |n: &str| (n == "DIR").then(|| "/mounts/secrets".to_owned());
        assert_eq!(
            expand_vars("${DIR}/agent.key", lookup).unwrap(),
            "/mounts/secrets/agent.key"
        );
        assert_eq!(expand_vars("a$b/$c", lookup).unwrap(), "a$b/$c");
        assert!(expand_vars("${NOPE}", lookup).unwrap_err().contains("NOPE"));
        assert!(expand_vars("${DIR", lookup).is_err());
        let c = load(&s, &conn(FILES)).unwrap();
        assert!(
            matches!(&c.connection.mtls.cert, PemSource::File { path, .. } if *path == s.dir.join("agent.crt"))
        );
        // HOME is set in any test environment.
        let home = std::env::var("HOME").unwrap();
        let c = load(
            &s,
            &conn(FILES).replace("/run/keep/llm.json", "\"${HOME}/llm.json\""),
        )
        .unwrap();
        assert_eq!(
            c.secrets[0].file.as_ref().unwrap().path,
            Path::new(&home).join("llm.json")
        );
    }

    #[test]
    fn group_or_world_readable_keys_are_refused_unless_the_danger_flag_is_set() {
        let s = setup();
        let key = s.dir.join("agent.key");
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&s, &conn(FILES)).unwrap_err().to_string();
            assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
            assert!(e.contains("chmod 600"), "{e}");
            assert!(e.contains("vault_connection.mtls.key_file"), "{e}");
        }
        let c = load(
            &s,
            &conn(&format!(
                "{FILES}    danger_allow_insecure_key_file_mode: true\n"
            )),
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("0604"), "{:?}", c.warnings);
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            load(&s, &conn(FILES)).unwrap();
        }
        // An inline key makes the config file the key file.
        let yaml = conn(&format!(
            "    cert_file: agent.crt\n    key_pem: |\n{}    ca_cert_file: root_ca.crt\n",
            indent(&pki().client.key_pem, "      ")
        ));
        let path = s.dir.join("agent.yaml");
        std::fs::write(&path, &yaml).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("vault_connection.mtls.key_pem") && e.contains("chmod 600"),
            "{e}"
        );
    }

    #[test]
    fn an_encrypted_key_is_opened_with_key_password_file() {
        let s = setup();
        let password = SecretString::from("correct horse".to_owned());
        let key = keep_pki::key::load_private_key(
            pki().client.key_pem.as_bytes(),
            &Source::Other("test".into()),
            None,
        )
        .unwrap();
        let enc = s.dir.join("agent.enc.key");
        std::fs::write(&enc, key.to_pem_encrypted(&password).unwrap()).unwrap();
        std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pw = s.dir.join("agent.pass");
        std::fs::write(&pw, "correct horse\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mtls = "    cert_file: agent.crt\n    key_file: agent.enc.key\n    key_password_file: agent.pass\n    ca_cert_file: root_ca.crt\n";
        let c = load(&s, &conn(mtls)).unwrap();
        keep_tls::client::build(&c.connection.mtls.client_settings().unwrap()).unwrap();
        assert!(!format!("{c:?}").contains("correct horse"));
        // Without the password file the TLS layer says what is missing.
        let c = load(
            &s,
            &conn(&mtls.replace("    key_password_file: agent.pass\n", "")),
        )
        .unwrap();
        let e = keep_tls::client::build(&c.connection.mtls.client_settings().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_password_file"), "{e}");
        // A password file readable by others is refused like a key file.
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&s, &conn(mtls)).unwrap_err().to_string();
        assert!(
            e.contains("key_password_file") && e.contains("chmod 600"),
            "{e}"
        );
    }

    /// Accepted spellings of file fields: (replacement for the thread's `file:` line, check).
    #[test]
    fn accepted_file_variants() {
        let s = setup();
        let thread_file = "file: { path: /run/keep/llm.json, format: json, mode: \"0400\" }";
        let cases: Vec<(&str, FileSink)> = vec![
            (
                "file: { path: /run/keep/llm.json, mode: 0400 }",
                FileSink {
                    path: "/run/keep/llm.json".into(),
                    format: Format::Json,
                    mode: 0o400,
                    owner: None,
                },
            ),
            (
                "file: { path: out/llm.env, format: ENV, mode: \"640\" }",
                FileSink {
                    path: s.dir.join("out/llm.env"),
                    format: Format::Env {
                        names: [("OPENAI_API_KEY".to_owned(), "api_key".to_owned())].into(),
                    },
                    mode: 0o640,
                    owner: None,
                },
            ),
            (
                "file: { path: /run/keep/key, format: value, key: api_key, owner: root }",
                FileSink {
                    path: "/run/keep/key".into(),
                    format: Format::Value {
                        key: "api_key".into(),
                    },
                    mode: DEFAULT_FILE_MODE,
                    owner: Some(0),
                },
            ),
            (
                "file: { path: /run/keep/t, format: template, template: \"KEY={{ .api_key }}\", owner: \"1000\" }",
                FileSink {
                    path: "/run/keep/t".into(),
                    format: Format::Template {
                        text: "KEY={{ .api_key }}".into(),
                    },
                    mode: DEFAULT_FILE_MODE,
                    owner: Some(1000),
                },
            ),
        ];
        for (line, want) in cases {
            let c = load(&s, &conn(FILES).replace(thread_file, line))
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(c.secrets[0].file.as_ref(), Some(&want), "{line}");
        }
        // `mount:` and an entry without a file (for the coming exec mode).
        let c = load(
            &s,
            &format!("{}  - path: /x/y/\n    mount: kv\n", conn(FILES)),
        )
        .unwrap();
        assert_eq!(
            (c.secrets[1].mount.as_str(), c.secrets[1].path.as_str()),
            ("kv", "x/y")
        );
        assert!(c.secrets[1].file.is_none());
    }

    #[test]
    fn poll_interval_defaults_to_30s_and_rejects_nonsense_naming_the_field() {
        let s = setup();
        let c = load(&s, &conn(FILES)).unwrap();
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        let c = load(&s, &format!("poll_interval: 1m30s\n{}", conn(FILES))).unwrap();
        assert_eq!(c.poll_interval, std::time::Duration::from_secs(90));
        for bad in ["soon", "10ms", "-5s"] {
            let e = load(&s, &format!("poll_interval: {bad}\n{}", conn(FILES)))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("poll_interval") && e.contains("line 1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn debug_never_prints_key_material() {
        let s = setup();
        let yaml = conn(&format!(
            "    cert_file: agent.crt\n    key_pem: |\n{}    ca_cert_file: root_ca.crt\n",
            indent(&pki().client.key_pem, "      ")
        ));
        let c = load(&s, &yaml).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        let body_line = pki().client.key_pem.lines().nth(1).unwrap();
        assert!(!dbg.contains(body_line), "{dbg}");
        assert!(dbg.contains("REDACTED"), "{dbg}");
    }

    #[test]
    fn modes_parse_as_octal() {
        for (text, want) in [
            ("0400", Some(0o400)),
            ("400", Some(0o400)),
            ("0o640", Some(0o640)),
            ("0600", Some(0o600)),
            ("4755", None),
            ("0999", None),
            ("", None),
            ("rw", None),
        ] {
            assert_eq!(parse_mode(text), want, "{text}");
        }
    }

    #[test]
    fn proxy_section_is_validated_with_field_line_and_fix() {
        let s = setup();
        let with = |proxy: &str| format!("{}proxy:\n{proxy}", conn(FILES));
        let ok = load(
            &s,
            &with("  listen: 127.0.0.1:8100\n  socket: agent.sock\n  token_file: token\n  owner: root\n"),
        )
        .unwrap();
        assert_eq!(
            ok.proxy,
            Some(ProxyConfig {
                listen: Some("127.0.0.1:8100".parse().unwrap()),
                socket: Some(s.dir.join("agent.sock")),
                token_file: Some(s.dir.join("token")),
                owner: Some(0),
            })
        );
        // A path in `listen` is a socket; `localhost` is 127.0.0.1.
        let sock = load(&s, &with("  listen: /run/keep/agent.sock\n")).unwrap();
        assert_eq!(
            sock.proxy.unwrap().socket.as_deref(),
            Some(Path::new("/run/keep/agent.sock"))
        );
        let local = load(&s, &with("  listen: localhost:8100\n  token_file: t\n")).unwrap();
        assert_eq!(
            local.proxy.unwrap().listen,
            Some("127.0.0.1:8100".parse().unwrap())
        );
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "not loopback",
                with("  listen: 0.0.0.0:8100\n  token_file: t\n"),
                vec![
                    "proxy.listen",
                    "line 13",
                    "not a loopback address",
                    "127.0.0.1:8100",
                ],
            ),
            (
                "port 0",
                with("  listen: 127.0.0.1:0\n  token_file: t\n"),
                vec!["proxy.listen", "line 13", "fixed one"],
            ),
            (
                "garbage",
                with("  listen: here\n  token_file: t\n"),
                vec![
                    "proxy.listen",
                    "line 13",
                    "127.0.0.1:8100 or /run/keep/agent.sock",
                ],
            ),
            (
                "tcp without token file",
                with("  listen: 127.0.0.1:8100\n"),
                vec!["proxy.token_file", "required", "mode 0600"],
            ),
            (
                "token file without tcp",
                with("  socket: /run/keep/a.sock\n  token_file: t\n"),
                vec!["proxy.token_file", "line 14", "only used with a TCP"],
            ),
            (
                "two sockets",
                with("  listen: /run/a.sock\n  socket: /run/b.sock\n"),
                vec!["proxy.listen", "give one socket"],
            ),
            (
                "nothing to listen on",
                with("  owner: root\n"),
                vec!["proxy.listen", "required"],
            ),
            (
                "unknown owner",
                with("  socket: /run/a.sock\n  owner: no-such-user-keep-test\n"),
                vec!["proxy.owner", "line 14", "no-such-user-keep-test"],
            ),
            (
                "typo",
                with("  socket: /run/a.sock\n  tokn_file: t\n"),
                vec!["tokn_file"],
            ),
        ];
        for (name, yaml, wants) in cases {
            let e = load(&s, &yaml).unwrap_err().to_string();
            for w in wants {
                assert!(e.contains(w), "{name}: {w:?} not in {e}");
            }
        }
    }
}
