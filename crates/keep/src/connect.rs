//! What every API command shares (`keep login`, `kv`, `policy`, `auth`, `token`): the
//! connection flags and their environment variables, the token and where it is stored, the
//! output format, and turning client errors into messages and exit codes.
//!
//! Settings come from a flag, else `KEEP_…`, else Vault's `VAULT_…` variable, so a shell set
//! up for the `vault` CLI works unchanged. Tokens and key passwords never come from a flag value
//! (shell history, `ps`): tokens from a 0600 file or the environment, passwords from a file or
//! a prompt.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ValueEnum;
use keep_agent::client::{ClientConfig, ClientError, VaultClient};
use keep_pki::pem::Source;
use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::exit::usage;
use crate::files::{self, Mode};
use crate::password;

/// Exit code for "nothing at that path" (a missing secret, role or policy), as `vault kv get`
/// and `vault read` use it.
pub const NOT_FOUND: u8 = 2;

/// The server address when nothing else is given (Vault's default, too).
const DEFAULT_ADDR: &str = "https://127.0.0.1:8200";

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned key/value tables for people.
    #[default]
    Table,
    /// The server's JSON (the whole response for reads, `data` or a list for others).
    Json,
}

/// Connection and output flags, shared by every API command (`global`: they may come before or
/// after the subcommand).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection and output")]
pub struct ConnectArgs {
    /// The keep server, https://HOST:PORT [env: KEEP_ADDR, then VAULT_ADDR; default
    /// https://127.0.0.1:8200].
    #[arg(long, alias = "address", global = true, value_name = "URL")]
    pub addr: Option<String>,
    /// CA certificate(s) that issued the server's certificate; the system roots are never used
    /// [env: KEEP_CACERT, then VAULT_CACERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Your client certificate (chain, leaf first) [env: KEEP_CLIENT_CERT, then
    /// VAULT_CLIENT_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Your client key; may be encrypted [env: KEEP_CLIENT_KEY, then VAULT_CLIENT_KEY].
    #[arg(long, global = true, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// File holding the password of an encrypted client key (else you are asked on a
    /// terminal) [env: KEEP_CLIENT_KEY_PASSWORD_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    pub key_password_file: Option<PathBuf>,
    /// Token file: `keep login` stores the token there, other commands read it [env:
    /// KEEP_TOKEN_FILE; default ~/.keep-token]. KEEP_TOKEN or VAULT_TOKEN, when set, are used
    /// instead of the file (unless this flag is given).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: Format,
}

