//! Security events: one JSON object per line, written to a pluggable [`EventSink`].
//!
//! ```json
//! {"time":"2026-11-28T10:00:00.123Z","event":"tls_handshake_failure","peer":"10.0.0.7:51234",
//!  "reason":"revoked","detail":"the client certificate is revoked (listed in a loaded CRL: crl_file or the PKI mount's)",
//!  "subject":"CN=agent-07","serial":"3a:f2:…","fingerprint":"9c1e…"}
//! {"time":"…","event":"tls_reload_failed","field":"cert_file","file":"/etc/keep/vault.crt",
//!  "detail":"`cert_file` (file /etc/keep/vault.crt), line 1: …; fix: …"}
//! {"time":"…","event":"security_alert","alert":"handshake_failure_spike","severity":"warning",
//!  "summary":"21 TLS handshakes failed with reason unknown_ca in 60s …","reason":"unknown_ca",
//!  "count":21,"window_seconds":60,"threshold":20}
//! ```
//!
//! `subject`, `serial` and `fingerprint` describe the certificate the client *presented*: for a
//! rejected one they come from bytes rustls did not accept, and are for the operator's eyes
//! only, never for authorization. They are absent when no certificate was presented.
//!
//! Sinks are called synchronously from connection tasks, so they must be quick: a file or
//! stderr write is fine; anything slow (network) belongs behind a channel in the sink.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::classify::Reason;

/// One security event.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SecurityEvent {
    /// When it happened (UTC), serialized as RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub time: OffsetDateTime,
    /// What happened; its `event` tag and fields are flattened into the JSON line.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of security event keep-tls emits.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A TLS handshake failed (`"event":"tls_handshake_failure"`).
    TlsHandshakeFailure(HandshakeFailure),
    /// New TLS material could not be loaded; the last good config stays in use
    /// (`"event":"tls_reload_failed"`).
    TlsReloadFailed(ReloadFailure),
    /// A security alert the server computed from its own events: a spike of handshake
    /// failures, a certificate used from an unexpected address, … (`"event":"security_alert"`).
    SecurityAlert(Alert),
}

/// A failed handshake.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HandshakeFailure {
    /// The client's address.
    pub peer: SocketAddr,
    /// Why it failed.
    pub reason: Reason,
    /// What happened, with the fix where known.
    pub detail: String,
    /// The server name the client asked for (SNI), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Subject (RFC 4514) of the certificate the client presented, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Serial (colon-separated hex) of the presented certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SHA-256 fingerprint (hex) of the presented certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A reload that failed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReloadFailure {
    /// The config field at fault (`cert_file`, `cipher_suites`, …), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The file at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The error message (names the file and line and says the fix).
    pub detail: String,
}

/// What an [`Alert`] is about. The snake_case names are the `alert` field of the event and the
/// `kind` label of `keep_security_alerts_total`; they are part of keep's monitoring contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// More handshakes than the threshold failed with one reason within the window.
    HandshakeFailureSpike,
    /// A certificate was used from an address outside its role's `token_bound_cidrs`, or
    /// other than the one it is pinned to.
    UnexpectedSourceAddress,
    /// A client presented an expired or revoked certificate.
    ExpiredOrRevokedCert,
    /// A certificate renewal was refused or failed.
    RenewalFailures,
    /// One client certificate logged in faster than the login rate limit allows.
    LoginStorm,
}

impl AlertKind {
    /// Every kind, for pre-registering metric series and for tests.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::HandshakeFailureSpike,
        AlertKind::UnexpectedSourceAddress,
        AlertKind::ExpiredOrRevokedCert,
        AlertKind::RenewalFailures,
        AlertKind::LoginStorm,
    ];

    /// The label value (`handshake_failure_spike`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::HandshakeFailureSpike => "handshake_failure_spike",
            AlertKind::UnexpectedSourceAddress => "unexpected_source_address",
            AlertKind::ExpiredOrRevokedCert => "expired_or_revoked_cert",
            AlertKind::RenewalFailures => "renewal_failures",
            AlertKind::LoginStorm => "login_storm",
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an [`Alert`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Something is wrong and needs a look (a misconfigured client, a missed renewal).
    Warning,
    /// A key may be in the wrong hands: act now.
    Critical,
}

