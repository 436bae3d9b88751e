//! Security alerts the server computes from its own events.
//!
//! | kind | raised when | severity | at most |
//! |---|---|---|---|
//! | `handshake_failure_spike` | more than `threshold` handshakes fail with one reason within `window` | warning | once per spike: silent until the count drops to half the threshold |
//! | `expired_or_revoked_cert` | a handshake fails with reason `expired` or `revoked` | critical for revoked, warning for expired | once per certificate per `repeat_interval` |
//! | `unexpected_source_address` | a login, token use or tokenless request comes from outside the role's `token_bound_cidrs`, or from another address than the one the certificate is pinned to (`pin_first_seen_address`) | critical | once per certificate and address per `repeat_interval` |
//! | `renewal_failures` | [`Alerts::renewal_failed`] is called by the PKI renewal endpoint | warning | once per serial per `repeat_interval` |
//! | `login_storm` | a certificate's logins go over `auth.login_rate` and are refused with 429 ([`Alerts::login_rate_limited`]) | warning | once per storm (until the certificate has been idle long enough to refill its burst), and once per certificate per `repeat_interval` |
//!
//! Each alert is a [`SecurityEvent`] (`"event":"security_alert"`) written to the server's event
//! sink (standard error, JSON lines), an increment of `keep_security_alerts_total{kind}`, and,
//! when `alerts.webhook` is configured, a POST of the same JSON object ([`webhook`]).
//!
//! Handshake failures reach the detectors through [`AlertingSink`], which wraps the listener's
//! event sink. Sinks run synchronously in connection tasks, so the detectors' work there is a
//! mutex-protected counter update and, when an alert is due, one event line and a
//! non-blocking channel send: no network I/O, no waiting on a slow receiver.
//!
//! The detectors take time from a [`Clock`], so tests drive windows and rate limits to the
//! instant ([`ManualClock`]).

pub mod config;
pub mod source;
pub mod webhook;
pub mod window;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keep_tls::classify::Reason;
use keep_tls::events::{
    Alert, AlertKind, EventKind, EventSink, HandshakeFailure, JsonLinesSink, SecurityEvent,
    Severity, SharedSink,
};
use keep_tls::identity::PeerIdentity;
use metrics::{counter, describe_counter};

use crate::alerts::config::{AlertsConfig, SpikeConfig};
use crate::alerts::window::{RateLimiter, SpikeWindow};
// Defined with the webhook, the only part that can fail to set up and the one that counts
// these two metrics.
pub use webhook::{AlertsError, WEBHOOK_DROPPED, WEBHOOK_FAILED};

/// Alerts raised, by kind.
pub const ALERTS_TOTAL: &str = "keep_security_alerts_total";
/// Logins refused with 429 by the per-certificate login rate limit.
pub const LOGINS_RATE_LIMITED: &str = "keep_auth_logins_rate_limited_total";

/// How many certificates the per-certificate rate limits track at once (see
/// [`RateLimiter`] for what happens beyond).
const RATE_LIMIT_KEYS: usize = 4096;

/// Registers the help texts, and every `kind` series at zero (so `increase()` sees the first
/// alert of a kind; see keep-tls's `counters::describe`). Call once after installing the
/// recorder.
pub fn describe_metrics() {
    describe_counter!(
        ALERTS_TOTAL,
        "Security alerts raised by the server's own detectors, by kind"
    );
    describe_counter!(
        WEBHOOK_DROPPED,
        "Security alerts not sent to the webhook because its delivery queue was full"
    );
    describe_counter!(
        WEBHOOK_FAILED,
        "Security alerts whose webhook delivery failed after every retry"
    );
    for kind in AlertKind::ALL {
        counter!(ALERTS_TOTAL, "kind" => kind.as_str()).increment(0);
    }
    describe_counter!(
        LOGINS_RATE_LIMITED,
        "Logins refused with 429 because one client certificate went over auth.login_rate"
    );
    counter!(WEBHOOK_DROPPED).increment(0);
    counter!(WEBHOOK_FAILED).increment(0);
    counter!(LOGINS_RATE_LIMITED).increment(0);
}

/// Where the detectors get the time from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at the real current instant.
    pub fn new() -> Self {
        ManualClock {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.now) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *lock(&self.now)
    }
}

