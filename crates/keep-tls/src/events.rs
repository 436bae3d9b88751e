//! Security events: one JSON object per line, written to a pluggable [`EventSink`].
//!
//! ```json
//! {"time":"2026-11-28T10:00:00.123Z","event":"tls_handshake_failure","peer":"10.0.0.7:51234",
//!  "reason":"revoked","detail":"the client certificate is revoked (listed in crl_file)",
//!  "subject":"CN=agent-07","serial":"3a:f2:…","fingerprint":"9c1e…"}
//! {"time":"…","event":"tls_reload_failed","field":"cert_file","file":"/etc/keep/vault.crt",
//!  "detail":"`cert_file` (file /etc/keep/vault.crt), line 1: …; fix: …"}
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
use std::net::SocketAddr;
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
            EventKind::TlsReloadFailed(_) => None,
        }
    }

    /// The reload failure inside, if this is one.
    pub fn as_reload_failure(&self) -> Option<&ReloadFailure> {
        match &self.kind {
            EventKind::TlsReloadFailed(f) => Some(f),
            EventKind::TlsHandshakeFailure(_) => None,
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