/// A security alert: what a SIEM needs to route and act on it without parsing prose.
///
/// Only `alert`, `severity` and `summary` are always present; the other fields appear when
/// they apply to the kind. Like [`HandshakeFailure`], certificate fields of an alert raised
/// from a failed handshake describe the certificate the client *presented*.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    /// What the alert is about.
    pub alert: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// One human line: what happened and the fix.
    pub summary: String,
    /// The handshake failure reason (spikes, expired/revoked) or why a renewal failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many events the alert covers: failures in the window for a spike; attempts since
    /// the last alert for the same certificate for the rate-limited kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The spike detector's window, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// The spike detector's threshold (more than this many failures in the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
    /// The client's address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// The client's IP address (the peer without its port), for SIEM rules on addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// Subject (RFC 4514) of the certificate concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Serial (colon-separated hex) of the certificate concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SHA-256 fingerprint (hex) of the certificate concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The cert auth role concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The CIDRs the certificate may be used from (`token_bound_cidrs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_cidrs: Vec<String>,
    /// The address the certificate is pinned to (`pin_first_seen_address`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_address: Option<IpAddr>,
}

impl Alert {
    /// An alert with only its kind, severity and summary; set the other fields as they apply.
    pub fn new(alert: AlertKind, severity: Severity, summary: impl Into<String>) -> Self {
        Alert {
            alert,
            severity,
            summary: summary.into(),
            reason: None,
            count: None,
            window_seconds: None,
            threshold: None,
            peer: None,
            source_ip: None,
            subject: None,
            serial: None,
            fingerprint: None,
            role: None,
            expected_cidrs: Vec::new(),
            pinned_address: None,
        }
    }
}

impl SecurityEvent {
    /// An event stamped with the current time.
    pub fn now(kind: EventKind) -> Self {
        SecurityEvent {
            time: OffsetDateTime::now_utc(),
            kind,
        }
    }

    /// The event as one JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings, numbers and an RFC 3339 timestamp cannot fail; keep a
        // fallback line anyway rather than a panic in a connection task.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"event":"event_serialization_failed","detail":"{e}"}}"#)
        })
    }

    /// The handshake failure inside, if this is one.
    pub fn as_handshake_failure(&self) -> Option<&HandshakeFailure> {
        match &self.kind {
            EventKind::TlsHandshakeFailure(f) => Some(f),
            EventKind::TlsReloadFailed(_) | EventKind::SecurityAlert(_) => None,
        }
    }

    /// The reload failure inside, if this is one.
    pub fn as_reload_failure(&self) -> Option<&ReloadFailure> {
        match &self.kind {
            EventKind::TlsReloadFailed(f) => Some(f),
            EventKind::TlsHandshakeFailure(_) | EventKind::SecurityAlert(_) => None,
        }
    }

    /// The security alert inside, if this is one.
    pub fn as_alert(&self) -> Option<&Alert> {
        match &self.kind {
            EventKind::SecurityAlert(a) => Some(a),
            EventKind::TlsHandshakeFailure(_) | EventKind::TlsReloadFailed(_) => None,
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// Where security events go.
pub trait EventSink: Send + Sync {
    /// Records one event. Must not block for long (it runs in connection tasks) and cannot
    /// fail the caller: a sink that cannot write reports that itself (to the log).
    fn emit(&self, event: &SecurityEvent);
}

/// A shared sink, as the listener and reloader take it.
pub type SharedSink = Arc<dyn EventSink>;

/// Writes each event as a JSON line to a `Write` (a file, stderr), flushing after each line so
/// a crash loses nothing.
pub struct JsonLinesSink<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out: Mutex::new(out),
        }
    }
}

impl JsonLinesSink<File> {
    /// A sink appending to the file at `path`, created 0600 if missing (events carry client
    /// addresses and certificate subjects, which are not for every local user).
    pub fn append_to_file(path: &Path) -> io::Result<Self> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(JsonLinesSink::new(options.open(path)?))
    }
}

impl JsonLinesSink<io::Stderr> {
    /// A sink writing to standard error.
    pub fn stderr() -> Self {
        JsonLinesSink::new(io::stderr())
    }
}