/// How a certificate was being used when an address check refused it (for the summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `POST /v1/auth/cert/login`.
    Login,
    /// A request with a token issued to the certificate.
    TokenUse,
    /// A request without a token, authorized by an `allow_tokenless` role.
    Tokenless,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Login => "tried to log in",
            Access::TokenUse => "presented its token",
            Access::Tokenless => "made a tokenless request",
        }
    }
}

/// The alert engine: detectors, rate limits, and where alerts go. Cheap to clone (shared
/// state); one per server.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    spike: SpikeConfig,
    clock: Arc<dyn Clock>,
    spikes: Mutex<HashMap<Reason, SpikeWindow>>,
    limiter: Mutex<RateLimiter<(AlertKind, String)>>,
    events: SharedSink,
    webhook: Option<webhook::Queue>,
    /// The webhook's delivery task until [`Alerts::start_webhook`] spawns it.
    worker: Mutex<Option<webhook::Worker>>,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts")
            .field("spike", &self.inner.spike)
            .field("webhook", &self.inner.webhook.is_some())
            .finish_non_exhaustive()
    }
}

/// The defaults, writing to standard error, without a webhook: what an [`AppState`] built in
/// memory gets until the server installs its configured engine.
///
/// [`AppState`]: crate::state::AppState
impl Default for Alerts {
    fn default() -> Self {
        Alerts::build(
            &AlertsConfig::default(),
            Arc::new(JsonLinesSink::stderr()),
            Arc::new(SystemClock),
            None,
        )
    }
}

impl Alerts {
    /// The engine for `config`, writing alerts to `events` (the server's event sink *without*
    /// the [`AlertingSink`] around it). Builds the webhook client, if one is configured; its
    /// delivery task starts with [`start_webhook`](Self::start_webhook).
    pub fn new(config: &AlertsConfig, events: SharedSink) -> Result<Alerts, AlertsError> {
        Self::with_clock(config, events, Arc::new(SystemClock))
    }

    /// [`new`](Self::new) with the time taken from `clock`.
    pub fn with_clock(
        config: &AlertsConfig,
        events: SharedSink,
        clock: Arc<dyn Clock>,
    ) -> Result<Alerts, AlertsError> {
        let webhook = match &config.webhook {
            Some(w) => {
                if w.url.scheme() == "http" {
                    tracing::warn!(receiver = %w.origin(), "alerts.webhook.url is plain http: alerts reach the receiver unencrypted (acceptable on this host only)");
                }
                Some(webhook::build(w)?)
            }
            None => None,
        };
        Ok(Self::build(config, events, clock, webhook))
    }

    fn build(
        config: &AlertsConfig,
        events: SharedSink,
        clock: Arc<dyn Clock>,
        webhook: Option<(webhook::Queue, webhook::Worker)>,
    ) -> Alerts {
        let (queue, worker) = webhook.unzip();
        Alerts {
            inner: Arc::new(Inner {
                spike: config.spike.clone(),
                clock,
                spikes: Mutex::new(HashMap::new()),
                limiter: Mutex::new(RateLimiter::new(config.repeat_interval, RATE_LIMIT_KEYS)),
                events,
                webhook: queue,
                worker: Mutex::new(worker),
            }),
        }
    }

