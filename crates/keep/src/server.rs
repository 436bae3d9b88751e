//! `keep server …`: run the vault, initialize its storage, rotate its barrier key.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use keep_server::config::ServerConfig;
use keep_server::server;
use secrecy::{ExposeSecret, SecretString};

use crate::exit::usage;

/// Arguments of `keep server`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct Args {
    /// The server config file.
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "keep-server.yaml",
        value_name = "FILE"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server (the default when no subcommand is given).
    Run,
    /// Create the storage and the unseal material (a new 0600 key file, or a passphrase).
    ///
    /// With `seal.key_file` a fresh random key is written there (never over an existing
    /// file); with `seal.passphrase_file` or `seal.passphrase_prompt` the key is derived from
    /// the passphrase with argon2id. Refuses storage that is already initialized.
    Init,
    /// Add a new barrier key term: new writes use it, existing entries stay readable.
    Rotate,
    /// Validate the config file and the TLS material, then exit.
    Check,
}

fn prompt(msg: &str) -> Result<SecretString, String> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(
            "seal.passphrase_prompt needs a terminal; use seal.passphrase_file for unattended starts"
                .into(),
        );
    }
    rpassword::prompt_password(msg)
        .map(SecretString::from)
        .map_err(|e| e.to_string())
}

fn prompt_new(msg: &str) -> Result<SecretString, String> {
    let first = prompt(msg)?;
    if first.expose_secret().is_empty() {
        return Err("the passphrase must not be empty".into());
    }
    let second = prompt("Confirm the passphrase: ")?;
    if first.expose_secret() != second.expose_secret() {
        return Err("the passphrases do not match".into());
    }
    Ok(first)
}

fn load(path: &std::path::Path) -> anyhow::Result<ServerConfig> {
    ServerConfig::load(path).map_err(|e| usage(e.to_string()))
}

/// Runs `keep server …`; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let config = load(&args.config)?;
    match args.command.unwrap_or(Cmd::Run) {
        Cmd::Init => {
            server::init(&config, &prompt_new)?;
            eprintln!(
                "Initialized {}. Unseal material: {}.",
                config.sqlite_path.display(),
                match &config.seal {
                    keep_server::config::SealSource::KeyFile(p) => format!(
                        "{} (0600; back it up offline: without it the data is lost)",
                        p.display()
                    ),
                    _ => "your passphrase (argon2id)".into(),
                }
            );
            Ok(0)
        }
        Cmd::Rotate => {
            let term = server::rotate(&config, &prompt)?;
            eprintln!(
                "Barrier key rotated: new writes use term {term}; older entries stay readable."
            );
            Ok(0)
        }
        Cmd::Check => {
            keep_tls::server::build(&config.tls)?;
            if let Some(pki) = &config.pki {
                keep_server::pki::Pki::load(pki)?;
            }
            // What SQLite will need (directory, database, -wal, -shm), as the user running
            // this check: run it as the user the server runs as.
            keep_store::sqlite::check_access(&config.sqlite_path)?;
            println!(
                "ok: {} is valid, its TLS material (and PKI issuer, if any) loads, and its storage files are usable by this user",
                args.config.display()
            );
            Ok(0)
        }
        Cmd::Run => serve(config),
    }
}

/// Restarts this process image (same PID, arguments, descriptors) with glibc's mmap threshold
/// pinned to its 128 KiB default, unless it already is pinned.
///
/// Why: decrypting each encrypted key at start (scrypt, N=2^14, r=8) allocates and frees a
/// 16 MiB buffer. glibc then raises its mmap threshold to that size and its trim threshold to
/// twice that, so the freed buffers stay in the heap for good: a fresh lab server idled at
/// 65 MB RSS (debug build) of which 32 MB were those freed buffers. With the threshold pinned,
/// large buffers are mapped and unmapped and the heap is trimmed again. glibc reads the setting
/// only when the process starts and `mallopt` is not reachable without `unsafe`, hence the
/// `exec`. If the exec fails the server simply runs untuned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_malloc_thresholds() {
    use std::os::unix::process::CommandExt;
    /// Read by glibc's malloc at process start.
    const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(MMAP_THRESHOLD_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only on failure; the server then starts as it is.
    let _failed = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(MMAP_THRESHOLD_VAR, "131072")
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_malloc_thresholds() {}

fn serve(config: ServerConfig) -> anyhow::Result<u8> {
    pin_malloc_thresholds();
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let prepared = server::prepare(&config, &prompt)?;
        let listener = server::bind(&config).await?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%addr, db = %config.sqlite_path.display(), state = ?prepared.state.seal_state(), "keep server listening");
        let (trigger, signal) = keep_tls::listener::shutdown_channel();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            tracing::info!("shutting down");
            trigger.trigger();
        });
        server::serve(&config, prepared, listener, signal).await;
        Ok::<u8, anyhow::Error>(0)
    })
}
