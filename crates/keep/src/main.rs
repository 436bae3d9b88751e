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
#[cfg(feature = "server")]
mod demo;
mod doctor;
mod exit;
mod files;
#[cfg(feature = "server")]
mod init;
mod kv;
mod logging;
mod login;
mod openclaw;
mod openclaw_setup;
mod password;
mod policy;
#[cfg(feature = "server")]
mod server;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keep — secrets for AI agents over mutual TLS.
///
/// One binary for the whole recipe: a lab in one command (`keep init`; `keep demo` shows the
/// whole flow), a step-compatible PKI tool (`keep certificate`), an mTLS vault with a
/// Vault-compatible API and online issuance (`keep server`) and its admin CLI (`keep login`,
/// `kv`, `policy`, `auth`, `token`), the agent that delivers secrets to OpenClaw and other
/// agents and renews its own certificate (`keep agent`, `keep openclaw-resolver`), expiry
/// checks (`keep check expiry`) and a doctor that says what is wrong (`keep doctor`).
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
    #[cfg(feature = "server")]
    Demo(demo::Args),
    /// Create a complete lab: offline root, intermediate, vault and agent certificates, server
    /// and agent configs, and an initialized, provisioned storage.
    #[cfg(feature = "server")]
    Init(Box<init::Args>),
    /// Create, sign, inspect, verify and lint certificates (step-compatible).
    #[command(alias = "cert")]
    Certificate(Box<certificate::Args>),
    /// Checks for cron, systemd and monitoring; exit 0 ok, 1 warn, 2 crit.
    ///
    /// keep check expiry FILE|DIR|https://host:port …: certificate expiry, chain-aware.
    Check(Box<check::Args>),
    /// Run the mTLS vault server (Vault-compatible API), or initialize / rotate its storage.
    #[cfg(feature = "server")]
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
    /// Diagnose an agent or server config: a tree of checks, each ok/warn/fail/skip with a fix.
    ///
    /// keep doctor --config agent.yaml walks every step between the agent's config and its
    /// secrets, in the order the agent meets them, and says which one breaks and how to fix
    /// it:
    ///
    ///   files        the cert, key, CA and password files exist, are readable, and the key
    ///                is not readable by others (a mistyped path gets a "did you mean")
    ///   certificate  the PEM parses (and what keep's forgiving reader had to repair in
    ///                inline PEM), the key matches the certificate, the validity window and
    ///                time left, the clientAuth EKU, the chain to ca_cert_file
    ///   server       DNS, TCP, TLS (not plain HTTP), the server's chain and its name versus
    ///                the URL, whether it asks for a client certificate, from which CAs, and
    ///                whether it accepts ours (or the TLS alert it sent)
    ///   vault        the cert auth login and the role that matched, then every configured
    ///                secret path under the resulting policy (values are never shown)
    ///
    /// keep doctor --server keep-server.yaml checks the vault's side offline: listener cert
    /// and key (present, parse, match, expiry), the client CA bundle (CA certificates only),
    /// min_version and cipher suites, no root CA key next to the config, storage and audit
    /// paths writable, and, when the storage can be unsealed with the configured key file
    /// (read-only), roles without name constraints and policies that give agents more than
    /// read on secrets.
    ///
    /// keep doctor --openclaw [OPENCLAW_JSON] checks OpenClaw's side of the exec provider, as
    /// the Gateway user (you; as root, the owner of the config): for each provider that runs
    /// `keep openclaw-resolver`, OpenClaw's own command checks (absolute path, a file, not a
    /// symlink, inside trustedDirs, not group/world-writable, owned by the Gateway user),
    /// jsonOnly, passEnv and args; then it runs the resolver as OpenClaw would, compares its
    /// time with the provider's timeoutMs, and reports every keep SecretRef in the config that
    /// does not resolve (NOT_FOUND, denied, server down) by its JSON path, e.g.
    /// models.providers.openai.apiKey. Without a path it reads the config OpenClaw reads
    /// (OPENCLAW_CONFIG_PATH, else ~/.openclaw/openclaw.json).
    ///
    /// The flags may be combined.
    ///
    /// Each line is one check: [ok], [warn], [fail] or [skip] (skipped because something it
    /// needs failed first: fix the first [fail] and run it again). A problem has a "fix:" line
    /// below it. Nothing secret is printed; the doctor's login token is revoked at the end.
    ///
    /// Exit status: 0 no check failed (warnings allowed), 1 a check failed, 64 usage error.
    ///
    /// Examples:
    ///
    ///   keep doctor --config /etc/keep/agent.yaml
    ///
    ///   keep doctor --server /etc/keep/keep-server.yaml --format json
    ///
    ///   keep doctor --openclaw
    #[command(verbatim_doc_comment)]
    Doctor(Box<doctor::Args>),
    /// Wire keep into OpenClaw: keep openclaw setup --config agent.yaml (docs/openclaw.md).
    Openclaw(Box<openclaw_setup::Args>),
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
        #[cfg(feature = "server")]
        Command::Demo(args) => demo::run(args),
        #[cfg(feature = "server")]
        Command::Init(args) => init::run(*args),
        Command::Certificate(args) => certificate::run(*args),
        Command::Check(args) => check::run(*args),
        #[cfg(feature = "server")]
        Command::Server(args) => server::run(args),
        Command::Login(args) => login::run(*args),
        Command::Kv(args) => kv::run(*args),
        Command::Policy(args) => policy::run(*args),
        Command::Auth(args) => auth::run(*args),
        Command::Token(args) => token::run(*args),
        Command::Agent(args) => agent::run(*args),
        Command::Doctor(args) => doctor::run(*args),
        Command::Openclaw(args) => openclaw_setup::run(*args),
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