    /// Spawns the webhook's delivery task on the current tokio runtime. Returns whether it was
    /// started now (false: no webhook, already started, or not inside a runtime). Until it
    /// runs, alerts wait in the bounded queue.
    pub fn start_webhook(&self) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        match lock(&self.inner.worker).take() {
            Some(worker) => {
                runtime.spawn(worker.run());
                true
            }
            None => false,
        }
    }

    /// Feeds one failed handshake to the detectors: the spike window of its reason (unless the
    /// reason is ignored) and, for `expired` and `revoked`, the per-certificate alert.
    pub fn handshake_failure(&self, f: &HandshakeFailure) {
        let now = self.inner.clock.now();
        let spike = &self.inner.spike;
        if !spike.ignore_reasons.contains(&f.reason) {
            let raised = lock(&self.inner.spikes)
                .entry(f.reason)
                .or_default()
                .record(now, spike.window, spike.threshold);
            if let Some(count) = raised {
                self.raise(spike_alert(f.reason, count, spike));
            }
        }
        if matches!(f.reason, Reason::Expired | Reason::Revoked) {
            // No presented certificate means the client rejected *ours* (it sends its own only
            // after accepting the server's): one key for all of those, not one per client.
            let key = f
                .fingerprint
                .clone()
                .unwrap_or_else(|| "server certificate".into());
            if let Some(count) = self.allow(AlertKind::ExpiredOrRevokedCert, key, now) {
                self.raise(expired_or_revoked_alert(f, count));
            }
        }
    }

    /// A certificate was refused because `from` is outside its role's `token_bound_cidrs`
    /// (`cidrs`). Returns whether an alert went out (false: rate-limited).
    pub fn outside_bound_cidrs(
        &self,
        access: Access,
        peer: &PeerIdentity,
        from: Option<SocketAddr>,
        role: &str,
        cidrs: &[String],
    ) -> bool {
        let source = from.map(|a| a.ip());
        let key = format!("{} {}", peer.fingerprint_sha256, display_ip(source));
        let Some(count) = self.allow(
            AlertKind::UnexpectedSourceAddress,
            key,
            self.inner.clock.now(),
        ) else {
            return false;
        };
        let summary = format!(
            "certificate {} (serial {}) {} from {}, outside the token_bound_cidrs of role {role:?} ({}); refused{}. If the address is legitimate, add it to token_bound_cidrs; if not, the key may have been copied: revoke the certificate and rotate the secrets the role can read",
            peer.subject,
            peer.serial,
            access.verb(),
            display_ip(source),
            cidrs.join(", "),
            repeats(count),
        );
        let mut a = Alert::new(
            AlertKind::UnexpectedSourceAddress,
            Severity::Critical,
            summary,
        );
        a.count = Some(count);
        a.expected_cidrs = cidrs.to_vec();
        self.raise(certificate_fields(a, peer, from, role));
        true
    }

    /// A certificate pinned to `pinned` (its role sets `pin_first_seen_address`) was used from
    /// another address and refused. Returns whether an alert went out (false: rate-limited).
    pub fn not_pinned_address(
        &self,
        access: Access,
        peer: &PeerIdentity,
        from: Option<SocketAddr>,
        role: &str,
        pinned: IpAddr,
    ) -> bool {
        let source = from.map(|a| a.ip());
        let key = format!("{} {}", peer.fingerprint_sha256, display_ip(source));
        let Some(count) = self.allow(
            AlertKind::UnexpectedSourceAddress,
            key,
            self.inner.clock.now(),
        ) else {
            return false;
        };
        let summary = format!(
            "certificate {} (serial {}) is pinned to {pinned}, the address it first logged in from (role {role:?} sets pin_first_seen_address), but {} from {}; refused{}. If the agent moved, give it a new certificate (a pin lasts as long as its certificate); if not, the key may have been copied: revoke the certificate and rotate the secrets the role can read",
            peer.subject,
            peer.serial,
            access.verb(),
            display_ip(source),
            repeats(count),
        );
        let mut a = Alert::new(
            AlertKind::UnexpectedSourceAddress,
            Severity::Critical,
            summary,
        );
        a.count = Some(count);
        a.pinned_address = Some(pinned);
        self.raise(certificate_fields(a, peer, from, role));
        true
    }

    /// A certificate renewal was refused or failed: for the PKI renewal endpoint.
    ///
    /// `subject` and `serial` are those of the certificate being renewed (the one the client
    /// presented), `reason` says why in one line with the fix where known (it goes into the
    /// event and the webhook: no secrets, no key material), `peer` is the client's address.
    /// Rate-limited per serial: one alert per `repeat_interval`, whose `count` says how many
    /// failures it covers. Returns whether an alert went out.
    pub fn renewal_failed(
        &self,
        subject: &str,
        serial: &str,
        reason: &str,
        peer: Option<SocketAddr>,
    ) -> bool {
        let Some(count) = self.allow(
            AlertKind::RenewalFailures,
            serial.to_owned(),
            self.inner.clock.now(),
        ) else {
            return false;
        };
        let summary = format!(
            "renewal of certificate {subject} (serial {serial}) failed{}: {reason}. The client keeps its current certificate until it expires: fix the cause before then (the audit log has the request)",
            repeats(count)
        );
        let mut a = Alert::new(AlertKind::RenewalFailures, Severity::Warning, summary);
        a.reason = Some(reason.to_owned());
        a.count = Some(count);
        a.peer = peer;
        a.source_ip = peer.map(|p| p.ip());
        a.subject = Some(subject.to_owned());
        a.serial = Some(serial.to_owned());
        self.raise(a);
        true
    }

    /// A login by `peer` was refused with 429 by the login rate limit (`per_second`, `burst`:
    /// `auth.login_rate`). Counts every refusal; raises `login_storm` when `storm_started`
    /// (the limiter says so once per storm), at most once per certificate per
    /// `repeat_interval`. Returns whether an alert went out.
    pub fn login_rate_limited(
        &self,
        peer: &PeerIdentity,
        from: Option<SocketAddr>,
        per_second: f64,
        burst: u32,
        storm_started: bool,
    ) -> bool {
        counter!(LOGINS_RATE_LIMITED).increment(1);
        if !storm_started {
            return false;
        }
        let Some(count) = self.allow(
            AlertKind::LoginStorm,
            peer.fingerprint_sha256.clone(),
            self.inner.clock.now(),
        ) else {
            return false;
        };
        let summary = format!(
            "certificate {} (serial {}) logged in more than {burst} times at once from {}, over auth.login_rate ({per_second}/s, burst {burst}); its logins are refused with 429 until it slows down{}. An agent that logs in for every request instead of reusing its token, or a copied key in a loop: find the client (keep_auth_logins_rate_limited_total counts the refusals); if it is not yours, revoke the certificate",
            peer.subject,
            peer.serial,
            display_ip(from.map(|a| a.ip())),
            repeats(count),
        );
        let mut a = Alert::new(AlertKind::LoginStorm, Severity::Warning, summary);
        a.count = Some(count);
        a.peer = from;
        a.source_ip = from.map(|p| p.ip());
        a.subject = Some(peer.subject.clone());
        a.serial = Some(peer.serial.clone());
        a.fingerprint = Some(peer.fingerprint_sha256.clone());
        a.threshold = Some(u64::from(burst));
        self.raise(a);
        true
    }

    /// Sends out one alert: counter, event line, webhook queue.
    fn raise(&self, alert: Alert) {
        counter!(ALERTS_TOTAL, "kind" => alert.alert.as_str()).increment(1);
        let event = SecurityEvent::now(EventKind::SecurityAlert(alert));
        self.inner.events.emit(&event);
        if let Some(queue) = &self.inner.webhook {
            queue.offer(event.to_json_line());
        }
    }

    fn allow(&self, kind: AlertKind, key: String, now: Instant) -> Option<u64> {
        lock(&self.inner.limiter).allow((kind, key), now)
    }
}

