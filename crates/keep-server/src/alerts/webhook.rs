//! Delivery of alerts to a webhook: a bounded queue filled by [`Queue::offer`] (never blocks:
//! it runs in connection tasks and request handlers) and one background [`Worker`] that POSTs
//! each alert with a timeout and bounded retries.
//!
//! The webhook is best-effort by design. Every alert is first written to the security event
//! log; the webhook is a copy for a SIEM or a chat channel. So when the receiver is slow and the
//! queue is full an alert is dropped (and counted), never waited for, and after the last retry
//! the failure is logged (receiver origin only: webhook URLs often carry a secret in their
//! path) and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use crate::alerts::config::WebhookConfig;

/// Why the alerts cannot be set up (at start; the message names the field). Only the webhook
/// can fail to set up, so the type lives with it (re-exported as `alerts::AlertsError`).
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// `alerts.webhook.ca_cert_file` cannot be read or holds no usable CA certificate.
    #[error("{0}")]
    WebhookTls(#[from] keep_tls::server::TlsConfigError),
    /// The webhook's HTTP client could not be built.
    #[error("cannot set up the alerts webhook client: {0}")]
    WebhookClient(String),
}

/// Alerts not sent to the webhook because its queue was full.
pub const WEBHOOK_DROPPED: &str = "keep_security_alert_webhook_dropped_total";
/// Alerts whose webhook delivery failed after every retry.
pub const WEBHOOK_FAILED: &str = "keep_security_alert_webhook_failed_total";

/// How many alerts may wait for delivery. With the defaults (5 s timeout, 3 retries) a dead
/// receiver takes about 27 s per alert, and alerts are rate-limited, so this holds a long
/// outage's worth; beyond it alerts are dropped rather than held in memory without bound.
pub const QUEUE_CAPACITY: usize = 256;

/// Longest wait between two attempts, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The sending side: cheap to call from anywhere.
#[derive(Debug)]
pub(crate) struct Queue {
    tx: mpsc::Sender<String>,
    /// Alerts dropped so far, to log the 1st, 2nd, 4th, 8th, … drop rather than every one.
    dropped: AtomicU64,
}

impl Queue {
    /// Queues one alert (its JSON). Never waits: when the queue is full or the worker is gone,
    /// the alert is dropped and counted.
    pub(crate) fn offer(&self, json: String) {
        if let Err(e) = self.tx.try_send(json) {
            metrics::counter!(WEBHOOK_DROPPED).increment(1);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the delivery queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the delivery task has stopped",
                };
                tracing::warn!(
                    why,
                    dropped_so_far = dropped,
                    "security alert not sent to the webhook; it is in the security event log"
                );
            }
        }
    }
}

/// The background task that delivers queued alerts, one at a time, in order.
pub struct Worker {
    rx: mpsc::Receiver<String>,
    client: reqwest::Client,
    config: WebhookConfig,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Builds the HTTP client (reading `ca_cert_file`) and the queue feeding the worker.
pub(crate) fn build(config: &WebhookConfig) -> Result<(Queue, Worker), AlertsError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        // Alerts go straight to the configured receiver: proxy variables set for other traffic
        // must not divert them (or learn of them), and the redirect of a compromised receiver
        // must not forward them elsewhere.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keep/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca_cert_file {
        let mut settings = keep_tls::client::ClientSettings::new(keep_tls::client::PemInput::file(
            "alerts.webhook.ca_cert_file",
            ca,
        )?);
        // reqwest does not set ALPN on a preconfigured rustls config.
        settings.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = keep_tls::client::build(&settings)?;
        builder = builder
            .tls_backend_preconfigured(std::sync::Arc::unwrap_or_clone(tls))
            .https_only(true);
    }
    let client = builder
        .build()
        .map_err(|e| AlertsError::WebhookClient(e.without_url().to_string()))?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    Ok((
        Queue {
            tx,
            dropped: AtomicU64::new(0),
        },
        Worker {
            rx,
            client,
            config: config.clone(),
        },
    ))
}

/// Why one attempt failed.
struct AttemptError {
    /// Worth trying again (network errors, timeouts, 5xx, 408, 429).
    retry: bool,
    /// What happened, without the URL.
    detail: String,
}

impl Worker {
    /// Delivers alerts until every [`Queue`] is gone.
    pub async fn run(mut self) {
        while let Some(json) = self.rx.recv().await {
            self.deliver(json).await;
        }
    }

    async fn deliver(&self, json: String) {
        let attempts = self.config.retries.saturating_add(1);
        let mut wait = self.config.backoff;
        for attempt in 1..=attempts {
            let Err(e) = self.attempt(&json).await else {
                return;
            };
            if !e.retry || attempt == attempts {
                metrics::counter!(WEBHOOK_FAILED).increment(1);
                tracing::warn!(
                    receiver = %self.config.origin(),
                    attempts = attempt,
                    error = %e.detail,
                    "security alert webhook delivery failed; the alert is in the security event log only"
                );
                return;
            }
            tracing::debug!(receiver = %self.config.origin(), attempt, error = %e.detail, retry_in = ?wait, "security alert webhook attempt failed");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, json: &str) -> Result<(), AttemptError> {
        let mut request = self
            .client
            .post(self.config.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(json.to_owned());
        for (name, value) in &self.config.headers {
            // Both were validated when the config was read; skip rather than panic if not.
            let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.0.expose_secret()),
            ) else {
                continue;
            };
            // Keeps the value out of reqwest's and hyper's debug output.
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| AttemptError {
            retry: true,
            detail: if e.is_timeout() {
                format!("no answer within {:?}", self.config.timeout)
            } else {
                error_chain(&e.without_url())
            },
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(AttemptError {
            retry: status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS,
            detail: format!("the receiver answered {status}"),
        })
    }
}

/// An error and its sources on one line (reqwest's own message is only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
