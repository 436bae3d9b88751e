//! `keep agent --once`: fetch every configured secret over mTLS and write the files, then exit
//! (the Kubernetes init-container pattern; docs/agent.md).
//!
//! The order is the point: check every destination, then log in and fetch **everything**, then
//! render every file, and only then write. A failure anywhere before the writes (bad config,
//! unwritable directory, server down, a path the policy denies, a missing key) exits non-zero
//! and leaves the files of the previous run exactly as they were, so a pod never starts with a
//! mix of old and new secrets. Secret values are never printed; messages name paths and keys.

use std::path::PathBuf;

use anyhow::Context;
use keep_agent::client::{ClientConfig, VaultClient};
use keep_agent::config::AgentConfig;
use serde_json::{Map, Value};

use crate::connect;
use crate::exit::usage;

/// `keep agent` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fetch every secret, write every file, then exit: 0 when all were written, non-zero
    /// (leaving existing files untouched) on any failure. Required in this version.
    #[arg(long)]
    pub once: bool,
    /// The agent config (YAML; see docs/agent.md).
    #[arg(long, env = "KEEP_AGENT_CONFIG", default_value = "agent.yaml")]
    pub config: PathBuf,
}

/// Runs `keep agent`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    crate::logging::init();
    if !args.once {
        return Err(usage(
            "`keep agent` without --once (the sidecar that keeps files current) is not available in this version; run `keep agent --once --config agent.yaml`",
        ));
    }
    let config = AgentConfig::load(&args.config).map_err(|e| usage(e.to_string()))?;

    // Destinations first: a directory that cannot be written fails before a secret is fetched.
    keep_agent::sink::check_all(config.secrets.iter().filter_map(|s| s.file.as_ref()))
        .context("checking where the secret files go")?;

    let settings = config
        .connection
        .mtls
        .client_settings()
        .map_err(|e| usage(format!("{}: {e}", config.path.display())))?;
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
