//! The `alerts:` section of `keep-server.yaml`, read in two stages like the rest of the file:
//! a raw serde struct (unknown fields rejected) and a validated [`AlertsConfig`] whose errors
//! name the field and line.
//!
//! ```yaml
//! alerts:
//!   handshake_spike: { window: 60s, threshold: 20 }   # the defaults
//!   repeat_interval: 1m           # per-certificate alerts: at most one per certificate per interval
//!   webhook:                      # optional
//!     url: https://siem.claw.internal/hooks/keep
//!     ca_cert_file: siem_ca.crt   # optional: trust only this CA (default: the system's roots)
//!     timeout: 5s
//!     retries: 3
//!     headers: { Authorization: "Bearer …" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keep_tls::classify::Reason;
use secrecy::SecretString;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::duration::parse_duration;
use crate::config::error::ConfigError;

/// Most failures a spike threshold may be set to. The detector keeps one timestamp per failure
/// up to the threshold, per reason; this bounds its memory (13 reasons × 10,001 × 16 bytes).
pub const MAX_SPIKE_THRESHOLD: u64 = 10_000;
/// Most retries a webhook delivery may be given.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;

/// The raw `alerts:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    webhook: Option<RawWebhook>,
    handshake_spike: Option<RawSpike>,
    repeat_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<u64>>,
    backoff: Option<Spanned<String>>,
    ca_cert_file: Option<String>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpike {
    window: Option<Spanned<String>>,
    threshold: Option<Spanned<u64>>,
    ignore_reasons: Option<Vec<String>>,
}

/// The validated `alerts:` section. Its [`Default`] is what a config without the section gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// The handshake-failure spike detector.
    pub spike: SpikeConfig,
    /// At most one alert per certificate (and kind) per this interval, for the per-certificate
    /// kinds (expired or revoked certificate, unexpected source address, renewal failures).
    /// Default 1 minute.
    pub repeat_interval: Duration,
    /// Where alerts are also POSTed, if anywhere.
    pub webhook: Option<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            spike: SpikeConfig::default(),
            repeat_interval: Duration::from_secs(60),
            webhook: None,
        }
    }
}

/// The handshake-failure spike detector: an alert when more than `threshold` handshakes fail
/// with one reason within `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpikeConfig {
    /// The sliding window. Default 60 s.
    pub window: Duration,
    /// More than this many failures of one reason in the window raise the alert. Default 20.
    pub threshold: u64,
    /// Reasons that never count. Default `eof_before_hello`: load balancers' TCP probes.
    pub ignore_reasons: Vec<Reason>,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            window: Duration::from_secs(60),
            threshold: 20,
            ignore_reasons: vec![Reason::EofBeforeHello],
        }
    }
}

/// Where and how alerts are POSTed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `https://…`, or `http://` to a loopback address only.
    pub url: reqwest::Url,
    /// Per attempt, connection included. Default 5 s.
    pub timeout: Duration,
    /// Attempts after the first one. Default 3.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one. Default 1 s.
    pub backoff: Duration,
    /// The CA bundle the receiver's certificate must chain to; `None` = the system's roots.
    pub ca_cert_file: Option<PathBuf>,
    /// Extra request headers (an `Authorization` token, say). Values are secrets: never logged.
    pub headers: Vec<(String, Secret)>,
}

/// A header value: compared and cloned, but never printed.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl WebhookConfig {
    /// The receiver as `scheme://host:port`: what logs may show. The path and query are left
    /// out because webhook URLs often carry their secret there (Slack, Teams, …).
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

// By hand: the URL's path may be a secret (see `origin`).
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.origin())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Validates the raw section (absent = the defaults). `resolve` turns a path from the file
/// into one relative to the config file's directory.
pub(crate) fn validate(
    raw: Option<RawAlerts>,
    path: &Path,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<AlertsConfig, ConfigError> {
    let mut config = AlertsConfig::default();
    let Some(raw) = raw else {
        return Ok(config);
    };
    let field_err =
        |line: u64, field: &str, problem: String| ConfigError::field(path, line, field, problem);
    let bounded = |v: &Spanned<String>, field: &str, max: Duration| bounded(v, field, max, path);
    let day = Duration::from_secs(24 * 3600);

    if let Some(v) = &raw.repeat_interval {
        config.repeat_interval = bounded(v, "alerts.repeat_interval", day)?;
    }
    if let Some(s) = raw.handshake_spike {
        if let Some(v) = &s.window {
            let field = "alerts.handshake_spike.window";
            config.spike.window = bounded(v, field, day)?;
            if config.spike.window < Duration::from_secs(1) {
                return Err(field_err(
                    v.defined.line(),
                    field,
                    format!("{:?} is shorter than the minimum of 1s", v.value),
                ));
            }
        }
        if let Some(v) = &s.threshold {
            if !(1..=MAX_SPIKE_THRESHOLD).contains(&v.value) {
                return Err(field_err(
                    v.defined.line(),
                    "alerts.handshake_spike.threshold",
                    format!("{} is not between 1 and {MAX_SPIKE_THRESHOLD}", v.value),
                ));
            }
            config.spike.threshold = v.value;
        }
        if let Some(names) = &s.ignore_reasons {
            let mut reasons = Vec::new();
            for name in names {
                let reason = Reason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == name.trim())
                    .ok_or_else(|| {
                        field_err(
                            0,
                            "alerts.handshake_spike.ignore_reasons",
                            format!(
                                "{name:?} is not a handshake failure reason; use one of {}",
                                Reason::ALL.map(Reason::as_str).join(", ")
                            ),
                        )
                    })?;
                reasons.push(reason);
            }
            config.spike.ignore_reasons = reasons;
        }
    }
    if let Some(w) = raw.webhook {
        config.webhook = Some(webhook(w, path, resolve)?);
    }
    Ok(config)
}

