//! `keep token …`: look up, renew and revoke tokens, shaped like `vault token …`.
//!
//! A token is never taken as a command-line argument (shell history, `ps`): another token to
//! look up comes from standard input (`keep token lookup -`), your own from the token file or
//! `KEEP_TOKEN`/`VAULT_TOKEN`. Lookup output never shows the token itself.

use clap::Subcommand;
use secrecy::SecretString;
use serde_json::Value;

use crate::connect::{self, ConnectArgs, Format, TokenOrigin};
use crate::exit::usage;
use crate::login;

/// Arguments of `keep token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show a token's properties: yours (default), another token read from standard input
    /// (-), or the token with --accessor.
    Lookup {
        /// - to read the token to look up from standard input.
        #[arg(value_name = "-")]
        token: Option<String>,
        /// Look the token up by its accessor instead.
        #[arg(long, value_name = "ACCESSOR", conflicts_with = "token")]
        accessor: Option<String>,
    },
    /// Extend your token's lifetime (up to its max TTL).
    Renew {
        /// How long from now (seconds or a duration such as 1h); default: the role's TTL.
        #[arg(long, value_name = "DURATION")]
        increment: Option<String>,
    },
    /// Revoke your token (and remove the token file it came from), or the token with
    /// --accessor.
    Revoke {
        /// Revoke the token with this accessor instead of yours.
        #[arg(long, value_name = "ACCESSOR")]
        accessor: Option<String>,
    },
}

fn print_lookup(data: &Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => connect::print_json(data),
        Format::Table => {
            connect::print_table(&connect::object_rows(data));
            Ok(())
        }
    }
}

fn no_token() -> anyhow::Error {
    usage(
        "no token: run `keep login` first (or set KEEP_TOKEN / VAULT_TOKEN, or give --token-file)",
    )
}

/// Runs `keep token …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let format = args.conn.format;
    match args.cmd {
        Cmd::Lookup { token, accessor } => {
            let other = match token.as_deref() {
                None => None,
                Some("-") => {
                    let text = zeroize::Zeroizing::new(std::io::read_to_string(std::io::stdin())?);
                    let t = text.trim();
                    if t.is_empty() {
                        return Err(usage("no token on standard input"));
                    }
                    Some(SecretString::from(t.to_owned()))
                }
                Some(_) => {
                    return Err(usage(
                        "keep does not take a token on the command line (shell history and ps would show it); pass - and give it on standard input",
                    ));
                }
            };
            let (client, origin) = args.conn.client()?;
            let r = connect::block_on(async {
                let r = match (&other, &accessor) {
                    (Some(t), _) => client.token_lookup(t).await,
                    (None, Some(a)) => client.token_lookup_accessor(a).await,
                    (None, None) => {
                        if origin.is_none() {
                            return Err(no_token());
                        }
                        client.token_lookup_self().await
                    }
                };
                r.map_err(|e| connect::client_error(e, Some("token lookup failed")))
            })?;
            print_lookup(r.data(), format)?;
            Ok(0)
        }
        Cmd::Renew { increment } => {
            let (client, origin) = args.conn.client()?;
            if origin.is_none() {
                return Err(no_token());
            }
            let r = connect::block_on(async {
                client
                    .token_renew_self(increment.as_deref())
                    .await
                    .map_err(|e| connect::client_error(e, Some("token renewal failed")))
            })?;
            match format {
                Format::Json => connect::print_json(&r.body)?,
                Format::Table => connect::print_table(&login::auth_rows(r.auth())),
            }
            Ok(0)
        }
        Cmd::Revoke { accessor } => {
            let (client, origin) = args.conn.client()?;
            match accessor {
                Some(a) => {
                    connect::block_on(async {
                        client
                            .token_revoke_accessor(&a)
                            .await
                            .map_err(|e| connect::client_error(e, Some("token revocation failed")))
                    })?;
                    if format == Format::Table {
                        println!("Success! Revoked token (if it existed)");
                    }
                }
                None => {
                    let Some(origin) = origin else {
                        return Err(no_token());
                    };
                    connect::block_on(async {
                        client
                            .token_revoke_self()
                            .await
                            .map_err(|e| connect::client_error(e, Some("token revocation failed")))
                    })?;
                    // A revoked token in the file would only make later commands fail with
                    // "permission denied"; remove it.
                    let removed = match &origin {
                        TokenOrigin::File(p) => std::fs::remove_file(p).is_ok().then_some(p),
                        TokenOrigin::Env(_) => None,
                    };
                    if format == Format::Table {
                        match removed {
                            Some(p) => {
                                println!("Success! Revoked your token and removed {}", p.display())
                            }
                            None => println!("Success! Revoked your token"),
                        }
                    }
                }
            }
            Ok(0)
        }
    }
}
