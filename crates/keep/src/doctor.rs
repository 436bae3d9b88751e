//! `keep doctor`: flags and output only; the checks live in `keep-doctor`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{ArgGroup, ValueEnum};
use keep_doctor::{Options, Report};

use crate::exit::usage;

/// Arguments of `keep doctor`.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("what").required(true).multiple(true).args(["config", "server", "openclaw"])),
    verbatim_doc_comment
)]
pub struct Args {
    /// The agent's config (agent.yaml) to diagnose: files, certificate and key, the server
    /// connection, the login and every configured secret.
    #[arg(long, value_name = "AGENT_YAML")]
    config: Option<PathBuf>,
    /// The server's config (keep-server.yaml) to diagnose: listener certificate and key, client
    /// CA bundle, TLS settings, stray root CA keys, storage and audit paths, roles and
    /// policies (read-only).
    #[arg(long, value_name = "SERVER_YAML")]
    server: Option<PathBuf>,
    /// OpenClaw's config (openclaw.json, JSON5) to diagnose: each keep exec provider against
    /// OpenClaw's command checks, its timeoutMs against the measured resolver time, and every
    /// keep SecretRef in it. Without a value: the config OpenClaw reads (OPENCLAW_CONFIG_PATH,
    /// else ~/.openclaw/openclaw.json).
    #[arg(long, value_name = "OPENCLAW_JSON", num_args = 0..=1)]
    openclaw: Option<Option<PathBuf>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// How long each network step (connect, handshake, request) may take.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: String,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum Format {
    /// An indented tree, one line per check, the fix below each problem, a summary last.
    #[default]
    Text,
    /// A JSON array of checks: {id, title, status, detail, fix, children}.
    Json,
}

/// Runs `keep doctor`; returns 0 when nothing failed, 1 when a check failed.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let timeout = keep_pki::duration::parse_duration(&args.timeout)
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            usage(format!(
                "--timeout {:?} is not a duration; write e.g. 5s or 1m",
                args.timeout
            ))
        })?;
    let opts = Options {
        timeout,
        ..Options::default()
    };
    let mut report = Report::default();
    if let Some(p) = &args.config {
        report.checks.push(keep_doctor::agent::diagnose(p, &opts));
    }
    if let Some(p) = &args.server {
        #[cfg(feature = "server")]
        report.checks.push(keep_doctor::server::diagnose(p, &opts));
        #[cfg(not(feature = "server"))]
        return Err(usage(format!(
            "--server {}: this keep is the agent-side build, without the server checks; run the full keep where the server runs",
            p.display()
        )));
    }
    if let Some(p) = &args.openclaw {
        let path = match p {
            Some(p) => p.clone(),
            None => {
                let me = keep_doctor::openclaw::User::current();
                keep_doctor::openclaw::config_path(|k| std::env::var_os(k), &me.home, None)
            }
        };
        report
            .checks
            .push(keep_doctor::openclaw::diagnose(&path, &opts));
    }
    let text = match args.format {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report.render_text(color)
        }
        Format::Json => report.render_json(),
    };
    print!("{text}");
    Ok(if report.failed() {
        crate::exit::FAILURE
    } else {
        0
    })
}