/// A flag, else the first non-empty environment variable of `vars`.
fn setting(flag: Option<&PathBuf>, vars: &[&str]) -> Option<PathBuf> {
    flag.cloned().or_else(|| {
        vars.iter()
            .filter_map(std::env::var_os)
            .find(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

fn env_text(vars: &[&str]) -> Option<String> {
    vars.iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

/// Where a token came from, so `token revoke` knows whether to remove the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// A token file.
    File(PathBuf),
    /// `KEEP_TOKEN` or `VAULT_TOKEN`.
    Env(&'static str),
}

impl ConnectArgs {
    /// The token file `keep login` writes: `--token-file`, `KEEP_TOKEN_FILE`, `~/.keep-token`.
    pub fn token_file_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = setting(self.token_file.as_ref(), &["KEEP_TOKEN_FILE"]) {
            return Ok(p);
        }
        std::env::home_dir()
            .filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(".keep-token"))
            .ok_or_else(|| {
                usage("cannot tell where to store the token: HOME is not set; give --token-file FILE or set KEEP_TOKEN_FILE")
            })
    }

    /// The token to send, if any: `--token-file`, else `KEEP_TOKEN`, else `VAULT_TOKEN`, else
    /// the token file when it exists. Admin identities and tokenless roles need none.
    pub fn token(&self) -> anyhow::Result<Option<(SecretString, TokenOrigin)>> {
        if let Some(p) = &self.token_file {
            return read_token_file(p, true).map(|t| t.map(|t| (t, TokenOrigin::File(p.clone()))));
        }
        for var in ["KEEP_TOKEN", "VAULT_TOKEN"] {
            if let Some(t) = env_text(&[var]) {
                return Ok(Some((SecretString::from(t), TokenOrigin::Env(var))));
            }
        }
        // A KEEP_TOKEN_FILE that does not exist yet (before the first login, or for an admin
        // who never logs in) just means "no token".
        let Ok(p) = self.token_file_path() else {
            return Ok(None);
        };
        read_token_file(&p, false).map(|t| t.map(|t| (t, TokenOrigin::File(p))))
    }

    fn tls_settings(&self) -> anyhow::Result<ClientSettings> {
        let ca = setting(self.ca_cert.as_ref(), &["KEEP_CACERT", "VAULT_CACERT"]).ok_or_else(|| {
            usage("no CA certificate to check the server with: give --ca-cert FILE or set KEEP_CACERT (VAULT_CACERT works too); keep trusts only the CA you name, never the system roots")
        })?;
        let cert = setting(
            self.client_cert.as_ref(),
            &["KEEP_CLIENT_CERT", "VAULT_CLIENT_CERT"],
        )
        .ok_or_else(|| {
            usage("no client certificate: give --client-cert FILE or set KEEP_CLIENT_CERT (VAULT_CLIENT_CERT works too); keep's API is mutual TLS only")
        })?;
        let key = setting(
            self.client_key.as_ref(),
            &["KEEP_CLIENT_KEY", "VAULT_CLIENT_KEY"],
        )
        .ok_or_else(|| {
            usage("no client key: give --client-key FILE or set KEEP_CLIENT_KEY (VAULT_CLIENT_KEY works too)")
        })?;
        let password_file = setting(
            self.key_password_file.as_ref(),
            &["KEEP_CLIENT_KEY_PASSWORD_FILE"],
        );
        let tls = |e| usage(format!("{e}"));
        let ca_input = PemInput::file("--ca-cert", &ca).map_err(tls)?;
        let cert_input = PemInput::file("--client-cert", &cert).map_err(tls)?;
        let key_input = PemInput::file("--client-key", &key).map_err(tls)?;
        // Ask for a password only when the key needs one. If the file is not a key at all,
        // keep-tls reports that below, naming the file and the fix.
        let encrypted = std::fs::read(&key)
            .ok()
            .map(zeroize::Zeroizing::new)
            .and_then(|b| keep_pki::key::is_encrypted(&b, &Source::File(key.clone())).ok())
            .unwrap_or(false);
        let key_password = if encrypted {
            Some(password::existing_password(
                password_file.as_deref(),
                "client key",
                "--key-password-file",
            )?)
        } else {
            None
        };
        Ok(ClientSettings::new(ca_input).with_identity(ClientIdentity {
            cert: cert_input,
            key: key_input,
            key_password,
        }))
    }

    /// Builds the client, without a token.
    pub fn client_without_token(&self) -> anyhow::Result<VaultClient> {
        let addr = self
            .addr
            .clone()
            .or_else(|| env_text(&["KEEP_ADDR", "VAULT_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let settings = self.tls_settings()?;
        VaultClient::new(ClientConfig::new(addr, settings)).map_err(|e| client_error(e, None))
    }

    /// Builds the client with the token from [`ConnectArgs::token`], if there is one.
    pub fn client(&self) -> anyhow::Result<(VaultClient, Option<TokenOrigin>)> {
        let token = self.token()?;
        let client = self.client_without_token()?;
        let (token, origin) = match token {
            Some((t, o)) => (Some(t), Some(o)),
            None => (None, None),
        };
        Ok((client.with_token(token), origin))
    }
}

/// Reads a token file: `None` when it does not exist and was not asked for explicitly.
fn read_token_file(path: &Path, explicit: bool) -> anyhow::Result<Option<SecretString>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => {
            return Err(usage(format!(
                "cannot read the token file {}: {e}; run `keep login` first, or check the path",
                path.display()
            )));
        }
    };
    warn_if_shared(path);
    let t = text.trim();
    if t.is_empty() {
        return Err(usage(format!(
            "the token file {} is empty; run `keep login` again",
            path.display()
        )));
    }
    Ok(Some(SecretString::from(t.to_owned())))
}

/// A token file others can read hands them the token (bound to the certificate, but still).
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: the token file {} is readable by other users; fix: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

/// Stores a token atomically with mode 0600, replacing an older one.
pub fn store_token(path: &Path, token: &SecretString) -> anyhow::Result<()> {
    files::write_atomic(path, token.expose_secret().as_bytes(), Mode::Secret, true)
        .with_context(|| format!("cannot store the token in {}", path.display()))
}

/// Runs `fut` on a small runtime: the CLI makes one or two requests and then exits.
pub fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(fut)
}

/// Turns a client error into the error `main` prints: what we were doing, then the server's
/// message verbatim (or the advice for a TLS failure). Mistakes in what the user gave exit 64,
/// server and network failures 1.
pub fn client_error(e: ClientError, doing: Option<&str>) -> anyhow::Error {
    let msg = match doing {
        Some(d) => format!("{d}: {e}"),
        None => e.to_string(),
    };
    if e.is_usage() {
        usage(msg)
    } else {
        anyhow::Error::msg(msg)
    }
}

/// Prints JSON, pretty, to standard output.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v).context("cannot format the answer as JSON")?;
    println!("{s}");
    Ok(())
}

/// How a JSON value reads in a table cell: strings bare, lists as `[a b]` (Vault's look),
/// `null` as `n/a`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::String(s) if s.is_empty() => "n/a".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(cell).collect::<Vec<_>>().join(" ")),
        Value::Object(m) if m.is_empty() => "map[]".into(),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", cell(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Prints a `Key / Value` table.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(3);
    println!("{:<width$}    Value", "Key");
    println!("{:<width$}    -----", "---");
    for (k, v) in rows {
        println!("{k:<width$}    {v}");
    }
}

/// The rows of a JSON object, keys sorted.
pub fn object_rows(v: &Value) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = v
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
        .unwrap_or_default();
    rows.sort();
    rows
}

