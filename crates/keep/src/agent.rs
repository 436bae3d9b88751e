//! `keep agent`: deliver secrets to an agent (docs/agent.md), in three modes.
//!
//! - `--once` fetches every configured secret over mTLS, writes the files, then exits (the
//!   Kubernetes init-container pattern). The order is the point: check every destination, then
//!   log in and fetch **everything**, then render every file, and only then write. A failure
//!   anywhere before the writes (bad config, unwritable directory, server down, a path the
//!   policy denies, a missing key) exits non-zero and leaves the files of the previous run
//!   exactly as they were, so a pod never starts with a mix of old and new secrets.
//! - without `--once` (the sidecar) it keeps the files current until SIGTERM/SIGINT
//!   ([`keep_agent::sidecar`]): the same all-or-nothing rounds every `poll_interval`, the
//!   last-known-good files kept through outages, backoff with jitter, token renewal.
//! - `exec -- CMD…` runs a command with the secrets in its environment, forwarding signals
//!   and passing on its exit code ([`keep_agent::exec`]).
//!
//! Secret values are never printed; messages name paths and keys.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keep_agent::client::{ClientConfig, VaultClient};
use keep_agent::config::AgentConfig;
use keep_agent::exec::{ExecOptions, OnChange, Signal};
use serde_json::{Map, Value};

use crate::connect;
use crate::exit::usage;

/// `keep agent` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `exec -- CMD ARGS…`: run a command with the secrets in its environment. Without a
    /// subcommand: the sidecar (or, with --once, the init container).
    #[command(subcommand)]
    pub command: Option<Mode>,
    /// Fetch every secret, write every file, then exit: 0 when all were written, non-zero
    /// (leaving existing files untouched) on any failure. Without it, keep running and keep
    /// the files current (the sidecar).
    #[arg(long)]
    pub once: bool,
    /// The agent config (YAML; see docs/agent.md).
    #[arg(
        long,
        env = "KEEP_AGENT_CONFIG",
        default_value = "agent.yaml",
        global = true
    )]
    pub config: PathBuf,
    /// How often to check the secrets for changes (e.g. 30s, 5m); overrides the config's
    /// `poll_interval` (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, global = true)]
    pub interval: Option<Duration>,
}

/// `keep agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Mode {
    /// Run CMD with the mapped secrets (`env: {VAR: key}`) added to its environment; forward
    /// SIGTERM/SIGINT/SIGHUP to it and exit with its exit code (128+N when killed by signal N).
    Exec(ExecArgs),
}

/// `keep agent exec` arguments.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Poll the secrets and restart CMD (SIGTERM, then SIGKILL after --grace) when a mapped
    /// secret changes.
    #[arg(long, conflicts_with = "signal_on_change")]
    pub restart_on_change: bool,
    /// Poll the secrets and send CMD this signal (e.g. SIGHUP) when a mapped secret changes.
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    pub signal_on_change: Option<Signal>,
    /// How long CMD may take to exit after SIGTERM on a restart before it is killed.
    // The default is keep_agent::exec::DEFAULT_GRACE, spelled as clap needs it.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, default_value = "10s")]
    pub grace: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = keep_pki::duration::parse_duration(s).map_err(|e| e.to_string())?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration; write e.g. 1s or 30s"))
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    s.parse()
}

/// Runs `keep agent`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    crate::logging::init();
    let config = AgentConfig::load(&args.config).map_err(|e| usage(e.to_string()))?;
    config.require_secrets().map_err(|e| usage(e.to_string()))?;
    // The TLS material is checked once up front so that a broken key is a config error
    // (exit 64) in every mode, not something the sidecar retries forever.
    let settings = config
        .connection
        .mtls
        .client_settings()
        .map_err(|e| usage(format!("{}: {e}", config.path.display())))?;
    let interval = args.interval.unwrap_or(config.poll_interval);
    match args.command {
        Some(Mode::Exec(exec)) => {
            if args.once {
                return Err(usage("--once does not go with `exec`; leave it out"));
            }
            drop(settings);
            run_exec(config, exec, interval)
        }
        None if args.once => run_once(config, settings),
        None => {
            drop(settings);
            run_sidecar(config, interval)
        }
    }
}