/// Wraps the server's event sink: forwards every event unchanged, and feeds handshake failures
/// to the [`Alerts`] detectors.
pub struct AlertingSink {
    inner: SharedSink,
    alerts: Alerts,
}

impl AlertingSink {
    /// Forwards to `inner` and feeds `alerts`. `alerts` must write to `inner` (or elsewhere),
    /// not to this sink.
    pub fn new(inner: SharedSink, alerts: Alerts) -> Self {
        AlertingSink { inner, alerts }
    }
}

impl EventSink for AlertingSink {
    fn emit(&self, event: &SecurityEvent) {
        self.inner.emit(event);
        if let Some(f) = event.as_handshake_failure() {
            self.alerts.handshake_failure(f);
        }
    }
}

fn spike_alert(reason: Reason, count: u64, spike: &SpikeConfig) -> Alert {
    let window = spike.window.as_secs();
    let summary = format!(
        "{count} TLS handshakes failed with reason {reason} within {window}s, above the threshold of {}: {}. No further alert for this reason until the rate drops to half the threshold",
        spike.threshold,
        spike_hint(reason)
    );
    let mut a = Alert::new(AlertKind::HandshakeFailureSpike, Severity::Warning, summary);
    a.reason = Some(reason.as_str().to_owned());
    a.count = Some(count);
    a.window_seconds = Some(window);
    a.threshold = Some(spike.threshold);
    a
}