impl<W: Write + Send> EventSink for JsonLinesSink<W> {
    fn emit(&self, event: &SecurityEvent) {
        let mut line = event.to_json_line();
        line.push('\n');
        let mut out = lock(&self.out);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!(error = %e, event = %line.trim_end(), "cannot write a security event");
        }
    }
}

/// Keeps events in memory: for tests, and for a server that wants to show recent events.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<SecurityEvent>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every event so far, oldest first.
    pub fn events(&self) -> Vec<SecurityEvent> {
        lock(&self.events).clone()
    }

    /// How many events have been recorded.
    pub fn len(&self) -> usize {
        lock(&self.events).len()
    }

    /// Whether no event has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: &SecurityEvent) {
        lock(&self.events).push(event.clone());
    }
}

/// Discards events (for tools that build a listener but have no use for events).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: &SecurityEvent) {}
}

/// Locks a mutex, recovering from poisoning: a panic while holding a sink's lock leaves at worst
/// a half-written line, and losing every later security event would be worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn failure() -> SecurityEvent {
        SecurityEvent {
            time: time::macros::datetime!(2026-11-28 10:00:00.5 UTC),
            kind: EventKind::TlsHandshakeFailure(HandshakeFailure {
                peer: "127.0.0.1:4000".parse().unwrap(),
                reason: Reason::Revoked,
                detail: "revoked".into(),
                server_name: None,
                subject: Some("CN=agent-07".into()),
                serial: Some("01:02".into()),
                fingerprint: Some("abcd".into()),
            }),
        }
    }

    #[test]
    fn handshake_failure_json_line() {
        let line = failure().to_json_line();
        assert_eq!(
            line,
            r#"{"time":"2026-11-28T10:00:00.5Z","event":"tls_handshake_failure","peer":"127.0.0.1:4000","reason":"revoked","detail":"revoked","subject":"CN=agent-07","serial":"01:02","fingerprint":"abcd"}"#
        );
    }

    #[test]
    fn absent_certificate_fields_are_omitted() {
        let mut e = failure();
        if let EventKind::TlsHandshakeFailure(f) = &mut e.kind {
            f.subject = None;
            f.serial = None;
            f.fingerprint = None;
        }
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert!(v.get("subject").is_none() && v.get("fingerprint").is_none());
        assert_eq!(v["reason"], "revoked");
    }

    #[test]
    fn reload_failure_json_line() {
        let e = SecurityEvent::now(EventKind::TlsReloadFailed(ReloadFailure {
            field: Some("cert_file".into()),
            file: Some("/etc/keep/vault.crt".into()),
            detail: "bad".into(),
        }));
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(v["event"], "tls_reload_failed");
        assert_eq!(v["file"], "/etc/keep/vault.crt");
        assert_eq!(v["field"], "cert_file");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn security_alert_json_line() {
        let mut a = Alert::new(
            AlertKind::UnexpectedSourceAddress,
            Severity::Critical,
            "used from elsewhere",
        );
        a.peer = Some("10.9.9.9:5000".parse().unwrap());
        a.source_ip = Some("10.9.9.9".parse().unwrap());
        a.role = Some("agents".into());
        a.expected_cidrs = vec!["10.0.0.0/24".into()];
        let e = SecurityEvent {
            time: time::macros::datetime!(2026-11-28 10:00:00 UTC),
            kind: EventKind::SecurityAlert(a),
        };
        assert_eq!(
            e.to_json_line(),
            r#"{"time":"2026-11-28T10:00:00Z","event":"security_alert","alert":"unexpected_source_address","severity":"critical","summary":"used from elsewhere","peer":"10.9.9.9:5000","source_ip":"10.9.9.9","role":"agents","expected_cidrs":["10.0.0.0/24"]}"#
        );
        assert!(e.as_alert().is_some() && e.as_handshake_failure().is_none());
        for k in AlertKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).ok(),
                Some(format!("\"{}\"", k.as_str()))
            );
        }
    }

    #[test]
    fn json_lines_sink_writes_one_line_per_event() {
        let sink = JsonLinesSink::new(Vec::new());
        sink.emit(&failure());
        sink.emit(&failure());
        let out = String::from_utf8(sink.out.into_inner().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 2);
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn file_sink_appends_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        JsonLinesSink::append_to_file(&path)
            .unwrap()
            .emit(&failure());
        JsonLinesSink::append_to_file(&path)
            .unwrap()
            .emit(&failure());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
