//! `keep openclaw-resolver`: OpenClaw's `exec` SecretRef provider (docs/openclaw.md).
//!
//! OpenClaw runs this command with a near-empty environment (only `LC_CTYPE` and
//! `OPENCLAW_CLI`: no PATH, no HOME), in the command's own directory, writes one request on
//! stdin and reads one JSON object from stdout within 5 s. So:
//!
//! - everything comes from `--config` (the agent YAML; its relative paths resolve against its
//!   own directory), nothing from the environment or the working directory;
//! - stdout carries the response and nothing else; logging is off unless `KEEP_LOG` is set,
//!   and then goes to stderr, and no log line or error carries a secret value;
//! - every id gets an answer (a value or a per-id error) and the exit code is 0 whenever a
//!   response was written; only a request that cannot be read or parsed, or a config that
//!   cannot be used, exits non-zero (with the reason on stderr, nothing on stdout);
//! - when the agent config has `proxy.socket` (or a socket path in `proxy.listen`) and a
//!   `keep agent` sidecar answers on it, ids are read through the sidecar: no TLS handshake,
//!   no login, and during a server outage the sidecar's last-known values — so a Gateway
//!   restarting in a loop never reaches the server (the TLS files need not even be readable
//!   by the resolver's user then); otherwise the resolver logs in to the server itself;
//! - the whole run is bounded (`--timeout-ms`, default 4 s, under OpenClaw's 5 s): ids not
//!   resolved by then get `UNAVAILABLE`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keep_agent::client::{ClientConfig, VaultClient};
use keep_agent::config::{AgentConfig, ConfigError};
use keep_agent::proxy::LocalClient;
use keep_agent::resolver::{self, ErrorCode, IdError, RequestError, Resolver, Response};

use crate::exit::USAGE;

/// Exit code for a request in another protocol version.
const EXIT_PROTOCOL: u8 = 2;

/// `keep openclaw-resolver` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent config (YAML; see docs/agent.md): only `vault_connection` is used. Give an
    /// absolute path: OpenClaw runs the command in the command's own directory.
    #[arg(long)]
    pub config: PathBuf,
    /// The KV v2 mount ids are read from.
    #[arg(long, default_value = keep_agent::config::DEFAULT_MOUNT)]
    pub mount: String,
    /// Give up after this long (milliseconds, from start): unanswered ids get UNAVAILABLE.
    /// Keep it under the provider's `timeoutMs` in OpenClaw (default 5000).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub timeout_ms: u64,
}

/// Runs `keep openclaw-resolver`. Errors that reach `main` are printed on stderr only.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    init_logging();
    let budget = Duration::from_millis(args.timeout_ms);

    let mut input = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(resolver::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input)
    {
        eprintln!("keep openclaw-resolver: cannot read the request on stdin: {e}");
        return Ok(USAGE);
    }
    let request = match resolver::parse_request(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keep openclaw-resolver: {e}");
            return Ok(match e {
                RequestError::Version(_) => EXIT_PROTOCOL,
                _ => USAGE,
            });
        }
    };
    tracing::debug!(
        provider = request.provider.as_deref().unwrap_or(""),
        ids = request.ids.len(),
        "request"
    );

    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keep openclaw-resolver: {e}");
            return Ok(USAGE);
        }
    };
    let mount = args.mount.trim_matches('/').to_owned();
    if mount.is_empty() || mount.contains('/') {
        eprintln!(
            "keep openclaw-resolver: --mount {:?} is not a mount name; write e.g. secret",
            args.mount
        );
        return Ok(USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            // Answer anyway: OpenClaw then reports each id rather than a bare exit code.
            let err = IdError {
                code: ErrorCode::Unavailable,
                message: format!("cannot start the async runtime: {e}"),
            };
            return answer(&Response::all_failed(&request.ids, &err));
        }
    };
    // A sidecar on this host answers over its socket: no handshake, no login, and its memory
    // carries the answer through a server outage. Without one, talk to the server directly.
    if let Some(socket) = config.proxy.as_ref().and_then(|p| p.socket.as_deref()) {
        match runtime.block_on(LocalClient::connect(socket)) {
            Ok(local) => {
                tracing::debug!(socket = %socket.display(), "asking the keep agent sidecar");
                return runtime.block_on(async {
                    let deadline = tokio::time::sleep(budget.saturating_sub(started.elapsed()));
                    let response =
                        resolver::resolve_local(&local, &mount, &request.ids, deadline).await;
                    let code = answer(&response);
                    tracing::debug!(
                        resolved = response.values.len(),
                        failed = response.errors.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "answered through the sidecar"
                    );
                    code
                });
            }
            Err(e) => tracing::debug!(
                socket = %socket.display(),
                error = %e,
                "no keep agent sidecar answers on the socket; talking to the server"
            ),
        }
    }
    let client = config
        .connection
        .mtls
        .client_settings()
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            let mut cc = ClientConfig::new(config.connection.url.clone(), tls);
            // Inside the overall budget, so a hung server surfaces as a per-id error rather
            // than OpenClaw's timeout.
            cc.connect_timeout = budget.mul_f32(0.75);
            cc.timeout = budget;
            VaultClient::new(cc).map_err(|e| e.to_string())
        });
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keep openclaw-resolver: {}: {e}", config.path.display());
            return Ok(USAGE);
        }
    };

    tracing::debug!(
        elapsed_us = started.elapsed().as_micros() as u64,
        "config loaded; resolving"
    );
    let resolver = Resolver {
        client,
        role: config.connection.role.clone(),
        mount,
    };
    runtime.block_on(async {
        // The timer needs the runtime, so it is made inside it.
        let deadline = tokio::time::sleep(budget.saturating_sub(started.elapsed()));
        let (response, client) = resolver::resolve(resolver, &request.ids, deadline).await;
        let code = answer(&response);
        tracing::debug!(
            resolved = response.values.len(),
            failed = response.errors.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        // Each call logs in; revoke the token after answering so it does not outlive the
        // call. Best effort, bounded by what is left of the budget.
        if let Some(client) = client {
            let left = budget.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, client.token_revoke_self()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "could not revoke the token"),
                Err(_) => tracing::debug!("revoking the token timed out"),
            }
        }
        code
    })
}

/// Writes the response on stdout, flushed, as the only output there.
fn answer(response: &Response) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(response.to_json().as_bytes())?;
    out.flush()?;
    Ok(0)
}

/// Loads the agent config; the resolver uses only `vault_connection` (a `secrets` list, which
/// `keep agent` needs, may be absent).
fn load_config(path: &Path) -> Result<AgentConfig, ConfigError> {
    AgentConfig::load(path)
}

/// Logging only when asked for (`KEEP_LOG`), to stderr: OpenClaw ignores stderr, but a quiet
/// resolver keeps its callers' logs clean, and values are never logged at any level.
fn init_logging() {
    if std::env::var_os("KEEP_LOG").is_some() {
        crate::logging::init();
    }
}