/// What a burst of one reason usually means, and what to do (as docs/monitoring.md says).
fn spike_hint(reason: Reason) -> &'static str {
    match reason {
        Reason::NoCertificate => {
            "clients connect without a client certificate: configure one on them, or find the scanner (the tls_handshake_failure events name the peers)"
        }
        Reason::UnknownCa => {
            "clients present certificates from a CA not in client_ca_file (a wrong bundle mounted) or something is probing: the tls_handshake_failure events name the peers"
        }
        Reason::Expired => {
            "expired certificates are in use: renew them (an agent cannot renew with an expired certificate)"
        }
        Reason::NotYetValid => "certificates are dated in the future: check the clients' clocks",
        Reason::Revoked => {
            "revoked certificates are still in use: find those clients in the tls_handshake_failure events and stop them"
        }
        Reason::BadEku => {
            "certificates without the clientAuth extended key usage are presented: issue client certificates"
        }
        Reason::BadSignature => {
            "certificates or handshake signatures do not verify: a forged certificate or a key that does not match"
        }
        Reason::ProtocolVersion => {
            "clients offer only TLS versions keep refuses: upgrade them to TLS 1.2 or 1.3"
        }
        Reason::NoSharedCipher => {
            "clients offer no cipher suite keep accepts: enable TLS 1.3 or ECDHE AEAD suites on them"
        }
        Reason::SniMismatch => {
            "clients ask for a name the server certificate does not carry: fix their URL or add the name to cert_file"
        }
        Reason::EofBeforeHello => {
            "connections close before TLS: load-balancer probes or a port scan"
        }
        Reason::PlainHttp => "something speaks plain http:// to the TLS port: make it use https://",
        Reason::Other => {
            "see the detail of the tls_handshake_failure events (timeouts, malformed TLS)"
        }
    }
}

