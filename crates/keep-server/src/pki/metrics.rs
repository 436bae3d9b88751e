//! The PKI mount's metrics, through the `metrics` facade (served by `/v1/sys/metrics`).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `keep_certificate_expiry_timestamp_seconds` | gauge | `serial`, `subject`, `role` | notAfter of every certificate in the inventory, and of the server's own chain (role `keep-server` for the serving certificate, `keep-issuer` for the issuing CA) |
//! | `keep_certificate_not_before_timestamp_seconds` | gauge | `serial`, `subject`, `role` | notBefore of the same certificates |
//! | `keep_certificate_revoked` | gauge | `serial`, `subject`, `role` | 1 for every revoked certificate in the inventory |
//! | `keep_pki_renewals_total` | counter | `outcome` = `issued`, `refused`, `failed` | `POST /v1/pki/renew` calls |
//!
//! The facade cannot delete a series, so the series of certificates removed by `pki/tidy` (and
//! of a replaced serving certificate) are left out when `/v1/sys/metrics` renders
//! ([`without_series`]); after a restart they are never recorded at all.

use std::collections::HashSet;

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// notAfter, Unix seconds.
pub const EXPIRY: &str = "keep_certificate_expiry_timestamp_seconds";
/// notBefore, Unix seconds.
pub const NOT_BEFORE: &str = "keep_certificate_not_before_timestamp_seconds";
/// 1 for a revoked certificate.
pub const REVOKED: &str = "keep_certificate_revoked";
/// Renewals by outcome.
pub const RENEWALS: &str = "keep_pki_renewals_total";

/// The role label of the server's own serving certificate.
pub const ROLE_SERVER: &str = "keep-server";
/// The role label of the PKI mount's issuing CA.
pub const ROLE_ISSUER: &str = "keep-issuer";

/// How a renewal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// A new certificate was issued.
    Issued,
    /// The caller or its CSR was refused (4xx).
    Refused,
    /// The server failed (5xx).
    Failed,
}

impl RenewalOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalOutcome::Issued => "issued",
            RenewalOutcome::Refused => "refused",
            RenewalOutcome::Failed => "failed",
        }
    }
}

/// Registers help texts and every renewal outcome at zero (so `increase()` sees the first one).
pub fn describe() {
    describe_gauge!(EXPIRY, "notAfter of a certificate, as Unix time");
    describe_gauge!(NOT_BEFORE, "notBefore of a certificate, as Unix time");
    describe_gauge!(
        REVOKED,
        "1 for a revoked certificate issued by the PKI mount"
    );
    describe_counter!(RENEWALS, "POST /v1/pki/renew calls, by outcome");
    for o in [
        RenewalOutcome::Issued,
        RenewalOutcome::Refused,
        RenewalOutcome::Failed,
    ] {
        counter!(RENEWALS, "outcome" => o.as_str()).increment(0);
    }
}

/// Records a certificate's validity window.
pub fn record_cert(serial: &str, subject: &str, role: &str, not_before: i64, not_after: i64) {
    let labels = [
        ("serial", serial.to_owned()),
        ("subject", subject.to_owned()),
        ("role", role.to_owned()),
    ];
    // f64 holds Unix seconds exactly for the next 285 million years.
    gauge!(EXPIRY, &labels).set(not_after as f64);
    gauge!(NOT_BEFORE, &labels).set(not_before as f64);
}

/// Records a revoked certificate.
pub fn record_revoked(serial: &str, subject: &str, role: &str) {
    let labels = [
        ("serial", serial.to_owned()),
        ("subject", subject.to_owned()),
        ("role", role.to_owned()),
    ];
    gauge!(REVOKED, &labels).set(1.0);
}

/// Records a certificate given as DER (the server's own chain); returns its serial.
pub fn record_cert_der(der: &[u8], role: &str) -> Option<String> {
    let info = keep_pki::inspect::inspect(der).ok()?;
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = x.validity();
    record_cert(
        &info.serial,
        &info.subject,
        role,
        v.not_before.timestamp(),
        v.not_after.timestamp(),
    );
    Some(info.serial)
}

/// Counts a renewal.
pub fn renewal(outcome: RenewalOutcome) {
    counter!(RENEWALS, "outcome" => outcome.as_str()).increment(1);
}

/// Prometheus text without the series whose `serial` label is in `hidden`.
pub fn without_series(text: &str, hidden: &HashSet<String>) -> String {
    if hidden.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let drop = !line.starts_with('#')
            && line
                .split_once("serial=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .is_some_and(|(serial, _)| hidden.contains(serial));
        if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_serials_are_left_out_and_others_kept() {
        let text = "# HELP x\nkeep_certificate_expiry_timestamp_seconds{serial=\"01:02\",subject=\"CN=a\",role=\"r\"} 5\nkeep_certificate_expiry_timestamp_seconds{serial=\"03:04\",subject=\"CN=b\",role=\"r\"} 6\nother 1\n";
        let hidden: HashSet<String> = ["01:02".to_owned()].into();
        let out = without_series(text, &hidden);
        assert!(!out.contains("01:02"));
        assert!(out.contains("03:04") && out.contains("other 1") && out.contains("# HELP x"));
    }
}
