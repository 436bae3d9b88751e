//! `keep policy …`: ACL policies (Vault HCL), shaped like `vault policy …`.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::connect::{self, ConnectArgs, Format, NOT_FOUND};
use crate::exit::usage;

/// Arguments of `keep policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create or replace a policy from an HCL file (or - for standard input).
    ///
    ///   keep policy write agents agents.hcl
    ///
    /// Templates from the caller's certificate confine each agent to its own path:
    ///
    ///   path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read"] }
    #[command(verbatim_doc_comment)]
    Write {
        /// The policy name.
        name: String,
        /// The HCL file, or - for standard input.
        file: String,
    },
    /// Print a policy's HCL.
    Read {
        /// The policy name.
        name: String,
    },
    /// List policy names.
    List,
    /// Delete a policy (tokens that name it lose what it granted).
    Delete {
        /// The policy name.
        name: String,
    },
}

/// Runs `keep policy …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let format = args.conn.format;
    match args.cmd {
        Cmd::Write { name, file } => {
            // Read the file before connecting: a typo in the path is the likelier mistake.
            let (bytes, _) = crate::files::read_input(&file)?;
            let src = String::from_utf8(bytes)
                .map_err(|_| usage(format!("{file} is not UTF-8 text (HCL expected)")))?;
            let (client, _) = args.conn.client()?;
            connect::block_on(async {
                client.policy_write(&name, &src).await.map_err(|e| {
                    connect::client_error(e, Some(&format!("writing policy {name:?}")))
                })
            })?;
            if format == Format::Table {
                println!("Success! Uploaded policy: {name}");
            }
            Ok(0)
        }
        Cmd::Read { name } => {
            let (client, _) = args.conn.client()?;
            let r = connect::block_on(async { Ok(client.policy_read(&name).await) })?;
            match r {
                Ok(r) => {
                    match format {
                        Format::Json => connect::print_json(r.data())?,
                        Format::Table => {
                            let src = r
                                .data()
                                .get("policy")
                                .or_else(|| r.data().get("rules"))
                                .and_then(Value::as_str)
                                .context("the server's answer has no policy text")?;
                            print!("{src}");
                            if !src.ends_with('\n') {
                                println!();
                            }
                        }
                    }
                    Ok(0)
                }
                Err(e) if e.is_not_found() => {
                    eprintln!("No policy named: {name}");
                    Ok(NOT_FOUND)
                }
                Err(e) => Err(connect::client_error(
                    e,
                    Some(&format!("reading policy {name:?}")),
                )),
            }
        }
        Cmd::List => {
            let (client, _) = args.conn.client()?;
            let keys = connect::block_on(async {
                client
                    .policy_list()
                    .await
                    .map_err(|e| connect::client_error(e, Some("listing policies")))
            })?;
            match format {
                Format::Json => connect::print_json(&Value::from(keys))?,
                Format::Table => {
                    for k in keys {
                        println!("{k}");
                    }
                }
            }
            Ok(0)
        }
        Cmd::Delete { name } => {
            let (client, _) = args.conn.client()?;
            connect::block_on(async {
                client.policy_delete(&name).await.map_err(|e| {
                    connect::client_error(e, Some(&format!("deleting policy {name:?}")))
                })
            })?;
            if format == Format::Table {
                println!("Success! Deleted policy: {name}");
            }
            Ok(0)
        }
    }
}