fn expired_or_revoked_alert(f: &HandshakeFailure, count: u64) -> Alert {
    let revoked = f.reason == Reason::Revoked;
    let severity = if revoked {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let summary = match (&f.subject, &f.serial) {
        (Some(subject), serial) => {
            let serial = serial.as_deref().unwrap_or("unknown");
            if revoked {
                format!(
                    "a revoked client certificate ({subject}, serial {serial}) was presented from {} and refused{}: whoever runs that client still holds a revoked key; stop it or block the address, and find out how it still has the key",
                    f.peer.ip(),
                    repeats(count)
                )
            } else {
                format!(
                    "an expired client certificate ({subject}, serial {serial}) was presented from {} and refused{}: the agent missed its renewal and cannot renew by itself any more; issue it a new certificate",
                    f.peer.ip(),
                    repeats(count)
                )
            }
        }
        (None, _) => format!(
            "a client at {} ended the handshake as {}, presenting no certificate of its own{}: {}",
            f.peer.ip(),
            f.reason,
            repeats(count),
            f.detail
        ),
    };
    let mut a = Alert::new(AlertKind::ExpiredOrRevokedCert, severity, summary);
    a.reason = Some(f.reason.as_str().to_owned());
    a.count = Some(count);
    a.peer = Some(f.peer);
    a.source_ip = Some(f.peer.ip());
    a.subject = f.subject.clone();
    a.serial = f.serial.clone();
    a.fingerprint = f.fingerprint.clone();
    a
}

fn certificate_fields(
    mut a: Alert,
    peer: &PeerIdentity,
    from: Option<SocketAddr>,
    role: &str,
) -> Alert {
    a.peer = from;
    a.source_ip = from.map(|p| p.ip());
    a.subject = Some(peer.subject.clone());
    a.serial = Some(peer.serial.clone());
    a.fingerprint = Some(peer.fingerprint_sha256.clone());
    a.role = Some(role.to_owned());
    a
}

fn display_ip(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
}

/// " (n attempts since the last alert)" when an alert covers more than one.
fn repeats(count: u64) -> String {
    if count > 1 {
        format!(" ({count} times since the last alert about it)")
    } else {
        String::new()
    }
}

/// Locks a mutex, recovering from poisoning: the state is counters and timestamps, which a
/// panic cannot leave inconsistent enough to matter, and losing every later alert would be
/// worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_tls::events::MemorySink;

    struct Rig {
        alerts: Alerts,
        events: Arc<MemorySink>,
        clock: Arc<ManualClock>,
    }

    fn rig(config: AlertsConfig) -> Rig {
        let events = Arc::new(MemorySink::new());
        let clock = Arc::new(ManualClock::new());
        let alerts = Alerts::with_clock(&config, events.clone(), clock.clone()).unwrap();
        Rig {
            alerts,
            events,
            clock,
        }
    }

    impl Rig {
        fn alerts(&self) -> Vec<Alert> {
            self.events
                .events()
                .iter()
                .filter_map(|e| e.as_alert().cloned())
                .collect()
        }
    }

    fn failure(reason: Reason, fingerprint: Option<&str>) -> HandshakeFailure {
        HandshakeFailure {
            peer: "10.0.0.7:51234".parse().unwrap(),
            reason,
            detail: "the detail".into(),
            server_name: None,
            subject: fingerprint.map(|_| "CN=agent-07".to_owned()),
            serial: fingerprint.map(|_| "3a:f2".to_owned()),
            fingerprint: fingerprint.map(str::to_owned),
        }
    }

    fn spike(window: u64, threshold: u64) -> AlertsConfig {
        AlertsConfig {
            spike: SpikeConfig {
                window: Duration::from_secs(window),
                threshold,
                ..SpikeConfig::default()
            },
            ..AlertsConfig::default()
        }
    }

    #[test]
    fn a_flood_raises_one_spike_alert_per_reason() {
        let r = rig(spike(60, 5));
        for _ in 0..100 {
            r.alerts
                .handshake_failure(&failure(Reason::UnknownCa, None));
            r.clock.advance(Duration::from_millis(100));
        }
        for _ in 0..5 {
            r.alerts
                .handshake_failure(&failure(Reason::NoCertificate, None));
        }
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.alert, AlertKind::HandshakeFailureSpike);
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(a.reason.as_deref(), Some("unknown_ca"));
        assert_eq!(
            (a.count, a.window_seconds, a.threshold),
            (Some(6), Some(60), Some(5))
        );
        assert!(a.summary.contains("client_ca_file"), "{}", a.summary);
        // The sixth no_certificate failure crosses its own threshold.
        r.alerts
            .handshake_failure(&failure(Reason::NoCertificate, None));
        assert_eq!(r.alerts().len(), 2);
    }

    #[test]
    fn a_new_spike_after_the_rate_dropped_alerts_again() {
        let r = rig(spike(60, 5));
        for _ in 0..6 {
            r.alerts.handshake_failure(&failure(Reason::Other, None));
        }
        assert_eq!(r.alerts().len(), 1);
        r.clock.advance(Duration::from_secs(61));
        for _ in 0..6 {
            r.alerts.handshake_failure(&failure(Reason::Other, None));
        }
        assert_eq!(r.alerts().len(), 2);
    }

    #[test]
    fn probes_do_not_count_unless_asked_to() {
        let r = rig(spike(60, 2));
        for _ in 0..50 {
            r.alerts
                .handshake_failure(&failure(Reason::EofBeforeHello, None));
        }
        assert!(r.alerts().is_empty());
        let mut config = spike(60, 2);
        config.spike.ignore_reasons.clear();
        let r = rig(config);
        for _ in 0..3 {
            r.alerts
                .handshake_failure(&failure(Reason::EofBeforeHello, None));
        }
        assert_eq!(r.alerts().len(), 1);
    }

    #[test]
    fn expired_and_revoked_alert_once_per_certificate_per_interval() {
        let r = rig(spike(60, 1000));
        for _ in 0..10 {
            r.alerts
                .handshake_failure(&failure(Reason::Revoked, Some("aaaa")));
        }
        r.alerts
            .handshake_failure(&failure(Reason::Expired, Some("bbbb")));
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        let revoked = &alerts[0];
        assert_eq!(revoked.alert, AlertKind::ExpiredOrRevokedCert);
        assert_eq!(revoked.severity, Severity::Critical);
        assert_eq!(revoked.fingerprint.as_deref(), Some("aaaa"));
        assert_eq!(revoked.serial.as_deref(), Some("3a:f2"));
        assert_eq!(revoked.source_ip, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(alerts[1].severity, Severity::Warning);
        assert!(alerts[1].summary.contains("new certificate"));
        // A minute later the reconnect loop of the revoked one alerts again, with its count.
        r.clock.advance(Duration::from_secs(60));
        r.alerts
            .handshake_failure(&failure(Reason::Revoked, Some("aaaa")));
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 3);
        assert_eq!(alerts[2].count, Some(10));
        assert!(
            alerts[2].summary.contains("10 times"),
            "{}",
            alerts[2].summary
        );
    }

    #[test]
    fn the_server_certificate_rejected_as_expired_is_one_key() {
        let r = rig(spike(60, 1000));
        for port in 0..5u16 {
            let mut f = failure(Reason::Expired, None);
            f.peer.set_port(1000 + port);
            r.alerts.handshake_failure(&f);
        }
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].fingerprint.is_none());
        assert!(alerts[0].summary.contains("the detail"));
    }

    #[test]
    fn renewal_failures_are_rate_limited_per_serial() {
        let r = rig(AlertsConfig::default());
        let peer = Some("10.0.0.9:4000".parse().unwrap());
        assert!(r.alerts.renewal_failed(
            "CN=agent-07",
            "01:02",
            "the CSR names another identity",
            peer
        ));
        assert!(
            !r.alerts
                .renewal_failed("CN=agent-07", "01:02", "again", peer)
        );
        assert!(
            r.alerts
                .renewal_failed("CN=agent-08", "03:04", "issuer key unreadable", None)
        );
        r.clock.advance(Duration::from_secs(60));
        assert!(
            r.alerts
                .renewal_failed("CN=agent-07", "01:02", "still", peer)
        );
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 3);
        let a = &alerts[0];
        assert_eq!(a.alert, AlertKind::RenewalFailures);
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(a.subject.as_deref(), Some("CN=agent-07"));
        assert_eq!(a.serial.as_deref(), Some("01:02"));
        assert_eq!(a.reason.as_deref(), Some("the CSR names another identity"));
        assert_eq!(a.peer, peer);
        assert_eq!(a.count, Some(1));
        assert_eq!(alerts[2].count, Some(2));
        let line = SecurityEvent::now(EventKind::SecurityAlert(a.clone())).to_json_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "security_alert");
        assert_eq!(v["alert"], "renewal_failures");
        assert_eq!(v["source_ip"], "10.0.0.9");
    }

    #[test]
    fn a_login_storm_alerts_at_its_start_only_and_once_per_interval() {
        let r = rig(AlertsConfig::default());
        let pki = keep_test_support::TestPki::new();
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> = pki
            .issue(&keep_test_support::LeafSpec::agent("agent-loop"))
            .chain_der
            .into_iter()
            .map(rustls_pki_types::CertificateDer::from)
            .collect();
        let peer = keep_tls::identity::from_verified_chain(&chain).unwrap();
        let from = Some("10.0.0.9:4000".parse().unwrap());
        assert!(r.alerts.login_rate_limited(&peer, from, 5.0, 20, true));
        // The rest of the storm: counted, not alerted.
        for _ in 0..50 {
            assert!(!r.alerts.login_rate_limited(&peer, from, 5.0, 20, false));
        }
        // A new storm within repeat_interval is held back; after it, alerted again.
        assert!(!r.alerts.login_rate_limited(&peer, from, 5.0, 20, true));
        r.clock.advance(Duration::from_secs(60));
        assert!(r.alerts.login_rate_limited(&peer, from, 5.0, 20, true));
        let alerts = r.alerts();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.alert, AlertKind::LoginStorm);
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(
            a.fingerprint.as_deref(),
            Some(peer.fingerprint_sha256.as_str())
        );
        assert_eq!(a.source_ip, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(a.threshold, Some(20));
        assert!(a.summary.contains("auth.login_rate"), "{}", a.summary);
        assert_eq!(alerts[1].count, Some(2), "the held-back storm is counted");
    }

    #[test]
    fn alerting_sink_forwards_every_event_and_feeds_the_detectors() {
        let inner = Arc::new(MemorySink::new());
        let alerts = Alerts::new(&spike(60, 1), inner.clone()).unwrap();
        let sink = AlertingSink::new(inner.clone(), alerts);
        let e = SecurityEvent::now(EventKind::TlsHandshakeFailure(failure(
            Reason::BadEku,
            None,
        )));
        sink.emit(&e);
        sink.emit(&e);
        let events = inner.events();
        assert_eq!(events.len(), 3, "two failures forwarded, one alert");
        assert_eq!(events[0], e);
        assert_eq!(events[1], e);
        assert_eq!(
            events[2].as_alert().map(|a| a.alert),
            Some(AlertKind::HandshakeFailureSpike)
        );
    }
}