/// Prints a section header as Vault does (`====== Data ======`).
pub fn print_header(title: &str) {
    println!(
        "{:=^width$}",
        format!(" {title} "),
        width = title.len() + 14
    );
}

/// Prints a list: one item per line under `Keys` (table) or a JSON array.
pub fn print_list(keys: &[String], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&Value::from(keys.to_vec())),
        Format::Table => {
            println!("Keys\n----");
            for k in keys {
                println!("{k}");
            }
            Ok(())
        }
    }
}

/// Prints the server's warnings to standard error.
pub fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("WARNING: {w}");
    }
}

/// Whether standard output is a terminal (then a lone value gets a newline).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// The API commands whose flags may be written Vault's way, with one dash.
const API_COMMANDS: [&str; 5] = ["login", "kv", "policy", "auth", "token"];

/// Long flags that `vault` users type with one dash (`-version=2`, `-field=api_key`).
const VAULT_STYLE_FLAGS: [&str; 26] = [
    "accessor",
    "addr",
    "address",
    "allow-tokenless",
    "any-name",
    "ca-cert",
    "cas",
    "cas-required",
    "client-cert",
    "client-key",
    "custom-metadata",
    "delete-version-after",
    "field",
    "format",
    "increment",
    "key-password-file",
    "max-versions",
    "method",
    "mount",
    "name",
    "no-store",
    "token-file",
    "version",
    "versions",
    "certificate",
    "allowed-common-names",
];

/// First stage of argument parsing: for the API commands, rewrites Vault's single-dash long
/// flags (`-version=2`, `-format json`) to clap's `--version=2`, so muscle memory from the
/// `vault` CLI works. Only known flag names are rewritten, and nothing after `--`.
pub fn vault_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let api = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| API_COMMANDS.contains(&a));
    if !api {
        return args;
    }
    for a in args.iter_mut().skip(2) {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if let Some(rest) = s.strip_prefix('-')
            && !rest.starts_with('-')
        {
            let name = rest.split('=').next().unwrap_or(rest);
            if VAULT_STYLE_FLAGS.contains(&name) {
                *a = OsString::from(format!("-{s}"));
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        vault_style_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn vault_single_dash_flags_become_long_flags_for_api_commands_only() {
        assert_eq!(
            rewrite(&["keep", "kv", "get", "-version=2", "-field", "k", "secret/a"]),
            [
                "keep",
                "kv",
                "get",
                "--version=2",
                "--field",
                "k",
                "secret/a"
            ]
        );
        assert_eq!(
            rewrite(&["keep", "kv", "put", "secret/a", "k=-", "-", "--", "-field"]),
            ["keep", "kv", "put", "secret/a", "k=-", "-", "--", "-field"]
        );
        // Unknown names and short flags are left to clap.
        assert_eq!(rewrite(&["keep", "kv", "-h"]), ["keep", "kv", "-h"]);
        assert_eq!(
            rewrite(&["keep", "certificate", "-format", "json"]),
            ["keep", "certificate", "-format", "json"]
        );
    }

    #[test]
    fn cells_read_like_vaults() {
        assert_eq!(cell(&serde_json::json!(null)), "n/a");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "[a b]");
        assert_eq!(cell(&serde_json::json!({"k": "v"})), "map[k:v]");
        assert_eq!(cell(&serde_json::json!(3)), "3");
    }
}
