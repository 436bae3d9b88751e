//! The metrics keep-tls records, through the `metrics` facade (the server installs the
//! Prometheus recorder and serves `/v1/sys/metrics`).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `keep_tls_handshake_failures_total` | counter | `reason` (see [`Reason`]) | failed TLS handshakes |
//! | `keep_tls_connections_rejected_total` | counter | `reason` (see [`Rejection`]) | connections closed unserved because a pool of the [`budget`](crate::budget) was full: `limit` (`max_connections`), `handshaking` (`max_handshaking`), `per_source` (`per_source_handshaking`), `per_identity` (`per_identity_connections`) |
//! | `keep_tls_connections_open` | gauge | `state="handshaking"\|"established"` | connections open now |
//! | `keep_tls_connections_closed_total` | counter | `reason="idle"\|"pre_handshake_timeout"` | connections the server closed because they sat idle (no request in flight for the idle timeout) or sent no ClientHello in time |
//! | `keep_tls_reloads_total` | counter | `result="ok"\|"error"` | TLS material reloads |
//! | `keep_tls_server_cert_not_after_seconds` | gauge | — | expiry of the served certificate (Unix time) |

use metrics::{counter, describe_counter, describe_gauge, gauge};
use time::OffsetDateTime;

use crate::budget::{Rejection, Stage};
use crate::classify::Reason;

/// Failed handshakes by reason.
pub const HANDSHAKE_FAILURES: &str = "keep_tls_handshake_failures_total";
/// Connections closed because a pool of the connection budget was full.
pub const CONNECTIONS_REJECTED: &str = "keep_tls_connections_rejected_total";
/// Connections open now, by state.
pub const CONNECTIONS_OPEN: &str = "keep_tls_connections_open";
/// Connections the server closed for idling, by reason.
pub const CONNECTIONS_CLOSED: &str = "keep_tls_connections_closed_total";
/// The `reason` labels of [`CONNECTIONS_CLOSED`].
const CLOSE_REASONS: [&str; 2] = ["idle", "pre_handshake_timeout"];
/// TLS material reloads by result.
pub const RELOADS: &str = "keep_tls_reloads_total";
/// Expiry of the server certificate being served, as Unix seconds.
pub const SERVER_CERT_NOT_AFTER: &str = "keep_tls_server_cert_not_after_seconds";

/// Registers help texts, and every `reason` series at zero.
///
/// Call once after installing the recorder. Zero-valued series matter for alerting:
/// Prometheus' `increase()` cannot see the first failure of a series that did not exist before
/// it, so a "handshake failures spiked" rule would miss the first burst of a new reason.
pub fn describe() {
    describe_counter!(
        HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by classified reason"
    );
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Connections closed unserved because a connection pool was full, by pool (limit, handshaking, per_source, per_identity)"
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Connections open now, by state (handshaking or established)"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections the server closed because they idled (idle) or sent no ClientHello in time (pre_handshake_timeout)"
    );
    describe_counter!(RELOADS, "TLS material reloads, by result (ok or error)");
    describe_gauge!(
        SERVER_CERT_NOT_AFTER,
        "notAfter of the server certificate currently served, as Unix time"
    );
    for reason in Reason::ALL {
        counter!(HANDSHAKE_FAILURES, "reason" => reason.as_str()).increment(0);
    }
    for rejection in Rejection::ALL {
        counter!(CONNECTIONS_REJECTED, "reason" => rejection.as_str()).increment(0);
    }
    for reason in CLOSE_REASONS {
        counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(0);
    }
    for stage in [Stage::Handshaking, Stage::Established] {
        gauge!(CONNECTIONS_OPEN, "state" => stage.as_str()).increment(0.0);
    }
    counter!(RELOADS, "result" => "ok").increment(0);
    counter!(RELOADS, "result" => "error").increment(0);
}

pub(crate) fn handshake_failure(reason: Reason) {
    counter!(HANDSHAKE_FAILURES, "reason" => reason.as_str()).increment(1);
}

pub(crate) fn connection_rejected(rejection: Rejection) {
    counter!(CONNECTIONS_REJECTED, "reason" => rejection.as_str()).increment(1);
}

pub(crate) fn connections_open(stage: Stage, delta: f64) {
    gauge!(CONNECTIONS_OPEN, "state" => stage.as_str()).increment(delta);
}

/// Counts a connection the HTTP layer closed because no request was in flight for the idle
/// timeout.
pub fn connection_closed_idle() {
    counter!(CONNECTIONS_CLOSED, "reason" => "idle").increment(1);
}

pub(crate) fn connection_closed_pre_handshake() {
    counter!(CONNECTIONS_CLOSED, "reason" => "pre_handshake_timeout").increment(1);
}

pub(crate) fn reload(ok: bool) {
    counter!(RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

pub(crate) fn record_server_cert_expiry(not_after: OffsetDateTime) {
    // f64 holds Unix seconds exactly for the next 285 million years.
    gauge!(SERVER_CERT_NOT_AFTER).set(not_after.unix_timestamp() as f64);
}