/// `keep agent` (sidecar): check the destinations, then keep the files current until
/// SIGTERM or SIGINT; exits 0 after a clean stop.
fn run_sidecar(config: AgentConfig, interval: Duration) -> anyhow::Result<u8> {
    keep_agent::sink::check_all(config.secrets.iter().filter_map(|s| s.file.as_ref()))
        .context("checking where the secret files go")?;
    tracing::info!(
        config = %config.path.display(),
        secrets = config.secrets.len(),
        interval_ms = interval.as_millis() as u64,
        "keep agent: keeping the secret files current"
    );
    let config = Arc::new(config);
    // The loopback Vault API: token file written and listeners bound before the first round,
    // so a port in use or an unwritable token file stops the agent at start (exit 64).
    let proxy = keep_agent::proxy::Proxy::new(config.clone())
        .map_err(|e| usage(format!("{}: {e}", config.path.display())))?
        .map(Arc::new);
    connect::block_on(async move {
        let shutdown = shutdown_signal()?;
        let serving = match &proxy {
            Some(p) => {
                let listeners = p
                    .bind()
                    .await
                    .map_err(|e| usage(format!("{}: {e}", config.path.display())))?;
                Some(tokio::spawn(p.clone().serve(listeners)))
            }
            None => None,
        };
        keep_agent::sidecar::run(config, interval, shutdown, proxy.as_deref()).await;
        if let Some(task) = serving {
            task.abort();
        }
        if let Some(p) = &proxy {
            p.stop().await;
        }
        Ok(())
    })?;
    Ok(0)
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed before it is
/// returned, so a signal arriving early is not lost (nor kills the process with its files
/// half-handled).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping on signal");
    })
}

/// `keep agent exec`.
fn run_exec(config: AgentConfig, args: ExecArgs, interval: Duration) -> anyhow::Result<u8> {
    let on_change = match (args.restart_on_change, args.signal_on_change) {
        (true, _) => OnChange::Restart,
        (false, Some(sig)) => OnChange::Signal(sig),
        (false, None) => OnChange::Nothing,
    };
    let opts = ExecOptions {
        command: args.command,
        on_change,
        interval,
        grace: args.grace,
    };
    let config = Arc::new(config);
    connect::block_on(async move {
        keep_agent::exec::run(config, opts).await.map_err(|e| {
            use keep_agent::exec::ExecError;
            match &e {
                ExecError::Agent(a) if a.is_usage() => usage(e.to_string()),
                ExecError::NoCommand => usage(e.to_string()),
                _ => anyhow::Error::new(e),
            }
        })
    })
}

/// `keep agent --once`.
fn run_once(config: AgentConfig, settings: keep_tls::client::ClientSettings) -> anyhow::Result<u8> {
    // Destinations first: a directory that cannot be written fails before a secret is fetched.
    keep_agent::sink::check_all(config.secrets.iter().filter_map(|s| s.file.as_ref()))
        .context("checking where the secret files go")?;

    let client = VaultClient::new(ClientConfig::new(config.connection.url.clone(), settings))
        .map_err(|e| connect::client_error(e, None))?;
    let fetched = connect::block_on(fetch_all(client, &config))?;

    // Render everything before writing anything: a secret lacking a configured key fails the
    // run without touching any file.
    let mut rendered = Vec::new();
    for (spec, data) in config.secrets.iter().zip(&fetched) {
        if let Some(file) = &spec.file {
            let contents = file
                .render(data)
                .with_context(|| format!("secret {}", spec.display()))?;
            rendered.push((file, contents));
        }
    }
    for (file, contents) in &rendered {
        file.write(contents)?;
        tracing::info!(file = %file.path.display(), mode = format!("{:04o}", file.mode), "wrote secret file");
    }
    tracing::info!(
        secrets = fetched.len(),
        files = rendered.len(),
        "keep agent --once: done"
    );
    Ok(0)
}

/// Logs in with the client certificate and reads every secret, in config order.
async fn fetch_all(
    client: VaultClient,
    config: &AgentConfig,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let role = config.connection.role.as_deref();
    let login = client.login(role).await.map_err(|e| {
        connect::client_error(
            e,
            Some(&match role {
                Some(r) => format!("logging in with cert auth role {r:?}"),
                None => "logging in with cert auth".to_owned(),
            }),
        )
    })?;
    let client = client.with_token(Some(login.token));
    let mut out = Vec::with_capacity(config.secrets.len());
    let mut failure = None;
    for spec in &config.secrets {
        let doing = format!("reading {}/data/{}", spec.mount, spec.path);
        match client.kv_read(&spec.mount, &spec.path, None).await {
            Ok(r) => match r.data().get("data").and_then(Value::as_object) {
                Some(m) => out.push(m.clone()),
                None => {
                    failure = Some(anyhow::anyhow!(
                        "{doing}: the latest version has no data (deleted or destroyed?); write a new version or undelete it"
                    ));
                    break;
                }
            },
            Err(e) => {
                failure = Some(connect::client_error(e, Some(&doing)));
                break;
            }
        }
    }
    // An init container's token has no further use: revoke it rather than leave it valid for
    // its TTL. Best effort; the run's result does not depend on it.
    if let Err(e) = client.token_revoke_self().await {
        tracing::warn!(error = %e, "could not revoke the agent's token; it expires with its TTL");
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
