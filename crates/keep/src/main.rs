//! `keep`: secrets for AI agents over mutual TLS.
//!
//! The binary is thin: clap parsing, one module per subcommand, exit codes. The domains live
//! in the library crates (`keep-pki`, `keep-tls`, …).
#![forbid(unsafe_code)]

mod certificate;
mod exit;
mod files;
mod logging;
mod password;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keep — secrets for AI agents over mutual TLS.
///
/// One binary for the whole recipe: a step-compatible PKI tool (`keep certificate`), and
/// (in coming releases) an mTLS vault with a Vault-compatible API, the agent side that
/// delivers secrets to OpenClaw and other agents, and a doctor that says what is wrong.
#[derive(Debug, Parser)]
#[command(name = "keep", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, sign, inspect, verify and lint certificates (step-compatible).
    #[command(alias = "cert")]
    Certificate(Box<certificate::Args>),
    /// Run the mTLS vault server (Vault-compatible API), or initialize / rotate its storage.
    Server(server::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    let result = match cli.command {
        Command::Certificate(args) => certificate::run(*args),
        Command::Server(args) => server::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", exit::render(&e));
            ExitCode::from(exit::code_for(&e))
        }
    }
}
