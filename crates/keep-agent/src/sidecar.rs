//! `keep agent` (the sidecar): keep the secret files current for as long as the pod runs.
//!
//! Every `poll_interval` the sidecar reads each configured secret and rewrites a file only when
//! its secret's version changed, atomically through [`crate::sink`]. A round is all or
//! nothing, as `--once` is: every secret is fetched and every changed file rendered before any
//! is written, so readers never see a mix of old and new secrets.
//!
//! Failures never touch the files: a server outage, a denied path or a missing key leaves the
//! last-known-good files in place, and the sidecar retries with exponential backoff and jitter
//! (so a fleet of sidecars does not hit a restarted server in lockstep) until it recovers, with
//! no restart needed. The token is renewed at 2/3 of its TTL; a failed renewal, or a 403 on a
//! read (the token expired, or a restarted server no longer knows it), leads to one fresh
//! login with the client certificate, re-read from disk so a renewed certificate is picked up.
//!
//! [`Session`] (login, renewal, fetching) is shared with `keep agent exec` ([`crate::exec`]).
//! Logs name paths, versions and files, never a value or a token.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::client::{ClientConfig, ClientError, VaultClient};
use crate::config::AgentConfig;
use crate::sink::SinkError;

/// How long a best-effort token revocation may take when the agent stops: a server that is
/// down must not hold up a pod's shutdown.
pub const REVOKE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest pause between retries while the server is unreachable (shorter when the poll
/// interval is short; see [`Backoff::for_interval`]).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a round of fetching (or writing) failed. Messages name paths, keys and files, never a
/// value or a token.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The client certificate, key or CA bundle cannot be loaded.
    #[error("the mTLS material in the config cannot be used: {0}")]
    Tls(#[from] keep_tls::server::TlsConfigError),
    /// A call to the server failed.
    #[error("{doing}: {source}")]
    Client {
        /// What was being done, e.g. "reading secret/data/openclaw/llm".
        doing: String,
        /// The client's error (already free of tokens and values).
        #[source]
        source: ClientError,
    },
    /// The latest version of a secret is deleted or destroyed.
    #[error(
        "{doing}: the latest version has no data (deleted or destroyed?); write a new version or undelete it"
    )]
    NoData {
        /// What was being read.
        doing: String,
    },
    /// A secret does not fit its file, or the file cannot be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl AgentError {
    /// Whether the error is in what the user gave (TLS files, paths) rather than in the
    /// server or the network.
    pub fn is_usage(&self) -> bool {
        match self {
            AgentError::Tls(_) => true,
            AgentError::Client { source, .. } => source.is_usage(),
            _ => false,
        }
    }
}

/// One secret as read: its version and its key/value map.
#[derive(Clone)]
pub struct Fetched {
    /// The KV v2 version read (`data.metadata.version`; 0 when the server gave none).
    pub version: u64,
    /// The secret's keys and values.
    pub data: Map<String, Value>,
}

// By hand: the version and the key names, never the values.
impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("version", &self.version)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A logged-in connection to the vault as the config's client identity.
#[derive(Debug)]
pub struct Session {
    config: Arc<AgentConfig>,
    /// The client carrying the current token; `None` until logged in, or after the token was
    /// found unusable.
    client: Option<VaultClient>,
    /// When to renew the token (2/3 of its TTL); `None` for a token that does not expire or
    /// cannot be renewed.
    renew_at: Option<Instant>,
    /// At `renew_at`, log in afresh instead of renewing: the token is not renewable, or the
    /// last renewal was cut short by the token's max TTL.
    relogin_at_renewal: bool,
    /// The TTL the last login gave, to spot a renewal capped by the max TTL.
    login_ttl: u64,
    /// A renewed certificate and key held in memory, used instead of the config's: only when
    /// the config gives them inline (renewed files are written and re-read instead).
    renewed: Option<Arc<crate::renew::Identity>>,
    /// Whether the "inline PEM cannot be rewritten" warning was given.
    warned_inline: bool,
}

impl Session {
    /// A session for `config`; nothing is sent until [`Session::fetch_all`].
    pub fn new(config: Arc<AgentConfig>) -> Session {
        Session {
            config,
            client: None,
            renew_at: None,
            relogin_at_renewal: false,
            login_ttl: 0,
            renewed: None,
            warned_inline: false,
        }
    }

    /// The client certificate in use (the renewed one held in memory, else the config's).
    pub fn current_certificate(
        &self,
    ) -> Result<keep_pki::inspect::CertInfo, crate::renew::RenewError> {
        match &self.renewed {
            Some(id) => Ok(id.info.clone()),
            None => crate::renew::current_certificate(&self.config.connection.mtls),
        }
    }

