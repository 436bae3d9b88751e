//! The metrics keep-tls records, through the `metrics` facade (the server installs the
//! Prometheus recorder and serves `/v1/sys/metrics`).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `keep_tls_handshake_failures_total` | counter | `reason` (see [`Reason`]) | failed TLS handshakes |
//! | `keep_tls_connections_rejected_total` | counter | `reason="limit"` | connections closed unserved because `max_connections` were open |
//! | `keep_tls_reloads_total` | counter | `result="ok"\|"error"` | TLS material reloads |
//! | `keep_tls_server_cert_not_after_seconds` | gauge | — | expiry of the served certificate (Unix time) |

use metrics::{counter, describe_counter, describe_gauge, gauge};
use time::OffsetDateTime;

use crate::classify::Reason;

/// Failed handshakes by reason.
pub const HANDSHAKE_FAILURES: &str = "keep_tls_handshake_failures_total";
/// Connections closed because the connection cap was reached.
pub const CONNECTIONS_REJECTED: &str = "keep_tls_connections_rejected_total";
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
        "TCP connections closed without a handshake because max_connections were open"
    );
    describe_counter!(RELOADS, "TLS material reloads, by result (ok or error)");
    describe_gauge!(
        SERVER_CERT_NOT_AFTER,
        "notAfter of the server certificate currently served, as Unix time"
    );
    for reason in Reason::ALL {
        counter!(HANDSHAKE_FAILURES, "reason" => reason.as_str()).increment(0);
    }
    counter!(CONNECTIONS_REJECTED, "reason" => "limit").increment(0);
    counter!(RELOADS, "result" => "ok").increment(0);
    counter!(RELOADS, "result" => "error").increment(0);
}

pub(crate) fn handshake_failure(reason: Reason) {
    counter!(HANDSHAKE_FAILURES, "reason" => reason.as_str()).increment(1);
}

pub(crate) fn connection_rejected_limit() {
    counter!(CONNECTIONS_REJECTED, "reason" => "limit").increment(1);
}

pub(crate) fn reload(ok: bool) {
    counter!(RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

pub(crate) fn record_server_cert_expiry(not_after: OffsetDateTime) {
    // f64 holds Unix seconds exactly for the next 285 million years.
    gauge!(SERVER_CERT_NOT_AFTER).set(not_after.unix_timestamp() as f64);
}
