//! `keep`: secrets for AI agents over mutual TLS.
//!
//! The binary is thin: clap parsing, one module per subcommand, exit codes. The domains live
//! in the library crates (`keep-pki`, `keep-tls`, …).
#![forbid(unsafe_code)]

mod agent;
mod auth;
mod certificate;
mod check;
mod connect;
mod demo;
mod exit;
mod files;
mod init;
mod kv;
mod logging;
mod login;
mod openclaw;
mod password;
mod policy;
mod server;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keep — secrets for AI agents over mutual TLS.
///
/// One binary for the whole recipe: a step-compatible PKI tool (`keep certificate`), an mTLS
/// vault with a Vault-compatible API (`keep server`) and its admin CLI (`keep login`, `kv`,
/// `policy`, `auth`, `token`), the agent that delivers secrets to OpenClaw and other agents
/// (`keep agent --once`), and (in coming releases) a doctor that says what is wrong.
#[derive(Debug, Parser)]
#[command(name = "keep", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run keep's main job in a temporary lab and clean up: a vault, and an agent reading its
    /// secret over mTLS as a file, an environment variable and OpenClaw's exec provider.
    Demo(demo::Args),
    /// Create a complete lab: offline root, intermediate, vault and agent certificates, server
    /// and agent configs, and an initialized, provisioned storage.
    Init(Box<init::Args>),
    /// Create, sign, inspect, verify and lint certificates (step-compatible).
    #[command(alias = "cert")]
    Certificate(Box<certificate::Args>),
    /// Checks for cron, systemd and monitoring; exit 0 ok, 1 warn, 2 crit.
    ///
    /// keep check expiry FILE|DIR|https://host:port …: certificate expiry, chain-aware.
    Check(Box<check::Args>),
    /// Run the mTLS vault server (Vault-compatible API), or initialize / rotate its storage.
    Server(server::Args),
    /// Log in with your client certificate (cert auth); the token is stored in ~/.keep-token.
    Login(Box<login::Args>),
    /// Read and write KV v2 secrets: keep kv get secret/openclaw/llm.
    Kv(Box<kv::Args>),
    /// Manage ACL policies (Vault HCL, with {{cert.common_name}} templates).
    Policy(Box<policy::Args>),
    /// Manage auth methods' roles: keep auth cert write|read|list|delete.
    Auth(Box<auth::Args>),
    /// Look up, renew and revoke tokens.
    Token(Box<token::Args>),
    /// Deliver secrets to an agent: --once (init container), sidecar (default), or exec -- CMD.
    Agent(Box<agent::Args>),
    /// OpenClaw's exec SecretRef provider: answers `{"protocolVersion":1,"ids":[…]}` on stdin
    /// from the vault (see docs/openclaw.md).
    OpenclawResolver(Box<openclaw::Args>),
}

fn main() -> ExitCode {
    // Stage one: Vault-style single-dash flags (`-version=2`) for the API commands.
    let cli = match Cli::try_parse_from(connect::vault_style_args(std::env::args_os())) {
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
        Command::Demo(args) => demo::run(args),
        Command::Init(args) => init::run(*args),
        Command::Certificate(args) => certificate::run(*args),
        Command::Check(args) => check::run(*args),
        Command::Server(args) => server::run(args),
        Command::Login(args) => login::run(*args),
        Command::Kv(args) => kv::run(*args),
        Command::Policy(args) => policy::run(*args),
        Command::Auth(args) => auth::run(*args),
        Command::Token(args) => token::run(*args),
        Command::Agent(args) => agent::run(*args),
        Command::OpenclawResolver(args) => openclaw::run(*args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", exit::render(&e));
            ExitCode::from(exit::code_for(&e))
        }
    }
}