    /// Renews the client certificate over mTLS (see [`crate::renew`]), writes the new pair,
    /// then logs in again with it so the next reads use a token bound to the new certificate.
    /// Returns the new certificate. The old token is revoked; a failed re-login is left to the
    /// next fetch, which logs in when it has no token.
    pub async fn renew_certificate(
        &mut self,
    ) -> Result<keep_pki::inspect::CertInfo, crate::renew::RenewError> {
        let current = self.current_certificate()?;
        let renewed = match &self.client {
            Some(client) => crate::renew::renew(client, &current).await?,
            None => {
                let client = self
                    .make_client()
                    .map_err(|e| crate::renew::RenewError::Request(e.to_string()))?;
                crate::renew::renew(&client, &current).await?
            }
        };
        let config = self.config.clone();
        let renewed = Arc::new(renewed);
        let id = renewed.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::renew::persist(&config.connection.mtls, &id)
        })
        .await
        .map_err(|e| crate::renew::RenewError::Write(e.to_string()))??;
        let info = renewed.info.clone();
        if written {
            // The files are the source of truth again (re-read at each login).
            self.renewed = None;
        } else {
            if !self.warned_inline {
                tracing::warn!(
                    "the client certificate and key are inline in the config (cert_pem/key_pem): the renewed pair is kept in memory only, and a restarted agent uses the config's again; use cert_file/key_file for renewals that survive restarts"
                );
                self.warned_inline = true;
            }
            self.renewed = Some(renewed);
        }
        tracing::info!(
            serial = %info.serial,
            not_after = %info.not_after,
            subject = %info.subject,
            files_written = written,
            "renewed the client certificate (new key)"
        );
        // Tokens are bound to the certificate they were issued to: log in with the new one.
        self.revoke_quietly().await;
        if let Err(e) = self.login().await {
            tracing::warn!(error = %e, "logging in with the renewed certificate failed; retrying at the next read");
        }
        Ok(info)
    }

    // The error is the AgentError every async caller returns anyway; this runs once per login.
    #[allow(clippy::result_large_err)]
    fn make_client(&self) -> Result<VaultClient, AgentError> {
        let conn = &self.config.connection;
        let settings = conn.mtls.client_settings_with(self.renewed.as_deref())?;
        VaultClient::new(ClientConfig::new(conn.url.clone(), settings)).map_err(|source| {
            AgentError::Client {
                doing: "setting up the vault client".into(),
                source,
            }
        })
    }

    /// Logs in with the client certificate. The TLS material is read again each time so that
    /// a certificate renewed on disk is used from the next login on.
    async fn login(&mut self) -> Result<(), AgentError> {
        let conn = &self.config.connection;
        let client = self.make_client()?;
        let role = conn.role.as_deref();
        let login = client
            .login(role)
            .await
            .map_err(|source| AgentError::Client {
                doing: match role {
                    Some(r) => format!("logging in with cert auth role {r:?}"),
                    None => "logging in with cert auth".to_owned(),
                },
                source,
            })?;
        let (ttl, renewable) = lease(login.auth());
        // The accessor is not the token: it lets an operator look up or revoke this agent's
        // token (`keep token revoke -accessor`) without ever seeing it.
        let accessor = login
            .auth()
            .get("accessor")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.renew_at = renew_time(ttl);
        self.relogin_at_renewal = !renewable;
        self.login_ttl = ttl;
        self.client = Some(client.with_token(Some(login.token)));
        tracing::info!(
            server = %conn.url,
            accessor = %accessor,
            token_ttl_s = ttl,
            renewable,
            "logged in with the client certificate"
        );
        Ok(())
    }

    /// Renews the token when 2/3 of its TTL has passed; on failure drops it so the next step
    /// logs in afresh (a renewal can fail because the token hit its max TTL or the server
    /// forgot it).
    async fn renew_if_due(&mut self) {
        let (Some(client), Some(at)) = (&self.client, self.renew_at) else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        if self.relogin_at_renewal {
            tracing::info!("the token cannot be renewed further; logging in again");
            self.revoke_quietly().await;
            return;
        }
        match client.token_renew_self(None).await {
            Ok(r) => {
                let (ttl, renewable) = lease(r.auth());
                self.renew_at = renew_time(ttl);
                // A renewal that gave much less than a login does has hit the max TTL: the
                // next step is a fresh login, before the token lapses.
                self.relogin_at_renewal = !renewable || ttl < self.login_ttl / 2;
                tracing::info!(token_ttl_s = ttl, "renewed the token");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the token; logging in again");
                self.client = None;
                self.renew_at = None;
            }
        }
    }

    /// Reads every configured secret, in config order (one result per `secrets` entry; an
    /// entry repeating an earlier path reuses that read). Logs in first when needed, renews
    /// the token when due, and answers a 403 with one fresh login and a second try.
    pub async fn fetch_all(&mut self) -> Result<Vec<Fetched>, AgentError> {
        self.renew_if_due().await;
        if self.client.is_none() {
            self.login().await?;
        }
        match self.read_all().await {
            Err(AgentError::Client { source, doing }) if source.status() == Some(403) => {
                tracing::warn!(
                    error = %AgentError::Client { source, doing },
                    "permission denied: the token may have expired or the server restarted; logging in again"
                );
                // A 403 can also be a policy denial with a valid token: revoke it rather than
                // leave one live token behind per retry.
                self.revoke_quietly().await;
                self.login().await?;
                self.read_all().await
            }
            other => other,
        }
    }

    async fn read_all(&self) -> Result<Vec<Fetched>, AgentError> {
        // fetch_all logs in before calling this; without a client there is nothing to read
        // with, and an empty answer makes callers change nothing.
        let Some(client) = &self.client else {
            return Ok(Vec::new());
        };
        let secrets = &self.config.secrets;
        let mut out: Vec<Fetched> = Vec::with_capacity(secrets.len());
        for (i, spec) in secrets.iter().enumerate() {
            if let Some(j) = secrets[..i]
                .iter()
                .position(|s| s.mount == spec.mount && s.path == spec.path)
            {
                let again = out[j].clone();
                out.push(again);
                continue;
            }
            let doing = format!("reading {}/data/{}", spec.mount, spec.path);
            let r = client
                .kv_read(&spec.mount, &spec.path, None)
                .await
                .map_err(|source| AgentError::Client {
                    doing: doing.clone(),
                    source,
                })?;
            let data = match r.data().get("data").and_then(Value::as_object) {
                Some(m) => m.clone(),
                None => return Err(AgentError::NoData { doing }),
            };
            let version = r
                .data()
                .pointer("/metadata/version")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            out.push(Fetched { version, data });
        }
        Ok(out)
    }

    async fn revoke_quietly(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(REVOKE_TIMEOUT, client.token_revoke_self()).await;
        }
        self.renew_at = None;
    }

    /// Revokes the token (best effort, bounded by [`REVOKE_TIMEOUT`]): a stopped agent's
    /// token has no further use and should not stay valid for its TTL.
    pub async fn revoke(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        self.renew_at = None;
        match tokio::time::timeout(REVOKE_TIMEOUT, client.token_revoke_self()).await {
            Ok(Ok(())) => tracing::info!("revoked the agent's token"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not revoke the agent's token; it expires with its TTL")
            }
            Err(_) => {
                tracing::warn!("revoking the agent's token timed out; it expires with its TTL")
            }
        }
    }
}