/// A positive duration of at most `max`.
fn bounded(
    v: &Spanned<String>,
    field: &str,
    max: Duration,
    path: &Path,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(v, field, path)?;
    if d > max {
        return Err(ConfigError::field(
            path,
            v.defined.line(),
            field,
            format!("{:?} is longer than the maximum of {max:?}", v.value),
        ));
    }
    Ok(d)
}

fn webhook(
    w: RawWebhook,
    path: &Path,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<WebhookConfig, ConfigError> {
    let bounded = |v: &Spanned<String>, field: &str, max: Duration| bounded(v, field, max, path);
    let field_err =
        |line: u64, field: &str, problem: String| ConfigError::field(path, line, field, problem);
    let Some(raw_url) = &w.url else {
        return Err(ConfigError::Missing {
            path: path.to_owned(),
            field: "alerts.webhook.url".into(),
            hint: "write e.g. https://siem.claw.internal/hooks/keep".into(),
        });
    };
    let line = raw_url.defined.line();
    let url_err = |problem: &str| field_err(line, "alerts.webhook.url", problem.to_owned());
    // The URL is not echoed in these messages: it may carry the receiver's secret.
    let url = reqwest::Url::parse(raw_url.value.trim()).map_err(|e| {
        url_err(&format!(
            "not a URL ({e}); write e.g. https://siem.claw.internal/hooks/keep"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(url_err(
            "must not carry credentials; put them in alerts.webhook.headers (e.g. Authorization), which are never logged",
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(url_err(
                "plain http would send security alerts unencrypted across the network; use https (with ca_cert_file for an internal CA), or http only to a receiver on this host (127.0.0.1)",
            ));
        }
        _ => return Err(url_err("use an https:// URL")),
    }
    if host.is_empty() {
        return Err(url_err("has no host"));
    }
    let ca_cert_file = w.ca_cert_file.as_deref().map(resolve);
    if ca_cert_file.is_some() && url.scheme() == "http" {
        return Err(field_err(
            0,
            "alerts.webhook.ca_cert_file",
            "is only used with an https:// url".into(),
        ));
    }
    let minute = Duration::from_secs(60);
    let timeout = match &w.timeout {
        Some(v) => bounded(v, "alerts.webhook.timeout", minute)?,
        None => Duration::from_secs(5),
    };
    let backoff = match &w.backoff {
        Some(v) => bounded(v, "alerts.webhook.backoff", minute)?,
        None => Duration::from_secs(1),
    };
    let retries = match &w.retries {
        Some(v) => u32::try_from(v.value)
            .ok()
            .filter(|n| *n <= MAX_WEBHOOK_RETRIES)
            .ok_or_else(|| {
                field_err(
                    v.defined.line(),
                    "alerts.webhook.retries",
                    format!("{} is not between 0 and {MAX_WEBHOOK_RETRIES}", v.value),
                )
            })?,
        None => 3,
    };
    let mut headers = Vec::new();
    for (name, value) in w.headers.unwrap_or_default() {
        let field = format!("alerts.webhook.headers.{name}");
        let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| field_err(0, &field, "is not a valid HTTP header name".into()))?;
        if matches!(
            parsed.as_str(),
            "host" | "content-length" | "content-type" | "transfer-encoding" | "connection"
        ) {
            return Err(field_err(
                0,
                &field,
                "is set by keep and cannot be overridden".into(),
            ));
        }
        // The value is not echoed: it is usually a token.
        reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            field_err(
                0,
                &field,
                "the value is not a valid HTTP header value (printable ASCII, no line breaks)"
                    .into(),
            )
        })?;
        headers.push((name, Secret(SecretString::from(value))));
    }
    Ok(WebhookConfig {
        url,
        timeout,
        retries,
        backoff,
        ca_cert_file,
        headers,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::ServerConfig;

    const BASE: &str = r#"
listener:
  address: 127.0.0.1:8200
  tls: { cert_file: vault.crt, key_file: vault.key, client_ca_file: root_ca.crt }
seal: { key_file: unseal.key }
"#;

    fn load(alerts: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_yaml(
            &format!("{BASE}{alerts}"),
            Path::new("/etc/keep/keep-server.yaml"),
        )
    }

    #[test]
    fn absent_section_means_defaults_without_webhook() {
        let c = load("").unwrap();
        assert_eq!(c.alerts, AlertsConfig::default());
        assert_eq!(c.alerts.spike.threshold, 20);
        assert_eq!(c.alerts.spike.window, Duration::from_secs(60));
        assert_eq!(c.alerts.spike.ignore_reasons, vec![Reason::EofBeforeHello]);
        assert!(c.alerts.webhook.is_none());
    }

    #[test]
    fn full_section_loads() {
        let c = load(
            r#"
alerts:
  repeat_interval: 5m
  handshake_spike: { window: 30s, threshold: 50, ignore_reasons: [eof_before_hello, plain_http] }
  webhook:
    url: https://siem.claw.internal:8443/hooks/keep/s3cr3t-path
    timeout: 2s
    retries: 5
    backoff: 250ms
    ca_cert_file: siem_ca.crt
    headers: { Authorization: "Bearer t0ken", X-Source: keep }
"#,
        )
        .unwrap();
        let a = c.alerts;
        assert_eq!(a.repeat_interval, Duration::from_secs(300));
        assert_eq!(a.spike.window, Duration::from_secs(30));
        assert_eq!(a.spike.threshold, 50);
        assert_eq!(
            a.spike.ignore_reasons,
            vec![Reason::EofBeforeHello, Reason::PlainHttp]
        );
        let w = a.webhook.unwrap();
        assert_eq!(w.timeout, Duration::from_secs(2));
        assert_eq!(w.retries, 5);
        assert_eq!(w.backoff, Duration::from_millis(250));
        assert_eq!(w.ca_cert_file, Some(PathBuf::from("/etc/keep/siem_ca.crt")));
        assert_eq!(w.headers.len(), 2);
        // Neither the URL's path nor a header value ever reaches Debug output (logs).
        let shown = format!("{w:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0ken"),
            "{shown}"
        );
        assert!(shown.contains("https://siem.claw.internal:8443"), "{shown}");
    }

    #[test]
    fn webhook_defaults_and_local_http() {
        let c = load("alerts:\n  webhook: { url: \"http://127.0.0.1:9000/alerts\" }\n").unwrap();
        let w = c.alerts.webhook.unwrap();
        assert_eq!(
            (w.timeout, w.retries, w.backoff),
            (Duration::from_secs(5), 3, Duration::from_secs(1))
        );
        assert!(load("alerts:\n  webhook: { url: \"http://localhost:9000/\" }\n").is_ok());
        assert!(load("alerts:\n  webhook: { url: \"http://[::1]:9000/\" }\n").is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("alerts:\n  bogus: 1\n", "bogus"),
            (
                "alerts:\n  webhook: { timeout: 5s }\n",
                "alerts.webhook.url",
            ),
            (
                "alerts:\n  webhook: { url: \"http://siem.claw.internal/x\" }\n",
                "alerts.webhook.url",
            ),
            (
                "alerts:\n  webhook: { url: \"ftp://127.0.0.1/x\" }\n",
                "alerts.webhook.url",
            ),
            (
                "alerts:\n  webhook: { url: \"https://u:p@siem.claw.internal/\" }\n",
                "credentials",
            ),
            (
                "alerts:\n  webhook: { url: \"http://127.0.0.1/\", ca_cert_file: ca.crt }\n",
                "alerts.webhook.ca_cert_file",
            ),
            (
                "alerts:\n  webhook: { url: \"https://s.claw.internal/\", retries: 11 }\n",
                "alerts.webhook.retries",
            ),
            (
                "alerts:\n  webhook: { url: \"https://s.claw.internal/\", timeout: 2h }\n",
                "alerts.webhook.timeout",
            ),
            (
                "alerts:\n  webhook: { url: \"https://s.claw.internal/\", headers: { Host: x } }\n",
                "alerts.webhook.headers.Host",
            ),
            (
                "alerts:\n  webhook: { url: \"https://s.claw.internal/\", headers: { \"bad name\": x } }\n",
                "alerts.webhook.headers.bad name",
            ),
            (
                "alerts:\n  webhook: { url: \"https://s.claw.internal/\", tiemout: 1s }\n",
                "tiemout",
            ),
            (
                "alerts:\n  handshake_spike: { threshold: 0 }\n",
                "alerts.handshake_spike.threshold",
            ),
            (
                "alerts:\n  handshake_spike: { threshold: 100001 }\n",
                "alerts.handshake_spike.threshold",
            ),
            (
                "alerts:\n  handshake_spike: { window: 0s }\n",
                "alerts.handshake_spike.window",
            ),
            (
                "alerts:\n  handshake_spike: { ignore_reasons: [eof] }\n",
                "alerts.handshake_spike.ignore_reasons",
            ),
            (
                "alerts:\n  repeat_interval: soon\n",
                "alerts.repeat_interval",
            ),
        ];
        for (text, want) in cases {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in: {e}");
            assert!(e.contains("keep-server.yaml"), "{e}");
        }
        // A webhook URL is never echoed in an error: it may hold the receiver's secret.
        let e = load("alerts:\n  webhook: { url: \"http://siem.claw.internal/s3cr3t\" }\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
