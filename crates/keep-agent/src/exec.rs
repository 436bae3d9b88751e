//! `keep agent exec -- CMD ARGS…`: run a process with its secrets in its environment.
//!
//! The secrets are fetched once, before the child starts (a failure means the child never
//! starts, as with `--once`). Each entry's `env: { VAR: key }` mapping adds `VAR` to the
//! current environment of the child; nothing is written to disk. keep stays the parent:
//! SIGTERM, SIGINT and SIGHUP are forwarded to the child, and keep exits with the child's
//! exit code (128 + the signal number when the child was killed by a signal), so it can sit
//! at the top of a container as if it were the command itself.
//!
//! With [`OnChange::Restart`] or [`OnChange::Signal`] keep keeps polling like the sidecar and,
//! when a secret with an `env` mapping gets a new version, restarts the child with the new
//! environment (SIGTERM, then SIGKILL after a grace period) or sends it a signal (for programs
//! that re-read their secrets some other way). Without either, the token is revoked as soon
//! as the secrets are in hand.
//!
//! Signals are sent with the system's `kill` command: the workspace has no safe signal API
//! for arbitrary signals, and `unsafe` is forbidden. SIGKILL uses tokio's own `start_kill`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::config::AgentConfig;
use crate::sidecar::{AgentError, Backoff, Fetched, Session};
use crate::sink::{Format, render};

/// How long a child gets to exit after SIGTERM before a restart kills it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A signal keep forwards or sends on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP (1): the usual "reload your configuration".
    Hup,
    /// SIGINT (2).
    Int,
    /// SIGTERM (15).
    Term,
    /// SIGUSR1 (10).
    Usr1,
    /// SIGUSR2 (12).
    Usr2,
}

impl Signal {
    /// The name `kill -s` takes (`HUP`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
        }
    }

    /// The Linux signal number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Term => 15,
            Signal::Usr1 => 10,
            Signal::Usr2 => 12,
        }
    }
}

impl FromStr for Signal {
    type Err = String;

    /// `SIGHUP`, `HUP` or `hup` (and the same for INT, TERM, USR1, USR2).
    fn from_str(s: &str) -> Result<Signal, String> {
        let up = s.trim().to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        Ok(match name {
            "HUP" => Signal::Hup,
            "INT" => Signal::Int,
            "TERM" => Signal::Term,
            "USR1" => Signal::Usr1,
            "USR2" => Signal::Usr2,
            _ => {
                return Err(format!(
                    "{s:?} is not a signal keep sends; use SIGHUP, SIGINT, SIGTERM, SIGUSR1 or SIGUSR2"
                ));
            }
        })
    }
}

/// What to do when a mapped secret changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Nothing: fetch once, never poll.
    Nothing,
    /// Restart the child with the new environment.
    Restart,
    /// Send the child this signal.
    Signal(Signal),
}

/// How to run the child.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// What a change of a mapped secret does.
    pub on_change: OnChange,
    /// How often to poll (with [`OnChange::Restart`] or [`OnChange::Signal`]).
    pub interval: Duration,
    /// How long a child may take to exit after SIGTERM on a restart.
    pub grace: Duration,
}

/// Why the child could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The secrets could not be fetched (boxed: the client error is large, and this enum is
    /// returned on every path).
    #[error(transparent)]
    Agent(Box<AgentError>),
    /// A mapped key is missing, or a value cannot go into the environment.
    #[error("secret {secret}, env {var}: {problem}")]
    Env {
        /// The secret (mount/path).
        secret: String,
        /// The variable.
        var: String,
        /// What is wrong (names keys, never values).
        problem: String,
    },
    /// No command was given.
    #[error("no command given; write `keep agent exec -- CMD ARGS…`")]
    NoCommand,
    /// The command could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child or installing signal handlers failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<AgentError> for ExecError {
    fn from(e: AgentError) -> ExecError {
        ExecError::Agent(Box::new(e))
    }
}

/// The child's environment additions: variable → value, from every entry's `env` mapping.
/// Held zeroized; the variables' names are not secret.
type Env = BTreeMap<String, Zeroizing<String>>;

/// The variables the config maps, from `fetched` (one per `secrets` entry).
pub fn env_of(config: &AgentConfig, fetched: &[Fetched]) -> Result<Env, ExecError> {
    let mut env = Env::new();
    for (spec, f) in config.secrets.iter().zip(fetched) {
        for (var, key) in &spec.env {
            let err = |problem: String| ExecError::Env {
                secret: spec.display(),
                var: var.clone(),
                problem,
            };
            // The `value` format is exactly "this key's value as text"; reuse it so env and
            // files agree on how non-string values look.
            let bytes = render(&Format::Value { key: key.clone() }, &f.data).map_err(err)?;
            if bytes.contains(&0) {
                return Err(err(format!(
                    "the value of key {key:?} contains a NUL byte and cannot be an environment variable"
                )));
            }
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                err(format!(
                    "the value of key {key:?} is not UTF-8 text (it came from JSON, so this cannot happen)"
                ))
            })?;
            env.insert(var.clone(), Zeroizing::new(text));
        }
    }
    Ok(env)
}

/// The versions of the entries with an `env` mapping: a change here is what restarts or
/// signals the child (a file-only entry does not concern it).
fn mapped_versions(config: &AgentConfig, fetched: &[Fetched]) -> Vec<Option<u64>> {
    config
        .secrets
        .iter()
        .zip(fetched)
        .map(|(s, f)| (!s.env.is_empty()).then_some(f.version))
        .collect()
}