/// `auth.lease_duration` (seconds) and `auth.renewable` of a login or renewal answer.
fn lease(auth: &Value) -> (u64, bool) {
    let ttl = auth
        .get("lease_duration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let renewable = auth
        .get("renewable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (ttl, renewable)
}

/// When to act on a token with `ttl` seconds left: at 2/3 of it (renewal, or a fresh login for
/// a token that cannot be renewed), well before it lapses.
fn renew_time(ttl: u64) -> Option<Instant> {
    (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl) * 2 / 3)
}

/// Exponential backoff with jitter for retries after a failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    /// Backoff suited to polling every `interval`: starting at half the interval (at most 1 s,
    /// at least 100 ms), doubling up to three intervals (at least 1 s, at most
    /// [`MAX_BACKOFF`]). A short interval (tests, `--interval 1s`) thus recovers within seconds
    /// of the server's return.
    pub fn for_interval(interval: Duration) -> Backoff {
        let first = (interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let cap = (interval * 3).clamp(Duration::from_secs(1), MAX_BACKOFF);
        Backoff {
            first,
            cap,
            next: first,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The pause before the next retry: the current step scaled by a random factor in
    /// [0.5, 1] (so agents restarted together spread out), then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.cap);
        // RandomState is seeded randomly per process; hashing a counter gives a fresh draw
        // without a dependency on a random number crate.
        let mut h = self.random.build_hasher();
        h.write_u64(self.draws);
        self.draws = self.draws.wrapping_add(1);
        let fraction = (h.finish() % 1024) as f64 / 1023.0;
        step.mul_f64(0.5 + fraction / 2.0)
    }

    /// Backoff from `first` doubling up to `cap`, each step jittered as [`Backoff::next_delay`]
    /// says.
    pub fn between(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            next: first,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The longest step.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Runs the sidecar until `shutdown` completes: fetch and write now, then every `interval`,
/// retrying with [`Backoff`] after failures. Destinations should have been checked
/// ([`crate::sink::check_all`]) before. Every successful round also refreshes what `proxy`
/// (the loopback Vault API, when configured) serves during an outage. On shutdown the token
/// is revoked (best effort).
pub async fn run(
    config: Arc<AgentConfig>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
    proxy: Option<&crate::proxy::Proxy>,
) {
    tokio::pin!(shutdown);
    let mut session = Session::new(config.clone());
    let mut written: Vec<Option<u64>> = vec![None; config.secrets.len()];
    let mut backoff = Backoff::for_interval(interval);
    let mut renewer = crate::renew::Renewer::new(config.renew, &session);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = renewer.tick(&mut session) => {}
        }
        let wait = tokio::select! {
            () = &mut shutdown => break,
            r = round(&mut session, &config, &mut written, proxy) => match r {
                Ok(files) => {
                    if files > 0 {
                        tracing::info!(files, "secret files up to date");
                    }
                    backoff.reset();
                    interval
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        "could not refresh the secrets; the files keep their last-known-good contents"
                    );
                    delay
                }
            },
        };
        let wait = renewer.wait().map_or(wait, |r| wait.min(r));
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("stopping");
    session.revoke().await;
}

/// One round: fetch everything, render every changed file, then write them. Returns how many
/// files were written.
async fn round(
    session: &mut Session,
    config: &AgentConfig,
    written: &mut [Option<u64>],
    proxy: Option<&crate::proxy::Proxy>,
) -> Result<usize, AgentError> {
    let fetched = session.fetch_all().await?;
    if let Some(proxy) = proxy {
        for (spec, f) in config.secrets.iter().zip(&fetched) {
            proxy.remember(&spec.mount, &spec.path, f);
        }
    }
    let mut pending = Vec::new();
    for (i, (spec, f)) in config.secrets.iter().zip(&fetched).enumerate() {
        if written.get(i).copied().flatten() == Some(f.version) {
            continue;
        }
        match &spec.file {
            Some(file) => pending.push((i, file, f.version, file.render(&f.data)?)),
            None => {
                if let Some(w) = written.get_mut(i) {
                    *w = Some(f.version);
                }
            }
        }
    }
    let count = pending.len();
    for (i, file, version, contents) in pending {
        file.write(&contents)?;
        if let Some(w) = written.get_mut(i) {
            *w = Some(version);
        }
        tracing::info!(
            file = %file.path.display(),
            secret = %config.secrets[i].display(),
            version,
            mode = format!("{:04o}", file.mode),
            "wrote secret file"
        );
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::for_interval(Duration::from_secs(1));
        let mut steps = Vec::new();
        for _ in 0..6 {
            steps.push(b.next_delay());
        }
        // Steps: 0.5, 1, 2, 3, 3, 3 seconds, each scaled into [step/2, step].
        let nominal = [500u64, 1000, 2000, 3000, 3000, 3000];
        for (got, want) in steps.iter().zip(nominal) {
            let ms = got.as_millis() as u64;
            assert!(
                ms >= want / 2 && ms <= want,
                "{ms} not in [{}, {want}]",
                want / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));

        let mut slow = Backoff::for_interval(Duration::from_secs(30));
        let last = (0..20).map(|_| slow.next_delay()).last().unwrap();
        assert!(last <= MAX_BACKOFF && last >= MAX_BACKOFF / 2, "{last:?}");
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::for_interval(Duration::from_secs(600));
        b.next = MAX_BACKOFF;
        let draws: std::collections::BTreeSet<_> = (0..10)
            .map(|_| {
                b.next = MAX_BACKOFF;
                b.next_delay()
            })
            .collect();
        assert!(draws.len() > 1, "{draws:?}");
    }

    #[test]
    fn the_token_is_renewed_at_two_thirds_of_its_ttl() {
        assert!(renew_time(0).is_none());
        let at = renew_time(3600).unwrap();
        let in_s = at.duration_since(Instant::now()).as_secs();
        assert!((2398..=2400).contains(&in_s), "{in_s}");
        assert_eq!(
            lease(&serde_json::json!({"lease_duration": 60, "renewable": true})),
            (60, true)
        );
        assert_eq!(lease(&Value::Null), (0, false));
    }

    #[test]
    fn fetched_debug_shows_keys_not_values() {
        let f = Fetched {
            version: 3,
            data: serde_json::json!({"api_key": "sk-secret"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let d = format!("{f:?}");
        assert!(
            d.contains("api_key") && d.contains('3') && !d.contains("sk-secret"),
            "{d}"
        );
    }
}
