//! `keep login`: log in with the client certificate (cert auth) and keep the token.
//!
//! Like `vault login`, the token is stored for later commands, in `--token-file`,
//! `KEEP_TOKEN_FILE` or `~/.keep-token` (mode 0600, written atomically). Unlike it, the token
//! is not printed unless `--no-store` asks for it: it would otherwise sit in terminal
//! scrollback and CI logs. Admin identities (`admins:` in the server config) need no login.

use clap::ValueEnum;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::connect::{self, ConnectArgs, Format};

/// Arguments of `keep login`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Auth method. Only `cert` exists: the client certificate is the credential.
    #[arg(long, value_enum, default_value_t)]
    method: Method,
    /// The cert auth role to log in with (default: the one role that matches the certificate;
    /// the server refuses when several match equally).
    #[arg(long, value_name = "ROLE")]
    name: Option<String>,
    /// Print the token instead of storing it (for scripts that keep it elsewhere).
    #[arg(long)]
    no_store: bool,
}

/// Auth methods.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum Method {
    /// TLS client certificate (`auth/cert/login`).
    #[default]
    Cert,
}

/// Seconds as Vault prints TTLs: `768h`, `1h30m`, `45s`.
pub fn human_secs(total: u64) -> String {
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The rows `vault login` prints for an `auth` block.
pub fn auth_rows(auth: &Value) -> Vec<(String, String)> {
    let get = |k: &str| auth.get(k).map(connect::cell).unwrap_or_default();
    let mut rows = vec![
        ("token_accessor".to_owned(), get("accessor")),
        (
            "token_duration".to_owned(),
            auth.get("lease_duration")
                .and_then(Value::as_u64)
                .map(human_secs)
                .unwrap_or_default(),
        ),
        ("token_renewable".to_owned(), get("renewable")),
        ("token_policies".to_owned(), get("token_policies")),
        ("policies".to_owned(), get("policies")),
    ];
    if let Some(meta) = auth.get("metadata").and_then(Value::as_object) {
        let mut meta: Vec<_> = meta
            .iter()
            .map(|(k, v)| (format!("token_meta_{k}"), connect::cell(v)))
            .collect();
        meta.sort();
        rows.extend(meta);
    }
    rows
}

/// Runs `keep login`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let Method::Cert = args.method;
    // Decide where the token goes before talking to the server, so a bad path fails early.
    let store_at = if args.no_store {
        None
    } else {
        Some(args.conn.token_file_path()?)
    };
    let client = args.conn.client_without_token()?;
    let login = connect::block_on(async {
        client.login(args.name.as_deref()).await.map_err(|e| {
            // The usual 400 is "no role matches": say what the two ways in are.
            let doing = if e.status() == Some(400) {
                "cert login failed (identities listed under `admins:` need no login; other certificates need a matching role: keep auth cert write)"
            } else {
                "cert login failed"
            };
            connect::client_error(e, Some(doing))
        })
    })?;
    if let Some(path) = &store_at {
        connect::store_token(path, &login.token)?;
    }
    let stored_msg = store_at.as_ref().map(|p| {
        format!(
            "Success! You are now authenticated. The token was stored in {} (mode 0600); keep commands read it from there.",
            p.display()
        )
    });
    match args.conn.format {
        Format::Json => {
            let mut body = login.response.body.clone();
            if store_at.is_none()
                && let Some(a) = body.get_mut("auth").and_then(Value::as_object_mut)
            {
                a.insert(
                    "client_token".into(),
                    Value::from(login.token.expose_secret()),
                );
            }
            connect::print_json(&body)?;
            if let Some(m) = stored_msg {
                eprintln!("{m}");
            }
        }
        Format::Table => {
            match stored_msg {
                Some(m) => println!("{m}\n"),
                None => println!(
                    "Success! You are now authenticated. The token was not stored (--no-store); pass it to other commands with KEEP_TOKEN or a token file.\n"
                ),
            }
            let mut rows = Vec::new();
            if store_at.is_none() {
                rows.push(("token".to_owned(), login.token.expose_secret().to_owned()));
            }
            rows.extend(auth_rows(login.auth()));
            connect::print_table(&rows);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_vaults() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(3600), "1h");
        assert_eq!(human_secs(5400), "1h30m");
        assert_eq!(human_secs(32 * 24 * 3600), "768h");
    }
}