/// The exit code keep passes on: the child's, or 128 + the signal that killed it (the shell
/// convention).
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Sends `sig` to process `pid` with the system's `kill` (see the module comment for why).
pub fn send_signal(pid: u32, sig: Signal) {
    match std::process::Command::new("kill")
        .args(["-s", sig.name(), &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        // The child may have exited meanwhile; its wait() reports what happened.
        Ok(s) => tracing::debug!(pid, signal = sig.name(), status = %s, "kill failed"),
        Err(e) => tracing::warn!(pid, signal = sig.name(), error = %e, "cannot run `kill`"),
    }
}

fn spawn(opts: &ExecOptions, env: &Env) -> Result<Child, ExecError> {
    let (program, args) = opts.command.split_first().ok_or(ExecError::NoCommand)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v.as_str());
    }
    let child = cmd.spawn().map_err(|source| ExecError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    tracing::info!(
        program = %program.to_string_lossy(),
        pid = child.id(),
        variables = ?env.keys().collect::<Vec<_>>(),
        "started the command with its secrets in the environment"
    );
    Ok(child)
}

/// Stops `child`: SIGTERM, then SIGKILL when it has not exited within `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        send_signal(pid, Signal::Term);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "the command did not exit after SIGTERM; killing it"
        );
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Polls for changes of the mapped secrets and sends the new environment on `changes`, until
/// `stop` fires; then revokes the token.
async fn poll(
    mut session: Session,
    config: Arc<AgentConfig>,
    mut versions: Vec<Option<u64>>,
    interval: Duration,
    changes: mpsc::Sender<Env>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::for_interval(interval);
    let mut renewer = crate::renew::Renewer::new(config.renew, &session);
    let mut wait = interval;
    loop {
        let wait_now = renewer.wait().map_or(wait, |r| wait.min(r));
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(wait_now) => {}
        }
        tokio::select! {
            _ = &mut stop => break,
            () = renewer.tick(&mut session) => {}
        }
        let result = tokio::select! {
            _ = &mut stop => break,
            r = session.fetch_all() => r,
        };
        wait = match result {
            Ok(fetched) => {
                backoff.reset();
                let now = mapped_versions(&config, &fetched);
                if now != versions {
                    match env_of(&config, &fetched) {
                        Ok(env) => {
                            tracing::info!("a mapped secret changed");
                            if changes.send(env).await.is_err() {
                                break;
                            }
                        }
                        // The child keeps its current environment; report once per version.
                        Err(e) => {
                            tracing::warn!(error = %e, "a changed secret cannot be used; keeping the running command as it is")
                        }
                    }
                    versions = now;
                }
                interval
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "could not check the secrets for changes; the command keeps running"
                );
                delay
            }
        };
    }
    session.revoke().await;
}

/// Fetches the secrets, runs the command with them, forwards signals and returns the exit
/// code to exit with.
pub async fn run(config: Arc<AgentConfig>, opts: ExecOptions) -> Result<u8, ExecError> {
    if opts.command.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut session = Session::new(config.clone());
    let fetched = match session.fetch_all().await {
        Ok(f) => f,
        Err(e) => {
            session.revoke().await;
            return Err(e.into());
        }
    };
    let env = match env_of(&config, &fetched) {
        Ok(env) => env,
        Err(e) => {
            session.revoke().await;
            return Err(e);
        }
    };

    let io = |what| move |source| ExecError::Io { what, source };
    // Handlers before the child exists: a signal in between must not kill keep and orphan it.
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(io("installing a SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("installing a SIGINT handler"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io("installing a SIGHUP handler"))?;

    let (changes_tx, mut changes) = mpsc::channel::<Env>(1);
    let (stop_tx, stop_rx) = oneshot::channel();
    let poller = if opts.on_change == OnChange::Nothing {
        // Nothing will use the token again.
        session.revoke().await;
        drop(changes_tx);
        None
    } else {
        Some(tokio::spawn(poll(
            session,
            config.clone(),
            mapped_versions(&config, &fetched),
            opts.interval,
            changes_tx,
            stop_rx,
        )))
    };
    drop(fetched);

    let mut child = spawn(&opts, &env)?;
    drop(env);
    let status = loop {
        let pid = child.id();
        let forward = |sig: Signal| {
            if let Some(pid) = pid {
                tracing::info!(signal = sig.name(), pid, "forwarding signal to the command");
                send_signal(pid, sig);
            }
        };
        tokio::select! {
            r = child.wait() => break r.map_err(io("waiting for the command"))?,
            _ = sigterm.recv() => forward(Signal::Term),
            _ = sigint.recv() => forward(Signal::Int),
            _ = sighup.recv() => forward(Signal::Hup),
            Some(env) = changes.recv() => match opts.on_change {
                OnChange::Restart => {
                    tracing::info!("restarting the command with the changed secrets");
                    stop(&mut child, opts.grace).await;
                    child = spawn(&opts, &env)?;
                }
                OnChange::Signal(sig) => {
                    tracing::info!(signal = sig.name(), "signalling the command about the changed secrets");
                    forward(sig);
                }
                OnChange::Nothing => {}
            },
        }
    };
    if let Some(poller) = poller {
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(
            crate::sidecar::REVOKE_TIMEOUT + Duration::from_secs(1),
            poller,
        )
        .await;
    }
    let code = exit_code(status);
    tracing::info!(code, status = %status, "the command exited");
    Ok(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signals_parse_with_or_without_sig() {
        for (s, want) in [
            ("SIGHUP", Signal::Hup),
            ("hup", Signal::Hup),
            ("SIGTERM", Signal::Term),
            ("usr1", Signal::Usr1),
        ] {
            assert_eq!(s.parse::<Signal>().unwrap(), want);
        }
        assert!("SIGKILLME".parse::<Signal>().is_err());
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
